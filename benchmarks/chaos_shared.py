"""N processes on one shared budget through a schedule of Redis faults, against a strict server.

Each phase starts N worker processes (:mod:`amplitude_async.testing.workers`) on one
``RedisBudgetStore`` in a private ``redis-server``, against one strict in-process
:class:`~amplitude_async.testing.Emulator` (``Limits().scaled(SCALE)``: 5 in flight, a window of
300 * SCALE s; 50-300 ms processing), and applies one fault while their requests are queued:

- ``none``: the reference;
- ``freeze``: SIGSTOP of ``redis-server`` for ``--freeze`` seconds (longer than the call
  timeout, the lease and ``unavailable_wait``), then SIGCONT: what the clients sent meanwhile
  runs late, and every answer is lost;
- ``kill``: SIGKILL of ``redis-server``, started again (empty) 2 s later;
- ``restart``: SIGKILL and an immediate start, empty;
- ``flush``: ``FLUSHALL``;
- ``rollback``: the budget's keys restored from a ``DUMP`` taken 1.5 s earlier (a failover to a
  replica that had not seen the last writes);
- ``garbage``: the standard pool's queue replaced by a string, ``nan`` written into its ledger
  and stray messages published on every grant channel;
- ``cpu``: no Redis fault, but ``--burners`` CPU-bound processes per core (2) beside the
  workers, for the whole phase (the machine starved of CPU).

Then one more worker runs a fresh batch (the same work as one worker of the phase) and its
makespan is compared with the reference phase's fresh batch: a slot lost shows as a slower
batch. Reported per phase: calls ended (done, ``BudgetUnavailable``, other errors, calls still
hanging when the phase's guard ran out), when the last call of the phase ended after the fault
began (the bound: ``unavailable_wait`` plus the call timeout plus 1 s of retry delay, for calls
that were waiting when the store went away), the longest time between two requests reaching
the server during the phase (a stall), in-flight entries still leased to an owner after every
worker exited (slots lost until their lease ends: only a process that could not reach Redis
before it exited should leave any; abandoned entries wait for their lease, as they must), the fresh
batch's makespan as a ratio to the reference's, and the 429s the emulator sent.

    python benchmarks/chaos_shared.py [--processes 6] [--scale 0.01] [--count 40] [--freeze 6]
        [--phases none freeze kill restart flush rollback garbage cpu] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import multiprocessing
import os
import signal
import tempfile
import time
from typing import Any

import attrs
import redis.asyncio as aioredis
from redis_process import RedisProcess
from report import Report, add_write_option, bullets, met, wrap

from amplitude_async.limits import DEFAULT_LIMITS
from amplitude_async.redis_store import RedisBudgetStore
from amplitude_async.scheduler import RETRY_MAX
from amplitude_async.testing.dataset import SyntheticDataset
from amplitude_async.testing.emulator import Emulator
from amplitude_async.testing.workers import WorkerReport, WorkerSpec, report_of, start_worker

PHASES = ("none", "freeze", "kill", "restart", "flush", "rollback", "garbage", "cpu")
LEASE = 3.0
CALL_TIMEOUT = 1.0
UNAVAILABLE_WAIT = 3.0
GUARD = 120.0


def burn() -> None:
    """A CPU-bound process (ends when its parent kills it)."""
    x = 0
    while True:
        x = (x * 1103515245 + 12345) % 2**31


@attrs.define
class Phase:
    fault: str
    queries: int = 0
    done: int = 0
    unavailable: int = 0
    other: int = 0
    hanging: int = 0
    last_end: float = math.nan  # seconds after the fault began
    stall: float = 0.0
    lost_slots: int = 0
    fresh: float = math.nan
    fresh_failed: int = 0
    rate_limited: int = 0


def longest_stall(emulator: Emulator, start: int) -> float:
    """Longest time between two requests arriving at the server, from the ``start``-th on (the
    requests of the phase, not those of its fresh batch)."""
    times = sorted(record.at for record in emulator.requests[start:])
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


async def apply_fault(fault: str, redis: RedisProcess, api_key: str, freeze: float) -> None:
    client = aioredis.from_url(redis.url)
    try:
        if fault == "freeze":
            redis.signal(signal.SIGSTOP)
            await asyncio.sleep(freeze)
            redis.signal(signal.SIGCONT)
        elif fault == "kill":
            redis.kill()
            await asyncio.sleep(2.0)
            redis.start()
        elif fault == "restart":
            redis.kill()
            redis.start()
        elif fault == "flush":
            await client.flushall()
        elif fault == "rollback":
            store = RedisBudgetStore(client, api_key=api_key)
            dumps = {key: await client.dump(key) for key in store.keys}
            await asyncio.sleep(1.5)
            await client.delete(*store.keys)
            for key, dump in dumps.items():
                if dump is not None:
                    await client.restore(key, 0, dump, replace=True)
        elif fault == "garbage":
            store = RedisBudgetStore(client, api_key=api_key)
            queue = next(k for k in store.keys if k.endswith(":standard:queue"))
            ledger = next(k for k in store.keys if k.endswith(":standard:ledger"))
            await client.delete(queue)
            await client.set(queue, "garbage")
            await client.hset(ledger, "u1", "nan")
            for channel in await client.pubsub_channels(store.channel + "*"):
                await client.publish(channel, "stray")
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


async def run_phase(fault: str, args: argparse.Namespace, directory: str) -> Phase:
    limits = DEFAULT_LIMITS.scaled(args.scale)
    redis = RedisProcess(directory)
    redis.start()
    burners: list[multiprocessing.Process] = []
    phase = Phase(fault)
    try:
        async with Emulator(
            SyntheticDataset(seed=1, users=400, days=21),
            limits=limits,
            processing_time=(0.05, 0.3),
        ) as emulator:
            base = WorkerSpec(
                emulator.url,
                emulator.api_key,
                emulator.secret_key,
                budget_url=redis.url,
                workload=f"segments:{args.count * args.processes}:2",
                parts=args.processes,
                scale=args.scale,
                lease=LEASE if fault != "cpu" else 20.0,
                call_timeout=CALL_TIMEOUT if fault != "cpu" else 5.0,
                unavailable_wait=UNAVAILABLE_WAIT,
            )
            if fault == "cpu":
                for _ in range(args.burners * (os.cpu_count() or 1)):
                    burner = multiprocessing.Process(target=burn, daemon=True)
                    burner.start()
                    burners.append(burner)
            workers = [
                await start_worker(attrs.evolve(base, part=i)) for i in range(args.processes)
            ]
            # The fault strikes with a quarter of the work sent, the rest queued.
            async with asyncio.timeout(GUARD):
                while len(emulator.requests) < args.count * args.processes // 4:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            began, began_wall = time.monotonic(), time.time()
            if fault not in ("none", "cpu"):
                await apply_fault(fault, redis, emulator.api_key, args.freeze)
            reports: list[WorkerReport | None] = []
            ended: list[float] = []
            for worker in workers:
                try:
                    async with asyncio.timeout(max(1.0, GUARD - (time.monotonic() - began))):
                        report = await report_of(worker)
                    ended.append(report.finished_at - began_wall)
                    reports.append(report)
                except TimeoutError:
                    worker.kill()
                    await worker.wait()
                    reports.append(None)
                    ended.append(math.inf)
            phase.stall = longest_stall(emulator, 0)
            for burner in burners:
                burner.kill()
            burners.clear()
            phase.last_end = max(ended)
            per_worker = args.count
            for report in reports:
                phase.queries += per_worker
                if report is None:
                    phase.hanging += per_worker
                    continue
                phase.done += report.done
                phase.unavailable += report.failed.get("BudgetUnavailable", 0)
                phase.other += sum(n for k, n in report.failed.items() if k != "BudgetUnavailable")
            phase.lost_slots = await lost_slots(redis.url, emulator.api_key, limits)
            fresh = attrs.evolve(
                base, workload=f"segments:{per_worker}:2", parts=1, part=0, lease=LEASE
            )
            started = time.monotonic()
            try:
                async with asyncio.timeout(GUARD):
                    after = await report_of(await start_worker(fresh))
                phase.fresh = time.monotonic() - started
                phase.fresh_failed = sum(after.failed.values())
            except TimeoutError:
                phase.fresh_failed = per_worker
            phase.rate_limited = emulator.statistics().rate_limited
    finally:
        for burner in burners:
            burner.kill()
        redis.kill()
    return phase


async def lost_slots(url: str, api_key: str, limits: Any) -> int:
    """In-flight entries still leased to an owner once every worker has exited (none should be
    left: a lapsed lease is freed by the next exchange, an abandoned entry waits for it)."""
    store = RedisBudgetStore.from_url(url, api_key=api_key, limits=limits, timeout=2.0)
    client = aioredis.from_url(url)
    try:
        seconds, micros = await client.time()
        now = seconds + micros / 1e6
        lost = 0
        for key in store.keys:
            if key.endswith(":flight"):
                for value in (await client.hgetall(key)).values():
                    _, owner, deadline = value.decode().split("|")
                    lost += owner != "" and float(deadline) > now
        return lost
    finally:
        await client.aclose()
        await store.aclose()


def table(phases: list[Phase], reference: float) -> list[str]:
    head = (
        f"{'fault':<9} {'calls':>5} {'done':>5} {'unavail':>7} {'other':>5} {'hung':>4} "
        f"{'last end':>8} {'stall':>6} {'lost':>4} {'fresh':>6} {'429s':>5}"
    )
    rows = [head, "-" * len(head)]
    for p in phases:
        ratio = p.fresh / reference if reference and not math.isnan(p.fresh) else math.nan
        rows.append(
            f"{p.fault:<9} {p.queries:>5} {p.done:>5} {p.unavailable:>7} {p.other:>5} "
            f"{p.hanging:>4} {p.last_end:>7.1f}s {p.stall:>5.1f}s {p.lost_slots:>4} "
            f"{ratio:>5.2f}x {p.rate_limited:>5}"
        )
    return rows


async def main(args: argparse.Namespace, out: Report) -> None:
    bound = UNAVAILABLE_WAIT + CALL_TIMEOUT + RETRY_MAX
    out.print(
        wrap(
            f"{args.processes} worker processes x {args.count} event segmentations (cost 3), "
            f"Limits().scaled({args.scale}) (window {300 * args.scale:g} s), lease {LEASE:g} s "
            f"(20 s in the cpu phase), call timeout {CALL_TIMEOUT:g} s, unavailable_wait "
            f"{UNAVAILABLE_WAIT:g} s, freeze {args.freeze:g} s. Bound on a waiting call once the "
            f"store is gone: unavailable_wait + call timeout + {RETRY_MAX:g} s = {bound:g} s."
        )
    )
    out.print()
    phases: list[Phase] = []
    with tempfile.TemporaryDirectory() as directory:
        for fault in args.phases:
            phase = await run_phase(fault, args, directory)
            phases.append(phase)
            out.print(f"  {fault}: done ({phase.done}/{phase.queries}, fresh {phase.fresh:.1f} s)")
    reference = next((p.fresh for p in phases if p.fault == "none"), math.nan)
    out.print()
    for row in table(phases, reference):
        out.print(row)
    out.print()
    ended = all(p.hanging == 0 for p in phases)
    no_429 = all(p.rate_limited == 0 for p in phases)
    no_loss = all(p.lost_slots == 0 for p in phases)
    fresh_ok = all(
        p.fresh_failed == 0 and p.fresh <= 1.5 * reference
        for p in phases
        if not math.isnan(p.fresh)
    )
    # Frozen longer than the bound: every call waiting then ends (BudgetUnavailable) within it.
    frozen = [p for p in phases if p.fault == "freeze" and args.freeze > bound]
    in_bound = all(p.last_end <= bound + 1.0 for p in frozen)
    stall = max((p.stall for p in phases), default=0.0)
    for line in bullets(
        [
            f"Every call ended (a result or BudgetUnavailable, none hanging): {met(ended)}; "
            f"other errors: {sum(p.other for p in phases)}.",
            f"429s from the strict server: {sum(p.rate_limited for p in phases)} ({met(no_429)}).",
            f"Entries left with an owner after every worker exited: "
            f"{sum(p.lost_slots for p in phases)} ({met(no_loss)}).",
            f"After each fault a fresh batch ran whole and at most 1.5 x the reference's "
            f"makespan: {met(fresh_ok)}.",
            f"Freeze ({args.freeze:g} s): the last call ended within {bound:g} s of the freeze "
            f"(+ 1 s for the requests on the wire), before Redis came back: {met(in_bound)}.",
            f"Longest time between two requests reaching the server: {stall:.1f} s (a lease is "
            f"{LEASE:g} s; 20 s in the cpu phase). After a fault this includes the fault itself "
            "and the cold start (one lease plus a window) where there is one.",
        ]
    ):
        out.print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, default=6)
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--count", type=int, default=40, help="queries per worker")
    parser.add_argument("--freeze", type=float, default=6.0, help="seconds Redis stays frozen")
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    parser.add_argument(
        "--burners", type=int, default=2, help="CPU-bound processes per core in the cpu phase"
    )
    add_write_option(parser)
    arguments = parser.parse_args()
    report = Report("chaos_shared", "Redis faults under a shared budget (`chaos_shared.py`)")
    asyncio.run(main(arguments, report))
    report.finish(write=arguments.write)
