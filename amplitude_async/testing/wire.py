"""What the emulator shows of itself: the faults it can inject, the error envelopes it sends,
the record it keeps of each request and its statistics (see
:class:`~amplitude_async.testing.emulator.Emulator`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal, TypeAlias

import attrs
from aiohttp import web
from attrs import field, frozen

from ..errors import RateLimitKind
from ..limits import Pool

__all__ = [
    "Delay",
    "EmulatorStatistics",
    "FaultKind",
    "Faults",
    "RequestRecord",
    "error_body",
]


Delay: TypeAlias = float | tuple[float, float]
"""Seconds: a fixed delay, or ``(low, high)`` drawn uniformly for each request."""


FaultKind = Literal["error", "slow", "hang", "drop"]
"""An injected fault: a 5xx answer, a slow answer, no answer at all, or a closed connection."""


# The envelope's "type" and "message" per status; details carry the specifics.
_ERRORS: Final[Mapping[int, tuple[str, str]]] = {
    400: ("invalid", "Invalid request"),
    401: ("unauthorized", "Invalid API key or secret key"),
    403: ("forbidden", "Missing permission"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    429: ("too_many_requests", "Too Many Requests"),
    500: ("internal", "Internal server error"),
    502: ("bad_gateway", "Bad gateway"),
    503: ("unavailable", "Service unavailable"),
    504: ("timeout", "Gateway timeout: the query took too long"),
}


def _rate(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"Faults.{attribute.name} must be within [0, 1], got {value!r}")


def _non_negative(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"Faults.{attribute.name} must not be negative, got {value!r}")


def _to_statuses(value: Iterable[int]) -> tuple[int, ...]:
    return tuple(value)


def _statuses(_: object, attribute: attrs.Attribute[Any], value: tuple[int, ...]) -> None:
    if not value or any(not 500 <= s <= 599 for s in value):
        raise ValueError(f"Faults.{attribute.name} must be 5xx statuses, got {value!r}")


@frozen
class Faults:
    """Fractions of accepted requests that go wrong, drawn from a seeded generator.

    ``error_rate`` answer one of ``error_statuses``; ``slow_rate`` answer after an extra
    ``slow_seconds``; ``hang_rate`` never answer (until the client gives up or the emulator
    stops); ``drop_rate`` have their connection closed without an answer. The rates are
    exclusive and must sum to at most 1.
    """

    error_rate: float = field(default=0.0, validator=_rate)
    slow_rate: float = field(default=0.0, validator=_rate)
    slow_seconds: float = field(default=2.0, validator=_non_negative)
    hang_rate: float = field(default=0.0, validator=_rate)
    drop_rate: float = field(default=0.0, validator=_rate)
    error_statuses: tuple[int, ...] = field(
        default=(500, 502, 503, 504), converter=_to_statuses, validator=_statuses
    )
    seed: int | None = 0

    def __attrs_post_init__(self) -> None:
        total = self.error_rate + self.slow_rate + self.hang_rate + self.drop_rate
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault rates must sum to at most 1, got {total!r}")

    def draw(self, rng: random.Random) -> FaultKind | None:
        """Pick the fault (or none) for one request."""
        r = rng.random()
        for kind, rate in (
            ("drop", self.drop_rate),
            ("hang", self.hang_rate),
            ("error", self.error_rate),
            ("slow", self.slow_rate),
        ):
            if r < rate:
                return kind  # type: ignore[return-value]
            r -= rate
        return None


@frozen
class RequestRecord:
    """One request as the emulator saw it.

    ``at`` is the emulator clock's time when the request was stamped (after ``arrival_delay``),
    ``finished`` when it was answered or abandoned. ``pool`` and ``cost`` are ``None`` when the
    request never got as far as a valid query; ``status`` is ``None`` when no answer was sent
    (a hang or a dropped connection); ``limit`` says which limit a 429 broke.
    """

    at: float
    path: str
    params: tuple[tuple[str, str], ...]
    pool: Pool | None
    cost: int | None
    status: int | None
    limit: RateLimitKind | None = None
    fault: FaultKind | None = None
    finished: float = 0.0

    @property
    def accepted(self) -> bool:
        """Whether the enforcer admitted the request (it counts against the limits)."""
        return self.pool is not None and self.status != 429


@frozen
class EmulatorStatistics:
    """A snapshot of what the emulator has served.

    ``peak_window_cost`` is the most standard-pool cost ever stamped within one sliding window
    (``Limits.window``); ``peak_in_flight`` the most standard-pool requests in flight at once.
    """

    requests: int
    answered: int
    rate_limited_concurrent: int
    rate_limited_rate: int
    client_errors: int
    faults: int
    cost_accepted: int
    cost_served: int
    peak_window_cost: int
    peak_in_flight: int

    @property
    def rate_limited(self) -> int:
        """All 429 answers."""
        return self.rate_limited_concurrent + self.rate_limited_rate


def _draw_delay(spec: Delay | None, rng: random.Random) -> float:
    if spec is None:
        return 0.0
    if isinstance(spec, tuple):
        low, high = spec
        return rng.uniform(low, high)
    return float(spec)


def _check_delay(name: str, spec: Delay | None) -> None:
    if spec is None:
        return
    bounds = spec if isinstance(spec, tuple) else (spec, spec)
    if len(bounds) != 2 or bounds[0] < 0 or bounds[1] < bounds[0]:
        raise ValueError(f"{name} must be seconds >= 0 or (low, high) with low <= high")


def error_body(status: int, details: str, *, message: str | None = None) -> bytes:
    """Amplitude's error envelope for ``status`` with ``details``, as JSON bytes."""
    kind, default = _ERRORS.get(status, ("error", "Error"))
    envelope = {
        "error": {
            "http_code": status,
            "type": kind,
            "message": message or default,
            "metadata": {"details": details},
        }
    }
    return json.dumps(envelope).encode()


def _error(status: int, details: str, *, message: str | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=error_body(status, details, message=message),
        content_type="application/json",
    )
