"""The exchange loop: how a scheduler talks to its budget store.

Where decisions run: in the budget store (:mod:`amplitude_async.admission`), over the waiters
of every process sharing it. The scheduler is the store's client for one process: one task
sends the store everything that changed since its last exchange (requests queued or cancelled,
responses completed) and hands the grants that come back to the waiting requests. A request
that queues is sent with the next exchange, with every request queued until then, so a burst
is decided as a whole. The store answers with the time until the next decision that time
alone makes due (to one process at a time: the one keeping time for the shared queue, whose
decision then serves every process); the scheduler exchanges again then, and at least every
third of its lease term while it has requests waiting or in flight (that renews their
leases). The in-process store (the default) never suspends and cannot lose an answer: the
loop exchanges with it from a plain loop callback (no task) and sends no list of held entries.
It hears of a completed response at once. It decides :data:`DECISION_TURNS` loop turns after a
change (a request queued, cancelled or re-queued, a response completed), or once
:data:`DECISION_WAIT` has passed if that comes first, and what those turns change is decided
with it, in one exchange: a burst of requests queued over a few turns, and the responses that a
client busy with many completes a few per turn, with what they set off (the next requests of a
batch). An idle loop turns in microseconds; a busy one makes a decision wait no longer than
:data:`DECISION_WAIT` and the turn under way then.

If the store fails (Redis unreachable or frozen), nothing is admitted: exchanges are retried,
and a waiting request ends with :class:`~amplitude_async.errors.BudgetUnavailable` once the
store has been unavailable for ``unavailable_wait`` seconds of its wait -- at the latest when
the exchange under way then fails (a Redis store's call timeout, 5 s by default) plus
:data:`RETRY_MAX`. Requests already in flight finish normally; their completions are sent when
the store answers again. An exchange whose answer never arrived is made harmless by the next
one, which says what this process really holds (see :mod:`amplitude_async.admission`); after a
failure the scheduler always exchanges again, even with nothing else to say, so a grant whose
answer was lost is given back at once.

:class:`Exchanger` is that loop and what it sends: the changes waiting for the next exchange,
the entries this process holds, the store's version, the alarm that wakes the loop. What the
answers mean for the waiting requests is the scheduler's (:class:`Waiting`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from collections.abc import Container, Sequence
from typing import Final, Protocol

from ..admission import (
    BudgetStore,
    BudgetUsage,
    Changes,
    Grant,
    InMemoryBudgetStore,
    Outcome,
    Registration,
)
from ..budget import EntryId
from ..clock import Clock, LoopClock
from ..errors import AmplitudeError, BudgetUnavailable
from ..limits import Limits, Pool
from .states import Waiter, WaiterState

__all__ = [
    "CLOSE_WAIT",
    "DECISION_TURNS",
    "DECISION_WAIT",
    "DEFAULT_LEASE",
    "DEFAULT_UNAVAILABLE_WAIT",
    "HEARTBEAT",
    "LEASE_MARGIN",
    "RETRY_MAX",
    "RETRY_MIN",
    "Exchanger",
    "Waiting",
]

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
"""Seconds :meth:`Scheduler.aclose <amplitude_async.scheduler.Scheduler.aclose>` waits for its
goodbye to the store (it carries the last completions: lost, their slots would stay taken for a
lease term)."""

DECISION_TURNS: Final = 4
"""Loop turns the in-process store's decision waits after a change: what those turns change (a
busy client's responses complete a few per turn) is decided with it, in one exchange. An idle
loop turns in microseconds; a busy one is bounded by :data:`DECISION_WAIT`."""

DECISION_WAIT: Final = 0.001
"""Seconds at most that a decision waits for the turns of :data:`DECISION_TURNS` (a loop busy
with long callbacks turns slowly, and a freed slot would stay idle meanwhile)."""

RETRY_MIN: Final = 0.05
RETRY_MAX: Final = 1.0
"""Retry delays (seconds) of a failed exchange: doubling from the first to the second."""

# The scheduler's logger, whatever module of it logs: the name users filter on.
_log = logging.getLogger("amplitude_async.scheduler")

_NEW: Final = WaiterState.NEW
_SENT: Final = WaiterState.SENT


class Waiting(Protocol):
    """What the exchange loop needs of the requests waiting in its process: implemented by the
    :class:`~amplitude_async.scheduler.Scheduler`'s private methods (not its public API)."""

    def _any_waiting(self) -> bool:
        """Whether any waiter is unsettled (cancellations not yet confirmed included)."""

    def _waiter(self, key: tuple[Pool, int]) -> Waiter | None:
        """The waiter registered under ``key`` (``None`` if it is settled)."""

    def _granted(self, grants: Sequence[Grant]) -> None:
        """Hand ``grants`` (not empty) to their waiters."""

    def _cancelled(self, key: tuple[Pool, int]) -> None:
        """The store cancelled the registration ``key``."""

    def _rejoined(self, just_registered: Container[tuple[Pool, int]] = ()) -> None:
        """The store did not know this process: register every request still waiting again."""

    def _outage(self, error: BudgetUnavailable, since: float, now: float) -> bool:
        """The store is unavailable since ``since``: fail the requests that waited through
        enough of it with ``error``; return whether any request still waits for admission."""

    def _fail_all(self, error: AmplitudeError) -> None:
        """The store failed for good: every waiting request hears ``error``."""

    def _forget(self) -> None:
        """Drop every waiter (the store has let them go)."""


