"""The emulator over HTTP: auth, errors, every endpoint, strict limits, faults, request log."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from amplitude_async.client import AmplitudeClient
from amplitude_async.converter import structure_result
from amplitude_async.errors import (
    AuthenticationError,
    BadRequest,
    InvalidQuery,
    NotFound,
    RateLimited,
    ServerError,
    TransportError,
)
from amplitude_async.limits import DEFAULT_LIMITS, Limits, Pool
from amplitude_async.queries import (
    ENDPOINTS,
    HOURLY,
    ActiveUsers,
    AverageSessionLength,
    ChartCSV,
    ChartQuery,
    EventSegmentation,
    EventsList,
    Funnel,
    Query,
    RealtimeActiveUsers,
    Retention,
    RevenueLTV,
    SessionLengthDistribution,
    SessionsPerUser,
    UserActivity,
    UserComposition,
    UserSearch,
    parse_query,
)
from amplitude_async.sansio import basic_auth, build_request, decipher
from amplitude_async.testing.dataset import SyntheticDataset
from amplitude_async.testing.emulator import (
    DEFAULT_API_KEY,
    DEFAULT_SECRET_KEY,
    Emulator,
    Faults,
    RequestRecord,
    serve,
)
from amplitude_async.testing.engine import EngineError, answer
from amplitude_async.values import Event, GroupBy, InCohort, PerformedEvent, Segment, Where

pytest_plugins = ["pytester"]

START = date(2026, 9, 1)
DAYS = 14
END = START + timedelta(days=DAYS - 1)
DS = SyntheticDataset(seed=3, users=150, days=DAYS, start=START)
AUTH = basic_auth(DEFAULT_API_KEY, DEFAULT_SECRET_KEY)
FAST = Limits().scaled(0.001)  # 1000 cost per 0.3 s


class ManualClock:
    """A clock that moves only when told: window arithmetic without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


@pytest.fixture
def amplitude_emulator_options() -> dict[str, Any]:
    # Amplitude's own limits: these tests read the emulator's answers, not its clock.
    return {"dataset": DS, "limits": DEFAULT_LIMITS}


@pytest.fixture
def emu(amplitude_emulator: Emulator) -> Emulator:
    """The emulator of the project's pytest plugin, with this module's options."""
    return amplitude_emulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def get(
    session: aiohttp.ClientSession,
    url: str,
    query: Query[Any] | None = None,
    *,
    path: str = "",
    authorization: str | None = AUTH,
) -> tuple[int, Any]:
    """GET ``query`` (or ``path``) with a raw client; return the status and decoded body."""
    target = build_request(url, query, authorization="").url if query is not None else url + path
    headers = {"Authorization": authorization} if authorization else {}
    async with session.get(target, headers=headers) as response:
        return response.status, json.loads(await response.read())


def envelope(status: int, body: Any) -> dict[str, Any]:
    """Check Amplitude's error envelope and return its ``error`` object."""
    error = body["error"]
    assert set(error) == {"http_code", "type", "message", "metadata"}
    assert error["http_code"] == status
    assert isinstance(error["type"], str)
    assert error["type"]
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["metadata"]["details"], str)
    assert error["metadata"]["details"]
    return error  # type: ignore[no-any-return]


def client_for(emulator: Emulator, **kwargs: Any) -> AmplitudeClient:
    kwargs.setdefault("limits", emulator.limits)
    return AmplitudeClient(emulator.api_key, emulator.secret_key, base_url=emulator.url, **kwargs)


# -- authentication, bad requests, unknown paths ---------------------------------------------


async def test_missing_credentials_401(emu: Emulator, session: aiohttp.ClientSession) -> None:
    status, body = await get(session, emu.url, EventsList(), authorization=None)
    assert status == 401
    assert "Basic" in envelope(401, body)["metadata"]["details"]
    assert emu.enforcer.accepted == 0  # refused before the limits: nothing stamped


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        (basic_auth("someone-else", DEFAULT_SECRET_KEY), "Invalid API key"),
        (basic_auth(DEFAULT_API_KEY, "wrong"), "Invalid secret key"),
        ("Bearer abc", "scheme"),
        ("Basic not-base64!", "Malformed"),
    ],
)
async def test_wrong_credentials_401(
    emu: Emulator, session: aiohttp.ClientSession, authorization: str, detail: str
) -> None:
    status, body = await get(session, emu.url, EventsList(), authorization=authorization)
    assert status == 401
    assert detail in envelope(401, body)["metadata"]["details"]


