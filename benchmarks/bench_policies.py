"""Admission policies side by side against the built-in emulator as a strict local server.

The same batch of ~200 mixed event-segmentation queries (1-60 days, 1-2 events, some group-bys,
three of cost 900; fixed seed) is sent four ways, each against a fresh
:class:`~amplitude_async.testing.Emulator` on 127.0.0.1 enforcing Amplitude's limits at clock x
0.005 (``Limits().scaled(0.005)``: 1000 cost per 1.5 s sliding window, 108,000 per 18 s, 5 in
flight), with 0-15 ms random arrival delay and a 10-100 ms processing time (Amplitude's 2-20 s
response times at the same scale):

1. ``AmplitudeClient.gather`` (the library's scheduler);
2. aiohttp + ``aiolimiter.AsyncLimiter(1000, window)`` acquiring each query's cost, no retry;
3. the same, resending after a jittered exponential backoff on each 429;
4. ``AsyncLimiter(500, window)`` ("safe", half rate), with the same retry loop.

The baselines hold an ``asyncio.Semaphore(5)`` around limiter acquisition and the request, since
without it they draw "concurrent limit" 429s; the semaphore is released during a backoff.

Prints one table (429s, queries completed, cost accepted, wall time, and two measures of how much
of the binding budget was used, defined in :data:`LEGEND`) and writes a plot of the server's
cost-in-window over time, per policy, to ``benchmarks/policies.png``. The policies run one after
another in the same process, so their ratios compare under the same machine load.

    python benchmarks/bench_policies.py [--seed N] [--scale F] [--processing-ms LOW HIGH]
        [--policies client client-unbounded limiter limiter-retry limiter-half]
        [--png PATH | --no-png] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiolimiter import AsyncLimiter
from attrs import frozen
from report import Report, add_write_option

from amplitude_async.client import AmplitudeClient
from amplitude_async.limits import Limits, Pool
from amplitude_async.queries import EventSegmentation
from amplitude_async.sansio import Request, basic_auth, build_request
from amplitude_async.scheduler import Scheduler
from amplitude_async.testing import Emulator, RequestRecord, SyntheticDataset
from amplitude_async.transport import AiohttpTransport, Response
from amplitude_async.values import Event, GroupBy

DATA_START = date(2026, 9, 1)
DATA_DAYS = 90
EVENTS = ("Sign Up", "Open App", "Search", "View Item", "Add to Cart", "Purchase", "Share")
USER_PROPS = ("country", "platform", "device_type", "language")
ARRIVAL_DELAY = (0.0, 0.015)
PROCESSING_MS = (10.0, 100.0)  # Amplitude's 2-20 s response times at clock x 0.005
MAX_ATTEMPTS = 40  # the retry loops are bounded: a query 429'd this often counts as lost
BACKOFF_BASE_WINDOWS = 1 / 30  # first backoff draws from [0, W/30), doubling, capped at W


def workload(seed: int, n: int = 200) -> list[EventSegmentation]:
    """Mixed event segmentations, as in sim_packing.py, built as real queries.

    cost = days x (1 + 4 per segment group-by) x (events + 4 per event group-by).
    """
    rnd = random.Random(seed)
    out: list[EventSegmentation] = []

    def build(days: int, events: int, event_gb: int, segment_gb: int) -> EventSegmentation:
        offset = rnd.randint(0, DATA_DAYS - days)
        start = DATA_START + timedelta(days=offset)
        names = rnd.sample(EVENTS, events)
        group = [GroupBy(rnd.choice(USER_PROPS))] if event_gb else []
        chosen = [Event(names[0], group_by=group)] + [Event(name) for name in names[1:]]
        g = [rnd.choice(USER_PROPS)] if segment_gb else []
        return EventSegmentation(chosen, start, start + timedelta(days=days - 1), group_by=g)

    while len(out) < n - 3:
        days = rnd.randint(1, 60)
        events = rnd.choice((1, 1, 2))
        event_gb = 1 if rnd.random() < 0.25 else 0
        segment_gb = 1 if rnd.random() < 0.1 else 0
        query = build(days, events, event_gb, segment_gb)
        if query.cost <= 600:
            out.append(query)
    for _ in range(3):
        # 30 days x 5 conditions (one segment group-by) x 6 (two events, one group-by) = 900.
        big = build(30, 2, 1, 1)
        assert big.cost == 900, big.cost
        out.insert(rnd.randrange(len(out) + 1), big)
    return out


@frozen
class Outcome:
    """One policy's run, as the client saw it plus the emulator's request log."""

    name: str
    started: float
    wall: float
    completed: int
    lost: int
    sends: tuple[tuple[float, float], ...]  # (sent, answered) per HTTP request, loop time
    records: tuple[RequestRecord, ...]


class TimedTransport:
    """Wraps the client's aiohttp transport to log when each request went out and came back."""

    def __init__(self, sends: list[tuple[float, float]]) -> None:
        self._inner = AiohttpTransport()
        self._sends = sends

    async def send(self, request: Request) -> Response:
        loop = asyncio.get_running_loop()
        sent = loop.time()
        try:
            return await self._inner.send(request)
        finally:
            self._sends.append((sent, loop.time()))

    async def aclose(self) -> None:
        await self._inner.aclose()


