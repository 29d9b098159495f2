"""``amplitude-async budget --metrics-port PORT``: the shared budget in the Prometheus format.

Serves ``/metrics`` (with ``prometheus-client``, the optional ``prometheus`` extra) for one or
more projects sharing budgets in one Redis. Each scrape reads every project's budget afresh,
the figures ``budget --watch`` prints, so one scrape shows a whole fleet's use of a project's
budget. A project is labelled with the name given as ``--api-key NAME=KEY``, or else with the
start of the hash that names its keys in Redis: never with its key.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..admission import BudgetUsage
from ..errors import AmplitudeError, ConfigurationError
from ..limits import Limits

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client.core import GaugeMetricFamily

__all__ = ["Project", "collect_budgets", "parse_projects", "serve_budget_metrics"]

_log = logging.getLogger("amplitude_async.cli")

Project = tuple[str, str]
"""``(label, api_key)`` of one project whose budget is served."""


def parse_projects(keys: Sequence[str]) -> list[Project]:
    """``--api-key`` values (``KEY`` or ``NAME=KEY``) as projects; ConfigurationError if a name
    or key is empty or a name repeats."""
    from ..redis_store import budget_key_tag

    projects: list[Project] = []
    for value in keys:
        name, sep, key = value.rpartition("=")
        if not sep:
            name, key = budget_key_tag(value)[:12], value
        if not name or not key:
            raise ConfigurationError("--api-key", "expected KEY or NAME=KEY")
        if any(name == known for known, _ in projects):
            raise ConfigurationError("--api-key", f"the project name {name!r} is given twice")
        projects.append((name, key))
    return projects


async def _read(url: str, api_key: str) -> tuple[BudgetUsage | None, Limits | None]:
    from ..redis_store import RedisBudgetStore

    store = await RedisBudgetStore.observe(url, api_key=api_key)
    if store is None:
        return None, None
    try:
        return await store.read_usage(), store.limits
    finally:
        await store.aclose()


async def _read_all(url: str, projects: Sequence[Project]) -> list[Any]:
    return await asyncio.gather(*(_read(url, key) for _, key in projects), return_exceptions=True)


class _Families:
    """The gauge families of one scrape."""

    def __init__(self) -> None:
        from prometheus_client.core import GaugeMetricFamily

        def gauge(name: str, text: str, labels: list[str]) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"amplitude_budget_{name}", text, labels=labels)

        project, pool, window = ["project"], ["project", "pool"], ["project", "pool", "window"]
        self.up = gauge("up", "1 if the budget store answered for this project", project)
        self.processes = gauge("processes", "Processes attached to the budget", project)
        self.used = gauge("window_used", "Cost occupying the window now", window)
        self.budget = gauge("window_budget", "The window's budget", window)
        self.remaining = gauge("window_remaining", "Cost the window could still admit", window)
        self.length = gauge("window_length_seconds", "The window's length", window)
        self.in_flight = gauge("in_flight", "Requests in flight, every process", pool)
        self.concurrency = gauge("concurrency_limit", "Requests allowed in flight", pool)
        self.queued = gauge("queued", "Requests waiting, every process", pool)
        self.paused = gauge("paused_seconds", "Seconds the pool stays paused after a 429", pool)

    def add(self, name: str, usage: BudgetUsage | None, limits: Limits | None) -> None:
        self.up.add_metric([name], 1)
        if usage is None or limits is None:
            self.processes.add_metric([name], 0)
            return
        self.processes.add_metric([name], usage.processes)
        caps = {"standard": limits.concurrent, "user": limits.user_concurrent}
        for pool in usage.pools:
            labels = [name, str(pool.pool)]
            self.in_flight.add_metric(labels, pool.in_flight)
            self.concurrency.add_metric(labels, caps[str(pool.pool)])
            self.queued.add_metric(labels, pool.queued)
            self.paused.add_metric(labels, max(0.0, pool.paused_for))
            for window in pool.windows:
                at = [*labels, window.name]
                self.used.add_metric(at, window.used)
                self.budget.add_metric(at, window.budget)
                self.remaining.add_metric(at, window.remaining)
                self.length.add_metric(at, window.length)

    def __iter__(self) -> Iterator[GaugeMetricFamily]:
        return iter(vars(self).values())


def collect_budgets(url: str, projects: Sequence[Project]) -> Iterator[GaugeMetricFamily]:
    """Read every project's budget at ``url`` now: the gauge families of one scrape.

    Runs its own event loop (a scrape is served in a thread of its own). A project whose store
    cannot be read is ``amplitude_budget_up 0`` and logged, so the others are still served.
    """
    families = _Families()
    answers = asyncio.run(_read_all(url, projects))
    for (name, _), answer in zip(projects, answers, strict=True):
        if isinstance(answer, BaseException):
            if not isinstance(answer, AmplitudeError | OSError):
                raise answer
            families.up.add_metric([name], 0)
            _log.warning(
                "budget of project %s not read: %s",
                name,
                answer,
                extra={"project": name, "error": str(answer)},
            )
            continue
        families.add(name, *answer)
    return iter(families)


class _Collector:
    """A prometheus-client collector reading the budgets at each scrape."""

    def __init__(self, url: str, projects: Sequence[Project]) -> None:
        self._url = url
        self._projects = list(projects)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return collect_budgets(self._url, self._projects)


def serve_budget_metrics(
    url: str, projects: Sequence[Project], *, host: str, port: int
) -> tuple[WSGIServer, threading.Thread]:
    """Serve the budgets of ``projects`` at ``http://host:port/metrics`` (port 0: a free one)
    in a daemon thread; ``server.shutdown()`` stops it."""
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError:
        raise ConfigurationError(
            "--metrics-port",
            "needs the prometheus-client package: pip install 'amplitude-async[prometheus]'",
        ) from None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(url, projects))
    server, thread = start_http_server(port, addr=host, registry=registry)
    return server, thread
