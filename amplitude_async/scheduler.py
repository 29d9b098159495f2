"""The cost-aware scheduler: admits (pool, cost) items so the budgets are filled but never exceeded.

It knows nothing of HTTP. A caller wraps each request in ``async with scheduler.slot(pool, cost)``:
the block starts once the budgets admit the request (the entry is recorded at that moment, the
dispatch) and its exit marks the response complete. The accounting rule and why it rules out 429s
are in :mod:`amplitude_async.budget`.

Admission order, decided each time something changes (a request queues, completes or is
cancelled, an entry leaves a window, a pause ends, a waiter's claim falls due):

1. *Starved* waiters (those past their *claim time*, below) come first, earliest claim first,
   whatever their priority. The first one that does not fit holds a *reservation*.
2. Then priorities are served from the highest down. Within a priority the heaviest waiting
   cost that fits goes first, repeatedly (:func:`~amplitude_async.budget.largest_first`): the
   small requests are kept to fill the gaps that expiries leave later. If waiters of that
   priority remain (none of them fits), its oldest holds the reservation.
3. While a reservation is held, other waiters are admitted only if they cannot delay it: the
   reserved request must still fit at the earliest time it could fit from the known expiry times,
   counting in-flight requests (and those admitted now) as never expiring, and one in-flight slot
   stays free for it. When that earliest time depends on completions, nothing else is admitted.

A request's claim time is set by the first decision a *claim delay* (a tenth of the window, at
most a second: :func:`~amplitude_async.admission.claim_delay`) after the oldest request still
without a claim queued, for every request without one: that time, plus ``starvation_bound``,
plus the time the budgets need at full use to admit all the weight then waiting in its pool,
its own and that of requests queued with it included (weight times the largest
``length / budget`` of the pool's windows). The delay lets requests that several processes
queue at about the same moment count each other's work, as one process's batch does.
A request is only starving once it has waited longer than the work queued with it takes to
run: in a batch of twenty windows of work, a request still waiting after three windows is not,
and granting it a reservation would only cost packing (measured in
``benchmarks/sim_packing.py``). A request queued behind a stream of cheap ones that keep the
queue short gets a claim close to ``starvation_bound``.

So the scheduler is work-conserving (a request waits only if it does not fit, or admitting it
could delay a reserved one), and waits are bounded: a starved request becomes the reservation
holder once the starved ones with earlier claims are admitted, and from then on it waits at most
the longest response time plus the longest window that binds it (every entry it needs gone has
completed by then, and nothing admitted meanwhile stands in its way). Only starved requests
with earlier claims can be ahead of it, and all of them were queued before its claim time.

Waiters are bucketed by (priority, weight); a decision costs O(d log d) for d distinct waiting
costs (at most the window budget), independent of how many requests are queued, and
O(log n) in the n entries the ledger holds (see :class:`~amplitude_async.budget.PoolLedger`).

Where decisions run: in the budget store (:mod:`amplitude_async.admission`), over the waiters
of every process sharing it. The scheduler is the store's client for one process: one task
sends the store everything that changed since its last exchange (requests queued or cancelled,
responses completed) and hands the grants that come back to the waiting requests. A request
that queues is sent one loop turn later, with every request queued in the same turn, so a
burst is decided as a whole. The store answers with the time until the next decision that time
alone makes due (to one process at a time: the one keeping time for the shared queue, whose
decision then serves every process); the scheduler exchanges again then, and at least every
third of its lease term while it has requests waiting or in flight (that renews their
leases). The in-process store (the default) is simply a store whose exchanges never suspend.

If the store fails (Redis unreachable or frozen), nothing is admitted: exchanges are retried,
and a waiting request ends with :class:`~amplitude_async.errors.BudgetUnavailable` once the
store has been unavailable for ``unavailable_wait`` seconds of its wait -- at the latest when
the exchange under way then fails (a Redis store's call timeout, 5 s by default) plus
:data:`RETRY_MAX`. Requests already in flight finish normally; their completions are sent when
the store answers again. An exchange whose answer never arrived is made harmless by the next
one, which says what this process really holds (see :mod:`amplitude_async.admission`); after a
failure the scheduler always exchanges again, even with nothing else to say, so a grant whose
answer was lost is given back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import secrets
from collections.abc import Sequence
from types import TracebackType
from typing import Final

from aiolimiter import AsyncLimiter
from attrs import define, field, frozen

from ._settings import check_instance, check_number, check_priority
from .admission import (
    BudgetStore,
    BudgetUsage,
    Changes,
    Grant,
    InMemoryBudgetStore,
    Outcome,
    Registration,
)
from .budget import EntryId, WindowUsage, check_cost, pool_windows, weight_of
from .clock import Clock, LoopClock
from .errors import AmplitudeError, BudgetUnavailable, ConfigurationError
from .limits import DEFAULT_LIMITS, Limits, Pool

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_UNAVAILABLE_WAIT",
    "HEARTBEAT",
    "LEASE_MARGIN",
    "PoolStatistics",
    "Scheduler",
    "SchedulerStatistics",
    "Slot",
    "Ticket",
]

PACING_STEPS: Final = 10
"""With ``pacing=True`` bursts are limited to this fraction (1/N) of the window budget."""

LEASE_MARGIN: Final = 30.0
"""Seconds a lease outlives the request timeout, for the server to finish counting a request
its client gave up on."""

DEFAULT_LEASE: Final = 60.0 + LEASE_MARGIN
"""Default lease term (seconds) of an in-flight entry: the client's default request timeout
plus :data:`LEASE_MARGIN`."""

DEFAULT_UNAVAILABLE_WAIT: Final = 30.0
"""Default seconds a waiting request tolerates an unavailable budget store."""

HEARTBEAT: Final = 6.0
"""Seconds the store keeps a process's waiting requests after its last exchange (at most its
lease term); the scheduler exchanges at least every third of it while requests wait."""

CLOSE_WAIT: Final = 5.0
"""Seconds :meth:`Scheduler.aclose` waits for its goodbye to the store (it carries the last
completions: lost, their slots would stay taken for a lease term)."""

_log = logging.getLogger(__name__)

RETRY_MIN: Final = 0.05
RETRY_MAX: Final = 1.0
"""Retry delays (seconds) of a failed exchange: doubling from the first to the second."""


@frozen
class Ticket:
    """An admitted request: what :meth:`Scheduler.slot` yields."""

    pool: Pool
    cost: int
    priority: int
    entry: EntryId
    queued_at: float
    dispatched_at: float

    @property
    def waited(self) -> float:
        """Seconds spent queued before admission."""
        return self.dispatched_at - self.queued_at


@frozen
class PoolStatistics:
    """One pool at the time of the snapshot.

    ``windows``, ``in_flight`` and ``queued_everywhere`` are the project's, as the budget store
    sees them (every process sharing it); ``queued`` and the counters are this process's.
    """

    pool: Pool
    in_flight: int
    queued: int
    paused_until: float | None
    windows: tuple[WindowUsage, ...]
    requests_sent: int
    cost_sent: int
    completed: int
    cancelled_waiting: int
    rate_limited: int
    retries: int
    queued_everywhere: int = 0
    requeued: int = 0
    """Waiting requests queued again at a higher priority (a caller joined their flight)."""

    def remaining(self, window: str) -> int:
        """Weight the named window (a :class:`Limits` field, such as ``"cost_per_window"``)
        could still admit now; ``KeyError`` if this pool has no such window."""
        for usage in self.windows:
            if usage.name == window:
                return usage.remaining
        raise KeyError(window)

    def __repr__(self) -> str:
        windows = ", ".join(f"{w.name}={w.used}/{w.budget}" for w in self.windows)
        paused = "" if self.paused_until is None else f" paused_until={self.paused_until:.3f}"
        return (
            f"<PoolStatistics {self.pool}: in_flight={self.in_flight} queued={self.queued} "
            f"(everywhere {self.queued_everywhere}) {windows} sent={self.requests_sent} "
            f"cost_sent={self.cost_sent} rate_limited={self.rate_limited} "
            f"retries={self.retries}{paused}>"
        )


@frozen
class SchedulerStatistics:
    """An immutable snapshot of a :class:`Scheduler` (see :meth:`Scheduler.statistics`).

    ``processes`` is how many schedulers (processes) share the budget, this one included.
    ``stats[Pool.STANDARD]`` is one pool's :class:`PoolStatistics`; the ``*_remaining``
    properties read the windows users ask about most without naming them.
    """

    time: float
    pools: tuple[PoolStatistics, ...] = field(repr=False)
    processes: int = 1

    def __getitem__(self, pool: Pool) -> PoolStatistics:
        for stats in self.pools:
            if stats.pool is pool:
                return stats
        raise KeyError(pool)

    def __repr__(self) -> str:
        pools = " ".join(repr(p) for p in self.pools)
        return f"<{type(self).__name__} time={self.time:.3f} processes={self.processes} {pools}>"

    @property
    def cost_remaining_in_window(self) -> int:
        """Cost the project could still spend in the current cost window (5 minutes)."""
        return self[Pool.STANDARD].remaining("cost_per_window")

    @property
    def cost_remaining_in_hour(self) -> int:
        """Cost the project could still spend in the current hour."""
        return self[Pool.STANDARD].remaining("cost_per_hour")

    @property
    def user_queries_remaining_in_hour(self) -> int:
        """User activity / user search queries the project could still send this hour."""
        return self[Pool.USER].remaining("user_queries_per_hour")

    @property
    def requests_sent(self) -> int:
        """Requests admitted, all pools."""
        return sum(p.requests_sent for p in self.pools)

    @property
    def rate_limited(self) -> int:
        """429 answers recorded, all pools."""
        return sum(p.rate_limited for p in self.pools)

    @property
    def retries(self) -> int:
        """Retries recorded, all pools."""
        return sum(p.retries for p in self.pools)


# Local waiter states.
_NEW: Final = 0  # not yet sent to the store
_SENT: Final = 1  # registered in the store
_CANCELLING: Final = 2  # given up; the store has not confirmed yet
_DONE: Final = 3


class _Waiter:
    __slots__ = ("cost", "future", "local", "pool", "priority", "queued_at", "state", "ticket")

    def __init__(
        self,
        local: int,
        pool: Pool,
        cost: int,
        priority: int,
        queued_at: float,
        future: asyncio.Future[Ticket],
    ) -> None:
        self.local = local
        self.pool = pool
        self.cost = cost
        self.priority = priority
        self.queued_at = queued_at
        self.future = future
        self.state = _NEW
        self.ticket: Ticket | None = None


class Scheduler:
    """Admits requests so every budget of :class:`Limits` is used but never exceeded.

    ``clock`` defaults to the running loop's clock; ``store`` to a fresh in-process
    :class:`~amplitude_async.admission.InMemoryBudgetStore` for ``limits`` on that clock (a
    shared store, such as :class:`~amplitude_async.redis_store.RedisBudgetStore`, brings its
    own limits). ``starvation_bound`` (seconds; default three windows) is how much longer than
    the work queued with it needs a request may wait before it outranks everything else (see
    the module docstring; ``inf`` disables the rule); with a given store it is the store's.
    ``lease`` (seconds) is how long an in-flight entry of this process outlives the process's
    last word to the store: give it the request timeout plus a margin. ``unavailable_wait``
    (seconds) is how long a waiting request tolerates an unreachable store.
    ``pacing=True`` also spreads standard-pool dispatches over the window with an
    :class:`aiolimiter.AsyncLimiter` (bursts of at most a tenth of the window budget); an
    ``AsyncLimiter`` may be passed instead.
    Pacing only delays: the budgets are enforced by the scheduler either way.
    """

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        clock: Clock | None = None,
        store: BudgetStore | None = None,
        starvation_bound: float | None = None,
        pacing: bool | AsyncLimiter | None = None,
        lease: float = DEFAULT_LEASE,
        unavailable_wait: float = DEFAULT_UNAVAILABLE_WAIT,
    ) -> None:
        # Every option is checked here, once, naming it (ConfigurationError, a ValueError).
        lease = check_number("lease", lease)
        unavailable_wait = check_number("unavailable_wait", unavailable_wait, allow_zero=True)
        if limits is not None:
            check_instance("limits", limits, Limits, "a Limits")
        if pacing is not None and not isinstance(pacing, bool | AsyncLimiter):
            raise ConfigurationError("pacing", f"must be a bool or an AsyncLimiter, got {pacing!r}")
        self._clock: Clock = clock if clock is not None else LoopClock()
        if store is None:
            store = InMemoryBudgetStore(
                limits or DEFAULT_LIMITS, clock=self._clock, starvation_bound=starvation_bound
            )
        else:
            if limits is not None and limits != store.limits:
                raise ConfigurationError(
                    "limits",
                    "cannot be combined with store= (the store's limits govern): "
                    "give the limits to the store",
                )
            if starvation_bound is not None and starvation_bound != store.starvation_bound:
                raise ConfigurationError(
                    "starvation_bound", "belongs to the store (store=): set it there"
                )
        self._store: BudgetStore = store
        self.limits = limits = store.limits
        self.starvation_bound = store.starvation_bound
        self.lease = lease
        self.unavailable_wait = unavailable_wait
        self.owner = secrets.token_hex(8)
        if pacing is True:
            steps = PACING_STEPS
            pacing = AsyncLimiter(max(1, limits.cost_per_window // steps), limits.window / steps)
        self._pacer: AsyncLimiter | None = pacing or None
        # The largest weight each pool's windows could ever admit, for the cheap cost check.
        self._max_weight = {
            pool: min(w.budget for w in pool_windows(limits, pool)) for pool in Pool
        }
        self._locals = itertools.count()
        self._waiters: dict[tuple[Pool, int], _Waiter] = {}  # registered or about to be
        self._queued = dict.fromkeys(Pool, 0)  # waiting here, per pool
        # Changes for the next exchange.
        self._register: list[_Waiter] = []
        self._cancel: list[tuple[Pool, int]] = []
        self._complete: list[tuple[Pool, EntryId]] = []
        self._abandon: list[tuple[Pool, EntryId]] = []
        self._release: list[tuple[Pool, EntryId]] = []
        self._pause: list[tuple[Pool, float]] = []
        # Entries this process holds (admitted, not yet completed or abandoned): renewed.
        self._held: set[tuple[Pool, EntryId]] = set()
        self._abandoned: set[tuple[Pool, EntryId]] = set()
        self._numbers = itertools.count(1)  # exchange numbers
        self._seen = ""  # the store's version in the last answer
        self._epoch: str | None = None
        self._unsure = False  # an exchange failed: its answer may have been lost
        self._beat = min(lease, HEARTBEAT)
        self._attached = False
        self._driver: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._dirty = False
        self._nudged = False  # the store asked for an exchange (another process left)
        self._alarm: asyncio.TimerHandle | asyncio.Task[None] | None = None
        self._alarm_at = math.inf
        self._last_exchange = -math.inf  # local time of the last answered exchange
        self._store_wake = math.inf  # local time the store asked to be consulted again
        self._outage_since: float | None = None
        self._paused: dict[Pool, float] = {}
        self._usage: BudgetUsage | None = None
        self._counters = {pool: _Counters() for pool in Pool}

    @property
    def clock(self) -> Clock:
        """The clock the scheduler reads."""
        return self._clock

    @property
    def store(self) -> BudgetStore:
        """The budget store deciding admissions."""
        return self._store

    def check(self, pool: Pool, cost: int) -> None:
        """Raise :class:`~amplitude_async.errors.QueryTooExpensive` if ``cost`` can never run."""
        if cost < 0 or weight_of(pool, cost) > self._max_weight[pool]:
            check_cost(self.limits, pool, cost)

    def slot(self, pool: Pool, cost: int, *, priority: int = 0) -> Slot:
        """Return an async context manager that waits for admission and yields a :class:`Ticket`.

        Raises :class:`~amplitude_async.errors.QueryTooExpensive` at once if the cost exceeds a
        whole budget. Higher ``priority`` goes sooner. Cancelled while waiting: nothing is taken.
        Cancelled inside the block: the request's fate is unknown (the server may still be
        counting it), so its entry stays in flight until its lease runs out (see
        :meth:`abandon`). :class:`~amplitude_async.errors.BudgetUnavailable` if the store stays
        unreachable.
        """
        self.check(pool, cost)
        return Slot(
            self, pool if type(pool) is Pool else Pool(pool), cost, check_priority(priority)
        )

    def pause(self, pool: Pool, seconds: float) -> None:
        """Admit nothing in ``pool`` for ``seconds`` from now, in every process sharing the
        store (extends a pause, never shortens)."""
        until = self._clock.time() + seconds
        if until > self._paused.get(pool, -math.inf):
            self._paused[pool] = until
            self._pause.append((pool, seconds))
            self._notify()

    def abandon(self, ticket: Ticket) -> None:
        """Give up on an admitted request whose fate is unknown (a timeout, a lost connection):
        its entry stays in flight until its lease runs out, then completes. Call it inside the
        slot; leaving the slot then completes nothing."""
        key = (ticket.pool, ticket.entry)
        if key in self._abandoned:
            return
        self._abandoned.add(key)
        if key in self._held:
            self._held.discard(key)
            self._abandon.append(key)
        self._notify()

    def record_rate_limited(self, pool: Pool) -> None:
        """Count a 429 answer in ``pool``."""
        self._counters[pool].rate_limited += 1

    def record_retry(self, pool: Pool) -> None:
        """Count a retried request in ``pool``."""
        self._counters[pool].retries += 1

    def statistics(self) -> SchedulerStatistics:
        """Return an immutable snapshot: the project's usage (as the store last reported it)
        beside this process's queue and counters."""
        now = self._clock.time()
        usage = self._store.usage() or self._usage
        pools = []
        for pool in Pool:
            counters = self._counters[pool]
            paused_until = self._paused.get(pool, -math.inf)
            if usage is not None:
                seen = usage[pool]
                if seen.paused_for > 0:
                    paused_until = max(paused_until, now + seen.paused_for)
                windows, in_flight, everywhere = seen.windows, seen.in_flight, seen.queued
            else:
                windows = tuple(
                    WindowUsage(w.name, w.budget, w.length, 0)
                    for w in pool_windows(self.limits, pool)
                )
                in_flight, everywhere = 0, 0
            pools.append(
                PoolStatistics(
                    pool=pool,
                    in_flight=in_flight,
                    queued=self._queued[pool],
                    paused_until=paused_until if paused_until > now else None,
                    windows=windows,
                    requests_sent=counters.requests_sent,
                    cost_sent=counters.cost_sent,
                    completed=counters.completed,
                    cancelled_waiting=counters.cancelled_waiting,
                    rate_limited=counters.rate_limited,
                    retries=counters.retries,
                    queued_everywhere=everywhere,
                    requeued=counters.requeued,
                )
            )
        return SchedulerStatistics(
            time=now,
            pools=tuple(pools),
            # This process counts even before the store has seen it.
            processes=max(1, usage.processes) if usage is not None else 1,
        )

    async def aclose(self) -> None:
        """Stop talking to the store: completions not yet sent are sent (for at most
        :data:`CLOSE_WAIT` seconds), and the store learns that this process left. Cancelling it
        still stops listening to the store and closes its connections (the Redis store bounds
        that too: :data:`~amplitude_async.redis_store.CLOSE_WAIT`)."""
        try:
            driver = self._driver
            if driver is not None:
                driver.cancel()
                # Not ``await driver``: that would swallow a cancellation of this close.
                await asyncio.wait([driver])
            self._set_alarm(math.inf)
            if self._last_exchange > -math.inf or self._has_changes():
                # Say goodbye: completions not yet sent, and the store hands this process's duty
                # of keeping time for the queue to the others at once.
                with contextlib.suppress(AmplitudeError, TimeoutError):
                    changes = self._take_changes()
                    changes.leaving = True
                    async with asyncio.timeout(min(CLOSE_WAIT, self.lease)):
                        await self._store.exchange(changes)
        finally:
            self._set_alarm(math.inf)
            if self._attached:
                self._attached = False
                await self._store.detach(self.owner)

    def __repr__(self) -> str:
        queued = {str(p): n for p, n in self._queued.items() if n}
        return f"<Scheduler limits={self.limits!r} queued={queued}>"

    # -- waiting --------------------------------------------------------------------------

    async def _acquire(self, slot: Slot) -> Ticket:
        pool, cost = slot._pool, slot._cost
        if self._pacer is not None and pool is Pool.STANDARD and cost:
            # Before queueing, so pacing never holds budget.
            await self._pacer.acquire(min(cost, self._pacer.max_rate))
        if not self._attached:
            self._attached = True
            self._store.attach(self.owner, self._on_grants)
        waiter = _Waiter(
            next(self._locals),
            pool,
            cost,
            slot._priority,
            self._clock.time(),
            asyncio.get_running_loop().create_future(),
        )
        self._waiters[pool, waiter.local] = waiter
        self._queued[pool] += 1
        self._register.append(waiter)
        slot._waiter = waiter
        self._notify()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            self._give_up(waiter)
            raise
        finally:
            slot._waiter = None

    def _reprioritize(self, waiter: _Waiter, priority: int) -> None:
        """Queue a waiting request again at a higher ``priority``.

        Not yet told to the store: only its priority changes. Registered there: it is
        cancelled in the store and registered anew under a fresh local id; a grant of the old
        registration that crosses the cancellation is given back (a placeholder stands in
        for it), so no slot is lost either way.
        """
        if waiter.future.done() or waiter.state in (_CANCELLING, _DONE):
            return
        waiter.priority = priority
        if waiter.state == _NEW:
            return
        pool = waiter.pool
        settled: asyncio.Future[Ticket] = asyncio.get_running_loop().create_future()
        settled.cancel()
        ghost = _Waiter(waiter.local, pool, waiter.cost, priority, waiter.queued_at, settled)
        ghost.state = _CANCELLING
        self._waiters[pool, waiter.local] = ghost
        self._cancel.append((pool, waiter.local))
        waiter.local = next(self._locals)
        waiter.state = _NEW
        self._waiters[pool, waiter.local] = waiter
        self._register.append(waiter)
        self._counters[pool].requeued += 1
        self._notify()

    def _give_up(self, waiter: _Waiter) -> None:
        """The waiter's task was cancelled (or failed): take nothing, give back its grant."""
        pool = waiter.pool
        counters = self._counters[pool]
        if waiter.state == _NEW:
            waiter.state = _DONE  # skipped when the registrations are sent
            del self._waiters[pool, waiter.local]
            self._queued[pool] -= 1
            counters.cancelled_waiting += 1
        elif waiter.state == _SENT:
            waiter.state = _CANCELLING
            self._queued[pool] -= 1
            self._cancel.append((pool, waiter.local))
            self._notify()  # it may have held the reservation
        elif waiter.ticket is not None:
            # Granted, but cancelled before the request could be sent: give it back.
            key = (pool, waiter.ticket.entry)
            if key in self._held:
                self._held.discard(key)
                self._release.append(key)
            counters.cancelled_waiting += 1
            counters.requests_sent -= 1
            counters.cost_sent -= waiter.ticket.cost
            self._notify()

    def _finish(self, ticket: Ticket, *, abandoned: bool) -> None:
        key = (ticket.pool, ticket.entry)
        if key in self._abandoned:
            self._abandoned.discard(key)
        elif key not in self._held:
            pass  # of a store state since lost: that store has nothing to hear of it
        elif abandoned:
            self._held.discard(key)
            self._abandon.append(key)
        else:
            self._held.discard(key)
            self._complete.append(key)
        self._counters[ticket.pool].completed += 1
        self._notify()

    def _on_grants(self, grants: Sequence[Grant]) -> None:
        """Grants for this process: from an exchange's answer, or decided by another process
        (several deliveries of one grant are possible; the first counts)."""
        if not grants:
            # A nudge: a process that kept time for the queue left; exchange to take over.
            if self._waiters or self._held:
                self._nudged = True
                self._notify()
            return
        now = self._clock.time()
        for grant in grants:
            waiter = self._waiters.pop((grant.pool, grant.local), None)
            if waiter is None:
                key = (grant.pool, grant.entry)
                if key not in self._held and key not in self._release:
                    # Not delivered twice: for a request given up here (or a duplicate of one
                    # completed since, which the store ignores): the room goes back.
                    self._release.append(key)
                    self._dirty = True
                continue
            counters = self._counters[grant.pool]
            if waiter.state == _CANCELLING or waiter.future.done():
                # Given up meanwhile: the room goes back.
                if waiter.state != _CANCELLING:
                    self._queued[grant.pool] -= 1
                waiter.state = _DONE
                self._release.append((grant.pool, grant.entry))
                counters.cancelled_waiting += 1
                self._dirty = True
                continue
            waiter.state = _DONE
            self._queued[grant.pool] -= 1
            self._held.add((grant.pool, grant.entry))
            ticket = Ticket(
                grant.pool, waiter.cost, waiter.priority, grant.entry, waiter.queued_at, now
            )
            waiter.ticket = ticket
            waiter.future.set_result(ticket)
            counters.requests_sent += 1
            counters.cost_sent += waiter.cost
        if self._release:
            self._notify()

    # -- talking to the store -------------------------------------------------------------

    def _notify(self) -> None:
        """Something changed: exchange one loop turn later, so a burst of requests queued
        together is decided together."""
        if self._driver is None:
            self._driver = asyncio.get_running_loop().create_task(self._drive())
        elif self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        else:
            self._dirty = True

    def _has_changes(self) -> bool:
        return bool(
            self._register
            or self._cancel
            or self._complete
            or self._abandon
            or self._release
            or self._pause
        )

    def _take_changes(self) -> Changes:
        register = [
            Registration(w.local, w.pool, weight_of(w.pool, w.cost), w.priority)
            for w in self._register
            if w.state == _NEW
        ]
        for waiter in self._register:
            if waiter.state == _NEW:
                waiter.state = _SENT
        changes = Changes(
            owner=self.owner,
            lease=self.lease,
            register=register,
            cancel=self._cancel,
            complete=self._complete,
            abandon=self._abandon,
            release=self._release,
            pause=self._pause,
            warm=self._clock.time() - self._last_exchange < self._warm_for,
            held=sorted(self._held),
            seq=next(self._numbers),
            seen=self._seen,
            beat=self._beat,
        )
        self._register, self._cancel, self._complete = [], [], []
        self._abandon, self._release, self._pause = [], [], []
        return changes

    def _put_back(self, changes: Changes) -> None:
        """An exchange failed: send its changes again next time (every change is idempotent)."""
        for reg in changes.register:
            waiter = self._waiters.get((reg.pool, reg.local))
            if waiter is not None and waiter.state == _SENT:
                waiter.state = _NEW
                self._register.append(waiter)
        self._cancel[:0] = changes.cancel
        self._complete[:0] = changes.complete
        self._abandon[:0] = changes.abandon
        self._release[:0] = changes.release
        self._pause[:0] = changes.pause

    @property
    def _warm_for(self) -> float:
        return max(self.limits.window, self.limits.hour) + self.lease

    def _duty(self, now: float) -> float:
        """When the next exchange is due without a local change (``inf``: the driver may stop):
        when the store asked this process to keep time for the queue, a third of the heartbeat
        after the last exchange while this process has requests waiting (so the store keeps
        them), a third of the lease term while it has requests in flight (that renews their
        leases), and at once after a failed exchange."""
        if self._unsure:
            return now
        if self._waiters:
            return min(self._store_wake, self._last_exchange + self._beat / 3)
        if self._held:
            return min(self._store_wake, self._last_exchange + self.lease / 3)
        return self._store_wake

    async def _drive(self) -> None:
        """The exchange loop; runs while this process has anything to tell or to wait for."""
        delay = RETRY_MIN
        try:
            while True:
                self._dirty = False
                now = self._clock.time()
                if not self._has_changes() and not self._nudged and self._duty(now) > now:
                    if self._duty(now) == math.inf:
                        return
                    await self._sleep_until(self._duty(now))
                    continue
                changes = self._take_changes()
                self._nudged = False
                try:
                    outcome = await self._store.exchange(changes)
                except asyncio.CancelledError:
                    # Closing: the goodbye carries these changes (completions above all); if
                    # this copy still runs, it runs first or is refused as older.
                    self._unsure = True
                    self._put_back(changes)
                    raise
                except BudgetUnavailable as exc:
                    self._unsure = True
                    self._put_back(changes)
                    if not self._unavailable(exc):
                        return
                    await self._sleep_until(self._clock.time() + delay)
                    delay = min(RETRY_MAX, delay * 2)
                    continue
                except AmplitudeError as exc:
                    # Such as ConfigurationError (this process's limits differ from the
                    # budget's): every waiter hears it.
                    self._fail_all(exc, None)
                    return
                except Exception as exc:
                    # A broken store must not leave anyone waiting forever.
                    self._fail_all(BudgetUnavailable(f"the budget store failed: {exc!r}"), exc)
                    return
                delay = RETRY_MIN
                self._outage_since = None
                self._unsure = False
                self._answered(outcome)
        finally:
            self._driver = None
            self._set_alarm(math.inf)

    def _answered(self, outcome: Outcome) -> None:
        now = self._clock.time()
        self._last_exchange = now
        self._seen = outcome.seen
        epoch = outcome.seen.rpartition(":")[0]
        if outcome.reset or (self._epoch is not None and epoch != self._epoch):
            # The store started over: what this process held belongs to the lost state (the
            # cold start accounts for it); its completions are not sent.
            self._held.clear()
        self._epoch = epoch
        if outcome.usage is not None:
            self._usage = outcome.usage
        self._store_wake = now + outcome.wake_in if outcome.wake_in < math.inf else math.inf
        for key in outcome.cancelled:
            waiter = self._waiters.pop(key, None)
            if waiter is not None:
                waiter.state = _DONE
                self._counters[key[0]].cancelled_waiting += 1
        if outcome.grants:
            self._on_grants(outcome.grants)
        if outcome.rejoined:
            # The store did not know this process (its state was lost, or this process's lease
            # ran out): register what still waits here again.
            for waiter in self._waiters.values():
                if waiter.state == _SENT:
                    waiter.state = _NEW
                    self._register.append(waiter)
                elif waiter.state == _CANCELLING:
                    waiter.state = _DONE
            self._waiters = {k: w for k, w in self._waiters.items() if w.state != _DONE}
            if self._register:
                self._dirty = True

    def _unavailable(self, exc: BudgetUnavailable) -> bool:
        """An exchange failed: fail the waiters that have tolerated it long enough. Returns
        whether to keep trying."""
        now = self._clock.time()
        if self._outage_since is None:
            self._outage_since = now
            _log.warning("budget store unavailable: %s", exc, extra={"error": str(exc)})
        since = self._outage_since
        for waiter in list(self._waiters.values()):
            if waiter.state in (_NEW, _SENT) and now - max(since, waiter.queued_at) >= (
                self.unavailable_wait
            ):
                self._fail(waiter, exc)
        if any(w.state in (_NEW, _SENT) for w in self._waiters.values()):
            return True
        if now - since < self.lease + self.unavailable_wait:
            # Keep trying while there is something to tell, including that an answer may have
            # been lost (its grants are given back by the next exchange).
            return bool(self._waiters) or self._has_changes() or bool(self._held) or self._unsure
        # By now the store (if it ever answers) has let this process's leases run out: what is
        # left to tell it no longer matters.
        self._waiters.clear()
        self._take_changes()
        return False

    def _fail(self, waiter: _Waiter, exc: BaseException) -> None:
        if waiter.state == _SENT:
            waiter.state = _CANCELLING  # the store may still hold it: cancel it there later
            self._cancel.append((waiter.pool, waiter.local))
        else:
            waiter.state = _DONE
            self._waiters.pop((waiter.pool, waiter.local), None)
        self._queued[waiter.pool] -= 1
        if not waiter.future.done():
            waiter.future.set_exception(exc)

    def _fail_all(self, error: AmplitudeError, cause: BaseException | None) -> None:
        if cause is not None:
            error.__cause__ = cause
        for waiter in list(self._waiters.values()):
            if waiter.state in (_NEW, _SENT):
                self._queued[waiter.pool] -= 1
                if not waiter.future.done():
                    waiter.future.set_exception(error)
        self._waiters.clear()
        self._register.clear()
        self._cancel.clear()

    async def _sleep_until(self, when: float) -> None:
        if self._dirty:
            return
        self._wakeup = asyncio.get_running_loop().create_future()
        self._set_alarm(when)
        try:
            await self._wakeup
        finally:
            self._wakeup = None

    def _set_alarm(self, when: float) -> None:
        """Wake the driver at ``when`` on the scheduler's clock (``inf``: never). There is one
        alarm; setting it replaces the previous one."""
        if when == self._alarm_at and self._alarm is not None:
            return
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None
        self._alarm_at = when
        if when == math.inf:
            return
        loop = asyncio.get_running_loop()
        if type(self._clock) is LoopClock:
            # The loop's own timer: far cheaper than a task that sleeps.
            self._alarm = loop.call_at(when, self._ring)
        else:
            self._alarm = loop.create_task(self._sleep_then(when))

    async def _sleep_then(self, when: float) -> None:
        await self._clock.sleep(when - self._clock.time())
        self._ring()

    def _ring(self) -> None:
        self._alarm = None
        self._alarm_at = math.inf
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)


