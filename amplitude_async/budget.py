"""Budget arithmetic: which (pool, cost) items the project's limits admit, and when.

Everything here is pure (time is a parameter) and runs without an event loop.

Accounting rule
---------------
Each admitted request is an *entry* in its pool's ledger. An entry occupies every window of its
pool from its dispatch until ``length`` seconds after its response completed; while in flight it
occupies indefinitely (its completion time is unknown). A request of weight ``w`` may be
dispatched at time ``t`` iff the pool is not paused, fewer than ``cap`` entries are in flight, and
for every window ``used(t) + w <= budget``, where ``used(t)`` sums the entries occupying at
``t``. All windows are checked and taken together, all or nothing. Weights: a standard-pool
request weighs its cost; a user-pool or cohort-pool request weighs 1 (its window counts
requests).

Why this never draws a 429 from a strict sliding-window server, whatever the network delay: the
server stamps each request when it arrives, at some time ``a`` with ``dispatch <= a <= complete``,
and rejects it if the requests stamped in ``(a - length, a]`` exceed the budget. Take any such
set ``S`` of stamped requests and let ``x`` be the one of them admitted last by the client, at
``t_x <= a``. Every ``y`` in ``S`` was dispatched by ``t_x`` and completed after
``a_y > a - length``, so it still occupied at ``t_x`` (``complete_y + length > a >= t_x``): the
check made for ``x`` counted all of ``S``, so ``S`` fits the budget. The same argument with
"arrived, not yet answered" instead of "stamped in the window" bounds the server's in-flight
count by ``cap``; and since in-flight entries occupy the window, in-flight cost never exceeds the
window budget either (the older "cost at the same time" reading of the limit).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Container, Iterable, Iterator, Sequence
from typing import Final

from attrs import frozen

from .errors import QueryTooExpensive
from .limits import Limits, Pool

__all__ = [
    "EntryId",
    "Expiries",
    "PoolLedger",
    "PoolSnapshot",
    "Window",
    "WindowUsage",
    "check_cost",
    "largest_first",
    "pool_cap",
    "pool_windows",
    "weight_of",
]

EntryId = int
"""Identifies one admitted request in a pool's ledger (see :mod:`amplitude_async.admission`)."""

TOO_EXPENSIVE_HINT = (
    "cost grows with the number of days, segments and group-bys: use a shorter date range, "
    "or split the query into date chunks and combine the results"
)


@frozen
class Window:
    """One sliding-window budget of a pool: at most ``budget`` weight per ``length`` seconds."""

    name: str
    budget: int
    length: float


def pool_windows(limits: Limits, pool: Pool) -> tuple[Window, ...]:
    """Return the sliding windows that govern ``pool``."""
    if pool is Pool.USER:
        return (Window("user_queries_per_hour", limits.user_queries_per_hour, limits.hour),)
    if pool is Pool.COHORT:
        return (
            Window(
                "cohort_requests_per_window",
                limits.cohort_requests_per_window,
                limits.cohort_window,
            ),
        )
    return (
        Window("cost_per_window", limits.cost_per_window, limits.window),
        Window("cost_per_hour", limits.cost_per_hour, limits.hour),
    )


def pool_cap(limits: Limits, pool: Pool) -> int:
    """Return how many requests of ``pool`` may be in flight at once."""
    if pool is Pool.COHORT:
        return limits.cohort_concurrent
    return limits.user_concurrent if pool is Pool.USER else limits.concurrent


def weight_of(pool: Pool, cost: int) -> int:
    """Return what a request of ``cost`` weighs in ``pool``'s windows (user queries and cohort
    requests weigh 1)."""
    return cost if pool is Pool.STANDARD else 1


def check_cost(limits: Limits, pool: Pool, cost: int) -> None:
    """Raise :class:`QueryTooExpensive` if ``cost`` exceeds a whole window budget of ``pool``.

    Such a request could never be admitted, so this is checked before anything waits.
    """
    if cost < 0:
        raise ValueError(f"cost must not be negative, got {cost!r}")
    weight = weight_of(pool, cost)
    for window in pool_windows(limits, pool):
        if weight > window.budget:
            raise QueryTooExpensive(cost, window.budget, window.name, TOO_EXPENSIVE_HINT)


