"""The Redis budget store against a private redis-server: the same decisions as the in-process
store, keys, limits, faults and grants across processes."""

from __future__ import annotations

import asyncio
import math
import warnings
from collections.abc import AsyncIterator, Callable
from importlib import resources
from typing import Any

import pytest
import redis.asyncio as aioredis
from attrs import frozen
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from redisserver import RedisServer

from amplitude_async.admission import (
    BudgetUsage,
    Changes,
    Grant,
    InMemoryBudgetStore,
    Outcome,
    Registration,
)
from amplitude_async.errors import BudgetUnavailable, ConfigurationError
from amplitude_async.limits import Limits, Pool
from amplitude_async.redis_store import SCRIPT_PARTS, RedisBudgetStore, budget_key_tag
from amplitude_async.scheduler import Scheduler
from amplitude_async.testing.timing import TimedBudgetStore

API_KEY = "0123456789abcdef0123456789abcdef"
LIMITS = Limits(
    concurrent=3,
    cost_per_window=20,
    window=10.0,
    cost_per_hour=60,
    hour=40.0,
    user_concurrent=2,
    user_queries_per_hour=4,
)
START = 1_700_000_000.0  # a time of the magnitude Redis TIME reports


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisBudgetStore]:
    store = RedisBudgetStore.from_url(redis_server.url, api_key=API_KEY, limits=LIMITS)
    try:
        yield store
    finally:
        await store.aclose()


# -- one suite of operations, every store -----------------------------------------------------

OWNERS = ("a", "b", "c")


@frozen
class Step:
    """One exchange by ``owner``, ``gap`` half-seconds after the previous one; picks index
    into the owner's own waiting requests and entries in flight. ``lost``: the owner never
    hears the answer (its books stay as they were); ``replay``: a late copy of the owner's
    previous exchange arrives first (the store must refuse it)."""

    owner: str
    gap: int
    register: list[tuple[Pool, int, int]]
    complete: list[int]
    cancel: list[int]
    release: list[int]
    abandon: list[int]
    pause: float | None
    lease: float
    leave: bool
    lost: bool = False
    replay: bool = False
    beat: float | None = None


steps = st.lists(
    st.builds(
        Step,
        owner=st.sampled_from(OWNERS),
        gap=st.integers(0, 8),
        register=st.lists(
            st.tuples(
                st.sampled_from([Pool.STANDARD, Pool.STANDARD, Pool.USER]),
                st.integers(0, 20),
                st.integers(0, 2),
            ),
            max_size=4,
        ),
        complete=st.lists(st.integers(0, 10), max_size=2),
        cancel=st.lists(st.integers(0, 10), max_size=1),
        release=st.lists(st.integers(0, 10), max_size=1),
        abandon=st.lists(st.integers(0, 10), max_size=1),
        pause=st.sampled_from([None, None, None, None, 3.0]),
        lease=st.sampled_from([3.0, 6.0, 30.0]),
        leave=st.sampled_from([False] * 9 + [True]),
        lost=st.sampled_from([False] * 4 + [True]),
        replay=st.sampled_from([False] * 9 + [True]),
        beat=st.sampled_from([None, 2.0]),
    ),
    min_size=1,
    max_size=30,
)


def summary(outcome: Outcome, usage: BudgetUsage | None) -> tuple[object, ...]:
    """The whole outcome, in a form both stores give alike: grants and cancellations as sets
    (their order means nothing), the store's version by its generation (the epoch is each
    store's own name), and the budget as the store reports it after the exchange.

    ``wake_in`` is compared exactly: both stores compute it with the same float operations
    in the same order from the same inputs (times travel as 17 significant digits, which
    round-trips a double), so any difference is a different rule, not rounding."""
    return (
        sorted((g.pool, g.local, g.entry) for g in outcome.grants),
        sorted(outcome.cancelled),
        outcome.wake_in,
        outcome.queued,
        outcome.rejoined,
        outcome.seen.rpartition(":")[2],
        outcome.reset,
        usage,
    )


