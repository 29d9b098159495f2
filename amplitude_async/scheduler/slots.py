"""The scheduler's API: :class:`Scheduler`, the :class:`Slot` a request waits in and the
:class:`Ticket` it is admitted with, and what happens to this process's waiting requests.

It knows nothing of HTTP. A caller wraps each request in ``async with scheduler.slot(pool, cost)``:
the block starts once the budgets admit the request (the entry is recorded at that moment, the
dispatch) and its exit marks the response complete. The accounting rule and why it rules out 429s
are in :mod:`amplitude_async.budget`; the admission order in :mod:`amplitude_async.scheduler`;
how the scheduler talks to the budget store in :mod:`~amplitude_async.scheduler.exchange`.

A request waits as a :class:`~amplitude_async.scheduler.states.Waiter`: queued here, sent to
the store by the next exchange, then granted, given up (its task cancelled) or failed (the store
unavailable for ``unavailable_wait``). A waiter queued again at a higher priority is cancelled
in the store and registered anew; a grant that crosses a cancellation is given back.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import secrets
from collections.abc import Container, Coroutine, Sequence
from types import TracebackType
from typing import Any

from aiolimiter import AsyncLimiter
from attrs import frozen

from .._settings import check_instance, check_number, check_priority
from ..admission import BudgetStore, Grant, InMemoryBudgetStore
from ..budget import EntryId, check_cost, pool_windows, weight_of
from ..clock import Clock, LoopClock
from ..errors import AmplitudeError, BudgetUnavailable, ConfigurationError
from ..limits import DEFAULT_LIMITS, Limits, Pool
from .exchange import DEFAULT_LEASE, DEFAULT_UNAVAILABLE_WAIT, Exchanger
from .pacing import check_pacing, make_pacer, pace
from .states import Waiter, WaiterState
from .statistics import Counters, SchedulerStatistics, snapshot

__all__ = ["Scheduler", "Slot", "Ticket"]

_NEW = WaiterState.NEW
_SENT = WaiterState.SENT
_CANCELLING = WaiterState.CANCELLING
_DONE = WaiterState.DONE


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


class Scheduler:
    """Admits requests so every budget of :class:`Limits` is used but never exceeded.

    ``clock`` defaults to the running loop's clock; ``store`` to a fresh in-process
    :class:`~amplitude_async.admission.InMemoryBudgetStore` for ``limits`` on that clock (a
    shared store, such as :class:`~amplitude_async.redis_store.RedisBudgetStore`, brings its
    own limits). ``starvation_bound`` (seconds; default three windows) is how much longer than
    the work queued with it needs a request may wait before it outranks everything else (see
    :mod:`amplitude_async.scheduler`; ``inf`` disables the rule); with a given store it is the
    store's.
    ``lease`` (seconds) is how long an in-flight entry of this process outlives the process's
    last word to the store: give it the request timeout plus a margin. ``unavailable_wait``
    (seconds) is how long a waiting request tolerates an unreachable store.
    ``pacing`` is optional and off by default: ``True`` also spreads standard-pool dispatches
    over the window with an :class:`aiolimiter.AsyncLimiter` (bursts of at most a tenth of the
    window budget); an ``AsyncLimiter`` may be passed instead (see
    :mod:`~amplitude_async.scheduler.pacing`). Pacing only delays: the budgets are enforced by
    the scheduler either way.
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
        pacing = check_pacing(pacing)
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
        self.limits = limits = store.limits
        self.starvation_bound = store.starvation_bound
        self.lease = lease
        self.unavailable_wait = unavailable_wait
        self.owner = secrets.token_hex(8)
        self._pacer = make_pacer(pacing, limits)
        # The largest weight each pool's windows could ever admit, for the cheap cost check.
        self._max_weight = {
            pool: min(w.budget for w in pool_windows(limits, pool)) for pool in Pool
        }
        self._locals = itertools.count()
        self._waiters: dict[tuple[Pool, int], Waiter] = {}  # registered or about to be
        self._queued = dict.fromkeys(Pool, 0)  # waiting here, per pool
        self._abandoned: set[tuple[Pool, EntryId]] = set()
        self._paused: dict[Pool, float] = {}
        self._counters = {pool: Counters() for pool in Pool}
        self._link = Exchanger(
            store,
            clock=self._clock,
            limits=limits,
            owner=self.owner,
            lease=lease,
            unavailable_wait=unavailable_wait,
            requests=self,
        )

    @property
    def clock(self) -> Clock:
        """The clock the scheduler reads."""
        return self._clock

    @property
    def store(self) -> BudgetStore:
        """The budget store deciding admissions."""
        return self._link.store

    def check(self, pool: Pool, cost: int) -> int:
        """Raise :class:`~amplitude_async.errors.QueryTooExpensive` if ``cost`` can never run;
        return its weight in ``pool``."""
        weight = weight_of(pool, cost)
        if cost < 0 or weight > self._max_weight[pool]:
            check_cost(self.limits, pool, cost)
        return weight

    def slot(self, pool: Pool, cost: int, *, priority: int = 0) -> Slot:
        """Return an async context manager that waits for admission and yields a :class:`Ticket`.

        Raises :class:`~amplitude_async.errors.QueryTooExpensive` at once if the cost exceeds a
        whole budget. Higher ``priority`` goes sooner. Cancelled while waiting: nothing is taken.
        Cancelled inside the block: the request's fate is unknown (the server may still be
        counting it), so its entry stays in flight until its lease runs out (see
        :meth:`abandon`). :class:`~amplitude_async.errors.BudgetUnavailable` if the store stays
        unreachable.
        """
        if type(pool) is not Pool:
            pool = Pool(pool)
        return Slot(self, pool, cost, self.check(pool, cost), check_priority(priority))

    def pause(self, pool: Pool, seconds: float) -> None:
        """Admit nothing in ``pool`` for ``seconds`` from now, in every process sharing the
        store (extends a pause, never shortens)."""
        until = self._clock.time() + seconds
        if until > self._paused.get(pool, -math.inf):
            self._paused[pool] = until
            self._link.pause.append((pool, seconds))
            self._link.notify()

    def abandon(self, ticket: Ticket) -> None:
        """Give up on an admitted request whose fate is unknown (a timeout, a lost connection):
        its entry stays in flight until its lease runs out, then completes. Call it inside the
        slot; leaving the slot then completes nothing."""
        key = (ticket.pool, ticket.entry)
        if key in self._abandoned:
            return
        self._abandoned.add(key)
        link = self._link
        if key in link.held:
            link.held.discard(key)
            link.abandon.append(key)
        link.notify()

    def record_rate_limited(self, pool: Pool) -> None:
        """Count a 429 answer in ``pool``."""
        self._counters[pool].rate_limited += 1

    def record_retry(self, pool: Pool) -> None:
        """Count a retried request in ``pool``."""
        self._counters[pool].retries += 1

    def statistics(self) -> SchedulerStatistics:
        """Return an immutable snapshot: the project's usage (as the store last reported it)
        beside this process's queue and counters."""
        usage = self._link.store.usage() or self._link.usage
        return snapshot(
            self._clock.time(), self.limits, usage, self._queued, self._paused, self._counters
        )

    async def aclose(self) -> None:
        """Stop talking to the store: completions not yet sent are sent (for at most
        :data:`~amplitude_async.scheduler.CLOSE_WAIT` seconds), and the store learns that this
        process left. Cancelling it still stops listening to the store and closes its
        connections (the Redis store bounds that too:
        :data:`~amplitude_async.redis_store.CLOSE_WAIT`)."""
        await self._link.close()

    def __repr__(self) -> str:
        queued = {str(p): n for p, n in self._queued.items() if n}
        return f"<Scheduler limits={self.limits!r} queued={queued}>"

    # -- waiting --------------------------------------------------------------------------

    async def _acquire(self, slot: Slot) -> Ticket:
        # Every waiting request keeps this frame: no locals beyond these.
        pool, cost = slot._pool, slot._cost
        if self._pacer is not None:
            # Before queueing, so pacing never holds budget.
            await pace(self._pacer, pool, cost)
        link = self._link
        link.attach()
        waiter = Waiter(
            next(self._locals),
            pool,
            cost,
            slot._priority,
            self._clock.time(),
            asyncio.get_running_loop().create_future(),
            weight=slot._weight,
        )
        self._waiters[pool, waiter.local] = waiter
        self._queued[pool] += 1
        link.register.append(waiter)
        slot._waiter = waiter
        link.notify()
        try:
            slot._ticket = await waiter.future
            return slot._ticket
        except asyncio.CancelledError:
            self._give_up(waiter)
            raise
        finally:
            slot._waiter = None

    def _reprioritize(self, waiter: Waiter, priority: int) -> None:
        """Queue a waiting request again at a higher ``priority``.

        Not yet told to the store: only its priority changes. Registered there: it is
        cancelled in the store and registered anew under a fresh local id; a grant of the old
        registration that crosses the cancellation is given back (a placeholder stands in
        for it), so no slot is lost either way.
        """
        if waiter.future.done() or waiter.state in (_CANCELLING, _DONE):
            return
        waiter.priority = priority
        if waiter.state is _NEW:
            return
        pool = waiter.pool
        settled: asyncio.Future[Ticket] = asyncio.get_running_loop().create_future()
        settled.cancel()
        ghost = Waiter(
            waiter.local,
            pool,
            waiter.cost,
            priority,
            waiter.queued_at,
            settled,
            _CANCELLING,
            weight=waiter.weight,
        )
        self._waiters[pool, waiter.local] = ghost
        link = self._link
        link.cancel.append((pool, waiter.local))
        waiter.local = next(self._locals)
        waiter.move(_NEW)
        self._waiters[pool, waiter.local] = waiter
        link.register.append(waiter)
        self._counters[pool].requeued += 1
        link.notify()

    def _give_up(self, waiter: Waiter) -> None:
        """The waiter's task was cancelled (or failed): take nothing, give back its grant."""
        pool = waiter.pool
        counters = self._counters[pool]
        link = self._link
        if waiter.state is _NEW:
            waiter.move(_DONE)  # skipped when the registrations are sent
            del self._waiters[pool, waiter.local]
            self._queued[pool] -= 1
            counters.cancelled_waiting += 1
        elif waiter.state is _SENT:
            waiter.move(_CANCELLING)
            self._queued[pool] -= 1
            link.cancel.append((pool, waiter.local))
            link.notify()  # it may have held the reservation
        elif waiter.ticket is not None:
            # Granted, but cancelled before the request could be sent: give it back.
            key = (pool, waiter.ticket.entry)
            if key in link.held:
                link.held.discard(key)
                link.release.append(key)
            counters.cancelled_waiting += 1
            counters.requests_sent -= 1
            counters.cost_sent -= waiter.ticket.cost
            link.notify()

    def _finish(self, ticket: Ticket, *, abandoned: bool) -> None:
        key = (ticket.pool, ticket.entry)
        link = self._link
        self._counters[ticket.pool].completed += 1
        if key in self._abandoned:
            self._abandoned.discard(key)
        elif key not in link.held:
            pass  # of a store state since lost: that store has nothing to hear of it
        elif abandoned:
            link.held.discard(key)
            link.abandon.append(key)
        else:
            link.held.discard(key)
            link.completed(key)
            return
        link.notify()

    # -- what the store's answers mean for the waiting requests (exchange.Waiting) ---------

    def _any_waiting(self) -> bool:
        """Whether any waiter is unsettled (cancellations not yet confirmed included)."""
        return bool(self._waiters)

    def _waiter(self, key: tuple[Pool, int]) -> Waiter | None:
        """The waiter registered under ``key``, if still unsettled."""
        return self._waiters.get(key)

    def _granted(self, grants: Sequence[Grant]) -> None:
        """Hand ``grants`` to their waiters (several deliveries of one grant are possible; the
        first counts)."""
        link = self._link
        now = self._clock.time()
        for grant in grants:
            waiter = self._waiters.pop((grant.pool, grant.local), None)
            if waiter is None:
                key = (grant.pool, grant.entry)
                if key not in link.held and key not in link.release:
                    # Not delivered twice: for a request given up here (or a duplicate of one
                    # completed since, which the store ignores): the room goes back.
                    link.release.append(key)
                    link.dirty = True
                continue
            counters = self._counters[grant.pool]
            if waiter.state is _CANCELLING or waiter.future.done():
                # Given up meanwhile: the room goes back.
                if waiter.state is not _CANCELLING:
                    self._queued[grant.pool] -= 1
                waiter.move(_DONE)
                link.release.append((grant.pool, grant.entry))
                counters.cancelled_waiting += 1
                link.dirty = True
                continue
            waiter.move(_DONE)
            self._queued[grant.pool] -= 1
            link.held.add((grant.pool, grant.entry))
            ticket = Ticket(
                grant.pool, waiter.cost, waiter.priority, grant.entry, waiter.queued_at, now
            )
            waiter.ticket = ticket
            waiter.future.set_result(ticket)
            counters.requests_sent += 1
            counters.cost_sent += waiter.cost
        if link.release:
            link.notify()

    def _cancelled(self, key: tuple[Pool, int]) -> None:
        """The store cancelled the registration ``key``."""
        waiter = self._waiters.pop(key, None)
        if waiter is not None:
            waiter.move(_DONE)
            self._counters[key[0]].cancelled_waiting += 1

    def _rejoined(self, just_registered: Container[tuple[Pool, int]] = ()) -> None:
        """The store did not know this process: register what still waits here again (but
        ``just_registered``, the ``(pool, local)`` of waiters the same exchange registered)."""
        register = self._link.register
        for waiter in self._waiters.values():
            if waiter.state is _SENT and (waiter.pool, waiter.local) not in just_registered:
                waiter.move(_NEW)
                register.append(waiter)
            elif waiter.state is _CANCELLING:
                waiter.move(_DONE)
        self._waiters = {k: w for k, w in self._waiters.items() if w.state is not _DONE}

    def _outage(self, error: BudgetUnavailable, since: float, now: float) -> bool:
        """Fail the waiters that tolerated an unavailable store (since ``since``) for
        ``unavailable_wait`` seconds of their wait; return whether any still waits."""
        for waiter in list(self._waiters.values()):
            if waiter.state in (_NEW, _SENT) and now - max(since, waiter.queued_at) >= (
                self.unavailable_wait
            ):
                self._fail(waiter, error)
        return any(w.state in (_NEW, _SENT) for w in self._waiters.values())

    def _fail_all(self, error: AmplitudeError) -> None:
        """Every waiting request fails with ``error`` (the store failed for good)."""
        for waiter in list(self._waiters.values()):
            if waiter.state in (_NEW, _SENT):
                self._queued[waiter.pool] -= 1
                if not waiter.future.done():
                    waiter.future.set_exception(error)
        self._waiters.clear()

    def _forget(self) -> None:
        """Drop every waiter: the store has let them go."""
        self._waiters.clear()

    def _fail(self, waiter: Waiter, exc: BaseException) -> None:
        if waiter.state is _SENT:
            waiter.move(_CANCELLING)  # the store may still hold it: cancel it there later
            self._link.cancel.append((waiter.pool, waiter.local))
        else:
            waiter.move(_DONE)
            self._waiters.pop((waiter.pool, waiter.local), None)
        self._queued[waiter.pool] -= 1
        if not waiter.future.done():
            waiter.future.set_exception(exc)


