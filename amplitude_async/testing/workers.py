"""Worker processes spending one project's budget: for ``demo --processes``, tests, benchmarks.

Each worker is a separate Python process (``python -m amplitude_async.testing.workers SPEC``)
with its own event loop and :class:`~amplitude_async.client.AmplitudeClient`; with a
``budget_url`` they share the budget in Redis, without one each believes it owns the whole
budget (what happens without a shared store). A worker prints one JSON :class:`WorkerReport`
as its last line of output. :func:`private_redis` starts a throw-away ``redis-server`` on a free
127.0.0.1 port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

import attrs
from attrs import frozen

from ..limits import DEFAULT_LIMITS
from ..queries import EventSegmentation, Query
from ..values import Event

__all__ = [
    "WorkerReport",
    "WorkerSpec",
    "private_redis",
    "run_worker",
    "run_workers",
    "start_worker",
    "workload",
]


@frozen
class WorkerSpec:
    """What one worker runs, against which server, on which budget.

    ``workload`` is ``"dashboard"`` (the demo's dashboard of ``profile``, ``"quick"`` or
    ``"full"``, part ``part`` of ``parts``) or
    ``"segments:COUNT:DAYS"`` (COUNT event segmentations of DAYS days: cost DAYS + 1 each).
    ``scale`` multiplies the limits' durations; ``lease`` and ``timeout`` are seconds.
    """

    base_url: str
    api_key: str
    secret_key: str
    budget_url: str | None = None
    workload: str = "dashboard"
    part: int = 0
    parts: int = 1
    priority: int = 0
    scale: float = 0.002
    lease: float = 5.0
    timeout: float = 4.0
    unavailable_wait: float = 30.0
    seed: int = 1
    profile: str = "quick"
    delay: float = 0.0
    """Seconds to wait before queueing anything."""
    urgent: str | None = None
    """Another workload (``segments:COUNT:DAYS``) queued at priority 10, ``urgent_delay``
    seconds after the first; its latencies are reported apart."""
    urgent_delay: float = 0.0
    starvation_bound: float | None = None
    """The shared queue's starvation bound (default: three windows); ``-1``: none."""
    barrier: bool = False
    """Print ``ready`` once set up, then wait for a line on standard input before queueing:
    :func:`run_workers` starts every worker's work at the same moment."""
    call_timeout: float = 5.0
    """Seconds each call to the shared budget's Redis may take."""


@frozen
class WorkerReport:
    """What a worker did: ``failed`` counts exceptions by type name; ``latencies`` are the
    seconds from queueing each query to its result; ``round_trips`` the budget exchanges."""

    queries: int
    done: int
    cost: int
    failed: dict[str, int]
    rate_limited: int
    retries: int
    elapsed: float
    latencies: list[float]
    round_trips: int
    grant_latencies: list[float]
    urgent_latencies: list[float] = attrs.field(factory=list)
    finished_at: float = 0.0
    """Wall-clock time (``time.time()``) when its last call ended, before the client closed."""


def workload(spec: WorkerSpec) -> list[Query[Any]]:
    """The queries of ``spec``'s share of its workload."""
    from ..demo import FULL, QUICK, dashboard
    from .dataset import SyntheticDataset

    profile = QUICK if spec.profile == "quick" else FULL
    dataset = SyntheticDataset(seed=spec.seed, users=profile.users, days=profile.days)
    if spec.workload == "dashboard":
        queries = dashboard(dataset, profile)
    else:
        kind, count, days = spec.workload.split(":")
        if kind != "segments":
            raise ValueError(f"unknown workload {spec.workload!r}")
        end = dataset.end
        names = ("Purchase", "Search", "View Item", "Open App", "Share")
        queries = [
            EventSegmentation([Event(names[i % len(names)])], end - timedelta(days=int(days)), end)
            for i in range(int(count))
        ]
    return queries[spec.part :: spec.parts]