async def run_steps(
    store: Any, plan: list[Step], owned: Callable[[str], set[tuple[Pool, int]]] | None = None
) -> list[object]:
    """Drive ``store`` with the steps, each at its time on the store's clock (``exchange_at``);
    every owner keeps its own books, as a scheduler does.
    ``owned`` (if given) tells which entries the store has in flight for an owner: after each
    exchange whose answer the owner heard, it must hold every one of them."""
    waiting: dict[str, list[tuple[Pool, int]]] = {o: [] for o in OWNERS}
    flying: dict[str, list[tuple[Pool, int]]] = {o: [] for o in OWNERS}
    local = dict.fromkeys(OWNERS, 0)
    number = dict.fromkeys(OWNERS, 0)
    previous: dict[str, tuple[Changes, float]] = {}
    seen: list[object] = []
    now = START
    for step in plan:
        owner = step.owner
        now += step.gap * 0.5
        last = previous.get(owner)
        # (A store forgets the exchange numbers of owners silent for half its keys' TTL.)
        if step.replay and last is not None and now - last[1] < 10:
            with pytest.raises(BudgetUnavailable):
                await store.exchange_at(last[0], now)
        number[owner] += 1
        changes = Changes(
            owner=owner,
            lease=step.lease,
            held=list(flying[owner]),
            seq=number[owner],
            beat=step.beat,
        )
        for pool, cost, priority in step.register:
            local[owner] += 1
            weight = 1 if pool is Pool.USER else cost
            changes.register.append(Registration(local[owner], pool, weight, priority))
            waiting[owner].append((pool, local[owner]))
        for target, picks in (
            (changes.complete, step.complete),
            (changes.release, step.release),
            (changes.abandon, step.abandon),
        ):
            for pick in picks:
                if flying[owner]:
                    target.append(flying[owner].pop(pick % len(flying[owner])))
        for pick in step.cancel:
            if waiting[owner]:
                changes.cancel.append(waiting[owner].pop(pick % len(waiting[owner])))
        if step.pause is not None:
            changes.pause.append((Pool.STANDARD, step.pause))
        changes.leaving = step.leave
        # What the owner tells the store it holds: its entries, less those it gives back now.
        assert changes.held is not None
        gone = {*changes.complete, *changes.release, *changes.abandon}
        changes.held = [entry for entry in changes.held if entry not in gone]
        previous[owner] = (changes, now)
        outcome: Outcome = await store.exchange_at(changes, now)
        if not step.lost:
            for grant in outcome.grants:
                key = (grant.pool, grant.local)
                if key in waiting[owner]:
                    waiting[owner].remove(key)
                if (grant.pool, grant.entry) not in flying[owner]:
                    flying[owner].append((grant.pool, grant.entry))
            if outcome.rejoined or step.leave:
                waiting[owner] = []  # what the store forgot is dropped here too
            if owned is not None and not step.leave:
                # Nothing in flight for this owner that it does not know of.
                assert owned(owner) <= set(flying[owner])
        seen.append(summary(outcome, store.usage()))
    return seen


def _step(
    gap: int,
    *,
    register: list[tuple[Pool, int, int]] | None = None,
    complete: list[int] | None = None,
    abandon: list[int] | None = None,
) -> Step:
    return Step(
        owner="a",
        gap=gap,
        register=register or [],
        complete=complete or [],
        cancel=[],
        release=[],
        abandon=abandon or [],
        pause=None,
        lease=3.0,
        leave=False,
    )


# A cost-0 request completes right after a cost-20 entry whose lease ran out: the next
# decision is when the 20 leaves the window (the 0 frees nothing), not when the 0 does.
ZERO_WEIGHT_AFTER_EXPIRY = [
    _step(1),
    _step(1, register=[(Pool.STANDARD, 1, 0), (Pool.STANDARD, 20, 0)]),
    _step(7, abandon=[0]),
    _step(0, register=[(Pool.STANDARD, 0, 0)]),
    _step(0, complete=[0]),
    _step(2),
]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=steps, bound=st.sampled_from([10.0, 25.0, math.inf]))
@example(plan=ZERO_WEIGHT_AFTER_EXPIRY, bound=10.0)
def test_the_lua_script_and_the_in_memory_store_decide_alike(
    redis_server: RedisServer, plan: list[Step], bound: float
) -> None:
    async def main() -> tuple[list[object], list[object]]:
        client = aioredis.from_url(redis_server.url)
        await client.flushdb()
        remote = RedisBudgetStore(client, api_key=API_KEY, limits=LIMITS, starvation_bound=bound)

        class Clocked:
            """The in-memory store's usage read at the time of the last exchange."""

            def __init__(self) -> None:
                self.at = START
                self.store = InMemoryBudgetStore(LIMITS, clock=self, starvation_bound=bound)

            async def exchange_at(self, changes: Changes, at: float) -> Outcome:
                self.at = at
                return self.store.apply(changes)

            def time(self) -> float:
                return self.at

            async def sleep(self, seconds: float) -> None:
                raise AssertionError("the store never sleeps")

            def usage(self) -> BudgetUsage:
                return self.store.usage()

            def owned(self, owner: str) -> set[tuple[Pool, int]]:
                return {
                    (pool, entry)
                    for pool, ledger in self.store.ledgers.items()
                    for entry in ledger.owned_by(owner)
                }

        class Expiring:
            """The Redis store, checked after every exchange: no key of the budget is left
            without an expiry (an abandoned budget vanishes whole)."""

            async def exchange_at(self, changes: Changes, at: float) -> Outcome:
                outcome = await remote.exchange_at(changes, at)
                for key in remote.keys:
                    assert await client.pttl(key) != -1, key
                return outcome

            def usage(self) -> BudgetUsage | None:
                return remote.usage()

        try:
            clocked = Clocked()
            return (
                await run_steps(Expiring(), plan),
                await run_steps(clocked, plan, clocked.owned),
            )
        finally:
            await client.aclose()

    remote, local = asyncio.run(main())
    assert remote == local


