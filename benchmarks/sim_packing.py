"""How tightly admission policies pack the cost window (pure simulation, virtual time, no network).

A batch of ~200 event-segmentation queries (1-60 days, 1-2 events, some group-bys, costs mostly
1 to ~500, plus three of cost 900) runs against Amplitude's default limits; each response takes
2-20 s. The batch is queued all at once, and again fed a few at a time (``--lookahead``: the next
query queues when one completes, as a client feeding a long backfill does). For each policy we
print the fraction of the window budget in use, averaged over the time from the first dispatch
to the last one (an entry uses the budget from dispatch until a window after its completion,
the accounting the client must keep), the mean and worst over the workloads, when the last
query was dispatched, and the longest any query waited.

Policies: FIFO (admit the head while it fits), largest-fit (admit the largest waiting query that
fits, repeatedly) and the library's Scheduler, with its default starvation bound and without
one. ``--scale 0.005 --latency 0.003 0.02`` gives the fast clock of the emulator benchmarks
(1.5 s windows, responses of a few milliseconds).

The policies run side by side on the same workloads; every figure is a ratio or a count of
windows in virtual time, so the results do not depend on the machine.

    python benchmarks/sim_packing.py [--seeds N] [--lookahead N ...] [--scale F]
        [--latency LO HI] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import statistics
from collections.abc import Callable, Sequence

from report import Report, add_write_option

from amplitude_async.budget import PoolLedger, PoolSnapshot, pool_cap, pool_windows
from amplitude_async.limits import Limits, Pool
from amplitude_async.scheduler import Scheduler
from amplitude_async.testing import VirtualClock

Query = tuple[int, float]  # (cost, response time)
Log = list[tuple[float, float, float, int]]  # (queued, dispatched, completed, cost)
Picker = Callable[[Sequence[Query], PoolSnapshot], int | None]


def workload(seed: int, n: int = 200, latency: tuple[float, float] = (2, 20)) -> list[Query]:
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
            queries.append((cost, rnd.uniform(*latency)))
    # 30 days x 5 conditions (one segment group-by) x 6 (two events, one group-by) = 900.
    for _ in range(3):
        queries.insert(rnd.randrange(len(queries) + 1), (900, rnd.uniform(*latency)))
    return queries


def utilisation(log: Log, limits: Limits) -> tuple[float, float, float]:
    """Mean fraction of the window budget in use up to the last dispatch, that time, and the
    longest wait (queued to dispatched) of any query."""
    end = max(d for _, d, _, _ in log)
    start = min(d for _, d, _, _ in log)
    area = sum(cost * (min(end, done + limits.window) - d) for _, d, done, cost in log if d < end)
    longest = max(d - q for q, d, _, _ in log)
    return area / (limits.cost_per_window * (end - start)), end, longest


def fifo(waiting: Sequence[Query], snap: PoolSnapshot) -> int | None:
    """Index of the head if it fits."""
    return 0 if waiting and snap.fits(waiting[0][0]) else None


def largest_fit(waiting: Sequence[Query], snap: PoolSnapshot) -> int | None:
    """Index of the costliest waiting query that fits."""
    fitting = [(cost, -i) for i, (cost, _) in enumerate(waiting) if snap.fits(cost)]
    return -max(fitting)[1] if fitting else None


async def run_baseline(
    pick: Picker, queries: Sequence[Query], limits: Limits, lookahead: int | None = None
) -> Log:
    """Greedy admission with ``pick``, re-evaluated whenever capacity frees or a query queues.

    With ``lookahead``, at most that many queries are queued or in flight at once (the next one
    queues when one completes), as a client feeding a long batch would do.
    """
    loop = asyncio.get_running_loop()
    ledger = PoolLedger(pool_windows(limits, Pool.STANDARD), pool_cap(limits, Pool.STANDARD))
    waiting: list[Query] = []
    admitted: dict[int, asyncio.Future[int]] = {}  # query index -> its entry, once admitted
    order: list[int] = []  # query index of each waiting query
    changed = asyncio.Event()
    gate = asyncio.Semaphore(lookahead or len(queries))
    log: Log = []

    async def request(index: int, cost: int, latency: float) -> None:
        async with gate:
            queued = loop.time()
            admission = admitted[index] = loop.create_future()
            waiting.append((cost, latency))
            order.append(index)
            changed.set()
            entry = await admission
            dispatched = loop.time()
            await asyncio.sleep(latency)
            ledger.complete(entry, loop.time())
        log.append((queued, dispatched, loop.time(), cost))
        changed.set()

    async def drive() -> None:
        while len(log) < len(queries):
            now = loop.time()
            while (index := pick(waiting, ledger.snapshot(now))) is not None:
                cost, _ = waiting.pop(index)
                assert ledger.fits(cost, now)  # the picker chose from the snapshot
                admitted.pop(order.pop(index)).set_result(ledger.take(cost))
            next_change = ledger.snapshot(now).next_change()
            changed.clear()
            timeout = None if next_change == math.inf else next_change - now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout)

    driver = loop.create_task(drive())
    await asyncio.gather(*(request(i, c, lat) for i, (c, lat) in enumerate(queries)))
    await driver
    return log


async def run_scheduler(
    queries: Sequence[Query],
    limits: Limits,
    starvation_bound: float | None = None,
    lookahead: int | None = None,
) -> Log:
    """Queue the queries on a :class:`Scheduler` (all at once, or ``lookahead`` at a time)."""
    scheduler = Scheduler(limits, starvation_bound=starvation_bound)
    gate = asyncio.Semaphore(lookahead or len(queries))
    log: Log = []

    async def request(cost: int, latency: float) -> None:
        async with gate, scheduler.slot(Pool.STANDARD, cost) as ticket:
            await asyncio.sleep(latency)
        log.append((ticket.queued_at, ticket.dispatched_at, scheduler.clock.time(), cost))

    await asyncio.gather(*(request(cost, latency) for cost, latency in queries))
    return log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="number of random workloads")
    parser.add_argument(
        "--lookahead",
        type=int,
        nargs="*",
        default=[0, 32],
        help="queries queued or in flight at once (0: the whole batch at once)",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="time scale of the limits")
    parser.add_argument(
        "--latency",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="response time range in seconds (default 2-20 s, times --scale)",
    )
    add_write_option(parser)
    args = parser.parse_args()
    out = Report("sim_packing", "Packing of admission policies, simulated in virtual time")
    limits = Limits().scaled(args.scale) if args.scale != 1 else Limits()
    low_latency, high_latency = args.latency or (2 * args.scale, 20 * args.scale)
    total = sum(c for c, _ in workload(0))
    out.print(
        f"{args.seeds} workloads of 200 queries (seed 0: total cost {total}); window "
        f"{limits.window:g} s, responses {low_latency:g}-{high_latency:g} s"
    )
    for lookahead in args.lookahead:
        results: dict[str, list[tuple[float, float, float]]] = {}
        for seed in range(args.seeds):
            queries = workload(seed, latency=(low_latency, high_latency))
            ahead = lookahead or None
            runs = {
                "FIFO": run_baseline(fifo, queries, limits, ahead),
                "largest-fit": run_baseline(largest_fit, queries, limits, ahead),
                "Scheduler": run_scheduler(queries, limits, None, ahead),
                "Scheduler, no starvation bound": run_scheduler(queries, limits, math.inf, ahead),
            }
            for name, run in runs.items():
                results.setdefault(name, []).append(utilisation(VirtualClock().run(run), limits))
        out.print("all queued at once" if not lookahead else f"{lookahead} queued at a time")
        for name, values in results.items():
            mean = statistics.fmean(u for u, _, _ in values)
            worst = min(u for u, _, _ in values)
            span = statistics.fmean(end for _, end, _ in values) / limits.window
            wait = max(w for _, _, w in values) / limits.window
            out.print(
                f"  {name:31s} budget used {mean:.3f} (worst {worst:.3f}); "
                f"last dispatch at {span:5.1f} windows; longest wait {wait:5.1f} windows"
            )
    out.finish(write=args.write)


if __name__ == "__main__":
    main()
