"""The client against a misbehaving server on 127.0.0.1: retry storms, huge bodies, echoed keys."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import sys
from datetime import date
from typing import Any

import pytest
from aiohttp import web
from localserver import StreamingServer, serve

from amplitude_async.client import AmplitudeClient
from amplitude_async.errors import (
    AmplitudeError,
    BadRequest,
    RateLimited,
    ResponseTooLarge,
    ResponseValidationError,
    ServerError,
    TransportError,
)
from amplitude_async.limits import Limits
from amplitude_async.queries import ActiveUsers, EventsList, UserComposition
from amplitude_async.retry import RetryPolicy

START, END = date(2026, 9, 1), date(2026, 9, 7)
KEY, SECRET = "api-key-5f3a9c0d2b", "secret-key-8e71d4c6a0"
CREDENTIALS = (
    KEY,
    SECRET,
    f"{KEY}:{SECRET}",
    base64.b64encode(f"{KEY}:{SECRET}".encode()).decode(),
)
RATE_429 = {"error": {"http_code": 429, "message": "Exceeded rate limit with query of cost 7"}}
CONCURRENT_429 = {"error": {"http_code": 429, "message": "Exceeded concurrent limit"}}
MIB = 1024 * 1024


class Scripted:
    """Answers every GET with ``answer(n)`` for the n-th request; records the loop time of each."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.times: list[float] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.times.append(asyncio.get_running_loop().time())
        status, headers, body = self.answer(len(self.times))
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return web.Response(status=status, headers=headers, body=raw)


def client(url: str, **kwargs: Any) -> AmplitudeClient:
    kwargs.setdefault("limits", Limits().scaled(0.001))
    return AmplitudeClient(KEY, SECRET, base_url=url, **kwargs)


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


# -- retry storms ------------------------------------------------------------------------------


@pytest.mark.parametrize("retry_after", ["0", "Wed, 21 Oct 2015 07:28:00 GMT", "-5"])
async def test_retry_after_zero_or_past_waits_the_window(retry_after: str) -> None:
    # Before the fix: 51 requests in 0.04 s. Now each rate 429 pauses the pool a full window,
    # and the total wait is bounded: 0.05 s windows, at most 0.225 s of waiting -> 4 retries.
    limits = Limits().scaled(0.05 / 300)
    policy = RetryPolicy(max_retry_time=0.225, backoff_base=0.001)
    server = Scripted(lambda n: (429, {"Retry-After": retry_after}, RATE_429))
    async with serve(server.handle) as url, client(url, limits=limits, retry_policy=policy) as c:
        with pytest.raises(RateLimited):
            await c.run(UserComposition(START, END, "country"))
        assert c.statistics().rate_limited == 5
    assert len(server.times) == 5
    # Timers may fire up to the loop's clock resolution early.
    assert min(gaps(server.times)) >= 0.05 * 0.9


async def test_concurrent_429_with_retry_after_zero_backs_off_with_a_growing_floor() -> None:
    policy = RetryPolicy(backoff_base=0.02, max_rate_limited_retries=3)
    server = Scripted(
        lambda n: (429, {"Retry-After": "0"}, CONCURRENT_429) if n <= 3 else (200, {}, {})
    )
    async with serve(server.handle) as url, client(url, retry_policy=policy) as c:
        with pytest.raises(ResponseValidationError):  # the 4th answer is 200 but empty
            await c.run(EventsList())
    assert len(server.times) == 4
    floors = [0.01, 0.02, 0.04]  # half of each doubling ceiling
    assert all(gap >= floor * 0.9 for gap, floor in zip(gaps(server.times), floors, strict=True))


async def test_transient_errors_back_off_with_a_floor() -> None:
    policy = RetryPolicy(backoff_base=0.02, max_retries=3)
    server = Scripted(lambda n: (503, {}, b"unavailable"))
    async with serve(server.handle) as url, client(url, retry_policy=policy) as c:
        with pytest.raises(ServerError):
            await c.run(EventsList())
    assert len(server.times) == 4
    assert all(
        gap >= floor * 0.9
        for gap, floor in zip(gaps(server.times), [0.01, 0.02, 0.04], strict=True)
    )


# -- bounded bodies ----------------------------------------------------------------------------


@pytest.mark.parametrize("announce", [False, True], ids=["chunked", "content-length"])
async def test_huge_answer_is_refused_without_reading_it_all(announce: bool) -> None:
    server = StreamingServer(total=200 * MIB, announce=announce, head=b'{"data": [')
    policy = RetryPolicy(max_retries=2, backoff_base=0.001)
    async with (
        serve(server.handle) as url,
        client(url, max_body_bytes=4 * MIB, retry_policy=policy) as c,
    ):
        with pytest.raises(ResponseTooLarge) as info:
            await c.run(EventsList())
        await server.finished.wait()
    assert info.value.limit == 4 * MIB
    assert info.value.content_length == (200 * MIB if announce else None)
    assert "max_body_bytes" in str(info.value)
    (stream,) = server.streams  # an oversized answer is not retried
    assert not stream.completed
    assert isinstance(stream.error, ConnectionError)  # the client hung up mid-answer


