"""Shared value types of query definitions: events, filters, group-bys and segments.

Each type is a frozen attrs class, validated on construction (:class:`InvalidQuery` naming the
field), with ``to_wire()`` returning the JSON-able form the API expects and a ``from_wire()``
classmethod as its inverse. Operators are spelled exactly as the API spells them.

Conveniences (decisions, documented once here):

- sequences may be given as lists; they are stored as tuples;
- a plain ``str`` where a list of strings is expected (``values``) is one value;
- a plain ``str`` in ``Event.group_by`` is ``GroupBy(str)``, i.e. a *user* property, the same
  default as ``GroupBy`` itself;
- ``Event.to_wire()`` omits empty ``filters``/``group_by`` lists; ``PerformedEvent`` always sends
  ``filters`` (the documented examples do);
- errors raised by ``from_wire`` name the offending key by its wire spelling, with its path
  (``filters[0].subprop_op``, ``[1].values``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, Literal, TypeAlias, TypeVar, get_args

from attrs import field, frozen

from amplitude_async.errors import InvalidQuery
from amplitude_async.validation import (
    as_list,
    check_int,
    describe,
    nested,
    one_of,
    str_validator,
)

T = TypeVar("T")

__all__ = [
    "COHORT_PROPERTY",
    "COUNT_OPERATORS",
    "FILTER_OPERATORS",
    "MAX_EVENT_GROUP_BYS",
    "PROPERTY_TYPES",
    "TIME_TYPES",
    "Condition",
    "CountOperator",
    "Event",
    "FilterOperator",
    "GroupBy",
    "InCohort",
    "PerformedEvent",
    "PropertyFilter",
    "PropertyType",
    "Segment",
    "TimeType",
    "Where",
    "condition_from_wire",
]

FilterOperator: TypeAlias = Literal[
    "is",
    "is not",
    "contains",
    "does not contain",
    "less",
    "less or equal",
    "greater",
    "greater or equal",
    "set is",
    "set is not",
]
FILTER_OPERATORS: Final[tuple[FilterOperator, ...]] = get_args(FilterOperator)
"""Operators of event filters (``subprop_op``) and property conditions (``op``)."""

PropertyType: TypeAlias = Literal["event", "user"]
PROPERTY_TYPES: Final[tuple[PropertyType, ...]] = get_args(PropertyType)

CountOperator: TypeAlias = Literal[">=", "<=", "=", ">", "<"]
COUNT_OPERATORS: Final[tuple[CountOperator, ...]] = get_args(CountOperator)
"""Operators comparing how often a user performed an event ("who performed" conditions)."""

TimeType: TypeAlias = Literal["allTime", "currentInterval", "forEachInterval"]
TIME_TYPES: Final[tuple[TimeType, ...]] = get_args(TimeType)

COHORT_PROPERTY: Final = "userdata_cohort"
"""The pseudo-property a segment condition uses for cohort membership."""

MAX_EVENT_GROUP_BYS: Final = 2


def _to_values(value: str | Iterable[str]) -> tuple[str, ...]:
    items: list[object] = [value] if isinstance(value, str) else as_list(value, "values")
    if not items:
        raise InvalidQuery("values", "needs at least one value")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidQuery(f"values[{i}]", f"expected a string, got {describe(item)}")
    return tuple(str(item) for item in items)


def _mapping(obj: object, name: str = "") -> Mapping[str, object]:
    if not isinstance(obj, Mapping):
        raise InvalidQuery(name, f"expected a JSON object, got {describe(obj)}")
    return obj


def _wire_list(obj: object, name: str) -> list[object]:
    if not isinstance(obj, list):
        raise InvalidQuery(name, f"expected a JSON list, got {describe(obj)}")
    return obj


def _wire_items(obj: object, name: str, parse: Callable[[object], T]) -> list[T]:
    """Parse each item of the JSON list ``obj``; an error is named ``name[i]...``."""
    items = []
    for i, item in enumerate(_wire_list(obj, name)):
        try:
            items.append(parse(item))
        except InvalidQuery as exc:
            raise nested(f"{name}[{i}]", exc) from None
    return items


def _get(obj: Mapping[str, object], key: str) -> object:
    if key not in obj:
        raise InvalidQuery(key, "missing")
    return obj[key]


def _unknown_keys(obj: Mapping[str, object], known: Iterable[str]) -> None:
    extra = sorted(set(obj) - set(known))
    if extra:
        raise InvalidQuery(extra[0], "unknown key")


def _wire_values(obj: object, name: str) -> tuple[str, ...]:
    items = _wire_list(obj, name)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidQuery(f"{name}[{i}]", f"expected a string, got {describe(item)}")
    return tuple(str(item) for item in items)


# -- event filters and group-bys ------------------------------------------------------------


# PropertyFilter's wire keys, in the order they are sent; to_wire and from_wire both use it.
_FILTER_WIRE: Final = {
    "type": "subprop_type",
    "key": "subprop_key",
    "op": "subprop_op",
    "values": "subprop_value",
}


@frozen
class PropertyFilter:
    """An event filter: ``key op values`` on an event (default) or user property.

    User properties use their built-in name (``country``) or ``gp:name`` for custom ones.
    """

    key: str = field(validator=str_validator())
    op: FilterOperator = field(validator=one_of(FILTER_OPERATORS, "operator"))
    values: tuple[str, ...] = field(converter=_to_values)
    type: PropertyType = field(default="event", validator=one_of(PROPERTY_TYPES, "property type"))

    def to_wire(self) -> dict[str, Any]:
        """The filter object of an event definition."""
        return {
            wire: list(self.values) if name == "values" else getattr(self, name)
            for name, wire in _FILTER_WIRE.items()
        }

    @classmethod
    def from_wire(cls, obj: object) -> PropertyFilter:
        """Rebuild from ``to_wire()`` output; InvalidQuery names the bad key."""
        data = _mapping(obj)
        _unknown_keys(data, _FILTER_WIRE.values())
        try:
            given = {name: _get(data, wire) for name, wire in _FILTER_WIRE.items()}
            given["values"] = _wire_values(given["values"], _FILTER_WIRE["values"])
            return cls(**given)  # type: ignore[arg-type]
        except InvalidQuery as exc:
            head, _, rest = exc.field.partition("[")
            wire = _FILTER_WIRE.get(head, head)
            raise InvalidQuery(wire + (f"[{rest}" if rest else ""), exc.message) from None


@frozen
class GroupBy:
    """Group an event's results by a user property (default) or an event property."""

    value: str = field(validator=str_validator())
    type: PropertyType = field(default="user", validator=one_of(PROPERTY_TYPES, "property type"))

    def to_wire(self) -> dict[str, Any]:
        """The group-by object of an event definition."""
        return {"type": self.type, "value": self.value}

    @classmethod
    def from_wire(cls, obj: object) -> GroupBy:
        """Rebuild from ``to_wire()`` output; InvalidQuery names the bad key."""
        data = _mapping(obj)
        _unknown_keys(data, ("type", "value"))
        return cls(value=_get(data, "value"), type=_get(data, "type"))  # type: ignore[arg-type]


