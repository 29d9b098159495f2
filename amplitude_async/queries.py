"""One frozen attrs query class per Dashboard REST API endpoint, and :func:`parse_query`.

A query is validated when it is built (and again by ``attrs.evolve``), so nothing invalid is ever
scheduled or sent; a bad field raises :class:`~amplitude_async.errors.InvalidQuery` naming it.
Every query knows its ``path``, its ``pool``, its wire parameters (``params()``: ordered
``(name, value)`` pairs, not URL-encoded, JSON compact) and its ``cost`` (see
:mod:`amplitude_async.cost`). :func:`parse_query` is the inverse of ``(q.path, q.params())``.

Decisions where the API documentation is silent:

- several segments are sent as repeated ``s`` parameters, in order (see :func:`segment_params`);
- parameters with a non-``None`` value are always sent, defaults included (``m=active``,
  ``i=1``), so a request states everything its cost was computed from; ``None`` fields are left
  out and the API's own default applies;
- funnels accept the same intervals as event segmentation, with the same span limits;
- a ``ChartCSV``/``ChartQuery`` cost stated by the caller is not part of the request, so
  :func:`parse_query` rebuilds saved-chart queries with the default cost of 1.
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, timedelta
from typing import (
    Any,
    ClassVar,
    Final,
    Generic,
    Literal,
    Self,
    TypeAlias,
    TypeVar,
    cast,
    get_args,
)

import attrs
from attrs import field, frozen

from amplitude_async import cost as _cost
from amplitude_async.cost import ChartKind
from amplitude_async.errors import InvalidQuery
from amplitude_async.limits import Pool
from amplitude_async.results import (
    ActiveUsersResult,
    AverageSessionLengthResult,
    ChartCSVResult,
    ChartQueryResult,
    EventSegmentationResult,
    EventsListResult,
    FunnelResult,
    RealtimeActiveUsersResult,
    RetentionResult,
    RevenueLTVResult,
    SessionLengthDistributionResult,
    SessionsPerUserResult,
    UserActivityResult,
    UserCompositionResult,
    UserSearchResult,
)
from amplitude_async.values import (
    Event,
    Segment,
    check_choice,
    check_int,
    check_str,
    to_event,
)

__all__ = [
    "DAILY",
    "ENDPOINTS",
    "HOURLY",
    "HOURLY_MAX_DAYS",
    "LTV_METRICS",
    "MAX_LIMIT",
    "MONTHLY",
    "PROPERTY_METRICS",
    "REALTIME",
    "REALTIME_MAX_DAYS",
    "SEGMENTATION_METRICS",
    "WEEKLY",
    "ActiveUsers",
    "AverageSessionLength",
    "ChartCSV",
    "ChartQuery",
    "DatedQuery",
    "EventSegmentation",
    "EventsList",
    "Funnel",
    "Query",
    "RealtimeActiveUsers",
    "Retention",
    "RevenueLTV",
    "SessionLengthDistribution",
    "SessionsPerUser",
    "UserActivity",
    "UserComposition",
    "UserSearch",
    "parse_query",
    "period_start",
    "segment_params",
]

R = TypeVar("R")

REALTIME: Final = -300000
"""Realtime (5-minute) interval; spans of at most :data:`REALTIME_MAX_DAYS` days."""
HOURLY: Final = -3600000
"""Hourly interval; spans of at most :data:`HOURLY_MAX_DAYS` days."""
DAILY: Final = 1
WEEKLY: Final = 7
MONTHLY: Final = 30
REALTIME_MAX_DAYS: Final = 2
HOURLY_MAX_DAYS: Final = 7
MAX_LIMIT: Final = 1000
"""The largest ``limit`` any endpoint accepts."""
REALTIME_ACTIVE_USERS_INTERVAL: Final = 5

_INTERVAL_NAMES: Final = {
    REALTIME: "realtime",
    HOURLY: "hourly",
    DAILY: "daily",
    WEEKLY: "weekly",
    MONTHLY: "monthly",
}
_CALENDAR_INTERVALS: Final = (DAILY, WEEKLY, MONTHLY)
_ALL_INTERVALS: Final = (REALTIME, HOURLY, DAILY, WEEKLY, MONTHLY)


def period_start(day: date, interval: int) -> date:
    """The first day of the bucket holding ``day``: a Sunday (weekly), the 1st (monthly), or
    ``day`` itself (daily, hourly, realtime)."""
    if interval == WEEKLY:
        # Weeks start on Sunday; date.weekday() counts from Monday (0) to Sunday (6).
        return day - timedelta(days=(day.weekday() + 1) % 7)
    if interval == MONTHLY:
        return day.replace(day=1)
    return day


ActiveUsersMetric: TypeAlias = Literal["active", "new"]
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
BinUnit: TypeAlias = Literal["hours", "minutes", "seconds"]
Direction: TypeAlias = Literal["latest", "earliest"]
LTVMetric: TypeAlias = Literal["arpu", "arppu", "total_revenue", "paying_users"]
LTV_METRICS: Final[tuple[LTVMetric, ...]] = get_args(LTVMetric)
"""Revenue LTV metrics; the wire value is the index (``m=0`` … ``m=3``)."""
MAX_SEGMENTATION_GROUP_BYS: Final = 2


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


# -- field validators and converters --------------------------------------------------------


def _is_date(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    # datetime is a date subclass; its time part would silently vanish from the wire.
    if not isinstance(value, date) or type(value) is not date:
        raise InvalidQuery(attribute.name, f"expected a datetime.date, got {_describe(value)}")


def _one_of(choices: tuple[object, ...], what: str) -> Any:
    def validate(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        check_choice(value, choices, attribute.name, what)

    return validate


def _optional_one_of(choices: tuple[object, ...], what: str) -> Any:
    def validate(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None:
            check_choice(value, choices, attribute.name, what)

    return validate


def _interval(allowed: tuple[int, ...], *, optional: bool = False) -> Any:
    def validate(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None and optional:
            return
        check_int(value, attribute.name)
        if value not in allowed:
            names = ", ".join(f"{i} ({_INTERVAL_NAMES[i]})" for i in allowed)
            raise InvalidQuery(
                attribute.name, f"interval {value!r} not allowed here; expected one of {names}"
            )

    return validate


def _optional_int(minimum: int, maximum: int | None = None) -> Any:
    def validate(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None:
            return
        number = check_int(value, attribute.name, minimum=minimum)
        if maximum is not None and number > maximum:
            raise InvalidQuery(attribute.name, f"must be at most {maximum}, got {number}")

    return validate


def _int_at_least(minimum: int) -> Any:
    def validate(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        check_int(value, attribute.name, minimum=minimum)

    return validate


def _property(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    check_str(value, attribute.name)


def _optional_str(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        check_str(value, attribute.name)


def _chart_id(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    text = check_str(value, attribute.name)
    # The id becomes a path segment: anything that would change the URL's structure is refused.
    if text in (".", "..") or any(c in text for c in "/?#%") or any(c.isspace() for c in text):
        raise InvalidQuery(attribute.name, f"not a chart id: {text!r}")


def _list(value: object, name: str) -> list[object]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise InvalidQuery(name, f"expected a sequence, got {_describe(value)}")
    return list(value)


def _to_events(value: Event | str | Iterable[Event | str]) -> tuple[Event, ...]:
    items = [value] if isinstance(value, Event | str) else _list(value, "events")
    return tuple(to_event(item, f"events[{i}]") for i, item in enumerate(items))  # type: ignore[arg-type]


def _to_start_event(value: Event | str) -> Event:
    return to_event(value, "start_event")


def _to_return_event(value: Event | str) -> Event:
    return to_event(value, "return_event")


def _to_segments(value: Segment | Iterable[Segment] | None) -> tuple[Segment, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, Segment) else _list(value, "segments")
    for i, item in enumerate(items):
        if not isinstance(item, Segment):
            raise InvalidQuery(f"segments[{i}]", f"expected a Segment, got {_describe(item)}")
    return tuple(item for item in items if isinstance(item, Segment))


def _to_group_bys(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else _list(value, "group_by")
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
    for i, item in enumerate(_list(value, "brackets")):
        pair = _list(item, f"brackets[{i}]")
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


def _to_ltv_metric(value: LTVMetric | int) -> LTVMetric:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(LTV_METRICS):
        return LTV_METRICS[value]
    check_choice(value, LTV_METRICS, "metric", "metric")
    return value  # type: ignore[return-value]


def _to_amplitude_id(value: int | str) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return check_int(value, "user", minimum=0)


def _to_search_term(value: str | int) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return check_str(value, "user")


# -- wire helpers ---------------------------------------------------------------------------


Params: TypeAlias = tuple[tuple[str, str], ...]


def segment_params(segments: Sequence[Segment]) -> list[tuple[str, str]]:
    """Encode segments as wire parameters: one ``s`` per segment, in order.

    The API documents one ``s``; how several segments travel is not documented, so this one
    function holds that decision (and :func:`_segments_from_params` its inverse).
    """
    return [("s", _json(segment.to_wire())) for segment in segments]


def _conditions(segments: Sequence[Segment], group_bys: int) -> int:
    return _cost.condition_count([len(s.conditions) for s in segments], group_bys)


class _WireParams:
    """Wire parameters being decoded; remembers which were read to reject unknown ones."""

    def __init__(self, params: Sequence[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        self._read: set[str] = set()
        for pair in params:
            if (
                not isinstance(pair, tuple | list)
                or len(pair) != 2
                or not all(isinstance(x, str) for x in pair)
            ):
                raise InvalidQuery("params", f"expected (name, value) string pairs, got {pair!r}")
            self._values.setdefault(pair[0], []).append(pair[1])

    def all(self, name: str) -> list[str]:
        self._read.add(name)
        return self._values.get(name, [])

    def get(self, name: str) -> str | None:
        values = self.all(name)
        if len(values) > 1:
            raise InvalidQuery(name, "given more than once")
        return values[0] if values else None

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise InvalidQuery(name, "missing required parameter")
        return value

    def int(self, name: str) -> int | None:
        value = self.get(name)
        if value is None:
            return None
        if not re.fullmatch(r"-?[0-9]+", value):
            raise InvalidQuery(name, f"expected an integer, got {value!r}")
        return int(value)

    def date(self, name: str) -> date:
        value = self.require(name)
        if not re.fullmatch(r"[0-9]{8}", value):
            raise InvalidQuery(name, f"expected a date as YYYYMMDD, got {value!r}")
        try:
            return date(int(value[:4]), int(value[4:6]), int(value[6:]))
        except ValueError as exc:
            raise InvalidQuery(name, f"not a date: {value!r} ({exc})") from None

    def decode_json(self, name: str, value: str) -> object:
        try:
            return json.loads(value)
        except ValueError as exc:
            raise InvalidQuery(name, f"not valid JSON: {exc}") from None

    def event(self, name: str, value: str | None = None) -> Event:
        raw = self.require(name) if value is None else value
        try:
            return Event.from_wire(self.decode_json(name, raw))
        except InvalidQuery as exc:
            if exc.field == name:
                raise
            message = f"{exc.field}: {exc.message}" if exc.field else exc.message
            raise InvalidQuery(name, message) from None

    def segments(self) -> tuple[Segment, ...]:
        segments = []
        for i, raw in enumerate(self.all("s")):
            try:
                segments.append(Segment.from_wire(self.decode_json("s", raw)))
            except InvalidQuery as exc:
                where = f"segment {i + 1}" + (f" {exc.field}" if exc.field else "")
                raise InvalidQuery("s", f"{where}: {exc.message}") from None
        return tuple(segments)

    def finish(self, path: str) -> None:
        unknown = sorted(set(self._values) - self._read)
        if unknown:
            raise InvalidQuery(unknown[0], f"unknown parameter for {path}")


def _present(**kwargs: object) -> dict[str, object]:
    """Keyword arguments without the ``None`` ones, so the class defaults apply."""
    return {name: value for name, value in kwargs.items() if value is not None}


def _put(out: list[tuple[str, str]], name: str, value: object) -> None:
    if value is not None:
        out.append((name, str(value)))


def _check_span(interval: int | None, days: int) -> None:
    if interval == REALTIME and days > REALTIME_MAX_DAYS:
        raise InvalidQuery(
            "interval", f"the realtime interval covers at most {REALTIME_MAX_DAYS} days, got {days}"
        )
    if interval == HOURLY and days > HOURLY_MAX_DAYS:
        raise InvalidQuery(
            "interval", f"the hourly interval covers at most {HOURLY_MAX_DAYS} days, got {days}"
        )


# -- base classes ---------------------------------------------------------------------------


class Query(Generic[R]):
    """A validated request to one endpoint; ``R`` is its result type.

    Subclasses expose ``path``, ``pool``, ``params()``, ``cost`` and ``result_type``.
    """

    __slots__ = ()

    endpoint: ClassVar[str] = ""
    """The snake_case endpoint name (the key in :data:`ENDPOINTS`)."""
    result_type: ClassVar[type[Any]]
    """The results class a response is decoded into."""
    pool: ClassVar[Pool] = Pool.STANDARD
    """The set of limits this query counts against."""
    _path: ClassVar[str] = ""
    _wire_names: ClassVar[Mapping[str, str]] = {}

    @property
    def path(self) -> str:
        """The request path, e.g. ``/api/2/users``."""
        return self._path

    def params(self) -> Params:
        """Ordered ``(name, value)`` wire parameters, not URL-encoded."""
        raise NotImplementedError

    @property
    def cost(self) -> int:
        """The query's cost under Amplitude's cost rule (0 when not costed)."""
        raise NotImplementedError

    @classmethod
    def _kwargs_from_params(cls, p: _WireParams) -> dict[str, object]:
        raise NotImplementedError

    @classmethod
    def _wire_error(cls, exc: InvalidQuery) -> InvalidQuery:
        """Rename a construction error's field to the wire parameter it came from."""
        for name in sorted(cls._wire_names, key=len, reverse=True):
            if exc.field == name or exc.field.startswith((name + ".", name + "[")):
                message = exc.message if exc.field == name else f"{exc.field}: {exc.message}"
                return InvalidQuery(cls._wire_names[name], message)
        return exc