async def test_a_body_just_under_the_cap_is_read() -> None:
    rows = [{"value": f"event {i}", "totals": i} for i in range(2000)]
    body = json.dumps({"data": rows}).encode()
    server = Scripted(lambda n: (200, {}, body))
    async with serve(server.handle) as url, client(url, max_body_bytes=len(body)) as c:
        result = await c.run(EventsList())
    assert len(result.events) == 2000


async def test_huge_error_body_is_read_only_for_its_message() -> None:
    server = StreamingServer(status=500, total=50 * MIB, head=b"upstream exploded")
    policy = RetryPolicy(max_retries=2, backoff_base=0.001)
    async with serve(server.handle) as url, client(url, retry_policy=policy) as c:
        with pytest.raises(ServerError) as info:
            await c.run(EventsList())
        while len(server.streams) < 3 or any(
            s.error is None and not s.completed for s in server.streams
        ):
            server.finished.clear()
            await server.finished.wait()
    assert info.value.message.startswith("upstream exploded")
    assert len(server.streams) == 3  # retried as any 5xx, each read only partly
    assert not any(stream.completed for stream in server.streams)


# -- echoed credentials ------------------------------------------------------------------------


def echo(status: int, shape: str) -> Any:
    def answer(request: web.Request) -> web.Response:
        auth = request.headers["Authorization"]
        token = auth.removeprefix("Basic ")
        echoed = f"header {auth} token {token} plain {KEY}:{SECRET} key {KEY} secret {SECRET}"
        if shape == "envelope":
            body: Any = {
                "error": {"message": echoed, "type": auth, "metadata": {"details": echoed}}
            }
        elif shape == "field":
            body = {"data": [{"value": "x", "totals": auth}]}
        else:
            body = echoed
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        return web.Response(status=status, body=raw)

    async def handle(request: web.Request) -> web.Response:
        return answer(request)

    return handle


@pytest.mark.parametrize(
    ("status", "shape", "error"),
    [
        (400, "envelope", BadRequest),
        (400, "text", BadRequest),
        (429, "envelope", RateLimited),
        (503, "text", ServerError),
        (200, "field", ResponseValidationError),
    ],
)
async def test_echoed_credentials_are_redacted_from_errors(
    status: int, shape: str, error: type[AmplitudeError]
) -> None:
    policy = RetryPolicy(max_retries=0, max_rate_limited_retries=0)
    async with serve(echo(status, shape)) as url, client(url, retry_policy=policy) as c:
        with pytest.raises(error) as info:
            await c.run(EventsList())
    exc = info.value
    texts = [str(exc), repr(exc), *map(str, vars(exc).values())]
    for text in texts:
        for secret in CREDENTIALS:
            assert secret not in text
    assert "[REDACTED]" in str(exc)


async def test_redaction_covers_transport_errors_quoting_the_server() -> None:
    # A broken status line is quoted by aiohttp's parser in its exception message.
    async def broken(request: web.Request) -> web.StreamResponse:
        auth = request.headers["Authorization"]
        assert request.transport is not None
        request.transport.write(f"HTTP/1.1 {auth}\r\n\r\n".encode())
        request.transport.close()
        return web.Response()

    policy = RetryPolicy(max_retries=0)
    async with serve(broken) as url, client(url, retry_policy=policy) as c:
        with pytest.raises(TransportError) as info:
            await c.run(ActiveUsers(START, END))
    for secret in CREDENTIALS:
        assert secret not in str(info.value)


# -- non-finite numbers ------------------------------------------------------------------------


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
async def test_non_finite_numbers_in_a_200_are_refused(number: bytes) -> None:
    body = b'{"data": {"series": [[' + number + b']], "xValues": ["2026-09-01"]}}'
    server = Scripted(lambda n: (200, {}, body))
    async with serve(server.handle) as url, client(url) as c:
        with pytest.raises(ResponseValidationError, match="not JSON"):
            await c.run(ActiveUsers(START, START))


async def test_command_line_stderr_does_not_show_echoed_credentials() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMPLITUDE_")}
    env.update(AMPLITUDE_API_KEY=KEY, AMPLITUDE_SECRET_KEY=SECRET)
    async with serve(echo(400, "envelope")) as url:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "amplitude_async", "query", "events_list", "--base-url", url),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, err = await process.communicate()
    assert process.returncode != 0
    assert "[REDACTED]" in err.decode()
    for secret in CREDENTIALS:
        assert secret not in out.decode() + err.decode()