async def run_client(
    emu: Emulator, queries: Sequence[EventSegmentation], *, starvation_bound: float | None = None
) -> Outcome:
    loop = asyncio.get_running_loop()
    sends: list[tuple[float, float]] = []
    client = AmplitudeClient(
        emu.api_key,
        emu.secret_key,
        base_url=emu.url,
        scheduler=Scheduler(emu.limits, starvation_bound=starvation_bound),
        transport=TimedTransport(sends),
    )
    name = "AmplitudeClient"
    if starvation_bound is not None:
        name += f", starvation bound {starvation_bound:g} s"
    async with client:
        started = loop.time()
        results = await client.gather(queries, return_exceptions=True)
        wall = loop.time() - started
    failed = sum(isinstance(r, BaseException) for r in results)
    return Outcome(name, started, wall, len(results) - failed, failed, tuple(sends), ())


async def run_limiter(
    name: str,
    emu: Emulator,
    queries: Sequence[EventSegmentation],
    rate: int,
    *,
    retry: bool,
    seed: int,
) -> Outcome:
    """aiohttp + AsyncLimiter(rate, window) + Semaphore(concurrent), optionally retrying 429s."""
    loop = asyncio.get_running_loop()
    window = emu.limits.window
    limiter = AsyncLimiter(rate, window)
    semaphore = asyncio.Semaphore(emu.limits.concurrent)
    rnd = random.Random(seed)
    auth = basic_auth(emu.api_key, emu.secret_key)
    sends: list[tuple[float, float]] = []

    async def acquire(cost: int) -> None:
        # AsyncLimiter.acquire(amount) raises ValueError for amount > max_rate, so a 900-cost
        # query under a 500 limiter is charged in pieces.
        while cost > 0:
            piece = min(cost, rate)
            await limiter.acquire(piece)
            cost -= piece

    async def one(session: aiohttp.ClientSession, query: EventSegmentation) -> bool:
        request = build_request(emu.url, query, authorization=auth)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            async with semaphore:
                await acquire(query.cost)
                sent = loop.time()
                async with session.get(request.url, headers=dict(request.headers)) as response:
                    await response.read()
                    status = response.status
                sends.append((sent, loop.time()))
            if status == 200:
                return True
            if status != 429 or not retry:
                return False
            cap = min(window, window * BACKOFF_BASE_WINDOWS * 2 ** (attempt - 1))
            await asyncio.sleep(rnd.random() * cap)
        return False

    # The same connection limit as the library's transport.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
        started = loop.time()
        done = await asyncio.gather(*(one(session, q) for q in queries))
        wall = loop.time() - started
    completed = sum(done)
    return Outcome(name, started, wall, completed, len(done) - completed, tuple(sends), ())


Runner = Callable[[Emulator, Sequence[EventSegmentation]], Awaitable[Outcome]]


async def measure(
    runner: Runner,
    queries: Sequence[EventSegmentation],
    limits: Limits,
    processing: tuple[float, float],
    seed: int,
) -> Outcome:
    """Run one policy against a fresh emulator and attach the emulator's request log."""
    dataset = SyntheticDataset(seed=1, users=300, days=DATA_DAYS, start=DATA_START)
    emulator = Emulator(
        dataset,
        limits=limits,
        arrival_delay=ARRIVAL_DELAY,
        processing_time=processing,
        seed=seed,
    )
    async with emulator:
        outcome = await runner(emulator, queries)
        records = tuple(emulator.requests)
    return Outcome(
        outcome.name,
        outcome.started,
        outcome.wall,
        outcome.completed,
        outcome.lost,
        outcome.sends,
        records,
    )


def accepted_stamps(outcome: Outcome) -> list[tuple[float, int]]:
    """(arrival time relative to the run's start, cost) of every standard request accepted."""
    return sorted(
        (r.at - outcome.started, r.cost or 0)
        for r in outcome.records
        if r.accepted and r.pool is Pool.STANDARD
    )


