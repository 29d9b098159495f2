"""The result cache: TTL policy, stores, keys, the client's use of it, incremental refresh."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import warnings
from datetime import UTC, date, datetime, timedelta
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from localserver import RecordingServer
from redisserver import RedisServer

from amplitude_async import (
    DAILY,
    MONTHLY,
    WEEKLY,
    ActiveUsers,
    AmplitudeClient,
    AverageSessionLength,
    CachePolicy,
    CacheUnavailable,
    ConfigurationError,
    EventSegmentation,
    EventsList,
    Funnel,
    Limits,
    MemoryCache,
    QueryTooExpensive,
    RealtimeActiveUsers,
    RedisCache,
    Retention,
    UserActivity,
    UserSearch,
)
from amplitude_async.cache import cache_key, cache_ttl, open_cache
from amplitude_async.queries import period_start
from amplitude_async.split import plan_incremental
from amplitude_async.testing.emulator import Emulator
from amplitude_async.testing.pytest_plugin import TEST_LIMITS

TODAY = date(2026, 9, 30)
POLICY = CachePolicy(settled_ttl=1000.0, recent_ttl=10.0)


class Today:
    """A controllable date source for the policy."""

    def __init__(self, day: date) -> None:
        self.day = day

    def __call__(self) -> date:
        return self.day


class Ticks:
    """A controllable clock for MemoryCache expiry."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# -- the policy (pure) ----------------------------------------------------------------------


def test_settled_ranges_keep_the_long_ttl_recent_ones_the_short() -> None:
    settled = EventSegmentation(["A"], date(2026, 9, 1), date(2026, 9, 28))
    assert cache_ttl(settled, POLICY, TODAY) == 1000.0
    # 2026-09-29 is yesterday: not settled with the default of 2 days.
    touching = settled.with_range(date(2026, 9, 1), date(2026, 9, 29))
    assert cache_ttl(touching, POLICY, TODAY) == 10.0
    assert cache_ttl(touching, POLICY, TODAY + timedelta(days=1)) == 1000.0
    lazy = CachePolicy(settled_days=5, settled_ttl=1000.0, recent_ttl=10.0)
    assert cache_ttl(settled, lazy, TODAY) == 10.0


def test_volatile_and_open_ended_queries() -> None:
    for volatile in (RealtimeActiveUsers(), UserActivity(1), UserSearch("someone")):
        assert cache_ttl(volatile, POLICY, TODAY) is None
        assert cache_ttl(volatile, CachePolicy(volatile_ttl=5.0), TODAY) == 5.0
    old = date(2026, 1, 1)
    assert cache_ttl(Retention("A", "B", old, old), POLICY, TODAY) == 10.0
    assert cache_ttl(EventsList(), POLICY, TODAY) == 10.0
    # A funnel's conversions reach past its end: by 30 days unless it says otherwise.
    funnel = Funnel(["A", "B"], date(2026, 8, 20), date(2026, 9, 1))
    assert cache_ttl(funnel, POLICY, TODAY) == 10.0
    short = Funnel(["A", "B"], date(2026, 8, 20), date(2026, 9, 1), conversion_window=86_400)
    assert cache_ttl(short, POLICY, TODAY) == 1000.0


def test_today_is_taken_in_the_projects_time_zone() -> None:
    # UTC+14 and UTC-11 are 25 hours apart: their dates always differ, by one or two days.
    east = CachePolicy(timezone="Pacific/Kiritimati").current_day()
    west = CachePolicy(timezone="Pacific/Pago_Pago").current_day()
    utc = datetime.now(UTC).date()
    assert timedelta(days=1) <= east - west <= timedelta(days=2)
    assert west <= utc <= east
    assert CachePolicy(today=lambda: TODAY).last_settled_day() == date(2026, 9, 28)
    with pytest.raises(ConfigurationError, match="timezone"):
        CachePolicy(timezone="Nowhere/Atlantis")
    with pytest.raises(ConfigurationError, match="recent_ttl"):
        CachePolicy(recent_ttl=0)


def test_keys_are_one_way_and_separate_targets() -> None:
    query = EventSegmentation(["Secret Event"], date(2026, 9, 1), date(2026, 9, 2))
    key = cache_key("https://amplitude.com\nBasic a2V5OnNlY3JldA==", query)
    assert len(key) == 64
    assert int(key, 16) >= 0
    assert "Secret" not in key
    assert key != cache_key("https://amplitude.com\nBasic b3RoZXI6c2VjcmV0", query)
    assert key == cache_key(
        "https://amplitude.com\nBasic a2V5OnNlY3JldA==",
        EventSegmentation("Secret Event", date(2026, 9, 1), date(2026, 9, 2)),
    )


