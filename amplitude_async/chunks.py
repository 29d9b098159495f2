"""Running a query as date chunks and merging the answers: ``client.run(query, split=True)``.

The plan and the merge are :mod:`amplitude_async.split`'s (pure). This module runs the chunks
through one ``execute(chunk, bypass_cache)`` callable: inside
:class:`~amplitude_async.client.AmplitudeClient` that is its own pipeline (coalescing, cache,
scheduler, transport), so a chunk is a call like any other, and with a result cache the chunks
already cached are looked up in one round trip first (incremental refresh). A chunk the server
answers with 504 or a timeout (after the client's retries) is split in two and run again, down
to single buckets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

from .errors import QueryTooExpensive, ServerError, TransportError
from .protocols import QueryRunner
from .queries import DatedQuery, Query
from .split import halves, merge_results, plan_chunks, plan_incremental, split_refusal

__all__ = ["CachedChunks", "Execute", "SplitRunner", "run_chunks", "run_split"]

R = TypeVar("R")

Execute = Callable[[Query[R], bool], Awaitable[R]]
"""Run one chunk (its query, and whether to bypass the cache) and return its result."""


class CachedChunks(Protocol):
    """A result cache seen from a split run (:class:`~amplitude_async.savers.Savers`)."""

    async def lookup(self, queries: Sequence[Query[R]]) -> list[R | None]:
        """Cached results of ``queries`` (``None`` where missing), in one round trip."""
        ...

    def record_hits(self, hits: int, cost: int) -> None:
        """Count ``hits`` cached answers used, worth ``cost``."""
        ...


@runtime_checkable
class SplitRunner(Protocol):
    """A runner that splits queries itself (:class:`~amplitude_async.client.AmplitudeClient`)."""

    async def run_split(
        self,
        query: Query[R],
        *,
        priority: int = 0,
        bypass_cache: bool = False,
        start: date | None = None,
        end: date | None = None,
    ) -> R:
        """Run ``query`` split by date and return the merged result."""
        ...


def _too_heavy(error: Exception) -> bool:
    """Whether the server said the query took too long (after the client's own retries)."""
    if isinstance(error, ServerError):
        return error.status == 504
    return isinstance(error, TransportError) and error.timeout


async def _run_chunk(execute: Execute[R], query: Query[R], budget: int, bypass: bool) -> R:
    try:
        return await execute(query, bypass)
    except (ServerError, TransportError) as exc:
        parts = halves(query) if _too_heavy(exc) else None
        if parts is None:
            raise
    return merge_results(query, await _run_all(execute, parts, budget, bypass), budget=budget)


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    error = group.exceptions[0]
    return _first_error(error) if isinstance(error, BaseExceptionGroup) else error


async def _run_all(
    execute: Execute[R], queries: Sequence[Query[R]], budget: int, bypass: bool
) -> list[R]:
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_run_chunk(execute, q, budget, bypass)) for q in queries]
    except BaseExceptionGroup as failed:
        # One failure is what callers handle; its siblings were cancelled because of it.
        raise _first_error(failed) from None
    return [task.result() for task in tasks]


async def _run_incremental(
    execute: Execute[R], cached: CachedChunks, query: Query[R], budget: int, bypass: bool
) -> R:
    chunks = plan_incremental(query, budget)
    found: list[R | None] = [None] * len(chunks) if bypass else await cached.lookup(chunks)
    missing = [chunk for chunk, hit in zip(chunks, found, strict=True) if hit is None]
    hits = len(chunks) - len(missing)
    cached.record_hits(
        hits, sum(c.cost for c, h in zip(chunks, found, strict=True) if h is not None)
    )
    sent = iter(await _run_all(execute, missing, budget, bypass))
    parts = [next(sent) if hit is None else hit for hit in found]
    try:
        return merge_results(query, parts, budget=budget)
    except QueryTooExpensive:
        # A day reached the group limit where the whole range did not have to: ask it whole.
        if query.cost > budget:
            raise
        return await _run_chunk(execute, query, budget, bypass)


async def run_chunks(
    query: Query[R],
    execute: Execute[R],
    *,
    budget: int,
    bypass_cache: bool = False,
    start: date | None = None,
    end: date | None = None,
    cached: CachedChunks | None = None,
) -> R:
    """Run ``query`` as date chunks that each cost at most ``budget`` through ``execute`` and
    return the merged result (``start``/``end``: over that range instead of the query's own).

    With ``cached`` (a result cache), a splittable query is cut on calendar boundaries and its
    cached chunks reused, unless ``bypass_cache``. Raises
    :class:`~amplitude_async.errors.QueryTooExpensive` when ``query`` needs splitting but
    cannot be split exactly (the hint says why).
    """
    if (
        cached is not None
        and start is None
        and end is None
        and isinstance(query, DatedQuery)
        and split_refusal(query) is None
    ):
        return await _run_incremental(execute, cached, query, budget, bypass_cache)
    chunks = plan_chunks(query, budget, start=start, end=end)
    if len(chunks) == 1:
        return await _run_chunk(execute, chunks[0], budget, bypass_cache)
    parts = await _run_all(execute, chunks, budget, bypass_cache)
    return merge_results(query, parts, budget=budget)


async def run_split(
    client: QueryRunner,
    query: Query[R],
    *,
    priority: int = 0,
    bypass_cache: bool = False,
    start: date | None = None,
    end: date | None = None,
) -> R:
    """Run ``query`` through ``client`` split by date into chunks that fit the window budget,
    and return the merged result.

    An :class:`~amplitude_async.client.AmplitudeClient` does this itself
    (:meth:`~amplitude_async.client.AmplitudeClient.run_split`, inside its pipeline, with
    incremental refresh from its cache); any other runner with ``run(query, priority=)`` and
    ``limits`` has its chunks run one ``run`` each. ``start``/``end`` run ``query``'s fields
    over that range instead of its own, which may be longer than one request may cover (a
    daily segmentation over more than 365 days).
    """
    if isinstance(client, SplitRunner):
        return await client.run_split(
            query, priority=priority, bypass_cache=bypass_cache, start=start, end=end
        )

    async def execute(chunk: Query[R], bypass: bool) -> R:
        # Only a forced refresh says so: any runner with run(query, priority=) will do.
        extra = {"bypass_cache": True} if bypass else {}
        result: R = await cast(Any, client).run(chunk, priority=priority, **extra)
        return result

    return await run_chunks(
        query,
        execute,
        budget=int(client.limits.cost_per_window),
        bypass_cache=bypass_cache,
        start=start,
        end=end,
    )