# -- keys, limits, scripts -----------------------------------------------------------------------


def test_the_script_is_its_named_parts_each_of_readable_size() -> None:
    folder = resources.files("amplitude_async") / "lua"
    files = sorted(item.name for item in folder.iterdir() if item.name.endswith(".lua"))
    # Every file is joined into the script (none forgotten), and none is a monolith again.
    assert files == sorted(f"{part}.lua" for part in SCRIPT_PARTS)
    for name in files:
        assert len((folder / name).read_text(encoding="utf-8").splitlines()) <= 600, name


async def test_keys_share_one_tag_expire_and_never_hold_the_key(
    redis_server: RedisServer, store: RedisBudgetStore
) -> None:
    scheduler = Scheduler(store=store, lease=5.0)
    async with scheduler.slot(Pool.STANDARD, 5):
        pass
    await scheduler.aclose()
    client = aioredis.from_url(redis_server.url)
    try:
        keys = [k.decode() for k in await client.keys("*") if isinstance(k, bytes)]
        assert keys
        tag = "{" + budget_key_tag(API_KEY) + "}"
        assert all(tag in key for key in keys)
        for key in keys:
            assert 0 < await client.pttl(key) <= 2 * (LIMITS.hour + 5.0) * 1000
            dump = await client.dump(key)
            assert API_KEY.encode() not in (dump or b"")
        assert all(API_KEY not in key for key in keys)
    finally:
        await client.aclose()


async def expiries(client: aioredis.Redis) -> dict[str, int]:
    """Every key's time to live (ms), by name."""
    return {text(key): await client.pttl(key) for key in await client.keys("*")}


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def register(owner: str, count: int) -> Changes:
    return Changes(
        owner=owner,
        lease=5.0,
        register=[Registration(i, Pool.STANDARD, 1, 0) for i in range(1, count + 1)],
    )


async def test_keys_expire_together_config_first_and_a_write_does_not_renew_them(
    redis_server: RedisServer, store: RedisBudgetStore
) -> None:
    ttl = 2 * (LIMITS.hour + 5.0) * 1000
    client = aioredis.from_url(redis_server.url)
    try:
        await store.exchange(Changes(owner="a", lease=5.0))
        first = await expiries(client)
        config = store.keys[0]
        assert all(ttl - 1100 < left <= ttl for key, left in first.items() if key != config)
        assert ttl - 2100 < first[config] <= ttl - 1000
        await asyncio.sleep(0.3)
        # Written again (the ledger, the config) and created (the queue's keys): one deadline.
        await store.exchange(register("a", 10))
        second = await expiries(client)
        assert set(second) > set(first)
        for key, left in first.items():
            assert 0 < second[key] < left - 200, key
        others = [left for key, left in second.items() if key != config]
        assert max(others) - min(others) < 100
        assert second[config] < min(others)
    finally:
        await client.aclose()


async def test_the_exchange_after_the_refresh_time_moves_every_key_on(
    redis_server: RedisServer, store: RedisBudgetStore
) -> None:
    ttl = 2 * (LIMITS.hour + 5.0) * 1000
    client = aioredis.from_url(redis_server.url)
    try:
        await store.exchange(register("a", 10))
        # As if a quarter of the TTL had passed (or the time stored were unreadable).
        for refresh in ("0", "nan"):
            await asyncio.sleep(0.3)
            before = await expiries(client)
            await client.hset(store.keys[0], "refresh", refresh)
            await store.exchange(Changes(owner="a", lease=5.0))
            after = await expiries(client)
            assert set(after) == set(before)
            assert all(before[key] + 200 < left <= ttl for key, left in after.items())
    finally:
        await client.aclose()


