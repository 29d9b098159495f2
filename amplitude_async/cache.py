"""A result cache: stores, keys and the expiry policy.

A cached answer is the raw body of a successful response, stored under a one-way hash of the
target (host and credentials) and the request (path and wire parameters), so a Redis shared by
many processes never holds a key, a secret or a raw parameter, and two API keys never share an
entry. Answers are rebuilt through the normal decoder, exactly as if they had just arrived.

How long an answer stays is a pure function of the query and today's date
(:func:`cache_ttl`): Amplitude keeps processing late events for a while, so a date range that
ended before the project's data is *settled* (by default two days before today, in the
project's time zone) keeps a long TTL, a range touching recent days a short one, and answers
that change by the minute (realtime, user activity, user search) are not cached unless the
policy asks for it.

Stores implement :class:`ResultCache`: :class:`MemoryCache` (one process, bounded in entries
and bytes, least recently used out first) and :class:`RedisCache` (shared by every process).
A store that fails raises; the client turns that into a warning and carries on uncached.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Final, Protocol, cast, runtime_checkable
from zoneinfo import ZoneInfo

from attrs import field, frozen

from .errors import ConfigurationError
from .queries import (
    DatedQuery,
    Funnel,
    Query,
    RealtimeActiveUsers,
    Retention,
    RevenueLTV,
    UserActivity,
    UserSearch,
)

if TYPE_CHECKING:  # pragma: no cover
    from redis.asyncio import Redis

__all__ = [
    "DEFAULT_RECENT_TTL",
    "DEFAULT_SETTLED_DAYS",
    "DEFAULT_SETTLED_TTL",
    "CachePolicy",
    "MemoryCache",
    "RedisCache",
    "ResultCache",
    "cache_key",
    "cache_key_of",
    "cache_ttl",
    "open_cache",
]

DEFAULT_SETTLED_DAYS: Final = 2
"""A day is settled once it is this many days before today (today and yesterday are not)."""

DEFAULT_SETTLED_TTL: Final = 30 * 86_400.0
"""Seconds an answer over settled days is kept."""

DEFAULT_RECENT_TTL: Final = 300.0
"""Seconds an answer touching unsettled days (or with no dates) is kept."""

_DEFAULT_FUNNEL_WINDOW_DAYS: Final = 30
_VOLATILE: Final = (RealtimeActiveUsers, UserActivity, UserSearch)
# Their answers count returning users or revenue up to "now", whatever the range says.
_OPEN_ENDED: Final = (Retention, RevenueLTV)


def _positive(_: object, attribute: Any, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ConfigurationError(attribute.name, f"must be positive, got {value!r}")


def _not_negative(_: object, attribute: Any, value: int) -> None:
    if value < 0:
        raise ConfigurationError(attribute.name, f"must not be negative, got {value!r}")


def _to_zone(value: str | tzinfo) -> tzinfo:
    if isinstance(value, tzinfo):
        return value
    try:
        return ZoneInfo(value)
    except (ValueError, KeyError) as exc:
        raise ConfigurationError("timezone", f"unknown time zone {value!r}") from exc


@frozen
class CachePolicy:
    """How long answers stay in the cache (see :func:`cache_ttl`).

    ``timezone`` is the project's (a zoneinfo key or a ``tzinfo``); ``today`` overrides the
    date source (tests, a project clock). ``volatile_ttl`` caches realtime, user activity and
    user search answers for that many seconds (``None``: never).
    """

    settled_days: int = field(default=DEFAULT_SETTLED_DAYS, validator=_not_negative)
    settled_ttl: float = field(default=DEFAULT_SETTLED_TTL, validator=_positive)
    recent_ttl: float = field(default=DEFAULT_RECENT_TTL, validator=_positive)
    volatile_ttl: float | None = field(default=None, validator=_positive)
    timezone: tzinfo = field(default=UTC, converter=_to_zone)
    today: Callable[[], date] | None = field(default=None, eq=False)

    def current_day(self) -> date:
        """Today in the project's time zone (or from ``today``)."""
        if self.today is not None:
            return self.today()
        return datetime.now(self.timezone).date()

    def last_settled_day(self, today: date | None = None) -> date:
        """The latest day whose data is settled."""
        return (today or self.current_day()) - timedelta(days=self.settled_days)


def _last_day(query: DatedQuery[Any]) -> date | None:
    """The last day whose data the answer depends on (``None``: up to now)."""
    if isinstance(query, _OPEN_ENDED):
        return None
    if isinstance(query, Funnel):
        window = query.conversion_window
        days = _DEFAULT_FUNNEL_WINDOW_DAYS if window is None else math.ceil(window / 86_400)
        return query.end + timedelta(days=days)
    return query.end


def cache_ttl(query: Query[Any], policy: CachePolicy, today: date) -> float | None:
    """Seconds to keep ``query``'s answer, or ``None`` not to cache it.

    Settled (the data it depends on ends on or before ``policy.last_settled_day(today)``):
    ``settled_ttl``. Realtime, user activity and user search: ``volatile_ttl``. Anything
    else, including queries without dates and funnels whose conversion window reaches
    unsettled days: ``recent_ttl``.
    """
    if isinstance(query, _VOLATILE):
        return policy.volatile_ttl
    if isinstance(query, DatedQuery):
        last = _last_day(query)
        if last is not None and last <= policy.last_settled_day(today):
            return policy.settled_ttl
    return policy.recent_ttl


def cache_key(target: str, query: Query[Any]) -> str:
    """The cache key of ``query`` sent to ``target`` (a string naming host and credentials).

    A SHA-256 of both: nothing in it can be read back. Queries are normalised when built and
    ``params()`` is their canonical wire form, so equal queries share a key.
    """
    return cache_key_of(target, query.path, query.encoded_params())