async def run_worker(spec: WorkerSpec) -> WorkerReport:
    """Run ``spec`` in this process and report."""
    from ..client import AmplitudeClient
    from ..retry import RetryPolicy
    from ..scheduler import Scheduler

    limits = DEFAULT_LIMITS.scaled(spec.scale)
    bound = spec.starvation_bound
    if bound is not None and bound < 0:
        bound = float("inf")
    store: Any = None
    if spec.budget_url:
        from .timing import TimedBudgetStore

        store = TimedBudgetStore.from_url(
            spec.budget_url,
            api_key=spec.api_key,
            limits=limits,
            starvation_bound=bound,
            timeout=spec.call_timeout,
        )
        scheduler = Scheduler(store=store, lease=spec.lease, unavailable_wait=spec.unavailable_wait)
    else:
        scheduler = Scheduler(
            limits,
            lease=spec.lease,
            unavailable_wait=spec.unavailable_wait,
            starvation_bound=bound,
        )
    queries = workload(spec)
    urgent = (
        workload(attrs.evolve(spec, workload=spec.urgent, part=0, parts=1)) if spec.urgent else []
    )
    latencies: list[float] = []
    urgent_latencies: list[float] = []
    failed: dict[str, int] = {}
    done = cost = 0
    if spec.barrier:
        print("ready", flush=True)
        if not await asyncio.to_thread(sys.stdin.readline):
            # End of input before the start: whoever started this worker is gone.
            raise SystemExit("worker: standard input closed before the start")
    if spec.delay:
        await asyncio.sleep(spec.delay)
    started = time.perf_counter()
    async with AmplitudeClient(
        spec.api_key,
        spec.secret_key,
        base_url=spec.base_url,
        scheduler=scheduler,
        timeout=spec.timeout,
        retry_policy=RetryPolicy().scaled(spec.scale),
        # The workloads repeat queries on purpose: each one is budget to share, not to save.
        coalesce=False,
    ) as client:

        async def one(query: Query[Any], priority: int, into: list[float]) -> None:
            nonlocal done, cost
            queued = time.perf_counter()
            try:
                await client.run(query, priority=priority)
            except Exception as exc:
                failed[type(exc).__name__] = failed.get(type(exc).__name__, 0) + 1
            else:
                done += 1
                cost += query.cost
                into.append(time.perf_counter() - queued)

        async def later() -> None:
            await asyncio.sleep(spec.urgent_delay)
            await asyncio.gather(*(one(q, 10, urgent_latencies) for q in urgent))

        await asyncio.gather(*(one(q, spec.priority, latencies) for q in queries), later())
        finished_at = time.time()
        stats = client.statistics()
    return WorkerReport(
        queries=len(queries),
        done=done,
        cost=cost,
        failed=failed,
        rate_limited=stats.rate_limited,
        retries=stats.retries,
        elapsed=time.perf_counter() - started,
        latencies=latencies,
        round_trips=store.round_trips if store is not None else 0,
        grant_latencies=list(store.grant_latencies) if store is not None else [],
        urgent_latencies=urgent_latencies,
        finished_at=finished_at,
    )


async def start_worker(spec: WorkerSpec) -> asyncio.subprocess.Process:
    """Start a worker process for ``spec`` (its report comes on standard output)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "amplitude_async.testing.workers",
        json.dumps(attrs.asdict(spec)),
        stdin=asyncio.subprocess.PIPE if spec.barrier else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def report_of(process: asyncio.subprocess.Process) -> WorkerReport:
    """Wait for a worker started by :func:`start_worker` and read its report."""
    out, err = await process.communicate()
    lines = out.decode().strip().splitlines()
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"worker failed ({process.returncode}): {err.decode()[-2000:]}")
    return WorkerReport(**json.loads(lines[-1]))


async def run_workers(specs: Sequence[WorkerSpec]) -> list[WorkerReport]:
    """Run one worker process per spec; their work starts at the same moment, once every one
    of them is set up. Return their reports in order."""
    processes: list[asyncio.subprocess.Process] = []
    try:
        # One by one inside the try: a cancellation meanwhile still stops those started.
        for spec in specs:
            processes.append(await start_worker(attrs.evolve(spec, barrier=True)))
        for process in processes:
            assert process.stdout is not None
            line = await process.stdout.readline()
            if line.strip() != b"ready":
                raise RuntimeError(f"worker not ready: {line!r}")
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            await process.stdin.drain()
        return list(await asyncio.gather(*(report_of(p) for p in processes)))
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def private_redis() -> AsyncIterator[str]:
    """Run a throw-away ``redis-server`` (no persistence) on a free 127.0.0.1 port; yield its
    URL. Raises :class:`FileNotFoundError` if ``redis-server`` is not on PATH."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not on PATH")
    port = _free_port()
    with tempfile.TemporaryDirectory() as directory:
        process = await asyncio.create_subprocess_exec(
            binary,
            *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
            *("--dir", directory),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            for _ in range(500):
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.02)
                    continue
                writer.write(b"PING\r\n")
                pong = await reader.readline()
                writer.close()
                if pong.startswith(b"+PONG"):
                    break
            else:
                raise RuntimeError("redis-server did not start")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            if process.returncode is None:
                process.terminate()
                await process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the worker described by the JSON spec in ``argv[0]``; print its report."""
    args = sys.argv[1:] if argv is None else list(argv)
    spec = WorkerSpec(**json.loads(args[0]))
    report = asyncio.run(run_worker(spec))
    print(json.dumps(attrs.asdict(report)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
