"""The asyncio client: every request passes the cost-aware scheduler, then the transport.

``AmplitudeClient.run(query)`` checks the query's cost against the budgets, waits until the
scheduler admits it, sends it, retries transient failures (and 429s, after pausing the pool),
and decodes the answer into the query's typed result.

Closing: :meth:`AmplitudeClient.aclose` refuses new calls at once, cancels the calls still
waiting (in the scheduler's queue or between retries) and lets the requests already on the wire
finish, for at most ``grace`` seconds if one is given; only then does it close the session.
Every caller gets its result or :class:`~amplitude_async.errors.ClientClosed`; a request cut by
the close is never sent again.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from datetime import date
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar, overload

import aiohttp

from ._settings import check_number, check_priority
from .batch import DEFAULT_LOOKAHEAD, TASK_NAME, Batch
from .cache import CachePolicy, ResultCache
from .call import Call
from .chunks import run_chunks
from .clock import Clock
from .cohort_calls import CohortMethods
from .cohorts import (
    CohortFlow,
)
from .errors import (
    AmplitudeError,
    ClientClosed,
    RateLimited,
    TransportError,
)
from .inflight import Tracked
from .limits import Limits
from .observe import EventHooks
from .options import (
    check_client_options,
    default_transport,
    make_observer,
    make_retry_policy,
    make_scheduler,
)
from .queries import (
    ActiveUsers,
    AverageSessionLength,
    ChartCSV,
    ChartQuery,
    CohortsList,
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
from .results import bind_query
from .retry import NO_ATTEMPTS, RetryPolicy
from .sansio import (
    BASE_URLS,
    Redactor,
    Request,
    basic_auth,
    build_request,
    check_base_url,
    check_credentials,
    decipher,
)
from .savers import ClientStatistics, Savers
from .scheduler import Scheduler
from .transport import DEFAULT_MAX_BODY_BYTES, Transport

__all__ = [
    "DEFAULT_LOOKAHEAD",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_TIMEOUT",
    "TASK_NAME",
    "AmplitudeClient",
]

R = TypeVar("R")
P = ParamSpec("P")

DEFAULT_TIMEOUT = 60.0
"""Seconds before one request is abandoned (Amplitude itself may hang ~30 s instead of a 429)."""


def _endpoint(
    cls: Callable[P, Query[R]],
) -> Callable[Concatenate[AmplitudeClient, P], Awaitable[R]]:
    """Make a client method that builds ``cls(*args, **kwargs)`` and runs it."""

    async def method(self: AmplitudeClient, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self.run(cls(*args, **kwargs))

    name = getattr(cls, "__name__", "query")
    method.__doc__ = f"Build a :class:`~amplitude_async.queries.{name}` and :meth:`run` it."
    return method


class AmplitudeClient(CohortMethods):
    """Cost-aware client for one Amplitude project.

    Credentials fall back to ``AMPLITUDE_API_KEY`` / ``AMPLITUDE_SECRET_KEY``. ``region="eu"``
    selects the EU host; ``base_url`` overrides both (the built-in emulator, a proxy). ``limits``
    are the project's budgets (Amplitude's documented values by default). The client owns its
    aiohttp session unless ``session`` is given. Use it as an async context manager, or call
    :meth:`aclose`.

    ``budget_url`` (or ``AMPLITUDE_BUDGET_URL``), such as ``"redis://host:6379/0"``, shares the
    project's budget with every process using the same URL and API key (see
    :class:`~amplitude_async.redis_store.RedisBudgetStore`).

    Identical queries in flight at once are sent once (``coalesce=False`` turns it off).
    ``cache`` (a :class:`~amplitude_async.cache.MemoryCache` or
    :class:`~amplitude_async.cache.RedisCache`) keeps answers for as long as ``cache_policy``
    says; the client closes it in :meth:`aclose`. See :mod:`amplitude_async.savers`.

    ``timeout`` (seconds per request) and ``max_body_bytes`` (the largest response body read;
    larger ones raise :class:`~amplitude_async.errors.ResponseTooLarge`) configure the built-in
    transport. ``max_retries`` sets the default :class:`RetryPolicy`'s count. An option beside
    the object that would ignore it (``max_retries`` with ``retry_policy``; ``session``,
    ``timeout`` or ``max_body_bytes`` with ``transport``; ``limits``, ``clock`` or ``budget_url``
    with ``scheduler``) raises :class:`~amplitude_async.errors.ConfigurationError`.

    ``event_hooks`` (``{"admitted": [...], "response": [...], "retry": [...],
    "rate_limited": [...]}``) are called with the events of :mod:`amplitude_async.observe`.
    Once the application uses OpenTelemetry, the client reports spans and metrics to
    ``tracer_provider`` and ``meter_provider`` (default: the global ones, no-op until an SDK
    sets them); ``telemetry=False`` turns that off. See :mod:`amplitude_async.otel`.
    """

    def __init__(
        self,
        api_key: str | None = None,
        secret_key: str | None = None,
        *,
        region: Literal["us", "eu"] = "us",
        base_url: str | None = None,
        limits: Limits | None = None,
        timeout: float | None = None,
        session: aiohttp.ClientSession | None = None,
        max_retries: int | None = None,
        max_body_bytes: int | None = None,
        clock: Clock | None = None,
        scheduler: Scheduler | None = None,
        transport: Transport | None = None,
        retry_policy: RetryPolicy | None = None,
        coalesce: bool = True,
        cache: ResultCache | None = None,
        cache_policy: CachePolicy | None = None,
        budget_url: str | None = None,
        event_hooks: EventHooks | None = None,
        telemetry: bool = True,
        tracer_provider: Any = None,
        meter_provider: Any = None,
    ) -> None:
        api_key = api_key if api_key is not None else os.environ.get("AMPLITUDE_API_KEY")
        secret_key = (
            secret_key if secret_key is not None else os.environ.get("AMPLITUDE_SECRET_KEY")
        )
        key, secret = check_credentials(api_key, secret_key)
        hooks = check_client_options(
            limits=limits,
            coalesce=coalesce,
            cache=cache,
            cache_policy=cache_policy,
            retry_policy=retry_policy,
            region=region,
            max_retries=max_retries,
            transport=transport,
            session=session,
            timeout=timeout,
            max_body_bytes=max_body_bytes,
            event_hooks=event_hooks,
            telemetry=telemetry,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            scheduler=scheduler,
            clock=clock,
            budget_url=budget_url,
        )
        self.region = region
        self.base_url = check_base_url(base_url if base_url is not None else BASE_URLS[region])
        self._authorization = basic_auth(key, secret)
        self._redact = Redactor.for_keys(key, secret)
        # Checked once: it bounds each request and, with a margin, the lease of its entry.
        request_timeout = DEFAULT_TIMEOUT if timeout is None else check_number("timeout", timeout)
        self._owns_scheduler = scheduler is None
        if scheduler is None:
            if budget_url is None:
                budget_url = os.environ.get("AMPLITUDE_BUDGET_URL") or None
            scheduler = make_scheduler(key, limits or Limits(), clock, request_timeout, budget_url)
        self.scheduler = scheduler
        self.limits = scheduler.limits
        self.retry_policy = make_retry_policy(retry_policy, max_retries, self.limits.window)
        self._transport: Transport = transport or default_transport(
            session, request_timeout, max_body_bytes
        )
        # Keys hash the host with the credentials: projects never share an answer.
        self.savers = Savers(
            f"{self.base_url}\n{self._authorization}",
            cache=cache,
            policy=cache_policy,
            coalesce=coalesce,
            scrub=self._redact.scrub,
        )
        self._observer = make_observer(
            self.base_url,
            self._redact,
            self.statistics,
            key,
            hooks,
            telemetry,
            tracer_provider,
            meter_provider,
        )
        self._cohorts = CohortFlow(
            runner=self,
            scheduler=scheduler,
            transport=self._transport,
            base_url=self.base_url,
            authorization=self._authorization,
            redact=self._redact,
            retry_policy=self.retry_policy,
            timeout=request_timeout,
        )
        self._closed = False
        self._calls: set[Tracked] = set()
        self._close_done = asyncio.Event()
        self._idle = asyncio.Event()  # set when the client is closed and no call is left

    def __repr__(self) -> str:
        return f"<AmplitudeClient base_url={self.base_url!r} limits={self.limits!r}>"

    async def __aenter__(self) -> AmplitudeClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` has been called: new calls raise ClientClosed."""
        return self._closed

    async def aclose(self, *, grace: float | None = None) -> None:
        """Close the client: refuse new work, settle what is under way, close the transport.

        New calls raise :class:`~amplitude_async.errors.ClientClosed` from now on. Calls still
        waiting (queued in the scheduler, paused, or backing off before a retry) are cancelled
        and raise ClientClosed; nothing of theirs is sent. Requests already sent are awaited
        (each is bounded by the client's ``timeout``), so their callers get the answer (or the
        error; a failed one is not retried); after ``grace`` seconds (default: no limit) those
        are cancelled too and raise ClientClosed.
        Then the transport is closed, with the aiohttp session if the client created it.
        Calling it again waits for the first close to finish.
        """
        if grace is not None:
            grace = check_number("grace", grace, allow_zero=True)
        if self._closed:
            await self._close_done.wait()
            return
        self._closed = True
        try:
            for call in list(self._calls):
                if not call.sending:
                    call.cancel()
            if self._calls:
                # No new call can start now; _settle sets _idle when the last one ends.
                try:
                    await asyncio.wait_for(self._idle.wait(), grace)
                except TimeoutError:
                    for call in list(self._calls):
                        call.cancel()
                    await self._idle.wait()
        finally:
            # Even if this close is itself cancelled: cut whatever is left, close the session.
            for call in list(self._calls):
                call.cancel()
            self._observer.close()
            try:
                if self._owns_scheduler:
                    await self.scheduler.aclose()
            finally:
                # Even if the scheduler's close was cancelled (it is bounded, but a caller may
                # not wait that long): the session is closed all the same.
                try:
                    await self._transport.aclose()
                    if self.savers.cache is not None:
                        await self.savers.cache.aclose()
                finally:
                    self._close_done.set()

    def statistics(self) -> ClientStatistics:
        """An immutable snapshot of the budgets, queues and counters, and the ``savings``."""
        return ClientStatistics.of(
            self.scheduler.statistics(),
            self.savers.statistics(),
            (self._cohorts.quota_usage(),),
        )

    async def run(
        self,
        query: Query[R],
        *,
        priority: int = 0,
        split: bool = False,
        bypass_cache: bool = False,
    ) -> R:
        """Send ``query`` once the budgets admit it and return its typed result.

        Raises :class:`~amplitude_async.errors.QueryTooExpensive` before waiting if the query
        could never fit a budget; with ``split=True`` such a query is instead cut by date range
        into chunks that fit and their results merged (see :mod:`amplitude_async.split`), where
        the merge is exact. Transient failures are retried with backoff; a 429 pauses the
        query's pool and retries the same query, so nothing is lost. Higher ``priority`` runs
        sooner (interactive work before a backfill). ``bypass_cache=True`` sends the query even
        if the cache holds it, and stores the fresh answer.
        """
        if split:
            return await self.run_split(query, priority=priority, bypass_cache=bypass_cache)
        return await self._execute(self._call(query, priority=priority, bypass_cache=bypass_cache))

    async def run_split(
        self,
        query: Query[R],
        *,
        priority: int = 0,
        bypass_cache: bool = False,
        start: date | None = None,
        end: date | None = None,
    ) -> R:
        """:meth:`run` with ``split=True``: ``query`` cut by date into chunks that fit the
        window budget, each run as a call of this client (coalesced, cached, scheduled), and
        the results merged (see :mod:`amplitude_async.chunks`). ``start``/``end`` run the
        query's fields over that range instead of its own, which may be longer than one
        request may cover (a daily segmentation over more than 365 days)."""
        check_priority(priority)
        if self._closed:
            raise ClientClosed(path=query.path)

        def execute(chunk: Query[R], bypass: bool) -> Awaitable[R]:
            return self._execute(self._call(chunk, priority=priority, bypass_cache=bypass))

        result = await run_chunks(
            query,
            execute,
            budget=self.limits.cost_per_window,
            bypass_cache=bypass_cache,
            start=start,
            end=end,
            cached=self.savers if self.savers.cache is not None else None,
        )
        return bind_query(result, query)

    def _call(self, query: Query[R], *, priority: int = 0, bypass_cache: bool = False) -> Call[R]:
        """A :class:`~amplitude_async.call.Call` for ``query``: its cost checked against the
        budgets (QueryTooExpensive before any wait), its priority checked."""
        if not isinstance(query, Query):
            raise TypeError(f"expected a query (such as EventSegmentation), got {query!r}")
        cost = query.cost
        self.scheduler.check(query.pool, cost)
        return Call(query, cost=cost, priority=priority, bypass_cache=bypass_cache)

    async def _execute(self, call: Call[R]) -> R:
        """Carry ``call`` through the savers, the scheduler and the transport."""
        if self._closed:
            raise ClientClosed(path=call.path)
        with self._observer.query(call.query, call.cost, call.priority):
            return await self.savers.submit(call, self._send)

    def _start(self, call: Call[R], name: str) -> asyncio.Future[R]:
        """:meth:`_execute` for a batch item when nothing observes queries: the future of its
        result, with no task of its own (the request's work runs in a task named ``name``)."""
        if self._closed:
            raise ClientClosed(path=call.path)
        return self.savers.submit(call, self._send, name=name)

    async def _send(self, call: Call[Any]) -> tuple[bytes, Any]:
        """Send ``call`` through the scheduler, with retries: its raw body and decoded JSON.

        With coalescing this runs in the flight's own task, so a close cuts the flight (and
        every caller of it gets ClientClosed), not a caller. Each attempt waits at the call's
        priority as it is then (a caller joining the flight may have raised it).
        """
        if self._closed:
            raise ClientClosed(path=call.path)
        task = asyncio.current_task()
        assert task is not None  # a coroutine awaited inside a running loop has a task
        tracked = Tracked(task)
        self._calls.add(tracked)
        try:
            pool, cost = call.pool, call.cost
            # Built once admitted: a request waiting in the scheduler holds as little as it can.
            request: Request | None = None
            attempts = NO_ATTEMPTS
            error: AmplitudeError | None
            while True:
                tracked.sending = False
                slot = self.scheduler.slot(pool, cost, priority=call.priority)
                call.waiting_in(slot)
                try:
                    ticket = await slot.__aenter__()
                finally:
                    call.waiting_in(None)
                if request is None:
                    request = build_request(
                        self.base_url,
                        call.query,
                        authorization=self._authorization,
                        encoded=call.encoded,
                    )
                # The slot is left by hand, not with ``async with``: on every call's path.
                abandoned = False
                try:
                    async with self._observer.attempt(
                        call.query, request, ticket, attempts
                    ) as attempt:
                        # From here until the answer is decoded, a close waits for this call.
                        tracked.sending = True
                        try:
                            response = await self._transport.send(request)
                            attempt.status = response.status
                            body = decipher(
                                response.status,
                                response.headers,
                                response.body,
                                path=request.path,
                                redact=self._redact,
                            )
                        except AmplitudeError as exc:
                            error = attempt.error = self._redact.scrub(exc)
                            if isinstance(exc, TransportError):
                                # The server may still be counting it: hold its entry until
                                # its lease ends.
                                self.scheduler.abandon(ticket)
                        else:
                            error = None
                except asyncio.CancelledError:
                    abandoned = True
                    raise
                finally:
                    slot.leave(abandoned=abandoned)
                if error is None:
                    return response.body, body
                attempts = attempts.after(error)
                decision = self.retry_policy.decide(attempts, error)
                await self._observer.failed(call.query, error, attempts, decision)
                if isinstance(error, RateLimited):
                    self.scheduler.record_rate_limited(pool)
                if not decision.retry:
                    raise error
                if self._closed:
                    # Sent before the close, failed after it: the close forbids sending it again.
                    raise ClientClosed(
                        "the client was closed; the failed request was not retried", path=call.path
                    ) from error
                tracked.sending = False
                self.scheduler.record_retry(pool)
                attempts = attempts.after_wait(decision.delay)
                if decision.pause_pool:
                    # Someone else spends this project's budget (or the server reads it
                    # differently): hold the whole pool back, then send the same query again.
                    self.scheduler.pause(pool, decision.delay)
                elif decision.delay > 0:
                    await self.scheduler.clock.sleep(decision.delay)
        except asyncio.CancelledError:
            # Only the close's own cancellation becomes ClientClosed (see Tracked); another
            # cancellation of the caller's task, even at the same time, passes through.
            closed_it = False
            if tracked.cut:
                tracked.cut = False  # consumed here; _settle must not take it back again
                closed_it = task.uncancel() <= tracked.cancelling
            if closed_it:
                if tracked.cut_sending:
                    what = " during the request"
                elif attempts.errors or attempts.rate_limited:
                    what = "; the failed request was not retried"
                else:
                    what = " before the request was sent"
                raise ClientClosed(f"the client was closed{what}", path=call.path) from None
            raise
        finally:
            self._settle(tracked)

    def _settle(self, call: Tracked) -> None:
        """Forget a finished call and tell a waiting :meth:`aclose`."""
        if call.cut:
            # The close's cancellation was absorbed somewhere below (the call ended without
            # it): take it back, so it cannot surface later in the caller's own code.
            call.cut = False
            call.task.uncancel()
        call.finished = True
        self._calls.discard(call)
        if self._closed and not self._calls:
            self._idle.set()

    @overload
    async def gather(
        self,
        queries: Iterable[Query[R]],
        *,
        priority: int = ...,
        return_exceptions: Literal[False] = ...,
    ) -> list[R]: ...

    @overload
    async def gather(
        self,
        queries: Iterable[Query[R]],
        *,
        priority: int = ...,
        return_exceptions: Literal[True],
    ) -> list[R | BaseException]: ...

    async def gather(
        self,
        queries: Iterable[Query[R]],
        *,
        priority: int = 0,
        return_exceptions: bool = False,
    ) -> list[R] | list[R | BaseException]:
        """Run every query; return their results in input order.

        With ``return_exceptions=False`` the first failure cancels what has not finished and is
        raised; with ``True`` failures take the place of their results. The list is typed by
        the queries' result type (``list[Any]``-like for a mix of query classes).
        """
        batch = self._batch(list(queries), priority)
        results: list[R | BaseException] = [None] * len(batch)  # type: ignore[list-item]
        async with batch:
            async for outcome in batch:
                if outcome.error is not None and not return_exceptions:
                    raise outcome.error
                results[outcome.index] = (
                    outcome.error if outcome.error is not None else outcome.unwrap()
                )
        return results

    async def as_completed(
        self, queries: Iterable[Query[R]], *, priority: int = 0
    ) -> AsyncGenerator[tuple[Query[R], R]]:
        """Yield ``(query, result)`` pairs as they complete; the first failure is raised.

        To stop early (``break``) without leaving requests running until the generator is
        garbage-collected, close it: ``async with contextlib.aclosing(client.as_completed(qs))
        as results: async for query, result in results: ...``. Closing cancels every query not
        yet finished (nothing more of them is sent) and returns once they have stopped.
        """
        items = queries if isinstance(queries, list) else list(queries)
        batch = self._batch(items, priority)
        async with batch:
            async for outcome in batch:
                yield items[outcome.index], outcome.unwrap()

    def _batch(self, queries: list[Query[R]], priority: int) -> Batch[int, R]:
        """A :class:`~amplitude_async.batch.Batch` over the queries' indices, every cost checked
        up front, so a hopeless query fails the batch before the others have spent budget."""
        if self._closed:
            raise ClientClosed()
        calls = [self._call(query, priority=priority) for query in queries]
        if self._observer.quiet():
            # Nothing would see a query's scope: each item is a future on the pipeline, and
            # the only task per query is the one that sends it.
            return Batch(range(len(calls)), lambda i: self._start(calls[i], f"{TASK_NAME}{i}"))
        return Batch(range(len(calls)), lambda i: self._execute(calls[i]))

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
    cohorts_list = _endpoint(CohortsList)