def _to_filters(value: PropertyFilter | Iterable[PropertyFilter]) -> tuple[PropertyFilter, ...]:
    items = [value] if isinstance(value, PropertyFilter) else as_list(value, "filters")
    for i, item in enumerate(items):
        if not isinstance(item, PropertyFilter):
            raise InvalidQuery(f"filters[{i}]", f"expected a PropertyFilter, got {describe(item)}")
    return tuple(item for item in items if isinstance(item, PropertyFilter))


def _to_group_bys(value: GroupBy | str | Iterable[GroupBy | str]) -> tuple[GroupBy, ...]:
    items = [value] if isinstance(value, GroupBy | str) else as_list(value, "group_by")
    result: list[GroupBy] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            try:
                item = GroupBy(item)
            except InvalidQuery as exc:
                raise InvalidQuery(f"group_by[{i}]", exc.message) from None
        if not isinstance(item, GroupBy):
            raise InvalidQuery(f"group_by[{i}]", f"expected a GroupBy, got {describe(item)}")
        result.append(item)
    if len(result) > MAX_EVENT_GROUP_BYS:
        raise InvalidQuery(
            "group_by", f"an event takes at most {MAX_EVENT_GROUP_BYS} group-bys, got {len(result)}"
        )
    return tuple(result)


@frozen
class Event:
    """An event definition (``e``, ``e2``, ``se``, ``re``): type, filters, up to 2 group-bys.

    ``event_type`` is the event's name (custom events take ``ce:``) or one of the special values
    ``_active``, ``_all``, ``_new``, ``revenue_amount``, ``verified_revenue``,
    ``unverified_revenue``. A plain ``str`` in ``group_by`` means ``GroupBy(str)`` (user property).
    """

    event_type: str = field(validator=str_validator())
    filters: tuple[PropertyFilter, ...] = field(default=(), converter=_to_filters)
    group_by: tuple[GroupBy, ...] = field(default=(), converter=_to_group_bys)

    def to_wire(self) -> dict[str, Any]:
        """The event object; empty ``filters``/``group_by`` are left out to keep URLs short."""
        wire: dict[str, Any] = {"event_type": self.event_type}
        if self.filters:
            wire["filters"] = [f.to_wire() for f in self.filters]
        if self.group_by:
            wire["group_by"] = [g.to_wire() for g in self.group_by]
        return wire

    @classmethod
    def from_wire(cls, obj: object) -> Event:
        """Rebuild from the event object; missing lists mean empty ones."""
        data = _mapping(obj)
        _unknown_keys(data, ("event_type", "filters", "group_by"))
        filters = _wire_items(data.get("filters", []), "filters", PropertyFilter.from_wire)
        group_by = _wire_items(data.get("group_by", []), "group_by", GroupBy.from_wire)
        return cls(_get(data, "event_type"), filters, group_by)  # type: ignore[arg-type]


