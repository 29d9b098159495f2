"""Typed results of every Dashboard REST API endpoint.

These classes describe what an answer *means*; they know nothing of the wire format.
Renaming (``xValues`` ↔ ``x_values``), the ``data`` envelope, numbers sent as strings and
unknown keys are handled by :mod:`amplitude_async.converter`.

Numbers keep the JSON type they arrive with (an integer count stays an ``int`` even where the
annotation says ``float``). X values, retention and LTV dates stay strings as sent: the API
mixes ``2017-08-14``, ``2017-08-14T00:00:00``, ``15:05``, ``Aug 15`` and bucket labels such as
``0s-60s``.

Every result has ``rows(query=None)``: the answer as :class:`Row` objects whose label is what a
person would call the series (a group-by value, an event's name, a segment, a funnel step, a
retention cohort), whose x value is a ``date``/``datetime``/``time`` where the API sent one, and
whose value is a number. A result returned by the client knows its query (``result.query``, see
:func:`bind_query`), so labels use its event and segment names; a result decoded by hand takes
the query as an argument, and without one its labels come from the response alone.
``to_pandas(query=None)``, ``to_arrow(query=None)`` and ``to_polars(query=None)`` turn the same
rows into a ``pandas.DataFrame``, a ``pyarrow.Table`` or a ``polars.DataFrame`` with the same
columns and types (:mod:`amplitude_async.frames`); each library is imported only when its
method is called.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeAlias, TypeVar

from attrs import field, frozen

from . import frames
from .naming import ALL_USERS, Naming, event_name, segment_name

if TYPE_CHECKING:
    from .queries import Query

__all__ = [
    "ActiveUsersResult",
    "bind_query",
    "AverageSessionLengthResult",
    "ChartCSVResult",
    "ChartQueryResult",
    "CollapsedValue",
    "DaySeries",
    "EventInfo",
    "EventSegmentationResult",
    "EventsListResult",
    "FunnelGroup",
    "FunnelResult",
    "LTVCell",
    "LTVSeries",
    "Location",
    "RealtimeActiveUsersResult",
    "ResponseMetadata",
    "RetentionCell",
    "RetentionResult",
    "RetentionSeries",
    "RevenueLTVResult",
    "Row",
    "SegmentMeta",
    "SeriesLabel",
    "SeriesMeta",
    "SeriesResult",
    "SessionLengthDistributionResult",
    "SessionsPerUserResult",
    "Tabular",
    "UserActivityResult",
    "UserCompositionResult",
    "UserData",
    "UserEvent",
    "UserMatch",
    "UserSearchResult",
    "XValue",
    "event_name",
    "parse_x_value",
    "segment_name",
]


# --- shared pieces -----------------------------------------------------------------------------


@frozen
class ResponseMetadata:
    """Query metadata the API sends beside ``data``; every field is optional.

    ``nova_cost`` is the cost the server charged (0 on a cached answer), handy to check the
    local cost model. Other keys (``perQueryMetadata``, ``novaRequestStartAndEndTimes``, flags)
    are tolerated and dropped.
    """

    time_computed: int | None = None
    was_cached: bool | None = None
    cache_freshness: str | None = None
    nova_cost: float | None = None
    nova_runtime: float | None = None
    throttle_time: float | None = None
    nova_request_duration: float | None = None
    millis_since_computed: int | None = None


@frozen
class SegmentMeta:
    """Which segment (and event, and group) a series belongs to, e.g. ``{"segmentIndex": 0}``."""

    segment_index: int | None = None
    event_index: int | None = None
    group_value: str | None = None


#: A ``seriesMeta`` item: a group-by value (``"Canada"``) or a :class:`SegmentMeta` object.
SeriesMeta: TypeAlias = str | SegmentMeta

#: A ``seriesLabels`` item: a name (``"Today"``, a group-by value), an event index (``0``) or,
#: with a group-by, ``[event index, value]`` such as ``[0, "Germany"]`` (kept as a tuple).
SeriesLabel: TypeAlias = str | int | tuple[str | int, ...]

#: The x value of a :class:`Row`: a day, an hour, a realtime clock time, or text (a bucket
#: label, a property value, a funnel step).
XValue: TypeAlias = date | datetime | time | str


@frozen
class Row:
    """One value of a result in tabular form.

    ``label`` names the series (``"Germany"``, ``"Play Song"``, ``"All Users"``), ``x_value``
    says where on the x axis (a ``date`` for daily data), ``value`` is the number, and
    ``metric`` says which figure when one series carries several (``"r7d"``, ``"day 3"``,
    ``"previous"``); it is empty otherwise.
    """

    label: str
    x_value: XValue
    value: float | None
    metric: str = ""


@frozen
class CollapsedValue:
    """One ``seriesCollapsed`` cell: the series' value over the whole range."""

    value: float
    set_id: str | None = None


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?")
_TIME = re.compile(r"\d{2}:\d{2}")


