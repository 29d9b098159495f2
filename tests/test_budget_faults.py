"""The shared budget under faults, against a private redis-server: answers that never arrive, a
frozen server, a state that goes back in time, garbage in keys and channels, a killed process, a
flushed budget. What must hold: every call ends (a result or BudgetUnavailable), no slot is
lost for longer than the exchange that finds it, nothing is half-written, no 429, no leaked
session. Time bounds are measured in ``benchmarks/chaos_shared.py``, not here.
"""

from __future__ import annotations

import asyncio
import signal
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
import redis.asyncio as aioredis
from redisserver import RedisServer

from amplitude_async.admission import BudgetUsage, Changes, Grant, Outcome, Registration
from amplitude_async.client import AmplitudeClient
from amplitude_async.errors import BudgetUnavailable
from amplitude_async.limits import DEFAULT_LIMITS, Limits, Pool
from amplitude_async.queries import EventsList
from amplitude_async.redis_store import RedisBudgetStore
from amplitude_async.scheduler import Scheduler
from amplitude_async.testing.dataset import SyntheticDataset
from amplitude_async.testing.emulator import Emulator
from amplitude_async.testing.workers import WorkerSpec, report_of, start_worker

API_KEY = "fault-tests"
GUARD = 120.0  # seconds: a hang fails the test instead of blocking the suite
LIMITS = Limits(
    concurrent=3,
    cost_per_window=20,
    window=1.0,
    cost_per_hour=60,
    hour=4.0,
    user_concurrent=2,
    user_queries_per_hour=4,
)


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()


def open_store(
    redis_server: RedisServer, limits: Limits = LIMITS, api_key: str = API_KEY
) -> RedisBudgetStore:
    return RedisBudgetStore.from_url(redis_server.url, api_key=api_key, limits=limits, timeout=1.0)


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(GUARD):
        while not condition():  # noqa: ASYNC110 - nothing to wait on but the state
            await asyncio.sleep(0.02)


async def use(scheduler: Scheduler, count: int = 1, cost: int = 2) -> None:
    async def one() -> None:
        async with scheduler.slot(Pool.STANDARD, cost):
            await asyncio.sleep(0.01)

    async with asyncio.timeout(GUARD):
        await asyncio.gather(*(one() for _ in range(count)))


def text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def flight(redis: aioredis.Redis, store: RedisBudgetStore) -> dict[str, str]:
    """The standard pool's in-flight entries: entry -> ``weight|owner|deadline``."""
    raw = await redis.hgetall(f"{store.keys[0].rsplit(':', 1)[0]}:standard:flight")
    return {text(k): text(v) for k, v in raw.items()}


# -- answers that never arrive ------------------------------------------------------------------


class LosesAnswers:
    """A Redis store whose next ``losing`` answers carrying grants are lost after the script ran
    (a timeout, a frozen server resumed, a connection cut before the reply)."""

    def __init__(self, inner: RedisBudgetStore, losing: int) -> None:
        self.inner = inner
        self.losing = losing
        self.lost: list[Grant] = []

    @property
    def limits(self) -> Limits:
        return self.inner.limits

    @property
    def starvation_bound(self) -> float:
        return self.inner.starvation_bound

    async def exchange(self, changes: Changes) -> Outcome:
        outcome = await self.inner.exchange(changes)
        if self.losing and outcome.grants:
            self.losing -= 1
            self.lost.extend(outcome.grants)
            raise BudgetUnavailable("the answer was lost")
        return outcome

    def attach(self, owner: str, deliver: Callable[[Sequence[Grant]], None]) -> None:
        self.inner.attach(owner, deliver)

    async def detach(self, owner: str) -> None:
        await self.inner.detach(owner)

    def usage(self) -> BudgetUsage | None:
        return self.inner.usage()


