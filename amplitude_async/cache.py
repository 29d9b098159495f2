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

An entry cannot hurt the query that reads it. What is stored is :func:`seal`'s envelope: a
version mark, the SHA-256 of its key and an HMAC-SHA256 (keyed by the client's host and
credentials) of both, then the body. :func:`unseal` checks all of it before anything is
decoded, and :func:`decode_entry` then applies the wire path's strict JSON and a nesting limit
(:data:`MAX_ENTRY_DEPTH`). An entry another query wrote, one cut short or altered, one written
with other credentials or by another version fails a check; the client then treats it as a
miss, warns and deletes it.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from attrs import field, frozen

from ._settings import check_count, check_number
from .errors import ConfigurationError
from .queries import (
    CohortRequest,
    CohortRequestStatus,
    CohortsList,
    DatedQuery,
    Funnel,
    Query,
    RealtimeActiveUsers,
    Retention,
    RevenueLTV,
    UserActivity,
    UserSearch,
)
from .sansio import strict_json

if TYPE_CHECKING:  # pragma: no cover
    from redis.asyncio import Redis

__all__ = [
    "DEFAULT_MAX_ENTRY_BYTES",
    "DEFAULT_RECENT_TTL",
    "DEFAULT_SETTLED_DAYS",
    "DEFAULT_SETTLED_TTL",
    "MAX_ENTRY_DEPTH",
    "UNREADABLE",
    "CachePolicy",
    "MemoryCache",
    "RedisCache",
    "ResultCache",
    "cache_key",
    "cache_key_of",
    "cache_ttl",
    "decode_entry",
    "open_cache",
    "seal",
    "too_deep",
    "unseal",
]

DEFAULT_SETTLED_DAYS: Final = 2
"""A day is settled once it is this many days before today (today and yesterday are not)."""

DEFAULT_SETTLED_TTL: Final = 30 * 86_400.0
"""Seconds an answer over settled days is kept."""

DEFAULT_RECENT_TTL: Final = 300.0
"""Seconds an answer touching unsettled days (or with no dates) is kept."""

DEFAULT_MAX_ENTRY_BYTES: Final = 64 * 1024 * 1024
"""The largest entry :class:`RedisCache` stores or reads (the transport's default body cap)."""

MAX_ENTRY_DEPTH: Final = 64
"""How deeply the JSON of a cached answer may nest (Amplitude's answers nest less than 10)."""

UNREADABLE: Final = b""
"""What a store returns for an entry it holds but cannot read (a Redis key of another type, a
value over the size limit). It is never a valid entry: the client deletes it."""

_DEFAULT_FUNNEL_WINDOW_DAYS: Final = 30
_UNCACHED: Final = (CohortRequest, CohortRequestStatus)
_VOLATILE: Final = (CohortsList, RealtimeActiveUsers, UserActivity, UserSearch)
# Their answers count returning users or revenue up to "now", whatever the range says.
_OPEN_ENDED: Final = (Retention, RevenueLTV)


def _positive(_: object, attribute: Any, value: float | None) -> None:
    # Finite: an infinite TTL would keep "recent" answers forever; NaN compares false.
    if value is not None:
        check_number(attribute.name, value)


def _not_negative(_: object, attribute: Any, value: int) -> None:
    check_count(attribute.name, value, minimum=0)


def _to_zone(value: str | tzinfo) -> tzinfo:
    if isinstance(value, tzinfo):
        return value
    if not isinstance(value, str):
        raise ConfigurationError("timezone", f"expected a time zone name, got {value!r}")
    try:
        return ZoneInfo(value)
    except (ValueError, KeyError, OSError):  # "America" is a directory of the database
        hint = "an IANA name such as Europe/Berlin or UTC"
        raise ConfigurationError("timezone", f"unknown time zone {value!r}; {hint}") from None


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
        try:
            return query.end + timedelta(days=days)
        except OverflowError:  # a window reaching past the calendar never settles
            return None
    return query.end


def cache_ttl(query: Query[Any], policy: CachePolicy, today: date) -> float | None:
    """Seconds to keep ``query``'s answer, or ``None`` not to cache it.

    Settled (the data it depends on ends on or before ``policy.last_settled_day(today)``):
    ``settled_ttl``. Realtime, user activity, user search and the cohort list:
    ``volatile_ttl``. The steps of a cohort download: never cached. Anything else, including
    queries without dates and funnels whose conversion window reaches unsettled days:
    ``recent_ttl``.
    """
    if isinstance(query, _UNCACHED):
        return None
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


# Text, not binary: a Redis client that decodes replies to str reads an entry unchanged.
_MAGIC: Final = b"amplitude-async/1 "
_DIGEST: Final = 64  # hex SHA-256
_HEADER: Final = len(_MAGIC) + 2 * _DIGEST + 1


def _key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).hexdigest().encode()


def _tag(secret: bytes, key_digest: bytes, body: bytes) -> bytes:
    return hmac.new(secret, key_digest + body, hashlib.sha256).hexdigest().encode()


def seal(key: str, body: bytes, secret: bytes) -> bytes:
    """The entry that keeps ``body`` under ``key``; ``secret`` (the client's host and
    credentials) keys its HMAC, so only a client with the same credentials writes a valid one."""
    digest = _key_digest(key)
    return _MAGIC + digest + _tag(secret, digest, body) + b"\n" + body


