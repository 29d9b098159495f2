"""Seeing what the client does: log records, event hooks and (optionally) OpenTelemetry.

:class:`Observer` is the client's single point of report. The client opens a
:meth:`Observer.query` scope around each query (its span, and the counts the savers add to it)
and an :meth:`Observer.attempt` scope around each request the scheduler admits; after a
failure it calls :meth:`Observer.failed` with the retry decision. From those the observer

- writes records to the ``amplitude_async.client`` logger (silent by default: the package
  logger has a :class:`logging.NullHandler`): DEBUG one line per attempt, INFO for a retry or a
  pause after a 429, WARNING when retries ran out. Every field is also in the record's
  ``extra`` (``endpoint``, ``pool``, ``cost``, ``priority``, ``queue_wait``, ``attempt``,
  ``status``, ``duration``, ...), and every text passes the client's
  :class:`~amplitude_async.sansio.Redactor`;
- calls the ``event_hooks`` (``admitted``, ``response``, ``retry``, ``rate_limited``) with
  the immutable event classes below; a hook that raises is logged (``amplitude_async.hooks``)
  and the query goes on;
- feeds :mod:`amplitude_async.otel` when OpenTelemetry is installed: one span per query, a
  child span per attempt, and the metrics of the README's table.

The savers report cache hits and coalesced callers through :func:`count`, which adds to the
query scope of the current context (the coalesced flight runs in a task that copied the
context of the caller that started it, so its cache look-up lands in that caller's scope).
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from attrs import frozen

from .errors import AmplitudeError, APIError, ConfigurationError, RateLimited
from .limits import Pool
from .retry import Attempts, RetryDecision, is_retryable
from .sansio import Redactor, Request
from .scheduler import Ticket

if TYPE_CHECKING:
    from .otel import Telemetry
    from .queries import Query

__all__ = [
    "EVENTS",
    "AdmittedEvent",
    "EventHooks",
    "Observer",
    "RateLimitedEvent",
    "ResponseEvent",
    "RetryEvent",
    "count",
]

CLIENT_LOG: Final = logging.getLogger("amplitude_async.client")
HOOKS_LOG: Final = logging.getLogger("amplitude_async.hooks")


@frozen
class AdmittedEvent:
    """The budgets admitted a request; it is sent next (``admitted`` hooks).

    ``attempt`` counts sends of this query (1 the first time); ``queue_wait`` is the seconds
    this attempt waited in the scheduler.
    """

    endpoint: str
    path: str
    pool: Pool
    cost: int
    priority: int
    attempt: int
    queue_wait: float


@frozen
class ResponseEvent:
    """A request ended (``response`` hooks): ``status`` is the HTTP status (``None`` if no
    answer came), ``error`` the exception it raised (``None`` for a usable answer),
    ``duration`` the seconds on the wire."""

    endpoint: str
    path: str
    pool: Pool
    cost: int
    attempt: int
    status: int | None
    duration: float
    error: AmplitudeError | None


@frozen
class RetryEvent:
    """A failed request will be sent again after ``delay`` seconds (``retry`` hooks; a 429 also
    fires ``rate_limited``). ``attempt`` is the failed one."""

    endpoint: str
    path: str
    pool: Pool
    attempt: int
    delay: float
    error: AmplitudeError


@frozen
class RateLimitedEvent:
    """A 429 answer paused the whole pool for ``pause`` seconds (``rate_limited`` hooks).

    ``limit`` is ``"concurrent"`` or ``"rate"`` when the server said which, ``retry_after`` its
    ``Retry-After`` in seconds, if any.
    """

    endpoint: str
    path: str
    pool: Pool
    attempt: int
    limit: str | None
    retry_after: float | None
    pause: float


Event: TypeAlias = AdmittedEvent | ResponseEvent | RetryEvent | RateLimitedEvent
Hook: TypeAlias = Callable[[Any], object]
EventHooks: TypeAlias = Mapping[str, Sequence[Hook]]
"""``{"admitted": [...], "response": [...], "retry": [...], "rate_limited": [...]}``: each a
list of callables taking the event; a callable may return an awaitable, which is awaited."""

EVENTS: Final = ("admitted", "response", "retry", "rate_limited")
"""The event names ``event_hooks`` accepts."""


def check_hooks(hooks: EventHooks | None) -> dict[str, tuple[Hook, ...]]:
    """``hooks`` validated: known event names, lists of callables (ConfigurationError if not)."""
    if hooks is None:
        return {}
    if not isinstance(hooks, Mapping):
        raise ConfigurationError(
            "event_hooks", f"must map event names to lists of callables, got {hooks!r}"
        )
    checked: dict[str, tuple[Hook, ...]] = {}
    for name, callables in hooks.items():
        if name not in EVENTS:
            raise ConfigurationError(
                "event_hooks", f"unknown event {name!r}; the events are {', '.join(EVENTS)}"
            )
        if callable(callables) or not isinstance(callables, Sequence | set | frozenset):
            raise ConfigurationError("event_hooks", f"{name!r} must be a list of callables")
        for hook in callables:
            if not callable(hook):
                raise ConfigurationError("event_hooks", f"{name!r}: {hook!r} is not callable")
        if callables:
            checked[name] = tuple(callables)
    return checked


class _QueryRecord:
    """What happened to one query so far (mutable; the current context's scope holds it)."""

    __slots__ = ("attempts", "cache_hits", "coalesced", "queue_wait", "saved", "status")

    def __init__(self) -> None:
        self.attempts = 0
        self.queue_wait = 0.0
        self.cache_hits = 0
        self.coalesced = 0
        self.saved = 0
        self.status: int | None = None


_CURRENT: ContextVar[_QueryRecord | None] = ContextVar("amplitude_async_query", default=None)

_SAVED = ("cost_saved_by_cache", "cost_saved_by_coalescing")


def count(deltas: Mapping[str, int]) -> None:
    """Add the savers' counter ``deltas`` to the current query's record, if any."""
    record = _CURRENT.get()
    if record is not None:
        record.cache_hits += deltas.get("cache_hits", 0)
        record.coalesced += deltas.get("coalesced", 0)
        record.saved += sum(deltas.get(name, 0) for name in _SAVED)


def _error_type(error: BaseException | None) -> str | None:
    if error is None:
        return None
    if isinstance(error, APIError):
        return str(error.status)
    return type(error).__name__


class Observer:
    """Logs, hooks and telemetry of one client (see the module doc).

    ``redact`` is the client's redactor, ``hooks`` the checked ``event_hooks``, ``telemetry``
    the OpenTelemetry side (``None``: off).
    """

    def __init__(
        self,
        *,
        redact: Redactor,
        hooks: Mapping[str, tuple[Hook, ...]] | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.redact = redact
        self.hooks = dict(hooks or {})
        self.telemetry = telemetry

    def close(self) -> None:
        """The client closed: its gauges stop reporting."""
        if self.telemetry is not None:
            self.telemetry.close()

    def __repr__(self) -> str:
        return f"<Observer hooks={sorted(self.hooks)} telemetry={self.telemetry is not None}>"

    def quiet(self) -> bool:
        """Whether nothing would see a scope now (no SDK, DEBUG off): then none is opened."""
        telemetry = self.telemetry
        return (telemetry is None or not telemetry.live()) and not CLIENT_LOG.isEnabledFor(
            logging.DEBUG
        )

    def query(self, query: Query[Any], cost: int, priority: int) -> QueryScope | _NoScope:
        """The scope of one query, to enter around everything done for it."""
        if self.quiet():
            return _NO_SCOPE
        return QueryScope(self, query, cost, priority)

    def attempt(
        self, query: Query[Any], request: Request, ticket: Ticket, attempts: Attempts
    ) -> AttemptScope | _NoScope:
        """The scope of one admitted request: enter it as soon as the scheduler admits it;
        set ``status`` when the answer arrives and ``error`` when it fails."""
        if not self.hooks and self.quiet():
            return _NO_SCOPE
        return AttemptScope(self, query, request, ticket, attempts)

    async def failed(
        self, query: Query[Any], error: AmplitudeError, attempts: Attempts, decision: RetryDecision
    ) -> None:
        """Report the retry decision after ``error``; ``attempts`` counts it already."""
        attempt = attempts.errors + attempts.rate_limited
        endpoint, pool = query.endpoint, query.pool
        message = self.redact(str(error))
        fields = {
            "endpoint": endpoint,
            "pool": str(pool),
            "attempt": attempt,
            "error": message,
            "error_type": type(error).__name__,
        }
        if not decision.retry:
            if is_retryable(error):
                CLIENT_LOG.warning(
                    "%s: retries exhausted after %d attempt(s): %s",
                    endpoint,
                    attempt,
                    message,
                    extra=fields,
                )
            return
        if self.telemetry is not None:
            self.telemetry.retried(query, error)
        if isinstance(error, RateLimited):
            CLIENT_LOG.info(
                "%s: 429 (%s limit), pausing the %s pool for %.3g s",
                endpoint,
                error.limit or "unknown",
                pool,
                decision.delay,
                extra={**fields, "limit": error.limit, "pause": decision.delay},
            )
        else:
            CLIENT_LOG.info(
                "%s: attempt %d failed (%s), retrying in %.3g s",
                endpoint,
                attempt,
                message,
                decision.delay,
                extra={**fields, "delay": decision.delay},
            )
        if "retry" in self.hooks:
            await self.fire(
                "retry", RetryEvent(endpoint, query.path, pool, attempt, decision.delay, error)
            )
        if isinstance(error, RateLimited) and "rate_limited" in self.hooks:
            event = RateLimitedEvent(
                endpoint,
                query.path,
                pool,
                attempt,
                error.limit,
                error.retry_after,
                decision.delay,
            )
            await self.fire("rate_limited", event)

    async def fire(self, name: str, event: Event) -> None:
        """Call the ``name`` hooks with ``event``; one that raises is logged, not propagated."""
        for hook in self.hooks.get(name, ()):
            try:
                outcome = hook(event)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:
                # No traceback attached: its last line would carry the text unredacted.
                text = self.redact(f"{type(exc).__name__}: {exc}")
                HOOKS_LOG.error(
                    "%s hook %s raised %s; the query goes on",
                    name,
                    getattr(hook, "__qualname__", type(hook).__name__),
                    text,
                    extra={"event": name, "error": text},
                )


class _NoScope:
    """The scope opened when nothing observes: it does nothing (shared, so its ``status`` and
    ``error`` are written and never read)."""

    __slots__ = ("error", "status")

    def __init__(self) -> None:
        self.status: int | None = None
        self.error: AmplitudeError | None = None

    def __enter__(self) -> _NoScope:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    async def __aenter__(self) -> _NoScope:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None


_NO_SCOPE: Final = _NoScope()


class QueryScope:
    """A context manager around one query (see :meth:`Observer.query`)."""

    __slots__ = ("_cost", "_observer", "_priority", "_query", "_record", "_span", "_token")

    def __init__(self, observer: Observer, query: Query[Any], cost: int, priority: int) -> None:
        self._observer = observer
        self._query = query
        self._cost = cost
        self._priority = priority
        self._record = _QueryRecord()
        self._span: Any = None

    def __enter__(self) -> QueryScope:
        self._token = _CURRENT.set(self._record)
        telemetry = self._observer.telemetry
        if telemetry is not None:
            self._span = telemetry.start_query(self._query, self._cost, self._priority)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _CURRENT.reset(self._token)
        record = self._record
        telemetry = self._observer.telemetry
        if telemetry is not None:
            telemetry.end_query(
                self._span,
                self._query,
                self._cost,
                record.attempts,
                record.queue_wait,
                record.cache_hits > 0,
                record.coalesced > 0,
                record.saved,
                record.status,
                _error_type(exc),
            )
        if (record.cache_hits or record.coalesced) and CLIENT_LOG.isEnabledFor(logging.DEBUG):
            how = "the cache" if record.cache_hits else "a coalesced identical query"
            CLIENT_LOG.debug(
                "%s: answered by %s, cost %d saved",
                self._query.endpoint,
                how,
                record.saved,
                extra={
                    "endpoint": self._query.endpoint,
                    "cost": self._cost,
                    "cache_hit": record.cache_hits > 0,
                    "coalesced": record.coalesced > 0,
                    "cost_saved": record.saved,
                },
            )


class AttemptScope:
    """An async context manager around one admitted request (see :meth:`Observer.attempt`)."""

    __slots__ = (
        "_number",
        "_observer",
        "_query",
        "_request",
        "_span",
        "_started",
        "_ticket",
        "error",
        "status",
    )

    def __init__(
        self,
        observer: Observer,
        query: Query[Any],
        request: Request,
        ticket: Ticket,
        attempts: Attempts,
    ) -> None:
        self._observer = observer
        self._query = query
        self._request = request
        self._ticket = ticket
        self._number = attempts.errors + attempts.rate_limited + 1
        self._span: Any = None
        self.status: int | None = None
        """The HTTP status of the answer, once there is one."""
        self.error: AmplitudeError | None = None
        """What the attempt raised, if it failed."""

    async def __aenter__(self) -> AttemptScope:
        observer, ticket = self._observer, self._ticket
        record = _CURRENT.get()
        if record is not None:
            record.attempts += 1
            record.queue_wait += ticket.waited
        if observer.telemetry is not None:
            self._span = observer.telemetry.start_attempt(
                self._query, self._request, ticket, self._number
            )
        if "admitted" in observer.hooks:
            query = self._query
            event = AdmittedEvent(
                query.endpoint,
                query.path,
                ticket.pool,
                ticket.cost,
                ticket.priority,
                self._number,
                ticket.waited,
            )
            await observer.fire("admitted", event)
        self._started = time.perf_counter()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        duration = time.perf_counter() - self._started
        observer, query, ticket = self._observer, self._query, self._ticket
        status, error = self.status, self.error
        record = _CURRENT.get()
        if record is not None and status is not None:
            record.status = status
        failure = _error_type(error if error is not None else exc)
        if observer.telemetry is not None:
            observer.telemetry.end_attempt(
                self._span, query, ticket, status, failure, duration, self._number
            )
        if CLIENT_LOG.isEnabledFor(logging.DEBUG):
            fields = {
                "endpoint": query.endpoint,
                "pool": str(ticket.pool),
                "cost": ticket.cost,
                "priority": ticket.priority,
                "queue_wait": ticket.waited,
                "attempt": self._number,
                "status": status,
                "duration": duration,
            }
            if error is not None:
                fields["error"] = observer.redact(str(error))
            CLIENT_LOG.debug(
                "%s attempt %d: status %s in %.3f s (cost %d, priority %d, queued %.3f s)",
                query.endpoint,
                self._number,
                status if status is not None else failure,
                duration,
                ticket.cost,
                ticket.priority,
                ticket.waited,
                extra=fields,
            )
        if "response" in observer.hooks and exc is None:
            event = ResponseEvent(
                query.endpoint,
                query.path,
                ticket.pool,
                ticket.cost,
                self._number,
                status,
                duration,
                error,
            )
            await observer.fire("response", event)
