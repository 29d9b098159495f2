"""Build time of a large synthetic dataset and answer times of 30-day queries over it.

Run: ``python benchmarks/emulator_dataset.py [users] [days]`` (defaults: 100000 users, 30 days,
about 1.2 million events). Prints seconds per step.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from amplitude_async import queries as q
from amplitude_async.testing.dataset import SyntheticDataset
from amplitude_async.testing.engine import answer
from amplitude_async.values import Event, GroupBy, PropertyFilter, Segment, Where


def main() -> None:
    users = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    days = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    began = time.perf_counter()
    ds = SyntheticDataset(seed=1, users=users, days=days)
    print(f"build: {users} users, {len(ds)} events in {time.perf_counter() - began:.2f} s")
    start, end = ds.start, ds.start + timedelta(days=min(days, 30) - 1)
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
    for name, query in cases.items():
        began = time.perf_counter()
        answer(query, ds, now)
        print(f"{name}: {time.perf_counter() - began:.3f} s")


if __name__ == "__main__":
    main()