# -- the memory store -----------------------------------------------------------------------


async def test_memory_cache_is_bounded_and_least_recently_used_goes_first() -> None:
    ticks = Ticks()
    cache = MemoryCache(max_entries=3, max_bytes=10, clock=ticks)
    await cache.set("a", b"aaa", 100)
    await cache.set("b", b"bbb", 100)
    await cache.set("c", b"ccc", 100)
    assert await cache.get("a") == b"aaa"  # "b" is now the least recently used
    await cache.set("d", b"d", 100)
    assert await cache.get_many(["a", "b", "c", "d"]) == [b"aaa", None, b"ccc", b"d"]
    await cache.set("e", b"eeee", 100)  # 3 + 3 + 1 + 4 > 10 bytes: "a" goes
    assert await cache.get("a") is None
    assert cache.size <= 10
    assert len(cache) <= 3
    await cache.set("huge", b"x" * 11, 100)
    assert await cache.get("huge") is None
    ticks.now = 100.0
    assert await cache.get("e") is None  # expired
    with pytest.raises(ConfigurationError, match="max_entries"):
        MemoryCache(max_entries=0)


def test_open_cache_names_the_bad_url() -> None:
    assert isinstance(open_cache("memory://"), MemoryCache)
    with pytest.raises(ConfigurationError, match="cache_url"):
        open_cache("http://127.0.0.1:1")


# -- through the client, against the emulator -----------------------------------------------

CHART = EventSegmentation(["View Item"], date(2026, 9, 1), date(2026, 9, 10), metric="totals")


def accepted_cost(emulator: Emulator) -> int:
    return sum(r.cost or 0 for r in emulator.requests if r.accepted)


def client_for(emulator: Emulator, **kwargs: Any) -> AmplitudeClient:
    return AmplitudeClient(
        emulator.api_key, emulator.secret_key, base_url=emulator.url, limits=TEST_LIMITS, **kwargs
    )


async def test_a_cached_answer_spends_no_budget(amplitude_emulator: Emulator) -> None:
    policy = CachePolicy(today=Today(date(2026, 10, 30)))
    async with client_for(amplitude_emulator, cache=MemoryCache(), cache_policy=policy) as client:
        first = await client.run(CHART)
        second = await client.run(CHART)
        assert second == first
        stats = client.statistics()
        assert stats.requests_sent == 1
        assert (stats.savings.cache_hits, stats.savings.cache_misses) == (1, 1)
        assert stats.savings.cost_saved_by_cache == CHART.cost
        fresh = await client.run(CHART, bypass_cache=True)
        assert fresh == first
        assert client.statistics().requests_sent == 2
        assert client.statistics().savings.refreshed == 1
        # Not cached by default: asked twice, sent twice.
        await client.run(RealtimeActiveUsers())
        await client.run(RealtimeActiveUsers())
        assert client.statistics().requests_sent == 4
    assert len(amplitude_emulator.requests) == 4


async def test_recent_answers_expire_and_settle(amplitude_emulator: Emulator) -> None:
    today = Today(date(2026, 9, 10))
    ticks = Ticks()
    cache = MemoryCache(clock=ticks)
    policy = CachePolicy(today=today, settled_ttl=86_400.0, recent_ttl=60.0)
    async with client_for(amplitude_emulator, cache=cache, cache_policy=policy) as client:
        await client.run(CHART)
        ticks.now = 59.0
        await client.run(CHART)
        assert len(amplitude_emulator.requests) == 1
        ticks.now = 61.0  # the short TTL is over
        await client.run(CHART)
        assert len(amplitude_emulator.requests) == 2
        today.day = date(2026, 9, 20)  # the range has settled: the next answer stays a day
        ticks.now = 200.0
        await client.run(CHART)
        ticks.now = 200.0 + 86_000
        await client.run(CHART)
        assert len(amplitude_emulator.requests) == 3


