"""Loose field values, as job files (TOML) and the command line (text) give them.

Each function takes a value as written and the name it was written under, and returns what the
query classes accept, or raises :class:`~amplitude_async.errors.InvalidQuery` naming that
name. Tables use the value classes' own field names (``{event_type, filters, group_by}``,
``{key, op, values, type}``, ``{prop, op, values}``, ``{cohort_id}``,
``{event_type, op, value, time_type, time_value, filters}``); text is accepted for numbers,
dates and intervals, and JSON text for tables and lists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from typing import Any, TypeVar

import attrs
from attrs import AttrsInstance

from ..errors import InvalidQuery
from ..validation import describe
from ..values import Event, GroupBy, InCohort, PerformedEvent, PropertyFilter, Segment, Where
from .intervals import INTERVAL_NAMES

__all__ = [
    "as_is",
    "to_date",
    "to_event",
    "to_events",
    "to_int",
    "to_interval",
    "to_json",
    "to_list",
    "to_segments",
    "to_table",
]

T = TypeVar("T", bound=AttrsInstance)

_INTERVALS_BY_NAME = {name: interval for interval, name in INTERVAL_NAMES.items()}


def as_is(value: object, name: str) -> object:
    """Any value, left for the query's own validation."""
    return value


def to_date(value: object, name: str) -> date:
    """A ``date``, or text as ``YYYY-MM-DD`` or ``YYYYMMDD``."""
    if type(value) is date:
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 8 and text.isdigit():
                return date(int(text[:4]), int(text[4:6]), int(text[6:]))
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise InvalidQuery(name, f"expected a date like 2026-09-01 or 20260901, got {value!r}")


def to_int(value: object, name: str) -> object:
    """Numbers given as text become ints; anything else is left to the query's validation."""
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
    return value


def to_interval(value: object, name: str) -> object:
    """An interval's name (``daily``, ``weekly``, ...) or number."""
    if isinstance(value, str) and value.strip().lower() in _INTERVALS_BY_NAME:
        return _INTERVALS_BY_NAME[value.strip().lower()]
    return to_int(value, name)


def to_json(value: object, name: str = "") -> object:
    """JSON text of a table or list decoded (how the command line passes them)."""
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return json.loads(value)
        except RecursionError:
            raise InvalidQuery(name or "value", "JSON nested too deeply to read") from None
        except ValueError:
            return value
    return value


def to_table(value: object, name: str) -> Mapping[str, object]:
    """A table (or its JSON text)."""
    value = to_json(value, name)
    if not isinstance(value, Mapping):
        raise InvalidQuery(name, f"expected a table, got {describe(value)}")
    return value


def to_list(value: object, name: str) -> list[object]:
    """A list (or its JSON text)."""
    value = to_json(value, name)
    if isinstance(value, list | tuple):
        return list(value)
    raise InvalidQuery(name, f"expected a list, got {describe(value)}")


def build(cls: type[T], table: Mapping[str, object], name: str) -> T:
    """``cls(**table)`` with unknown keys and missing fields named by ``name``."""
    known = {a.name for a in attrs.fields(cls) if a.init}
    for key in table:
        if key not in known:
            raise InvalidQuery(
                f"{name}.{key}", f"unknown field; expected one of {', '.join(sorted(known))}"
            )
    make: Any = cls
    try:
        built: T = make(**table)
    except InvalidQuery as exc:
        raise InvalidQuery(f"{name}.{exc.field}" if exc.field else name, exc.message) from None
    except TypeError as exc:
        raise InvalidQuery(name, str(exc).split(") ", 1)[-1]) from None
    return built


# -- value types ----------------------------------------------------------------------------


def _filters(value: object, name: str) -> list[PropertyFilter]:
    return [_filter(f, f"{name}[{i}]") for i, f in enumerate(to_list(value, name))]


def _filter(value: object, name: str) -> PropertyFilter:
    table = dict(to_table(value, name))
    if "values" in table and isinstance(table["values"], str):
        table["values"] = [table["values"]]
    return build(PropertyFilter, table, name)


def _group_by(value: object, name: str) -> GroupBy | str:
    if isinstance(value, str):
        return value
    return build(GroupBy, to_table(value, name), name)


def to_event(value: object, name: str) -> Event:
    """An event type, or an event table ``{event_type, filters, group_by}``."""
    if isinstance(value, Event):
        return value
    if isinstance(value, str) and value.strip()[:1] != "{":
        try:
            return Event(value)
        except InvalidQuery as exc:
            raise InvalidQuery(name, exc.message) from None
    table = dict(to_table(value, name))
    if "filters" in table:
        table["filters"] = _filters(table["filters"], f"{name}.filters")
    if "group_by" in table:
        raw = table["group_by"]
        items = [raw] if isinstance(raw, str) else to_list(raw, f"{name}.group_by")
        table["group_by"] = [_group_by(g, f"{name}.group_by[{i}]") for i, g in enumerate(items)]
    return build(Event, table, name)


def _condition(value: object, name: str) -> Where | InCohort | PerformedEvent:
    table = dict(to_table(value, name))
    if "cohort_id" in table:
        return build(InCohort, table, name)
    if "event_type" in table:
        if "filters" in table:
            table["filters"] = _filters(table["filters"], f"{name}.filters")
        for key in ("value", "time_value"):
            if key in table:
                table[key] = to_int(table[key], f"{name}.{key}")
        return build(PerformedEvent, table, name)
    if "values" in table and isinstance(table["values"], str):
        table["values"] = [table["values"]]
    return build(Where, table, name)


def _segment(value: object, name: str) -> Segment:
    value = to_json(value, name)
    # A lone condition table is a one-condition segment.
    items = [value] if isinstance(value, Mapping) else to_list(value, name)
    return Segment(*(_condition(c, f"{name}[{i}]") for i, c in enumerate(items)))


def to_events(value: object, name: str) -> list[Event]:
    """One event (type or table) or a list of them."""
    value = to_json(value, name)
    items = [value] if isinstance(value, str | Mapping) else to_list(value, name)
    return [to_event(e, f"{name}[{i}]") for i, e in enumerate(items)]


def to_segments(value: object, name: str) -> list[Segment]:
    """A list of segments, each a list of condition tables; a list of tables is one segment."""
    items = to_list(value, name)
    # [[cond, cond], [cond]] is several segments; [cond, cond] (tables) is one.
    if items and all(isinstance(item, Mapping) for item in items):
        return [_segment(items, f"{name}[0]")]
    return [_segment(s, f"{name}[{i}]") for i, s in enumerate(items)]