class DatedQuery(Query[R]):
    """A query over the date range ``[start, end]`` (both inclusive, project time zone)."""

    __slots__ = ()

    start: date
    end: date

    @property
    def days(self) -> int:
        """Days in ``[start, end]``."""
        return _cost.days_in_range(self.start, self.end)

    def with_range(self, start: date, end: date) -> Self:
        """A copy over ``[start, end]``, validated again (interval spans included)."""
        # evolve() is typed for concrete attrs classes; every subclass is one.
        evolved: Self = attrs.evolve(cast(Any, self), start=start, end=end)
        return evolved

    def _check_range(self) -> None:
        if self.end < self.start:
            raise InvalidQuery("end", f"end {self.end} is before start {self.start}")

    def _date_params(self) -> list[tuple[str, str]]:
        return [("start", self.start.strftime("%Y%m%d")), ("end", self.end.strftime("%Y%m%d"))]


def _dates(p: _WireParams) -> dict[str, object]:
    return {"start": p.date("start"), "end": p.date("end")}


# -- endpoints ------------------------------------------------------------------------------


@frozen
class ActiveUsers(DatedQuery[ActiveUsersResult]):
    """Active or new users per interval (``/api/2/users``)."""

    endpoint: ClassVar[str] = "active_users"
    result_type: ClassVar[type[Any]] = ActiveUsersResult
    _path: ClassVar[str] = "/api/2/users"
    _wire_names: ClassVar[Mapping[str, str]] = {
        "metric": "m",
        "interval": "i",
        "segments": "s",
        "group_by": "g",
    }

    start: date = field(validator=_is_date)
    end: date = field(validator=_is_date)
    metric: ActiveUsersMetric = field(
        default="active", validator=_one_of(get_args(ActiveUsersMetric), "metric")
    )
    interval: int = field(default=DAILY, validator=_interval(_CALENDAR_INTERVALS))
    segments: tuple[Segment, ...] = field(default=(), converter=_to_segments)
    group_by: str | None = field(default=None, validator=_optional_str)

    def __attrs_post_init__(self) -> None:
        self._check_range()

    def params(self) -> Params:
        out = self._date_params()
        out += [("m", self.metric), ("i", str(self.interval))]
        out += segment_params(self.segments)
        _put(out, "g", self.group_by)
        return tuple(out)

    @property
    def cost(self) -> int:
        conditions = _conditions(self.segments, int(self.group_by is not None))
        return _cost.query_cost(self.days, conditions, _cost.chart_cost(ChartKind.OTHER))

    @classmethod
    def _kwargs_from_params(cls, p: _WireParams) -> dict[str, object]:
        return _dates(p) | _present(
            metric=p.get("m"), interval=p.int("i"), segments=p.segments(), group_by=p.get("g")
        )


