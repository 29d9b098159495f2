"""Observability against a real server on 127.0.0.1: OpenTelemetry spans and metrics (the real
SDK, its in-memory exporter and metric reader), log records and event hooks."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from localserver import RecordingServer, serve
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from redisserver import free_port

from amplitude_async import (
    AdmittedEvent,
    RateLimitedEvent,
    ResponseEvent,
    RetryEvent,
    ServerError,
)
from amplitude_async.cache import CachePolicy, MemoryCache
from amplitude_async.client import AmplitudeClient
from amplitude_async.errors import BudgetUnavailable, ConfigurationError
from amplitude_async.limits import Limits, Pool
from amplitude_async.queries import EventSegmentation, EventsList, UserComposition
from amplitude_async.redis_store import RedisBudgetStore, budget_key_tag
from amplitude_async.retry import RetryPolicy
from amplitude_async.scheduler import Scheduler

SAMPLES = Path(__file__).parent / "samples"
START, END = date(2026, 9, 1), date(2026, 9, 7)
FAST = Limits().scaled(0.001)  # a 0.3 s window: a "rate" 429 pauses that long
QUICK_RETRY = RetryPolicy(max_retries=2, backoff_base=0.001, backoff_cap=0.01)
KEY, SECRET = "observed-api-key-0123", "observed-secret-key-4567"
TOKEN = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
RATE_429 = {
    "error": {
        "http_code": 429,
        "message": "Too Many Requests",
        "metadata": {"details": "Exceeded rate limit with query of cost 1"},
    }
}


def composition(prop: str) -> UserComposition:
    return UserComposition(START, END, prop)


def matches(point: Any, attributes: dict[str, Any]) -> bool:
    """Whether a metric point has every one of ``attributes``."""
    return all(point.attributes.get(k) == v for k, v in attributes.items())


def attribute(span: ReadableSpan, name: str) -> Any:
    """One attribute of a finished span."""
    assert span.attributes is not None
    return span.attributes[name]


def sample(name: str) -> Any:
    return json.loads((SAMPLES / f"{name}.json").read_text())


@attrs.define
class Telemetry:
    """A tracer and a meter provider of the real SDK, exporting to memory."""

    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def queries(self) -> list[ReadableSpan]:
        return [s for s in self.finished() if s.name == "amplitude.query"]

    def attempts(self, parent: ReadableSpan) -> list[ReadableSpan]:
        assert parent.context is not None
        return [
            s
            for s in self.finished()
            if s.name == "GET"
            and s.parent is not None
            and s.parent.span_id == parent.context.span_id
        ]

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        found: list[Any] = []
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def total(self, name: str, **attributes: Any) -> float:
        """Sum of a counter's points (histograms: their counts) matching ``attributes``."""
        points = [p for p in self.points(name) if matches(p, attributes)]
        total = 0.0
        for point in points:
            total += point.count if hasattr(point, "count") else point.value
        return total


@pytest.fixture
def telemetry() -> Telemetry:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    return Telemetry(spans, reader, tracer_provider, MeterProvider(metric_readers=[reader]))


def make_client(url: str, telemetry: Telemetry | None = None, **kwargs: Any) -> AmplitudeClient:
    kwargs.setdefault("limits", FAST)
    kwargs.setdefault("retry_policy", QUICK_RETRY)
    if telemetry is not None:
        kwargs["tracer_provider"] = telemetry.tracer_provider
        kwargs["meter_provider"] = telemetry.meter_provider
    return AmplitudeClient(KEY, SECRET, base_url=url, **kwargs)


# -- spans -----------------------------------------------------------------------------------


