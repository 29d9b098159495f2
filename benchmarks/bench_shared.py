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

Each table is followed by what it says, worked out from its numbers: 429s with a shared budget
and with own budgets, budget used as a ratio to the same run's one-process reference (target:
no 429s with a shared budget, and the budget used as well as one process), the priority queries'
wait against one process's, grant latencies and round trips. The dashboard split over N
schedulers sharing one in-process store in virtual time (no CPU contention, no network) closes
the section; ``--simulate`` prints only that. ``--workload segments:COUNT:DAYS`` replaces the
dashboard with COUNT event segmentations of DAYS days (cost DAYS + 1 each); several workloads
run one after the other.

    python benchmarks/bench_shared.py [--processes 1 2 4 8] [--scale 0.005] [--no-png]
        [--workload dashboard | segments:COUNT:DAYS ...] [--exchanges 500] [--png PATH]
        [--simulate] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import statistics
from pathlib import Path
from typing import Any

import attrs
from report import Report, add_write_option, bullets, met, wrap

from amplitude_async.admission import Changes, Registration
from amplitude_async.limits import Limits, Pool
from amplitude_async.testing.dataset import SyntheticDataset
from amplitude_async.testing.emulator import Emulator
from amplitude_async.testing.timing import TimedBudgetStore
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
    store = TimedBudgetStore.from_url(url, api_key="bench-alone", limits=Limits(concurrent=5))
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


def spread(values: list[float], digits: int = 3) -> str:
    """``low-high`` (or the one value) of ``values``."""
    low, high = min(values), max(values)
    return (
        f"{low:.{digits}f}"
        if f"{low:.{digits}f}" == f"{high:.{digits}f}"
        else (f"{low:.{digits}f}-{high:.{digits}f}")
    )


def listed(rows: list[dict[str, Any]], key: str, fmt: str = "{:.2f}", base: float = 1.0) -> str:
    return ", ".join(f"{fmt.format(r[key] / base)} at N = {r['n']}" for r in rows)


def reading(rows: list[dict[str, Any]], alone: list[float]) -> list[str]:
    """What one workload's table says against issue 9's targets, as ratios to the same run's
    one-process reference."""
    one = next(r for r in rows if r["way"] == "one")
    shared = [r for r in rows if r["way"] == "shared"]
    own = [r for r in rows if r["way"] == "own" and r["n"] > 1]
    out = []
    out.append(
        f"429s, shared budget: {listed(shared, '429', '{:.0f}')} (target 0: "
        f"{met(sum(r['429'] for r in shared) == 0)}); each on its own budget: "
        f"{listed(own, '429', '{:.0f}') or 'no run with N > 1'}."
    )
    lowest = min(r["used"] for r in shared)
    out.append(
        f"Rate used / one process's ({one['used']:.3f}): shared "
        f"{listed(shared, 'used', base=one['used'])}; own "
        f"{listed(own, 'used', base=one['used']) or '-'}. Shared at its lowest {lowest:.3f} "
        f"(target >= 0.95, as one process, when the budget binds: {met(lowest >= 0.95)})."
    )
    out.append(
        f"Ideal/wall / one process's ({one['ideal_wall']:.3f}): shared "
        f"{listed(shared, 'ideal_wall', base=one['ideal_wall'])}; own "
        f"{listed(own, 'ideal_wall', base=one['ideal_wall']) or '-'}."
    )
    out.append(f"Queries failed, all runs: {sum(r['failed'] for r in rows)}.")
    worst = max(r["urgent_max"] for r in shared) / one["urgent_max"]
    p50s = listed(shared, "urgent_p50", base=one["urgent_p50"])
    # Two single-process runs of the same work in the same run (one, own at N = 1): how far
    # the longest wait moves with nothing changed, to read the ratio against.
    single = [r for r in rows if r["way"] == "own" and r["n"] == 1]
    noise = (
        f"; the two single-process runs (one, own at N = 1) differ by "
        f"{abs(single[0]['urgent_max'] / one['urgent_max'] - 1) * 100:.0f} %"
        if single
        else ""
    )
    out.append(
        f"Priority-10 wait / one process's (p50 {one['urgent_p50']:.2f} s, max "
        f"{one['urgent_max']:.2f} s): shared p50 {p50s}; longest wait {worst:.2f}x one "
        f"process's (target <= 1: {met(worst <= 1.0)}{noise})."
    )
    grants = [r["grant_p50_ms"] for r in shared]
    out.append(
        f"Grant latency p50, shared, up to {max(r['n'] for r in shared) + 1} processes on "
        f"{os.cpu_count()} CPUs, ms: {listed(shared, 'grant_p50_ms')} (target <= 2 ms: "
        f"{met(max(grants) <= 2.0)}); p99, ms: {listed(shared, 'grant_p99_ms', '{:.1f}')}. One "
        f"process alone: p50 {percentile(alone, 0.5) * 1000:.2f} ms, p99 "
        f"{percentile(alone, 0.99) * 1000:.2f} ms. Absolute times: context only, see the load."
    )
    trips = [r["round_trips"] for r in shared]
    out.append(
        f"Redis round trips per admitted request: {listed(shared, 'round_trips')} (target <= 2: "
        f"{met(max(trips) <= 2.0)}; one exchange per completion, plus batched registrations, "
        "claim wake-ups and lease renewals)."
    )
    return ["Reading it (worked out from the numbers above):", "", *bullets(out)]


