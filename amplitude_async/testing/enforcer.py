"""Server-side enforcement of the project limits, as strictly as a server could apply them.

:class:`Enforcer` stamps each request when it *arrives* and rejects it (HTTP 429 in the emulator)
if admitting it would break a limit:

- standard pool: in-flight count ``< concurrent``; cost arrived in the last ``window`` seconds
  plus this cost ``<= cost_per_window``; the same over ``hour`` with ``cost_per_hour``;
- user pool: in-flight count ``< user_concurrent``; queries arrived in the last ``hour``
  ``< user_queries_per_hour``.
- cohort pool (requests for a cohort download, which also take a standard-pool ticket at
  cost 0): in-flight count ``< cohort_concurrent``; requests arrived in the last
  ``cohort_window`` ``< cohort_requests_per_window``.

Windows are strict and sliding: a request stamped at ``s`` counts against every arrival in
``[s, s + length)``. With ``reading="in_flight"`` the per-window cost rule is replaced by the
older reading "cost of the requests in flight (this one included) ``<= cost_per_window``",
reported as a concurrency rejection. A rejected request takes nothing.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Literal

from attrs import frozen

from ..budget import pool_cap, pool_windows, weight_of
from ..clock import Clock
from ..errors import RateLimitKind
from ..limits import Limits, Pool

__all__ = ["Arrival", "Enforcer", "Reading"]

Reading = Literal["window", "in_flight"]
"""How the per-window cost limit is read: sliding window of arrivals, or cost in flight."""


@frozen
class Arrival:
    """The verdict on one arriving request: ``rejected`` is ``None`` if it was accepted."""

    ticket: int | None
    rejected: RateLimitKind | None
    at: float

    @property
    def accepted(self) -> bool:
        """Whether the request was accepted."""
        return self.rejected is None


class Enforcer:
    """Strict server-side limits over a clock (see the module docstring)."""

    def __init__(self, limits: Limits, clock: Clock, *, reading: Reading = "window") -> None:
        self.limits = limits
        self.clock = clock
        self.reading: Reading = reading
        self._windows = {pool: pool_windows(limits, pool) for pool in Pool}
        self._arrivals: dict[Pool, list[deque[tuple[float, int]]]] = {
            pool: [deque() for _ in windows] for pool, windows in self._windows.items()
        }
        self._sums = {pool: [0] * len(windows) for pool, windows in self._windows.items()}
        self._in_flight: dict[int, tuple[Pool, int]] = {}
        self._ids = itertools.count(1)
        self.accepted = 0
        self.rejected: dict[RateLimitKind, int] = {"concurrent": 0, "rate": 0}
        self.peak_in_flight = dict.fromkeys(Pool, 0)
        self.log: list[tuple[float, Pool, int]] = []
        """Accepted arrivals as ``(time, pool, cost)``, in arrival order."""

    def in_flight(self, pool: Pool) -> int:
        """Requests of ``pool`` accepted and not yet finished."""
        return sum(1 for p, _ in self._in_flight.values() if p is pool)

    def in_flight_cost(self, pool: Pool) -> int:
        """Total weight of ``pool``'s requests in flight."""
        return sum(w for p, w in self._in_flight.values() if p is pool)

    def window_usage(self, pool: Pool) -> tuple[int, ...]:
        """Weight arrived within each of ``pool``'s windows, now."""
        self._expire(pool, self.clock.time())
        return tuple(self._sums[pool])

    def _expire(self, pool: Pool, now: float) -> None:
        for i, (window, arrivals) in enumerate(
            zip(self._windows[pool], self._arrivals[pool], strict=True)
        ):
            while arrivals and arrivals[0][0] + window.length <= now:
                self._sums[pool][i] -= arrivals.popleft()[1]

    def arrive(self, pool: Pool, cost: int) -> Arrival:
        """Stamp a request arriving now; accept it (a ticket) or say which limit it broke."""
        now = self.clock.time()
        self._expire(pool, now)
        weight = weight_of(pool, cost)
        verdict: RateLimitKind | None = None
        if self.in_flight(pool) >= pool_cap(self.limits, pool) or (
            self.reading == "in_flight"
            and pool is Pool.STANDARD
            and self.in_flight_cost(pool) + weight > self.limits.cost_per_window
        ):
            verdict = "concurrent"
        else:
            for i, window in enumerate(self._windows[pool]):
                if self.reading == "in_flight" and window.name == "cost_per_window":
                    continue
                if self._sums[pool][i] + weight > window.budget:
                    verdict = "rate"
                    break
        if verdict is not None:
            self.rejected[verdict] += 1
            return Arrival(None, verdict, now)
        for i, arrivals in enumerate(self._arrivals[pool]):
            arrivals.append((now, weight))
            self._sums[pool][i] += weight
        ticket = next(self._ids)
        self._in_flight[ticket] = (pool, weight)
        self.accepted += 1
        self.peak_in_flight[pool] = max(self.peak_in_flight[pool], self.in_flight(pool))
        self.log.append((now, pool, cost))
        return Arrival(ticket, None, now)

    def finish(self, ticket: int) -> None:
        """The response for ``ticket`` was sent (or the client went away)."""
        del self._in_flight[ticket]

    def __repr__(self) -> str:
        return (
            f"<Enforcer reading={self.reading} accepted={self.accepted} "
            f"rejected={self.rejected} in_flight={len(self._in_flight)}>"
        )