_BIN_WIRE: Final = {
    "bin_unit": "timeHistogramConfigBinTimeUnit",
    "bin_min": "timeHistogramConfigBinMin",
    "bin_max": "timeHistogramConfigBinMax",
    "bin_size": "timeHistogramConfigBinSize",
}


@frozen
class SessionLengthDistribution(DatedQuery[SessionLengthDistributionResult]):
    """Sessions per length bin (``/api/2/sessions/length``).

    Custom bins need ``bin_unit``, ``bin_min`` and ``bin_max`` together; ``bin_size`` is
    optional (the API picks one). Without them the API's default bins apply.
    """

    endpoint: ClassVar[str] = "session_length_distribution"
    result_type: ClassVar[type[Any]] = SessionLengthDistributionResult
    _path: ClassVar[str] = "/api/2/sessions/length"
    _wire_names: ClassVar[Mapping[str, str]] = _BIN_WIRE

    start: date = field(validator=_is_date)
    end: date = field(validator=_is_date)
    bin_unit: BinUnit | None = field(
        default=None, validator=_optional_one_of(get_args(BinUnit), "bin unit")
    )
    bin_min: int | None = field(default=None, validator=_optional_int(0))
    bin_max: int | None = field(default=None, validator=_optional_int(1))
    bin_size: int | None = field(default=None, validator=_optional_int(1))

    def __attrs_post_init__(self) -> None:
        self._check_range()
        together = {"bin_unit": self.bin_unit, "bin_min": self.bin_min, "bin_max": self.bin_max}
        given = [name for name, value in together.items() if value is not None]
        if given or self.bin_size is not None:
            for name, value in together.items():
                if value is None:
                    raise InvalidQuery(name, "custom bins need bin_unit, bin_min and bin_max")
        if self.bin_min is not None and self.bin_max is not None and self.bin_max <= self.bin_min:
            raise InvalidQuery("bin_max", f"must exceed bin_min ({self.bin_min})")

    def params(self) -> Params:
        out = self._date_params()
        _put(out, _BIN_WIRE["bin_unit"], self.bin_unit)
        _put(out, _BIN_WIRE["bin_min"], self.bin_min)
        _put(out, _BIN_WIRE["bin_max"], self.bin_max)
        _put(out, _BIN_WIRE["bin_size"], self.bin_size)
        return tuple(out)

    @property
    def cost(self) -> int:
        return _cost.query_cost(self.days, 1, _cost.chart_cost(ChartKind.SESSIONS))

    @classmethod
    def _kwargs_from_params(cls, p: _WireParams) -> dict[str, object]:
        return _dates(p) | _present(
            bin_unit=p.get(_BIN_WIRE["bin_unit"]),
            bin_min=p.int(_BIN_WIRE["bin_min"]),
            bin_max=p.int(_BIN_WIRE["bin_max"]),
            bin_size=p.int(_BIN_WIRE["bin_size"]),
        )