class Slot:
    """The async context manager returned by :meth:`Scheduler.slot`."""

    __slots__ = (
        "_cost",
        "_left",
        "_pool",
        "_priority",
        "_scheduler",
        "_ticket",
        "_waiter",
        "_weight",
    )

    def __init__(
        self, scheduler: Scheduler, pool: Pool, cost: int, weight: int, priority: int
    ) -> None:
        self._scheduler = scheduler
        self._pool = pool
        self._cost = cost
        self._weight = weight
        self._priority = priority
        self._ticket: Ticket | None = None
        self._waiter: Waiter | None = None
        self._left = False

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

    def __aenter__(self) -> Coroutine[Any, Any, Ticket]:
        # The scheduler's wait itself, not a coroutine around it: one frame less per request.
        if self._ticket is not None:
            raise RuntimeError("a Slot can be entered only once")
        return self._scheduler._acquire(self)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A cancelled request may still be running on the server: its entry is abandoned, not
        # completed.
        self.leave(abandoned=exc_type is not None and issubclass(exc_type, asyncio.CancelledError))

    def leave(self, *, abandoned: bool = False) -> None:
        """What leaving the ``async with`` block does, for a caller that entered the slot with
        ``await slot.__aenter__()``: the response is complete (``abandoned``: its fate is
        unknown, see :meth:`Scheduler.abandon`). Recorded at once (sent with the next
        exchange), so a cancellation cannot lose it."""
        if self._ticket is None or self._left:
            raise RuntimeError("a Slot is left once, after it was entered")
        self._left = True
        self._scheduler._finish(self._ticket, abandoned=abandoned)
