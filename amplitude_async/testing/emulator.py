"""The built-in emulator: Amplitude's Dashboard REST API served by aiohttp over a dataset.

:class:`Emulator` answers every endpoint with the documented response shape, computed by
:func:`~amplitude_async.testing.engine.answer` from a :class:`~.dataset.Dataset`, and enforces
the project limits strictly with an :class:`~.enforcer.Enforcer` using the client's own cost
model (``parse_query(...).cost`` and ``.pool``)::

    async with Emulator(SyntheticDataset(seed=1)) as emu:
        async with AmplitudeClient(emu.api_key, emu.secret_key, base_url=emu.url) as client:
            ...

What a request goes through, in order (each step is a place a test can aim at):

1. ``arrival_delay`` (network latency on the way in), so the stamp happens late;
2. method (only GET, else 405) and path (unknown endpoint: 404, before authentication);
3. HTTP Basic authentication: missing or wrong keys give 401, an endpoint listed in
   ``forbidden`` gives 403;
4. the parameters are rebuilt with :func:`~amplitude_async.queries.parse_query`: 400 naming the
   wire parameter at fault;
5. the enforcer stamps the arrival: 429 ``Exceeded concurrent limit with query of cost N`` or
   ``Exceeded rate limit with query of cost N``; a rejected request takes nothing;
6. faults (5xx, slow, hang, dropped connection) drawn for accepted requests only;
7. ``processing_time``, then the engine's answer (200, or 400/404 in the error envelope).

The steps of a cohort download (``/api/5/cohorts/...``) pass the same method and
authentication checks, then take the cohort pool's ticket (a request) besides the standard
pool's, at cost 0, and are answered by :mod:`~amplitude_async.testing.cohorts`.

An accepted request stays in flight until its response has been written (or its connection is
gone), which is the strictest moment a server could release it.

Decisions where Amplitude is silent: authentication is checked after the path, so an unknown
path is 404 for anyone; requests rejected before step 5 are not stamped and cost nothing;
``now`` (what realtime, the events list, retention and LTV see) defaults to noon of the
dataset's last day in its time zone, so answers are deterministic.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import random
import sys
from collections import deque
from collections.abc import Collection, Mapping
from datetime import datetime, time
from typing import Any, Final, Literal, TextIO

from aiohttp import web

from ..clock import Clock, LoopClock
from ..errors import InvalidQuery
from ..limits import DEFAULT_LIMITS, Limits, Pool
from ..queries import CohortsList, Query, parse_query
from .cohorts import CohortService, check_step_id, parse_step
from .dataset import Dataset, SyntheticDataset
from .enforcer import Enforcer, Reading
from .engine import EngineError, answer
from .wire import (
    Delay,
    EmulatorStatistics,
    FaultKind,
    Faults,
    RequestRecord,
    _check_delay,
    _draw_delay,
    _error,
)

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_SECRET_KEY",
    "Delay",
    "Emulator",
    "EmulatorStatistics",
    "FaultKind",
    "Faults",
    "RequestRecord",
    "serve",
]

DEFAULT_API_KEY: Final = "emulator-key"
DEFAULT_SECRET_KEY: Final = "emulator-secret"


ReadingName = Reading | Literal["sliding", "in-flight"]
"""The enforcer's readings, also under the names ``"sliding"`` and ``"in-flight"``."""

_READINGS: Final[Mapping[str, Reading]] = {
    "window": "window",
    "sliding": "window",
    "in_flight": "in_flight",
    "in-flight": "in_flight",
}


_log = logging.getLogger(__name__)

_HANG_POLL: Final = 0.02
"""Real seconds between checks, while hanging, of whether the client has gone away."""


def _default_now(dataset: Dataset) -> datetime:
    return datetime.combine(dataset.end, time(12), tzinfo=dataset.tz)