@frozen
class _DailySessionAverage(DatedQuery[R]):
    """A per-day session average: only a date range, costed as a sessions chart."""

    start: date = field(validator=_is_date)
    end: date = field(validator=_is_date)

    def __attrs_post_init__(self) -> None:
        self._check_range()

    def params(self) -> Params:
        return tuple(self._date_params())

    @property
    def cost(self) -> int:
        return _cost.query_cost(self.days, 1, _cost.chart_cost(ChartKind.SESSIONS))

    @classmethod
    def _kwargs_from_params(cls, p: _WireParams) -> dict[str, object]:
        return _dates(p)


@frozen
class AverageSessionLength(_DailySessionAverage[AverageSessionLengthResult]):
    """Average session length in seconds per day (``/api/2/sessions/average``)."""

    endpoint: ClassVar[str] = "average_session_length"
    result_type: ClassVar[type[Any]] = AverageSessionLengthResult
    _path: ClassVar[str] = "/api/2/sessions/average"


@frozen
class SessionsPerUser(_DailySessionAverage[SessionsPerUserResult]):
    """Average sessions per user per day (``/api/2/sessions/peruser``)."""

    endpoint: ClassVar[str] = "sessions_per_user"
    result_type: ClassVar[type[Any]] = SessionsPerUserResult
    _path: ClassVar[str] = "/api/2/sessions/peruser"


