"""How tightly admission policies pack the cost window (pure simulation, virtual time, no network).

A batch of ~200 event-segmentation queries (1-60 days, 1-2 events, some group-bys, costs mostly
1 to ~500, plus three of cost 900) is queued at once against Amplitude's default limits; each
response takes 2-20 s. For each policy we print the fraction of the window budget in use,
averaged over the time from the first dispatch to the last one (an entry uses the budget from
dispatch until a window after its completion, the accounting the client must keep), and when
the last query was dispatched.

Policies: FIFO (admit the head while it fits), largest-fit (admit the largest waiting query that
fits, repeatedly) and the library's Scheduler, with its default starvation bound (in a long
batch every query ages past it, and the reservations it then grants cost some packing) and
without one.

    python benchmarks/sim_packing.py [--seeds N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import statistics
from collections.abc import Callable, Sequence

from amplitude_async.budget import PoolLedger, PoolSnapshot, Taken, pool_cap, pool_windows
from amplitude_async.limits import Limits, Pool
from amplitude_async.scheduler import Scheduler
from amplitude_async.testing import VirtualClock

Query = tuple[int, float]  # (cost, response time)
Log = list[tuple[float, float, int]]  # (dispatched, completed, cost)
Picker = Callable[[Sequence[Query], PoolSnapshot], int | None]


def workload(seed: int, n: int = 200) -> list[Query]:
    """Mixed event segmentations; cost = days x conditions x chart cost (see the cost model)."""
    rnd = random.Random(seed)
    queries: list[Query] = []
    while len(queries) < n - 3:
        days = rnd.randint(1, 60)
        events = rnd.choice((1, 1, 2))
        event_group_bys = 1 if rnd.random() < 0.25 else 0
        segment_group_bys = 1 if rnd.random() < 0.1 else 0
        cost = days * (1 + 4 * segment_group_bys) * (events + 4 * event_group_bys)
        if cost <= 600:
            queries.append((cost, rnd.uniform(2, 20)))
    # 30 days x 5 conditions (one segment group-by) x 6 (two events, one group-by) = 900.
    for _ in range(3):
        queries.insert(rnd.randrange(len(queries) + 1), (900, rnd.uniform(2, 20)))
    return queries


def utilisation(log: Log, limits: Limits) -> tuple[float, float]:
    """Mean fraction of the window budget in use up to the last dispatch, and that time."""
    end = max(d for d, _, _ in log)
    start = min(d for d, _, _ in log)
    area = sum(cost * (min(end, done + limits.window) - d) for d, done, cost in log if d < end)
    return area / (limits.cost_per_window * (end - start)), end


def fifo(waiting: Sequence[Query], snap: PoolSnapshot) -> int | None:
    """Index of the head if it fits."""
    return 0 if waiting and snap.fits(waiting[0][0]) else None


def largest_fit(waiting: Sequence[Query], snap: PoolSnapshot) -> int | None:
    """Index of the costliest waiting query that fits."""
    fitting = [(cost, -i) for i, (cost, _) in enumerate(waiting) if snap.fits(cost)]
    return -max(fitting)[1] if fitting else None


async def run_baseline(pick: Picker, queries: Sequence[Query], limits: Limits) -> Log:
    """Greedy admission with ``pick``, re-evaluated whenever capacity frees."""
    loop = asyncio.get_running_loop()
    ledger = PoolLedger(pool_windows(limits, Pool.STANDARD), pool_cap(limits, Pool.STANDARD))
    waiting = list(queries)
    changed = asyncio.Event()
    log: Log = []
    tasks = []

    async def request(entry: int, cost: int, latency: float) -> None:
        dispatched = loop.time()
        await asyncio.sleep(latency)
        ledger.complete(entry, loop.time())
        log.append((dispatched, loop.time(), cost))
        changed.set()

    while waiting:
        now = loop.time()
        while (index := pick(waiting, ledger.snapshot(now))) is not None:
            cost, latency = waiting.pop(index)
            taken = ledger.try_take(cost, now)
            assert isinstance(taken, Taken)
            tasks.append(loop.create_task(request(taken.entry, cost, latency)))
        if not waiting:
            break
        next_change = ledger.snapshot(now).next_change()
        changed.clear()
        timeout = None if next_change == math.inf else next_change - now
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)
    await asyncio.gather(*tasks)
    return log


async def run_scheduler(
    queries: Sequence[Query], limits: Limits, starvation_bound: float | None = None
) -> Log:
    """Queue every query at once on a :class:`Scheduler`."""
    scheduler = Scheduler(limits, starvation_bound=starvation_bound)
    log: Log = []

    async def request(cost: int, latency: float) -> None:
        async with scheduler.slot(Pool.STANDARD, cost) as ticket:
            await asyncio.sleep(latency)
        log.append((ticket.dispatched_at, scheduler.clock.time(), cost))

    await asyncio.gather(*(request(cost, latency) for cost, latency in queries))
    return log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="number of random workloads")
    args = parser.parse_args()
    limits = Limits()
    results: dict[str, list[tuple[float, float]]] = {}
    for seed in range(args.seeds):
        queries = workload(seed)
        runs = {
            "FIFO": run_baseline(fifo, queries, limits),
            "largest-fit": run_baseline(largest_fit, queries, limits),
            "Scheduler": run_scheduler(queries, limits),
            "Scheduler, no starvation bound": run_scheduler(queries, limits, math.inf),
        }
        for name, run in runs.items():
            results.setdefault(name, []).append(utilisation(VirtualClock().run(run), limits))
    total = sum(c for c, _ in workload(0))
    print(f"{args.seeds} workloads of 200 queries (seed 0: total cost {total}), default limits")
    for name, values in results.items():
        mean = statistics.fmean(u for u, _ in values)
        low = min(u for u, _ in values)
        span = statistics.fmean(end for _, end in values)
        print(f"{name:31s} budget used {mean:.3f} (min {low:.3f}); last dispatch at {span:7.0f} s")


if __name__ == "__main__":
    main()