def to_event(value: Event | str, name: str) -> Event:
    """Accept an :class:`Event` or a plain event type; errors name ``name``."""
    if isinstance(value, Event):
        return value
    if isinstance(value, str):
        try:
            return Event(value)
        except InvalidQuery as exc:
            raise nested(name, exc) from None
    raise InvalidQuery(name, f"expected an Event or an event type, got {describe(value)}")


# -- segment conditions ---------------------------------------------------------------------


@frozen
class Where:
    """A property condition: users whose property ``prop`` satisfies ``op values``.

    ``prop`` is a built-in property (``version``, ``country``, ``city``, ``region``, ``DMA``,
    ``language``, ``platform``, ``os``, ``device``, ``device_type``, ``start_version``,
    ``paying``) or ``gp:name``. Cohort membership is :class:`InCohort`, not ``Where``.
    """

    prop: str = field(validator=str_validator())
    op: FilterOperator = field(validator=one_of(FILTER_OPERATORS, "operator"))
    values: tuple[str, ...] = field(converter=_to_values)

    def __attrs_post_init__(self) -> None:
        # Its wire form is exactly InCohort's; one spelling keeps from_wire an inverse.
        if self.prop == COHORT_PROPERTY and self.op == "is" and len(self.values) == 1:
            raise InvalidQuery("prop", "use InCohort(cohort_id) for cohort membership")

    def to_wire(self) -> dict[str, Any]:
        """The condition object ``{"prop", "op", "values"}``."""
        return {"prop": self.prop, "op": self.op, "values": list(self.values)}

    @classmethod
    def from_wire(cls, obj: object) -> Where:
        """Rebuild from ``to_wire()`` output; InvalidQuery names the bad key."""
        data = _mapping(obj)
        _unknown_keys(data, ("prop", "op", "values"))
        prop, op = _get(data, "prop"), _get(data, "op")
        values = _wire_values(_get(data, "values"), "values")
        return cls(prop, op, values)  # type: ignore[arg-type]


@frozen
class InCohort:
    """Membership of the cohort ``cohort_id``."""

    cohort_id: str = field(validator=str_validator())

    def to_wire(self) -> dict[str, Any]:
        """The condition object ``{"prop": "userdata_cohort", "op": "is", "values": [id]}``."""
        return {"prop": COHORT_PROPERTY, "op": "is", "values": [self.cohort_id]}

    @classmethod
    def from_wire(cls, obj: object) -> InCohort:
        """Rebuild from ``to_wire()`` output; InvalidQuery names the bad key."""
        data = _mapping(obj)
        _unknown_keys(data, ("prop", "op", "values"))
        if _get(data, "prop") != COHORT_PROPERTY:
            raise InvalidQuery("prop", f"expected {COHORT_PROPERTY!r}")
        if _get(data, "op") != "is":
            raise InvalidQuery("op", "cohort membership uses 'is'")
        values = _wire_values(_get(data, "values"), "values")
        if len(values) != 1:
            raise InvalidQuery("values", "cohort membership names exactly one cohort")
        try:
            return cls(values[0])
        except InvalidQuery as exc:
            raise InvalidQuery("values[0]", exc.message) from None


