"""OpenTelemetry traces and metrics of a client (the optional ``otel`` extra).

Nothing here imports ``opentelemetry`` until the application has: a client built with
telemetry on (the default) looks for it in :data:`sys.modules` (at most every
:data:`RECHECK` seconds), so a program that never uses OpenTelemetry never loads it, and one that
configures it after creating its clients is seen within a second. Providers given to the client
are used at once. Names, units and attributes are in the README's "Observability" table.

Traces: a span ``amplitude.query`` per query (from the call to its result, whether it was
sent, answered by the cache or joined an identical query in flight), current while the query
runs so that it is the child of the caller's span; and a ``GET`` span (kind CLIENT, the HTTP
client semantic conventions) per request sent, its child.

Metrics: counters and histograms recorded as requests end, and observable gauges read from
the client's :meth:`~amplitude_async.client.AmplitudeClient.statistics` at each collection.
Instruments are created once per meter provider and shared by the clients using it.

Without an SDK the global providers are the API's proxies, whose spans record nothing and whose
instruments drop every measurement; the client checks for that
(:meth:`Telemetry.live`, at most every second) and then skips the work, so the API alone costs
next to nothing. An SDK set later is used within a second.
"""

from __future__ import annotations

import hashlib
import sys
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .errors import AmplitudeError, RateLimited
from .sansio import Redactor, Request
from .scheduler import SchedulerStatistics, Ticket

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import Span, TracerProvider

    from .queries import Query

__all__ = ["SCOPE", "Telemetry", "load"]

SCOPE = "amplitude_async"
"""The instrumentation scope (tracer and meter name)."""

RECHECK = 1.0
"""Seconds between checks whether an SDK has been configured (see :meth:`Telemetry.live`)."""


def project_label(api_key: str) -> str:
    """The ``amplitude.project`` attribute of a project: the start of the one-way hash that
    names its shared budget in Redis (``redis_store.budget_key_tag``), never the key."""
    return hashlib.sha256(b"amplitude-async budget\0" + api_key.encode()).hexdigest()[:12]


def load(
    *,
    server: str,
    api_key: str,
    redact: Redactor,
    statistics: Callable[[], SchedulerStatistics],
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
) -> Telemetry:
    """The telemetry of a client of ``server`` with ``api_key``. ``None`` providers mean the
    global ones (no-op until an SDK sets them)."""
    return Telemetry(
        server, project_label(api_key), redact, statistics, tracer_provider, meter_provider
    )


def _unset_meter_provider() -> type:
    """The class of the global meter provider before an SDK sets one (private to the API,
    hence looked up defensively: without it, measurements are always made)."""
    try:
        from opentelemetry.metrics._internal import _ProxyMeterProvider
    except ImportError:  # pragma: no cover - depends on the API's version
        return type(None)
    proxy: type = _ProxyMeterProvider
    return proxy


class _Instruments:
    """The instruments of one meter provider, and the clients its gauges read."""

    def __init__(self, provider: MeterProvider, version: str) -> None:
        meter = provider.get_meter(SCOPE, version)
        self.sources: weakref.WeakSet[Telemetry] = weakref.WeakSet()
        self.requests = meter.create_counter(
            "amplitude.client.requests", "{request}", "Requests sent (each attempt)"
        )
        self.cost = meter.create_counter(
            "amplitude.client.cost", "{cost}", "Cost spent: the cost of every request sent"
        )
        self.rate_limited = meter.create_counter(
            "amplitude.client.rate_limited", "{response}", "429 answers"
        )
        self.retries = meter.create_counter(
            "amplitude.client.retries", "{retry}", "Requests sent again after a failure"
        )
        self.cache_hits = meter.create_counter(
            "amplitude.client.cache.hits", "{query}", "Queries answered by the result cache"
        )
        self.cost_saved = meter.create_counter(
            "amplitude.client.cost.saved", "{cost}", "Cost not spent thanks to cache/coalescing"
        )
        self.queue_wait = meter.create_histogram(
            "amplitude.client.queue.wait", "s", "Seconds a request waited for the budgets"
        )
        self.duration = meter.create_histogram(
            "amplitude.client.request.duration", "s", "Seconds a request spent on the wire"
        )
        meter.create_observable_gauge(
            "amplitude.budget.used", [self._used], "{cost}", "Cost occupying each window now"
        )
        meter.create_observable_gauge(
            "amplitude.budget.remaining",
            [self._remaining],
            "{cost}",
            "Cost each window could still admit now",
        )
        meter.create_observable_gauge(
            "amplitude.client.in_flight",
            [self._in_flight],
            "{request}",
            "Requests in flight in the project (every process sharing the budget)",
        )
        meter.create_observable_gauge(
            "amplitude.client.queued",
            [self._queued],
            "{request}",
            "Requests of this process waiting for the budgets",
        )
        meter.create_observable_gauge(
            "amplitude.budget.processes",
            [self._processes],
            "{process}",
            "Processes attached to the project's budget",
        )

    def _snapshots(self) -> Iterator[tuple[dict[str, str], SchedulerStatistics]]:
        for source in list(self.sources):
            stats = source.statistics()
            yield (
                {"server.address": source.server_address, "amplitude.project": source.project},
                stats,
            )

    def _window_values(self, remaining: bool) -> Iterator[Observation]:
        from opentelemetry.metrics import Observation

        for base, stats in self._snapshots():
            for pool in stats.pools:
                for window in pool.windows:
                    value = window.remaining if remaining else window.used
                    attributes = {**base, "amplitude.pool": str(pool.pool)}
                    attributes["amplitude.window"] = window.name
                    yield Observation(value, attributes)

    def _used(self, options: CallbackOptions) -> Iterator[Observation]:
        return self._window_values(remaining=False)

    def _remaining(self, options: CallbackOptions) -> Iterator[Observation]:
        return self._window_values(remaining=True)

    def _pool_values(self, queued: bool) -> Iterator[Observation]:
        from opentelemetry.metrics import Observation

        for base, stats in self._snapshots():
            for pool in stats.pools:
                value = pool.queued if queued else pool.in_flight
                yield Observation(value, {**base, "amplitude.pool": str(pool.pool)})

    def _in_flight(self, options: CallbackOptions) -> Iterator[Observation]:
        return self._pool_values(queued=False)

    def _queued(self, options: CallbackOptions) -> Iterator[Observation]:
        return self._pool_values(queued=True)

    def _processes(self, options: CallbackOptions) -> Iterator[Observation]:
        from opentelemetry.metrics import Observation

        for base, stats in self._snapshots():
            yield Observation(stats.processes, base)


