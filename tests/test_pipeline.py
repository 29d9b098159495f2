"""One call down one pipeline: batches that always finish, priority that survives coalescing,
results that know their query, statistics people can read."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import pytest
from aiohttp import web
from attrs import define, field
from hypothesis import given, settings
from hypothesis import strategies as st
from localserver import serve, until
from redisserver import RedisServer

from amplitude_async import (
    AmplitudeClient,
    CacheUnavailable,
    ConfigurationError,
    EventSegmentation,
    Limits,
    Pool,
    RevenueLTV,
)
from amplitude_async.batch import Batch
from amplitude_async.cache import CachePolicy, MemoryCache, RedisCache
from amplitude_async.coalesce import Coalescer
from amplitude_async.converter import structure_result
from amplitude_async.results import RevenueLTVResult
from amplitude_async.values import Segment, Where

FAST = Limits().scaled(0.001)
START, END = date(2026, 9, 1), date(2026, 9, 7)
SERIES_BODY = (
    b'{"data": {"series": [[1, 2, 3, 4, 5, 6, 7]], "seriesLabels": [0], '
    b'"seriesCollapsed": [[{"setId": "", "value": 28}]], "xValues": ["2026-09-01", '
    b'"2026-09-02", "2026-09-03", "2026-09-04", "2026-09-05", "2026-09-06", "2026-09-07"]}}'
)
QUERY = EventSegmentation(["Sign Up"], START, END, metric="totals")


@define
class OrderedServer:
    """A local server that records the order requests arrive in and holds each one until
    ``gate`` opens."""

    url: str = ""
    gate: asyncio.Event = field(factory=asyncio.Event)
    arrived: list[str] = field(factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.arrived.append(request.query.get("e", ""))
        await self.gate.wait()
        return web.Response(body=SERIES_BODY, content_type="application/json")


@pytest.fixture
async def ordered() -> AsyncIterator[OrderedServer]:
    server = OrderedServer()
    async with serve(server.handle) as server.url:
        try:
            yield server
        finally:
            server.gate.set()


def event(name: str) -> EventSegmentation:
    return EventSegmentation([name], START, END, metric="totals")


# -- batches that always finish -------------------------------------------------------------


@pytest.mark.parametrize("copies", [2048, 2049, 4097])
async def test_gather_of_identical_queries_past_the_look_ahead_returns(
    ordered: OrderedServer, copies: int
) -> None:
    # 2,049 identical queries used to hang: every outcome of one flight arrived in one loop
    # turn, and the batch refilled only from task callbacks that had not run yet.
    ordered.gate.set()
    async with AmplitudeClient("key", "secret", base_url=ordered.url, limits=FAST) as client:
        results = await asyncio.wait_for(client.gather([QUERY] * copies), 120)
    assert len(results) == copies
    assert all(r.series == ((1, 2, 3, 4, 5, 6, 7),) for r in results)
    # Each flight is one request; the batch refills as outcomes are read.
    assert 1 <= len(ordered.arrived) <= copies // 2048 + 1


async def test_as_completed_of_ten_thousand_identical_queries_finishes(
    ordered: OrderedServer,
) -> None:
    ordered.gate.set()
    seen = 0
    async with AmplitudeClient("key", "secret", base_url=ordered.url, limits=FAST) as client:

        async def drain() -> None:
            nonlocal seen
            async for query, _ in client.as_completed([QUERY] * 10_000):
                assert query is QUERY
                seen += 1

        await asyncio.wait_for(drain(), 120)
    assert seen == 10_000


@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(st.integers(min_value=0, max_value=4), min_size=0, max_size=300),
    lookahead=st.integers(min_value=1, max_value=64),
    gated=st.booleans(),
)
def test_a_batch_reports_every_item_whatever_the_duplicates(
    keys: list[int], lookahead: int, gated: bool
) -> None:
    async def scenario() -> None:
        coalescer = Coalescer()
        gate = asyncio.Event()
        if not gated:
            gate.set()
        runs = 0

        async def answer(key: int) -> int:
            nonlocal runs
            runs += 1
            await gate.wait()
            return key * 10

        async def work(key: int) -> int:
            return await coalescer.run(key, lambda: answer(key))

        batch = Batch(keys, work, lookahead=lookahead)
        seen: dict[int, int] = {}

        async def drain() -> None:
            async with batch:
                async for outcome in batch:
                    assert outcome.index not in seen
                    seen[outcome.index] = outcome.unwrap()

        drainer = asyncio.create_task(drain())
        for _ in range(5):
            await asyncio.sleep(0)
        gate.set()
        await asyncio.wait_for(drainer, 60)
        assert seen == {i: k * 10 for i, k in enumerate(keys)}
        assert runs <= len(keys)

    asyncio.run(scenario())


async def test_a_batch_of_futures_reports_refusals_and_leaves_no_work_running() -> None:
    coalescer = Coalescer()
    started: list[int] = []
    stopped: list[int] = []

    async def answer(key: int) -> int:
        started.append(key)
        try:
            await asyncio.Event().wait()
        finally:
            stopped.append(key)
        return key

    def start(key: int) -> asyncio.Future[int]:
        if key < 0:
            raise ValueError(f"refused {key}")
        return coalescer.join(key, lambda: answer(key))

    batch = Batch([-1, 1, 2, 2, 3], start, lookahead=3)
    async with batch:
        async for outcome in batch:
            # The refusal is an outcome like any other; the rest are still under way.
            assert outcome.index == 0
            with pytest.raises(ValueError, match="refused -1"):
                outcome.unwrap()
            await until(lambda: len(started) == 2, "the work for 1 and 2 runs")
            break
    # Leaving cancelled every seat and waited until the work behind them stopped.
    assert sorted(stopped) == [1, 2]
    assert len(coalescer) == 0


# -- priority that survives coalescing --------------------------------------------------------


@pytest.mark.parametrize("shared", [False, True], ids=["in-memory", "redis"])
async def test_a_priority_caller_joining_a_queued_flight_overtakes_the_backlog(
    ordered: OrderedServer, shared: bool, request: pytest.FixtureRequest
) -> None:
    limits = Limits(concurrent=1).scaled(0.001)
    options: dict[str, Any] = {"limits": limits}
    if shared:
        redis: RedisServer = request.getfixturevalue("redis_server")
        options["budget_url"] = redis.url
    async with AmplitudeClient("key", "secret", base_url=ordered.url, **options) as client:
        first = asyncio.create_task(client.run(event("first")))
        await until(lambda: ordered.arrived, "the first request holds the only slot")
        backlog = [asyncio.create_task(client.run(event(f"backlog {i}"))) for i in range(4)]
        queued = asyncio.create_task(client.run(event("dashboard")))
        # Every one of them is registered in the store before the interactive copy joins.
        await until(lambda: client.statistics()[Pool.STANDARD].queued_everywhere == 5, "queued")
        interactive = asyncio.create_task(client.run(event("dashboard"), priority=10))
        await until(
            lambda: client.statistics()[Pool.STANDARD].requeued == 1, "the flight is re-queued"
        )
        ordered.gate.set()
        await asyncio.gather(first, *backlog, queued, interactive)
        stats = client.statistics()
    order = list(ordered.arrived)
    assert "first" in order[0]
    assert "dashboard" in order[1], order
    assert len(order) == 6  # the two dashboard callers shared one request
    assert stats.savings.coalesced == 1


async def test_a_lower_priority_joiner_changes_nothing(ordered: OrderedServer) -> None:
    async with AmplitudeClient("key", "secret", base_url=ordered.url, limits=FAST) as client:
        leader = asyncio.create_task(client.run(QUERY, priority=5))
        await until(lambda: ordered.arrived, "the request is sent")
        joiner = asyncio.create_task(client.run(QUERY, priority=1))
        await until(lambda: client.statistics().savings.coalesced == 1, "joined")
        ordered.gate.set()
        await asyncio.gather(leader, joiner)
        assert client.statistics()[Pool.STANDARD].requeued == 0


@pytest.mark.parametrize("priority", [10**9 + 1, -(10**9) - 1, 1.5, True, "high"])
async def test_a_bad_priority_is_refused_before_anything_is_sent(
    ordered: OrderedServer, priority: Any
) -> None:
    async with AmplitudeClient("key", "secret", base_url=ordered.url, limits=FAST) as client:
        with pytest.raises(ConfigurationError) as info:
            await client.run(QUERY, priority=priority)
        assert info.value.field == "priority"
        with pytest.raises(ConfigurationError):
            await client.gather([QUERY], priority=priority)
    assert ordered.arrived == []


# -- results that know their query ------------------------------------------------------------


async def test_a_result_from_the_client_names_its_series_without_the_query(
    ordered: OrderedServer,
) -> None:
    ordered.gate.set()
    async with AmplitudeClient("key", "secret", base_url=ordered.url, limits=FAST) as client:
        result = await client.run(QUERY)
        (gathered,) = await client.gather([QUERY])
        async for _, streamed in client.as_completed([QUERY]):
            assert {row.label for row in streamed.rows()} == {"Sign Up"}
    assert result.query == QUERY
    assert {row.label for row in result.rows()} == {"Sign Up"}
    assert {row.label for row in gathered.rows()} == {"Sign Up"}
    # Decoded by hand, the same answer knows no event names: the chart's letter, as before.
    import json

    bare = structure_result(json.loads(SERIES_BODY), QUERY.result_type)
    assert bare.query is None
    assert {row.label for row in bare.rows()} == {"A"}
    assert {row.label for row in bare.rows(QUERY)} == {"Sign Up"}
    assert bare == result  # binding changes neither fields nor equality


LTV_BODY = {
    "data": {
        "seriesLabels": [0],
        "series": [{"dates": ["2026-09-01"], "values": {"2026-09-01": {"r1d": 1.5, "count": 3}}}],
    }
}


@pytest.mark.parametrize(
    ("segments", "label"),
    [((), "All Users"), ((Segment(Where("country", "is", ["Germany"])),), "country is Germany")],
)
def test_ltv_index_labels_name_the_segment(segments: tuple[Segment, ...], label: str) -> None:
    query = RevenueLTV(START, END, segments=segments)
    result = structure_result(LTV_BODY, RevenueLTVResult)
    assert {row.label for row in result.rows(query)} == {label}
    assert "0" not in {row.label for row in result.rows()}


# -- statistics people can read ---------------------------------------------------------------


async def test_statistics_show_pools_windows_processes_and_what_remains(
    ordered: OrderedServer,
) -> None:
    ordered.gate.set()
    async with AmplitudeClient("key", "secret", base_url=ordered.url, limits=FAST) as client:
        await client.run(QUERY)
        stats = client.statistics()
    text = repr(stats)
    assert "processes=1" in text
    assert "standard" in text
    assert "user" in text
    assert f"cost_per_window={QUERY.cost}/1000" in text
    assert stats.cost_remaining_in_window == 1000 - QUERY.cost
    assert stats.cost_remaining_in_hour == 108_000 - QUERY.cost
    assert stats.user_queries_remaining_in_hour == 360
    assert stats[Pool.STANDARD].remaining("cost_per_window") == 1000 - QUERY.cost
    with pytest.raises(KeyError):
        stats[Pool.USER].remaining("cost_per_window")


# -- configuration taken as given -------------------------------------------------------------


def test_a_users_retry_policy_is_taken_as_given() -> None:
    from amplitude_async import RetryPolicy

    mine = RetryPolicy(max_retries=2, window=7.0)
    assert AmplitudeClient("key", "secret", retry_policy=mine, limits=FAST).retry_policy is mine
    # Without a window, the client's limits supply it.
    unset = AmplitudeClient("key", "secret", retry_policy=RetryPolicy(max_retries=2), limits=FAST)
    assert unset.retry_policy.window == FAST.window
    assert AmplitudeClient("key", "secret", limits=FAST).retry_policy.window == FAST.window


# -- split inside the pipeline ----------------------------------------------------------------


async def test_a_split_run_sends_its_chunks_as_calls_of_the_pipeline(
    ordered: OrderedServer,
) -> None:
    # 21 days at cost 1 a day with a budget of 10 per window: three chunks. Two callers of the
    # same split query share every chunk's request (coalesced inside the pipeline), and the
    # merged result knows its query.
    limits = Limits(cost_per_window=10).scaled(0.001)
    query = EventSegmentation(["Sign Up"], START, date(2026, 9, 21), metric="totals")
    ordered.gate.set()
    async with AmplitudeClient("key", "secret", base_url=ordered.url, limits=limits) as client:
        one, two = await asyncio.gather(
            client.run(query, split=True), client.run_split(query, priority=3)
        )
        stats = client.statistics()
    assert len(ordered.arrived) == 3
    assert stats.savings.coalesced == 3
    assert one.query == query
    assert {row.label for row in one.rows()} == {"Sign Up"}
    assert one == two


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"lease": math.nan}, "lease"),
        ({"lease": -1.0}, "lease"),
        ({"lease": "30"}, "lease"),
        ({"unavailable_wait": math.inf}, "unavailable_wait"),
        ({"limits": {"concurrent": 5}}, "limits"),
        ({"pacing": "yes"}, "pacing"),
        ({"starvation_bound": math.nan}, "starvation_bound"),
        ({"starvation_bound": -1.0}, "starvation_bound"),
    ],
)
def test_scheduler_options_are_checked_once_naming_the_field(
    options: dict[str, Any], field: str
) -> None:
    from amplitude_async.scheduler import Scheduler

    with pytest.raises(ConfigurationError) as info:
        Scheduler(**options)
    assert info.value.field == field


def test_limits_beside_a_store_with_other_limits_are_refused() -> None:
    from amplitude_async.admission import InMemoryBudgetStore
    from amplitude_async.scheduler import Scheduler

    store = InMemoryBudgetStore(Limits(concurrent=3))
    with pytest.raises(ConfigurationError) as info:
        Scheduler(Limits(), store=store)
    assert info.value.field == "limits"
    with pytest.raises(ConfigurationError) as bound:
        Scheduler(store=store, starvation_bound=1.0)
    assert bound.value.field == "starvation_bound"
    # The same limits, or none, are fine: the store's govern.
    assert Scheduler(Limits(concurrent=3), store=store).limits == Limits(concurrent=3)
    assert Scheduler(store=store).limits == Limits(concurrent=3)
    assert InMemoryBudgetStore(Limits(), starvation_bound=math.inf).starvation_bound == math.inf


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"limits": "fast"}, "limits"),
        ({"coalesce": 1}, "coalesce"),
        ({"cache": {}}, "cache"),
        ({"cache_policy": 300}, "cache_policy"),
        ({"retry_policy": 4}, "retry_policy"),
    ],
)
def test_client_options_of_the_wrong_type_are_refused_naming_the_field(
    options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        AmplitudeClient("key", "secret", **options)
    assert info.value.field == field


NOT_AN_INT: Any = 1.5  # deliberate misuse, typed Any for the type checker


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: MemoryCache(max_entries=0), "max_entries"),
        (lambda: MemoryCache(max_bytes=NOT_AN_INT), "max_bytes"),
        (lambda: RedisCache("redis://127.0.0.1:1/0", timeout=math.nan), "timeout"),
        (lambda: RedisCache("redis://127.0.0.1:1/0", retry_after=-1.0), "retry_after"),
        (lambda: RedisCache("redis://127.0.0.1:1/0", max_entry_bytes=True), "max_entry_bytes"),
        (lambda: CachePolicy(recent_ttl=math.inf), "recent_ttl"),
        (lambda: CachePolicy(settled_days=NOT_AN_INT), "settled_days"),
    ],
)
def test_cache_options_are_checked_naming_the_field(build: Any, field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        build()
    assert info.value.field == field


async def test_a_hot_cache_hit_is_served_only_while_its_entry_is_unchanged(
    ordered: OrderedServer,
) -> None:
    ordered.gate.set()
    cache = MemoryCache()
    policy = CachePolicy(today=lambda: date(2026, 12, 1))
    async with AmplitudeClient(
        "key", "secret", base_url=ordered.url, limits=FAST, cache=cache, cache_policy=policy
    ) as client:
        first = await client.run(QUERY)
        again = await client.run(QUERY)  # decoded a moment ago: served from memory
        assert again == first
        assert again.query == QUERY
        assert len(ordered.arrived) == 1
        # Another entry under the key (here: damaged) is never answered from memory.
        key = client.savers.key(QUERY)
        await cache.set(key, b"not an entry", 60.0)
        with pytest.warns(CacheUnavailable):
            fresh = await client.run(QUERY)
        assert fresh == first
        assert len(ordered.arrived) == 2
        savings = client.statistics().savings
    assert (savings.cache_hits, savings.cache_misses, savings.cache_errors) == (1, 2, 1)