def cache_key_of(target: str, path: str, encoded: str) -> str:
    """:func:`cache_key` from a request's ``path`` and its ``encoded`` parameters (computed
    once per call)."""
    digest = hashlib.sha256()
    for part in (target, path, encoded):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


@runtime_checkable
class ResultCache(Protocol):
    """Where answers are kept: raw response bodies by key, each with a TTL in seconds.

    Methods raise on a store failure; the client warns and carries on without the cache.
    """

    async def get(self, key: str) -> bytes | None:
        """The body stored under ``key``, or ``None``."""
        ...

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """:meth:`get` for several keys at once, in order."""
        ...

    async def set(self, key: str, body: bytes, ttl: float) -> None:
        """Store ``body`` under ``key`` for ``ttl`` seconds."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class MemoryCache:
    """An in-process cache bounded in entries and bytes; least recently used out first.

    ``clock`` gives the time in seconds for expiry (``time.monotonic`` by default). A body
    larger than ``max_bytes`` is not stored.
    """

    def __init__(
        self,
        *,
        max_entries: int = 1024,
        max_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ConfigurationError("max_entries", f"must be at least 1, got {max_entries!r}")
        if max_bytes < 1:
            raise ConfigurationError("max_bytes", f"must be at least 1, got {max_bytes!r}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0

    def __repr__(self) -> str:
        return (
            f"<MemoryCache entries={len(self._entries)}/{self.max_entries} "
            f"bytes={self._bytes}/{self.max_bytes}>"
        )

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes of bodies held."""
        return self._bytes

    def get_nowait(self, key: str) -> bytes | None:
        """:meth:`get` without awaiting (nothing here blocks)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        body, expires = entry
        if expires <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return body

    async def get(self, key: str) -> bytes | None:
        """The body stored under ``key``, or ``None`` (expired entries are dropped)."""
        return self.get_nowait(key)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """:meth:`get` for several keys."""
        return [self.get_nowait(key) for key in keys]

    def set_nowait(self, key: str, body: bytes, ttl: float) -> None:
        """:meth:`set` without awaiting."""
        if key in self._entries:
            self._drop(key)
        if len(body) > self.max_bytes or ttl <= 0:
            return
        self._entries[key] = (body, self._clock() + ttl)
        self._bytes += len(body)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    async def set(self, key: str, body: bytes, ttl: float) -> None:
        """Store ``body`` for ``ttl`` seconds, evicting the least recently used as needed."""
        self.set_nowait(key, body, ttl)

    def _drop(self, key: str) -> None:
        body, _ = self._entries.pop(key)
        self._bytes -= len(body)

    async def aclose(self) -> None:
        """Nothing to release."""


class RedisCache:
    """A cache in Redis, shared by every process that uses the same ``url`` and ``prefix``.

    Needs the ``redis`` extra (``pip install 'amplitude-async[redis]'``). ``client`` may be an
    existing ``redis.asyncio.Redis`` (for instance the shared budget's), which is then not
    closed by :meth:`aclose`. ``timeout`` bounds every call, so a Redis that hangs costs a query
    at most that long before it goes uncached. After a failure, calls fail at once without
    touching the network for ``retry_after`` seconds (on ``clock``, ``time.monotonic`` by
    default), so a Redis that is down does not slow every query by a timeout.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        prefix: str = "amplitude-async:result:",
        timeout: float = 1.0,
        retry_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (url is None) == (client is None):
            raise ConfigurationError("url", "give exactly one of url= and client=")
        if client is None:
            try:
                from redis.asyncio import Redis
            except ImportError:  # pragma: no cover - depends on the environment
                raise ConfigurationError(
                    "url", "RedisCache needs the redis extra: pip install 'amplitude-async[redis]'"
                ) from None
            assert url is not None
            try:
                client = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
            except ValueError as exc:
                raise ConfigurationError("url", str(exc)) from None
            self._owns_client = True
        else:
            self._owns_client = False
        self._redis = client
        self.prefix = prefix
        self.retry_after = retry_after
        self._clock = clock
        self._down_until = -math.inf

    def __repr__(self) -> str:
        return f"<RedisCache prefix={self.prefix!r}>"

    async def _call(self, command: Callable[[], Awaitable[Any]]) -> Any:
        if self._clock() < self._down_until:
            raise ConnectionError(f"skipped: Redis failed less than {self.retry_after:g} s ago")
        try:
            return await command()
        except Exception:
            self._down_until = self._clock() + self.retry_after
            raise

    async def get(self, key: str) -> bytes | None:
        """The body stored under ``key``, or ``None``."""
        value = await self._call(lambda: self._redis.get(self.prefix + key))
        return cast("bytes | None", value)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """Several bodies in one round trip."""
        if not keys:
            return []
        values = await self._call(lambda: self._redis.mget([self.prefix + k for k in keys]))
        return cast("list[bytes | None]", values)

    async def set(self, key: str, body: bytes, ttl: float) -> None:
        """Store ``body`` with an expiry of ``ttl`` seconds (rounded up to milliseconds)."""
        px = max(1, math.ceil(ttl * 1000))
        await self._call(lambda: self._redis.set(self.prefix + key, body, px=px))

    async def aclose(self) -> None:
        """Close the connection pool if this cache created it."""
        if self._owns_client:
            await self._redis.aclose()


def open_cache(url: str) -> ResultCache:
    """A cache from a URL: ``redis://`` / ``rediss://`` / ``unix://`` (Redis) or ``memory://``."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisCache(url)
    if url == "memory://":
        return MemoryCache()
    raise ConfigurationError("cache_url", f"expected redis://... or memory://, got {url!r}")