def parse_x_value(value: str) -> date | datetime | time | None:
    """Parse an x value that is a date, an hourly timestamp or a realtime ``HH:MM``.

    Returns ``None`` for anything else (bucket labels, property values).
    """
    try:
        if _DATE.fullmatch(value):
            return date.fromisoformat(value)
        if _DATETIME.fullmatch(value):
            return datetime.fromisoformat(value)
        if _TIME.fullmatch(value):
            return time.fromisoformat(value)
    except ValueError:
        return None
    return None


def _x_values(texts: Sequence[str]) -> tuple[XValue, ...]:
    """Parsed x values; midnight timestamps are days when every one of them is midnight.

    Daily session answers send ``2024-01-01T00:00:00``: a day, whatever its spelling. An hourly
    range always holds other hours, so it keeps its timestamps.
    """
    parsed = [parse_x_value(x) for x in texts]
    stamps = [x for x in parsed if isinstance(x, datetime)]
    daily = bool(stamps) and all(x.time() == time(0) for x in stamps)
    return tuple(
        text if x is None else (x.date() if daily and isinstance(x, datetime) else x)
        for text, x in zip(texts, parsed, strict=True)
    )


def _letter(index: int) -> str:
    # Amplitude's charts call their events A, B, C ... (formulas too).
    return chr(ord("A") + index) if 0 <= index < 26 else f"event {index + 1}"


def _join(parts: Iterable[str | None]) -> str:
    return "; ".join(p for p in parts if p)


def _segment_part(index: int, naming: Naming) -> str:
    if index < len(naming.segments):
        return naming.segments[index]
    return f"Segment {index + 1}"


def _group_name(naming: Naming, segment: int, several_segments: bool, group: str | None) -> str:
    """A segment's or group's name: the group value, with the segment when there are several."""
    return _join([_segment_part(segment, naming) if several_segments else None, group]) or (
        _segment_part(segment, naming) if naming.segments else ALL_USERS
    )


def _meta_parts(meta: SeriesMeta | None) -> tuple[int | None, int | None, str | None]:
    """``(segment index, event index, group value)`` from a ``seriesMeta`` item."""
    if isinstance(meta, SegmentMeta):
        return meta.segment_index, meta.event_index, meta.group_value
    return None, None, meta or None


class Tabular(Protocol):
    """What every result offers: its values as rows named with the query's help."""

    def rows(self, query: Query[Any] | None = None) -> tuple[Row, ...]:
        """The result as :class:`Row` objects."""
        ...


class _ToPandas:
    """What every result shares: the query it answers (when the client bound it) and
    ``to_pandas``, built from its ``rows``."""

    __slots__ = ("_query",)

    @property
    def query(self) -> Query[Any] | None:
        """The query this result answers, when it came from the client (``None`` for a result
        decoded by hand); ``rows()`` names series with it."""
        return getattr(self, "_query", None)

    def _naming(self, query: Query[Any] | None) -> Naming:
        query = query if query is not None else self.query
        return Naming() if query is None else query.naming()

    def rows(self, query: Query[Any] | None = None) -> tuple[Row, ...]:
        raise NotImplementedError

    def to_pandas(self, query: Query[Any] | None = None) -> Any:
        """:meth:`rows` as a ``pandas.DataFrame`` (needs ``amplitude-async[pandas]``)."""
        return frames.to_pandas(self.rows(query))

    def to_arrow(self, query: Query[Any] | None = None) -> Any:
        """:meth:`rows` as a ``pyarrow.Table`` (needs ``amplitude-async[parquet]``)."""
        return frames.to_arrow(self.rows(query))

    def to_polars(self, query: Query[Any] | None = None) -> Any:
        """:meth:`rows` as a ``polars.DataFrame`` (needs ``amplitude-async[polars]``)."""
        return frames.to_polars(self.rows(query))


AnyResult = TypeVar("AnyResult")


