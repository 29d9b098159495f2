"""Pacing, optional and off by default: spreading standard-pool dispatches over the window.

The scheduler fills the budgets as fast as they admit: a burst of queued work is dispatched at
once up to the window's budget. ``Scheduler(pacing=True)`` (or an
:class:`aiolimiter.AsyncLimiter` of the caller's own) also makes every standard-pool request
take its cost from a leaky bucket before it queues, so bursts are at most a tenth of the window
budget. Pacing only delays: the budgets are enforced by the scheduler either way, and a request
holds no budget while the pacer delays it.
"""

from __future__ import annotations

from typing import Final

from aiolimiter import AsyncLimiter

from ..errors import ConfigurationError
from ..limits import Limits, Pool

__all__ = ["PACING_STEPS", "check_pacing", "make_pacer", "pace"]

PACING_STEPS: Final = 10
"""With ``pacing=True`` bursts are limited to this fraction (1/N) of the window budget."""


def check_pacing(pacing: object) -> bool | AsyncLimiter | None:
    """``pacing`` if it is a valid value of the scheduler's option (``None``, a bool or an
    :class:`~aiolimiter.AsyncLimiter`); :class:`ConfigurationError` naming it otherwise."""
    if pacing is not None and not isinstance(pacing, bool | AsyncLimiter):
        raise ConfigurationError("pacing", f"must be a bool or an AsyncLimiter, got {pacing!r}")
    return pacing


def make_pacer(pacing: bool | AsyncLimiter | None, limits: Limits) -> AsyncLimiter | None:
    """The pacer for a checked ``pacing`` option: ``None`` for none (``None``, ``False``), for
    ``True`` bursts of a :data:`PACING_STEPS`-th of ``limits.cost_per_window``, or the given
    :class:`~aiolimiter.AsyncLimiter`."""
    if pacing is True:
        steps = PACING_STEPS
        return AsyncLimiter(max(1, limits.cost_per_window // steps), limits.window / steps)
    return pacing or None


async def pace(pacer: AsyncLimiter, pool: Pool, cost: int) -> None:
    """Wait for ``pacer`` to let a request of ``cost`` in ``pool`` queue (only standard-pool
    requests with a cost are paced)."""
    if pool is Pool.STANDARD and cost:
        await pacer.acquire(min(cost, pacer.max_rate))