async def test_a_query_is_a_span_with_a_client_span_per_attempt(
    server: RecordingServer, telemetry: Telemetry
) -> None:
    server.reply(503, b"<html>unavailable</html>")
    server.reply(200, sample("doc_events_list"))
    async with make_client(server.url, telemetry) as client:
        await client.run(EventsList(), priority=3)
    (query,) = telemetry.queries()
    assert query.attributes is not None
    assert dict(query.attributes) == {
        "amplitude.endpoint": "events_list",
        "amplitude.pool": "standard",
        "amplitude.cost": EventsList().cost,
        "amplitude.priority": 3,
        "server.address": "127.0.0.1",
        "amplitude.attempts": 2,
        "amplitude.queue_wait": pytest.approx(query.attributes["amplitude.queue_wait"]),
        "amplitude.cache_hit": False,
        "amplitude.coalesced": False,
        "http.response.status_code": 200,
    }
    assert query.status.status_code is not StatusCode.ERROR
    first, second = telemetry.attempts(query)
    assert first.kind is SpanKind.CLIENT
    assert first.attributes is not None
    assert second.attributes is not None
    assert first.attributes["http.request.method"] == "GET"
    assert first.attributes["url.full"] == f"{server.url}/api/2/events/list"
    assert first.attributes["server.port"] == int(server.url.rsplit(":", 1)[1])
    assert first.attributes["http.response.status_code"] == 503
    assert first.attributes["error.type"] == "503"
    assert first.status.status_code is StatusCode.ERROR
    assert "http.request.resend_count" not in first.attributes
    assert second.attributes["http.response.status_code"] == 200
    assert second.attributes["http.request.resend_count"] == 1
    assert telemetry.total("amplitude.client.retries", **{"error.type": "ServerError"}) == 1
    assert telemetry.total("amplitude.client.requests", **{"http.response.status_code": 503}) == 1
    assert telemetry.total("amplitude.client.requests", **{"http.response.status_code": 200}) == 1
    assert telemetry.total("amplitude.client.cost") == 2 * EventsList().cost


async def test_a_failed_query_ends_its_span_with_the_error(
    server: RecordingServer, telemetry: Telemetry
) -> None:
    for _ in range(3):
        server.reply(503, b"<html>unavailable</html>")
    async with make_client(server.url, telemetry) as client:
        with pytest.raises(ServerError):
            await client.run(EventsList())
    (query,) = telemetry.queries()
    assert query.attributes is not None
    assert query.attributes["error.type"] == "503"
    assert query.attributes["amplitude.attempts"] == 3
    assert query.status.status_code is StatusCode.ERROR
    assert len(telemetry.attempts(query)) == 3


async def test_a_429_pauses_the_pool_and_shows_in_spans_and_metrics(
    server: RecordingServer, telemetry: Telemetry
) -> None:
    server.reply(429, RATE_429)
    server.reply(200, sample("doc_composition"))
    async with make_client(server.url, telemetry) as client:
        await client.run(UserComposition(START, END, "version"))
    (query,) = telemetry.queries()
    statuses = [
        s.attributes["http.response.status_code"]
        for s in telemetry.attempts(query)
        if s.attributes is not None
    ]
    assert statuses == [429, 200]
    assert telemetry.total("amplitude.client.rate_limited", **{"amplitude.pool": "standard"}) == 1
    assert telemetry.total("amplitude.client.retries", **{"error.type": "rate_limited"}) == 1


async def test_a_queued_query_reports_its_wait(telemetry: Telemetry) -> None:
    release, arrived = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.json_response(sample("doc_composition"))

    async with serve(slow) as url, make_client(url, telemetry, limits=Limits(concurrent=1)) as c:
        try:
            first = asyncio.create_task(c.run(composition("version"), priority=1))
            await arrived.wait()
            second = asyncio.create_task(c.run(composition("country")))
            while c.statistics()[Pool.STANDARD].queued < 1:  # noqa: ASYNC110 - no event for it
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.02)
        finally:
            release.set()
        await asyncio.gather(first, second)
        assert telemetry.total("amplitude.client.queue.wait") == 2
    spans = {s.attributes["amplitude.priority"]: s for s in telemetry.queries() if s.attributes}
    waited = float(attribute(spans[0], "amplitude.queue_wait"))
    assert waited >= 0.02
    assert float(attribute(spans[1], "amplitude.queue_wait")) < waited
    (attempt,) = telemetry.attempts(spans[0])
    assert attribute(attempt, "amplitude.queue_wait") == waited


async def test_cache_hits_and_coalesced_callers_are_marked(
    server: RecordingServer, telemetry: Telemetry
) -> None:
    query = EventSegmentation(["Play Song"], START, END)
    server.reply(200, sample("doc_segmentation"))
    cache = MemoryCache()
    policy = CachePolicy(today=lambda: date(2026, 12, 1))
    async with make_client(server.url, telemetry, cache=cache, cache_policy=policy) as client:
        # Two identical calls at once: one request; then the cache answers a third.
        await asyncio.gather(client.run(query), client.run(query))
        await client.run(query)
    assert len(server.requests) == 1
    sent, joined, cached = telemetry.queries()[:3]
    marks = {
        (s.attributes["amplitude.cache_hit"], s.attributes["amplitude.coalesced"])
        for s in (sent, joined, cached)
        if s.attributes is not None
    }
    assert marks == {(False, False), (False, True), (True, False)}
    by_mark = {
        (s.attributes["amplitude.cache_hit"], s.attributes["amplitude.coalesced"]): s
        for s in (sent, joined, cached)
        if s.attributes is not None
    }
    assert len(telemetry.attempts(by_mark[False, False])) == 1
    assert telemetry.attempts(by_mark[False, True]) == []
    assert telemetry.attempts(by_mark[True, False]) == []
    assert attribute(by_mark[True, False], "amplitude.attempts") == 0
    assert telemetry.total("amplitude.client.cache.hits") == 1
    saved = "amplitude.client.cost.saved"
    assert telemetry.total(saved, **{"amplitude.saved_by": "cache"}) == query.cost
    assert telemetry.total(saved, **{"amplitude.saved_by": "coalescing"}) == query.cost


