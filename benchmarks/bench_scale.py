"""Scheduler cost per queued request at 1k, 10k and 100k queued: memory and time per admission.

Two paths, no network, with cost budgets so large that only the in-flight cap (5) binds:

- ``slot()`` waiters: N tasks each doing ``async with scheduler.slot(STANDARD, cost): pass``
  queue behind 5 blocker tasks that hold every in-flight slot, so nothing is admitted until the
  blockers are released. Memory per waiter is the tracemalloc growth while they queue (task,
  coroutine, Slot, future, queue entries; the list of tasks included) divided by N; then the
  blockers are released and the time per admission is the drain time divided by N (each
  decision admits at most 5). Two cost mixes: one cost for every waiter, and costs drawn
  uniformly from 1..1000 (up to 1000 distinct weights, which is what a decision's cost grows
  with).
- ``AmplitudeClient.as_completed`` over N ``EventsList()`` queries, with a transport that
  answers at once from memory: the client feeds the scheduler a bounded lookahead
  (``DEFAULT_LOOKAHEAD`` tasks). Reported: peak tracemalloc growth (absolute and per query) and
  the client's whole per-query time (cost check, scheduling, request building, deciphering,
  cattrs structuring).

Beside them, in the same run, the baseline: the same waiters on a plain ``asyncio.Semaphore(5)``
(nothing but a queue). The ratios to it are what carry over to another machine; the absolute
times are context. Memory figures are deterministic and reproduce exactly.

Each is run with Amplitude's window lengths (300 s / 1 h: every admitted entry stays in the
budget ledger for the whole run) and with 1 ms / 2 ms windows (the ledger stays nearly empty),
which separates the cost of a long queue from the cost of a full ledger. Timings come from runs
without tracemalloc (it slows allocation down several times).

    python benchmarks/bench_scale.py [--sizes 1000 10000 100000] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import time
import tracemalloc
from collections.abc import Mapping, Sequence

import attrs
from report import Report, add_write_option

from amplitude_async.client import DEFAULT_LOOKAHEAD, AmplitudeClient
from amplitude_async.limits import Limits, Pool
from amplitude_async.queries import EventsList
from amplitude_async.sansio import Request
from amplitude_async.scheduler import Scheduler
from amplitude_async.transport import Response

NEVER_BINDS = 10**12
# Only the in-flight cap binds: cost budgets no run comes near. With Amplitude's window
# lengths every admitted entry stays in the ledger for the whole run; with short ones the
# ledger stays small, which separates the cost of a long queue from the cost of a full ledger.
LONG = Limits(concurrent=5, cost_per_window=NEVER_BINDS, cost_per_hour=NEVER_BINDS)
SHORT = attrs.evolve(LONG, window=0.001, hour=0.002)
BODY = json.dumps({"data": [{"value": "Play Song", "totals": 42}]}).encode()
SETTLE_TURNS = 100  # loop turns allowed for every task to reach its wait


class CannedTransport:
    """Answers every request at once with the same events-list body."""

    def __init__(self) -> None:
        self.headers: Mapping[str, str] = {"Content-Type": "application/json"}

    async def send(self, request: Request) -> Response:
        return Response(200, self.headers, BODY)

    async def aclose(self) -> None:
        return None


async def slot_waiters(costs: Sequence[int], limits: Limits, *, memory: bool) -> dict[str, float]:
    """Queue ``len(costs)`` slot() waiters behind a full in-flight cap, then drain them."""
    scheduler = Scheduler(limits)
    gate = asyncio.Event()

    async def blocker() -> None:
        async with scheduler.slot(Pool.STANDARD, 1):
            await gate.wait()

    async def waiter(cost: int) -> None:
        async with scheduler.slot(Pool.STANDARD, cost):
            pass

    blockers = [asyncio.create_task(blocker()) for _ in range(limits.concurrent)]
    for _ in range(SETTLE_TURNS):
        if scheduler.statistics()[Pool.STANDARD].in_flight == limits.concurrent:
            break
        await asyncio.sleep(0)
    n = len(costs)
    gc.collect()
    if memory:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if memory else 0
    began = time.perf_counter()
    tasks = [asyncio.create_task(waiter(cost)) for cost in costs]
    for _ in range(SETTLE_TURNS):
        if scheduler.statistics()[Pool.STANDARD].queued == n:
            break
        await asyncio.sleep(0)
    queued = scheduler.statistics()[Pool.STANDARD].queued
    if queued != n:
        raise RuntimeError(f"only {queued} of {n} waiters queued")
    enqueued = time.perf_counter()
    grown = tracemalloc.get_traced_memory()[0] - before if memory else 0
    if memory:
        tracemalloc.stop()
    gate.set()
    drain = time.perf_counter()
    await asyncio.gather(*tasks, *blockers)
    done = time.perf_counter()
    return {
        "bytes per waiter": grown / n,
        "enqueue us": (enqueued - began) / n * 1e6,
        "admit us": (done - drain) / n * 1e6,
    }


async def semaphore_waiters(n: int, concurrent: int, *, memory: bool) -> dict[str, float]:
    """The baseline: ``n`` waiters on a full ``asyncio.Semaphore(concurrent)``, then drained."""
    semaphore = asyncio.Semaphore(concurrent)
    gate = asyncio.Event()

    async def blocker() -> None:
        async with semaphore:
            await gate.wait()

    async def waiter() -> None:
        async with semaphore:
            pass

    blockers = [asyncio.create_task(blocker()) for _ in range(concurrent)]
    for _ in range(SETTLE_TURNS):
        if semaphore.locked():
            break
        await asyncio.sleep(0)
    gc.collect()
    if memory:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if memory else 0
    began = time.perf_counter()
    tasks = [asyncio.create_task(waiter()) for _ in range(n)]
    await asyncio.sleep(0)  # every waiter reaches the semaphore in its first step
    enqueued = time.perf_counter()
    grown = tracemalloc.get_traced_memory()[0] - before if memory else 0
    if memory:
        tracemalloc.stop()
    gate.set()
    drain = time.perf_counter()
    await asyncio.gather(*tasks, *blockers)
    done = time.perf_counter()
    return {
        "bytes per waiter": grown / n,
        "enqueue us": (enqueued - began) / n * 1e6,
        "admit us": (done - drain) / n * 1e6,
    }


async def gather_path(n: int, limits: Limits, *, memory: bool) -> dict[str, float]:
    """Stream ``n`` queries through the client with an instant in-memory transport."""
    queries = [EventsList()] * n
    client = AmplitudeClient("key", "secret", limits=limits, transport=CannedTransport())
    gc.collect()
    if memory:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if memory else 0
    began = time.perf_counter()
    count = 0
    async for _ in client.as_completed(queries):
        count += 1
    elapsed = time.perf_counter() - began
    peak = tracemalloc.get_traced_memory()[1] - before if memory else 0
    if memory:
        tracemalloc.stop()
    await client.aclose()
    assert count == n
    return {"peak bytes": peak, "bytes per query": peak / n, "us per query": elapsed / n * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    add_write_option(parser)
    args = parser.parse_args()
    out = Report("bench_scale", "Scheduler cost per queued request")
    rnd = random.Random(3)
    baseline: dict[int, dict[str, float]] = {}
    out.print("baseline: asyncio.Semaphore(5) waiters, queued then drained")
    out.print("| N | bytes per waiter | enqueue µs/waiter | admission µs |")
    out.print("|---|---|---|---|")
    for n in args.sizes:
        mem = asyncio.run(semaphore_waiters(n, LONG.concurrent, memory=True))
        speed = asyncio.run(semaphore_waiters(n, LONG.concurrent, memory=False))
        baseline[n] = {**speed, "bytes per waiter": mem["bytes per waiter"]}
        out.print(
            f"| {n} | {mem['bytes per waiter']:.0f} | {speed['enqueue us']:.1f} "
            f"| {speed['admit us']:.1f} |"
        )
    out.print("\nslot() waiters queued behind a full in-flight cap (5), then drained;")
    out.print("(x) is the ratio to the semaphore baseline of the same N, measured in this run")
    out.print(
        "| cost mix | N | bytes per waiter | enqueue µs/waiter "
        "| admission µs, 1 ms / 2 ms windows | admission µs, 300 s / 1 h windows |"
    )
    out.print("|---|---|---|---|---|---|")
    for mix in ("one cost (10)", "uniform 1..1000"):
        for n in args.sizes:
            costs = [10] * n if mix.startswith("one") else [rnd.randint(1, 1000) for _ in range(n)]
            mem = asyncio.run(slot_waiters(costs, SHORT, memory=True))
            short = asyncio.run(slot_waiters(costs, SHORT, memory=False))
            long = asyncio.run(slot_waiters(costs, LONG, memory=False))
            base = baseline[n]
            out.print(
                f"| {mix} | {n} | {mem['bytes per waiter']:.0f} "
                f"({mem['bytes per waiter'] / base['bytes per waiter']:.1f}x) "
                f"| {short['enqueue us']:.1f} ({short['enqueue us'] / base['enqueue us']:.1f}x) "
                f"| {short['admit us']:.1f} ({short['admit us'] / base['admit us']:.1f}x) "
                f"| {long['admit us']:.1f} ({long['admit us'] / base['admit us']:.1f}x) |"
            )
    out.print(
        f"\nAmplitudeClient.as_completed, instant in-memory transport "
        f"(lookahead {DEFAULT_LOOKAHEAD}); (x): µs per query over the semaphore's admission µs"
    )
    out.print("| windows | N | peak bytes | peak bytes per query | µs per query |")
    out.print("|---|---|---|---|---|")
    for name, limits in (("1 ms / 2 ms", SHORT), ("300 s / 1 h", LONG)):
        for n in args.sizes:
            mem = asyncio.run(gather_path(n, limits, memory=True))
            speed = asyncio.run(gather_path(n, limits, memory=False))
            ratio = speed["us per query"] / baseline[n]["admit us"]
            out.print(
                f"| {name} | {n} | {mem['peak bytes']:.0f} | {mem['bytes per query']:.0f} "
                f"| {speed['us per query']:.1f} ({ratio:.1f}x) |"
            )
    out.finish(write=args.write)


if __name__ == "__main__":
    main()