async def test_grants_whose_answer_was_lost_come_back_at_the_next_exchange(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    limits = Limits(concurrent=3, cost_per_window=20, window=60.0, cost_per_hour=60, hour=120.0)
    lossy = LosesAnswers(open_store(redis_server, limits), losing=2)
    first = Scheduler(store=lossy, lease=30.0)
    other_store = open_store(redis_server, limits)
    second = Scheduler(store=other_store, lease=30.0)
    # Every slot is granted twice to answers that never arrive; the requests still run (the
    # next exchanges give the lost entries back and grant them again), and so does the other
    # process's.
    await use(first, count=3)
    await use(second, count=1)
    assert len(lossy.lost) >= 3
    await first.aclose()
    await second.aclose()
    probe = open_store(redis_server, limits)
    usage = await probe.read_usage()
    assert usage is not None
    assert usage[Pool.STANDARD].in_flight == 0
    # Lost grants were given back, not completed: the window holds the four requests sent.
    assert usage[Pool.STANDARD].windows[0].used == 4 * 2
    assert await flight(redis, probe) == {}
    await probe.aclose()


async def test_a_script_run_twice_grants_nothing_twice(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    # What a client-side retry of a script whose answer timed out did: run it again.
    store = open_store(redis_server)
    changes = Changes(
        owner="p",
        lease=30.0,
        held=[],
        seq=1,
        register=[Registration(1, Pool.STANDARD, 2, 0), Registration(2, Pool.STANDARD, 2, 0)],
    )
    first = await store.exchange(changes)
    assert len(first.grants) == 2
    with pytest.raises(BudgetUnavailable, match="STALE"):
        await store.exchange(changes)
    assert len(await flight(redis, store)) == 2
    # The answer was lost after all: the next exchange (holding nothing) gives both back.
    await store.exchange(Changes(owner="p", lease=30.0, held=[], seq=2, seen=first.seen))
    assert await flight(redis, store) == {}
    await store.aclose()


# -- a state that goes back in time -------------------------------------------------------------


async def test_a_restored_older_snapshot_starts_cold_and_nobody_hangs(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    store = open_store(redis_server)
    scheduler = Scheduler(store=store, lease=1.0)
    await use(scheduler, count=2)
    snapshot = {key: await redis.dump(key) for key in store.keys}
    await use(scheduler, count=3)
    # A failover to a replica that had not seen the last writes.
    await redis.delete(*store.keys)
    for key, dump in snapshot.items():
        if dump is not None:
            await redis.restore(key, 0, dump, replace=True)
    with pytest.warns(RuntimeWarning, match="went back in time"):
        await use(scheduler, count=2)
    # Another process, started afterwards, is served too.
    later = Scheduler(store=open_store(redis_server), lease=1.0)
    await use(later, count=2)
    for each in (scheduler, later):
        await each.aclose()


async def test_renewal_never_resurrects_an_entry_the_process_completed(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    store = open_store(redis_server)
    owner = "p"
    first = await store.exchange(Changes(owner=owner, lease=30.0, held=[], seq=1))
    granted = await store.exchange(
        Changes(
            owner=owner,
            lease=30.0,
            held=[],
            seq=2,
            seen=first.seen,
            register=[Registration(1, Pool.STANDARD, 2, 0)],
        )
    )
    (grant,) = granted.grants
    snapshot = {key: await redis.dump(key) for key in store.keys}
    done = await store.exchange(
        Changes(
            owner=owner,
            lease=30.0,
            held=[],
            seq=3,
            seen=granted.seen,
            complete=[(Pool.STANDARD, grant.entry)],
        )
    )
    for key, dump in snapshot.items():
        if dump is not None:
            await redis.restore(key, 0, dump, replace=True)
    # The completion was lost with the rollback: the entry is in flight again. The owner's next
    # exchange (which does not hold it) must not renew it: the store starts cold instead.
    assert len(await flight(redis, store)) == 1
    with pytest.warns(RuntimeWarning, match="went back in time"):
        after = await store.exchange(
            Changes(owner=owner, lease=30.0, held=[], seq=4, seen=done.seen)
        )
    assert after.reset
    assert await flight(redis, store) == {}
    await store.aclose()


# -- garbage in the keys and channels ------------------------------------------------------------


async def _string(redis: aioredis.Redis, key: str) -> None:
    await redis.delete(key)
    await redis.set(key, "garbage")


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        ("standard:queue", None, None),
        ("owners", None, None),
        ("standard:ledger", "u1", "nan"),
        ("standard:ledger", "u1", "-100000"),
        ("standard:ledger", "pause", "1e300"),
        ("user:flight", "7", "x|y"),
    ],
)
async def test_garbage_in_a_key_starts_cold_naming_the_key(
    redis_server: RedisServer,
    redis: aioredis.Redis,
    name: str,
    field: str | None,
    value: str | None,
) -> None:
    store = open_store(redis_server)
    scheduler = Scheduler(store=store, lease=1.0)
    await use(scheduler, count=2)
    key = next(k for k in store.keys if k.endswith(":" + name))
    if field is None:
        await _string(redis, key)
    else:
        await redis.hset(key, field, value or "")
    with pytest.warns(RuntimeWarning, match=key.replace("{", r"\{").replace("}", r"\}")):
        await use(scheduler, count=2)
    # Wiped whole and rebuilt: every key of the expected type again.
    assert (await redis.type(store.keys[0])) == b"hash"
    assert (await redis.type(key)) in (b"none", b"hash", b"zset")
    assert store.usage() is not None
    await scheduler.aclose()


async def test_stray_messages_on_a_grant_channel_are_ignored(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    store = open_store(redis_server)
    scheduler = Scheduler(store=store, lease=5.0)
    await use(scheduler)
    channel = store.channel + scheduler.owner
    for junk in ("garbage", "nan|1:1:1", "1|9:1:1", "1|1:x:2", b"\xff\xfe", "1|1:999:77"):
        await redis.publish(channel, junk)
    await asyncio.sleep(0.2)
    await use(scheduler, count=3)
    await scheduler.aclose()  # no ValueError, nothing left listening
    assert store._listeners == {}


# -- closing with the store frozen ---------------------------------------------------------------


async def test_aclose_with_redis_frozen_is_cancellable_and_still_closes_the_session(
    redis_server: RedisServer,
) -> None:
    async with Emulator(SyntheticDataset(seed=1, users=50, days=7)) as emulator:
        client = AmplitudeClient(
            emulator.api_key,
            emulator.secret_key,
            base_url=emulator.url,
            budget_url=redis_server.url,
        )
        await client.run(EventsList())
        session = client._transport._session  # type: ignore[attr-defined]
        assert session is not None
        redis_server.freeze()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(client.aclose(), 0.1)
        finally:
            redis_server.thaw()
        assert session.closed
        assert client.closed


# -- real processes ------------------------------------------------------------------------------


def _dataset() -> SyntheticDataset:
    return SyntheticDataset(seed=1, users=400, days=21)


def _spec(emulator: Emulator, redis_server: RedisServer, **options: Any) -> WorkerSpec:
    return WorkerSpec(
        emulator.url,
        emulator.api_key,
        emulator.secret_key,
        budget_url=redis_server.url,
        **options,
    )


async def test_every_call_ends_when_redis_freezes_and_a_fresh_batch_then_runs(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    scale = 0.01  # a 3 s window
    async with Emulator(
        _dataset(), limits=DEFAULT_LIMITS.scaled(scale), processing_time=(0.05, 0.3)
    ) as emulator:
        options = {
            "scale": scale,
            "lease": 2.0,
            "call_timeout": 0.5,
            "unavailable_wait": 1.0,
            "workload": "segments:60:2",
            "parts": 3,
        }
        workers = [
            await start_worker(_spec(emulator, redis_server, part=i, **options)) for i in range(3)
        ]
        await until(lambda: len(emulator.requests) >= 5)
        # Frozen longer than the call timeout and the lease: exchanges time out, leases lapse,
        # and what the clients sent meanwhile runs once it thaws.
        redis_server.freeze()
        await asyncio.sleep(3.0)
        redis_server.thaw()
        async with asyncio.timeout(GUARD):
            reports = [await report_of(w) for w in workers]
        for report in reports:
            assert report.done + sum(report.failed.values()) == report.queries
            assert set(report.failed) <= {"BudgetUnavailable"}
        # A fresh batch, once Redis is back, runs whole.
        fresh = await start_worker(
            _spec(emulator, redis_server, **{**options, "workload": "segments:10:2", "parts": 1})
        )
        async with asyncio.timeout(GUARD):
            after = await report_of(fresh)
        assert (after.done, after.failed) == (10, {})
        assert emulator.statistics().rate_limited == 0
    # No entry owned by a process that is gone (abandoned ones, owner "", wait for their lease).
    store = open_store(redis_server, DEFAULT_LIMITS.scaled(scale), emulator.api_key)
    assert await redis.exists(store.keys[0])
    owners = {v.split("|")[1] for v in (await flight(redis, store)).values()}
    assert owners <= {""}
    await store.aclose()


async def test_a_killed_process_queued_requests_are_dropped_not_granted(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    scale = 0.01
    limits = DEFAULT_LIMITS.scaled(scale)
    async with Emulator(_dataset(), limits=limits, processing_time=(3.0, 3.0)) as emulator:
        # A lease (10 s) longer than the heartbeat (6 s): its waiters must go first.
        victim = await start_worker(
            _spec(emulator, redis_server, workload="segments:12:3", scale=scale, lease=10.0)
        )
        await until(lambda: emulator.enforcer.in_flight(Pool.STANDARD) == limits.concurrent)
        store = open_store(redis_server, limits, emulator.api_key)
        (dead,) = [text(o) for o in await redis.zrange(store.keys[1], 0, -1)]
        waiters_key = f"{store.keys[0].rsplit(':', 1)[0]}:standard:waiters"
        assert await redis.hlen(waiters_key) == 12 - limits.concurrent
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        # Another process queues (and so exchanges) meanwhile.
        survivor = Scheduler(store=store, lease=10.0)
        task = asyncio.create_task(use(survivor, count=2))

        async def queued_by_the_dead() -> int:
            return sum(text(k).startswith(dead) for k in await redis.hkeys(waiters_key))

        async with asyncio.timeout(GUARD):
            while await queued_by_the_dead():  # noqa: ASYNC110 - polling Redis
                await asyncio.sleep(0.1)
        # Dropped while its entries still hold their slots (their requests may still count):
        # none of its queued requests was granted after it died.
        held = [v for v in (await flight(redis, store)).values() if v.split("|")[1] == dead]
        assert len(held) == limits.concurrent
        await task
        await survivor.aclose()
    assert emulator.statistics().rate_limited == 0


async def test_a_new_process_after_flushall_starts_cold_against_a_strict_server(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    scale = 0.01
    async with Emulator(
        _dataset(), limits=DEFAULT_LIMITS.scaled(scale), processing_time=(1.5, 1.5)
    ) as emulator:
        running = await start_worker(
            _spec(emulator, redis_server, workload="segments:10:3", scale=scale, lease=5.0)
        )
        await until(lambda: emulator.enforcer.in_flight(Pool.STANDARD) == 5)
        await asyncio.sleep(1.5)  # its listener says it is in use within a second
        await redis.flushall()
        # A new process (a CLI query, say) that has never seen the budget.
        newcomer = await start_worker(
            _spec(emulator, redis_server, workload="segments:5:3", scale=scale, lease=5.0)
        )
        async with asyncio.timeout(GUARD):
            reports = [await report_of(running), await report_of(newcomer)]
    assert [r.failed for r in reports] == [{}, {}]
    assert emulator.statistics().rate_limited == 0
