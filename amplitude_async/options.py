"""The client's options turned into the parts they configure (scheduler, transport, observer),
each checked where it is given: :class:`~amplitude_async.errors.ConfigurationError` names the
option.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import attrs

from ._settings import check_instance
from .cache import CachePolicy, ResultCache
from .clock import Clock
from .errors import ConfigurationError
from .limits import Limits
from .observe import EventHooks, Observer, check_hooks
from .retry import MAX_RETRIES, RetryPolicy
from .sansio import BASE_URLS, Redactor
from .scheduler import LEASE_MARGIN, Scheduler
from .transport import DEFAULT_MAX_BODY_BYTES, AiohttpTransport

__all__ = [
    "check_client_options",
    "default_transport",
    "make_observer",
    "make_retry_policy",
    "make_scheduler",
    "refuse_conflicts",
]


def make_scheduler(
    api_key: str, limits: Limits, clock: Clock | None, timeout: float, budget_url: str | None
) -> Scheduler:
    """The client's own scheduler: on a shared budget store when ``budget_url`` is given. A
    lease outlives the request timeout by a margin, for the server to finish counting."""
    lease = timeout + LEASE_MARGIN
    if budget_url is None:
        return Scheduler(limits, clock=clock, lease=lease)
    try:
        from .redis_store import RedisBudgetStore  # the optional redis extra
    except ImportError:  # pragma: no cover - depends on the installation
        raise ConfigurationError(
            "budget_url", "needs the redis package: pip install 'amplitude-async[redis]'"
        ) from None
    store = RedisBudgetStore.from_url(budget_url, api_key=api_key, limits=limits)
    return Scheduler(store=store, clock=clock, lease=lease)


def refuse_conflicts(given: dict[str, object], overridden_by: str) -> None:
    """Raise ConfigurationError if an option is given beside the object that would ignore it."""
    for name, value in given.items():
        if value is not None:
            raise ConfigurationError(
                name,
                f"cannot be combined with {overridden_by}= (which would ignore it); "
                f"configure the {overridden_by} itself instead",
            )


def make_observer(
    base_url: str,
    redact: Redactor,
    statistics: Callable[[], Any],
    api_key: str,
    hooks: dict[str, Any],
    telemetry: bool,
    tracer_provider: Any,
    meter_provider: Any,
) -> Observer:
    """The client's observer (its OpenTelemetry side only with ``telemetry``)."""
    traced = None
    if telemetry:
        from . import otel

        traced = otel.load(
            server=base_url,
            api_key=api_key,
            redact=redact,
            statistics=statistics,
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )
    return Observer(redact=redact, hooks=hooks, telemetry=traced)


def default_transport(
    session: aiohttp.ClientSession | None, timeout: float, max_body_bytes: int | None
) -> AiohttpTransport:
    """The built-in aiohttp transport, its body cap checked."""
    if max_body_bytes is None:
        max_body_bytes = DEFAULT_MAX_BODY_BYTES
    elif not isinstance(max_body_bytes, int) or isinstance(max_body_bytes, bool):
        raise ConfigurationError("max_body_bytes", f"must be an integer, got {max_body_bytes!r}")
    elif max_body_bytes < 1:
        raise ConfigurationError("max_body_bytes", f"must be positive, got {max_body_bytes!r}")
    return AiohttpTransport(session=session, timeout=timeout, max_body_bytes=max_body_bytes)


def check_client_options(
    *,
    limits: object,
    coalesce: object,
    cache: object,
    cache_policy: object,
    retry_policy: object,
    region: object,
    max_retries: object,
    transport: object,
    session: object,
    timeout: object,
    max_body_bytes: object,
    event_hooks: EventHooks | None,
    telemetry: bool,
    tracer_provider: object,
    meter_provider: object,
    scheduler: object,
    clock: object,
    budget_url: object,
) -> dict[str, Any]:
    """Check the client's options that are not turned into a part right away: types, choices,
    and an option given beside the object that would ignore it (``max_retries`` with
    ``retry_policy``; ``session``, ``timeout`` or ``max_body_bytes`` with ``transport``;
    ``limits``, ``clock`` or ``budget_url`` with ``scheduler``). Returns the checked hooks."""
    if limits is not None:
        check_instance("limits", limits, Limits, "a Limits")
    if not isinstance(coalesce, bool):
        raise ConfigurationError("coalesce", f"must be True or False, got {coalesce!r}")
    if cache is not None:
        check_instance("cache", cache, ResultCache, "a ResultCache (MemoryCache, RedisCache)")
    if cache_policy is not None:
        check_instance("cache_policy", cache_policy, CachePolicy, "a CachePolicy")
    if retry_policy is not None:
        check_instance("retry_policy", retry_policy, RetryPolicy, "a RetryPolicy")
    if region not in BASE_URLS:
        raise ConfigurationError("region", f"must be one of {sorted(BASE_URLS)}, got {region!r}")
    if retry_policy is not None:
        refuse_conflicts({"max_retries": max_retries}, "retry_policy")
    if transport is not None:
        refuse_conflicts(
            {"session": session, "timeout": timeout, "max_body_bytes": max_body_bytes},
            "transport",
        )
    hooks = check_hooks(event_hooks)
    if not telemetry and (tracer_provider is not None or meter_provider is not None):
        name = "tracer_provider" if tracer_provider is not None else "meter_provider"
        raise ConfigurationError(name, "cannot be combined with telemetry=False")
    if scheduler is not None:
        refuse_conflicts({"limits": limits, "clock": clock, "budget_url": budget_url}, "scheduler")
    return hooks


def make_retry_policy(
    retry_policy: RetryPolicy | None, max_retries: int | None, window: float
) -> RetryPolicy:
    """The client's retry policy: the user's, taken as given, with the limits' cost ``window``
    (what a "rate" 429 pauses for) filled in only where it names none."""
    if retry_policy is None:
        retry_policy = RetryPolicy(max_retries=MAX_RETRIES if max_retries is None else max_retries)
    if retry_policy.window is None:
        retry_policy = attrs.evolve(retry_policy, window=window)
    return retry_policy
