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

A request's claim time is set when a decision first sees it: that time, plus
``starvation_bound``, plus the time the budgets need at full use to admit all the weight then
waiting in its pool, its own and that of requests queued with it included (weight times the
largest ``length / budget`` of the pool's windows). A request is only starving once it has
waited longer than the work queued with it takes to run: in a batch of twenty windows of work,
a request still waiting after three windows is not, and granting it a reservation would only
cost packing (measured in ``benchmarks/sim_packing.py``). A request queued behind a stream of
cheap ones that keep the queue short gets a claim close to ``starvation_bound``.

So the scheduler is work-conserving (a request waits only if it does not fit, or admitting it
could delay a reserved one), and waits are bounded: a starved request becomes the reservation
holder once the starved ones with earlier claims are admitted, and from then on it waits at most
the longest response time plus the longest window that binds it (every entry it needs gone has
completed by then, and nothing admitted meanwhile stands in its way). Only starved requests
with earlier claims can be ahead of it, and all of them were queued before its claim time.

Waiters are bucketed by (priority, weight); a decision costs O(d log d) for d distinct waiting
costs (at most the window budget), independent of how many requests are queued, and
O(log n) in the n entries the ledger holds (see :class:`~amplitude_async.budget.PoolLedger`).

How decisions run: with the in-process store (the default) a decision needs no I/O, so it is
one synchronous loop callback, scheduled once per loop turn by whatever changed, with the
loop's own timer for the next expiry or claim; with any other store a driver task awaits the
store. Either way a request that queues is decided one loop turn later, together with every
request queued in the same turn, so a burst is packed as a whole. Two shortcuts leave the
outcome unchanged: a pool whose in-flight cap is full is not looked at until a completion (no
admission is possible before one), and when every waiter of a pool has the same priority and
weight and no claim is due, heads are admitted while they fit without taking a snapshot.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import Final

from aiolimiter import AsyncLimiter
from attrs import field, frozen

from .budget import (
    BudgetStore,
    EntryId,
    InMemoryBudgetStore,
    NotYet,
    PoolLedger,
    PoolSnapshot,
    Taken,
    WindowUsage,
    check_cost,
    largest_first,
    pool_windows,
    weight_of,
)
from .clock import Clock, LoopClock
from .limits import DEFAULT_LIMITS, Limits, Pool

__all__ = [
    "PoolStatistics",
    "Scheduler",
    "SchedulerStatistics",
    "Slot",
    "Ticket",
]

DEFAULT_STARVATION_WINDOWS: Final = 3.0
"""Default starvation bound, in windows of the limits."""

PACING_STEPS: Final = 10
"""With ``pacing=True`` bursts are limited to this fraction (1/N) of the window budget."""


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
    """One pool's state and counters at the time of the snapshot."""

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


@frozen
class SchedulerStatistics:
    """An immutable snapshot of a :class:`Scheduler` (see :meth:`Scheduler.statistics`)."""

    time: float
    pools: tuple[PoolStatistics, ...] = field(repr=False)

    def __getitem__(self, pool: Pool) -> PoolStatistics:
        for stats in self.pools:
            if stats.pool is pool:
                return stats
        raise KeyError(pool)

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


# Waiter states.
_WAITING: Final = 0
_PLANNED: Final = 1  # chosen by a decision, its entry being taken
_DONE: Final = 2  # granted or cancelled


class _Waiter:
    __slots__ = ("cost", "enqueued_at", "future", "priority", "seq", "state", "ticket", "weight")

    def __init__(
        self,
        cost: int,
        weight: int,
        priority: int,
        enqueued_at: float,
        seq: int,
        future: asyncio.Future[Ticket],
    ) -> None:
        self.cost = cost
        self.weight = weight
        self.priority = priority
        self.enqueued_at = enqueued_at
        self.seq = seq
        self.future = future
        self.state = _WAITING
        self.ticket: Ticket | None = None  # set by the decision that grants it


class _Bucket:
    """Waiters of one (priority, weight), in arrival order; dead ones are skipped lazily."""

    __slots__ = ("live", "waiters")

    def __init__(self) -> None:
        self.waiters: deque[_Waiter] = deque()
        self.live = 0

    def head(self) -> _Waiter:
        while self.waiters[0].state != _WAITING:
            self.waiters.popleft()
        return self.waiters[0]


class _Batch:
    """Waiters that got their claim time from the same decision, in arrival order."""

    __slots__ = ("pos", "waiters")

    def __init__(self, waiters: list[_Waiter]) -> None:
        self.waiters = waiters
        self.pos = 0  # waiters before it are done


class _PoolQueue:
    """The waiting requests of one pool."""

    def __init__(self) -> None:
        self.levels: dict[int, dict[int, _Bucket]] = {}
        # Claim order for the starvation rule: one heap entry per decision's batch of fresh
        # waiters (they share a claim time), keyed by (claim time, first arrival). Batches hold
        # disjoint, increasing ranges of arrivals, so the first live waiter of the top batch is
        # the earliest claim overall.
        self.claims: list[tuple[float, int, _Batch]] = []
        # Queued since the last decision: their claims are set by the next one.
        self.fresh: list[_Waiter] = []
        self.count = 0
        self.backlog = 0  # total weight waiting

    def add(self, waiter: _Waiter) -> None:
        buckets = self.levels.get(waiter.priority)
        if buckets is None:
            buckets = self.levels[waiter.priority] = {}
        bucket = buckets.get(waiter.weight)
        if bucket is None:
            bucket = buckets[waiter.weight] = _Bucket()
        bucket.waiters.append(waiter)
        bucket.live += 1
        self.fresh.append(waiter)
        self.count += 1
        self.backlog += waiter.weight

    def _unlink(self, waiter: _Waiter) -> None:
        buckets = self.levels[waiter.priority]
        bucket = buckets[waiter.weight]
        bucket.live -= 1
        self.count -= 1
        self.backlog -= waiter.weight
        if not bucket.live:
            del buckets[waiter.weight]
            if not buckets:
                del self.levels[waiter.priority]

    def discard(self, waiter: _Waiter) -> None:
        """Forget a waiting ``waiter`` (cancelled)."""
        self._unlink(waiter)
        waiter.state = _DONE

    def plan(self, waiter: _Waiter) -> None:
        """Take ``waiter`` out of the queue for admission."""
        self._unlink(waiter)
        waiter.state = _PLANNED

    def restore(self, waiter: _Waiter) -> None:
        """Put back a planned waiter whose entry could not be taken, at the head of its bucket."""
        if waiter.future.done():
            waiter.state = _DONE
            return
        bucket = self.levels.setdefault(waiter.priority, {}).setdefault(waiter.weight, _Bucket())
        bucket.waiters.appendleft(waiter)
        bucket.live += 1
        self.count += 1
        self.backlog += waiter.weight
        waiter.state = _WAITING

    def set_claims(self, claim_at: float) -> None:
        """Give the waiters queued since the last decision their claim time."""
        fresh = self.fresh
        if fresh:
            heapq.heappush(self.claims, (claim_at, fresh[0].seq, _Batch(fresh)))
            self.fresh = []

    def first_claim(self) -> tuple[float, _Waiter] | None:
        """The waiting waiter with the earliest claim, and its claim time."""
        claims = self.claims
        while claims:
            claim_at, _, batch = claims[0]
            waiters, pos = batch.waiters, batch.pos
            while pos < len(waiters) and waiters[pos].state == _DONE:
                pos += 1
            batch.pos = pos
            if pos == len(waiters):
                heapq.heappop(claims)
                continue
            if waiters[pos].state == _WAITING:
                return claim_at, waiters[pos]
            # A planned head (only while a decision takes its entries): look further, the
            # slow way; there are at most a few planned waiters.
            return min(
                ((at, w) for at, _, b in claims for w in b.waiters[b.pos :] if w.state == _WAITING),
                key=lambda item: (item[0], item[1].seq),
                default=None,
            )
        return None

    def oldest_at(self, priority: int) -> _Waiter:
        return min((b.head() for b in self.levels[priority].values()), key=lambda w: w.seq)

    def items(self, priority: int) -> list[tuple[int, int]]:
        return [(weight, b.live) for weight, b in self.levels[priority].items()]


class Scheduler:
    """Admits requests so every budget of :class:`Limits` is used but never exceeded.

    ``clock`` defaults to the running loop's clock; ``store`` to a fresh in-process
    :class:`InMemoryBudgetStore` for ``limits``. ``starvation_bound`` (seconds; default three
    windows) is how much longer than the work queued with it needs a request may wait before it
    outranks everything else (see the module docstring; ``inf`` disables the rule).
    ``pacing=True`` also spreads standard-pool dispatches over the window with an
    :class:`aiolimiter.AsyncLimiter` (bursts of at most a tenth of the window budget); an
    ``AsyncLimiter`` may be passed instead.
    Pacing only delays: the budgets are enforced by the scheduler either way.
    """

    def __init__(
        self,
        limits: Limits = DEFAULT_LIMITS,
        *,
        clock: Clock | None = None,
        store: BudgetStore | None = None,
        starvation_bound: float | None = None,
        pacing: bool | AsyncLimiter | None = None,
    ) -> None:
        if store is not None:
            limits = store.limits
        self.limits = limits
        self._clock: Clock = clock if clock is not None else LoopClock()
        self._store: BudgetStore = store if store is not None else InMemoryBudgetStore(limits)
        if starvation_bound is None:
            starvation_bound = DEFAULT_STARVATION_WINDOWS * limits.window
        if starvation_bound < 0:
            raise ValueError(f"starvation_bound must not be negative, got {starvation_bound!r}")
        self.starvation_bound = starvation_bound
        # Seconds the budgets need, at full use, to admit one unit of weight of each pool.
        self._drain = {
            pool: max(w.length / w.budget for w in pool_windows(limits, pool)) for pool in Pool
        }
        if pacing is True:
            steps = PACING_STEPS
            pacing = AsyncLimiter(max(1, limits.cost_per_window // steps), limits.window / steps)
        self._pacer: AsyncLimiter | None = pacing or None
        self._queues = {pool: _PoolQueue() for pool in Pool}
        self._seq = itertools.count()
        # The largest weight each pool's windows could ever admit, for the cheap cost check.
        self._max_weight = {
            pool: min(w.budget for w in pool_windows(limits, pool)) for pool in Pool
        }
        # A local store needs no I/O, so decisions on it run synchronously in one loop callback
        # instead of a driver task awaiting the store (see _notify).
        self._ledgers: Mapping[Pool, PoolLedger] | None = (
            self._store.ledgers if isinstance(self._store, InMemoryBudgetStore) else None
        )
        self._decision_due = False  # a local decision is scheduled for the next loop turn
        self._alarm: asyncio.TimerHandle | asyncio.Task[None] | None = None
        self._alarm_at = math.inf
        self._driver: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._dirty = False
        self._paused: dict[Pool, float] = {}
        self._pause_sent: dict[Pool, float] = {}
        self._counters = {pool: dict.fromkeys(_COUNTERS, 0) for pool in Pool}

    @property
    def clock(self) -> Clock:
        """The clock the scheduler reads."""
        return self._clock

    def check(self, pool: Pool, cost: int) -> None:
        """Raise :class:`~amplitude_async.errors.QueryTooExpensive` if ``cost`` can never run."""
        if cost < 0 or weight_of(pool, cost) > self._max_weight[pool]:
            check_cost(self.limits, pool, cost)

    def slot(self, pool: Pool, cost: int, *, priority: int = 0) -> Slot:
        """Return an async context manager that waits for admission and yields a :class:`Ticket`.

        Raises :class:`~amplitude_async.errors.QueryTooExpensive` at once if the cost exceeds a
        whole budget. Higher ``priority`` goes sooner. Cancelled while waiting: nothing is taken.
        Cancelled inside the block: the entry completes at the cancellation time (the server
        already counted the request).
        """
        self.check(pool, cost)
        return Slot(self, pool if type(pool) is Pool else Pool(pool), cost, priority)

    def pause(self, pool: Pool, seconds: float) -> None:
        """Admit nothing in ``pool`` for ``seconds`` from now (extends a pause, never shortens)."""
        until = self._clock.time() + seconds
        if until > self._paused.get(pool, -math.inf):
            self._paused[pool] = until
            self._notify()

    def record_rate_limited(self, pool: Pool) -> None:
        """Count a 429 answer in ``pool``."""
        self._counters[pool]["rate_limited"] += 1

    def record_retry(self, pool: Pool) -> None:
        """Count a retried request in ``pool``."""
        self._counters[pool]["retries"] += 1

    def statistics(self) -> SchedulerStatistics:
        """Return an immutable snapshot: per pool usage, queue and counters."""
        now = self._clock.time()
        pools = []
        for pool in Pool:
            snap = self._store.peek(pool, now)
            paused_until = max(snap.paused_until, self._paused.get(pool, -math.inf))
            counters = self._counters[pool]
            pools.append(
                PoolStatistics(
                    pool=pool,
                    in_flight=snap.in_flight,
                    queued=self._queues[pool].count,
                    paused_until=paused_until if paused_until > now else None,
                    windows=snap.usage(),
                    requests_sent=counters["requests_sent"],
                    cost_sent=counters["cost_sent"],
                    completed=counters["completed"],
                    cancelled_waiting=counters["cancelled_waiting"],
                    rate_limited=counters["rate_limited"],
                    retries=counters["retries"],
                )
            )
        return SchedulerStatistics(time=now, pools=tuple(pools))

    def __repr__(self) -> str:
        queued = {str(p): q.count for p, q in self._queues.items() if q.count}
        return f"<Scheduler limits={self.limits!r} queued={queued}>"

    # -- waiting --------------------------------------------------------------------------

    async def _acquire(self, pool: Pool, cost: int, priority: int) -> Ticket:
        weight = weight_of(pool, cost)
        if self._pacer is not None and pool is Pool.STANDARD and cost:
            # Before queueing, so pacing never holds budget.
            await self._pacer.acquire(min(cost, self._pacer.max_rate))
        queue = self._queues[pool]
        waiter = _Waiter(
            cost,
            weight,
            priority,
            self._clock.time(),
            next(self._seq),
            asyncio.get_running_loop().create_future(),
        )
        queue.add(waiter)
        self._notify()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter.state == _WAITING:
                queue.discard(waiter)
                self._counters[pool]["cancelled_waiting"] += 1
                self._notify()  # it may have held the reservation
            elif waiter.ticket is not None:
                # Granted, but cancelled before the request could be sent: give it back, even
                # if cancelled again while a remote store is being told.
                await asyncio.shield(self._release(pool, waiter.ticket.entry))
                self._counters[pool]["cancelled_waiting"] += 1
                self._counters[pool]["requests_sent"] -= 1
                self._counters[pool]["cost_sent"] -= waiter.ticket.cost
                self._notify()
            # A planned waiter is dealt with by the decision that planned it.
            raise

    async def _complete(self, ticket: Ticket) -> None:
        now = self._clock.time()
        if self._ledgers is not None:
            self._ledgers[ticket.pool].complete(ticket.entry, now)
        else:
            await self._store.complete(ticket.pool, ticket.entry, now)
        self._counters[ticket.pool]["completed"] += 1
        self._notify()

    async def _release(self, pool: Pool, entry: EntryId) -> None:
        if self._ledgers is not None:
            self._ledgers[pool].release(entry)
        else:
            await self._store.release(pool, entry)

    # -- deciding -------------------------------------------------------------------------

    def _waiting(self) -> bool:
        return any(q.count for q in self._queues.values())

    def _notify(self) -> None:
        """Something changed: decide again one loop turn later, so a burst of requests queued
        together is decided together."""
        if self._ledgers is not None:
            if not self._decision_due and self._waiting():
                self._decision_due = True
                asyncio.get_running_loop().call_soon(self._decide_local)
        elif self._driver is None:
            if self._waiting():
                self._driver = asyncio.get_running_loop().create_task(self._drive())
        elif self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        else:
            self._dirty = True

    def _set_alarm(self, when: float) -> None:
        """Decide again at ``when`` on the scheduler's clock (``inf``: never). There is one
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
        if self._ledgers is not None:
            self._decide_local()
        elif self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _decide_local(self) -> None:
        """Admit what can be admitted now from the local ledgers; set the alarm for the next
        decision that time alone makes due."""
        self._decision_due = False
        assert self._ledgers is not None
        wake_at = math.inf
        for pool, queue in self._queues.items():
            if not queue.count:
                continue
            ledger = self._ledgers[pool]
            now = self._clock.time()
            self._set_claims(pool, queue, now)
            if ledger.in_flight >= ledger.cap:
                # Nothing can be admitted before a completion, and a completion decides again.
                continue
            ledger.pause(self._paused.get(pool, -math.inf))
            if self._admit_uniform(pool, queue, ledger, now) and (
                not queue.count or ledger.in_flight >= ledger.cap
            ):
                continue
            snap = ledger.snapshot(now)
            planned = _plan(queue, snap)
            for index, waiter in enumerate(planned):
                taken = ledger.try_take(waiter.weight, now)
                if isinstance(taken, NotYet):  # pragma: no cover - the plan only admits fits
                    for rest in reversed(planned[index:]):
                        queue.restore(rest)
                    break
                if not self._grant(pool, waiter, taken.entry, now):  # pragma: no cover
                    ledger.release(taken.entry)
            wake_at = min(wake_at, self._next_decision(queue, snap))
        self._set_alarm(wake_at if self._waiting() else math.inf)

    def _admit_uniform(self, pool: Pool, queue: _PoolQueue, ledger: PoolLedger, now: float) -> bool:
        """The common case of a batch of like requests, without a snapshot: if every waiter
        has the same priority and weight and no claim is due, admit them in arrival order while
        they fit, which is what :func:`_plan` would choose. Returns whether it applied."""
        if len(queue.levels) != 1:
            return False
        (buckets,) = queue.levels.values()
        if len(buckets) != 1:
            return False
        first = queue.first_claim()
        if first is not None and first[0] <= now:
            return False
        ((weight, bucket),) = buckets.items()
        while bucket.live and ledger.fits(weight, now):
            waiter = bucket.head()
            queue.plan(waiter)
            taken = ledger.try_take(weight, now)
            assert isinstance(taken, Taken)
            if not self._grant(pool, waiter, taken.entry, now):  # pragma: no cover
                ledger.release(taken.entry)
        return True

    def _set_claims(self, pool: Pool, queue: _PoolQueue, now: float) -> None:
        if queue.fresh:
            queue.set_claims(now + self.starvation_bound + queue.backlog * self._drain[pool])

    @staticmethod
    def _next_decision(queue: _PoolQueue, snap: PoolSnapshot) -> float:
        """When time alone could change this pool's decision: an expiry, a pause's end or the
        next claim falling due."""
        wake_at = snap.next_change()
        first = queue.first_claim()
        if first is not None and first[0] > snap.now:
            wake_at = min(wake_at, first[0])
        return wake_at

    async def _drive(self) -> None:
        """The decision loop for a store that may do I/O."""
        try:
            while self._waiting():
                self._dirty = False
                wake_at = await self._decide()
                if self._dirty or not self._waiting():
                    continue
                await self._sleep_until(wake_at)
        finally:
            self._driver = None
            self._set_alarm(math.inf)

    async def _sleep_until(self, when: float) -> None:
        self._wakeup = asyncio.get_running_loop().create_future()
        self._set_alarm(when)
        try:
            await self._wakeup
        finally:
            self._wakeup = None

    async def _decide(self) -> float:
        """Admit what can be admitted now; return when the next decision is due."""
        wake_at = math.inf
        for pool, queue in self._queues.items():
            if not queue.count:
                continue
            now = self._clock.time()
            pause = self._paused.get(pool, -math.inf)
            if pause > self._pause_sent.get(pool, -math.inf):
                await self._store.pause(pool, pause)
                self._pause_sent[pool] = pause
            self._set_claims(pool, queue, now)
            snap = await self._store.snapshot(pool, now)
            planned = _plan(queue, snap)
            for index, waiter in enumerate(planned):
                taken = await self._store.try_take(pool, waiter.weight, now)
                if isinstance(taken, NotYet):
                    # The store disagrees (shared with other processes): retry when it says.
                    for rest in reversed(planned[index:]):
                        queue.restore(rest)
                    wake_at = min(wake_at, taken.earliest)
                    break
                if not self._grant(pool, waiter, taken.entry, now):
                    # Cancelled after it was chosen: give the room back and decide again.
                    await self._store.release(pool, taken.entry)
                    self._dirty = True
            wake_at = min(wake_at, self._next_decision(queue, snap))
        return wake_at

    def _grant(self, pool: Pool, waiter: _Waiter, entry: EntryId, now: float) -> bool:
        """Hand ``entry`` to a planned ``waiter``; ``False`` if it was cancelled meanwhile (the
        caller releases the entry)."""
        waiter.state = _DONE
        if waiter.future.done():
            self._counters[pool]["cancelled_waiting"] += 1
            return False
        ticket = Ticket(pool, waiter.cost, waiter.priority, entry, waiter.enqueued_at, now)
        waiter.ticket = ticket
        waiter.future.set_result(ticket)
        counters = self._counters[pool]
        counters["requests_sent"] += 1
        counters["cost_sent"] += waiter.cost
        return True


_COUNTERS: Final = (
    "requests_sent",
    "cost_sent",
    "completed",
    "cancelled_waiting",
    "rate_limited",
    "retries",
)


def _plan(queue: _PoolQueue, snap: PoolSnapshot) -> list[_Waiter]:
    """Choose the waiters to admit at ``snap.now`` and mark them planned (see the module doc)."""
    if snap.paused or not snap.slots:
        return []
    now = snap.now
    room, slots = snap.room(), snap.slots
    planned: list[_Waiter] = []
    taken = 0
    reserved: _Waiter | None = None

    def admit(waiter: _Waiter) -> None:
        nonlocal room, slots, taken
        queue.plan(waiter)
        planned.append(waiter)
        room -= waiter.weight
        slots -= 1
        taken += waiter.weight

    def reserve(waiter: _Waiter) -> None:
        # Others may only use room the reserved waiter will not need, and must leave it a slot.
        nonlocal room, slots, reserved
        reserved = waiter
        when = snap.earliest_fit(waiter.weight + taken, slots=len(planned) + 1)
        if when == math.inf:
            room, slots = 0, 0
            return
        room = min(room, snap.room_at(when) - taken - waiter.weight)
        slots -= 1

    # Only the first starved waiter claims: admitting every starved one first would turn a
    # long backlog that outlived its claims into claim (nearly FIFO) order and ruin the packing.
    first = queue.first_claim()
    if first is not None and first[0] <= now:
        if first[1].weight <= room:
            admit(first[1])
        else:
            reserve(first[1])

    levels = sorted(queue.levels, reverse=True)
    for index, priority in enumerate(levels):
        if slots <= 0 or room < 0:
            break
        if priority not in queue.levels:
            continue
        for weight, count in largest_first(queue.items(priority), room, slots).items():
            for _ in range(count):
                admit(queue.levels[priority][weight].head())
        # A reservation only restrains the lower priorities still to come.
        if reserved is None and index + 1 < len(levels) and priority in queue.levels:
            reserve(queue.oldest_at(priority))
    return planned


class Slot:
    """The async context manager returned by :meth:`Scheduler.slot`."""

    __slots__ = ("_cost", "_pool", "_priority", "_scheduler", "_ticket")

    def __init__(self, scheduler: Scheduler, pool: Pool, cost: int, priority: int) -> None:
        self._scheduler = scheduler
        self._pool = pool
        self._cost = cost
        self._priority = priority
        self._ticket: Ticket | None = None

    async def __aenter__(self) -> Ticket:
        if self._ticket is not None:
            raise RuntimeError("a Slot can be entered only once")
        self._ticket = await self._scheduler._acquire(self._pool, self._cost, self._priority)
        return self._ticket

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._ticket is not None
        # The server has counted this request: its completion must reach the store even if
        # this task is cancelled while a remote store is being told, or the in-flight slot
        # would be held forever.
        await asyncio.shield(self._scheduler._complete(self._ticket))
