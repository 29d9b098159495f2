"""Spending budget once: the client's coalescing and result cache, and what they saved.

:class:`Savers` sits between :meth:`~amplitude_async.client.AmplitudeClient.run` and the
scheduler. For each query it

1. joins an identical query already in flight (same target, credentials, path and parameters),
   if coalescing is on (:mod:`amplitude_async.coalesce`);
2. otherwise answers from the cache when it holds the query (:mod:`amplitude_async.cache`),
   before the scheduler, so a cached answer spends no budget;
3. otherwise sends it through the scheduler and stores the raw answer, with a TTL from the
   cache policy.

A cache that fails (Redis down or slow) is skipped with a :class:`~.errors.CacheUnavailable`
warning: the query is answered as if there were no cache. So is an entry that fails its checks
(:func:`~amplitude_async.cache.unseal`, :func:`~amplitude_async.cache.decode_entry`, then the
result's own decoding): it is a miss, deleted, and never raises nor answers another query.
:class:`SavingsStatistics` counts hits, misses, coalesced callers and the cost each saved.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from operator import itemgetter
from typing import Any, TypeVar

import attrs
from attrs import field, frozen

from .cache import (
    CachePolicy,
    MemoryCache,
    ResultCache,
    cache_key,
    cache_key_of,
    cache_ttl,
    decode_entry,
    seal,
    too_deep,
    unseal,
)
from .call import Call
from .coalesce import Coalescer
from .converter import structure_result
from .errors import AmplitudeError, CacheUnavailable, ResponseValidationError
from .observe import count as observe_count
from .queries import Query
from .quota import QuotaUsage
from .results import bind_query
from .scheduler import SchedulerStatistics

__all__ = ["ClientStatistics", "Savers", "SavingsStatistics", "Send"]

R = TypeVar("R")

DECODED_ENTRIES = 256
"""Cache hits whose decoded result is kept beside the cache (most recently used)."""

_log = logging.getLogger(__name__)

Send = Callable[[Call[Any]], Awaitable[tuple[bytes, Any]]]
"""Send a call through the scheduler: its raw body and decoded JSON."""

_RESULT: Callable[[tuple[Any, bool]], Any] = itemgetter(0)


@frozen
class SavingsStatistics:
    """What coalescing and the cache saved (see :meth:`Savers.statistics`).

    ``cache_hits`` / ``cache_misses`` count cache look-ups (a query the policy does not cache
    is neither); ``refreshed`` the ``bypass_cache=True`` answers; ``cache_errors`` the store
    failures that were skipped and the entries refused by their checks (each also a miss);
    ``coalesced`` the callers that joined a query in flight.
    ``cost_saved_by_cache`` and ``cost_saved_by_coalescing`` are the costs not spent.
    """

    cache_hits: int = 0
    cache_misses: int = 0
    refreshed: int = 0
    cache_errors: int = 0
    coalesced: int = 0
    cost_saved_by_cache: int = 0
    cost_saved_by_coalescing: int = 0

    @property
    def cost_saved(self) -> int:
        """Cost not spent thanks to both."""
        return self.cost_saved_by_cache + self.cost_saved_by_coalescing

    def line(self) -> str:
        """One line for people."""
        return (
            f"cache: {self.cache_hits} hit(s), {self.cache_misses} miss(es), "
            f"{self.refreshed} refreshed, {self.cache_errors} error(s); "
            f"coalesced: {self.coalesced} caller(s); cost saved: {self.cost_saved} "
            f"({self.cost_saved_by_cache} by the cache, {self.cost_saved_by_coalescing} by "
            "coalescing)"
        )


@frozen
class ClientStatistics(SchedulerStatistics):
    """The scheduler's snapshot with the client's :class:`SavingsStatistics` and monthly quotas
    beside it."""

    savings: SavingsStatistics = field(factory=SavingsStatistics)
    quotas: tuple[QuotaUsage, ...] = ()
    """Monthly quotas as last seen, such as this month's cohort download requests."""

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]} savings=({self.savings.line()})>"

    @classmethod
    def of(
        cls,
        scheduler: SchedulerStatistics,
        savings: SavingsStatistics,
        quotas: tuple[QuotaUsage, ...] = (),
    ) -> ClientStatistics:
        """Attach ``savings`` and ``quotas`` to a scheduler snapshot."""
        values = {a.name: getattr(scheduler, a.name) for a in attrs.fields(type(scheduler))}
        return cls(**values, savings=savings, quotas=quotas)


