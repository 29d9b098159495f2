"""The aiohttp adapter: sends a :class:`~amplitude_async.sansio.Request`, returns the raw answer.

This is the only module that imports aiohttp on the client side. aiohttp's exceptions are
mapped to the library's own here (:class:`~amplitude_async.errors.TransportError`,
:class:`~amplitude_async.errors.ClientClosed`), so they never reach users.

Bodies are read with a bound: a 2xx answer up to ``max_body_bytes`` (announced larger by
``Content-Length``: refused before reading; streamed past the cap: reading stops there), an
error answer only as far as its message needs (:data:`~amplitude_async.sansio.ERROR_BODY_LIMIT`).
A response abandoned early closes its connection instead of draining the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Final, Protocol

import aiohttp
from attrs import frozen
from yarl import URL

from .errors import ClientClosed, ResponseTooLarge, TransportError
from .sansio import ERROR_BODY_LIMIT, Request

__all__ = ["DEFAULT_MAX_BODY_BYTES", "AiohttpTransport", "Response", "Stream", "Transport"]

DEFAULT_MAX_BODY_BYTES: Final = 64 * 1024 * 1024
"""Bytes: the largest response body read (Amplitude's biggest answers, a year of a many-valued
group-by, stay well below a few MB)."""

_CHUNK: Final = 256 * 1024


@frozen
class Response:
    """A raw answer: status, headers (case-insensitive mapping) and the body bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    """Anything that can send a request and be closed."""

    async def send(self, request: Request) -> Response:
        """Send ``request`` and return the complete answer, or raise an
        :class:`~amplitude_async.errors.AmplitudeError`: TransportError for a failed exchange,
        ClientClosed once closed, ResponseTooLarge for a body over the transport's cap."""
        ...

    async def aclose(self) -> None:
        """Release connections the transport owns."""
        ...


class Stream:
    """An answer whose body is read piece by piece (a cohort file): :meth:`chunks`, or
    :meth:`head` for an error's message. aiohttp's errors become TransportError."""

    def __init__(self, response: aiohttp.ClientResponse, path: str) -> None:
        self._response = response
        self.path = path
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    async def chunks(self, size: int = _CHUNK) -> AsyncIterator[bytes]:
        """The body, in pieces of at most ``size`` bytes."""
        try:
            async for chunk in self._response.content.iter_chunked(size):
                yield chunk
        except TimeoutError:
            raise TransportError("reading timed out", path=self.path, timeout=True) from None
        except aiohttp.ClientError as exc:
            raise TransportError(
                f"connection failed: {type(exc).__name__}: {exc}", path=self.path
            ) from None

    async def head(self, limit: int = ERROR_BODY_LIMIT) -> bytes:
        """At most ``limit`` bytes of the body (an error's message); the rest is dropped."""
        head = bytearray()
        async for chunk in self.chunks(limit):
            head += chunk
            if len(head) >= limit:
                self._response.close()
                break
        return bytes(head[:limit])


class AiohttpTransport:
    """Send requests with an :class:`aiohttp.ClientSession`.

    The session is created lazily (inside the running loop) and closed by :meth:`aclose`
    unless it was passed in, in which case its owner closes it. After :meth:`aclose`, or once
    a passed-in session has been closed by its owner, :meth:`send` raises
    :class:`~amplitude_async.errors.ClientClosed` and sends nothing.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 60.0,
        connection_limit: int = 100,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connection_limit = connection_limit
        self._max_body_bytes = max_body_bytes
        self._closed = False

    def _get_session(self, request: Request) -> aiohttp.ClientSession:
        if self._closed:
            raise ClientClosed(path=request.path)
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._connection_limit)
            self._session = aiohttp.ClientSession(connector=connector)
        elif self._session.closed:
            raise ClientClosed("the aiohttp session was closed by its owner", path=request.path)
        return self._session

    async def send(self, request: Request) -> Response:
        """Send one GET request; connection errors and timeouts become TransportError, a
        closed session ClientClosed, a body over the cap ResponseTooLarge."""
        session = self._get_session(request)
        try:
            # encoded=True: the query string is already encoded the way Amplitude wants it and
            # must not be normalised again (yarl would otherwise re-quote "%2B" and friends).
            async with session.get(
                URL(request.url, encoded=True),
                headers=request.headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                body = await self._read(response, request)
                return Response(response.status, response.headers, body)
        except TimeoutError:
            raise TransportError("request timed out", path=request.path, timeout=True) from None
        except (aiohttp.ClientError, RuntimeError) as exc:
            if session.closed:
                # Closed under the request (by aclose's deadline, or by the session's owner).
                raise ClientClosed(
                    "the aiohttp session was closed during the request", path=request.path
                ) from None
            if isinstance(exc, RuntimeError):
                raise
            raise TransportError(
                f"connection failed: {type(exc).__name__}: {exc}", path=request.path
            ) from None

    @contextlib.asynccontextmanager
    async def stream(
        self, url: str, headers: Mapping[str, str], *, path: str, read_timeout: float
    ) -> AsyncIterator[Stream]:
        """GET ``url`` with exactly ``headers`` and yield the answer unread, redirects not
        followed; its body is read with :meth:`Stream.chunks`. Connecting is bounded by the
        transport's timeout, each read by ``read_timeout`` seconds (a large body takes as
        long as it takes). ``path`` names the request in errors."""
        session = self._get_session(Request(path=path, url=url, headers={}))
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self._timeout.total, sock_read=read_timeout
        )
        try:
            response = await session.get(
                URL(url, encoded=True),
                headers=dict(headers),
                timeout=timeout,
                allow_redirects=False,
            )
        except TimeoutError:
            raise TransportError("request timed out", path=path, timeout=True) from None
        except aiohttp.ClientError as exc:
            if session.closed:
                raise ClientClosed(
                    "the aiohttp session was closed during the request", path=path
                ) from None
            raise TransportError(
                f"connection failed: {type(exc).__name__}: {exc}", path=path
            ) from None
        try:
            yield Stream(response, path)
        finally:
            # Not drained: a body abandoned early closes its connection.
            if response.content.at_eof():
                response.release()
            else:
                response.close()

    async def _read(self, response: aiohttp.ClientResponse, request: Request) -> bytes:
        if not 200 <= response.status < 300:
            # An error answer matters only for its message: read its head, drop the rest.
            head = bytearray()
            while len(head) < ERROR_BODY_LIMIT:
                chunk = await response.content.read(ERROR_BODY_LIMIT - len(head))
                if not chunk:
                    return bytes(head)
                head += chunk
            if not response.content.at_eof():
                response.close()
            return bytes(head)
        limit = self._max_body_bytes
        announced = response.content_length
        if announced is not None and announced > limit:
            response.close()
            raise ResponseTooLarge(limit, path=request.path, content_length=announced)
        if announced is not None:
            # Announced and within the cap: aiohttp reads exactly that many bytes.
            return await response.read()
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > limit:
                # Stop reading: closing the connection is cheaper than draining the rest.
                response.close()
                raise ResponseTooLarge(limit, path=request.path, content_length=announced)
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        """Close the session if this transport created it; refuse requests from now on."""
        self._closed = True
        if self._session is not None and self._owns_session:
            session, self._session = self._session, None
            await session.close()
            # Give the connector a tick to close its sockets cleanly (aiohttp's advice).
            await asyncio.sleep(0)
