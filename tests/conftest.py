"""Shared fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from localserver import RecordingServer
from redisserver import RedisServer, require_redis_server

# The library's pytest plugin is opt-in; our own suite uses its fixtures.
pytest_plugins = ["amplitude_async.testing.pytest_plugin"]


@pytest.fixture
async def server() -> AsyncIterator[RecordingServer]:
    """Serve a :class:`RecordingServer` on 127.0.0.1 (a random free port)."""
    recorder = RecordingServer()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    recorder.url = f"http://127.0.0.1:{port}"
    try:
        yield recorder
    finally:
        await runner.cleanup()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private, empty ``redis-server`` on a free 127.0.0.1 port, stopped afterwards."""
    require_redis_server()
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
