"""Event queries: the events list, event segmentation, funnels and retention."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import ClassVar, Final, Literal, TypeAlias, get_args

import attrs
from attrs import field, frozen

from .. import cost as _cost
from ..cost import ChartKind
from ..errors import InvalidQuery
from ..naming import Naming, event_name
from ..results import EventSegmentationResult, EventsListResult, FunnelResult, RetentionResult
from ..validation import (
    as_list,
    check_int,
    check_str,
    date_validator,
    int_validator,
    one_of,
    str_validator,
)
from ..values import Event, Segment, to_event
from . import tables
from .base import MAX_LIMIT, DatedQuery, Query, conditions, to_segments
from .fields import (
    DATE,
    EVENT,
    EVENTS,
    INT,
    INTERVAL,
    JSON,
    SEGMENTS,
    Codec,
    compact_json,
    interval_validator,
    wire,
)
from .intervals import ALL_INTERVALS, CALENDAR_INTERVALS, DAILY, SPAN_LIMITS

__all__ = [
    "MAX_SEGMENTATION_GROUP_BYS",
    "PROPERTY_METRICS",
    "SEGMENTATION_METRICS",
    "EventSegmentation",
    "EventsList",
    "Funnel",
    "Retention",
]

SegmentationMetric: TypeAlias = Literal[
    "uniques", "totals", "pct_dau", "average", "histogram", "sums", "value_avg", "formula"
]
SEGMENTATION_METRICS: Final[tuple[SegmentationMetric, ...]] = get_args(SegmentationMetric)
PROPERTY_METRICS: Final[tuple[SegmentationMetric, ...]] = ("histogram", "sums", "value_avg")
"""Metrics over a property's values: they need a group-by on the first event."""
SegmentationUserType: TypeAlias = Literal["any", "active"]
FunnelMode: TypeAlias = Literal["ordered", "unordered", "sequential"]
FunnelUserType: TypeAlias = Literal["active", "new"]
RetentionMode: TypeAlias = Literal["n-day", "rolling", "bracket"]
MAX_SEGMENTATION_GROUP_BYS: Final = 2

_SEQ: Final = "a sequence"


def _to_events(value: Event | str | Iterable[Event | str]) -> tuple[Event, ...]:
    items = [value] if isinstance(value, Event | str) else as_list(value, "events", what=_SEQ)
    return tuple(to_event(item, f"events[{i}]") for i, item in enumerate(items))  # type: ignore[arg-type]


def _to_start_event(value: Event | str) -> Event:
    return to_event(value, "start_event")


def _to_return_event(value: Event | str) -> Event:
    return to_event(value, "return_event")