@frozen
class WindowUsage:
    """How much of one window budget is occupied at the snapshot's time."""

    name: str
    budget: int
    length: float
    used: int

    @property
    def remaining(self) -> int:
        """Weight that could still be admitted in this window now."""
        return max(0, self.budget - self.used)


@frozen(eq=False, repr=False)
class Expiries:
    """When the completed entries occupying one window free it: a read-only view, time order.

    Entry ``k`` (``start <= k < stop``) frees ``cum[k + 1] - cum[k]`` weight at
    ``times[k] + offset``; ``times`` is non-decreasing. Keeping running sums instead of the
    weights makes both forecasts binary searches: how much has freed by a time
    (:meth:`freed_by`), and by when some weight has freed (:meth:`freed_at`). A
    :class:`PoolLedger` shares its storage with every view it hands out (one list of completion
    times for all of a pool's windows, each window with its own ``offset``, the window
    length), which is safe because it only ever appends to those lists or replaces them. A
    store that reads its ledger from elsewhere builds a view with :meth:`of`. Views compare
    by identity: compare ``tuple(view)`` for their content.
    """

    times: Sequence[float]
    cum: Sequence[int]
    start: int
    stop: int
    offset: float = 0.0

    @classmethod
    def of(cls, pairs: Iterable[tuple[float, int]]) -> Expiries:
        """Build a view of ``(time, weight)`` pairs (sorted here)."""
        times: list[float] = []
        cum = [0]
        for at, weight in sorted(pairs):
            times.append(at)
            cum.append(cum[-1] + weight)
        return cls(times, cum, 0, len(times))

    def __len__(self) -> int:
        return self.stop - self.start

    def __repr__(self) -> str:
        return f"Expiries({list(self)!r})"

    def __iter__(self) -> Iterator[tuple[float, int]]:
        """``(time, weight)`` of each entry, in time order."""
        times, cum, offset = self.times, self.cum, self.offset
        for k in range(self.start, self.stop):
            yield times[k] + offset, cum[k + 1] - cum[k]

    def first(self) -> float:
        """When the next entry frees, or ``inf`` if none is left."""
        return self.times[self.start] + self.offset if self.stop > self.start else math.inf

    def freed_by(self, when: float) -> int:
        """Weight freed at or before ``when``."""
        offset = self.offset
        # The key adds the offset exactly as the ledger's expiry check does, so a forecast and
        # the later check agree to the last bit.
        end = bisect.bisect_right(self.times, when, self.start, self.stop, key=lambda t: t + offset)
        return self.cum[end] - self.cum[self.start]

    def freed_at(self, weight: int) -> float:
        """Earliest time by which at least ``weight`` has freed (``inf``: never, from these)."""
        if weight <= 0:
            return -math.inf
        index = bisect.bisect_left(
            self.cum, self.cum[self.start] + weight, self.start + 1, self.stop + 1
        )
        if index > self.stop:
            return math.inf
        return self.times[index - 1] + self.offset


