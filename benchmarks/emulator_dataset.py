"""Build time of a large synthetic dataset and answer times of 30-day queries over it.

Run: ``python benchmarks/emulator_dataset.py [users] [days] [--write]`` (defaults: 100000 users,
30 days, about 1.2 million events).

Times are given as multiples of the yardstick measured in the same run (a fixed pure-Python
workload, see ``report.py``), which carries over to other machines better than seconds; the
seconds are context.

The library leaves the garbage collector alone. Building a dataset allocates very many objects
and no reference cycles, so the collector's automatic passes are pure overhead there; a caller
who builds big datasets can pause it around the build, as this script measures side by side:
the same build with the collector running, and with ``gc.disable()`` around it (``gc.freeze()``
afterwards keeps the dataset out of later collections).
"""

from __future__ import annotations

import argparse
import gc
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from report import Report, add_write_option

from amplitude_async import queries as q
from amplitude_async.testing.dataset import SyntheticDataset
from amplitude_async.testing.engine import answer
from amplitude_async.values import Event, GroupBy, PropertyFilter, Segment, Where


def build(users: int, days: int, *, paused: bool) -> tuple[SyntheticDataset, float]:
    """A dataset and its build seconds, with the collector running or paused."""
    gc.collect()
    began = time.perf_counter()
    if paused:
        gc.disable()
    try:
        ds = SyntheticDataset(seed=1, users=users, days=days)
    finally:
        gc.enable()
    elapsed = time.perf_counter() - began
    if paused:
        gc.freeze()
    return ds, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("users", type=int, nargs="?", default=100_000)
    parser.add_argument("days", type=int, nargs="?", default=30)
    add_write_option(parser)
    args = parser.parse_args()
    out = Report("emulator_dataset", "Synthetic dataset build and answer times")
    unit = out.yardstick
    _, running = build(args.users, args.days, paused=False)
    ds, paused = build(args.users, args.days, paused=True)
    out.print(f"{args.users} users, {args.days} days: {len(ds)} events")
    out.print(
        f"build, collector running: {running / unit:6.1f} yardsticks ({running:.2f} s)\n"
        f"build, collector paused:  {paused / unit:6.1f} yardsticks ({paused:.2f} s)\n"
        f"paused / running: {paused / running:.2f}"
    )
    start, end = ds.start, ds.start + timedelta(days=min(args.days, 30) - 1)
    now = datetime.combine(ds.end + timedelta(days=1), datetime.min.time(), UTC)
    view = Event("View Item", [PropertyFilter("price", "greater", ["20"])])
    cases: dict[str, q.Query[Any]] = {
        "segmentation uniques": q.EventSegmentation([Event("View Item")], start, end),
        "segmentation filtered, segment, g": q.EventSegmentation(
            [view],
            start,
            end,
            segments=[Segment(Where("platform", "is", ["iOS"]))],
            group_by=["country"],
        ),
        "segmentation sums by event prop": q.EventSegmentation(
            [Event("Purchase", group_by=[GroupBy("revenue", "event")])], start, end, metric="sums"
        ),
        "active users": q.ActiveUsers(start, end),
        "funnel 3 steps": q.Funnel(["Sign Up", "Complete Profile", "Purchase"], start, end),
        "retention n-day": q.Retention(Event("Sign Up"), Event("_active"), start, end),
        "session length distribution": q.SessionLengthDistribution(start, end),
    }
    out.print("\nanswer times (collector running; dataset frozen out of collections):")
    for name, query in cases.items():
        began = time.perf_counter()
        answer(query, ds, now)
        elapsed = time.perf_counter() - began
        out.print(f"  {name:36s} {elapsed / unit:6.2f} yardsticks ({elapsed:.3f} s)")
    out.finish(write=args.write)


if __name__ == "__main__":
    main()