async def test_the_callers_span_is_the_parent(
    server: RecordingServer, telemetry: Telemetry
) -> None:
    tracer = telemetry.tracer_provider.get_tracer("application")
    server.reply(200, sample("doc_events_list"))
    async with make_client(server.url, telemetry) as client:
        with tracer.start_as_current_span("dashboard refresh") as parent:
            await client.run(EventsList())
    (query,) = telemetry.queries()
    assert query.parent is not None
    assert query.parent.span_id == parent.get_span_context().span_id
    assert query.context is not None
    assert query.context.trace_id == parent.get_span_context().trace_id
    (attempt,) = telemetry.attempts(query)
    assert attempt.context is not None
    assert attempt.context.trace_id == parent.get_span_context().trace_id


async def test_gauges_read_the_budget(telemetry: Telemetry) -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response(sample("doc_composition"))

    limits = Limits(concurrent=1, cost_per_window=1000, cost_per_hour=5000)
    async with serve(slow) as url, make_client(url, telemetry, limits=limits) as client:
        tasks = [asyncio.create_task(client.run(composition(p))) for p in ("version", "country")]
        while client.statistics()[Pool.STANDARD].queued < 1:  # noqa: ASYNC110 - no event for it
            await asyncio.sleep(0.001)
        cost = composition("version").cost

        def gauge(name: str, **attributes: Any) -> float:
            points = [p for p in telemetry.points(name) if matches(p, attributes)]
            assert len(points) == 1, points
            return float(points[0].value)

        standard = {"amplitude.pool": "standard", "server.address": "127.0.0.1"}
        window = {**standard, "amplitude.window": "cost_per_window"}
        assert gauge("amplitude.budget.used", **window) == cost
        assert gauge("amplitude.budget.remaining", **window) == 1000 - cost
        assert gauge("amplitude.client.in_flight", **standard) == 1
        assert gauge("amplitude.client.queued", **standard) == 1
        assert gauge("amplitude.budget.processes") == 1
        release.set()
        await asyncio.gather(*tasks)
    # A closed client no longer reports.
    assert telemetry.points("amplitude.client.queued") == []


async def test_clients_of_two_projects_share_the_instruments(
    server: RecordingServer, telemetry: Telemetry
) -> None:
    server.reply(200, sample("doc_events_list"))
    other_key = "another-project-key"
    async with (
        make_client(server.url, telemetry) as first,
        AmplitudeClient(
            other_key,
            SECRET,
            base_url=server.url,
            limits=Limits(cost_per_window=500),
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
        ),
    ):
        await first.run(EventsList())
        remaining = {
            p.attributes["amplitude.project"]: p.value
            for p in telemetry.points("amplitude.budget.remaining")
            if p.attributes["amplitude.window"] == "cost_per_window"
        }
    mine, theirs = budget_key_tag(KEY)[:12], budget_key_tag(other_key)[:12]
    assert set(remaining) == {mine, theirs}
    assert remaining[theirs] == 500
    assert remaining[mine] == FAST.cost_per_window - EventsList().cost
    cost = EventsList().cost
    assert telemetry.total("amplitude.client.cost", **{"amplitude.project": mine}) == cost
    assert telemetry.total("amplitude.client.cost", **{"amplitude.project": theirs}) == 0