@frozen
class PoolSnapshot:
    """An immutable view of one pool's ledger at time ``now``, with the known future.

    ``expiries[i]`` tells, in time order, when the completed entries still occupying window
    ``i`` free it. In-flight entries never free in this view (their completion time is unknown),
    which keeps every forecast conservative. Taking a snapshot of a :class:`PoolLedger` copies
    nothing but the per-window sums, and every method costs O(windows) or O(windows * log n).
    """

    now: float
    windows: tuple[Window, ...]
    used: tuple[int, ...]
    expiries: tuple[Expiries, ...]
    in_flight: int
    cap: int
    paused_until: float = -math.inf
    lease_until: float = math.inf
    """When the earliest lease of an in-flight entry runs out (it then counts as completed)."""

    @property
    def paused(self) -> bool:
        """Whether a pause (after a 429) still holds at ``now``."""
        return self.now < self.paused_until

    @property
    def slots(self) -> int:
        """How many more requests may be in flight."""
        return max(0, self.cap - self.in_flight)

    def room(self) -> int:
        """Largest weight every window would admit now (ignoring slots and pause)."""
        return min(w.budget - u for w, u in zip(self.windows, self.used, strict=True))

    def fits(self, weight: int) -> bool:
        """Whether a request of ``weight`` would be admitted now."""
        return not self.paused and self.slots > 0 and weight <= self.room()

    def room_at(self, when: float) -> int:
        """Room at ``when >= now`` if nothing else is admitted and nothing in flight completes."""
        return min(
            window.budget - used + expiries.freed_by(when)
            for window, used, expiries in zip(self.windows, self.used, self.expiries, strict=True)
        )

    def earliest_fit(self, weight: int, *, slots: int = 1) -> float:
        """Earliest time a request of ``weight`` fits, needing ``slots`` free in-flight slots.

        Returns ``inf`` when it depends on in-flight requests completing.
        """
        if self.slots < slots:
            return math.inf
        when = max(self.now, self.paused_until)
        for window, used, expiries in zip(self.windows, self.used, self.expiries, strict=True):
            when = max(when, expiries.freed_at(used + weight - window.budget))
        return when

    def next_change(self) -> float:
        """Next time something frees on its own (an expiry, a lease running out or the end of a
        pause), or ``inf``."""
        change = min(min((e.first() for e in self.expiries), default=math.inf), self.lease_until)
        return min(change, self.paused_until) if self.paused else change

    def usage(self) -> tuple[WindowUsage, ...]:
        """Per-window usage at ``now``."""
        return tuple(
            WindowUsage(w.name, w.budget, w.length, u)
            for w, u in zip(self.windows, self.used, strict=True)
        )


COMPACT_MIN: Final = 256
"""A ledger drops the storage of expired entries once this many (and half of it) are dead."""