def _to_group_bys(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else as_list(value, "group_by", what=_SEQ)
    for i, item in enumerate(items):
        check_str(item, f"group_by[{i}]")
    if len(items) > MAX_SEGMENTATION_GROUP_BYS:
        raise InvalidQuery(
            "group_by",
            f"at most {MAX_SEGMENTATION_GROUP_BYS} group-bys (g, g2), got {len(items)}",
        )
    return tuple(str(item) for item in items)


def _to_brackets(
    value: Iterable[Sequence[int]] | None,
) -> tuple[tuple[int, int], ...] | None:
    if value is None:
        return None
    pairs: list[tuple[int, int]] = []
    for i, item in enumerate(as_list(value, "brackets", what=_SEQ)):
        pair = as_list(item, f"brackets[{i}]", what=_SEQ)
        if len(pair) != 2:
            raise InvalidQuery(f"brackets[{i}]", f"expected a [from, to] pair, got {item!r}")
        low = check_int(pair[0], f"brackets[{i}][0]", minimum=0)
        high = check_int(pair[1], f"brackets[{i}][1]", minimum=0)
        if high <= low:
            raise InvalidQuery(f"brackets[{i}]", f"must end after it starts, got {[low, high]}")
        if pairs and low < pairs[-1][1]:
            raise InvalidQuery(f"brackets[{i}]", "brackets must be ascending and not overlap")
        pairs.append((low, high))
    if not pairs:
        raise InvalidQuery("brackets", "needs at least one bracket")
    return tuple(pairs)


_GROUP_BYS: Final = Codec(str, lambda text, name, index: text, tables.to_json)
_BRACKETS: Final = Codec(
    lambda pairs: compact_json([list(p) for p in pairs]), JSON.decode, JSON.loose
)


@frozen
class EventsList(Query[EventsListResult]):
    """The project's visible events with this week's totals (``/api/2/events/list``)."""

    endpoint: ClassVar[str] = "events_list"
    result_type = EventsListResult
    _path: ClassVar[str] = "/api/2/events/list"

    @property
    def cost(self) -> int:
        return _cost.query_cost(1, 1, _cost.chart_cost(ChartKind.OTHER))


@frozen
class EventSegmentation(DatedQuery[EventSegmentationResult]):
    """Metrics of one or two events over time (``/api/2/events/segmentation``).

    ``events`` takes 1 or 2 :class:`Event` (or event types) sent as ``e`` and ``e2``; ``group_by``
    up to two property names (``g``, ``g2``). ``metric="formula"`` needs ``formula``; the
    property metrics (``histogram``, ``sums``, ``value_avg``) need a group-by on the first
    event. A range is capped by its interval: 2 days realtime, 7 hourly, 365 daily.
    """

    endpoint: ClassVar[str] = "event_segmentation"
    result_type = EventSegmentationResult
    _path: ClassVar[str] = "/api/2/events/segmentation"
    _span_limits: ClassVar[Mapping[int, int]] = SPAN_LIMITS

    events: tuple[Event, ...] = field(converter=_to_events, metadata=wire("e", "e2", codec=EVENTS))
    start: date = field(validator=date_validator, metadata=wire("start", codec=DATE))
    end: date = field(validator=date_validator, metadata=wire("end", codec=DATE))
    metric: SegmentationMetric = field(
        default="uniques", validator=one_of(SEGMENTATION_METRICS, "metric"), metadata=wire("m")
    )
    user_type: SegmentationUserType | None = field(
        default=None,
        validator=one_of(get_args(SegmentationUserType), "user type", optional=True),
        metadata=wire("n"),
    )
    interval: int = field(
        default=DAILY,
        validator=interval_validator(ALL_INTERVALS),
        metadata=wire("i", codec=INTERVAL),
    )
    segments: tuple[Segment, ...] = field(
        default=(), converter=to_segments, metadata=wire("s", codec=SEGMENTS, repeated=True)
    )
    group_by: tuple[str, ...] = field(
        default=(), converter=_to_group_bys, metadata=wire("g", "g2", codec=_GROUP_BYS)
    )
    limit: int | None = field(
        default=None,
        validator=int_validator(1, MAX_LIMIT, optional=True),
        metadata=wire("limit", codec=INT),
    )
    formula: str | None = field(
        default=None, validator=str_validator(optional=True), metadata=wire("formula")
    )
    rolling_window: int | None = field(
        default=None,
        validator=int_validator(1, optional=True),
        metadata=wire("rollingWindow", codec=INT),
    )
    rolling_average: int | None = field(
        default=None,
        validator=int_validator(1, optional=True),
        metadata=wire("rollingAverage", codec=INT),
    )

    def __attrs_post_init__(self) -> None:
        self._check_range()
        if not 1 <= len(self.events) <= 2:
            raise InvalidQuery("events", f"takes 1 or 2 events (e, e2), got {len(self.events)}")
        if self.metric == "formula" and self.formula is None:
            raise InvalidQuery("formula", "metric 'formula' needs a formula")
        if self.metric != "formula" and self.formula is not None:
            raise InvalidQuery("formula", f"a formula needs metric 'formula', not {self.metric!r}")
        if self.metric in PROPERTY_METRICS and not self.events[0].group_by:
            raise InvalidQuery(
                "metric", f"metric {self.metric!r} needs a group_by on the first event"
            )
        self._check_span()

    def naming(self) -> Naming:
        """Events by name, the formula, segments and range."""
        return attrs.evolve(
            super().naming(),
            events=tuple(event_name(e) for e in self.events),
            formula=self.formula,
        )

    @property
    def cost(self) -> int:
        chart = _cost.chart_cost(
            ChartKind.EVENT_SEGMENTATION, [len(e.group_by) for e in self.events]
        )
        return _cost.query_cost(self.days, conditions(self.segments, len(self.group_by)), chart)


@frozen
class Funnel(DatedQuery[FunnelResult]):
    """Conversion through two or more steps (``/api/2/funnels``); one ``e`` per step.

    Funnels take event segmentation's intervals with the same span limits.
    """

    endpoint: ClassVar[str] = "funnel"
    result_type = FunnelResult
    _path: ClassVar[str] = "/api/2/funnels"
    _span_limits: ClassVar[Mapping[int, int]] = SPAN_LIMITS

    events: tuple[Event, ...] = field(
        converter=_to_events, metadata=wire("e", codec=EVENTS, repeated=True)
    )
    start: date = field(validator=date_validator, metadata=wire("start", codec=DATE))
    end: date = field(validator=date_validator, metadata=wire("end", codec=DATE))
    mode: FunnelMode = field(
        default="ordered", validator=one_of(get_args(FunnelMode), "mode"), metadata=wire("mode")
    )
    user_type: FunnelUserType | None = field(
        default=None,
        validator=one_of(get_args(FunnelUserType), "user type", optional=True),
        metadata=wire("n"),
    )
    interval: int | None = field(
        default=None,
        validator=interval_validator(ALL_INTERVALS, optional=True),
        metadata=wire("i", codec=INTERVAL),
    )
    segments: tuple[Segment, ...] = field(
        default=(), converter=to_segments, metadata=wire("s", codec=SEGMENTS, repeated=True)
    )
    group_by: str | None = field(
        default=None, validator=str_validator(optional=True), metadata=wire("g")
    )
    conversion_window: int | None = field(
        default=None, validator=int_validator(1, optional=True), metadata=wire("cs", codec=INT)
    )
    """Seconds a user has to complete the funnel (the API's default is 30 days)."""
    limit: int | None = field(
        default=None,
        validator=int_validator(1, MAX_LIMIT, optional=True),
        metadata=wire("limit", codec=INT),
    )

    def __attrs_post_init__(self) -> None:
        self._check_range()
        if len(self.events) < 2:
            raise InvalidQuery("events", f"a funnel needs at least 2 steps, got {len(self.events)}")
        self._check_span()

    @property
    def cost(self) -> int:
        count = conditions(self.segments, int(self.group_by is not None))
        chart = _cost.chart_cost(ChartKind.FUNNEL, [len(e.group_by) for e in self.events])
        return _cost.query_cost(self.days, count, chart)


@frozen
class Retention(DatedQuery[RetentionResult]):
    """Users returning after a start event (``/api/2/retention``).

    ``mode="bracket"`` needs ``brackets``: ascending, non-overlapping ``(from, to)`` day pairs
    such as ``[(0, 5), (5, 10)]``; other modes take none.
    """

    endpoint: ClassVar[str] = "retention"
    result_type = RetentionResult
    _path: ClassVar[str] = "/api/2/retention"

    start_event: Event = field(converter=_to_start_event, metadata=wire("se", codec=EVENT))
    return_event: Event = field(converter=_to_return_event, metadata=wire("re", codec=EVENT))
    start: date = field(validator=date_validator, metadata=wire("start", codec=DATE))
    end: date = field(validator=date_validator, metadata=wire("end", codec=DATE))
    mode: RetentionMode = field(
        default="n-day", validator=one_of(get_args(RetentionMode), "mode"), metadata=wire("rm")
    )
    brackets: tuple[tuple[int, int], ...] | None = field(
        default=None, converter=_to_brackets, metadata=wire("rb", codec=_BRACKETS)
    )
    interval: int = field(
        default=DAILY,
        validator=interval_validator(CALENDAR_INTERVALS),
        metadata=wire("i", codec=INTERVAL),
    )
    segments: tuple[Segment, ...] = field(
        default=(), converter=to_segments, metadata=wire("s", codec=SEGMENTS, repeated=True)
    )
    group_by: str | None = field(
        default=None, validator=str_validator(optional=True), metadata=wire("g")
    )

    def __attrs_post_init__(self) -> None:
        self._check_range()
        if self.mode == "bracket" and self.brackets is None:
            raise InvalidQuery("brackets", "mode 'bracket' needs brackets")
        if self.mode != "bracket" and self.brackets is not None:
            raise InvalidQuery("brackets", f"brackets need mode 'bracket', not {self.mode!r}")

    def naming(self) -> Naming:
        """Segments, range, and the interval and brackets that name the periods."""
        return attrs.evolve(super().naming(), interval=self.interval, brackets=self.brackets)

    @property
    def cost(self) -> int:
        count = conditions(self.segments, int(self.group_by is not None))
        return _cost.query_cost(self.days, count, _cost.chart_cost(ChartKind.RETENTION))
