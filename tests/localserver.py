"""A real aiohttp server on 127.0.0.1 that records what it receives and answers as scripted."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from attrs import define, field


@define
class Recorded:
    """One request as the server saw it."""

    path: str
    raw_query: str
    query: list[tuple[str, str]]
    headers: dict[str, str]


Handler = Callable[[web.Request], web.StreamResponse]


@define
class RecordingServer:
    """A local server answering every GET with the next scripted response."""

    url: str = ""
    requests: list[Recorded] = field(factory=list)
    responses: list[tuple[int, dict[str, str], bytes]] = field(factory=list)
    default: tuple[int, dict[str, str], bytes] = (200, {}, b'{"data": {}}')

    def reply(
        self, status: int = 200, body: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        """Queue a response; ``body`` is JSON-encoded unless it is bytes."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.responses.append((status, headers or {}, raw))

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            Recorded(
                path=request.path,
                raw_query=request.rel_url.raw_query_string,
                query=list(request.rel_url.query.items()),
                headers=dict(request.headers),
            )
        )
        status, headers, body = self.responses.pop(0) if self.responses else self.default
        return web.Response(
            status=status, headers=headers, body=body, content_type="application/json"
        )


@contextlib.asynccontextmanager
async def serve(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """Serve ``handler`` for every GET on 127.0.0.1 (a free port); yield the base URL."""
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def until(condition: Callable[[], object], what: str) -> None:
    """Wait until ``condition()`` is true, polling the loop (never the wall clock's margins: a
    local server runs in this same loop); fail naming ``what`` if it never is."""
    for _ in range(20_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never happened: {what}")


@define
class Streamed:
    """What a streaming handler managed to write before the client stopped reading."""

    total: int
    written: int = 0
    completed: bool = False
    error: BaseException | None = None


@define
class StreamingServer:
    """Answers each GET with ``total`` bytes written in chunks (optionally announcing the size in
    ``Content-Length``), recording for each request how far the writing got."""

    status: int = 200
    total: int = 200 * 1024 * 1024
    announce: bool = False
    head: bytes = b""
    chunk: int = 1024 * 1024
    streams: list[Streamed] = field(factory=list)
    finished: asyncio.Event = field(factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        record = Streamed(self.total)
        self.streams.append(record)
        response = web.StreamResponse(status=self.status)
        response.content_type = "application/json"
        if self.announce:
            response.content_length = self.total
        try:
            await response.prepare(request)
            payload = self.head + b" " * (self.chunk - len(self.head))
            while record.written < self.total:
                piece = payload[: min(self.chunk, self.total - record.written)]
                await response.write(piece)
                record.written += len(piece)
                payload = b" " * self.chunk
            await response.write_eof()
            record.completed = True
        except ConnectionError as exc:
            # The client went away: what the test wants to see.
            record.error = exc
        finally:
            self.finished.set()
        return response