async def test_client_with_wrong_key_gets_authentication_error(emu: Emulator) -> None:
    async with AmplitudeClient("nope", "nope", base_url=emu.url, limits=FAST) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.events_list()
    assert caught.value.status == 401
    assert len(emu.requests) == 1  # never retried


async def test_forbidden_endpoint_403(session: aiohttp.ClientSession) -> None:
    async with Emulator(DS, forbidden={"user_activity"}) as emulator:
        status, body = await get(session, emulator.url, UserActivity(DS.amplitude_ids[0]))
        assert status == 403
        assert "user_activity" in envelope(403, body)["metadata"]["details"]
        status, _ = await get(session, emulator.url, UserSearch("user"))
        assert status == 200


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/api/2/users?start=2026091&end=20260910", "start"),
        ("/api/2/users?start=20260901", "end"),
        ("/api/2/events/segmentation?start=20260901&end=20260910", "e"),
        ("/api/2/events/segmentation?e=%7Bnope&start=20260901&end=20260910", "e"),
        ("/api/2/users?start=20260901&end=20260910&i=2", "i"),
        ("/api/2/users?start=20260901&end=20260910&colour=blue", "colour"),
        ("/api/2/retention?se=%7B%22event_type%22%3A%22A%22%7D&start=20260901&end=20260910", "re"),
    ],
)
async def test_bad_parameters_400_name_the_parameter(
    emu: Emulator, session: aiohttp.ClientSession, path: str, param: str
) -> None:
    status, body = await get(session, emu.url, path=path)
    assert status == 400
    assert envelope(400, body)["metadata"]["details"].startswith(f"{param}: ")
    assert emu.enforcer.accepted == 0  # an invalid query has no cost to charge


async def test_bad_definition_from_the_engine_400(emu: Emulator) -> None:
    query = ActiveUsers(START, END, segments=[Segment(Where("favourite", "is", ["x"]))])
    async with client_for(emu) as client:
        with pytest.raises(BadRequest) as caught:
            await client.run(query)
    assert caught.value.details is not None
    assert "favourite" in caught.value.details
    # The definition was only found wrong after the request was admitted: it counted.
    assert emu.requests[0].cost == query.cost
    assert emu.requests[0].status == 400


async def test_unknown_path_404_without_credentials(
    emu: Emulator, session: aiohttp.ClientSession
) -> None:
    status, body = await get(session, emu.url, path="/api/2/nothing", authorization=None)
    assert status == 404
    assert "/api/2/nothing" in envelope(404, body)["metadata"]["details"]


async def test_unknown_chart_404(emu: Emulator) -> None:
    async with client_for(emu) as client:
        with pytest.raises(NotFound):
            await client.run(ChartQuery("no-such-chart"))


async def test_only_get(emu: Emulator, session: aiohttp.ClientSession) -> None:
    async with session.post(emu.url + "/api/2/events/list", headers={"Authorization": AUTH}) as r:
        assert r.status == 405
        assert r.headers["Allow"] == "GET"
        envelope(405, json.loads(await r.read()))


# -- every endpoint through the client ------------------------------------------------------

EVERY_ENDPOINT: list[Query[Any]] = [
    ActiveUsers(START, END, metric="new", interval=7, group_by="country"),
    SessionLengthDistribution(START, END),
    AverageSessionLength(START, END),
    SessionsPerUser(START, END),
    UserComposition(START, END, "platform"),
    EventsList(),
    EventSegmentation(
        [Event("View Item", group_by=[GroupBy("category", "event")])],
        START,
        END,
        segments=[Segment(InCohort("mobile")), Segment(PerformedEvent("Search", ">=", 2))],
        group_by=["platform"],
    ),
    EventSegmentation([Event("_active")], END, END, metric="totals", interval=HOURLY),
    Funnel(["Sign Up", "Complete Profile", "Purchase"], START, END, group_by="platform"),
    Retention(Event("Sign Up"), Event("_active"), START, END, mode="rolling"),
    UserActivity(DS.amplitude_ids[5], limit=20),
    UserSearch("user0000"),
    RealtimeActiveUsers(),
    RevenueLTV(START, END, metric="arppu"),
    ChartCSV("purchases-by-country"),
    ChartQuery("daily-signups"),
]


