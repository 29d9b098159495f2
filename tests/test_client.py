"""AmplitudeClient against a real aiohttp server on 127.0.0.1: wire format, decoding, errors."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from localserver import RecordingServer

from amplitude_async import results
from amplitude_async.client import AmplitudeClient
from amplitude_async.errors import (
    AuthenticationError,
    BadRequest,
    ConfigurationError,
    NotFound,
    QueryTooExpensive,
    RateLimited,
    ResponseValidationError,
    ServerError,
    TransportError,
)
from amplitude_async.limits import Limits
from amplitude_async.queries import (
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
)
from amplitude_async.retry import RetryPolicy
from amplitude_async.values import Event, GroupBy, PropertyFilter, Segment, Where

SAMPLES = Path(__file__).parent / "samples"
START, END = date(2026, 9, 1), date(2026, 9, 7)
FAST = Limits().scaled(0.001)
QUICK_RETRY = RetryPolicy(max_retries=2, backoff_base=0.001, backoff_cap=0.01)

# One query per endpoint and the recorded sample its answer is checked against.
CASES: list[tuple[Query[Any], str]] = [
    (ActiveUsers(START, END, metric="new", interval=7, group_by="country"), "doc_users"),
    (SessionLengthDistribution(START, END), "doc_sessions_length"),
    (AverageSessionLength(START, END), "doc_sessions_average"),
    (SessionsPerUser(START, END), "doc_sessions_peruser"),
    (UserComposition(START, END, "version"), "doc_composition"),
    (EventsList(), "doc_events_list"),
    (EventSegmentation(["Play Song"], START, END, metric="totals"), "doc_segmentation"),
    (Funnel(["Search Song or Video", "Play Song or Video"], START, END), "doc_funnels"),
    (Retention("_new", "Play Song", START, END), "doc_retention"),
    (UserActivity(12345, limit=10), "doc_useractivity"),
    (UserSearch("myusername"), "doc_usersearch"),
    (RealtimeActiveUsers(), "doc_realtime"),
    (RevenueLTV(START, END, metric="arppu"), "doc_ltv"),
    (ChartCSV("abc123"), "real_chart_csv"),
    (ChartQuery("abc123"), "real_chart_query"),
]


def sample(name: str) -> Any:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def make_client(server: RecordingServer, **kwargs: Any) -> AmplitudeClient:
    kwargs.setdefault("limits", FAST)
    kwargs.setdefault("retry_policy", QUICK_RETRY)
    return AmplitudeClient("key", "secret", base_url=server.url, **kwargs)


@pytest.mark.parametrize(("query", "name"), CASES, ids=[type(q).__name__ for q, _ in CASES])
async def test_every_endpoint_path_params_and_decoding(
    server: RecordingServer, query: Query[Any], name: str
) -> None:
    server.reply(200, sample(name))
    async with make_client(server) as client:
        result = await client.run(query)
    assert isinstance(result, query.result_type)
    (seen,) = server.requests
    assert seen.path == query.path
    assert seen.query == list(query.params())
    assert "+" not in seen.raw_query


async def test_tricky_names_travel_exactly(server: RecordingServer) -> None:
    name = "Play Song & Dance + more: Zürich/日本"
    query = EventSegmentation(
        [Event(name, filters=[PropertyFilter("gp:a b", "is", ["x+y", "p&q"])])],
        START,
        END,
        segments=[Segment(Where("gp:city name", "is", ["São Paulo"]))],
        group_by=["gp:plan type"],
    )
    server.reply(200, sample("doc_segmentation"))
    async with make_client(server) as client:
        await client.run(query)
    (seen,) = server.requests
    assert seen.query == list(query.params())
    assert json.loads(dict(seen.query)["e"])["event_type"] == name
    raw = seen.raw_query
    assert "%20" in raw
    assert "%2B" in raw
    assert "%26" in raw
    assert "%C3%BC" in raw
    assert "+" not in raw
    assert " " not in raw


async def test_basic_auth_header(server: RecordingServer) -> None:
    server.reply(200, sample("doc_events_list"))
    async with make_client(server) as client:
        await client.events_list()
    header = server.requests[0].headers["Authorization"]
    assert header.startswith("Basic ")
    assert base64.b64decode(header.removeprefix("Basic ")) == b"key:secret"


async def test_thin_endpoint_methods_build_the_query(server: RecordingServer) -> None:
    server.reply(200, sample("doc_segmentation"))
    async with make_client(server) as client:
        result = await client.event_segmentation(
            [Event("Play Song", group_by=[GroupBy("country")])], START, END
        )
    assert isinstance(result, results.EventSegmentationResult)
    expected = EventSegmentation([Event("Play Song", group_by=[GroupBy("country")])], START, END)
    assert server.requests[0].query == list(expected.params())


def test_regions_and_base_url() -> None:
    assert AmplitudeClient("k", "s").base_url == "https://amplitude.com"
    assert AmplitudeClient("k", "s", region="eu").base_url == "https://analytics.eu.amplitude.com"
    assert (
        AmplitudeClient("k", "s", base_url="http://127.0.0.1:9/").base_url == "http://127.0.0.1:9"
    )
    with pytest.raises(ConfigurationError, match="region"):
        AmplitudeClient("k", "s", region="mars")  # type: ignore[arg-type]


def test_credentials_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMPLITUDE_API_KEY", "env-key")
    monkeypatch.setenv("AMPLITUDE_SECRET_KEY", "env-secret")
    client = AmplitudeClient()
    assert "env-secret" not in repr(client)
    monkeypatch.delenv("AMPLITUDE_SECRET_KEY")
    with pytest.raises(ConfigurationError, match="secret_key"):
        AmplitudeClient()


async def test_secrets_never_leak_into_repr_or_errors(server: RecordingServer) -> None:
    server.reply(401, {"error": {"http_code": 401, "message": "Invalid API key"}})
    client = AmplitudeClient("key-123", "very-secret", base_url=server.url, limits=FAST)
    async with client:
        with pytest.raises(AuthenticationError) as info:
            await client.events_list()
    for text in (repr(client), str(info.value), repr(info.value)):
        assert "very-secret" not in text
        assert "key-123" not in text


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, BadRequest), (401, AuthenticationError), (403, AuthenticationError), (404, NotFound)],
)
async def test_client_errors_are_not_retried(
    server: RecordingServer, status: int, cls: type[Exception]
) -> None:
    server.reply(
        status, {"error": {"http_code": status, "message": "nope", "metadata": {"details": "why"}}}
    )
    async with make_client(server) as client:
        with pytest.raises(cls, match="nope"):
            await client.run(UserComposition(START, END, "country"))
        assert client.statistics().retries == 0
    assert len(server.requests) == 1


async def test_server_errors_are_retried_then_raised(server: RecordingServer) -> None:
    for _ in range(3):
        server.reply(503, b"<html>unavailable</html>")
    async with make_client(server) as client:
        with pytest.raises(ServerError) as info:
            await client.run(EventsList())
        assert client.statistics().retries == 2
    assert info.value.status == 503
    assert len(server.requests) == 3


async def test_server_error_then_success(server: RecordingServer) -> None:
    server.reply(500, {"error": {"http_code": 500, "message": "boom"}})
    server.reply(200, sample("doc_events_list"))
    async with make_client(server) as client:
        result = await client.events_list()
        assert client.statistics().retries == 1
    assert [e.value for e in result.events][:1] == ["Add Content to Cart"]


@pytest.mark.parametrize(
    "details",
    [
        "Exceeded concurrent limit with query of cost 7",
        "Too Many Requests: Exceeded rate limit with query of cost 7",
    ],
)
async def test_429_pauses_and_retries_the_same_query(server: RecordingServer, details: str) -> None:
    server.reply(
        429,
        {
            "error": {
                "http_code": 429,
                "message": "Too Many Requests",
                "metadata": {"details": details},
            }
        },
    )
    server.reply(200, sample("doc_composition"))
    query = UserComposition(START, END, "version")
    async with make_client(server) as client:
        result = await client.run(query)
        stats = client.statistics()
    assert isinstance(result, results.UserCompositionResult)
    assert stats.rate_limited == 1
    assert stats.retries == 1
    assert [r.query for r in server.requests] == [list(query.params())] * 2


async def test_429_gives_up_after_its_own_retry_budget(server: RecordingServer) -> None:
    body = {"error": {"http_code": 429, "message": "Exceeded rate limit with query of cost 7"}}
    for _ in range(5):
        server.reply(429, body, headers={"Retry-After": "0"})
    policy = RetryPolicy(
        max_retries=0, max_rate_limited_retries=2, backoff_base=0.001, backoff_cap=0.01
    )
    async with make_client(server, retry_policy=policy) as client:
        with pytest.raises(RateLimited) as info:
            await client.run(UserComposition(START, END, "version"))
    assert info.value.limit == "rate"
    assert info.value.query_cost == 7
    assert len(server.requests) == 3


async def test_garbage_success_body_is_a_validation_error(server: RecordingServer) -> None:
    server.reply(200, b"this is not json")
    async with make_client(server) as client:
        with pytest.raises(ResponseValidationError):
            await client.events_list()


async def test_wrong_shape_names_the_field(server: RecordingServer) -> None:
    server.reply(200, {"data": {"xValues": ["2026-09-01"], "series": [["many"]]}})
    async with make_client(server) as client:
        with pytest.raises(ResponseValidationError) as info:
            await client.run(ActiveUsers(START, START))
    assert "series" in str(info.value)


async def test_too_expensive_is_refused_before_sending(server: RecordingServer) -> None:
    query = Funnel(["a", "b", "c"], date(2026, 1, 1), date(2026, 12, 31))
    async with make_client(server) as client:
        with pytest.raises(QueryTooExpensive) as info:
            await client.run(query)
    assert info.value.cost == query.cost
    assert server.requests == []


async def test_connection_refused_is_a_transport_error() -> None:
    # Bind a port, then close it, so nothing listens there.
    runner = web.AppRunner(web.Application())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    await runner.cleanup()
    client = AmplitudeClient(
        "k", "s", base_url=f"http://127.0.0.1:{port}", limits=FAST, retry_policy=QUICK_RETRY
    )
    async with client:
        with pytest.raises(TransportError) as info:
            await client.events_list()
        assert client.statistics().retries == 2
    assert info.value.path == "/api/2/events/list"


async def test_timeout_is_a_transport_error() -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/api/2/events/list", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    policy = RetryPolicy(max_retries=0)
    try:
        async with AmplitudeClient(
            "k", "s", base_url=f"http://127.0.0.1:{port}", timeout=0.2, retry_policy=policy
        ) as client:
            with pytest.raises(TransportError) as info:
                await client.events_list()
        assert info.value.timeout
    finally:
        release.set()
        await runner.cleanup()


async def test_gather_and_as_completed(server: RecordingServer) -> None:
    server.default = (200, {}, json.dumps(sample("doc_composition")).encode())
    queries: list[Query[Any]] = [UserComposition(START, END, f"gp:p{i}") for i in range(12)]
    async with make_client(server) as client:
        gathered = await client.gather(queries)
        streamed = [q async for q, _ in client.as_completed(queries)]
    assert len(gathered) == 12
    assert all(isinstance(r, results.UserCompositionResult) for r in gathered)
    assert sorted(streamed, key=queries.index) == queries
    assert sorted(r.query[2][1] for r in server.requests) == sorted(
        [f"gp:p{i}" for i in range(12)] * 2
    )


async def test_gather_return_exceptions(server: RecordingServer) -> None:
    server.reply(200, sample("doc_events_list"))
    server.reply(404, {"error": {"http_code": 404, "message": "no chart"}})
    async with make_client(server, limits=Limits(concurrent=1).scaled(0.001)) as client:
        out = await client.gather([EventsList(), ChartQuery("zzz")], return_exceptions=True)
    assert isinstance(out[0], results.EventsListResult)
    assert isinstance(out[1], NotFound)


async def test_owned_session_is_closed_and_given_one_is_not(server: RecordingServer) -> None:
    import aiohttp

    server.default = (200, {}, json.dumps(sample("doc_events_list")).encode())
    async with aiohttp.ClientSession() as session:
        async with AmplitudeClient("k", "s", base_url=server.url, session=session) as client:
            await client.events_list()
        assert not session.closed