@define
class _Counters:
    """This process's running counts for one pool (snapshotted by ``statistics()``)."""

    requests_sent: int = 0
    cost_sent: int = 0
    completed: int = 0
    cancelled_waiting: int = 0
    rate_limited: int = 0
    retries: int = 0
    requeued: int = 0


class Slot:
    """The async context manager returned by :meth:`Scheduler.slot`."""

    __slots__ = ("_cost", "_pool", "_priority", "_scheduler", "_ticket", "_waiter")

    def __init__(self, scheduler: Scheduler, pool: Pool, cost: int, priority: int) -> None:
        self._scheduler = scheduler
        self._pool = pool
        self._cost = cost
        self._priority = priority
        self._ticket: Ticket | None = None
        self._waiter: _Waiter | None = None

    @property
    def priority(self) -> int:
        """The priority the request waits at."""
        return self._priority

    def raise_priority(self, priority: int) -> None:
        """Wait at ``priority`` from now on if it is higher (re-queued in the store if the
        request is already queued there); no effect once admitted."""
        priority = check_priority(priority)
        if priority <= self._priority or self._ticket is not None:
            return
        self._priority = priority
        if self._waiter is not None:
            self._scheduler._reprioritize(self._waiter, priority)

    async def __aenter__(self) -> Ticket:
        if self._ticket is not None:
            raise RuntimeError("a Slot can be entered only once")
        self._ticket = await self._scheduler._acquire(self)
        return self._ticket

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._ticket is not None
        # Recorded at once (sent with the next exchange), so a cancellation cannot lose it. A
        # cancelled request may still be running on the server: its entry is abandoned, not
        # completed.
        self._scheduler._finish(
            self._ticket,
            abandoned=exc_type is not None and issubclass(exc_type, asyncio.CancelledError),
        )
