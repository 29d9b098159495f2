"""A 365-day backfill of 20 queries against the in-process emulator, at a fast clock.

Run: ``python benchmarks/backfill.py [time_scale] [--write]`` (default 0.001: the 5-minute
window lasts 0.3 s). Prints the plan's cost, the ratio of the ideal (the least time the budgets
allow) to the wall time, measured in the same run, 429s and retries, and peak memory
(tracemalloc, Python allocations). The ratio is the result; the wall time is context (the
emulator answers in the same process, so a loaded machine lowers the ratio).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import tracemalloc
from datetime import date
from pathlib import Path
from typing import Any

from report import Report, add_write_option

from amplitude_async.backfill import (
    CheckpointStore,
    ideal_seconds,
    parse_job,
    plan_job,
    run_backfill,
    write_outputs,
)
from amplitude_async.client import AmplitudeClient
from amplitude_async.limits import Limits
from amplitude_async.retry import RetryPolicy
from amplitude_async.testing.dataset import SyntheticDataset
from amplitude_async.testing.emulator import Emulator

START, END = date(2026, 9, 1), date(2027, 8, 31)
EVENTS = ["Purchase", "View Item", "Search", "Add to Cart", "Sign Up"]


def queries() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for event in EVENTS:
        out.append(
            {"name": f"{event} uniques", "endpoint": "event_segmentation", "events": [event]}
        )
        out.append(
            {
                "name": f"{event} by country",
                "endpoint": "event_segmentation",
                "events": [event],
                "metric": "totals",
                "group_by": ["country"],
            }
        )
        out.append(
            {
                "name": f"{event} by country and platform",
                "endpoint": "event_segmentation",
                "events": [event],
                "metric": "totals",
                "group_by": ["country", "platform"],
            }
        )
    out.append({"name": "dau", "endpoint": "active_users"})
    out.append(
        {
            "name": "weekly new",
            "endpoint": "active_users",
            "metric": "new",
            "interval": "weekly",
            "group_by": "platform",
        }
    )
    out.append({"name": "session length", "endpoint": "average_session_length"})
    out.append({"name": "sessions per user", "endpoint": "sessions_per_user"})
    out.append(
        {
            "name": "ios dau",
            "endpoint": "active_users",
            "segments": [[{"prop": "platform", "op": "is", "values": ["iOS"]}]],
        }
    )
    return out


async def main(scale: float, out: Report) -> None:
    limits = Limits().scaled(scale)
    dataset = SyntheticDataset(seed=1, users=1000, days=365, start=START)
    with tempfile.TemporaryDirectory() as directory:
        job = parse_job(
            {"start": START, "end": END, "chunk_days": 31, "output": "out", "queries": queries()},
            base=Path(directory),
        )
        plan = plan_job(job, limits)
        tracemalloc.start()
        began = time.perf_counter()
        async with Emulator(dataset, limits=limits) as emu:
            policy = RetryPolicy().scaled(scale)
            async with AmplitudeClient(
                emu.api_key, emu.secret_key, base_url=emu.url, limits=limits, retry_policy=policy
            ) as client:
                with CheckpointStore(job.output) as store:
                    store.begin(plan)
                    report = await run_backfill(plan, client, store)
                    write_outputs(job, plan, store)
                    rows = sum(1 for _ in store.rows(plan.names))
                stats = client.statistics()
            server = emu.statistics()
        wall = time.perf_counter() - began
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    ideal = ideal_seconds(plan.total_cost, limits)
    # The first window's budget is free at the start, so the true floor is one window less.
    floor = max(0.0, ideal - limits.window)
    table = [
        (
            "queries x chunks",
            f"{len(job.queries)} x {len(plan.tasks) / len(job.queries):.1f} = {len(plan.tasks)}",
        ),
        (
            "total cost",
            f"{plan.total_cost} ({plan.total_cost / limits.cost_per_window:.1f} windows)",
        ),
        ("window", f"{limits.window:g} s (time scale {scale:g})"),
        ("wall time", f"{wall:.2f} s"),
        ("ideal (budget-bound)", f"{floor:.2f} .. {ideal:.2f} s"),
        ("ideal / wall", f"{floor / wall:.2f} .. {ideal / wall:.2f}"),
        ("chunks done / failed", f"{report.done} / {len(report.failures)}"),
        ("rows written", str(rows)),
        ("429s / retries", f"{stats.rate_limited} / {stats.retries}"),
        ("server peak window cost", str(getattr(server, "peak_window_cost", "?"))),
        ("peak Python memory", f"{peak / 2**20:.1f} MiB (tracemalloc)"),
    ]
    width = max(len(k) for k, _ in table)
    for key, value in table:
        out.print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("time_scale", type=float, nargs="?", default=0.001)
    add_write_option(parser)
    args = parser.parse_args()
    report = Report("backfill", "A 365-day backfill against the emulator, against the ideal")
    asyncio.run(main(args.time_scale, report))
    report.finish(write=args.write)