async def test_an_exchange_writes_each_key_once_however_many_requests_it_carries(
    redis_server: RedisServer,
) -> None:
    client = aioredis.from_url(redis_server.url)
    stores = [
        RedisBudgetStore.from_url(redis_server.url, api_key=f"project {n}", limits=LIMITS)
        for n in range(3)
    ]
    try:
        await stores[0].exchange(register("a", 1))  # the script loaded once

        async def commands(store: RedisBudgetStore, count: int) -> int:
            before = (await client.info("stats"))["total_commands_processed"]
            await store.exchange(register("a", count))
            after = (await client.info("stats"))["total_commands_processed"]
            return int(after) - int(before)

        # A fresh budget each, three admitted (the cap), the rest queued.
        assert await commands(stores[1], 5) == await commands(stores[2], 300)
    finally:
        for store in stores:
            await store.aclose()
        await client.aclose()


async def test_a_process_with_other_limits_cannot_join(redis_server: RedisServer) -> None:
    first = RedisBudgetStore.from_url(redis_server.url, api_key=API_KEY, limits=LIMITS)
    other = RedisBudgetStore.from_url(
        redis_server.url, api_key=API_KEY, limits=Limits(concurrent=4).scaled(0.01)
    )
    try:
        await first.exchange(Changes(owner="a", lease=5.0))
        with pytest.raises(ConfigurationError) as info:
            await other.exchange(Changes(owner="b", lease=5.0))
        assert info.value.field == "limits"
        # A scheduler on it fails its waiters with the same error, before sending anything.
        scheduler = Scheduler(store=other, lease=5.0)
        with pytest.raises(ConfigurationError):
            await _enter(scheduler)
        # Another project (another key) has a budget of its own.
        elsewhere = RedisBudgetStore.from_url(
            redis_server.url, api_key="another", limits=Limits(concurrent=4)
        )
        await elsewhere.exchange(Changes(owner="b", lease=5.0))
        await elsewhere.aclose()
    finally:
        await first.aclose()
        await other.aclose()


async def test_a_flushed_script_cache_is_reloaded(
    redis_server: RedisServer, store: RedisBudgetStore
) -> None:
    first = await store.exchange(
        Changes(owner="a", lease=5.0, register=[Registration(1, Pool.STANDARD, 5, 0)])
    )
    client = aioredis.from_url(redis_server.url)
    await client.script_flush()
    await client.aclose()
    second = await store.exchange(
        Changes(owner="a", lease=5.0, register=[Registration(2, Pool.STANDARD, 5, 0)])
    )
    assert [g.local for g in first.grants + second.grants] == [1, 2]


async def test_an_evicting_memory_policy_is_warned_about(redis_server: RedisServer) -> None:
    client = aioredis.from_url(redis_server.url)
    await client.config_set("maxmemory-policy", "volatile-lru")
    await client.aclose()
    store = RedisBudgetStore.from_url(redis_server.url, api_key=API_KEY, limits=LIMITS)
    try:
        with pytest.warns(RuntimeWarning, match="volatile-lru"):
            await store.exchange(Changes(owner="a", lease=5.0))
    finally:
        await store.aclose()


async def test_lost_state_starts_cold(redis_server: RedisServer, store: RedisBudgetStore) -> None:
    await store.exchange(
        Changes(owner="a", lease=5.0, register=[Registration(1, Pool.STANDARD, 5, 0)])
    )
    client = aioredis.from_url(redis_server.url)
    await client.flushall()
    await client.aclose()
    with pytest.warns(RuntimeWarning, match="lost while in use"):
        outcome = await store.exchange(
            Changes(
                owner="a", lease=5.0, warm=True, register=[Registration(2, Pool.STANDARD, 1, 0)]
            )
        )
    assert outcome.rejoined
    assert outcome.reset
    assert outcome.grants == ()
    assert outcome.usage is not None
    standard = outcome.usage[Pool.STANDARD]
    assert [w.used for w in standard.windows] == [20, 20]
    assert standard.paused_for == pytest.approx(5.0, abs=0.5)