class PoolLedger:
    """The mutable ledger of one pool: in-flight entries and completed entries still occupying.

    Bookkeeping: a running sum of the occupied weight per window (so "fits now" and "room now"
    are O(windows)), and one list of completion times, kept sorted, with running sums of their
    weights, shared by all windows. An entry completed at ``c`` occupies window ``i`` until
    ``c + length_i``, so the entries still occupying window ``i`` are a suffix of that list,
    from the window's *head*; time moving on only advances heads (amortised O(1) per entry).
    In-flight entries are only in the sums and in a dict of weights, each with a *lease*: its
    owner and a deadline (see :meth:`renew`). An entry whose lease runs out counts as completed
    at its deadline, or at the latest completion if that is later (so completion times stay in
    order, and the rule errs on the side of occupying longer). Nothing is ever removed
    from or changed in the middle of the lists: a completion reported out of time order and
    the periodic compaction build new lists, so a :meth:`snapshot` is a zero-copy view that
    stays valid.
    """

    def __init__(
        self, windows: Sequence[Window], cap: int, *, compact_min: int = COMPACT_MIN
    ) -> None:
        self.windows = tuple(windows)
        self.cap = cap
        self.paused_until = -math.inf
        self._lengths = tuple(w.length for w in self.windows)
        self._budgets = tuple(w.budget for w in self.windows)
        self._in_flight: dict[EntryId, int] = {}
        # Leases: entry -> [owner, deadline]; the owner "" marks an abandoned entry.
        self._leases: dict[EntryId, _Lease] = {}
        self._next_deadline = math.inf
        self._at_next = 0  # leases whose deadline is _next_deadline
        self._last_done = -math.inf
        self._done: list[float] = []  # completion times, non-decreasing
        self._cum: list[int] = [0]  # _cum[k + 1] - _cum[k]: the weight of entry k
        self._heads = [0] * len(self.windows)  # first entry still occupying each window
        self._used = [0] * len(self.windows)
        # No entry leaves a window before this (a lower bound: exact after each expiry pass),
        # so the decisions of one instant share one pass.
        self._next_free = math.inf
        self._shortest = min(self._lengths, default=math.inf)
        self._views: tuple[Expiries, ...] | None = None  # snapshot views, until the lists change
        self._compact_min = max(1, compact_min)
        self._ids = itertools.count(1)

    @property
    def in_flight(self) -> int:
        """Number of entries in flight."""
        return len(self._in_flight)

    @property
    def used(self) -> tuple[int, ...]:
        """Weight occupying each window, as of the last operation (see :meth:`expire`)."""
        return tuple(self._used)

    def expire(self, now: float) -> None:
        """Complete entries whose lease ran out; drop completed entries that stopped occupying
        by ``now``."""
        if now >= self._next_deadline:
            self._expire_leases(now)
        elif now < self._next_free:
            return
        done = self._done
        count = len(done)
        heads = self._heads
        next_free = math.inf
        for i, length in enumerate(self._lengths):
            head = heads[i]
            if head < count and done[head] + length <= now:
                start = head
                head += 1
                while head < count and done[head] + length <= now:
                    head += 1
                self._used[i] -= self._cum[head] - self._cum[start]
                heads[i] = head
                self._views = None
            if head < count and done[head] + length < next_free:
                next_free = done[head] + length
        self._next_free = next_free
        low = min(heads, default=0)
        if low >= self._compact_min and 2 * low >= count:
            # New lists, so snapshots still holding the old ones stay valid.
            self._done = done[low:]
            self._cum = self._cum[low:]
            self._heads = [h - low for h in heads]
            self._views = None

    def _expire_leases(self, now: float) -> None:
        expired = sorted(
            (lease.deadline, entry)
            for entry, lease in self._leases.items()
            if lease.deadline <= now
        )
        for deadline, entry in expired:
            self.complete(entry, max(deadline, self._last_done))
        self._earliest_lease()

    def renew(self, owner: str, deadline: float, *, only: Container[EntryId] | None = None) -> None:
        """Extend the lease of every in-flight entry of ``owner`` (of those in ``only``, if
        given: the entries the owner says it still holds) to ``deadline``."""
        if not self._leases:
            return
        for entry, lease in self._leases.items():
            if (
                lease.owner == owner
                and deadline > lease.deadline
                and (only is None or entry in only)
            ):
                lease.deadline = deadline
        self._earliest_lease()

    def abandon(self, entry: EntryId) -> None:
        """Stop renewing ``entry``: its request's fate is unknown (cancelled, timed out), so it
        stays in flight until its lease runs out, as long as the server could still count it."""
        lease = self._leases.get(entry)
        if lease is not None:
            lease.owner = ""

    def owned_by(self, owner: str) -> list[EntryId]:
        """The in-flight entries leased to ``owner``, oldest first."""
        return [entry for entry, lease in self._leases.items() if lease.owner == owner]

    def owns(self, entry: EntryId) -> str | None:
        """The owner of in-flight ``entry`` (``""``: abandoned), or ``None`` if not in flight."""
        lease = self._leases.get(entry)
        if lease is None:
            return "" if entry in self._in_flight else None
        return lease.owner

    def snapshot(self, now: float) -> PoolSnapshot:
        """Return an immutable view at ``now`` (O(windows): nothing is copied)."""
        self.expire(now)
        views = self._views
        if views is None:
            stop = len(self._done)
            views = self._views = tuple(
                Expiries(self._done, self._cum, head, stop, length)
                for head, length in zip(self._heads, self._lengths, strict=True)
            )
        return PoolSnapshot(
            now=now,
            windows=self.windows,
            used=tuple(self._used),
            expiries=views,
            in_flight=len(self._in_flight),
            cap=self.cap,
            paused_until=self.paused_until,
            lease_until=self._next_deadline,
        )

    def fits(self, weight: int, now: float) -> bool:
        """Whether ``weight`` would be admitted at ``now``."""
        self.expire(now)
        if now < self.paused_until or len(self._in_flight) >= self.cap:
            return False
        for budget, used in zip(self._budgets, self._used, strict=True):
            if used + weight > budget:
                return False
        return True

    def take(self, weight: int, owner: str = "", deadline: float = math.inf) -> EntryId:
        """Record an entry of ``weight`` known to fit (see :meth:`fits`); return its id."""
        entry = next(self._ids)
        self._in_flight[entry] = weight
        if deadline < math.inf:
            self._leases[entry] = _Lease(owner, deadline)
            if deadline < self._next_deadline:
                self._next_deadline, self._at_next = deadline, 1
            elif deadline == self._next_deadline:
                self._at_next += 1
        used = self._used
        for i in range(len(used)):
            used[i] += weight
        return entry

    def complete_leased(self, entry: EntryId, owner: str, now: float) -> None:
        """:meth:`complete` ``entry`` if ``owner`` owns it at ``now`` (see :meth:`owns`; an
        entry whose lease ran out by then is completed already, at its deadline)."""
        if now >= self._next_deadline:
            self._expire_leases(now)
        if self.owns(entry) == owner:
            self.complete(entry, now)

    def complete(self, entry: EntryId, now: float) -> None:
        """Mark ``entry``'s response complete at ``now``; it keeps occupying for each window."""
        weight = self._in_flight.pop(entry)
        if self._leases:
            self._forget_lease(entry)
        if now > self._last_done:
            self._last_done = now
        done, cum = self._done, self._cum
        self._views = None
        if not done or done[-1] <= now:
            done.append(now)
            cum.append(cum[-1] + weight)
            if now + self._shortest < self._next_free:
                self._next_free = now + self._shortest
            return
        self._next_free = -math.inf  # the pass recomputes it
        # Reported out of time order (several clocks, or a caller's own times): insert it into
        # new lists, so views already handed out keep seeing the old ones.
        index = bisect.bisect_right(done, now)
        self._done = [*done[:index], now, *done[index:]]
        self._cum = [*cum[: index + 1], *(c + weight for c in cum[index:])]
        for i, head in enumerate(self._heads):
            if index < head:
                # Entries after it have already left this window, so it has too.
                self._heads[i] = head + 1
                self._used[i] -= weight

    def release(self, entry: EntryId) -> None:
        """Forget an in-flight ``entry`` whose request provably never left the client."""
        weight = self._in_flight.pop(entry)
        if self._leases:
            self._forget_lease(entry)
        for i in range(len(self._used)):
            self._used[i] -= weight

    def _forget_lease(self, entry: EntryId) -> None:
        # The earliest deadline stays exact: a snapshot must not name a lease that is gone (an
        # owner would wake for nothing). At most the in-flight cap of leases to look at.
        lease = self._leases.pop(entry, None)
        if lease is not None and lease.deadline <= self._next_deadline:
            # Leases often share the earliest deadline (one renewal sets them all): only when
            # the last of them goes is the next one looked for.
            self._at_next -= 1
            if self._at_next <= 0:
                self._earliest_lease()

    def _earliest_lease(self) -> None:
        """Find when the earliest lease runs out (``inf``: none), and how many run out then."""
        earliest, count = math.inf, 0
        for lease in self._leases.values():
            if lease.deadline < earliest:
                earliest, count = lease.deadline, 1
            elif lease.deadline == earliest:
                count += 1
        self._next_deadline, self._at_next = earliest, count

    def pause(self, until: float) -> None:
        """Admit nothing before ``until`` (extends an earlier pause, never shortens it)."""
        self.paused_until = max(self.paused_until, until)


class _Lease:
    __slots__ = ("deadline", "owner")

    def __init__(self, owner: str, deadline: float) -> None:
        self.owner = owner
        self.deadline = deadline


def largest_first(items: Iterable[tuple[int, int]], room: int, slots: int) -> dict[int, int]:
    """Choose how many of each weight to admit: repeatedly the heaviest that still fits.

    ``items`` are ``(weight, available)`` pairs with distinct weights; at most ``slots`` are
    chosen and their total stays ``<= room``. Returns ``{weight: count}``. Heaviest-first keeps
    the small requests for later, where they fill the gaps that expiries leave; filling the room
    exactly now (subset sum) burns them early and measured worse (benchmarks/sim_packing.py).
    """
    weights = sorted(w for w, n in items if n > 0)
    left = {w: n for w, n in items if n > 0}
    chosen: dict[int, int] = {}
    while slots > 0 and weights:
        index = bisect.bisect_right(weights, room) - 1
        if index < 0:
            break
        weight = weights[index]
        take = min(left[weight], slots, room // weight if weight else slots)
        chosen[weight] = take
        room -= weight * take
        slots -= take
        del weights[index]
    return chosen