def peak_window(stamps: Sequence[tuple[float, int]], window: float) -> int:
    """Most cost stamped within one sliding window (the server's check)."""
    peak = used = 0
    head = 0
    for at, cost in stamps:
        used += cost
        while stamps[head][0] <= at - window:
            used -= stamps[head][1]
            head += 1
        peak = max(peak, used)
    return peak


def ideal_seconds(cost: int, limits: Limits, last_response: float) -> float:
    """Least time a strict sliding window allows for ``cost``: full windows, then one response.

    ``ceil(C/B)`` bursts of ``B`` sent at 0, W, 2W, ...: each burst's window has passed when the
    next one arrives, and the run ends when the last burst's response is back.
    """
    bursts = math.ceil(cost / limits.cost_per_window)
    return (bursts - 1) * limits.window + last_response


def summarise(outcome: Outcome, limits: Limits) -> dict[str, Any]:
    stamps = accepted_stamps(outcome)
    cost = sum(c for _, c in stamps)
    last = max(outcome.sends, key=lambda s: s[1])
    ideal = ideal_seconds(cost, limits, last[1] - last[0])
    statuses = [r.status for r in outcome.records]
    return {
        "policy": outcome.name,
        "429 rate": sum(1 for r in outcome.records if r.limit == "rate"),
        "429 conc.": sum(1 for r in outcome.records if r.limit == "concurrent"),
        "requests": len(outcome.records),
        "completed": outcome.completed,
        "lost": outcome.lost,
        "cost accepted": cost,
        "peak window cost": peak_window(stamps, limits.window),
        "wall s": outcome.wall,
        "ideal s": ideal,
        "rate used": cost / (limits.cost_per_window * outcome.wall / limits.window),
        "ideal/wall": ideal / outcome.wall,
        "other statuses": sorted({s for s in statuses if s not in (200, 429)}, key=str),
    }


LEGEND = """\
B = window budget, W = window length, C = cost the server accepted, T = wall time of the batch.
rate used  = C / (B * T / W): accepted cost rate over the budget's long-run rate (the first
             window's budget is free at t = 0, so a short batch can score a little above 1).
ideal/wall = T* / T, T* = (ceil(C / B) - 1) * W + r_last: the least time a strict sliding window
             allows for C (bursts of B at 0, W, 2W, ...; r_last the last response's time); a
             client that sees only its own send and answer times cannot reach 1."""