async def test_redis_down_is_budget_unavailable(redis_server: RedisServer) -> None:
    store = RedisBudgetStore.from_url(redis_server.url, api_key=API_KEY, limits=LIMITS, timeout=1)
    redis_server.kill()
    try:
        with pytest.raises(BudgetUnavailable):
            await store.exchange(Changes(owner="a", lease=5.0))
    finally:
        await store.aclose()


# -- schedulers in one process on one Redis budget ------------------------------------------------


async def test_a_grant_decided_by_another_process_arrives_without_polling(
    redis_server: RedisServer,
) -> None:
    limits = Limits(concurrent=1)
    stores = [
        RedisBudgetStore.from_url(redis_server.url, api_key=API_KEY, limits=limits)
        for _ in range(2)
    ]
    first, second = (Scheduler(store=s, lease=30.0) for s in stores)
    release = asyncio.Event()

    async def hold() -> None:
        async with first.slot(Pool.STANDARD, 1):
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0.1)
    waiting = asyncio.create_task(_enter(second))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    stats = second.statistics()
    assert stats[Pool.STANDARD].in_flight == 1
    assert stats.processes == 2
    release.set()
    await holder
    # The other process hears at once: far sooner than its lease-renewal exchange (10 s).
    await asyncio.wait_for(waiting, 5.0)
    assert stores[1].round_trips <= 3
    await first.aclose()
    await second.aclose()


async def test_the_benchmarks_timed_store_times_answered_and_published_grants(
    redis_server: RedisServer,
) -> None:
    limits = Limits(concurrent=1)
    first = RedisBudgetStore.from_url(redis_server.url, api_key=API_KEY, limits=limits)
    timed = TimedBudgetStore.from_url(redis_server.url, api_key=API_KEY, limits=limits)
    heard: list[Grant] = []
    timed.attach("b", heard.extend)
    try:
        held = await first.exchange(
            Changes(owner="a", lease=30.0, register=[Registration(1, Pool.STANDARD, 1, 0)])
        )
        assert len(held.grants) == 1
        queued = await timed.exchange(
            Changes(owner="b", lease=30.0, register=[Registration(1, Pool.STANDARD, 1, 0)])
        )
        assert queued.grants == ()
        assert timed.grant_latencies == []
        # Its waiter is granted by the other process's exchange, and published to it.
        await first.exchange(
            Changes(owner="a", lease=30.0, complete=[(Pool.STANDARD, held.grants[0].entry)])
        )
        for _ in range(50):
            if heard and len(timed.grant_latencies) == 1:
                break
            await asyncio.sleep(0.05)
        assert [(g.pool, g.local) for g in heard] == [(Pool.STANDARD, 1)]
        assert len(timed.grant_latencies) == 1
        # Until acknowledged, the grant also comes back with the owner's own answer: timed too.
        again = await timed.exchange(Changes(owner="b", lease=30.0))
        assert [(g.pool, g.local) for g in again.grants] == [(Pool.STANDARD, 1)]
        assert len(timed.grant_latencies) == 2
        assert all(seconds >= 0 for seconds in timed.grant_latencies)
    finally:
        await timed.detach("b")
        await first.aclose()
        await timed.aclose()


async def _enter(scheduler: Scheduler) -> None:
    async with scheduler.slot(Pool.STANDARD, 1):
        pass


async def test_waiters_fail_with_budget_unavailable_when_redis_dies(
    redis_server: RedisServer,
) -> None:
    store = RedisBudgetStore.from_url(redis_server.url, api_key=API_KEY, limits=LIMITS, timeout=1)
    scheduler = Scheduler(store=store, lease=5.0, unavailable_wait=0.5)
    await _enter(scheduler)
    redis_server.kill()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        with pytest.raises(BudgetUnavailable):
            await asyncio.wait_for(_enter(scheduler), 30.0)
        await scheduler.aclose()


