"""Closing a client, against a real server on 127.0.0.1 that holds requests until told to answer.

What must hold: a closed client sends nothing; every caller gets a result or ClientClosed;
nothing is sent twice; no aiohttp session is left open and nothing warns about one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import warnings
from collections.abc import AsyncIterator, Iterator
from datetime import date
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from localserver import serve

from amplitude_async.client import TASK_NAME, AmplitudeClient
from amplitude_async.errors import ClientClosed, ConfigurationError, ServerError
from amplitude_async.limits import Limits
from amplitude_async.queries import UserComposition
from amplitude_async.results import UserCompositionResult
from amplitude_async.retry import RetryPolicy

START, END = date(2026, 9, 1), date(2026, 9, 7)
ANSWER = {"data": {"series": [[1]], "seriesLabels": ["a"], "xValues": ["2026-09-01"]}}
QUICK = RetryPolicy(max_retries=3, backoff_base=0.001)


class HoldingServer:
    """Records each request's ``p`` parameter and holds every answer until :meth:`release`."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.gate = asyncio.Event()
        self.arrived = asyncio.Condition()
        self.status = 200

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append(request.query["p"])
        async with self.arrived:
            self.arrived.notify_all()
        await self.gate.wait()
        body = ANSWER if self.status == 200 else {"error": {"message": "down"}}
        return web.Response(status=self.status, body=json.dumps(body).encode())

    async def wait_for(self, count: int) -> None:
        async with self.arrived:
            await self.arrived.wait_for(lambda: len(self.seen) >= count)

    def release(self, status: int = 200) -> None:
        self.status = status
        self.gate.set()


@pytest.fixture
async def holding() -> AsyncIterator[tuple[HoldingServer, str]]:
    server = HoldingServer()
    try:
        async with serve(server.handle) as url:
            yield server, url
            server.release()
    finally:
        server.release()