def bind_query(result: AnyResult, query: Query[Any]) -> AnyResult:
    """Return ``result`` bound to ``query`` (its ``query`` and label naming); the client does
    this for every result it returns. Equality and the result's fields are unchanged."""
    if isinstance(result, _ToPandas):
        object.__setattr__(result, "_query", query)
    return result


# --- series-shaped results ---------------------------------------------------------------------


@frozen
class SeriesResult(_ToPandas):
    """Base of every series-shaped result: one value per series and x value.

    ``series[i][j]`` is the value of series ``i`` at ``x_values[j]``. Series ``i`` is described
    by ``series_labels[i]`` and ``series_meta[i]`` when the endpoint sends them.
    """

    x_values: tuple[str, ...]
    series: tuple[tuple[float, ...], ...]
    series_labels: tuple[SeriesLabel, ...] = ()
    series_meta: tuple[SeriesMeta, ...] = ()
    series_collapsed: tuple[tuple[CollapsedValue, ...], ...] = ()
    metadata: ResponseMetadata = ResponseMetadata()

    #: Whether an integer label is an event index (segmentation); otherwise it says nothing.
    _event_labels: ClassVar[bool] = False
    #: The name of a series that nothing else names (one segment, no group-by).
    _subject: ClassVar[str] = ALL_USERS

    def label(self, index: int, query: Query[Any] | None = None) -> str:
        """The display name of series ``index`` (see :meth:`series_names`)."""
        return self.series_names(query)[index]

    def series_names(self, query: Query[Any] | None = None) -> tuple[str, ...]:
        """What a person calls each series.

        The group-by value; the event's name when the query has several events or no group-by
        (its letter, ``A``, without the query); the segment when there are several; otherwise
        the endpoint's subject (``All Users``, ``Average Session Length``, ...).
        """
        naming = self._naming(query)
        parts = [self._parts(i) for i in range(len(self.series))]
        segments = {s for s, _, _ in parts}
        events = {e for _, e, _ in parts if e is not None}
        several_segments = len(naming.segments) > 1 or len(segments) > 1
        several_events = len(naming.events) > 1 or len(events) > 1
        names = []
        for segment, event, group in parts:
            event_text: str | None = None
            if naming.formula is not None:
                event_text = naming.formula if group is None or several_segments else None
            elif event is not None and (several_events or group is None):
                event_text = naming.events[event] if event < len(naming.events) else _letter(event)
            name = _join(
                [
                    _segment_part(segment, naming) if several_segments else None,
                    event_text,
                    group,
                ]
            )
            names.append(name or naming.subject or self._subject)
        return tuple(names)

    def _parts(self, index: int) -> tuple[int, int | None, str | None]:
        """``(segment index, event index, group value)`` of series ``index``."""
        meta = self.series_meta[index] if index < len(self.series_meta) else None
        segment, event, group = _meta_parts(meta)
        label = self.series_labels[index] if index < len(self.series_labels) else None
        if isinstance(label, tuple):
            head = label[0] if label else None
            rest = label[1:] if isinstance(head, int) else label
            if isinstance(head, int) and self._event_labels:
                event = head
            elif isinstance(head, int) and segment is None:
                # Without events to count, a leading index can only be the segment's.
                segment = head
            group = ", ".join(str(part) for part in rest) or group
        elif isinstance(label, int):
            if self._event_labels:
                event = label
        elif label:
            group = label
        if event is None and self._event_labels and group is None:
            event = 0
        return segment or 0, event, group

    def rows(self, query: Query[Any] | None = None) -> tuple[Row, ...]:
        """Every point as a :class:`Row`, series by series, in x order."""
        return tuple(self._iter_rows(query))

    def _iter_rows(self, query: Query[Any] | None) -> Iterator[Row]:
        names = self.series_names(query)
        xs = _x_values(self.x_values)
        for name, values in zip(names, self.series, strict=True):
            for j, value in enumerate(values):
                # A series longer than x_values must not lose points; fall back to the index.
                yield Row(name, xs[j] if j < len(xs) else str(j), value)

    def x_dates(self) -> tuple[date | datetime | time | None, ...]:
        """``x_values`` parsed by :func:`parse_x_value` (``None`` where not a date/time)."""
        return tuple(parse_x_value(x) for x in self.x_values)


@frozen
class ActiveUsersResult(SeriesResult):
    """``/api/2/users``: active or new users per interval, one series per segment/group."""

    _subject: ClassVar[str] = "Users"


