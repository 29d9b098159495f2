"""Monthly quotas: counts kept in the budget store per calendar month (UTC).

Amplitude allows a number of cohort download requests per month (500 on Growth and
Enterprise plans). The count lives in the budget store beside the windows, so every process
sharing a budget shares it: :class:`~amplitude_async.admission.InMemoryBudgetStore` keeps it in
a dict, :class:`~amplitude_async.redis_store.RedisBudgetStore` in one Redis key per month under
the budget's hash tag, counted by an atomic increment-with-check. A request that would pass the
quota is refused with :class:`~amplitude_async.errors.QuotaExhausted` before it is sent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, Protocol, runtime_checkable

from attrs import frozen

__all__ = ["COHORT_REQUESTS", "MonthlyCounter", "MonthlyCounts", "QuotaUsage", "utc_month"]

COHORT_REQUESTS: Final = "cohort_requests_per_month"
"""The quota of cohort download requests (``Limits.cohort_requests_per_month``)."""


def utc_month(now: datetime | None = None) -> str:
    """The calendar month (UTC) of ``now`` (default: the current time) as ``"YYYY-MM"``."""
    moment = datetime.now(UTC) if now is None else now.astimezone(UTC)
    return f"{moment.year:04d}-{moment.month:02d}"


@frozen
class QuotaUsage:
    """One monthly quota as last seen: ``used`` of ``limit`` in ``month`` (``"YYYY-MM"``)."""

    name: str
    month: str
    used: int
    limit: int

    @property
    def remaining(self) -> int:
        """What may still be spent this month."""
        return max(0, self.limit - self.used)


@runtime_checkable
class MonthlyCounter(Protocol):
    """A budget store that also counts monthly quotas (both stores of the library do)."""

    async def take_monthly(self, name: str, month: str, limit: int) -> tuple[bool, int]:
        """Count one more ``name`` in ``month`` unless ``limit`` are already counted, atomically
        for every process sharing the store: ``(taken, count after)``."""
        ...

    async def monthly_count(self, name: str, month: str) -> int:
        """How many ``name`` are counted in ``month``."""
        ...

    def monthly_seen(self, name: str, month: str) -> int | None:
        """The count as last seen, without I/O (``None``: not seen yet)."""
        ...


class MonthlyCounts:
    """Monthly counts in this process: what the in-process budget store uses."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}

    async def take_monthly(self, name: str, month: str, limit: int) -> tuple[bool, int]:
        """Count one more unless ``limit`` are counted (see :class:`MonthlyCounter`)."""
        count = self._counts.get((name, month), 0)
        if count >= limit:
            return False, count
        self._counts[name, month] = count + 1
        return True, count + 1

    async def monthly_count(self, name: str, month: str) -> int:
        """The count of ``name`` in ``month``."""
        return self._counts.get((name, month), 0)

    def monthly_seen(self, name: str, month: str) -> int | None:
        """The count (exact: it lives here)."""
        return self._counts.get((name, month), 0)
