"""The aiohttp adapter: sends a :class:`~amplitude_async.sansio.Request`, returns the raw answer.

This is the only module that imports aiohttp on the client side. aiohttp's exceptions are
mapped to :class:`~amplitude_async.errors.TransportError` here, so they never reach users.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

import aiohttp
from attrs import frozen
from yarl import URL

from .errors import TransportError
from .sansio import Request

__all__ = ["AiohttpTransport", "Response", "Transport"]


@frozen
class Response:
    """A raw answer: status, headers (case-insensitive mapping) and the body bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """Anything that can send a request and be closed."""

    async def send(self, request: Request) -> Response:
        """Send ``request`` and return the complete answer, or raise TransportError."""
        ...

    async def aclose(self) -> None:
        """Release connections the transport owns."""
        ...


class AiohttpTransport:
    """Send requests with an :class:`aiohttp.ClientSession`.

    The session is created lazily (inside the running loop) and closed by :meth:`aclose`
    unless it was passed in, in which case its owner closes it.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 60.0,
        connection_limit: int = 100,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connection_limit = connection_limit

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._connection_limit)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def send(self, request: Request) -> Response:
        """Send one GET request; connection errors and timeouts become TransportError."""
        session = self._get_session()
        try:
            # encoded=True: the query string is already encoded the way Amplitude wants it and
            # must not be normalised again (yarl would otherwise re-quote "%2B" and friends).
            async with session.get(
                URL(request.url, encoded=True),
                headers=request.headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                body = await response.read()
                return Response(response.status, response.headers, body)
        except TimeoutError:
            raise TransportError("request timed out", path=request.path, timeout=True) from None
        except aiohttp.ClientError as exc:
            raise TransportError(
                f"connection failed: {type(exc).__name__}: {exc}", path=request.path
            ) from None

    async def aclose(self) -> None:
        """Close the session if this transport created it."""
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None if self._owns_session else self._session
        # Give the connector a tick to close its sockets cleanly (aiohttp's advice).
        await asyncio.sleep(0)