def test_opentelemetry_is_loaded_only_once_the_application_has_it() -> None:
    """In a fresh interpreter: importing the package and running queries (telemetry on, the
    default) imports neither optional package, and logs nothing without a handler; an SDK the
    application configures afterwards is picked up by the same client."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        from aiohttp import web
        import amplitude_async
        from amplitude_async import otel
        from amplitude_async.limits import Limits
        from amplitude_async.queries import EventsList, RealtimeActiveUsers

        def loaded():
            return sorted(m for m in sys.modules if m.split(".")[0] in
                          ("opentelemetry", "prometheus_client"))

        assert loaded() == [], loaded()
        otel.RECHECK = 0.0  # look for an SDK at every query

        async def main():
            async def answer(request):
                if request.path.endswith("/list"):
                    return web.json_response({"data": []})
                return web.Response(status=503)
            app = web.Application()
            app.router.add_get("/{tail:.*}", answer)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            async with amplitude_async.AmplitudeClient(
                "k", "s", base_url=url, limits=Limits().scaled(0.001), max_retries=0,
            ) as client:
                await client.run(EventsList())
                try:  # a WARNING record ("retries exhausted"): silent without a handler
                    await client.run(RealtimeActiveUsers())
                except amplitude_async.ServerError:
                    pass
                assert loaded() == [], loaded()
                print("clean")

                from opentelemetry import trace
                from opentelemetry.sdk.trace import TracerProvider
                from opentelemetry.sdk.trace.export import SimpleSpanProcessor
                from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
                    InMemorySpanExporter,
                )

                spans = InMemorySpanExporter()
                provider = TracerProvider()
                provider.add_span_processor(SimpleSpanProcessor(spans))
                trace.set_tracer_provider(provider)
                await client.run(EventsList())
                print(sorted(span.name for span in spans.get_finished_spans()))
            await runner.cleanup()

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n") == ["clean", "['GET', 'amplitude.query']", ""]
    assert done.stderr == ""  # the package logger's NullHandler keeps it silent


def test_providers_need_telemetry_on() -> None:
    with pytest.raises(ConfigurationError) as info:
        AmplitudeClient("k", "s", telemetry=False, tracer_provider=TracerProvider())
    assert info.value.field == "tracer_provider"


# -- hooks -----------------------------------------------------------------------------------


async def test_hooks_see_typed_events_in_order(server: RecordingServer) -> None:
    server.reply(503, b"<html>unavailable</html>")
    server.reply(429, RATE_429)
    server.reply(200, sample("doc_events_list"))
    seen: list[Any] = []

    async def async_hook(event: Any) -> None:
        await asyncio.sleep(0)
        seen.append(("async", type(event).__name__))

    hooks = {
        "admitted": [seen.append],
        "response": [seen.append, async_hook],
        "retry": [seen.append],
        "rate_limited": [seen.append],
    }
    async with make_client(server.url, event_hooks=hooks) as client:
        await client.run(EventsList(), priority=2)
    typed = [e for e in seen if not isinstance(e, tuple)]
    assert [type(e) for e in typed] == [
        AdmittedEvent,
        ResponseEvent,
        RetryEvent,
        AdmittedEvent,
        ResponseEvent,
        RetryEvent,
        RateLimitedEvent,
        AdmittedEvent,
        ResponseEvent,
    ]
    assert seen.count(("async", "ResponseEvent")) == 3
    admitted, failed, retry = typed[:3]
    assert admitted == AdmittedEvent(
        "events_list", "/api/2/events/list", Pool.STANDARD, EventsList().cost, 2, 1,
        admitted.queue_wait,
    )  # fmt: skip
    assert isinstance(failed, ResponseEvent)
    assert (failed.attempt, failed.status, type(failed.error)) == (1, 503, ServerError)
    assert isinstance(retry, RetryEvent)
    assert retry.attempt == 1
    assert retry.delay > 0
    limited = typed[6]
    assert isinstance(limited, RateLimitedEvent)
    assert (limited.attempt, limited.limit, limited.pause) == (2, "rate", FAST.window)
    last = typed[-1]
    assert isinstance(last, ResponseEvent)
    assert (last.attempt, last.status, last.error) == (3, 200, None)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        last.status = 500  # type: ignore[misc]


async def test_a_hook_that_raises_is_logged_and_the_query_goes_on(
    server: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: Any) -> None:
        raise RuntimeError(f"hook failed near {SECRET}")

    caplog.set_level(logging.DEBUG, logger="amplitude_async")
    server.reply(200, sample("doc_events_list"))
    async with make_client(server.url, event_hooks={"admitted": [broken]}) as client:
        await client.run(EventsList())
    (record,) = [r for r in caplog.records if r.name == "amplitude_async.hooks"]
    assert record.levelno == logging.ERROR
    assert "RuntimeError: hook failed near [REDACTED]" in record.getMessage()
    assert record.event == "admitted"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("hooks", "problem"),
    [
        ({"request": [print]}, "unknown event 'request'"),
        ({"response": print}, "must be a list of callables"),
        ({"response": [42]}, "is not callable"),
        ([print], "must map event names"),
    ],
)
def test_bad_hooks_are_refused(hooks: Any, problem: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        AmplitudeClient("k", "s", event_hooks=hooks)
    assert info.value.field == "event_hooks"
    assert problem in str(info.value)


# -- logs ------------------------------------------------------------------------------------


@pytest.fixture
async def echoing() -> AsyncIterator[str]:
    """A server whose errors quote the credentials back: 500, 429, then a 400 (not retried)."""
    answers = iter([500, 429, 400])

    async def echo(request: web.Request) -> web.Response:
        status = next(answers, 400)
        quoted = f"{request.headers.get('Authorization')} {KEY} {SECRET} url={request.url}"
        body: dict[str, Any] = {"error": {"http_code": status, "message": quoted}}
        if status == 429:
            body = RATE_429 | {"echo": quoted}
        return web.json_response(body, status=status, headers={"X-Echo": quoted})

    async with serve(echo) as url:
        yield url


async def test_log_records_carry_fields_and_no_credentials(
    echoing: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="amplitude_async")

    def echo_hook(event: Any) -> None:
        raise ValueError(f"{KEY}:{SECRET} Basic {TOKEN}")

    hooks = {"response": [echo_hook]}
    async with make_client(echoing, event_hooks=hooks) as client:
        with pytest.raises(Exception, match="400"):
            await client.run(EventsList(), priority=4)
    records = caplog.records
    attempts = [r for r in records if r.name == "amplitude_async.client" and r.levelno == 10]
    assert [r.status for r in attempts] == [500, 429, 400]  # type: ignore[attr-defined]
    first = attempts[0].__dict__
    assert first["endpoint"] == "events_list"
    assert first["pool"] == "standard"
    assert first["cost"] == EventsList().cost
    assert first["priority"] == 4
    assert first["attempt"] == 1
    assert first["queue_wait"] >= 0
    assert first["duration"] > 0
    infos = [r for r in records if r.levelno == logging.INFO]
    assert [r.attempt for r in infos] == [1, 2]  # type: ignore[attr-defined]
    assert "retrying" in infos[0].getMessage()
    assert "429 (rate limit), pausing the standard pool" in infos[1].getMessage()
    assert infos[1].pause == FAST.window  # type: ignore[attr-defined]
    # A 400 is never retried: no "exhausted" warning for it.
    assert [r for r in records if r.levelno == logging.WARNING] == []
    assert len(records) == 3 + 2 + 3  # attempts, retries, the hook's three failures
    for record in records:
        text = record.getMessage() + repr(record.__dict__)
        for secret in (KEY, SECRET, TOKEN, TOKEN.rstrip("=")):
            assert secret not in text, (secret, record.__dict__)


async def test_exhausted_retries_are_a_warning(
    server: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(3):
        server.reply(503, b"<html>unavailable</html>")
    caplog.set_level(logging.WARNING, logger="amplitude_async")
    async with make_client(server.url) as client:
        with pytest.raises(ServerError):
            await client.run(EventsList())
    (record,) = caplog.records
    assert record.name == "amplitude_async.client"
    assert "retries exhausted after 3 attempt(s)" in record.getMessage()
    assert record.error_type == "ServerError"  # type: ignore[attr-defined]


async def test_an_unavailable_cache_is_a_warning(
    server: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    class DownCache(MemoryCache):
        async def get_many(self, keys: list[str]) -> list[bytes | None]:
            raise ConnectionError("cache is down")

    server.reply(200, sample("doc_segmentation"))
    policy = CachePolicy(today=lambda: date(2026, 12, 1))
    caplog.set_level(logging.WARNING, logger="amplitude_async")
    async with make_client(server.url, cache=DownCache(), cache_policy=policy) as client:
        with pytest.warns(UserWarning, match="cache is down"):
            await client.run(EventSegmentation(["Play Song"], START, END))
    (record,) = caplog.records
    assert record.name == "amplitude_async.savers"
    assert "ConnectionError: cache is down" in record.error  # type: ignore[attr-defined]


async def test_an_unavailable_budget_store_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="amplitude_async")
    store = RedisBudgetStore.from_url(
        f"redis://127.0.0.1:{free_port()}/0", api_key=KEY, limits=FAST, timeout=0.5
    )
    scheduler = Scheduler(store=store, unavailable_wait=0.05, lease=1.0)
    with pytest.raises(BudgetUnavailable):
        async with scheduler.slot(Pool.STANDARD, 1):
            pass
    await scheduler.aclose()
    await store.aclose()
    warnings = [r for r in caplog.records if r.name == "amplitude_async.scheduler"]
    assert len(warnings) == 1
    assert "budget store unavailable" in warnings[0].getMessage()
    assert KEY not in repr(warnings[0].__dict__)
