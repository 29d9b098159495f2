"""One project's budget spent by 1, 2, 4 and 8 processes: shared in Redis vs each on its own.

The demo's full dashboard (193 queries of every endpoint, total cost 7,352: 7.4 windows) is split
over N worker processes (:mod:`amplitude_async.testing.workers`), each with its own event loop
and ``AmplitudeClient``, against one strict in-process :class:`~amplitude_async.testing.Emulator`
(``Limits().scaled(0.005)``: 1000 cost per 1.5 s sliding window, 5 in flight; 0-4 ms arrival
delay, 10-100 ms processing, Amplitude's 2-20 s at this scale). The first process also sends 5
priority-10 event segmentations (cost 8) 2 s after it starts, while the dashboard is queued.

Ways, same workloads, same run:

- ``one``: a single process with all the work on its in-process budget (the reference);
- ``shared``: N processes on one ``RedisBudgetStore`` (a private ``redis-server``);
- ``own``: N processes, each on its own in-process budget (what happens without a shared
  store: each believes it owns the whole budget, and retries after 429s).

Then ``--exchanges`` exchanges of one process alone, each queueing one request that is granted
at once and completing the previous one: the grant latency of the script itself on loopback.

Reported per (N, way): 429s the emulator sent, budget used as in ``bench_policies.py`` (see
RESULTS.md): *rate used* = C / (B * T / W) and *ideal/wall* = T* / T, with C the cost accepted,
T the span from the first request's arrival to the last response, and T* = (ceil(C/B) - 1) * W
+ the last request's time at the server; the priority queries' latency (queue to result,
median and max), grant latency (decision to the waiting process: an exchange's round trip, or
the delivery of a published grant; p50/p99) and Redis round trips per admitted request (shared
only). Writes a plot to ``benchmarks/shared.png`` unless ``--no-png``.

``--simulate`` only splits the dashboard over N schedulers sharing one in-process store in
virtual time (no CPU contention, no network) and prints the makespans. ``--workload
segments:COUNT:DAYS`` replaces the dashboard with COUNT event segmentations of
DAYS days (cost DAYS + 1 each).

    python benchmarks/bench_shared.py [--processes 1 2 4 8] [--scale 0.005] [--no-png]
        [--workload dashboard | segments:COUNT:DAYS] [--exchanges 500] [--png PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
from pathlib import Path
from typing import Any

import attrs

from amplitude_async.admission import Changes, Registration
from amplitude_async.limits import Limits, Pool
from amplitude_async.redis_store import RedisBudgetStore
from amplitude_async.testing.dataset import SyntheticDataset
from amplitude_async.testing.emulator import Emulator
from amplitude_async.testing.workers import WorkerSpec, private_redis, run_workers

PRIORITY_WORK = "segments:5:7"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def one_run(
    n: int,
    way: str,
    redis_url: str,
    scale: float,
    work: str = "dashboard",
    bound: float | None = None,
) -> dict[str, Any]:
    limits = Limits().scaled(scale)
    dataset = SyntheticDataset(seed=1, users=2000, days=60)
    emulator = Emulator(
        dataset, limits=limits, seed=1, arrival_delay=(0.0, 0.004), processing_time=(0.01, 0.1)
    )
    async with emulator:
        base = {
            "base_url": emulator.url,
            "api_key": emulator.api_key,
            "secret_key": emulator.secret_key,
            "budget_url": redis_url if way == "shared" else None,
            "scale": scale,
            "profile": "full",
            "workload": work,
            "starvation_bound": bound,
            "lease": 5.0,
            "timeout": 4.0,
        }
        specs = [WorkerSpec(**base, part=i, parts=n) for i in range(n)]  # type: ignore[arg-type]
        specs[0] = attrs.evolve(specs[0], urgent=PRIORITY_WORK, urgent_delay=2.0)
        reports = await run_workers(specs)
    served = emulator.statistics()
    accepted = [r for r in emulator.requests if r.accepted]
    span = max(r.finished for r in accepted) - min(r.at for r in accepted)
    last = max(accepted, key=lambda r: r.finished)
    budget, window = limits.cost_per_window, limits.window
    ideal = (math.ceil(served.cost_accepted / budget) - 1) * window + (last.finished - last.at)
    service = [r.finished - r.at for r in accepted]
    urgent = reports[0].urgent_latencies
    done = sum(r.done for r in reports)
    grants = [g for r in reports for g in r.grant_latencies]
    return {
        "n": n,
        "way": way,
        "429": served.rate_limited,
        "done": done,
        "failed": sum(sum(r.failed.values()) for r in reports),
        "cost": served.cost_accepted,
        "span": span,
        "used": served.cost_accepted / (budget * span / window),
        "ideal_wall": ideal / span,
        "server_ms": statistics.mean(service) * 1000,
        "urgent_p50": percentile(urgent, 0.5),
        "urgent_max": max(urgent, default=float("nan")),
        "grant_p50_ms": percentile(grants, 0.5) * 1000,
        "grant_p99_ms": percentile(grants, 0.99) * 1000,
        "round_trips": sum(r.round_trips for r in reports) / done if way == "shared" else 0.0,
    }


def simulate(processes: list[int], scale: float) -> list[tuple[int, float, float]]:
    """The dashboard split over N schedulers on one in-process store, in virtual time (no CPU
    contention, no network): the makespan with the default starvation bound and with none."""
    from amplitude_async.admission import InMemoryBudgetStore
    from amplitude_async.demo import FULL, dashboard
    from amplitude_async.scheduler import Scheduler
    from amplitude_async.testing import run_virtual

    queries = dashboard(SyntheticDataset(seed=1, users=FULL.users, days=FULL.days), FULL)
    limits = Limits().scaled(scale)

    def makespan(n: int, bound: float | None) -> float:
        async def main() -> float:
            store = InMemoryBudgetStore(limits, starvation_bound=bound)
            schedulers = [Scheduler(store=store) for _ in range(n)]
            rng = random.Random(1)
            ends: list[float] = []

            async def one(scheduler: Scheduler, pool: Pool, cost: int) -> None:
                async with scheduler.slot(pool, cost):
                    await asyncio.sleep(rng.uniform(0.01, 0.1))
                ends.append(asyncio.get_running_loop().time())

            tasks = []
            for i in range(n):
                tasks += [
                    asyncio.create_task(one(schedulers[i], q.pool, q.cost)) for q in queries[i::n]
                ]
                await asyncio.sleep(0.001)  # each process registers a moment after the last
            await asyncio.gather(*tasks)
            return max(ends)

        return run_virtual(main())

    return [(n, makespan(n, None), makespan(n, math.inf)) for n in processes]


async def exchanges_alone(url: str, count: int) -> list[float]:
    """Seconds per exchange that grants one request (and completes the previous one)."""
    store = RedisBudgetStore.from_url(url, api_key="bench-alone", limits=Limits(concurrent=5))
    store.grant_latencies = []
    previous: list[tuple[Pool, int]] = []
    try:
        for local in range(count):
            outcome = await store.exchange(
                Changes(
                    owner="alone",
                    lease=5.0,
                    register=[Registration(local, Pool.STANDARD, 1, 0)],
                    complete=previous,
                )
            )
            previous = [(g.pool, g.entry) for g in outcome.grants]
    finally:
        await store.aclose()
    return store.grant_latencies


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| processes | budget | 429s | done | failed | rate used | ideal/wall | server ms | "
        "priority p50 s | priority max s | grant p50 ms | grant p99 ms | round trips / request |"
    )
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        shared = r["way"] == "shared"
        lines.append(
            f"| {r['n']} | {r['way']} | {r['429']} | {r['done']} | {r['failed']} | "
            f"{r['used']:.3f} | {r['ideal_wall']:.3f} | {r['server_ms']:.0f} | "
            f"{r['urgent_p50']:.2f} | {r['urgent_max']:.2f} | "
            + (
                f"{r['grant_p50_ms']:.2f} | {r['grant_p99_ms']:.2f} | {r['round_trips']:.2f} |"
                if shared
                else "- | - | - |"
            )
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for way, colour in (("shared", "tab:blue"), ("own", "tab:red"), ("one", "tab:green")):
        mine = [r for r in rows if r["way"] == way]
        ns = [r["n"] for r in mine]
        left.plot(ns, [r["429"] for r in mine], "o-", color=colour, label=way)
        right.plot(ns, [r["used"] for r in mine], "o-", color=colour, label=way)
    left.set(title="429s from the strict emulator", xlabel="processes", ylabel="429s")
    right.set(title="budget used (rate used)", xlabel="processes", ylabel="fraction", ylim=(0, 1.1))
    for axis in (left, right):
        axis.set_xticks(sorted({r["n"] for r in rows}))
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


async def main(args: argparse.Namespace) -> None:
    if args.simulate:
        return
    rows = []
    async with private_redis() as url:
        rows.append(await one_run(1, "one", url, args.scale, args.workload, args.bound))
        print(rows[-1], flush=True)
        for n in args.processes:
            for way in ("shared", "own"):
                rows.append(await one_run(n, way, url, args.scale, args.workload, args.bound))
                print(rows[-1], flush=True)
        alone = await exchanges_alone(url, args.exchanges)
    print(table(rows))
    print(
        f"\nexchanges alone ({args.exchanges}, each granting one request): grant p50 "
        f"{percentile(alone, 0.5) * 1000:.2f} ms, p99 {percentile(alone, 0.99) * 1000:.2f} ms"
    )
    if not args.no_png:
        plot(rows, args.png or Path(__file__).with_name("shared.png"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--scale", type=float, default=0.005)
    parser.add_argument("--exchanges", type=int, default=500)
    parser.add_argument(
        "--bound", type=float, help="starvation bound in seconds (-1: none; default 3 windows)"
    )
    parser.add_argument(
        "--workload",
        default="dashboard",
        help="'dashboard' (the demo's full dashboard) or 'segments:COUNT:DAYS'",
    )
    parser.add_argument("--no-png", action="store_true")
    parser.add_argument("--png", type=Path, help="where to write the plot (shared.png)")
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="only the virtual-time makespans of the dashboard split over N schedulers",
    )
    arguments = parser.parse_args()
    if arguments.simulate:
        print("| schedulers | makespan s (default bound) | makespan s (no bound) |")
        print("|---|---|---|")
        for n, default, unbounded in simulate(sorted({1, *arguments.processes}), arguments.scale):
            print(f"| {n} | {default:.2f} | {unbounded:.2f} |")
    asyncio.run(main(arguments))
