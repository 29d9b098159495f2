"""Separate processes on one budget in a private redis-server, against the strict emulator.

Each worker is its own Python process (:mod:`amplitude_async.testing.workers`); the emulator
runs in the test's process and counts every 429 it sends.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from redisserver import RedisServer

from amplitude_async.client import AmplitudeClient
from amplitude_async.limits import DEFAULT_LIMITS, Pool
from amplitude_async.redis_store import RedisBudgetStore
from amplitude_async.scheduler import Scheduler
from amplitude_async.testing.dataset import SyntheticDataset
from amplitude_async.testing.emulator import Emulator
from amplitude_async.testing.workers import (
    WorkerSpec,
    report_of,
    run_workers,
    start_worker,
    workload,
)

GUARD = 120.0  # seconds: a hang fails the test instead of blocking the suite


def dataset() -> SyntheticDataset:
    return SyntheticDataset(seed=1, users=400, days=21)


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(GUARD):
        while not condition():  # noqa: ASYNC110 - the emulator offers no event to wait on
            await asyncio.sleep(0.01)


async def test_processes_sharing_a_budget_draw_no_429(redis_server: RedisServer) -> None:
    scale = 0.002
    limits = DEFAULT_LIMITS.scaled(scale)
    async with Emulator(
        dataset(), limits=limits, arrival_delay=(0.0, 0.004), processing_time=(0.0, 0.01)
    ) as emulator:
        specs = [
            WorkerSpec(
                emulator.url,
                emulator.api_key,
                emulator.secret_key,
                budget_url=redis_server.url,
                part=i,
                parts=3,
                scale=scale,
            )
            for i in range(3)
        ]
        async with asyncio.timeout(GUARD):
            reports = await run_workers(specs)
    served = emulator.statistics()
    assert served.rate_limited == 0
    assert [r.failed for r in reports] == [{}, {}, {}]
    assert sum(r.done for r in reports) == len(workload(WorkerSpec("", "", "")))
    assert served.peak_window_cost <= limits.cost_per_window
    assert served.peak_in_flight <= limits.concurrent


async def test_the_slots_of_a_killed_process_come_back_with_its_lease(
    redis_server: RedisServer,
) -> None:
    scale = 0.01
    limits = DEFAULT_LIMITS.scaled(scale)
    async with Emulator(dataset(), limits=limits, processing_time=(3.0, 3.0)) as emulator:
        # The victim fills every in-flight slot with slow requests, then is killed. Its lease
        # (10 s, renewed at least every third of it) outlasts the checks below on a slow machine.
        victim = await start_worker(
            WorkerSpec(
                emulator.url,
                emulator.api_key,
                emulator.secret_key,
                budget_url=redis_server.url,
                workload="segments:5:3",
                scale=scale,
                lease=10.0,
            )
        )
        await until(lambda: emulator.enforcer.in_flight(Pool.STANDARD) == limits.concurrent)
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        store = RedisBudgetStore.from_url(redis_server.url, api_key=emulator.api_key, limits=limits)
        scheduler = Scheduler(store=store, lease=10.0)
        async with AmplitudeClient(
            emulator.api_key,
            emulator.secret_key,
            base_url=emulator.url,
            scheduler=scheduler,
            coalesce=False,
        ) as client:
            from amplitude_async.queries import EventsList

            task = asyncio.create_task(client.gather([EventsList()] * 3))
            await asyncio.sleep(0.2)
            # The dead process's entries still hold every slot: its requests may still be
            # counted by the server until their leases run out.
            seen = scheduler.statistics()[Pool.STANDARD]
            async with asyncio.timeout(GUARD):
                results = await task
    assert seen.in_flight == limits.concurrent
    assert seen.queued == 3
    assert len(results) == 3
    assert emulator.statistics().rate_limited == 0


async def _fill_the_window(
    emulator: Emulator, redis_server: RedisServer, scale: float, **options: object
) -> list[asyncio.subprocess.Process]:
    """Start two workers whose work exceeds one window; return once the window's budget has
    been spent and nothing is in flight (the rest waits for the window to move on)."""
    specs = [
        WorkerSpec(
            emulator.url,
            emulator.api_key,
            emulator.secret_key,
            budget_url=redis_server.url,
            workload="segments:60:20",
            part=i,
            parts=2,
            scale=scale,
            **options,  # type: ignore[arg-type]
        )
        for i in range(2)
    ]
    workers = [await start_worker(spec) for spec in specs]
    budget = emulator.limits.cost_per_window
    await until(
        lambda: (
            emulator.statistics().cost_accepted > budget - 21
            and emulator.enforcer.in_flight(Pool.STANDARD) == 0
        )
    )
    return workers


async def test_redis_killed_mid_run_sends_nothing_more(redis_server: RedisServer) -> None:
    scale = 0.05  # a 15 s window: the rest of the work waits for it
    async with Emulator(dataset(), limits=DEFAULT_LIMITS.scaled(scale)) as emulator:
        workers = await _fill_the_window(emulator, redis_server, scale, unavailable_wait=1.0)
        sent = len(emulator.requests)
        redis_server.kill()
        async with asyncio.timeout(GUARD):
            reports = [await report_of(w) for w in workers]
        assert len(emulator.requests) == sent  # nothing dispatched without the budget
    assert sum(r.done for r in reports) == sent
    assert sum(r.failed.get("BudgetUnavailable", 0) for r in reports) == 60 - sent
    assert emulator.statistics().rate_limited == 0


async def test_redis_restarted_empty_starts_cold_and_draws_no_429(
    redis_server: RedisServer,
) -> None:
    scale = 0.01  # a 3 s window
    async with Emulator(dataset(), limits=DEFAULT_LIMITS.scaled(scale)) as emulator:
        workers = await _fill_the_window(emulator, redis_server, scale, lease=2.0)
        redis_server.restart()
        async with asyncio.timeout(GUARD):
            reports = [await report_of(w) for w in workers]
    assert [r.failed for r in reports] == [{}, {}]
    assert sum(r.done for r in reports) == 60
    assert emulator.statistics().rate_limited == 0