async def test_different_api_keys_never_share_an_entry(server: RecordingServer) -> None:
    body = {"data": {"series": [[5]], "seriesLabels": [0], "xValues": ["2026-09-01"]}}
    other = {"data": {"series": [[9]], "seriesLabels": [0], "xValues": ["2026-09-01"]}}
    server.reply(200, body)
    server.reply(200, other)
    cache = MemoryCache()
    policy = CachePolicy(today=Today(date(2026, 12, 1)))
    query = EventSegmentation(["A"], date(2026, 9, 1), date(2026, 9, 1))
    results = []
    for key in ("key-one", "key-two", "key-one"):
        client = AmplitudeClient(
            key, "secret", base_url=server.url, limits=Limits().scaled(0.001), cache=cache,
            cache_policy=policy,
        )  # fmt: skip
        results.append(await client.run(query))
        await client.aclose()
    assert [r.series[0][0] for r in results] == [5, 9, 5]
    assert len(server.requests) == 2
    assert len(cache) == 2


# -- Redis ------------------------------------------------------------------------------------


async def test_redis_cache_round_trip_and_no_secret_in_keys(
    redis_server: RedisServer, amplitude_emulator: Emulator
) -> None:
    from redis.asyncio import Redis

    policy = CachePolicy(today=Today(date(2026, 12, 1)))
    cache = RedisCache(redis_server.url)
    async with client_for(amplitude_emulator, cache=cache, cache_policy=policy) as client:
        first = await client.run(CHART)
        assert await client.run(CHART) == first
    assert len(amplitude_emulator.requests) == 1
    raw = Redis.from_url(redis_server.url)
    try:
        keys = [k.decode() for k in await raw.keys("*") if isinstance(k, bytes)]
        assert len(keys) == 1
        for secret in (amplitude_emulator.api_key, amplitude_emulator.secret_key, "View"):
            assert secret not in keys[0]
        ttl = await raw.ttl(keys[0])
        assert 29 * 86_400 < ttl <= 30 * 86_400
    finally:
        await raw.aclose()


_OTHER_PROCESS = """
import asyncio, sys
from datetime import date
from amplitude_async import AmplitudeClient, CachePolicy, EventSegmentation, RedisCache
from amplitude_async.testing.pytest_plugin import TEST_LIMITS

async def main():
    url, redis_url, key, secret = sys.argv[1:5]
    query = EventSegmentation(["View Item"], date(2026, 9, 1), date(2026, 9, 10), metric="totals")
    policy = CachePolicy(today=lambda: date(2026, 12, 1))
    async with AmplitudeClient(key, secret, base_url=url, limits=TEST_LIMITS,
                               cache=RedisCache(redis_url), cache_policy=policy) as client:
        await client.run(query)
        print(client.statistics().savings.cache_hits)

asyncio.run(main())
"""


async def test_redis_cache_is_shared_by_processes(
    redis_server: RedisServer, amplitude_emulator: Emulator
) -> None:
    async def other_process() -> str:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _OTHER_PROCESS,
            amplitude_emulator.url,
            redis_server.url,
            amplitude_emulator.api_key,
            amplitude_emulator.secret_key,
            stdout=subprocess.PIPE,
        )
        out, _ = await process.communicate()
        assert process.returncode == 0
        return out.decode().strip()

    assert await other_process() == "0"  # a miss: it asked the emulator and stored the answer
    assert await other_process() == "1"  # another process: a hit
    policy = CachePolicy(today=Today(date(2026, 12, 1)))
    cache = RedisCache(redis_server.url)
    async with client_for(amplitude_emulator, cache=cache, cache_policy=policy) as client:
        await client.run(CHART)
        assert client.statistics().savings.cache_hits == 1
    assert len(amplitude_emulator.requests) == 1


async def test_redis_down_degrades_to_no_cache(
    redis_server: RedisServer, amplitude_emulator: Emulator
) -> None:
    policy = CachePolicy(today=Today(date(2026, 12, 1)))
    ticks = Ticks()
    cache = RedisCache(redis_server.url, timeout=5.0, retry_after=30.0, clock=ticks)
    async with client_for(amplitude_emulator, cache=cache, cache_policy=policy) as client:
        expected = await client.run(CHART)
        redis_server.kill()
        with pytest.warns(CacheUnavailable, match="answering without it"):
            assert await client.run(CHART) == expected
        assert client.statistics().savings.cache_errors >= 1
        assert len(amplitude_emulator.requests) == 2
        redis_server.start()  # back, empty
        # Within retry_after of the failure, the cache is not even tried.
        with pytest.warns(CacheUnavailable, match="skipped"):
            await client.run(CHART)
        assert len(amplitude_emulator.requests) == 3
        ticks.now = 31.0  # then it is used again
        with warnings.catch_warnings():
            warnings.simplefilter("error", CacheUnavailable)
            await client.run(CHART)
            await client.run(CHART)
        assert len(amplitude_emulator.requests) == 4