@frozen
class PerformedEvent:
    """A "who performed" condition: users who did ``event_type`` ``op value`` times.

    ``time_type`` is ``allTime`` (default), ``currentInterval`` or ``forEachInterval``; the last
    needs ``time_value`` (days) and is the only one that takes it.
    """

    event_type: str = field(validator=str_validator())
    op: CountOperator = field(default=">=", validator=one_of(COUNT_OPERATORS, "count operator"))
    value: int = field(default=1)
    filters: tuple[PropertyFilter, ...] = field(default=(), converter=_to_filters)
    time_type: TimeType = field(default="allTime", validator=one_of(TIME_TYPES, "time type"))
    time_value: int | None = field(default=None)

    def __attrs_post_init__(self) -> None:
        check_int(self.value, "value", minimum=0)
        if self.time_type == "forEachInterval":
            if self.time_value is None:
                raise InvalidQuery("time_value", "required with time_type 'forEachInterval'")
            check_int(self.time_value, "time_value", minimum=1)
        elif self.time_value is not None:
            raise InvalidQuery("time_value", "only allowed with time_type 'forEachInterval'")

    def to_wire(self) -> dict[str, Any]:
        """The condition object ``{"type": "event", "event_type", "filters", "op", ...}``."""
        wire: dict[str, Any] = {
            "type": "event",
            "event_type": self.event_type,
            "filters": [f.to_wire() for f in self.filters],
            "op": self.op,
            "value": self.value,
            "time_type": self.time_type,
        }
        if self.time_value is not None:
            wire["time_value"] = self.time_value
        return wire

    @classmethod
    def from_wire(cls, obj: object) -> PerformedEvent:
        """Rebuild from ``to_wire()`` output; InvalidQuery names the bad key."""
        data = _mapping(obj)
        _unknown_keys(
            data, ("type", "event_type", "filters", "op", "value", "time_type", "time_value")
        )
        if _get(data, "type") != "event":
            raise InvalidQuery("type", "expected 'event'")
        filters = _wire_items(data.get("filters", []), "filters", PropertyFilter.from_wire)
        return cls(
            event_type=_get(data, "event_type"),  # type: ignore[arg-type]
            op=_get(data, "op"),  # type: ignore[arg-type]
            value=_get(data, "value"),  # type: ignore[arg-type]
            filters=filters,
            time_type=_get(data, "time_type"),  # type: ignore[arg-type]
            time_value=data.get("time_value"),  # type: ignore[arg-type]
        )


Condition: TypeAlias = Where | InCohort | PerformedEvent
"""One condition of a segment; all conditions of a segment must hold."""


def condition_from_wire(obj: object) -> Condition:
    """Decode one segment condition, choosing its class from its shape."""
    data = _mapping(obj)
    if "type" in data:
        return PerformedEvent.from_wire(data)
    values = data.get("values")
    if (
        data.get("prop") == COHORT_PROPERTY
        and data.get("op") == "is"
        and isinstance(values, list)
        and len(values) == 1
    ):
        return InCohort.from_wire(data)
    return Where.from_wire(data)


@frozen(init=False)
class Segment:
    """A user segment: the users meeting every one of ``conditions``.

    Built positionally: ``Segment(Where("country", "is", ["France"]), InCohort("abc"))``.
    ``Segment()`` is all users.
    """

    conditions: tuple[Condition, ...]

    def __init__(self, *conditions: Condition) -> None:
        for i, condition in enumerate(conditions):
            if not isinstance(condition, Where | InCohort | PerformedEvent):
                raise InvalidQuery(
                    f"conditions[{i}]",
                    f"expected Where, InCohort or PerformedEvent, got {describe(condition)}",
                )
        self.__attrs_init__(tuple(conditions))

    def to_wire(self) -> list[dict[str, Any]]:
        """The segment's JSON list of condition objects."""
        return [c.to_wire() for c in self.conditions]

    @classmethod
    def from_wire(cls, obj: object) -> Segment:
        """Rebuild from the JSON list; errors are named ``[i].key``."""
        return cls(*_wire_items(obj, "", condition_from_wire))
