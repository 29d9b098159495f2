"""A real aiohttp server on 127.0.0.1 that records what it receives and answers as scripted."""

from __future__ import annotations

import json
from collections.abc import Callable
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
