"""A local aiohttp server for the benchmarks that run it in a child process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def serve_forever(answer: Handler, port_out: Connection) -> None:
    """Answer every GET with ``answer`` on a free 127.0.0.1 port, sent through ``port_out``,
    until the process is terminated."""

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_out.send(runner.addresses[0][1])
        port_out.close()
        await asyncio.Event().wait()

    asyncio.run(main())