@frozen
class UserComposition(DatedQuery[UserCompositionResult]):
    """Users per value of a user property (``/api/2/composition``).

    ``property`` is a built-in property or ``gp:name``.
    """

    endpoint: ClassVar[str] = "user_composition"
    result_type: ClassVar[type[Any]] = UserCompositionResult
    _path: ClassVar[str] = "/api/2/composition"
    _wire_names: ClassVar[Mapping[str, str]] = {"property": "p"}

    start: date = field(validator=_is_date)
    end: date = field(validator=_is_date)
    property: str = field(validator=_property)

    def __attrs_post_init__(self) -> None:
        self._check_range()

    def params(self) -> Params:
        return (*self._date_params(), ("p", self.property))

    # The field named ``property`` shadows the builtin inside this class body.
    @builtins.property
    def cost(self) -> int:
        return _cost.query_cost(self.days, 1, _cost.chart_cost(ChartKind.OTHER))

    @classmethod
    def _kwargs_from_params(cls, p: _WireParams) -> dict[str, object]:
        return _dates(p) | {"property": p.require("p")}


@frozen
class EventsList(Query[EventsListResult]):
    """The project's visible events with this week's totals (``/api/2/events/list``)."""

    endpoint: ClassVar[str] = "events_list"
    result_type: ClassVar[type[Any]] = EventsListResult
    _path: ClassVar[str] = "/api/2/events/list"

    def params(self) -> Params:
        return ()

    @property
    def cost(self) -> int:
        return _cost.query_cost(1, 1, _cost.chart_cost(ChartKind.OTHER))

    @classmethod
    def _kwargs_from_params(cls, p: _WireParams) -> dict[str, object]:
        return {}