def test_every_endpoint_is_covered() -> None:
    assert {type(q) for q in EVERY_ENDPOINT} == set(ENDPOINTS.values())


@pytest.mark.parametrize("query", EVERY_ENDPOINT, ids=lambda q: type(q).__name__)
async def test_each_endpoint_answers_through_the_client(emu: Emulator, query: Query[Any]) -> None:
    async with client_for(emu) as client:
        result = await client.run(query)
    assert isinstance(result, query.result_type)
    # What crossed the wire decodes to exactly what the engine computed.
    direct = structure_result(
        json.loads(json.dumps(answer(query, DS, emu.now))), query.result_type, path=query.path
    )
    assert result == direct
    (record,) = emu.requests
    assert (record.path, record.params) == (query.path, query.params())
    assert (record.pool, record.cost, record.status) == (query.pool, query.cost, 200)


async def test_now_defaults_to_noon_of_the_last_day(emu: Emulator) -> None:
    assert emu.now.date() == DS.end
    assert (emu.now.hour, emu.now.minute) == (12, 0)
    assert emu.now.utcoffset() is not None


# -- the limits, against a raw client ----------------------------------------------------------


def rejection(status: int, body: Any) -> RateLimited:
    """Decipher a 429 the way the client does."""
    with pytest.raises(RateLimited) as caught:
        decipher(status, {}, json.dumps(body).encode())
    return caught.value