@frozen
class SessionLengthDistributionResult(SeriesResult):
    """``/api/2/sessions/length``: session counts per length bucket (x values like ``0s-60s``)."""

    _subject: ClassVar[str] = "Sessions"


@frozen
class AverageSessionLengthResult(SeriesResult):
    """``/api/2/sessions/average``: average session length in seconds per day."""

    _subject: ClassVar[str] = "Average Session Length"


@frozen
class SessionsPerUserResult(SeriesResult):
    """``/api/2/sessions/peruser``: average sessions per user per day."""

    _subject: ClassVar[str] = "Sessions per User"


@frozen
class UserCompositionResult(SeriesResult):
    """``/api/2/composition``: users per property value (the x values are property values)."""


@frozen
class EventSegmentationResult(SeriesResult):
    """``/api/2/events/segmentation``: the chosen metric per interval and group."""

    _event_labels: ClassVar[bool] = True


@frozen
class RealtimeActiveUsersResult(SeriesResult):
    """``/api/2/realtime``: active users per 5 minutes (x values like ``15:05``)."""


@frozen
class ChartQueryResult(SeriesResult):
    """``/api/3/chart/{id}/query``: a saved chart's data, shaped like segmentation."""

    _event_labels: ClassVar[bool] = True


# --- events list -------------------------------------------------------------------------------


@frozen
class EventInfo:
    """One event type of the project with this week's total."""

    value: str
    display: str | None = None
    totals: int | None = None
    hidden: bool = False
    deleted: bool = False
    non_active: bool = False
    flow_hidden: bool = False


@frozen
class EventsListResult(_ToPandas):
    """``/api/2/events/list``: the project's visible event types."""

    events: tuple[EventInfo, ...]
    metadata: ResponseMetadata = ResponseMetadata()

    def rows(self, query: Query[Any] | None = None) -> tuple[Row, ...]:
        """One row per event type: label = the event type, value = this week's total."""
        return tuple(Row(e.value, "", e.totals, "totals") for e in self.events)


# --- funnels -----------------------------------------------------------------------------------


@frozen
class DaySeries:
    """Per-day funnel figures: ``series[d][k]`` is step ``k`` on day ``x_values[d]``."""

    series: tuple[tuple[float, ...], ...]
    x_values: tuple[str, ...] = ()
    formatted_x_values: tuple[str, ...] = ()


@frozen
class FunnelGroup:
    """The funnel of one segment or group: counts, conversion and transition times per step."""

    events: tuple[str, ...]
    cumulative_raw: tuple[float, ...]
    cumulative: tuple[float, ...] = ()
    step_by_step: tuple[float, ...] = ()
    median_trans_times: tuple[float, ...] = ()
    avg_trans_times: tuple[float, ...] = ()
    meta: SegmentMeta | None = None
    day_funnels: DaySeries | None = None
    day_median_trans_times: DaySeries | None = None
    day_avg_trans_times: DaySeries | None = None


@frozen
class FunnelResult(_ToPandas):
    """``/api/2/funnels``: one :class:`FunnelGroup` per segment or group-by value."""

    groups: tuple[FunnelGroup, ...]
    metadata: ResponseMetadata = ResponseMetadata()

    def group_names(self, query: Query[Any] | None = None) -> tuple[str, ...]:
        """Each group's name: its group-by value, with the segment when there are several."""
        return _group_names(self._naming(query), [_meta_parts(g.meta) for g in self.groups])

    def rows(self, query: Query[Any] | None = None) -> tuple[Row, ...]:
        """Users reaching each step: label = the group, x value = ``step N: event``."""
        return tuple(
            Row(name, f"step {k}: {event}", count)
            for name, group in zip(self.group_names(query), self.groups, strict=True)
            for k, (event, count) in enumerate(
                zip(group.events, group.cumulative_raw, strict=False), start=1
            )
        )


def _group_names(
    naming: Naming, parts: Sequence[tuple[int | None, int | None, str | None]]
) -> tuple[str, ...]:
    segments = {s or 0 for s, _, _ in parts}
    several = len(naming.segments) > 1 or len(segments) > 1
    return tuple(_group_name(naming, s or 0, several, group) for s, _, group in parts)


# --- retention ---------------------------------------------------------------------------------


@frozen
class RetentionCell:
    """Users of a cohort retained on one day (``count`` out of ``outof``)."""

    count: int
    outof: int
    incomplete: bool = False
    retained_set_id: str | None = None


