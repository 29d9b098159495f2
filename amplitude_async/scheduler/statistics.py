"""What :meth:`Scheduler.statistics <amplitude_async.scheduler.Scheduler.statistics>` returns:
the project's usage as the budget store last reported it, beside this process's queue and
counters, in immutable snapshots."""

from __future__ import annotations

import math
from collections.abc import Mapping

from attrs import define, field, frozen

from ..admission import BudgetUsage
from ..budget import WindowUsage, pool_windows
from ..limits import Limits, Pool

__all__ = ["Counters", "PoolStatistics", "SchedulerStatistics", "snapshot"]


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
    """An immutable snapshot of a :class:`~amplitude_async.scheduler.Scheduler` (see
    :meth:`~amplitude_async.scheduler.Scheduler.statistics`).

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


@define
class Counters:
    """This process's running counts for one pool (snapshotted by ``statistics()``)."""

    requests_sent: int = 0
    cost_sent: int = 0
    completed: int = 0
    cancelled_waiting: int = 0
    rate_limited: int = 0
    retries: int = 0
    requeued: int = 0


def snapshot(
    now: float,
    limits: Limits,
    usage: BudgetUsage | None,
    queued: Mapping[Pool, int],
    paused: Mapping[Pool, float],
    counters: Mapping[Pool, Counters],
) -> SchedulerStatistics:
    """A :class:`SchedulerStatistics` at ``now``: the store's last ``usage`` (``None``: nothing
    heard yet, so every window reads empty) with this process's ``queued`` requests, the pauses
    it set (``paused``: until when, per pool) and its ``counters``."""
    pools = []
    for pool in Pool:
        counts = counters[pool]
        paused_until = paused.get(pool, -math.inf)
        if usage is not None:
            seen = usage[pool]
            if seen.paused_for > 0:
                paused_until = max(paused_until, now + seen.paused_for)
            windows, in_flight, everywhere = seen.windows, seen.in_flight, seen.queued
        else:
            windows = tuple(
                WindowUsage(w.name, w.budget, w.length, 0) for w in pool_windows(limits, pool)
            )
            in_flight, everywhere = 0, 0
        pools.append(
            PoolStatistics(
                pool=pool,
                in_flight=in_flight,
                queued=queued[pool],
                paused_until=paused_until if paused_until > now else None,
                windows=windows,
                requests_sent=counts.requests_sent,
                cost_sent=counts.cost_sent,
                completed=counts.completed,
                cancelled_waiting=counts.cancelled_waiting,
                rate_limited=counts.rate_limited,
                retries=counts.retries,
                queued_everywhere=everywhere,
                requeued=counts.requeued,
            )
        )
    return SchedulerStatistics(
        time=now,
        pools=tuple(pools),
        # This process counts even before the store has seen it.
        processes=max(1, usage.processes) if usage is not None else 1,
    )