# One set of instruments per meter provider: creating an instrument twice on a provider would
# drop the second gauge's callbacks.
_INSTRUMENTS: weakref.WeakKeyDictionary[Any, _Instruments] = weakref.WeakKeyDictionary()


def _instruments_for(provider: MeterProvider, version: str) -> _Instruments:
    try:
        known = _INSTRUMENTS.get(provider)
    except TypeError:  # a provider that cannot be weakly referenced: no sharing
        return _Instruments(provider, version)
    if known is None:
        known = _INSTRUMENTS[provider] = _Instruments(provider, version)
    return known


class Telemetry:
    """The spans and metrics of one client (built by :func:`load`)."""

    def __init__(
        self,
        server: str,
        project: str,
        redact: Redactor,
        statistics: Callable[[], SchedulerStatistics],
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
    ) -> None:
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._tracers: tuple[Any, Any] = (None, None)  # (provider, its tracer)
        self._live = False
        self._recheck_at = -1.0
        self._closed = False
        parts = urllib.parse.urlsplit(server)
        self.server_address = parts.hostname or ""
        self.project = project
        self._server_port = parts.port or (443 if parts.scheme == "https" else 80)
        self._redact = redact
        self.statistics = statistics
        self._ready = False
        if tracer_provider is not None or meter_provider is not None:
            self._activate()

    def _activate(self) -> bool:
        """Load the API once the application has (see the module doc); whether it is loaded."""
        if self._ready:
            return True
        if "opentelemetry" not in sys.modules or self._closed:
            return False
        try:
            from opentelemetry import context, metrics, trace
        except ImportError:  # pragma: no cover - a broken installation
            return False
        from . import __version__

        self._context = context
        self._trace = trace
        self._metrics_api = metrics
        self._no_tracing = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
        self._no_metrics = (_unset_meter_provider(), metrics.NoOpMeterProvider)
        provider = self._meter_provider or metrics.get_meter_provider()
        self._metrics = _instruments_for(provider, __version__)
        self._metrics.sources.add(self)
        self._ready = True
        return True

    def __repr__(self) -> str:
        return f"<Telemetry server={self.server_address!r}>"

    def live(self) -> bool:
        """Whether spans or measurements are recorded now; checked at most every
        :data:`RECHECK` seconds, so that the API without an SDK costs next to nothing."""
        now = time.monotonic()
        if now >= self._recheck_at:
            self._live = self._activate() and (self.tracing() is not None or self.measuring())
            self._recheck_at = now + RECHECK
        return self._live

    def tracing(self) -> Any:
        """The tracer to use now, or ``None`` if spans would record nothing (no SDK)."""
        if not self._ready:
            return None
        provider = self._tracer_provider or self._trace.get_tracer_provider()
        if isinstance(provider, self._no_tracing):
            return None
        known, tracer = self._tracers
        if known is not provider:
            from . import __version__

            tracer = provider.get_tracer(SCOPE, __version__)
            self._tracers = (provider, tracer)
        return tracer

    def measuring(self) -> bool:
        """Whether measurements are kept now (not the API's no-op or unset provider)."""
        if not self._ready:
            return False
        provider = self._meter_provider or self._metrics_api.get_meter_provider()
        return not isinstance(provider, self._no_metrics)

    def close(self) -> None:
        """Stop reporting this client's gauges (it was closed)."""
        self._closed = True
        if self._ready:
            self._metrics.sources.discard(self)

    def start_query(
        self, query: Query[Any], cost: int, priority: int
    ) -> tuple[Span, Token[Context]] | None:
        """Start the query's span and make it current: (span, token to detach); ``None`` when
        not tracing."""
        tracer = self.tracing()
        if tracer is None:
            return None
        span = tracer.start_span(
            "amplitude.query",
            attributes={
                "amplitude.endpoint": query.endpoint,
                "amplitude.pool": str(query.pool),
                "amplitude.cost": cost,
                "amplitude.priority": priority,
                "server.address": self.server_address,
            },
        )
        token = self._context.attach(self._trace.set_span_in_context(span))
        return span, token

    def end_query(
        self,
        started: tuple[Span, Token[Context]] | None,
        query: Query[Any],
        cost: int,
        attempts: int,
        queue_wait: float,
        cache_hit: bool,
        coalesced: bool,
        saved: int,
        status: int | None,
        error_type: str | None,
    ) -> None:
        """End the query's span with what happened, and count what was saved."""
        if started is not None:
            span, token = started
            self._context.detach(token)
            ended: dict[str, Any] = {
                "amplitude.attempts": attempts,
                "amplitude.queue_wait": queue_wait,
                "amplitude.cache_hit": cache_hit,
                "amplitude.coalesced": coalesced,
            }
            if status is not None:
                ended["http.response.status_code"] = status
            if error_type is not None:
                ended["error.type"] = error_type
                span.set_status(self._trace.StatusCode.ERROR)
            span.set_attributes(ended)
            span.end()
        if not (cache_hit or saved) or not self.measuring():
            return
        metrics = self._metrics
        endpoint = {"amplitude.endpoint": query.endpoint, "amplitude.project": self.project}
        if cache_hit:
            metrics.cache_hits.add(1, endpoint)
        if saved:
            by = "cache" if cache_hit else "coalescing"
            metrics.cost_saved.add(saved, {**endpoint, "amplitude.saved_by": by})

    def start_attempt(
        self, query: Query[Any], request: Request, ticket: Ticket, number: int
    ) -> Span | None:
        """Start the span of one request sent (a child of the current query span); ``None``
        when not tracing."""
        tracer = self.tracing()
        if tracer is None:
            return None
        attributes: dict[str, Any] = {
            "http.request.method": "GET",
            "url.full": self._redact(request.url),
            "server.address": self.server_address,
            "server.port": self._server_port,
            "amplitude.endpoint": query.endpoint,
            "amplitude.queue_wait": ticket.waited,
        }
        if number > 1:
            attributes["http.request.resend_count"] = number - 1
        span: Span = tracer.start_span(
            "GET", kind=self._trace.SpanKind.CLIENT, attributes=attributes
        )
        return span

    def end_attempt(
        self,
        span: Span | None,
        query: Query[Any],
        ticket: Ticket,
        status: int | None,
        error_type: str | None,
        duration: float,
        number: int,
    ) -> None:
        """End a request's span and record its metrics."""
        outcome: dict[str, Any] = {}
        if status is not None:
            outcome["http.response.status_code"] = status
        if error_type is not None:
            outcome["error.type"] = error_type
        if span is not None:
            if error_type is not None:
                span.set_status(self._trace.StatusCode.ERROR)
            span.set_attributes(outcome)
            span.end()
        if not self.measuring():
            return
        pool = {"amplitude.pool": str(ticket.pool), "amplitude.project": self.project}
        attributes = {"amplitude.endpoint": query.endpoint, **pool, **outcome}
        metrics = self._metrics
        metrics.requests.add(1, attributes)
        metrics.cost.add(ticket.cost, pool)
        metrics.duration.record(duration, attributes)
        metrics.queue_wait.record(ticket.waited, pool)
        if status == 429:
            metrics.rate_limited.add(1, pool)

    def retried(self, query: Query[Any], error: AmplitudeError) -> None:
        """Count a retry decided after ``error``."""
        if not self.measuring():
            return
        kind = "rate_limited" if isinstance(error, RateLimited) else type(error).__name__
        self._metrics.retries.add(
            1,
            {
                "amplitude.endpoint": query.endpoint,
                "amplitude.pool": str(query.pool),
                "amplitude.project": self.project,
                "error.type": kind,
            },
        )