def unseal(key: str, entry: bytes, secret: bytes) -> bytes:
    """The body :func:`seal` put in ``entry`` for ``key``.

    Raises :class:`ValueError` saying what is wrong: unreadable, not an entry of this version,
    another key's, or cut short, altered or sealed with other credentials.
    """
    if entry == UNREADABLE:
        raise ValueError("is empty or cannot be read (a value of another type, or too large)")
    if len(entry) < _HEADER or not entry.startswith(_MAGIC) or entry[_HEADER - 1] != 0x0A:
        raise ValueError("is not an entry of this version (another program or version wrote it)")
    digest = entry[len(_MAGIC) : len(_MAGIC) + _DIGEST]
    tag = entry[len(_MAGIC) + _DIGEST : _HEADER - 1]
    body = entry[_HEADER:]
    if not hmac.compare_digest(digest, _key_digest(key)):
        raise ValueError("belongs to another key")
    if not hmac.compare_digest(tag, _tag(secret, digest, body)):
        raise ValueError("is damaged (cut short or altered) or was written with other credentials")
    return body


_CONTAINERS: Final = (list, dict)  # what json decodes arrays and objects to, exactly


def too_deep(value: object, limit: int = MAX_ENTRY_DEPTH) -> bool:
    """Whether decoded JSON ``value`` nests lists and objects more than ``limit`` levels."""
    # Level by level, without recursion: the value may be as deep as the decoder allowed.
    level: list[Any] = [value] if type(value) in _CONTAINERS else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for item in level:
            children = item.values() if type(item) is dict else item
            below += [child for child in children if type(child) in _CONTAINERS]
        level = below
    return False


def decode_entry(body: bytes) -> Any:
    """An unsealed body decoded as the wire path decodes answers (strict JSON: no NaN or
    Infinity), nested at most :data:`MAX_ENTRY_DEPTH` deep; :class:`ValueError` otherwise."""
    try:
        value = strict_json(body)
    except RecursionError:
        raise ValueError("is nested too deeply") from None
    except ValueError as exc:
        raise ValueError(f"is not strict JSON ({exc})") from None
    if too_deep(value):
        raise ValueError(f"nests deeper than {MAX_ENTRY_DEPTH} levels")
    return value


@runtime_checkable
class ResultCache(Protocol):
    """Where answers are kept: entries (bytes) by key, each with a TTL in seconds.

    Methods raise on a store failure; the client warns and carries on without the cache. A
    value the store holds but cannot return as bytes is returned as :data:`UNREADABLE`.
    """

    async def get(self, key: str) -> bytes | None:
        """The entry stored under ``key``, or ``None``."""
        ...

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """:meth:`get` for several keys at once, in order."""
        ...

    async def set(self, key: str, body: bytes, ttl: float) -> None:
        """Store ``body`` under ``key`` for ``ttl`` seconds."""
        ...

    async def delete(self, key: str) -> None:
        """Remove whatever is stored under ``key`` (the client drops entries that fail its
        checks)."""
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
        check_count("max_entries", max_entries, minimum=1)
        check_count("max_bytes", max_bytes, minimum=1)
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

    async def delete(self, key: str) -> None:
        """Remove the entry under ``key``, if any."""
        if key in self._entries:
            self._drop(key)

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

    Entries larger than ``max_entry_bytes`` are not stored, and one found in Redis is not read
    past that size: it comes back as :data:`UNREADABLE`, as does a key holding another type.
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
        max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
    ) -> None:
        if (url is None) == (client is None):
            raise ConfigurationError("url", "give exactly one of url= and client=")
        check_count("max_entry_bytes", max_entry_bytes, minimum=1)
        timeout = check_number("timeout", timeout)
        retry_after = check_number("retry_after", retry_after, allow_zero=True)
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
        self.max_entry_bytes = max_entry_bytes
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
        """The entry stored under ``key``, ``None``, or :data:`UNREADABLE`."""
        (value,) = await self.get_many([key])
        return value

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        """Several entries in one round trip (see :meth:`get`)."""
        if not keys:
            return []
        limit = self.max_entry_bytes

        async def read() -> list[Any]:
            # STRLEN tells a foreign type (an error) and an oversized value apart; GETRANGE
            # never transfers more than the limit, whatever was written under the key.
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.strlen(self.prefix + key)
                    pipe.getrange(self.prefix + key, 0, limit - 1)
                replies: list[Any] = await pipe.execute(raise_on_error=False)
                return replies

        replies = await self._call(read)
        out: list[bytes | None] = []
        for length, value in zip(replies[::2], replies[1::2], strict=True):
            if isinstance(value, str):  # a client made with decode_responses=True
                value = value.encode()
            # An error reply (a foreign type) is an exception object here.
            readable = isinstance(length, int) and length <= limit and isinstance(value, bytes)
            out.append((value or None) if readable else UNREADABLE)
        return out

    async def set(self, key: str, body: bytes, ttl: float) -> None:
        """Store ``body`` with an expiry of ``ttl`` seconds (rounded up to milliseconds);
        nothing over ``max_entry_bytes``."""
        if len(body) > self.max_entry_bytes:
            return
        px = max(1, math.ceil(ttl * 1000))
        await self._call(lambda: self._redis.set(self.prefix + key, body, px=px))

    async def delete(self, key: str) -> None:
        """Remove the key, whatever its type."""
        await self._call(lambda: self._redis.delete(self.prefix + key))

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
