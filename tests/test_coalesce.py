"""Coalescing: the Coalescer primitive, and the client's use of it against a local server."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator
from datetime import date

import pytest
from aiohttp import web
from attrs import define, field
from localserver import until

from amplitude_async import AmplitudeClient, BadRequest, EventSegmentation, Limits
from amplitude_async.coalesce import Coalescer

FAST = Limits().scaled(0.001)
START, END = date(2026, 9, 1), date(2026, 9, 7)
BODY = (
    b'{"data": {"series": [[1, 2, 3, 4, 5, 6, 7]], "seriesLabels": [0], '
    b'"seriesCollapsed": [[{"setId": "", "value": 28}]], "xValues": ["2026-09-01", '
    b'"2026-09-02", "2026-09-03", "2026-09-04", "2026-09-05", "2026-09-06", "2026-09-07"]}}'
)


# -- the primitive --------------------------------------------------------------------------


async def test_concurrent_callers_share_one_run() -> None:
    coalescer = Coalescer()
    gate = asyncio.Event()
    calls = 0

    async def work() -> object:
        nonlocal calls
        calls += 1
        await gate.wait()
        return object()

    tasks = [asyncio.create_task(coalescer.run("k", work)) for _ in range(50)]
    await asyncio.sleep(0)
    assert coalescer.waiters("k") == 50
    gate.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert all(r is results[0] for r in results)
    assert len(coalescer) == 0
    # Done work is forgotten: the next caller starts afresh.
    await coalescer.run("k", work)
    assert calls == 2


async def test_every_caller_gets_the_error() -> None:
    coalescer = Coalescer()
    gate = asyncio.Event()

    async def work() -> None:
        await gate.wait()
        raise KeyError("boom")

    tasks = [asyncio.create_task(coalescer.run("k", work)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, KeyError) for o in outcomes)


async def test_a_cancelled_caller_does_not_cancel_the_others() -> None:
    coalescer = Coalescer()
    gate = asyncio.Event()
    cancelled = False

    async def work() -> str:
        nonlocal cancelled
        try:
            await gate.wait()
        except asyncio.CancelledError:
            cancelled = True
            raise
        return "answer"

    first = asyncio.create_task(coalescer.run("k", work))
    second = asyncio.create_task(coalescer.run("k", work))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert coalescer.waiters("k") == 1
    gate.set()
    assert await second == "answer"
    assert not cancelled


async def test_work_is_cancelled_when_no_caller_waits() -> None:
    coalescer = Coalescer()
    started = asyncio.Event()
    cancelled = asyncio.Event()
    calls = 0

    async def work() -> str:
        nonlocal calls
        calls += 1
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    tasks = [asyncio.create_task(coalescer.run("k", work)) for _ in range(3)]
    await started.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.wait_for(cancelled.wait(), 10)
    assert len(coalescer) == 0

    # A later caller does not join the cancelled work: it starts its own.
    async def quick() -> str:
        nonlocal calls
        calls += 1
        return "fresh"

    assert await coalescer.run("k", quick) == "fresh"
    assert calls == 2


async def test_the_last_caller_to_leave_returns_once_the_work_has_stopped() -> None:
    coalescer = Coalescer()
    started = asyncio.Event()
    stopped = False

    async def work() -> str:
        nonlocal stopped
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped = True
        return "never"

    first = asyncio.create_task(coalescer.run("k", work))
    second = asyncio.create_task(coalescer.run("k", work))
    await started.wait()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert not stopped  # another caller still waits: the work goes on
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert stopped  # the last one out waited for the work to stop


async def test_a_seat_passes_the_outcome_through_its_callers_finish() -> None:
    coalescer = Coalescer()
    gate = asyncio.Event()

    async def work() -> int:
        await gate.wait()
        return 20

    plain: asyncio.Future[int] = coalescer.join("k", work)
    doubled = coalescer.join("k", work, finish=lambda n: n * 2)
    failing = coalescer.join("k", work, finish=lambda n: n // 0)
    assert coalescer.waiters("k") == 3
    gate.set()
    assert await plain == 20
    assert await doubled == 40
    # A caller's own finishing fails that caller only.
    with pytest.raises(ZeroDivisionError):
        await failing


async def test_a_finished_flight_is_freed_without_the_garbage_collector() -> None:
    # A flight and its seats reference each other while it runs; once it has answered, no
    # cycle is left, so both go with their last reference instead of piling up for the
    # collector (a batch of distinct queries makes one flight per query).
    coalescer = Coalescer()

    async def work() -> str:
        await asyncio.sleep(0)
        return "answer"

    gc.disable()
    try:
        seat: asyncio.Future[str] = coalescer.join("k", work)
        assert await seat == "answer"
        await asyncio.sleep(0)  # the flight's done callback has run
        freed = weakref.ref(seat)
        del seat
        assert freed() is None
    finally:
        gc.enable()


# -- through the client -----------------------------------------------------------------------


@define
class GatedServer:
    """A local server that holds every request until ``gate`` opens, then answers ``body``."""

    url: str = ""
    gate: asyncio.Event = field(factory=asyncio.Event)
    arrived: list[str] = field(factory=list)
    disconnected: int = 0
    status: int = 200
    body: bytes = BODY

    async def handle(self, request: web.Request) -> web.Response:
        self.arrived.append(request.rel_url.raw_query_string)
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.disconnected += 1
            raise
        return web.Response(status=self.status, body=self.body, content_type="application/json")


@pytest.fixture
async def gated() -> AsyncIterator[GatedServer]:
    server = GatedServer()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield server
    finally:
        server.gate.set()
        await runner.cleanup()


def client_for(server: GatedServer, **kwargs: object) -> AmplitudeClient:
    return AmplitudeClient("key", "secret", base_url=server.url, limits=FAST, **kwargs)  # type: ignore[arg-type]


QUERY = EventSegmentation(["Sign Up"], START, END, metric="totals")


async def test_identical_queries_in_flight_are_sent_once(gated: GatedServer) -> None:
    async with client_for(gated) as client:
        tasks = [asyncio.create_task(client.run(QUERY)) for _ in range(20)]
        other = asyncio.create_task(client.run(QUERY.with_range(START, START)))
        await until(lambda: len(gated.arrived) == 2, "both distinct queries arrive")
        gated.gate.set()
        results = await asyncio.gather(*tasks)
        await other
        assert len(gated.arrived) == 2
        assert all(r == results[0] for r in results)
        stats = client.statistics()
        assert stats.requests_sent == 2
        assert stats.savings.coalesced == 19
        assert stats.savings.cost_saved_by_coalescing == 19 * QUERY.cost


async def test_every_caller_gets_the_api_error(gated: GatedServer) -> None:
    gated.status, gated.body = 400, b'{"error": "bad event"}'
    async with client_for(gated) as client:
        tasks = [asyncio.create_task(client.run(QUERY)) for _ in range(5)]
        await until(lambda: gated.arrived, "the query arrives")
        gated.gate.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, BadRequest) for o in outcomes)
    assert len(gated.arrived) == 1


async def test_a_cancelled_caller_leaves_the_request_to_the_others(gated: GatedServer) -> None:
    async with client_for(gated) as client:
        leaving = asyncio.create_task(client.run(QUERY))
        staying = asyncio.create_task(client.run(QUERY))
        await until(lambda: gated.arrived, "the query arrives")
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
        gated.gate.set()
        result = await staying
    assert result.series[0][-1] == 7
    assert len(gated.arrived) == 1
    assert gated.disconnected == 0


async def test_the_request_is_cancelled_when_every_caller_left(gated: GatedServer) -> None:
    async with client_for(gated) as client:
        tasks = [asyncio.create_task(client.run(QUERY)) for _ in range(3)]
        await until(lambda: gated.arrived, "the query arrives")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await until(lambda: gated.disconnected == 1, "the server sees the request dropped")
        # The cut request keeps its slot until its lease ends: the server may still count it.
        assert client.statistics()[QUERY.pool].in_flight == 1
        assert client.statistics()[QUERY.pool].queued == 0
        # Asked again, it is sent again.
        gated.gate.set()
        await client.run(QUERY)
    assert len(gated.arrived) == 2


async def test_coalescing_can_be_turned_off(gated: GatedServer) -> None:
    async with client_for(gated, coalesce=False) as client:
        tasks = [asyncio.create_task(client.run(QUERY)) for _ in range(3)]
        await until(lambda: len(gated.arrived) == 3, "three requests arrive")
        gated.gate.set()
        await asyncio.gather(*tasks)
        assert client.statistics().savings.coalesced == 0


async def test_gather_coalesces_duplicates_in_a_batch(gated: GatedServer) -> None:
    gated.gate.set()
    async with client_for(gated) as client:
        results = await client.gather([QUERY] * 4)
    assert len(set(map(id, results))) == 1
    assert len(gated.arrived) == 1