def print_table(rows: Sequence[dict[str, Any]], out: Report) -> None:
    columns = [
        ("policy", "{}"),
        ("429 rate", "{}"),
        ("429 conc.", "{}"),
        ("requests", "{}"),
        ("completed", "{}"),
        ("lost", "{}"),
        ("cost accepted", "{}"),
        ("peak window cost", "{}"),
        ("wall s", "{:.2f}"),
        ("ideal s", "{:.2f}"),
        ("rate used", "{:.3f}"),
        ("ideal/wall", "{:.3f}"),
    ]
    out.print("| " + " | ".join(name for name, _ in columns) + " |")
    out.print("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        out.print("| " + " | ".join(fmt.format(row[name]) for name, fmt in columns) + " |")
    for row in rows:
        if row["other statuses"]:
            out.print(f"{row['policy']}: other statuses {row['other statuses']}")


def plot(outcomes: Sequence[Outcome], limits: Limits, path: Path) -> None:
    """Cost stamped in the trailing window, over time, per policy, against the limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = limits.window
    fig, grid = plt.subplots(
        len(outcomes), 1, figsize=(11, 2.3 * len(outcomes) + 0.6), squeeze=False, sharex=True
    )
    axes = grid[:, 0]
    end = max(o.wall for o in outcomes)
    for ax, outcome in zip(axes, outcomes, strict=True):
        stamps = accepted_stamps(outcome)
        # Step function: the sum changes only when a stamp enters or leaves the window.
        events = sorted(
            [(at, cost) for at, cost in stamps] + [(at + window, -cost) for at, cost in stamps]
        )
        xs, ys, used = [0.0], [0], 0
        for at, delta in events:
            xs.append(at)
            ys.append(used)
            used += delta
            xs.append(at)
            ys.append(used)
        ax.plot(xs, ys, lw=1.0, color="tab:blue", label="cost stamped in trailing window")
        ax.axhline(limits.cost_per_window, color="tab:red", lw=1.2, ls="--", label="limit")
        rejected = [r.at - outcome.started for r in outcome.records if r.status == 429]
        if rejected:
            ax.plot(
                rejected,
                [limits.cost_per_window * 1.05] * len(rejected),
                "x",
                color="tab:red",
                ms=4,
                label=f"429 ({len(rejected)})",
            )
        ax.set_xlim(0, end + window)
        ax.set_ylim(0, limits.cost_per_window * 2.1)
        ax.set_title(f"{outcome.name}: wall {outcome.wall:.1f} s", fontsize=10, loc="left")
        ax.set_ylabel("cost in window")
        ax.legend(loc="upper right", fontsize=8, ncols=3)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel(f"seconds since the batch started (window {window:g} s)")
    fig.suptitle("Server's view: arrival-stamped cost in the trailing sliding window", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


POLICIES = ("client", "client-unbounded", "limiter", "limiter-retry", "limiter-half")
DEFAULT_POLICIES = ("client", "limiter", "limiter-retry", "limiter-half")


async def main(args: argparse.Namespace, out: Report) -> None:
    limits = Limits().scaled(args.scale)
    queries = workload(args.seed)
    total = sum(q.cost for q in queries)
    low, high = args.processing_ms
    processing = (low / 1000, high / 1000)
    out.print(
        f"{len(queries)} queries, total cost {total} "
        f"({total / limits.cost_per_window:.1f} windows of {limits.cost_per_window}); "
        f"window {limits.window:g} s, hour {limits.hour:g} s, {limits.concurrent} in flight; "
        f"arrival delay {ARRIVAL_DELAY[0] * 1000:g}-{ARRIVAL_DELAY[1] * 1000:g} ms, "
        f"processing {low:g}-{high:g} ms; seed {args.seed}"
    )
    cost_w = limits.cost_per_window
    half = cost_w // 2

    async def client(emu: Emulator, qs: Sequence[EventSegmentation]) -> Outcome:
        return await run_client(emu, qs)

    async def unbounded(emu: Emulator, qs: Sequence[EventSegmentation]) -> Outcome:
        return await run_client(emu, qs, starvation_bound=math.inf)

    async def raw(emu: Emulator, qs: Sequence[EventSegmentation]) -> Outcome:
        name = f"AsyncLimiter({cost_w}), no retry"
        return await run_limiter(name, emu, qs, cost_w, retry=False, seed=args.seed)

    async def retrying(emu: Emulator, qs: Sequence[EventSegmentation]) -> Outcome:
        name = f"AsyncLimiter({cost_w}) + retry"
        return await run_limiter(name, emu, qs, cost_w, retry=True, seed=args.seed)

    async def safe(emu: Emulator, qs: Sequence[EventSegmentation]) -> Outcome:
        name = f"AsyncLimiter({half}) + retry"
        return await run_limiter(name, emu, qs, half, retry=True, seed=args.seed)

    runners: dict[str, Runner] = {
        "client": client,
        "client-unbounded": unbounded,
        "limiter": raw,
        "limiter-retry": retrying,
        "limiter-half": safe,
    }
    outcomes = []
    for key in args.policies:
        began = time.perf_counter()
        outcome = await measure(runners[key], queries, limits, processing, args.seed)
        outcomes.append(outcome)
        print(f"  ran {outcome.name} in {time.perf_counter() - began:.1f} s", flush=True)
    out.print()
    print_table([summarise(o, limits) for o in outcomes], out)
    out.print()
    out.print(LEGEND)
    if args.png is not None:
        plot(outcomes, limits, args.png)
        out.print(f"\nplot: {args.png.name}")
        out.attach(f"\n![the server's cost in the window over time, per policy]({args.png.name})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7, help="workload and emulator seed")
    parser.add_argument("--scale", type=float, default=0.005, help="clock scale of the limits")
    parser.add_argument(
        "--processing-ms",
        type=float,
        nargs=2,
        default=PROCESSING_MS,
        metavar=("LOW", "HIGH"),
        help="emulator processing time per request, drawn uniformly (ms)",
    )
    parser.add_argument(
        "--policies",
        nargs="+",
        choices=POLICIES,
        default=DEFAULT_POLICIES,
        help="which policies to run, in order",
    )
    parser.add_argument(
        "--png",
        type=Path,
        default=Path(__file__).with_name("policies.png"),
        help="where to write the plot",
    )
    parser.add_argument("--no-png", dest="png", action="store_const", const=None)
    add_write_option(parser)
    arguments = parser.parse_args()
    report = Report("bench_policies", "Admission policies against the strict emulator")
    asyncio.run(main(arguments, report))
    report.finish(write=arguments.write)