# -- incremental refresh ----------------------------------------------------------------------


def test_incremental_plan_cuts_on_calendar_buckets() -> None:
    query = EventSegmentation(["A"], date(2026, 9, 3), date(2026, 9, 30), metric="totals")
    chunks = plan_incremental(query, 1000)
    assert [(c.start, c.end) for c in chunks] == [  # type: ignore[attr-defined]
        (date(2026, 9, d), date(2026, 9, d)) for d in range(3, 31)
    ]
    # The same chunks, whatever the range around them.
    later = plan_incremental(query.with_range(date(2026, 9, 4), date(2026, 10, 1)), 1000)
    assert set(chunks[1:]) <= set(later)
    # Weekly buckets start on Sundays (2026-09-06 is one); the first may be partial.
    weekly = plan_incremental(attrs.evolve(query, interval=WEEKLY), 1000)
    assert [(c.start, c.end) for c in weekly][:2] == [  # type: ignore[attr-defined]
        (date(2026, 9, 3), date(2026, 9, 5)),
        (date(2026, 9, 6), date(2026, 9, 12)),
    ]
    with pytest.raises(QueryTooExpensive, match="cannot split"):
        plan_incremental(attrs.evolve(query, metric="uniques"), 1000)
    with pytest.raises(QueryTooExpensive, match="bucket"):
        plan_incremental(attrs.evolve(query, interval=WEEKLY), 6)


DAY = timedelta(days=1)
DASHBOARD_DATASET = {"days": 60, "start": date(2026, 8, 1)}


async def refresh(
    emulator: Emulator, cache: MemoryCache, today: date, query: Any
) -> tuple[Any, int]:
    """Run ``query`` split through a cached client; return its result and the cost sent."""
    before = accepted_cost(emulator)
    policy = CachePolicy(today=Today(today))
    async with client_for(emulator, cache=cache, cache_policy=policy) as client:
        result = await client.run(query, split=True)
    return result, accepted_cost(emulator) - before


async def fresh(emulator: Emulator, query: Any) -> Any:
    async with client_for(emulator) as client:
        return await client.run(query)


@pytest.mark.amplitude_emulator(**DASHBOARD_DATASET)
@pytest.mark.parametrize(
    "make",
    [
        lambda a, b: EventSegmentation(["View Item"], a, b, metric="totals"),
        lambda a, b: EventSegmentation(["View Item"], a, b, metric="totals", group_by="country"),
        lambda a, b: ActiveUsers(a, b, metric="new"),
        lambda a, b: AverageSessionLength(a, b),
    ],
    ids=["totals", "grouped", "new-users", "session-average"],
)
async def test_incremental_refresh_equals_a_fresh_unsplit_query(
    amplitude_emulator: Emulator, make: Any
) -> None:
    ticks = Ticks()
    cache = MemoryCache(clock=ticks)
    today = date(2026, 9, 20)
    first = make(today - 29 * DAY, today)
    result, cost = await refresh(amplitude_emulator, cache, today, first)
    assert result == await fresh(amplitude_emulator, first)
    assert cost == first.cost
    per_day = first.cost // 30
    # An hour later: only today and yesterday (not settled) are asked again.
    ticks.now += 3600
    result, cost = await refresh(amplitude_emulator, cache, today, first)
    assert result == await fresh(amplitude_emulator, first)
    assert cost == 2 * per_day
    # The next day: the new day, yesterday, and the day that settled overnight.
    ticks.now += 86_400
    today += DAY
    second = make(today - 29 * DAY, today)
    result, cost = await refresh(amplitude_emulator, cache, today, second)
    assert result == await fresh(amplitude_emulator, second)
    assert cost == 3 * per_day