@frozen
class RetentionSeries:
    """Retention of one segment: per cohort date a row of cells, and the combined row.

    Cell 0 of every row is the cohort itself (``count == outof``).
    """

    dates: tuple[str, ...]
    values: Mapping[str, tuple[RetentionCell, ...]] = field(factory=dict)
    combined: tuple[RetentionCell, ...] = ()

    def cohorts(self) -> Iterator[tuple[str, tuple[RetentionCell, ...]]]:
        """``(cohort date, cells)`` in the order of ``dates``, then any cohort not listed."""
        for cohort in self.dates:
            if cohort in self.values:
                yield cohort, self.values[cohort]
        for cohort, cells in self.values.items():
            if cohort not in self.dates:
                yield cohort, cells


@frozen
class RetentionResult(_ToPandas):
    """``/api/2/retention``: one :class:`RetentionSeries` per segment or group."""

    series: tuple[RetentionSeries, ...]
    series_meta: tuple[SeriesMeta, ...] = ()
    metadata: ResponseMetadata = ResponseMetadata()

    def series_names(self, query: Query[Any] | None = None) -> tuple[str, ...]:
        """Each series' name: its group-by value, with the segment when there are several."""
        metas = [
            _meta_parts(self.series_meta[i] if i < len(self.series_meta) else None)
            for i in range(len(self.series))
        ]
        parts = [(i if s is None else s, e, g) for i, (s, e, g) in enumerate(metas)]
        return _group_names(self._naming(query), parts)

    def rows(self, query: Query[Any] | None = None) -> tuple[Row, ...]:
        """Retained users: label = the series, x value = the cohort's first day, metric = the
        period (``day 0`` is the cohort's size; ``week N``/``month N``, or ``bracket A-B``,
        when the query says so)."""
        naming = self._naming(query)
        unit = {7: "week", 30: "month"}.get(naming.interval or 1, "day")
        columns = [f"{unit} 0"]
        if naming.brackets is not None:
            columns += [f"bracket {a}-{b}" for a, b in naming.brackets]
        return tuple(
            Row(
                name,
                _cohort_date(cohort, naming),
                cell.count,
                columns[n] if naming.brackets is not None and n < len(columns) else f"{unit} {n}",
            )
            for name, one in zip(self.series_names(query), self.series, strict=True)
            for cohort, cells in one.cohorts()
            for n, cell in enumerate(cells)
        )


def _cohort_date(text: str, naming: Naming) -> date | str:
    """A cohort's first day from ``2021-10-04``, ``Sep 15, 2026`` or (with the query's range
    for the year) ``Sep 24``; text that is none of these is kept."""
    for form in ("%Y-%m-%d", "%b %d, %Y"):
        try:
            return datetime.strptime(text, form).date()
        except ValueError:
            pass
    if naming.start is None or naming.end is None:
        return text
    try:
        # A leap day needs a year to parse, so parse it with one.
        parsed = datetime.strptime(f"{text} 2000", "%b %d %Y")
    except ValueError:
        return text
    for year in range(naming.start.year, naming.end.year + 1):
        try:
            day = date(year, parsed.month, parsed.day)
        except ValueError:
            continue
        # Weekly and monthly cohorts start up to a month before the range.
        if naming.start.replace(day=1) <= day <= naming.end:
            return day
    return text


# --- user activity and search ------------------------------------------------------------------


@frozen
class Location:
    """A last known position."""

    lat: float
    lng: float


@frozen
class UserData:
    """The user summary of ``/api/2/useractivity``.

    ``last_location`` is ``None`` when the API sends its "unknown" sentinel. Fields the
    library does not model are kept, undecoded, in ``extra``.
    """

    user_id: str | None = None
    canonical_amplitude_id: int | None = None
    merged_amplitude_ids: tuple[int, ...] = ()
    num_events: int | None = None
    num_sessions: int | None = None
    usage_time: float | None = None
    first_used: date | None = None
    last_used: date | None = None
    purchases: int | None = None
    revenue: float | None = None
    platform: str | None = None
    os: str | None = None
    version: str | None = None
    device: str | None = None
    device_type: str | None = None
    carrier: str | None = None
    country: str | None = None
    region: str | None = None
    city: str | None = None
    dma: str | None = None
    language: str | None = None
    start_version: str | None = None
    device_ids: tuple[str, ...] = ()
    last_location: Location | None = None
    properties: Mapping[str, Any] = field(factory=dict)
    extra: Mapping[str, Any] = field(factory=dict)