async def test_the_client_shares_its_budget_through_a_url(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from amplitude_async.client import AmplitudeClient

    async with AmplitudeClient("key", "secret", budget_url=redis_server.url) as client:
        assert isinstance(client.scheduler.store, RedisBudgetStore)
        assert client.scheduler.lease == 60.0 + 30.0  # the request timeout plus a margin
    monkeypatch.setenv("AMPLITUDE_BUDGET_URL", redis_server.url)
    async with AmplitudeClient("key", "secret", timeout=5.0) as client:
        assert isinstance(client.scheduler.store, RedisBudgetStore)
        assert client.scheduler.lease == 35.0
    with pytest.raises(ConfigurationError) as info:
        AmplitudeClient("key", "secret", scheduler=Scheduler(), budget_url=redis_server.url)
    assert info.value.field == "budget_url"
    with pytest.raises(ConfigurationError) as info:
        AmplitudeClient("key", "secret", budget_url="http://not-redis")
    assert info.value.field == "budget_url"


class Shifted:
    """The loop's clock, ``offset`` seconds off: another machine's clock."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def time(self) -> float:
        return asyncio.get_running_loop().time() + self.offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


async def test_clock_skew_between_processes_cannot_cause_a_429(redis_server: RedisServer) -> None:
    from amplitude_async.testing import Enforcer

    limits = Limits(concurrent=2, cost_per_window=10, window=0.3, cost_per_hour=1000, hour=1.0)
    stores = [
        RedisBudgetStore.from_url(redis_server.url, api_key=API_KEY, limits=limits)
        for _ in range(2)
    ]
    # One process's clock is an hour ahead, the other's a day behind.
    schedulers = [
        Scheduler(store=s, clock=Shifted(offset), lease=5.0)
        for s, offset in zip(stores, (3600.0, -86400.0), strict=True)
    ]
    server = [Enforcer(limits, Shifted(0.0)), Enforcer(limits, Shifted(0.0), reading="in_flight")]

    async def request(scheduler: Scheduler) -> None:
        async with scheduler.slot(Pool.STANDARD, 3):
            arrivals = [e.arrive(Pool.STANDARD, 3) for e in server]
            await asyncio.sleep(0.01)
            for enforcer, arrival in zip(server, arrivals, strict=True):
                if arrival.ticket is not None:
                    enforcer.finish(arrival.ticket)

    await asyncio.wait_for(asyncio.gather(*(request(schedulers[i % 2]) for i in range(16))), 60.0)
    assert [e.rejected for e in server] == [{"concurrent": 0, "rate": 0}] * 2
    assert sum(e.accepted for e in server) == 32
    for scheduler in schedulers:
        await scheduler.aclose()


async def test_a_pause_in_one_process_holds_the_others(redis_server: RedisServer) -> None:
    stores = [
        RedisBudgetStore.from_url(redis_server.url, api_key=API_KEY, limits=LIMITS)
        for _ in range(2)
    ]
    first, second = (Scheduler(store=s, lease=5.0) for s in stores)
    await _enter(first)
    first.pause(Pool.STANDARD, 60.0)  # a "rate" 429
    async with first.slot(Pool.USER, 0):  # the exchange carries the pause; users not paused
        pass
    outcome = await stores[1].exchange(Changes(owner=second.owner, lease=5.0))
    assert outcome.usage is not None
    assert outcome.usage[Pool.STANDARD].paused_for > 50.0
    waiting = asyncio.create_task(_enter(second))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    assert second.statistics()[Pool.STANDARD].paused_until is not None
    waiting.cancel()
    for scheduler in (first, second):
        await scheduler.aclose()


class SwallowingPubSub:
    """A pub/sub connection whose read swallows a cancellation, as a Redis client can in a race
    inside a read: only the first, so that a regression fails instead of hanging the loop's
    close (which cancels each task once, then waits for it)."""

    swallowed = 0

    async def subscribe(self, *channels: str) -> None:
        await asyncio.sleep(0)

    async def get_message(  # redis-py's signature
        self,
        *,
        ignore_subscribe_messages: bool,
        timeout: float,  # noqa: ASYNC109
    ) -> None:
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if SwallowingPubSub.swallowed:
                raise
            SwallowingPubSub.swallowed += 1

    async def aclose(self) -> None:
        await asyncio.sleep(0)


class SwallowingClient:
    def register_script(self, text: str) -> None:
        return None  # no exchange runs here

    def pubsub(self) -> SwallowingPubSub:
        return SwallowingPubSub()

    async def aclose(self) -> None:
        await asyncio.sleep(0)


async def test_a_listener_stops_even_when_the_client_swallows_its_cancellation() -> None:
    # Such a listener would otherwise run on and keep its event loop from ever closing.
    SwallowingPubSub.swallowed = 0
    store = RedisBudgetStore(SwallowingClient(), api_key=API_KEY, limits=LIMITS)
    before = asyncio.all_tasks()
    store.attach("p", lambda grants: None)
    (listener,) = asyncio.all_tasks() - before
    await asyncio.sleep(0.05)
    await store.detach("p")
    assert SwallowingPubSub.swallowed == 1
    assert listener.cancelled()
