"""What the layers above the client need from it, as small protocols.

:mod:`amplitude_async.split`, the backfill runner and the CLI run queries through a client but
sit beside or below :mod:`amplitude_async.client` in the imports; they name these protocols
instead, which :class:`~amplitude_async.client.AmplitudeClient` satisfies (and a test double
can).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeVar

from .clock import Clock
from .limits import Limits

if TYPE_CHECKING:
    from .queries import Query
    from .scheduler import SchedulerStatistics

__all__ = ["ClockOwner", "QueryRunner", "ScheduledRunner"]

R = TypeVar("R")


class QueryRunner(Protocol):
    """Runs queries under ``limits``: what :func:`~amplitude_async.chunks.run_split` needs."""

    @property
    def limits(self) -> Limits:
        """The limits queries are scheduled by."""
        ...

    async def run(self, query: Query[R], *, priority: int = 0) -> R:
        """Send ``query`` once the budgets admit it and return its typed result."""
        ...


class ClockOwner(Protocol):
    """Anything with a clock (a scheduler)."""

    @property
    def clock(self) -> Clock:
        """The clock it reads."""
        ...


class ScheduledRunner(QueryRunner, Protocol):
    """A :class:`QueryRunner` whose scheduler can be watched: what a backfill reports from."""

    @property
    def scheduler(self) -> ClockOwner:
        """The scheduler, for its clock."""
        ...

    def statistics(self) -> SchedulerStatistics:
        """A snapshot of the scheduler's counters."""
        ...