def describe(work: str) -> str:
    if work == "dashboard":
        return "The demo's full dashboard (193 queries of every endpoint) plus the 5 priority ones"
    _, count, days = work.split(":")
    cost = int(days) + 1
    return f"{count} event segmentations of {days} days (cost {cost} each) plus the 5 priority ones"


SETUP = (
    "Setup: Limits().scaled({scale}) ({budget} cost per {window:g} s sliding window, "
    "{concurrent} in flight) enforced by one strict Emulator in the benchmark's process; 0-4 ms "
    "arrival delay, 10-100 ms processing. N worker processes, each its own interpreter and event "
    "loop, share the work and start it together. The first also sends five priority-10 queries "
    "2 s in. one: all the work in one process (the reference); shared: N processes on one "
    "RedisBudgetStore (a private redis-server on 127.0.0.1); own: N processes, each on its own "
    "in-process budget. Rate used and ideal/wall as in bench_policies.py; server ms: mean time "
    "of an accepted request in the emulator; grant latency: the exchange's round trip or the "
    "delivery of a published grant."
)


async def main(args: argparse.Namespace, out: Report) -> None:
    """The runs in processes: each workload's table and what it says."""
    limits = Limits().scaled(args.scale)
    out.print(
        wrap(
            SETUP.format(
                scale=args.scale,
                budget=limits.cost_per_window,
                window=limits.window,
                concurrent=limits.concurrent,
            )
        )
    )
    async with private_redis() as url:
        for index, work in enumerate(args.workload):
            rows = []
            rows.append(await one_run(1, "one", url, args.scale, work, args.bound))
            print(rows[-1], flush=True)
            for n in args.processes:
                for way in ("shared", "own"):
                    rows.append(await one_run(n, way, url, args.scale, work, args.bound))
                    print(rows[-1], flush=True)
            alone = await exchanges_alone(url, args.exchanges)
            cost = rows[0]["cost"]
            out.print(f"\n### {describe(work)} (cost accepted {cost:,})\n")
            out.print(table(rows))
            out.print(
                f"\nexchanges alone ({args.exchanges}, each granting one request): grant p50 "
                f"{percentile(alone, 0.5) * 1000:.2f} ms, "
                f"p99 {percentile(alone, 0.99) * 1000:.2f} ms\n"
            )
            out.print("\n".join(reading(rows, alone)))
            if index == 0 and not args.no_png:
                path = args.png or Path(__file__).with_name("shared.png")
                plot(rows, path)
                out.attach(
                    f"\n![429s and budget used per number of processes ({work})]({path.name})"
                )


def simulated(args: argparse.Namespace, out: Report) -> None:
    """The virtual-time makespans (run outside any event loop: each has its own)."""
    out.print(
        "\n### The dashboard over N schedulers on one in-process store, virtual time\n"
        "(no CPU contention, no network, 10-100 ms responses)\n"
    )
    out.print("| schedulers | makespan s (default bound) | makespan s (no bound) |")
    out.print("|---|---|---|")
    made = simulate(sorted({1, *args.processes}), args.scale)
    for n, default, unbounded in made:
        out.print(f"| {n} | {default:.2f} | {unbounded:.2f} |")
    single = made[0][1]
    ratios = ", ".join(f"{default / single:.2f} at N = {n}" for n, default, _ in made[1:])
    out.print(
        "\n"
        + wrap(
            f"Makespan / one scheduler's: {ratios or '-'} (what the shared store alone costs, "
            "without processes or network)."
        )
    )


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
        nargs="+",
        default=["dashboard"],
        help="'dashboard' (the demo's full dashboard) or 'segments:COUNT:DAYS'; several: in turn",
    )
    parser.add_argument("--no-png", action="store_true")
    parser.add_argument("--png", type=Path, help="where to write the plot (shared.png)")
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="only the virtual-time makespans of the dashboard split over N schedulers",
    )
    add_write_option(parser)
    arguments = parser.parse_args()
    report = Report("bench_shared", "One budget for many processes (`bench_shared.py`)")
    if not arguments.simulate:
        asyncio.run(main(arguments, report))
    simulated(arguments, report)
    report.finish(write=arguments.write)