@pytest.mark.amplitude_emulator(**DASHBOARD_DATASET)
async def test_a_sliding_window_buys_three_days_a_day_across_weeks(
    amplitude_emulator: Emulator,
) -> None:
    ticks = Ticks()
    cache = MemoryCache(clock=ticks)
    today = date(2026, 9, 10)
    await refresh(
        amplitude_emulator, cache, today, ActiveUsers(today - 29 * DAY, today, metric="new")
    )
    for _ in range(9):  # the window's start crosses a Sunday on the way
        today += DAY
        ticks.now += 86_400
        query = ActiveUsers(today - 29 * DAY, today, metric="new")
        result, cost = await refresh(amplitude_emulator, cache, today, query)
        assert cost == 3 * (query.cost // 30)
    assert result == await fresh(amplitude_emulator, query)


@pytest.mark.amplitude_emulator(**DASHBOARD_DATASET)
async def test_bypass_cache_refreshes_every_chunk(amplitude_emulator: Emulator) -> None:
    cache = MemoryCache()
    today = date(2026, 9, 30)
    query = EventSegmentation(["View Item"], date(2026, 9, 1), date(2026, 9, 14), metric="totals")
    await refresh(amplitude_emulator, cache, today, query)
    before = accepted_cost(amplitude_emulator)
    async with client_for(
        amplitude_emulator, cache=cache, cache_policy=CachePolicy(today=Today(today))
    ) as client:
        await client.run(query, split=True, bypass_cache=True)
        assert client.statistics().savings.cache_hits == 0
    assert accepted_cost(amplitude_emulator) - before == query.cost
    _, cost = await refresh(amplitude_emulator, cache, today, query)
    assert cost == 0


# -- properties and the store suite ------------------------------------------------------------

_DAYS = st.dates(min_value=date(2025, 1, 1), max_value=date(2027, 12, 31))


@settings(max_examples=200, deadline=None)
@given(
    start=_DAYS,
    length=st.integers(1, 120),
    shift=st.integers(0, 60),
    interval=st.sampled_from([DAILY, WEEKLY, MONTHLY]),
)
def test_incremental_chunks_cover_the_range_and_agree_between_ranges(
    start: date, length: int, shift: int, interval: int
) -> None:
    end = start + timedelta(days=length - 1)
    query = EventSegmentation(["A"], start, end, metric="totals", interval=interval)
    chunks = plan_incremental(query, 10_000)
    spans = [(c.start, c.end) for c in chunks]  # type: ignore[attr-defined]
    assert spans[0][0] == start
    assert spans[-1][1] == end
    for (_, before_end), (after_start, _) in itertools.pairwise(spans):
        assert after_start == before_end + timedelta(days=1)
        assert period_start(after_start, interval) == after_start
    assert sum(c.cost for c in chunks) == query.cost
    # A range moved by ``shift`` days cuts its shared whole buckets the same way.
    moved = query.with_range(start + timedelta(days=shift), end + timedelta(days=shift))
    other = set(plan_incremental(moved, 10_000))
    for chunk in chunks[1:-1]:
        inside = moved.start <= chunk.start and chunk.end <= moved.end  # type: ignore[attr-defined]
        if inside and period_start(chunk.start, interval) == chunk.start:  # type: ignore[attr-defined]
            assert chunk in other


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    if request.param == "memory":
        return MemoryCache()
    server: RedisServer = request.getfixturevalue("redis_server")
    return RedisCache(server.url, prefix=f"test:{tmp_path.name}:")


async def test_every_store_keeps_overwrites_and_misses(store: Any) -> None:
    try:
        assert await store.get("a") is None
        await store.set("a", b"one", 60)
        await store.set("b", b"two", 60)
        await store.set("a", b"three", 60)
        assert await store.get("a") == b"three"
        assert await store.get_many(["b", "missing", "a"]) == [b"two", None, b"three"]
        assert await store.get_many([]) == []
        await store.delete("a")
        await store.delete("missing")
        assert await store.get_many(["a", "b"]) == [None, b"two"]
    finally:
        await store.aclose()


async def test_redis_cache_can_share_a_client_it_does_not_close(redis_server: RedisServer) -> None:
    from redis.asyncio import Redis

    shared = Redis.from_url(redis_server.url)
    try:
        cache = RedisCache(client=shared, prefix="budget-neighbour:")
        await cache.set("k", b"v", 60)
        await cache.aclose()
        assert await shared.get("budget-neighbour:k") == b"v"  # still open, same server
    finally:
        await shared.aclose()
    with pytest.raises(ConfigurationError, match="url"):
        RedisCache()