@contextlib.contextmanager
def no_unclosed_session_warnings() -> Iterator[None]:
    """Fail if aiohttp reports an unclosed session or connector, or anything warns."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
            gc.collect()
    finally:
        loop.set_exception_handler(previous)
    assert reported == []
    assert [str(w.message) for w in caught] == []


def queries(n: int) -> list[UserComposition]:
    return [UserComposition(START, END, f"gp:p{i}") for i in range(n)]


def make(url: str, **kwargs: Any) -> AmplitudeClient:
    kwargs.setdefault("limits", Limits(concurrent=5).scaled(0.001))
    kwargs.setdefault("retry_policy", QUICK)
    return AmplitudeClient("key", "secret", base_url=url, **kwargs)


async def test_close_waits_for_sent_requests_and_cancels_queued_ones(
    holding: tuple[HoldingServer, str],
) -> None:
    server, url = holding
    with no_unclosed_session_warnings():
        client = make(url)
        batch = asyncio.create_task(client.gather(queries(30), return_exceptions=True))
        await server.wait_for(5)  # five in flight (the concurrency limit), 25 queued
        closing = asyncio.create_task(client.aclose())
        await asyncio.sleep(0)
        assert client.closed
        assert not closing.done()  # waiting for the five on the wire
        server.release()
        outcomes = await batch
        await closing
    answered = [o for o in outcomes if isinstance(o, UserCompositionResult)]
    refused = [o for o in outcomes if isinstance(o, ClientClosed)]
    assert (len(answered), len(refused)) == (5, 25)
    assert all("before the request was sent" in str(o) for o in refused)
    assert len(server.seen) == 5  # nothing queued was sent, nothing sent twice
    assert len(set(server.seen)) == 5


async def test_close_with_no_grace_cuts_sent_requests_and_never_resends_them(
    holding: tuple[HoldingServer, str],
) -> None:
    server, url = holding
    with no_unclosed_session_warnings():
        client = make(url)
        batch = asyncio.create_task(client.gather(queries(30), return_exceptions=True))
        await server.wait_for(5)
        await client.aclose(grace=0)
        outcomes = await batch
    assert all(isinstance(o, ClientClosed) for o in outcomes)
    assert sum("during the request" in str(o) for o in outcomes) == 5
    server.release()
    await asyncio.sleep(0.01)  # let any (wrong) resend reach the server before counting
    assert sorted(server.seen) == sorted(set(server.seen))
    assert len(server.seen) == 5


async def test_a_request_failing_after_the_close_is_not_retried(
    holding: tuple[HoldingServer, str],
) -> None:
    server, url = holding
    client = make(url)
    one = asyncio.create_task(client.run(queries(1)[0]))
    await server.wait_for(1)
    closing = asyncio.create_task(client.aclose())
    await asyncio.sleep(0)
    server.release(status=503)
    with pytest.raises(ClientClosed, match="not retried") as info:
        await one
    await closing
    assert isinstance(info.value.__cause__, ServerError)
    assert server.seen == ["gp:p0"]


async def test_a_closed_client_refuses_work_and_opens_no_session(
    holding: tuple[HoldingServer, str],
) -> None:
    server, url = holding
    server.release()
    with no_unclosed_session_warnings():
        client = make(url)
        await client.run(queries(1)[0])
        await client.aclose()
        with pytest.raises(ClientClosed):
            await client.run(queries(1)[0])
        with pytest.raises(ClientClosed):
            await client.gather(queries(3))
        with pytest.raises(ClientClosed):
            async for _ in client.as_completed(queries(3)):
                pass
        await client.aclose()  # closing twice is fine
    assert len(server.seen) == 1


async def test_calls_racing_the_close_get_a_result_or_client_closed(
    holding: tuple[HoldingServer, str],
) -> None:
    server, url = holding
    server.release()
    with no_unclosed_session_warnings():
        client = make(url)
        batch = queries(10)
        outcomes = await asyncio.gather(
            *(client.run(q) for q in batch[:5]),
            client.aclose(),
            *(client.run(q) for q in batch[5:]),
            return_exceptions=True,
        )
    results = outcomes[:5] + outcomes[6:]
    assert outcomes[5] is None
    assert all(isinstance(o, UserCompositionResult | ClientClosed) for o in results)
    assert all(isinstance(o, ClientClosed) for o in outcomes[6:])  # called after the close
    assert len(server.seen) == sum(isinstance(o, UserCompositionResult) for o in results)


async def test_cancelling_a_caller_during_close_stays_a_cancellation(
    holding: tuple[HoldingServer, str],
) -> None:
    server, url = holding
    client = make(url, limits=Limits(concurrent=1).scaled(0.001))
    first = asyncio.create_task(client.run(queries(1)[0]))
    await server.wait_for(1)
    queued = asyncio.create_task(client.run(queries(2)[1]))
    await asyncio.sleep(0)
    queued.cancel()  # the caller's own cancellation, then the close's
    closing = asyncio.create_task(client.aclose())
    await asyncio.sleep(0)
    server.release()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert isinstance(await first, UserCompositionResult)
    await closing


async def test_caller_owned_session_closed_by_its_owner_is_a_typed_error(
    holding: tuple[HoldingServer, str],
) -> None:
    server, url = holding
    session = aiohttp.ClientSession()
    client = make(url, session=session)
    during = asyncio.create_task(client.run(queries(1)[0]))
    await server.wait_for(1)
    await session.close()
    with pytest.raises(ClientClosed, match="closed"):
        await during
    with pytest.raises(ClientClosed, match="session was closed by its owner"):
        await client.run(queries(2)[1])
    await client.aclose()
    assert server.seen == ["gp:p0"]


async def test_as_completed_leaves_no_task_behind_after_break(
    holding: tuple[HoldingServer, str],
) -> None:
    server, url = holding
    server.release()
    async with make(url, limits=Limits(concurrent=2).scaled(0.001)) as client:
        async with contextlib.aclosing(client.as_completed(queries(20))) as results:
            async for _query, _result in results:
                running = [t for t in asyncio.all_tasks() if t.get_name().startswith(TASK_NAME)]
                break
        assert len(running) > 10  # the rest of the batch, queued or in flight, at the break
        assert all(task.done() for task in running)
        sent = len(server.seen)
        assert sent < 20
        stats = client.statistics()
        assert sum(pool.queued for pool in stats.pools) == 0
        # Requests cut on the wire keep their slots until their leases end (the server may
        # still count them): at most the two that were in flight.
        assert sum(pool.in_flight for pool in stats.pools) <= 2
        await asyncio.sleep(0.01)
        assert len(server.seen) == sent


def test_grace_must_be_a_finite_non_negative_number() -> None:
    client = AmplitudeClient("key", "secret")
    for bad in (-1.0, float("nan"), "5"):
        with pytest.raises(ConfigurationError, match="grace"):
            asyncio.run(client.aclose(grace=bad))  # type: ignore[arg-type]


async def test_close_cuts_a_backoff_short_and_sends_nothing_more() -> None:
    seen: list[str] = []

    async def failing(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(status=503, body=b"unavailable")

    # A 1000-second backoff floor: the test would hang if the close did not cut it.
    policy = RetryPolicy(backoff_base=2000.0, backoff_cap=2000.0)
    async with serve(failing) as url:
        client = make(url, retry_policy=policy)
        call = asyncio.create_task(client.run(queries(1)[0]))
        # Poll the client's own counter: the retry is recorded just before the backoff starts.
        while client.statistics().retries == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        await client.aclose()
        with pytest.raises(ClientClosed, match="not retried"):
            await call
    assert len(seen) == 1