@frozen
class UserEvent:
    """One event of a user's stream; fields the library does not model stay in ``extra``."""

    event_type: str
    event_time: datetime | None = None
    event_id: int | None = None
    session_id: int | None = None
    amplitude_id: int | None = None
    user_id: str | None = None
    device_id: str | None = None
    event_properties: Mapping[str, Any] = field(factory=dict)
    user_properties: Mapping[str, Any] = field(factory=dict)
    extra: Mapping[str, Any] = field(factory=dict)


@frozen
class UserActivityResult(_ToPandas):
    """``/api/2/useractivity``: the user summary and a page of events.

    An unknown user is an answer too: no events and a summary of zeros and nulls.
    """

    user_data: UserData
    events: tuple[UserEvent, ...] = ()

    def rows(self, query: Query[Any] | None = None) -> tuple[Row, ...]:
        """One row per event: label = event type, x value = its time, value = 1."""
        return tuple(
            Row(e.event_type, e.event_time if e.event_time is not None else "", 1, "events")
            for e in self.events
        )


@frozen
class UserMatch:
    """A user found by ``/api/2/usersearch``."""

    amplitude_id: int
    user_id: str | None = None


@frozen
class UserSearchResult(_ToPandas):
    """``/api/2/usersearch``: ``type`` is ``match_user_or_device_id``, ``match_user_prefix``
    or ``nomatch`` (then ``matches`` is empty)."""

    type: str
    matches: tuple[UserMatch, ...] = ()

    def rows(self, query: Query[Any] | None = None) -> tuple[Row, ...]:
        """One row per match: label = user ID, x value = the match type, value = Amplitude ID."""
        return tuple(
            Row(m.user_id or "", self.type, m.amplitude_id, "amplitude_id") for m in self.matches
        )


# --- revenue LTV -------------------------------------------------------------------------------


@frozen
class LTVCell:
    """LTV of one cohort: ``values`` maps ``r1d`` … ``r180d`` (and ``r1new`` …) to amounts."""

    values: Mapping[str, float | None] = field(factory=dict)
    count: int | None = None
    paid: int | None = None
    total_amount: float | None = None


@frozen
class LTVSeries:
    """LTV of one segment: cohort dates (``"Sep 24"`` or ``"2021-10-04"``) and their cells."""

    dates: tuple[str, ...]
    values: Mapping[str, LTVCell] = field(factory=dict)


_LTV_FIXED = ("count", "paid", "total_amount")


@frozen
class RevenueLTVResult(_ToPandas):
    """``/api/2/revenue/ltv``: one :class:`LTVSeries` per segment or group."""

    series: tuple[LTVSeries, ...]
    series_labels: tuple[SeriesLabel, ...] = ()
    metadata: ResponseMetadata = ResponseMetadata()
    series_meta: tuple[SeriesMeta, ...] = ()

    def series_names(self, query: Query[Any] | None = None) -> tuple[str, ...]:
        """Each series' name: its group-by value, with the segment when there are several."""
        parts = []
        for i in range(len(self.series)):
            segment, _, group = _meta_parts(
                self.series_meta[i] if i < len(self.series_meta) else None
            )
            label = self.series_labels[i] if i < len(self.series_labels) else ""
            if isinstance(label, int) and not isinstance(label, bool) and label >= 0:
                # The live API labels LTV series by their segment's index ([0]): a segment,
                # named by the query ("All Users" without one), not a group called "0".
                segment, label = (label if segment is None else segment), ""
            elif isinstance(label, tuple):
                label = ", ".join(str(part) for part in label)
            parts.append((i if segment is None else segment, None, str(label) or group))
        return _group_names(self._naming(query), parts)

    def rows(self, query: Query[Any] | None = None) -> tuple[Row, ...]:
        """LTV figures: label = the series, x value = the cohort's first day (``Sep 24`` needs
        the query for its year), metric = ``r1d`` ... then ``count``, ``paid``,
        ``total_amount``."""
        naming = self._naming(query)
        out: list[Row] = []
        for name, one in zip(self.series_names(query), self.series, strict=True):
            cohorts = [(c, _cohort_date(c, naming)) for c in one.values]
            # Oldest cohort first; the API lists the newest first.
            cohorts.sort(key=lambda c: (isinstance(c[1], str), str(c[1])))
            for text, day in cohorts:
                cell = one.values[text]
                out.extend(Row(name, day, value, key) for key, value in cell.values.items())
                out.extend(
                    Row(name, day, getattr(cell, key), key)
                    for key in _LTV_FIXED
                    if getattr(cell, key) is not None
                )
        return tuple(out)