async def test_concurrent_limit_429(session: aiohttp.ClientSession) -> None:
    limits = Limits(concurrent=3).scaled(0.001)
    query = ActiveUsers(START, START + timedelta(days=4))  # cost 5
    async with Emulator(DS, limits=limits, processing_time=0.2) as emulator:
        answers = await asyncio.gather(*(get(session, emulator.url, query) for _ in range(5)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200, 200, 200, 429, 429]
    for status, body in answers:
        if status == 429:
            error = envelope(429, body)
            assert error["metadata"]["details"] == "Exceeded concurrent limit with query of cost 5"
            refused = rejection(status, body)
            assert (refused.limit, refused.query_cost) == ("concurrent", 5)
    assert emulator.statistics().rate_limited_concurrent == 2
    assert {r.limit for r in emulator.requests if r.status == 429} == {"concurrent"}


async def test_rate_limit_429_and_the_window_slides(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    limits = Limits().scaled(0.01)  # 1000 per 3 s
    query = ActiveUsers(START, START + timedelta(days=299))  # cost 300
    assert query.cost == 300
    async with Emulator(DS, limits=limits, clock=clock) as emulator:
        for _ in range(3):
            assert (await get(session, emulator.url, query))[0] == 200
            clock.now += 1.0
        # 900 arrived within the last 3 s (at 1000, 1001, 1002; now 1003 frees the first).
        status, body = await get(session, emulator.url, query)
        assert status == 200
        clock.now += 0.5
        status, body = await get(session, emulator.url, query)
        assert status == 429
        assert envelope(429, body)["metadata"]["details"] == (
            "Exceeded rate limit with query of cost 300"
        )
        assert rejection(status, body).limit == "rate"
        clock.now += 0.5  # 1004.0: the arrival at 1001 has left the window
        assert (await get(session, emulator.url, query))[0] == 200
    assert [r.status for r in emulator.requests] == [200, 200, 200, 200, 429, 200]
    assert [r.at - 1000 for r in emulator.requests] == [0, 1, 2, 3, 3.5, 4]


async def test_hourly_and_user_pool_limits(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    limits = Limits(cost_per_hour=20, user_queries_per_hour=2)
    async with Emulator(DS, limits=limits, clock=clock) as emulator:
        cheap = ActiveUsers(START, START + timedelta(days=9))  # cost 10
        assert [(await get(session, emulator.url, cheap))[0] for _ in range(3)] == [200, 200, 429]
        search = UserSearch("user")
        statuses = [(await get(session, emulator.url, search))[0] for _ in range(3)]
        assert statuses == [200, 200, 429]
        clock.now += limits.hour
        assert (await get(session, emulator.url, cheap))[0] == 200
    assert [r.limit for r in emulator.requests if r.status == 429] == ["rate", "rate"]


async def test_in_flight_reading(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    query = ActiveUsers(START, START + timedelta(days=299))  # cost 300
    # Sequential requests never have more than one in flight: the old reading admits them all,
    # where the sliding window refuses the fourth.
    outcomes = {}
    for reading in ("sliding", "in-flight"):
        async with Emulator(DS, clock=clock, reading=reading) as emulator:
            outcomes[reading] = [(await get(session, emulator.url, query))[0] for _ in range(5)]
    assert outcomes == {"sliding": [200, 200, 200, 429, 429], "in-flight": [200] * 5}
    # At the same time, in-flight cost is capped instead, reported as a concurrency refusal.
    async with Emulator(DS, reading="in_flight", processing_time=0.2) as emulator:
        answers = await asyncio.gather(*(get(session, emulator.url, query) for _ in range(4)))
    refused = [body for status, body in answers if status == 429]
    assert len(refused) == 1
    assert envelope(429, refused[0])["metadata"]["details"] == (
        "Exceeded concurrent limit with query of cost 300"
    )


# -- fault injection ---------------------------------------------------------------------------


async def test_error_rate(session: aiohttp.ClientSession) -> None:
    faults = Faults(error_rate=0.3, error_statuses=(500, 503), seed=7)
    async with Emulator(DS, limits=FAST, faults=faults) as emulator:
        answers = [(await get(session, emulator.url, EventsList())) for _ in range(200)]
    failed = [(status, body) for status, body in answers if status != 200]
    assert 40 <= len(failed) <= 80
    assert {status for status, _ in failed} == {500, 503}
    for status, body in failed:
        envelope(status, body)
    assert emulator.statistics().faults == len(failed)


async def test_server_error_reaches_the_client() -> None:
    async with (
        Emulator(DS, limits=FAST, faults=Faults(error_rate=1.0)) as emulator,
        client_for(emulator, max_retries=0) as client,
    ):
        with pytest.raises(ServerError):
            await client.events_list()


async def test_dropped_connection_is_a_transport_error() -> None:
    async with (
        Emulator(DS, limits=FAST, faults=Faults(drop_rate=1.0)) as emulator,
        client_for(emulator, max_retries=0) as client,
    ):
        with pytest.raises(TransportError) as caught:
            await client.events_list()
    assert not caught.value.timeout
    assert emulator.requests
    assert all(r.status is None and r.fault == "drop" for r in emulator.requests)
    assert emulator.enforcer.in_flight(Pool.STANDARD) == 0


async def test_hang_until_the_client_times_out() -> None:
    async with (
        Emulator(DS, limits=FAST, faults=Faults(hang_rate=1.0)) as emulator,
        client_for(emulator, max_retries=0, timeout=0.3) as client,
    ):
        started = time.monotonic()
        with pytest.raises(TransportError) as caught:
            await client.events_list()
        assert caught.value.timeout
        assert time.monotonic() - started >= 0.3
        # The server notices the client left and stops counting the request as in flight.
        for _ in range(50):
            if emulator.requests:
                break
            await asyncio.sleep(0.02)
        (record,) = emulator.requests
        assert (record.status, record.fault) == (None, "hang")
        assert emulator.enforcer.in_flight(Pool.STANDARD) == 0


async def test_slow_answers(session: aiohttp.ClientSession) -> None:
    faults = Faults(slow_rate=1.0, slow_seconds=0.2)
    async with Emulator(DS, limits=FAST, faults=faults) as emulator:
        started = time.monotonic()
        status, _ = await get(session, emulator.url, EventsList())
        assert status == 200
        assert time.monotonic() - started >= 0.2
    assert emulator.requests[0].fault == "slow"


def test_fault_rates_are_checked() -> None:
    with pytest.raises(ValueError, match="sum"):
        Faults(error_rate=0.6, drop_rate=0.6)
    with pytest.raises(ValueError, match="within"):
        Faults(hang_rate=1.5)
    with pytest.raises(ValueError, match="5xx"):
        Faults(error_statuses=(429,))


@settings(max_examples=50, deadline=None)
@given(
    rates=st.lists(st.floats(0, 0.25), min_size=4, max_size=4),
    seed=st.integers(0, 2**32),
)
def test_fault_draws_follow_the_rates(rates: list[float], seed: int) -> None:
    import random

    faults = Faults(
        drop_rate=rates[0], hang_rate=rates[1], error_rate=rates[2], slow_rate=rates[3], seed=seed
    )
    rng = random.Random(seed)
    n = 4000
    counts = dict.fromkeys(("drop", "hang", "error", "slow", None), 0)
    for _ in range(n):
        counts[faults.draw(rng)] += 1
    for kind, rate in zip(("drop", "hang", "error", "slow"), rates, strict=True):
        # Five standard deviations of a binomial: never flaky, still catches a wrong mapping.
        assert abs(counts[kind] / n - rate) <= 5 * (rate * (1 - rate) / n) ** 0.5 + 1e-9


# -- the request log -----------------------------------------------------------------------------


async def test_request_log_and_statistics(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    big = ActiveUsers(START, START + timedelta(days=599))  # cost 600
    async with Emulator(DS, clock=clock) as emulator:
        await get(session, emulator.url, big)
        clock.now += 1
        await get(session, emulator.url, big)  # 1200 > 1000 within the window
        await get(session, emulator.url, path="/api/2/users?start=x&end=20260901")
        await get(session, emulator.url, UserSearch("user00001"))
        await get(session, emulator.url, EventsList(), authorization=None)
    records = emulator.requests
    assert all(isinstance(r, RequestRecord) for r in records)
    assert [(r.at, r.path, r.status, r.limit) for r in records] == [
        (1000.0, "/api/2/users", 200, None),
        (1001.0, "/api/2/users", 429, "rate"),
        (1001.0, "/api/2/users", 400, None),
        (1001.0, "/api/2/usersearch", 200, None),
        (1001.0, "/api/2/events/list", 401, None),
    ]
    assert records[0].params == big.params()
    assert (records[0].pool, records[0].cost) == (Pool.STANDARD, 600)
    assert (records[3].pool, records[3].cost) == (Pool.USER, UserSearch("x").cost)
    assert (records[2].pool, records[2].cost) == (None, None)
    assert [r.accepted for r in records] == [True, False, False, True, False]
    with pytest.raises(AttributeError):
        records[0].status = 500  # type: ignore[misc]
    stats = emulator.statistics()
    assert stats.requests == 5
    assert stats.answered == 2
    assert (stats.rate_limited_concurrent, stats.rate_limited_rate, stats.rate_limited) == (0, 1, 1)
    assert stats.client_errors == 2
    assert stats.cost_served == stats.cost_accepted == stats.peak_window_cost == 600


async def test_keep_log_bounds_the_log(session: aiohttp.ClientSession) -> None:
    async with Emulator(DS, limits=FAST, keep_log=3) as emulator:
        for k in range(10):
            await get(session, emulator.url, UserSearch(f"user{k}"))
    assert 3 <= len(emulator.requests) <= 6
    assert emulator.requests[-1].params == (("user", "user9"),)


async def test_serve_prints_url_and_credentials() -> None:
    out = io.StringIO()
    task = asyncio.create_task(serve(port=0, seed=2, users=30, days=3, out=out))
    try:
        for _ in range(200):
            if "http://" in out.getvalue():
                break
            await asyncio.sleep(0.01)
        text = out.getvalue()
        url = re.search(r"http://127\.0\.0\.1:\d+", text)
        assert url
        assert f"AMPLITUDE_API_KEY={DEFAULT_API_KEY}" in text
        assert f"AMPLITUDE_SECRET_KEY={DEFAULT_SECRET_KEY}" in text
        async with AmplitudeClient(
            DEFAULT_API_KEY, DEFAULT_SECRET_KEY, base_url=url.group(0)
        ) as client:
            users = await client.active_users(START, START + timedelta(days=2))
        assert len(users.x_values) == 3
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled()


# -- end to end with the real scheduler ----------------------------------------------------------


def mixed_queries() -> list[Query[Any]]:
    queries: list[Query[Any]] = []
    for k in range(DAYS - 6):
        start, end = START + timedelta(days=k), START + timedelta(days=k + 6)
        queries += [
            ActiveUsers(start, end, group_by="country"),  # 35
            EventSegmentation(["Search", "View Item"], start, end),  # 14
            Funnel(["Sign Up", "Purchase"], start, end),  # 28
            Retention("Sign Up", "_active", start, end),  # 56
            SessionsPerUser(start, end),  # 28
            UserSearch(f"user0000{k}"),
            RealtimeActiveUsers(),
        ]
    return queries


@pytest.mark.parametrize("reading", ["sliding", "in-flight"])
async def test_fan_out_through_the_scheduler_draws_no_429(reading: str) -> None:
    limits = Limits(concurrent=4, cost_per_window=300).scaled(0.001)  # 300 per 0.3 s
    queries = mixed_queries()
    emulator = Emulator(
        DS,
        limits=limits,
        reading=reading,  # type: ignore[arg-type]
        arrival_delay=(0.0, 0.015),
        processing_time=(0.0, 0.005),
        seed=11,
    )
    # Every query must reach the emulator, repeated realtime queries included: no coalescing.
    async with emulator, client_for(emulator, coalesce=False) as client:
        seen = [query async for query, _ in client.as_completed(queries)]
        client_stats = client.statistics()
    assert sorted(map(repr, seen)) == sorted(map(repr, queries))
    stats = emulator.statistics()
    assert stats.rate_limited == 0
    assert client_stats.rate_limited == client_stats.retries == 0
    assert stats.answered == len(queries)
    assert stats.cost_served == sum(q.cost for q in queries if q.pool is Pool.STANDARD)
    assert stats.peak_window_cost <= limits.cost_per_window
    assert stats.peak_in_flight <= limits.concurrent
    # The budget was actually the bottleneck: a window was filled close to the brim.
    assert stats.peak_window_cost >= limits.cost_per_window - 60


# -- any request gets a well-formed answer -------------------------------------------------------

_PATHS = [*sorted({cls._path for cls in ENDPOINTS.values() if cls._path}), "/api/3/chart/x/query"]
_NAMES = st.sampled_from(["start", "end", "e", "s", "g", "m", "i", "user", "p", "se", "re", "x"])
_VALUES = st.one_of(
    st.sampled_from(["20260901", "20260905", "1", "-300000", "{}", '{"event_type":"Search"}']),
    st.text(max_size=12),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path=st.sampled_from(_PATHS), params=st.lists(st.tuples(_NAMES, _VALUES), max_size=5))
def test_any_request_gets_an_answer_or_an_envelope(
    path: str, params: list[tuple[str, str]]
) -> None:
    from amplitude_async.sansio import encode_params

    async def ask() -> tuple[int, Any, Any]:
        async with Emulator(DS) as emulator, aiohttp.ClientSession() as s:
            url = emulator.url + path + "?" + encode_params(params)
            async with s.get(URL(url, encoded=True), headers={"Authorization": AUTH}) as r:
                return r.status, json.loads(await r.read()), emulator.now

    status, body, now = asyncio.run(ask())
    # The status the emulator's documented steps give: 404 for an unknown path, 400 for a
    # parameter that does not parse, else the engine's answer (200, or its own error status).
    try:
        query = parse_query(path, params)
    except InvalidQuery as exc:
        expected = 404 if exc.field == "path" else 400
    else:
        try:
            answer(query, DS, now)
        except EngineError as exc:
            expected = exc.status
        else:
            expected = 200
    assert status == expected
    if status != 200:
        envelope(status, body)


# -- the pytest plugin ----------------------------------------------------------------------------


def test_pytest_plugin_fixtures_and_marker(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(
        """
        import pytest
        from amplitude_async.limits import Limits
        from amplitude_async.testing.emulator import Faults

        async def test_defaults(amplitude_emulator, amplitude_client):
            result = await amplitude_client.events_list()
            assert result.events
            assert amplitude_emulator.dataset.user_count == 200
            assert amplitude_emulator.limits == Limits().scaled(0.001)
            assert amplitude_client.limits == amplitude_emulator.limits

        @pytest.mark.amplitude_emulator(users=50, days=7, limits=Limits().scaled(0.01))
        async def test_marker(amplitude_emulator, amplitude_client):
            assert amplitude_emulator.dataset.user_count == 50
            assert amplitude_client.limits.window == 3.0
            users = await amplitude_client.active_users(
                amplitude_emulator.dataset.start, amplitude_emulator.dataset.end
            )
            assert len(users.x_values) == 7

        @pytest.mark.amplitude_emulator(faults=Faults(error_rate=1.0))
        async def test_faults(amplitude_emulator):
            assert amplitude_emulator.faults.error_rate == 1.0

        @pytest.mark.amplitude_emulator(colour="blue")
        async def test_unknown_option(amplitude_emulator):
            pass
        """
    )
    result = pytester.runpytest(
        "-p",
        "no:amplitude_async",
        "-p",
        "amplitude_async.testing.pytest_plugin",
        "--strict-markers",
    )
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*unknown amplitude_emulator option*colour*"])