class Emulator:
    """Amplitude's Dashboard REST API over ``dataset``, with strict limits (module docstring).

    ``limits`` are enforced on ``clock`` (the running loop's time by default), so
    ``Limits().scaled(0.01)`` gives a 3-second window. ``reading`` is the enforcer's reading
    of the per-window cost limit (``"window"``/``"sliding"`` or ``"in_flight"``/``"in-flight"``).
    ``now`` is the moment realtime answers are computed for. ``forbidden`` lists endpoint names
    (``Query.endpoint``, e.g. ``"user_activity"``) the key may not use (403). ``seed`` drives
    the random delays. ``keep_log`` bounds :attr:`requests` for a long-running server: it keeps
    the ``keep_log`` most recent records (at most twice as many between trims), and
    :meth:`statistics` then covers those records only.

    Cohorts (:attr:`cohorts`, see :mod:`~amplitude_async.testing.cohorts`): jobs stay in
    progress for ``cohort_job_time`` seconds; files over ``cohort_direct_bytes`` are sent as a
    302 to a storage server (started with the emulator) whose links expire after
    ``cohort_link_lifetime`` seconds (default a minute, scaled with ``limits.window``);
    ``cohort_gzip=False`` serves plain CSV; ``synthetic_cohorts`` adds generated cohorts by id
    and size.

    Serve it with ``async with`` (or :meth:`start` / :meth:`close`); :attr:`app` is the
    :class:`aiohttp.web.Application` for other ways of serving.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        api_key: str = DEFAULT_API_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        limits: Limits = DEFAULT_LIMITS,
        reading: ReadingName = "window",
        clock: Clock | None = None,
        now: datetime | None = None,
        faults: Faults | None = None,
        arrival_delay: Delay | None = None,
        processing_time: Delay | None = None,
        forbidden: Collection[str] = (),
        seed: int | None = 0,
        keep_log: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        cohort_job_time: float = 1.0,
        cohort_direct_bytes: int = 64 * 1024,
        cohort_link_lifetime: float | None = None,
        cohort_gzip: bool = True,
        synthetic_cohorts: Mapping[str, int] | None = None,
    ) -> None:
        if reading not in _READINGS:
            raise ValueError(f"reading must be one of {sorted(_READINGS)}, got {reading!r}")
        if now is not None and now.tzinfo is None:
            raise ValueError("now must be an aware datetime")
        _check_delay("arrival_delay", arrival_delay)
        _check_delay("processing_time", processing_time)
        self.dataset = dataset
        self.api_key = api_key
        self.secret_key = secret_key
        self.limits = limits
        self.clock: Clock = clock if clock is not None else LoopClock()
        self.now = now if now is not None else _default_now(dataset)
        self.faults = faults
        self.arrival_delay = arrival_delay
        self.processing_time = processing_time
        self.forbidden = frozenset(forbidden)
        self.host = host
        self.port = port
        self.enforcer = Enforcer(limits, self.clock, reading=_READINGS[reading])
        if keep_log is not None and keep_log < 1:
            raise ValueError(f"keep_log must be positive, got {keep_log!r}")
        self.keep_log = keep_log
        self.requests: list[RequestRecord] = []
        """Every request, in the order it was finished with."""
        self._rng = random.Random(seed)
        self._fault_rng = random.Random(faults.seed if faults is not None else None)
        self._authorization = "Basic " + base64.b64encode(
            f"{api_key}:{secret_key}".encode()
        ).decode("ascii")
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        if cohort_link_lifetime is None:
            # A minute at Amplitude's limits, scaled with them (a fast test clock).
            cohort_link_lifetime = 60.0 * limits.window / DEFAULT_LIMITS.window
        self.cohorts = CohortService(
            dataset,
            self.now,
            self.clock,
            synthetic=synthetic_cohorts or {},
            job_time=cohort_job_time,
            direct_bytes=cohort_direct_bytes,
            link_lifetime=cohort_link_lifetime,
            compress=cohort_gzip,
            host=host,
        )
        """The cohort endpoints: catalogue, jobs, the storage server and its test knobs."""
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._handle)

    @property
    def url(self) -> str:
        """``http://host:port`` of the running emulator."""
        if self._url is None:
            raise RuntimeError("the emulator is not running: use 'async with' or start()")
        return self._url

    async def start(self) -> str:
        """Start serving on ``host:port`` (a free port when 0) and return the URL."""
        if self._runner is not None:
            return self.url
        await self.cohorts.start()
        # A short shutdown timeout: hanging handlers notice the stop within _HANG_POLL anyway.
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            await self.cohorts.close()
            raise
        self._runner = runner
        port = runner.addresses[0][1]
        self._url = f"http://{self.host}:{port}"
        return self._url

    async def close(self) -> None:
        """Stop serving; requests left hanging are abandoned."""
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None
        await self.cohorts.close()
        self._url = None

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        where = self._url or "not running"
        return f"<Emulator {where} requests={len(self.requests)} {self.enforcer!r}>"

    def statistics(self) -> EmulatorStatistics:
        """Summarise :attr:`requests`."""
        records = self.requests
        concurrent = sum(1 for r in records if r.limit == "concurrent")
        rate = sum(1 for r in records if r.limit == "rate")
        accepted = [r for r in records if r.accepted]
        return EmulatorStatistics(
            requests=len(records),
            answered=sum(1 for r in records if r.status == 200),
            rate_limited_concurrent=concurrent,
            rate_limited_rate=rate,
            client_errors=sum(1 for r in records if r.status is not None and 400 <= r.status < 500)
            - concurrent
            - rate,
            faults=sum(1 for r in records if r.fault is not None),
            cost_accepted=sum(r.cost or 0 for r in accepted if r.pool is Pool.STANDARD),
            cost_served=sum(
                r.cost or 0 for r in accepted if r.pool is Pool.STANDARD and r.status == 200
            ),
            peak_window_cost=self._peak_window_cost(accepted),
            peak_in_flight=self.enforcer.peak_in_flight[Pool.STANDARD],
        )

    def _peak_window_cost(self, accepted: list[RequestRecord]) -> int:
        stamps = sorted((r.at, r.cost or 0) for r in accepted if r.pool is Pool.STANDARD)
        window: deque[tuple[float, int]] = deque()
        used = peak = 0
        for at, cost in stamps:
            while window and window[0][0] + self.limits.window <= at:
                used -= window.popleft()[1]
            window.append((at, cost))
            used += cost
            peak = max(peak, used)
        return peak

    # -- the request path -------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        await self.clock.sleep(_draw_delay(self.arrival_delay, self._rng))
        at = self.clock.time()
        params = tuple(request.rel_url.query.items())
        path = request.path

        def record(status: int | None, **kwargs: Any) -> None:
            self.requests.append(
                RequestRecord(at, path, params, status=status, finished=self.clock.time(), **kwargs)
            )
            if self.keep_log is not None and len(self.requests) > 2 * self.keep_log:
                # Trimmed in halves so that appending stays cheap on average.
                del self.requests[: -self.keep_log]

        step = parse_step(path)
        if step is not None:
            return await self._cohort_step(request, step, params, record)
        early = self._refuse(request, path, params)
        if isinstance(early, web.Response):
            record(early.status, pool=None, cost=None)
            return early
        query = early
        pool, cost = query.pool, query.cost
        arrival = self.enforcer.arrive(pool, cost)
        if arrival.ticket is None:
            kind = arrival.rejected
            limit = "concurrent limit" if kind == "concurrent" else "rate limit"
            record(429, pool=pool, cost=cost, limit=kind)
            return _error(429, f"Exceeded {limit} with query of cost {cost}")
        sent: web.StreamResponse | None = None
        fault: FaultKind | None = None
        try:
            fault = self.faults.draw(self._fault_rng) if self.faults is not None else None
            sent = await self._serve_accepted(request, query, fault)
        finally:
            # Also on cancellation: the client went away, so the request is no longer in flight.
            self.enforcer.finish(arrival.ticket)
            record(sent.status if sent is not None else None, pool=pool, cost=cost, fault=fault)
        if sent is None:
            # Nothing was sent (drop, hang, or the client left): aiohttp still wants a response,
            # which it cannot deliver on a closed connection.
            return web.Response(status=499)
        return sent

    async def _cohort_step(
        self,
        request: web.Request,
        step: tuple[str, str],
        params: tuple[tuple[str, str], ...],
        record: Any,
    ) -> web.StreamResponse:
        """A step of a cohort download: step 1 takes a slot of the cohort pool (and its
        window) besides one of the standard pool; every step weighs nothing in the cost
        windows."""
        kind, ident = step
        early = self._check_auth(request)
        if early is None:
            problem = check_step_id(kind, ident)
            if problem is not None:
                early = _error(400, problem)
            elif kind != "request" and params:
                early = _error(400, f"{params[0][0]}: unknown parameter")
        if early is not None:
            record(early.status, pool=None, cost=None)
            return early
        pools = [Pool.STANDARD, Pool.COHORT] if kind == "request" else [Pool.STANDARD]
        tickets: list[int] = []
        for pool in pools:
            arrival = self.enforcer.arrive(pool, 0)
            if arrival.ticket is None:
                for ticket in tickets:
                    self.enforcer.finish(ticket)
                limit = "concurrent limit" if arrival.rejected == "concurrent" else "rate limit"
                record(429, pool=pool, cost=0, limit=arrival.rejected)
                return _error(429, f"Exceeded {limit} with query of cost 0")
            tickets.append(arrival.ticket)
        response: web.StreamResponse | None = None
        try:
            await self.clock.sleep(_draw_delay(self.processing_time, self._rng))
            if kind == "request":
                response = self.cohorts.request(ident, params)
            elif kind == "status":
                response = self.cohorts.status(ident)
            else:
                response = await self.cohorts.file(request, ident)
            if not response.prepared:
                await response.prepare(request)
                await response.write_eof()
        except ConnectionError:
            response = None
        finally:
            for ticket in tickets:
                self.enforcer.finish(ticket)
            status = response.status if response is not None else None
            record(status, pool=pools[-1], cost=0)
        return response if response is not None else web.Response(status=499)

    def _check_auth(self, request: web.Request) -> web.Response | None:
        """405 for anything but GET, 401 for missing or wrong credentials."""
        if request.method != "GET":
            response = _error(405, f"{request.method} is not supported: every endpoint is GET")
            response.headers["Allow"] = "GET"
            return response
        auth = request.headers.get("Authorization")
        if auth is None:
            return _error(
                401,
                "Use HTTP Basic authentication with the project's API key and secret key",
                message="Missing credentials",
            )
        if auth != self._authorization:
            return _error(401, _describe_bad_auth(auth, self.api_key))
        return None

    def _refuse(
        self, request: web.Request, path: str, params: tuple[tuple[str, str], ...]
    ) -> web.Response | Query[Any]:
        """The early answers (405, 404, 401, 403, 400), or the query to serve."""
        if request.method != "GET":
            response = _error(405, f"{request.method} is not supported: every endpoint is GET")
            response.headers["Allow"] = "GET"
            return response
        problem: InvalidQuery | None = None
        query: Query[Any] | None = None
        try:
            query = parse_query(path, params)
        except InvalidQuery as exc:
            if exc.field == "path":
                return _error(404, f"No endpoint at {path}")
            problem = exc
        auth = request.headers.get("Authorization")
        if auth is None:
            return _error(
                401,
                "Use HTTP Basic authentication with the project's API key and secret key",
                message="Missing credentials",
            )
        if auth != self._authorization:
            return _error(401, _describe_bad_auth(auth, self.api_key))
        if problem is not None:
            details = f"{problem.field}: {problem.message}"
            if path == "/api/2/useractivity" and problem.field == "user":
                details = "Argument user must be an int"  # the live API's own words
            if path == "/api/2/retention" and problem.field == "rm":
                details = problem.message  # "Invalid retention method.", as the live API says
            return _error(400, details, message="Invalid chart definition")
        assert query is not None
        if query.endpoint in self.forbidden:
            return _error(403, f"This API key may not use the {query.endpoint} endpoint")
        return query

    async def _serve_accepted(
        self, request: web.Request, query: Query[Any], fault: FaultKind | None
    ) -> web.StreamResponse | None:
        """Answer an accepted request; return the response sent, or None if none was."""
        await self.clock.sleep(_draw_delay(self.processing_time, self._rng))
        if fault == "drop":
            if request.transport is not None:
                request.transport.abort()
            return None
        if fault == "hang":
            await self._hang(request)
            return None
        if fault == "slow":
            assert self.faults is not None
            await self.clock.sleep(self.faults.slow_seconds)
        if fault == "error":
            assert self.faults is not None
            status = self._fault_rng.choice(self.faults.error_statuses)
            response = _error(status, "Injected failure (emulator fault injection)")
        else:
            response = self._answer(query)
        # Writing here (not after returning) keeps the request in flight until it is sent.
        try:
            await response.prepare(request)
            await response.write_eof()
        except ConnectionError:
            return None
        return response

    def _answer(self, query: Query[Any]) -> web.Response:
        try:
            if isinstance(query, CohortsList):
                body = self.cohorts.list_body(query.include_sync_info)
            else:
                body = answer(query, self.dataset, self.now)
        except EngineError as exc:
            details = f"{exc.field}: {exc.message}" if exc.field else exc.message
            message = "Not found" if exc.status == 404 else "Invalid chart definition"
            return _error(exc.status, details, message=message)
        except Exception as exc:
            # A defect in the engine must still reach the client as an API error (and show in
            # the log as a 500), not as aiohttp's bare text page.
            _log.exception("the answer engine failed on %r", query)
            return _error(500, f"Emulator error: {type(exc).__name__}: {exc}")
        return web.Response(body=json.dumps(body).encode(), content_type="application/json")

    async def _hang(self, request: web.Request) -> None:
        # aiohttp does not cancel a handler whose client disconnected, so watch the transport.
        while not self._stopping.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), _HANG_POLL)