class Exchanger:
    """One process's conversation with ``store``, as ``owner``: the changes for the next
    exchange (public lists the scheduler appends to, then calls :meth:`notify`), the entries it
    holds (``held``), and the task that exchanges while there is anything to tell or wait for.
    What the answers mean for the waiting requests it hands to ``requests``.
    """

    def __init__(
        self,
        store: BudgetStore,
        *,
        clock: Clock,
        limits: Limits,
        owner: str,
        lease: float,
        unavailable_wait: float,
        requests: Waiting,
    ) -> None:
        self.store = store
        # The in-process store answers at once and its answers cannot be lost: it is called
        # directly from a loop callback (no task, no reconciliation of held entries).
        self._local = store if isinstance(store, InMemoryBudgetStore) else None
        self._turn: asyncio.Handle | None = None
        self._turns_left = 0  # of the wait for the next decision (see DECISION_TURNS)
        self._decide_by = -math.inf  # when that wait ends whatever the turns
        self._decide = False  # the in-process store changed without an exchange
        self.owner = owner
        self.lease = lease
        self.unavailable_wait = unavailable_wait
        self._clock = clock
        self._requests = requests
        self._warm_for = max(limits.window, limits.hour) + lease
        # Changes for the next exchange.
        self.register: list[Waiter] = []
        self.cancel: list[tuple[Pool, int]] = []
        self.complete: list[tuple[Pool, EntryId]] = []
        self.abandon: list[tuple[Pool, EntryId]] = []
        self.release: list[tuple[Pool, EntryId]] = []
        self.pause: list[tuple[Pool, float]] = []
        # Entries this process holds (admitted, not yet completed or abandoned): renewed.
        self.held: set[tuple[Pool, EntryId]] = set()
        self.usage: BudgetUsage | None = None  # the store's, from its last answer
        self.dirty = False  # something changed since the loop last looked
        self._numbers = itertools.count(1)  # exchange numbers
        self._seen = ""  # the store's version in the last answer
        self._epoch: str | None = None
        self._unsure = False  # an exchange failed: its answer may have been lost
        self._beat = min(lease, HEARTBEAT)
        self._attached = False
        self._driver: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._nudged = False  # the store asked for an exchange (another process left)
        self._alarm: asyncio.TimerHandle | asyncio.Task[None] | None = None
        self._alarm_at = math.inf
        self._last_exchange = -math.inf  # local time of the last answered exchange
        self._store_wake = math.inf  # local time the store asked to be consulted again
        self._outage_since: float | None = None

    def attach(self) -> None:
        """Listen for grants the store decides for this process elsewhere (once)."""
        if not self._attached:
            self._attached = True
            self.store.attach(self.owner, self.delivered)

    def delivered(self, grants: Sequence[Grant]) -> None:
        """Grants for this process decided by another (several deliveries of one grant are
        possible; the first counts), or, empty, a nudge."""
        if not grants:
            # A nudge: a process that kept time for the queue left; exchange to take over.
            if self._requests._any_waiting() or self.held:
                self._nudged = True
                self.notify()
            return
        self._requests._granted(grants)

    def completed(self, key: tuple[Pool, EntryId]) -> None:
        """The response of the held entry ``key`` is complete. The in-process store records it
        at once (and decides with the next exchange); another store hears of it with the next
        exchange."""
        local = self._local
        if local is None:
            self.complete.append(key)
        else:
            local.complete(self.owner, *key)
            self._decide = True
        self.notify()

    def notify(self) -> None:
        """Something changed: exchange later in the loop, so that what changes meanwhile is
        decided together (with the in-process store: :data:`DECISION_TURNS` turns later, or
        :data:`DECISION_WAIT`)."""
        if self._local is not None:
            if self._turn is None:
                self._turns_left = DECISION_TURNS
                self._decide_by = self._clock.time() + DECISION_WAIT
                self._turn = asyncio.get_running_loop().call_soon(self._next_turn)
            return
        if self._driver is None:
            self._driver = asyncio.get_running_loop().create_task(self._drive())
        elif self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        else:
            self.dirty = True

    def _next_turn(self) -> None:
        """One loop turn of the wait for a decision: exchange now if it was the last one or the
        wait's time is up."""
        self._turns_left -= 1
        if self._turns_left > 0 and self._clock.time() < self._decide_by:
            self._turn = asyncio.get_running_loop().call_soon(self._next_turn)
        else:
            self._exchange_now()

    def has_changes(self) -> bool:
        """Whether anything waits to be told to the store."""
        return bool(
            self.register
            or self.cancel
            or self.complete
            or self.abandon
            or self.release
            or self.pause
        )

    def take_changes(self) -> Changes:
        """The changes for the store, taken out of the lists (registrations are now sent)."""
        register: list[Registration] = []
        for waiter in self.register:
            if waiter.state is _NEW:  # not given up meanwhile
                register.append(
                    Registration(waiter.local, waiter.pool, waiter.weight, waiter.priority)
                )
                waiter.move(_SENT)
        changes = Changes(
            owner=self.owner,
            lease=self.lease,
            register=register,
            cancel=self.cancel,
            complete=self.complete,
            abandon=self.abandon,
            release=self.release,
            pause=self.pause,
            warm=self._clock.time() - self._last_exchange < self._warm_for,
            held=None if self._local is not None else sorted(self.held),
            seq=next(self._numbers),
            seen=self._seen,
            beat=self._beat,
        )
        self.register, self.cancel, self.complete = [], [], []
        self.abandon, self.release, self.pause = [], [], []
        return changes

    def _put_back(self, changes: Changes) -> None:
        """An exchange failed: send its changes again next time (every change is idempotent)."""
        for reg in changes.register:
            waiter = self._requests._waiter((reg.pool, reg.local))
            if waiter is not None and waiter.state is _SENT:
                waiter.move(_NEW)
                self.register.append(waiter)
        self.cancel[:0] = changes.cancel
        self.complete[:0] = changes.complete
        self.abandon[:0] = changes.abandon
        self.release[:0] = changes.release
        self.pause[:0] = changes.pause

    def _duty(self, now: float) -> float:
        """When the next exchange is due without a local change (``inf``: the driver may stop):
        when the store asked this process to keep time for the queue, a third of the heartbeat
        after the last exchange while this process has requests waiting (so the store keeps
        them), a third of the lease term while it has requests in flight (that renews their
        leases), and at once after a failed exchange."""
        if self._unsure:
            return now
        if self._requests._any_waiting():
            return min(self._store_wake, self._last_exchange + self._beat / 3)
        if self.held:
            return min(self._store_wake, self._last_exchange + self.lease / 3)
        return self._store_wake

    def _due(self, now: float) -> bool:
        """Whether to exchange now: something to tell, a nudge from the store, or the duty's
        time (see :meth:`_duty`) has come."""
        return self.has_changes() or self._nudged or self._decide or self._duty(now) <= now

    def _store_failed(self, exc: Exception) -> None:
        """An exchange failed in a way retrying cannot mend: every waiter hears it. An
        AmplitudeError as it is (such as ConfigurationError: this process's limits differ from
        the budget's); anything else as BudgetUnavailable, since a broken store must not leave
        anyone waiting forever."""
        if isinstance(exc, AmplitudeError):
            self._fail_all(exc, None)
        else:
            self._fail_all(BudgetUnavailable(f"the budget store failed: {exc!r}"), exc)

    async def _drive(self) -> None:
        """The exchange loop; runs while this process has anything to tell or to wait for."""
        delay = RETRY_MIN
        try:
            while True:
                self.dirty = False
                now = self._clock.time()
                if not self._due(now):
                    duty = self._duty(now)
                    if duty == math.inf:
                        return
                    await self._sleep_until(duty)
                    continue
                changes = self.take_changes()
                self._nudged = False
                try:
                    outcome = await self.store.exchange(changes)
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
                except Exception as exc:
                    self._store_failed(exc)
                    return
                delay = RETRY_MIN
                self._outage_since = None
                self._unsure = False
                self._answered(outcome, changes)
        finally:
            self._driver = None
            self._set_alarm(math.inf)

    def _exchange_now(self) -> None:
        """One turn of the exchange loop with the in-process store, as a loop callback: what
        :meth:`_drive` does, without a task (that store never suspends nor loses an answer)."""
        self._turn = None
        store = self._local
        assert store is not None
        self.dirty = False
        if self._due(self._clock.time()):
            changes = self.take_changes()
            self._nudged = self._decide = False
            try:
                outcome = store.apply(changes)
            except Exception as exc:
                self._store_failed(exc)
                return
            self._answered(outcome, changes)
            if self.has_changes() or self._nudged:
                self.notify()  # such as waiters to register again (see _answered)
        if self._turn is None:
            self._set_alarm(self._duty(self._clock.time()))

    def _answered(self, outcome: Outcome, changes: Changes) -> None:
        now = self._clock.time()
        first = self._last_exchange == -math.inf
        self._last_exchange = now
        self._seen = outcome.seen
        epoch = outcome.seen.rpartition(":")[0]
        if outcome.reset or (self._epoch is not None and epoch != self._epoch):
            # The store started over: what this process held belongs to the lost state (the
            # cold start accounts for it); its completions are not sent.
            self.held.clear()
        self._epoch = epoch
        if outcome.usage is not None:
            self.usage = outcome.usage
        self._store_wake = now + outcome.wake_in if outcome.wake_in < math.inf else math.inf
        for key in outcome.cancelled:
            self._requests._cancelled(key)
        if outcome.grants:
            self._requests._granted(outcome.grants)
        if outcome.rejoined and not (first and self._local is not None):
            # The store did not know this process (its state was lost, or this process's lease
            # ran out): register what still waits here again.
            # Not those registered by this very exchange: the store has them now (a new
            # process's first exchange is always "rejoined"; with the in-process store, nothing
            # else can wait then, as nothing happens during its exchanges).
            self._requests._rejoined({(r.pool, r.local) for r in changes.register})
            if self.register:
                self.dirty = True

    def _unavailable(self, exc: BudgetUnavailable) -> bool:
        """An exchange failed: fail the waiters that have tolerated it long enough. Returns
        whether to keep trying."""
        now = self._clock.time()
        if self._outage_since is None:
            self._outage_since = now
            _log.warning("budget store unavailable: %s", exc, extra={"error": str(exc)})
        since = self._outage_since
        if self._requests._outage(exc, since, now):
            return True
        if now - since < self.lease + self.unavailable_wait:
            # Keep trying while there is something to tell, including that an answer may have
            # been lost (its grants are given back by the next exchange).
            requests = self._requests
            return requests._any_waiting() or self.has_changes() or bool(self.held) or self._unsure
        # By now the store (if it ever answers) has let this process's leases run out: what is
        # left to tell it no longer matters.
        self._requests._forget()
        self.take_changes()
        return False

    def _fail_all(self, error: AmplitudeError, cause: BaseException | None) -> None:
        if cause is not None:
            error.__cause__ = cause
        self._requests._fail_all(error)
        self.register.clear()
        self.cancel.clear()

    async def close(self) -> None:
        """Stop the loop, say goodbye to the store (for at most :data:`CLOSE_WAIT` seconds) and
        stop listening to it."""
        try:
            if self._turn is not None:
                self._turn.cancel()
                self._turn = None
            driver = self._driver
            if driver is not None:
                driver.cancel()
                # Not ``await driver``: that would swallow a cancellation of this close.
                await asyncio.wait([driver])
            self._set_alarm(math.inf)
            if self._last_exchange > -math.inf or self.has_changes():
                # Say goodbye: completions not yet sent, and the store hands this process's duty
                # of keeping time for the queue to the others at once.
                with contextlib.suppress(AmplitudeError, TimeoutError):
                    changes = self.take_changes()
                    changes.leaving = True
                    async with asyncio.timeout(min(CLOSE_WAIT, self.lease)):
                        await self.store.exchange(changes)
        finally:
            self._set_alarm(math.inf)
            if self._attached:
                self._attached = False
                await self.store.detach(self.owner)

    # -- the alarm ------------------------------------------------------------------------

    async def _sleep_until(self, when: float) -> None:
        if self.dirty:
            return
        self._wakeup = asyncio.get_running_loop().create_future()
        self._set_alarm(when)
        try:
            await self._wakeup
        finally:
            self._wakeup = None

    def _set_alarm(self, when: float) -> None:
        """Wake the driver at ``when`` on the scheduler's clock (``inf``: never). There is one
        alarm: one set for a later time is moved to ``when``, one set as early or earlier is kept
        (ringing early, it finds nothing due and is set again: cheaper than re-arming the timer
        at every exchange, each of which moves the heartbeat on)."""
        if self._alarm is not None and self._alarm_at <= when < math.inf:
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
        if self._local is not None:
            self.notify()
        elif self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
