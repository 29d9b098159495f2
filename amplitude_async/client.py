"""The asyncio client: every request passes the cost-aware scheduler, then the transport.

``AmplitudeClient.run(query)`` checks the query's cost against the budgets, waits until the
scheduler admits it, sends it, retries transient failures (and 429s, after pausing the pool),
and decodes the answer into the query's typed result.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar, cast, overload

import aiohttp
import attrs

from .clock import Clock
from .converter import structure_result
from .errors import AmplitudeError, ConfigurationError, RateLimited, TransportError
from .limits import Limits
from .queries import (
    ActiveUsers,
    AverageSessionLength,
    ChartCSV,
    ChartQuery,
    EventSegmentation,
    EventsList,
    Funnel,
    Query,
    RealtimeActiveUsers,
    Retention,
    RevenueLTV,
    SessionLengthDistribution,
    SessionsPerUser,
    UserActivity,
    UserComposition,
    UserSearch,
)
from .retry import Attempts, RetryPolicy
from .sansio import BASE_URLS, basic_auth, build_request, check_credentials, decipher
from .scheduler import LEASE_MARGIN, Scheduler, SchedulerStatistics
from .split import run_split
from .transport import AiohttpTransport, Transport

__all__ = ["DEFAULT_LOOKAHEAD", "DEFAULT_TIMEOUT", "AmplitudeClient"]

R = TypeVar("R")
P = ParamSpec("P")

DEFAULT_TIMEOUT = 60.0
"""Seconds before one request is abandoned (Amplitude itself may hang ~30 s instead of a 429)."""

DEFAULT_LOOKAHEAD = 2048
"""How many queries of a batch wait in the scheduler at once: enough for tight packing, while a
100,000-query batch costs no more memory than this many waiting requests."""


def _endpoint(
    cls: Callable[P, Query[R]],
) -> Callable[Concatenate[AmplitudeClient, P], Awaitable[R]]:
    """Make a client method that builds ``cls(*args, **kwargs)`` and runs it."""

    async def method(self: AmplitudeClient, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self.run(cls(*args, **kwargs))

    name = getattr(cls, "__name__", "query")
    method.__doc__ = f"Build a :class:`~amplitude_async.queries.{name}` and :meth:`run` it."
    return method


def _make_scheduler(
    api_key: str, limits: Limits, clock: Clock | None, timeout: float, budget_url: str | None
) -> Scheduler:
    """The client's own scheduler: on a shared budget store when ``budget_url`` is given. A
    lease outlives the request timeout by a margin, for the server to finish counting."""
    lease = timeout + LEASE_MARGIN
    if budget_url is None:
        return Scheduler(limits, clock=clock, lease=lease)
    try:
        from .redis_store import RedisBudgetStore  # the optional redis extra
    except ImportError:  # pragma: no cover - depends on the installation
        raise ConfigurationError(
            "budget_url", "needs the redis package: pip install 'amplitude-async[redis]'"
        ) from None
    store = RedisBudgetStore.from_url(budget_url, api_key=api_key, limits=limits)
    return Scheduler(store=store, clock=clock, lease=lease)


class AmplitudeClient:
    """Cost-aware client for one Amplitude project.

    Credentials fall back to ``AMPLITUDE_API_KEY`` / ``AMPLITUDE_SECRET_KEY``. ``region="eu"``
    selects the EU host; ``base_url`` overrides both (the built-in emulator, a proxy). ``limits``
    are the project's budgets (Amplitude's documented values by default). The client owns its
    aiohttp session unless ``session`` is given. Use it as an async context manager, or call
    :meth:`aclose`. ``budget_url`` (or ``AMPLITUDE_BUDGET_URL``), such as
    ``"redis://host:6379/0"``, shares the project's budget with every process using the same
    URL and API key (see :class:`~amplitude_async.redis_store.RedisBudgetStore`).
    """

    def __init__(
        self,
        api_key: str | None = None,
        secret_key: str | None = None,
        *,
        region: Literal["us", "eu"] = "us",
        base_url: str | None = None,
        limits: Limits | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        session: aiohttp.ClientSession | None = None,
        max_retries: int = 3,
        clock: Clock | None = None,
        scheduler: Scheduler | None = None,
        transport: Transport | None = None,
        retry_policy: RetryPolicy | None = None,
        budget_url: str | None = None,
    ) -> None:
        api_key = api_key if api_key is not None else os.environ.get("AMPLITUDE_API_KEY")
        secret_key = (
            secret_key if secret_key is not None else os.environ.get("AMPLITUDE_SECRET_KEY")
        )
        key, secret = check_credentials(api_key, secret_key)
        if region not in BASE_URLS:
            raise ConfigurationError(
                "region", f"must be one of {sorted(BASE_URLS)}, got {region!r}"
            )
        if timeout <= 0:
            raise ConfigurationError("timeout", f"must be positive, got {timeout!r}")
        if max_retries < 0:
            raise ConfigurationError("max_retries", f"must not be negative, got {max_retries!r}")
        self.region = region
        self.base_url = (base_url or BASE_URLS[region]).rstrip("/")
        self._authorization = basic_auth(key, secret)
        if budget_url is None:
            budget_url = os.environ.get("AMPLITUDE_BUDGET_URL") or None
        self._owns_scheduler = scheduler is None
        if scheduler is None:
            scheduler = _make_scheduler(key, limits or Limits(), clock, timeout, budget_url)
        elif budget_url is not None:
            raise ConfigurationError("budget_url", "give a scheduler or a budget_url, not both")
        self.scheduler = scheduler
        self.limits = scheduler.limits
        # A "rate" 429 pauses the pool for one cost window: that window is the limits' own.
        policy = retry_policy or RetryPolicy(max_retries=max_retries)
        self.retry_policy = attrs.evolve(policy, window=self.limits.window)
        self._transport: Transport = transport or AiohttpTransport(session=session, timeout=timeout)

    def __repr__(self) -> str:
        return f"<AmplitudeClient base_url={self.base_url!r} limits={self.limits!r}>"

    async def __aenter__(self) -> AmplitudeClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the transport (and the aiohttp session, if the client created it)."""
        if self._owns_scheduler:
            await self.scheduler.aclose()
        await self._transport.aclose()

    def statistics(self) -> SchedulerStatistics:
        """An immutable snapshot of the budgets, queues and counters."""
        return self.scheduler.statistics()

    async def run(self, query: Query[R], *, priority: int = 0, split: bool = False) -> R:
        """Send ``query`` once the budgets admit it and return its typed result.

        Raises :class:`~amplitude_async.errors.QueryTooExpensive` before waiting if the query
        could never fit a budget; with ``split=True`` such a query is instead cut by date range
        into chunks that fit and their results merged (see :mod:`amplitude_async.split`), where
        the merge is exact. Transient failures are retried with backoff; a 429 pauses the
        query's pool and retries the same query, so nothing is lost. Higher ``priority`` runs
        sooner (interactive work before a backfill).
        """
        if split:
            return await run_split(self, query, priority=priority)
        pool, cost = query.pool, query.cost
        self.scheduler.check(pool, cost)
        return await self._run(query, cost, priority)

    async def _run(self, query: Query[R], cost: int, priority: int) -> R:
        """:meth:`run` for a query whose ``cost`` has been computed and checked."""
        pool = query.pool
        request = build_request(self.base_url, query, authorization=self._authorization)
        attempts = Attempts()
        error: AmplitudeError | None
        while True:
            async with self.scheduler.slot(pool, cost, priority=priority) as ticket:
                try:
                    response = await self._transport.send(request)
                    body = decipher(
                        response.status, response.headers, response.body, path=request.path
                    )
                except AmplitudeError as exc:
                    error = exc
                    if isinstance(exc, TransportError):
                        # The server may still be counting it: hold its entry until its lease ends.
                        self.scheduler.abandon(ticket)
                else:
                    error = None
            if error is None:
                # result_type is the R of Query[R]; a ClassVar cannot say so to the type checker.
                return cast(R, structure_result(body, query.result_type, path=request.path))
            attempts = attempts.after(error)
            decision = self.retry_policy.decide(attempts, error)
            if isinstance(error, RateLimited):
                self.scheduler.record_rate_limited(pool)
            if not decision.retry:
                raise error
            self.scheduler.record_retry(pool)
            if decision.pause_pool:
                # Someone else spends this project's budget (or the server reads it differently):
                # hold the whole pool back, then send the same query again.
                self.scheduler.pause(pool, decision.delay)
            elif decision.delay > 0:
                await self.scheduler.clock.sleep(decision.delay)

    @overload
    async def gather(
        self,
        queries: Iterable[Query[Any]],
        *,
        priority: int = ...,
        return_exceptions: Literal[False] = ...,
    ) -> list[Any]: ...

    @overload
    async def gather(
        self,
        queries: Iterable[Query[Any]],
        *,
        priority: int = ...,
        return_exceptions: Literal[True],
    ) -> list[Any | BaseException]: ...

    async def gather(
        self,
        queries: Iterable[Query[Any]],
        *,
        priority: int = 0,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Run every query; return their results in input order.

        With ``return_exceptions=False`` the first failure cancels what has not finished and is
        raised; with ``True`` failures take the place of their results.
        """
        batch = list(queries)
        results: list[Any] = [None] * len(batch)
        async for index, outcome in self._stream(batch, priority, capture=return_exceptions):
            results[index] = outcome
        return results

    async def as_completed(
        self, queries: Iterable[Query[Any]], *, priority: int = 0
    ) -> AsyncIterator[tuple[Query[Any], Any]]:
        """Yield ``(query, result)`` pairs as they complete; the first failure is raised."""
        batch = queries if isinstance(queries, list) else list(queries)
        async for index, outcome in self._stream(batch, priority, capture=False):
            yield batch[index], outcome

    async def _stream(
        self, batch: list[Query[Any]], priority: int, *, capture: bool
    ) -> AsyncIterator[tuple[int, Any]]:
        # Every cost is checked before anything is sent, so a hopeless query in a batch fails
        # the batch up front instead of after the others have spent budget.
        costs = [query.cost for query in batch]
        for query, cost in zip(batch, costs, strict=True):
            self.scheduler.check(query.pool, cost)
        done: asyncio.Queue[tuple[int, Any, BaseException | None]] = asyncio.Queue()
        pending: set[asyncio.Task[None]] = set()

        async def one(index: int, query: Query[Any]) -> None:
            try:
                result = await self._run(query, costs[index], priority)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                done.put_nowait((index, None, exc))
            else:
                done.put_nowait((index, result, None))

        indices = iter(range(len(batch)))

        def top_up() -> None:
            while len(pending) < DEFAULT_LOOKAHEAD:
                index = next(indices, None)
                if index is None:
                    return
                task = asyncio.create_task(one(index, batch[index]))
                pending.add(task)
                task.add_done_callback(pending.discard)

        top_up()
        remaining = len(batch)
        try:
            while remaining:
                index, result, error = await done.get()
                remaining -= 1
                top_up()
                if error is not None and not capture:
                    raise error
                yield index, (error if error is not None else result)
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)

    active_users = _endpoint(ActiveUsers)
    session_length_distribution = _endpoint(SessionLengthDistribution)
    average_session_length = _endpoint(AverageSessionLength)
    sessions_per_user = _endpoint(SessionsPerUser)
    user_composition = _endpoint(UserComposition)
    events_list = _endpoint(EventsList)
    event_segmentation = _endpoint(EventSegmentation)
    funnel = _endpoint(Funnel)
    retention = _endpoint(Retention)
    user_activity = _endpoint(UserActivity)
    user_search = _endpoint(UserSearch)
    realtime_active_users = _endpoint(RealtimeActiveUsers)
    revenue_ltv = _endpoint(RevenueLTV)
    chart_csv = _endpoint(ChartCSV)
    chart_query = _endpoint(ChartQuery)