@frozen
class EventSegmentation(DatedQuery[EventSegmentationResult]):
    """Metrics of one or two events over time (``/api/2/events/segmentation``).

    ``events`` takes 1 or 2 :class:`Event` (or event types) sent as ``e`` and ``e2``; ``group_by``
    up to two property names (``g``, ``g2``). ``metric="formula"`` needs ``formula``; the
    property metrics (``histogram``, ``sums``, ``value_avg``) need a group-by on the first
    event.
    """

    endpoint: ClassVar[str] = "event_segmentation"
    result_type: ClassVar[type[Any]] = EventSegmentationResult
    _path: ClassVar[str] = "/api/2/events/segmentation"
    _wire_names: ClassVar[Mapping[str, str]] = {
        "events": "e",
        "events[1]": "e2",
        "metric": "m",
        "interval": "i",
        "segments": "s",
        "group_by": "g",
        "group_by[1]": "g2",
        "user_type": "n",
        "rolling_window": "rollingWindow",
        "rolling_average": "rollingAverage",
    }

    events: tuple[Event, ...] = field(converter=_to_events)
    start: date = field(validator=_is_date)
    end: date = field(validator=_is_date)
    metric: SegmentationMetric = field(
        default="uniques", validator=_one_of(SEGMENTATION_METRICS, "metric")
    )
    interval: int = field(default=DAILY, validator=_interval(_ALL_INTERVALS))
    segments: tuple[Segment, ...] = field(default=(), converter=_to_segments)
    group_by: tuple[str, ...] = field(default=(), converter=_to_group_bys)
    limit: int | None = field(default=None, validator=_optional_int(1, MAX_LIMIT))
    formula: str | None = field(default=None, validator=_optional_str)
    rolling_window: int | None = field(default=None, validator=_optional_int(1))
    rolling_average: int | None = field(default=None, validator=_optional_int(1))
    user_type: SegmentationUserType | None = field(
        default=None, validator=_optional_one_of(get_args(SegmentationUserType), "user type")
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
        _check_span(self.interval, self.days)

    def params(self) -> Params:
        out = [("e", _json(self.events[0].to_wire()))]
        if len(self.events) > 1:
            out.append(("e2", _json(self.events[1].to_wire())))
        out += self._date_params()
        out.append(("m", self.metric))
        _put(out, "n", self.user_type)
        out.append(("i", str(self.interval)))
        out += segment_params(self.segments)
        out += list(zip(("g", "g2"), self.group_by, strict=False))
        _put(out, "limit", self.limit)
        _put(out, "formula", self.formula)
        _put(out, "rollingWindow", self.rolling_window)
        _put(out, "rollingAverage", self.rolling_average)
        return tuple(out)

    @property
    def cost(self) -> int:
        conditions = _conditions(self.segments, len(self.group_by))
        chart = _cost.chart_cost(
            ChartKind.EVENT_SEGMENTATION, [len(e.group_by) for e in self.events]
        )
        return _cost.query_cost(self.days, conditions, chart)

    @classmethod
    def _kwargs_from_params(cls, p: _WireParams) -> dict[str, object]:
        events = [p.event("e")]
        if p.get("e2") is not None:
            events.append(p.event("e2"))
        group_by = [g for g in (p.get("g"), p.get("g2")) if g is not None]
        if p.get("g2") is not None and p.get("g") is None:
            raise InvalidQuery("g2", "g2 needs g")
        return (
            {"events": events}
            | _dates(p)
            | _present(
                metric=p.get("m"),
                user_type=p.get("n"),
                interval=p.int("i"),
                segments=p.segments(),
                group_by=group_by,
                limit=p.int("limit"),
                formula=p.get("formula"),
                rolling_window=p.int("rollingWindow"),
                rolling_average=p.int("rollingAverage"),
            )
        )


@frozen
class Funnel(DatedQuery[FunnelResult]):
    """Conversion through two or more steps (``/api/2/funnels``); one ``e`` per step."""

    endpoint: ClassVar[str] = "funnel"
    result_type: ClassVar[type[Any]] = FunnelResult
    _path: ClassVar[str] = "/api/2/funnels"
    _wire_names: ClassVar[Mapping[str, str]] = {
        "events": "e",
        "user_type": "n",
        "interval": "i",
        "segments": "s",
        "group_by": "g",
        "conversion_window": "cs",
    }

    events: tuple[Event, ...] = field(converter=_to_events)
    start: date = field(validator=_is_date)
    end: date = field(validator=_is_date)
    mode: FunnelMode = field(default="ordered", validator=_one_of(get_args(FunnelMode), "mode"))
    user_type: FunnelUserType | None = field(
        default=None, validator=_optional_one_of(get_args(FunnelUserType), "user type")
    )
    interval: int | None = field(default=None, validator=_interval(_ALL_INTERVALS, optional=True))
    segments: tuple[Segment, ...] = field(default=(), converter=_to_segments)
    group_by: str | None = field(default=None, validator=_optional_str)
    conversion_window: int | None = field(default=None, validator=_optional_int(1))
    """Seconds a user has to complete the funnel (the API's default is 30 days)."""
    limit: int | None = field(default=None, validator=_optional_int(1, MAX_LIMIT))

    def __attrs_post_init__(self) -> None:
        self._check_range()
        if len(self.events) < 2:
            raise InvalidQuery("events", f"a funnel needs at least 2 steps, got {len(self.events)}")
        _check_span(self.interval, self.days)

    def params(self) -> Params:
        out = [("e", _json(e.to_wire())) for e in self.events]
        out += self._date_params()
        out.append(("mode", self.mode))
        _put(out, "n", self.user_type)
        _put(out, "i", self.interval)
        out += segment_params(self.segments)
        _put(out, "g", self.group_by)
        _put(out, "cs", self.conversion_window)
        _put(out, "limit", self.limit)
        return tuple(out)

    @property
    def cost(self) -> int:
        conditions = _conditions(self.segments, int(self.group_by is not None))
        chart = _cost.chart_cost(ChartKind.FUNNEL, [len(e.group_by) for e in self.events])
        return _cost.query_cost(self.days, conditions, chart)

    @classmethod
    def _kwargs_from_params(cls, p: _WireParams) -> dict[str, object]:
        raw_steps = p.all("e")
        if not raw_steps:
            raise InvalidQuery("e", "missing required parameter")
        events = [p.event("e", raw) for raw in raw_steps]
        return (
            {"events": events}
            | _dates(p)
            | _present(
                mode=p.get("mode"),
                user_type=p.get("n"),
                interval=p.int("i"),
                segments=p.segments(),
                group_by=p.get("g"),
                conversion_window=p.int("cs"),
                limit=p.int("limit"),
            )
        )


@frozen
class Retention(DatedQuery[RetentionResult]):
    """Users returning after a start event (``/api/2/retention``).

    ``mode="bracket"`` needs ``brackets``: ascending, non-overlapping ``(from, to)`` day pairs
    such as ``[(0, 5), (5, 10)]``; other modes take none.
    """

    endpoint: ClassVar[str] = "retention"
    result_type: ClassVar[type[Any]] = RetentionResult
    _path: ClassVar[str] = "/api/2/retention"
    _wire_names: ClassVar[Mapping[str, str]] = {
        "start_event": "se",
        "return_event": "re",
        "mode": "rm",
        "brackets": "rb",
        "interval": "i",
        "segments": "s",
        "group_by": "g",
    }

    start_event: Event = field(converter=_to_start_event)
    return_event: Event = field(converter=_to_return_event)
    start: date = field(validator=_is_date)
    end: date = field(validator=_is_date)
    mode: RetentionMode = field(default="n-day", validator=_one_of(get_args(RetentionMode), "mode"))
    brackets: tuple[tuple[int, int], ...] | None = field(default=None, converter=_to_brackets)
    interval: int = field(default=DAILY, validator=_interval(_CALENDAR_INTERVALS))
    segments: tuple[Segment, ...] = field(default=(), converter=_to_segments)
    group_by: str | None = field(default=None, validator=_optional_str)

    def __attrs_post_init__(self) -> None:
        self._check_range()
        if self.mode == "bracket" and self.brackets is None:
            raise InvalidQuery("brackets", "mode 'bracket' needs brackets")
        if self.mode != "bracket" and self.brackets is not None:
            raise InvalidQuery("brackets", f"brackets need mode 'bracket', not {self.mode!r}")

    def params(self) -> Params:
        out = [
            ("se", _json(self.start_event.to_wire())),
            ("re", _json(self.return_event.to_wire())),
        ]
        out += self._date_params()
        out.append(("rm", self.mode))
        if self.brackets is not None:
            out.append(("rb", _json([list(pair) for pair in self.brackets])))
        out.append(("i", str(self.interval)))
        out += segment_params(self.segments)
        _put(out, "g", self.group_by)
        return tuple(out)

    @property
    def cost(self) -> int:
        conditions = _conditions(self.segments, int(self.group_by is not None))
        return _cost.query_cost(self.days, conditions, _cost.chart_cost(ChartKind.RETENTION))

    @classmethod
    def _kwargs_from_params(cls, p: _WireParams) -> dict[str, object]:
        raw_brackets = p.get("rb")
        brackets = None if raw_brackets is None else p.decode_json("rb", raw_brackets)
        return (
            {"start_event": p.event("se"), "return_event": p.event("re")}
            | _dates(p)
            | _present(
                mode=p.get("rm"),
                brackets=brackets,
                interval=p.int("i"),
                segments=p.segments(),
                group_by=p.get("g"),
            )
        )


@frozen
class UserActivity(Query[UserActivityResult]):
    """A user's summary and events (``/api/2/useractivity``; user pool, not costed).

    ``user`` is the Amplitude ID (a digit string is accepted and converted).
    """

    endpoint: ClassVar[str] = "user_activity"
    result_type: ClassVar[type[Any]] = UserActivityResult
    pool: ClassVar[Pool] = Pool.USER
    _path: ClassVar[str] = "/api/2/useractivity"

    user: int = field(converter=_to_amplitude_id)
    offset: int | None = field(default=None, validator=_optional_int(0))
    limit: int | None = field(default=None, validator=_optional_int(1, MAX_LIMIT))
    direction: Direction | None = field(
        default=None, validator=_optional_one_of(get_args(Direction), "direction")
    )

    def params(self) -> Params:
        out = [("user", str(self.user))]
        _put(out, "offset", self.offset)
        _put(out, "limit", self.limit)
        _put(out, "direction", self.direction)
        return tuple(out)

    @property
    def cost(self) -> int:
        return _cost.UNCOSTED

    @classmethod
    def _kwargs_from_params(cls, p: _WireParams) -> dict[str, object]:
        user = p.require("user")
        if not (user.isascii() and user.isdigit()):
            raise InvalidQuery("user", f"expected an Amplitude ID, got {user!r}")
        return {"user": int(user)} | _present(
            offset=p.int("offset"), limit=p.int("limit"), direction=p.get("direction")
        )


@frozen
class UserSearch(Query[UserSearchResult]):
    """Find users by Amplitude ID, device ID, user ID or user-ID prefix (user pool, not costed)."""

    endpoint: ClassVar[str] = "user_search"
    result_type: ClassVar[type[Any]] = UserSearchResult
    pool: ClassVar[Pool] = Pool.USER
    _path: ClassVar[str] = "/api/2/usersearch"

    user: str = field(converter=_to_search_term)

    def params(self) -> Params:
        return (("user", self.user),)

    @property
    def cost(self) -> int:
        return _cost.UNCOSTED

    @classmethod
    def _kwargs_from_params(cls, p: _WireParams) -> dict[str, object]:
        return {"user": p.require("user")}


@frozen
class RealtimeActiveUsers(Query[RealtimeActiveUsersResult]):
    """Active users in 5-minute buckets over the last two days (``/api/2/realtime``)."""

    endpoint: ClassVar[str] = "realtime_active_users"
    result_type: ClassVar[type[Any]] = RealtimeActiveUsersResult
    _path: ClassVar[str] = "/api/2/realtime"
    _wire_names: ClassVar[Mapping[str, str]] = {"interval": "i"}

    interval: int = field(default=REALTIME_ACTIVE_USERS_INTERVAL)

    def __attrs_post_init__(self) -> None:
        check_int(self.interval, "interval")
        if self.interval != REALTIME_ACTIVE_USERS_INTERVAL:
            raise InvalidQuery(
                "interval",
                f"realtime active users only take interval {REALTIME_ACTIVE_USERS_INTERVAL},"
                f" got {self.interval}",
            )

    def params(self) -> Params:
        return (("i", str(self.interval)),)

    @property
    def cost(self) -> int:
        return _cost.query_cost(1, 1, _cost.chart_cost(ChartKind.OTHER))

    @classmethod
    def _kwargs_from_params(cls, p: _WireParams) -> dict[str, object]:
        return _present(interval=p.int("i"))


@frozen
class RevenueLTV(DatedQuery[RevenueLTVResult]):
    """Lifetime value of new users (``/api/2/revenue/ltv``).

    ``metric`` is one of ``arpu``, ``arppu``, ``total_revenue``, ``paying_users`` (or its wire
    index 0 to 3, converted to the name).
    """

    endpoint: ClassVar[str] = "revenue_ltv"
    result_type: ClassVar[type[Any]] = RevenueLTVResult
    _path: ClassVar[str] = "/api/2/revenue/ltv"
    _wire_names: ClassVar[Mapping[str, str]] = {
        "metric": "m",
        "interval": "i",
        "segments": "s",
        "group_by": "g",
    }

    start: date = field(validator=_is_date)
    end: date = field(validator=_is_date)
    metric: LTVMetric = field(default="arpu", converter=_to_ltv_metric)
    interval: int = field(default=DAILY, validator=_interval(_CALENDAR_INTERVALS))
    segments: tuple[Segment, ...] = field(default=(), converter=_to_segments)
    group_by: str | None = field(default=None, validator=_optional_str)

    def __attrs_post_init__(self) -> None:
        self._check_range()

    def params(self) -> Params:
        out = self._date_params()
        out += [("m", str(LTV_METRICS.index(self.metric))), ("i", str(self.interval))]
        out += segment_params(self.segments)
        _put(out, "g", self.group_by)
        return tuple(out)

    @property
    def cost(self) -> int:
        conditions = _conditions(self.segments, int(self.group_by is not None))
        return _cost.query_cost(self.days, conditions, _cost.chart_cost(ChartKind.OTHER))

    @classmethod
    def _kwargs_from_params(cls, p: _WireParams) -> dict[str, object]:
        metric = p.int("m")
        if metric is not None and not 0 <= metric < len(LTV_METRICS):
            raise InvalidQuery("m", f"expected 0 to {len(LTV_METRICS) - 1}, got {metric}")
        return _dates(p) | _present(
            metric=metric, interval=p.int("i"), segments=p.segments(), group_by=p.get("g")
        )


@frozen
class _SavedChart(Query[R]):
    """A saved chart's data; ``_format`` is the last path segment (``csv`` or ``query``)."""

    _wire_names: ClassVar[Mapping[str, str]] = {"chart_id": "path"}
    _format: ClassVar[str] = ""

    chart_id: str = field(validator=_chart_id)
    cost: int = field(default=1, validator=_int_at_least(1))

    @property
    def path(self) -> str:
        return f"/api/3/chart/{self.chart_id}/{self._format}"

    def params(self) -> Params:
        return ()

    @classmethod
    def _kwargs_from_params(cls, p: _WireParams) -> dict[str, object]:
        return {}


@frozen
class ChartCSV(_SavedChart[ChartCSVResult]):
    """A saved chart's data as CSV (``/api/3/chart/{chart_id}/csv``).

    The chart's definition is not visible here, so its ``cost`` is 1 unless stated.
    """

    endpoint: ClassVar[str] = "chart_csv"
    result_type: ClassVar[type[Any]] = ChartCSVResult
    _format: ClassVar[str] = "csv"


@frozen
class ChartQuery(_SavedChart[ChartQueryResult]):
    """A saved chart's data as JSON (``/api/3/chart/{chart_id}/query``).

    The chart's definition is not visible here, so its ``cost`` is 1 unless stated.
    """

    endpoint: ClassVar[str] = "chart_query"
    result_type: ClassVar[type[Any]] = ChartQueryResult
    _format: ClassVar[str] = "query"


ENDPOINTS: Final[dict[str, type[Query[Any]]]] = {
    cls.endpoint: cls
    for cls in (
        ActiveUsers,
        SessionLengthDistribution,
        AverageSessionLength,
        SessionsPerUser,
        UserComposition,
        EventsList,
        EventSegmentation,
        Funnel,
        Retention,
        UserActivity,
        UserSearch,
        RealtimeActiveUsers,
        RevenueLTV,
        ChartCSV,
        ChartQuery,
    )
}
"""Every query class by its snake_case endpoint name."""

_BY_PATH: Final[dict[str, type[Query[Any]]]] = {
    cls._path: cls for cls in ENDPOINTS.values() if cls._path
}
_CHART_PATH: Final = re.compile(r"/api/3/chart/(?P<chart_id>[^/]+)/(?P<kind>csv|query)")


def parse_query(path: str, params: Sequence[tuple[str, str]]) -> Query[Any]:
    """Rebuild the query that produced ``(path, params)``: the inverse of ``q.path, q.params()``.

    Raises InvalidQuery naming the wire parameter at fault (``"path"`` for an unknown endpoint,
    ``"e"``, ``"start"``, ...); unknown parameters are refused too.
    """
    cls = _BY_PATH.get(path)
    kwargs: dict[str, object] = {}
    if cls is None:
        match = _CHART_PATH.fullmatch(path) if isinstance(path, str) else None
        if match is None:
            raise InvalidQuery("path", f"unknown endpoint {path!r}")
        cls = ChartCSV if match["kind"] == "csv" else ChartQuery
        kwargs["chart_id"] = match["chart_id"]
    wire = _WireParams(params)
    kwargs |= cls._kwargs_from_params(wire)
    wire.finish(path)
    build: Callable[..., Query[Any]] = cls
    try:
        return build(**kwargs)
    except InvalidQuery as exc:
        raise cls._wire_error(exc) from None
