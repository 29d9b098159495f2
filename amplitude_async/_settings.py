"""Checks for configuration values (limits, retry policy, client options), in one place.

Each check raises :class:`~amplitude_async.errors.ConfigurationError` naming the setting, so a
bad value fails where it is given, not later as a ``TypeError`` deep inside the scheduler or as
a ``NaN`` that quietly disables a budget.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from .errors import ConfigurationError

__all__ = [
    "MAX_PRIORITY",
    "check_bound",
    "check_count",
    "check_factor",
    "check_instance",
    "check_number",
    "check_priority",
    "non_negative_int",
    "non_negative_number",
    "optional_positive_number",
    "positive_int",
    "positive_number",
]


def _name(instance: object, attribute: attrs.Attribute[Any]) -> str:
    return f"{type(instance).__name__}.{attribute.name}"


def _check_int(name: str, value: object, *, minimum: int) -> None:
    # bool is an int subclass, but True as a concurrency limit is surely a mistake.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigurationError(name, f"must be an integer, got {value!r}")
    if value < minimum:
        relation = "positive" if minimum == 1 else f"at least {minimum}"
        raise ConfigurationError(name, f"must be {relation}, got {value!r}")


def check_count(name: str, value: object, *, minimum: int) -> int:
    """Return ``value`` if it is an ``int`` (not ``bool``) of at least ``minimum``, else raise
    :class:`ConfigurationError` naming ``name``."""
    _check_int(name, value, minimum=minimum)
    assert isinstance(value, int)
    return value


def check_number(name: str, value: object, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float if it is a finite real number above zero (or equal to zero
    with ``allow_zero``), else raise :class:`ConfigurationError` naming ``name``."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ConfigurationError(name, f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigurationError(name, f"must be finite, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        relation = "not negative" if allow_zero else "positive"
        raise ConfigurationError(name, f"must be {relation}, got {value!r}")
    return float(value)


MAX_PRIORITY = 10**9
"""Priorities lie within ±this: every budget store (Redis scores included) orders them exactly."""


def check_priority(value: object, name: str = "priority") -> int:
    """Return ``value`` if it is an ``int`` (not ``bool``) within ±:data:`MAX_PRIORITY`, else
    raise :class:`ConfigurationError` naming ``name`` (checked for every store alike)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigurationError(name, f"must be an integer, got {value!r}")
    if not -MAX_PRIORITY <= value <= MAX_PRIORITY:
        raise ConfigurationError(name, f"must be within ±10**9, got {value!r}")
    return value


def check_bound(name: str, value: object) -> float:
    """A duration that may be infinite (``inf``: never): a number, zero or above, not NaN."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value == math.inf:
        return math.inf
    return check_number(name, value, allow_zero=True)


def check_instance(name: str, value: object, kind: type, what: str) -> None:
    """Raise :class:`ConfigurationError` naming ``name`` unless ``value`` is a ``kind``."""
    if not isinstance(value, kind):
        raise ConfigurationError(name, f"must be {what}, got {value!r}")


def check_factor(value: object) -> float:
    """A ``scaled()`` factor: a finite number above zero."""
    return check_number("factor", value)


def positive_int(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """attrs validator: an ``int`` (not ``bool``) of at least 1."""
    _check_int(_name(instance, attribute), value, minimum=1)


def non_negative_int(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """attrs validator: an ``int`` (not ``bool``) of at least 0."""
    _check_int(_name(instance, attribute), value, minimum=0)


def positive_number(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """attrs validator: a finite real number above zero."""
    check_number(_name(instance, attribute), value)


def optional_positive_number(
    instance: object, attribute: attrs.Attribute[Any], value: object
) -> None:
    """attrs validator: ``None``, or a finite real number above zero."""
    if value is not None:
        check_number(_name(instance, attribute), value)


def non_negative_number(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """attrs validator: a finite real number, zero or above."""
    check_number(_name(instance, attribute), value, allow_zero=True)