def _describe_bad_auth(header: str, api_key: str) -> str:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return "Unsupported authorization scheme: use HTTP Basic"
    try:
        key, sep, _ = base64.b64decode(token, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return "Malformed Basic credentials"
    if not sep:
        return "Malformed Basic credentials: expected api_key:secret_key"
    if key != api_key:
        return "Invalid API key"
    return "Invalid secret key"


async def serve(
    port: int = 8787,
    seed: int = 1,
    users: int = 2000,
    days: int = 90,
    *,
    host: str = "127.0.0.1",
    limits: Limits = DEFAULT_LIMITS,
    reading: ReadingName = "window",
    api_key: str = DEFAULT_API_KEY,
    secret_key: str = DEFAULT_SECRET_KEY,
    tz: str | None = None,
    out: TextIO | None = None,
) -> None:
    """Serve an emulator over a synthetic dataset until cancelled (the CLI's ``emulator``).

    Prints the URL and the credentials to ``out`` (standard output by default).
    """
    out = out if out is not None else sys.stdout
    dataset = SyntheticDataset(seed=seed, users=users, days=days, tz=tz)
    emulator = Emulator(
        dataset,
        api_key=api_key,
        secret_key=secret_key,
        limits=limits,
        reading=reading,
        host=host,
        port=port,
        keep_log=10_000,
    )
    async with emulator:
        print(
            f"Amplitude emulator at {emulator.url}\n"
            f"  data:   {users} synthetic users, {dataset.start} .. {dataset.end} "
            f"(seed {seed}, {len(dataset)} events)\n"
            f"  limits: {limits.concurrent} in flight, {limits.cost_per_window} cost per "
            f"{limits.window:g} s, {limits.cost_per_hour} per {limits.hour:g} s\n"
            f"  credentials:\n"
            f"    AMPLITUDE_API_KEY={api_key}\n"
            f"    AMPLITUDE_SECRET_KEY={secret_key}\n"
            f"  use base_url={emulator.url!r} (CLI: --base-url {emulator.url}); Ctrl-C stops",
            file=out,
            flush=True,
        )
        await asyncio.Event().wait()