class Savers:
    """Coalescing and the result cache for one client.

    ``target`` names the host and credentials (it is hashed into every key and keys every
    entry's HMAC, never stored); ``cache`` is ``None`` for no cache; ``policy`` decides TTLs.
    ``scrub`` rewrites an answer's decoding error before any caller sees it (the client
    redacts credentials a server may have echoed).
    """

    def __init__(
        self,
        target: str,
        *,
        cache: ResultCache | None = None,
        policy: CachePolicy | None = None,
        coalesce: bool = True,
        scrub: Callable[[AmplitudeError], AmplitudeError] | None = None,
    ) -> None:
        self._target = target
        self._scrub = scrub
        self._secret = target.encode()
        self.cache = cache
        self.policy = policy or CachePolicy()
        self._coalescer = Coalescer() if coalesce else None
        # Plain counters, snapshotted by statistics(): counting is on every call's path.
        self._counts = dict.fromkeys((a.name for a in attrs.fields(SavingsStatistics)), 0)
        self._decoded: OrderedDict[tuple[str, str], tuple[bytes, Any]] = OrderedDict()

    def __repr__(self) -> str:
        return f"<Savers cache={self.cache!r} coalesce={self._coalescer is not None}>"

    def statistics(self) -> SavingsStatistics:
        """An immutable snapshot of the counters."""
        return SavingsStatistics(**self._counts)

    def _count(self, **deltas: int) -> None:
        counts = self._counts
        for name, n in deltas.items():
            counts[name] += n
        observe_count(deltas)

    def key(self, query: Query[Any] | Call[Any]) -> str:
        """The cache key of ``query`` (or of a call's query) for this client."""
        if isinstance(query, Call):
            return cache_key_of(self._target, query.path, query.encoded)
        return cache_key(self._target, query)

    def seal(self, key: str, body: bytes) -> bytes:
        """The entry this client stores for ``body`` under ``key`` (see :func:`cache.seal`)."""
        return seal(key, body, self._secret)

    def ttl(self, query: Query[Any]) -> float | None:
        """Seconds the policy keeps ``query``'s answer today (``None``: not cached)."""
        return cache_ttl(query, self.policy, self.policy.current_day())

    async def run(self, call: Call[R], send: Send) -> R:
        """``call``'s result: joined, cached or sent with ``send`` (see the module doc), bound
        to its query."""
        return await self.submit(call, send)

    def submit(self, call: Call[R], send: Send, *, name: str | None = None) -> asyncio.Future[R]:
        """:meth:`run` without a task of the caller's own: the future of ``call``'s result.

        Cancelling the future leaves the request to the other callers of a coalesced flight;
        the last caller to leave stops it, and its future settles once the work has stopped.
        Work this call starts runs in a task named ``name``.
        """
        cache, coalescer = self.cache, self._coalescer
        # No cache: no key to hash. One client, one target: the request's path and parameters
        # identify the work of a flight.
        key = "" if cache is None else self.key(call)
        if coalescer is None:
            return asyncio.get_running_loop().create_task(
                self._answer_only(call, key, send), name=name
            )
        # A forced refresh never joins a flight that may answer from the cache.
        flight = (
            (call.path, call.encoded)
            if cache is None
            else (key, "refresh" if call.bypass_cache else "")
        )
        leader: Call[R] | None = coalescer.context(flight)
        if leader is None and cache is not None and not call.bypass_cache:
            hot = self._hot_hit(call, key)
            if hot is not None:
                answered: asyncio.Future[R] = asyncio.get_running_loop().create_future()
                answered.set_result(hot)
                return answered
        if leader is None:
            # The flight's answer is bound to this caller's query already.
            finish: Callable[[tuple[R, bool]], R] = _RESULT
        else:
            self._count(coalesced=1)
            # The flight runs at the highest priority of its callers: a dashboard's copy of a
            # queued backfill query re-queues it in front of the backlog.
            leader.raise_priority(call.priority)
            finish = partial(self._joined, call)
        return coalescer.join(
            flight, partial(self._answer, call, key, send), context=call, finish=finish, name=name
        )

    def _joined(self, call: Call[R], outcome: tuple[R, bool]) -> R:
        """A joining caller's share of a flight's outcome: the answer bound to its query."""
        result, sent = outcome
        if sent:
            self._count(cost_saved_by_coalescing=call.cost)
        return bind_query(result, call.query)

    async def _answer_only(self, call: Call[R], key: str, send: Send) -> R:
        result, _ = await self._answer(call, key, send)
        return result

    def _hot_hit(self, call: Call[R], key: str) -> R | None:
        """A hit of an in-process cache whose entry was checked and decoded a moment ago,
        answered in the caller's task: no flight to start, nothing to wait for. Anything else
        (a miss, a new entry, a Redis cache) goes the whole way, where it is counted."""
        cache = self.cache
        if not isinstance(cache, MemoryCache):
            return None
        query = call.query
        known = self._decoded.get((query.path, call.encoded))
        if known is None or self.ttl(query) is None or cache.get_nowait(key) != known[0]:
            return None
        self._decoded.move_to_end((query.path, call.encoded))
        self._count(cache_hits=1, cost_saved_by_cache=call.cost)
        result: R = known[1]
        return bind_query(result, query)

    async def _answer(self, call: Call[R], key: str, send: Send) -> tuple[R, bool]:
        query = call.query
        ttl = self.ttl(query) if self.cache is not None else None
        if ttl is not None and not call.bypass_cache:
            cached = await self._get([key])
            result = await self._open(query, key, cached[0])
            if result is not None:
                self._count(cache_hits=1, cost_saved_by_cache=call.cost)
                return bind_query(result, query), False
            self._count(cache_misses=1)
        elif ttl is not None:
            self._count(refreshed=1)
        body, decoded = await send(call)
        try:
            result = structure_result(decoded, query.result_type, path=query.path)
        except ResponseValidationError as exc:
            if self._scrub is None:
                raise
            raise self._scrub(exc) from None
        result = bind_query(result, query)
        # An answer its own entry's checks would refuse is not kept: it would be refused,
        # warned about and sent again on every call.
        if ttl is not None and not too_deep(decoded):
            await self._set(key, self.seal(key, body), ttl)
        return result, True

    async def lookup(self, queries: Sequence[Query[R]]) -> list[R | None]:
        """Cached results of ``queries`` (``None`` where missing), in one round trip.

        Nothing is counted: :meth:`record_hits` counts the ones the caller uses.
        """
        if self.cache is None:
            return [None] * len(queries)
        keys = [self.key(q) for q in queries]
        entries = await self._get(keys)
        results: list[R | None] = []
        for query, key, entry in zip(queries, keys, entries, strict=True):
            result = await self._open(query, key, entry)
            results.append(None if result is None else bind_query(result, query))
        return results

    def record_hits(self, hits: int, cost: int) -> None:
        """Count ``hits`` answers used from :meth:`lookup`, worth ``cost``."""
        self._count(cache_hits=hits, cost_saved_by_cache=cost)

    async def _open(self, query: Query[R], key: str, entry: bytes | None) -> R | None:
        """The result in ``entry``, or ``None`` (a miss) if there is none or it fails a check."""
        if entry is None:
            return None
        # Results are immutable: an entry checked and decoded a moment ago is not checked and
        # decoded again (a hit of a hot dashboard query is a look-up and a comparison of bytes).
        memo = (query.path, query.encoded_params())
        known = self._decoded.get(memo)
        if known is not None and known[0] == entry:
            self._decoded.move_to_end(memo)
            found: R = known[1]
            return found
        try:
            decoded = decode_entry(unseal(key, entry, self._secret))
        except ValueError as exc:
            reason = str(exc)
        else:
            try:
                result = structure_result(decoded, query.result_type, path=query.path)
            except Exception as exc:  # whatever is in it costs the saving only
                reason = f"does not decode as {query.result_type.__name__} ({exc})"
            else:
                self._decoded[memo] = (entry, result)
                if len(self._decoded) > DECODED_ENTRIES:
                    self._decoded.popitem(last=False)
                return result
        await self._reject(query, key, reason)
        return None

    async def _reject(self, query: Query[Any], key: str, reason: str) -> None:
        assert self.cache is not None
        self._count(cache_errors=1)
        warnings.warn(
            CacheUnavailable(
                f"result cache {self.cache!r}: the entry for {query.path} {reason[:300]}; "
                "deleted it, answering without it"
            ),
            stacklevel=3,
        )
        try:
            await self.cache.delete(key)
        except Exception as exc:
            self._failed(exc)

    async def _get(self, keys: list[str]) -> list[bytes | None]:
        assert self.cache is not None
        try:
            return await self.cache.get_many(keys)
        except Exception as exc:
            self._failed(exc)
            return [None] * len(keys)

    async def _set(self, key: str, body: bytes, ttl: float) -> None:
        assert self.cache is not None
        try:
            await self.cache.set(key, body, ttl)
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        # Any store failure (connection refused, timeout, a full Redis) only costs the saving.
        self._count(cache_errors=1)
        text = f"result cache {self.cache!r} failed ({type(exc).__name__}: {exc})"
        _log.warning("%s; answering without it", text, extra={"error": text})
        warnings.warn(CacheUnavailable(f"{text}; answering without it"), stacklevel=2)