# --- saved charts ------------------------------------------------------------------------------


def _parse_csv(text: str) -> tuple[tuple[str, ...], ...]:
    """Every line's cells, blank lines kept as ``()``, the leading tab of each cell removed."""
    # Amplitude prefixes text cells with a tab so spreadsheets keep them as text; it is not data.
    # newline="": the csv module reads line ends itself, so CRLF, a bare "\r" or a line break
    # inside a quoted cell is parsed, not an error.
    return tuple(
        tuple(cell[1:] if cell.startswith("\t") else cell for cell in row)
        for row in csv.reader(io.StringIO(text, newline=""))
    )


_PREVIOUS = " [Previous]"
_INTEGER = re.compile(r"[+-]?\d+")


def _chart_number(cell: str) -> float | None:
    """A table cell as a number: ``3``, ``7.5``, ``1,204``, ``12.5%``; empty or text → None."""
    text = cell.strip().replace(",", "").removesuffix("%")
    if _INTEGER.fullmatch(text):
        return int(text)
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


@frozen
class ChartCSVResult(_ToPandas):
    """``/api/3/chart/{id}/csv``: a saved chart's export, kept as ``text`` and read as a table.

    The export is blocks of one-cell lines (the chart's name and description, then its metric
    and events), blank lines between them, then the table: a header (``Segment`` and one date
    per column) and one row per segment. Comparison charts add rows named ``… [Previous]``.
    Some chart types send JSON series instead of text: then ``text`` is that JSON and
    ``series`` its decoded form, and :meth:`rows` reads it the same way.
    """

    text: str
    metadata: ResponseMetadata = ResponseMetadata()
    series: ChartQueryResult | None = None
    table: tuple[tuple[str, ...], ...] = field(init=False, eq=False, repr=False)
    blocks: tuple[tuple[str, ...], ...] = field(init=False, eq=False, repr=False)
    header: tuple[str, ...] = field(init=False, eq=False, repr=False)
    _body: tuple[tuple[str, ...], ...] = field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        # Derived from ``text`` so they can never disagree with it.
        lines = () if self.series is not None else _parse_csv(self.text)
        object.__setattr__(self, "table", tuple(line for line in lines if line))
        blocks: list[tuple[str, ...]] = []
        block: list[str] = []
        header: tuple[str, ...] = ()
        for n, line in enumerate(lines):
            if len(line) > 1:
                header = line
                body = tuple(row for row in lines[n + 1 :] if row)
                break
            if line and line[0]:
                block.append(line[0])
            elif block:
                blocks.append(tuple(block))
                block = []
        else:
            body = ()
        if block:
            blocks.append(tuple(block))
        object.__setattr__(self, "blocks", tuple(blocks))
        object.__setattr__(self, "header", header)
        object.__setattr__(self, "_body", body)

    @property
    def title(self) -> str | None:
        """The chart's name (the first line of the export)."""
        return self.blocks[0][0] if self.blocks else None

    @property
    def description(self) -> str | None:
        """The chart's description, when the export has one."""
        return self.blocks[0][1] if self.blocks and len(self.blocks[0]) > 1 else None

    @property
    def metric(self) -> str | None:
        """The chart's metric (``Uniques``, ``Totals``, ...): the first line of the second block."""
        return self.blocks[1][0] if len(self.blocks) > 1 else None

    def rows(self, query: Query[Any] | None = None) -> tuple[Row, ...]:
        """One row per segment and column: label = the segment, x value = the column's date,
        value = the number (``None`` for an empty cell). Comparison rows keep their segment's
        name and have metric ``previous``."""
        if self.series is not None:
            return self.series.rows(query if query is not None else self.query)
        columns = _x_values(self.header[1:])
        out: list[Row] = []
        for line in self._body:
            name, metric = line[0], ""
            if name.endswith(_PREVIOUS):
                name, metric = name.removesuffix(_PREVIOUS), "previous"
            out.extend(
                Row(name, x, _chart_number(cell), metric)
                for x, cell in zip(columns, line[1:], strict=False)
            )
        return tuple(out)
