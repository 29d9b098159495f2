"""Checks shared by every model that validates on construction (queries, values, job files).

Each check raises :class:`~amplitude_async.errors.InvalidQuery` naming the field it was given,
so an error always says which field of which object is wrong. The ``*_validator`` factories
wrap the checks as attrs validators that name the attribute they guard.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any, Final

import attrs

from .errors import InvalidQuery

__all__ = [
    "EARLIEST_DATE",
    "LATEST_DATE",
    "as_list",
    "check_choice",
    "check_date",
    "check_int",
    "check_str",
    "date_validator",
    "describe",
    "int_validator",
    "nested",
    "one_of",
    "str_validator",
]

Validator = Any
"""An attrs validator: ``(instance, attribute, value) -> None``."""

EARLIEST_DATE: Final = date(2, 1, 1)
"""The earliest date a query or job may name: a year inside the calendar's start, so that every
date computed from a range (a week's or month's start, a chunk's end, the emulator's days)
exists."""

LATEST_DATE: Final = date(9998, 12, 31)
"""The latest date a query or job may name: a year before the calendar's end (9999-12-31)."""


def describe(value: object) -> str:
    """``type value`` for error messages: ``int 3``, ``str 'x'``."""
    return f"{type(value).__name__} {value!r}"


def nested(prefix: str, exc: InvalidQuery) -> InvalidQuery:
    """Return ``exc`` re-rooted under ``prefix`` (``filters[0]`` + ``op`` → ``filters[0].op``)."""
    if not prefix:
        return exc
    if not exc.field:
        return InvalidQuery(prefix, exc.message)
    sep = "" if exc.field.startswith("[") else "."
    return InvalidQuery(f"{prefix}{sep}{exc.field}", exc.message)


def check_str(value: object, name: str) -> str:
    """Return ``value`` if it is a non-blank string, else raise InvalidQuery(name)."""
    if not isinstance(value, str):
        raise InvalidQuery(name, f"expected a string, got {describe(value)}")
    if not value.strip():
        raise InvalidQuery(name, "must not be empty")
    return value


def check_int(
    value: object, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Return ``value`` if it is an int (not a bool) within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidQuery(name, f"expected an integer, got {describe(value)}")
    if minimum is not None and value < minimum:
        raise InvalidQuery(name, f"must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InvalidQuery(name, f"must be at most {maximum}, got {value}")
    return value


def check_choice(value: object, choices: Iterable[object], name: str, what: str) -> None:
    """Raise InvalidQuery(name) unless ``value`` is one of ``choices``."""
    options = tuple(choices)
    # bool == int would let True pass as 1
    if isinstance(value, bool) or value not in options:
        allowed = ", ".join(repr(c) for c in options)
        raise InvalidQuery(name, f"unknown {what} {value!r}; expected one of {allowed}")


def as_list(value: object, name: str, *, what: str = "a list") -> list[object]:
    """``value`` as a list if it is a sequence (but not text or a mapping)."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidQuery(name, f"expected {what}, got {describe(value)}")
    return list(value)


# -- attrs validators -----------------------------------------------------------------------


def one_of(choices: tuple[object, ...], what: str, *, optional: bool = False) -> Validator:
    """Validate that the attribute is one of ``choices`` (or ``None`` when ``optional``)."""

    def validate(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None and optional:
            return
        check_choice(value, choices, attribute.name, what)

    return validate


def int_validator(
    minimum: int | None = None, maximum: int | None = None, *, optional: bool = False
) -> Validator:
    """Validate an int attribute within ``[minimum, maximum]`` (``None`` when ``optional``)."""

    def validate(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None and optional:
            return
        check_int(value, attribute.name, minimum=minimum, maximum=maximum)

    return validate


def str_validator(*, optional: bool = False) -> Validator:
    """Validate a non-blank string attribute (``None`` too when ``optional``)."""

    def validate(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None and optional:
            return
        check_str(value, attribute.name)

    return validate


def check_date(value: date, name: str) -> date:
    """Return ``value`` if it lies within ``[EARLIEST_DATE, LATEST_DATE]``."""
    if not EARLIEST_DATE <= value <= LATEST_DATE:
        raise InvalidQuery(
            name,
            f"must be between {EARLIEST_DATE} and {LATEST_DATE} (dates computed from it must "
            f"stay within the calendar), got {value}",
        )
    return value


def date_validator(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """Validate a ``datetime.date`` that is not a ``datetime``, within :func:`check_date`."""
    # datetime is a date subclass; its time part would silently vanish from the wire.
    if not isinstance(value, date) or type(value) is not date:
        raise InvalidQuery(attribute.name, f"expected a datetime.date, got {describe(value)}")
    check_date(value, attribute.name)
