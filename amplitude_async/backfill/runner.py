"""Running a backfill plan through a client, chunk by chunk, with checkpoints.

:func:`run_backfill` queues the plan's unfinished chunks with the client (a bounded number at
a time, enough for the scheduler to pack the budget tightly), stores each finished chunk's rows
with :class:`~.store.CheckpointStore` as soon as it arrives, and records chunks that fail after
the client's retries (they are tried again on the next run). An authentication failure stops
the run at once (every other chunk would fail the same way). Setting ``stop`` abandons what is
in flight: finished chunks are already committed, so the next run resumes from there.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

from attrs import frozen

from ..batch import DEFAULT_LOOKAHEAD, Batch
from ..errors import AmplitudeError, AuthenticationError
from ..limits import Pool
from ..protocols import ScheduledRunner
from .output import tidy_rows
from .plan import ChunkTask, Plan, ideal_seconds
from .store import CheckpointStore

__all__ = ["BackfillReport", "Progress", "run_backfill"]

LOOKAHEAD: Final = DEFAULT_LOOKAHEAD
"""Chunks handed to the client at once: plenty for packing, bounded for memory."""

PROGRESS_INTERVAL: Final = 0.5
"""Seconds (of the client's clock) between progress reports."""


@frozen
class Progress:
    """A snapshot of a running backfill."""

    done: int
    total: int
    failed: int
    cost_done: int
    cost_total: int
    window_used: int
    window_budget: int
    rate_limited: int
    retries: int
    elapsed: float
    eta: float

    def line(self) -> str:
        """A one-line summary, e.g. for a terminal status line."""
        percent = 100 * self.cost_done / self.cost_total if self.cost_total else 100.0
        return (
            f"{self.done}/{self.total} chunks, cost {self.cost_done}/{self.cost_total} "
            f"({percent:.0f}%), window {self.window_used}/{self.window_budget}, "
            f"ETA {format_seconds(self.eta)}, 429s {self.rate_limited}, retries {self.retries}"
            + (f", failed {self.failed}" if self.failed else "")
        )


@frozen
class BackfillReport:
    """How a run ended: chunks done (before and during it), failures, interruption."""

    total: int
    done: int
    resumed: int
    failures: tuple[tuple[tuple[str, int], str], ...]
    interrupted: bool
    cost_spent: int
    elapsed: float

    @property
    def complete(self) -> bool:
        """Whether every chunk is done."""
        return self.done == self.total


def format_seconds(seconds: float) -> str:
    """``75`` → ``1m15s``; ``0.4`` → ``0.4s``."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


async def run_backfill(
    plan: Plan,
    client: ScheduledRunner,
    store: CheckpointStore,
    *,
    priority: int = 0,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    lookahead: int = LOOKAHEAD,
) -> BackfillReport:
    """Run every chunk of ``plan`` not yet done in ``store`` through ``client``.

    ``client`` is an :class:`~amplitude_async.client.AmplitudeClient`; ``store`` must have
    :meth:`~.store.CheckpointStore.begin` this plan. Raises
    :class:`~amplitude_async.errors.AuthenticationError` at once if the API refuses the keys.
    """
    clock = client.scheduler.clock
    began_wall = time.monotonic()
    began = clock.time()
    done_before = store.done()
    pending = [task for task in plan.tasks if task.key not in done_before]
    failures: dict[tuple[str, int], str] = {}
    state = {"done": len(done_before), "cost": 0}
    cost_total = plan.total_cost
    cost_left = sum(task.cost for task in pending)
    limits = client.limits
    stop = stop if stop is not None else asyncio.Event()

    def progress() -> Progress:
        stats = client.statistics()
        pool = stats[Pool.STANDARD]
        window = next((w for w in pool.windows if w.name == "cost_per_window"), None)
        remaining = cost_left - state["cost"]
        return Progress(
            done=state["done"],
            total=len(plan.tasks),
            failed=len(failures),
            cost_done=cost_total - remaining,
            cost_total=cost_total,
            window_used=window.used if window else 0,
            window_budget=window.budget if window else limits.cost_per_window,
            rate_limited=stats.rate_limited,
            retries=stats.retries,
            elapsed=clock.time() - began,
            eta=ideal_seconds(remaining, limits),
        )

    async def one(task: ChunkTask) -> None:
        try:
            result = await client.run(task.query, priority=priority)
        except AuthenticationError:
            raise
        except AmplitudeError as exc:
            failures[task.key] = str(exc)
            store.fail(task, str(exc))
            cost_done_failed(task)
            return
        store.complete(task, tidy_rows(task.name, task.query, result))
        state["done"] += 1
        state["cost"] += task.cost

    def cost_done_failed(task: ChunkTask) -> None:
        # A failed chunk's cost is no longer ahead of this run.
        state["cost"] += task.cost

    async def reporter() -> None:
        assert on_progress is not None
        while True:
            await clock.sleep(PROGRESS_INTERVAL)
            on_progress(progress())

    interrupted = False
    batch = Batch(pending, one, lookahead=lookahead)
    ticker = asyncio.create_task(reporter()) if on_progress is not None else None

    async def stopper() -> None:
        await stop.wait()
        batch.stop()

    watcher = asyncio.create_task(stopper())
    try:
        async with batch:
            async for outcome in batch:
                outcome.unwrap()  # re-raises an authentication failure
        interrupted = stop.is_set() and state["done"] + len(failures) < len(plan.tasks)
    finally:
        for item in (watcher, *((ticker,) if ticker else ())):
            item.cancel()
        await asyncio.gather(watcher, *((ticker,) if ticker else ()), return_exceptions=True)
    if on_progress is not None:
        on_progress(progress())
    finished_now = store.done()
    return BackfillReport(
        total=len(plan.tasks),
        done=state["done"],
        resumed=len(done_before),
        failures=tuple(sorted(failures.items())),
        interrupted=interrupted,
        cost_spent=sum(t.cost for t in pending if t.key in finished_now),
        elapsed=time.monotonic() - began_wall,
    )
