"""Typed results of every Dashboard REST API endpoint.

These classes describe what an answer *means*; they know nothing of the wire format.
Renaming (``xValues`` ↔ ``x_values``), the ``data`` envelope, numbers sent as strings and
unknown keys are handled by :mod:`amplitude_async.converter`.

Numbers keep the JSON type they arrive with (an integer count stays an ``int`` even where the
annotation says ``float``). X values, retention and LTV dates stay strings: the API mixes
``2017-08-14``, ``2017-08-14T10:00:00``, ``15:05``, ``Aug 15`` and bucket labels such as
``0s-60s``; :func:`parse_x_value` turns the unambiguous ones into date/time objects.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime, time
from typing import Any, TypeAlias

from attrs import field, frozen

__all__ = [
    "ActiveUsersResult",
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
    "UserActivityResult",
    "UserCompositionResult",
    "UserData",
    "UserEvent",
    "UserMatch",
    "UserSearchResult",
    "parse_x_value",
]


# --- shared pieces -----------------------------------------------------------------------------


@frozen
class ResponseMetadata:
    """Query metadata the API sends beside ``data``; every field is optional.

    ``nova_cost`` is the cost the server charged, handy to check the local cost model.
    """

    time_computed: int | None = None
    was_cached: bool | None = None
    cache_freshness: str | None = None
    nova_cost: float | None = None
    nova_runtime: float | None = None
    throttle_time: float | None = None


@frozen
class SegmentMeta:
    """Which segment (and event) a series belongs to, e.g. ``{"segmentIndex": 0}``."""

    segment_index: int | None = None
    event_index: int | None = None


#: A ``seriesMeta`` item: a group-by value (``"Canada"``) or a :class:`SegmentMeta` object.
SeriesMeta: TypeAlias = str | SegmentMeta

#: A ``seriesLabels`` item: a name (``"Today"``), an event index (``0``) or, with a group-by,
#: a list such as ``[0, "Germany"]`` (kept as a tuple).
SeriesLabel: TypeAlias = str | int | tuple[str | int, ...]


@frozen
class Row:
    """One point of a result in tabular form: which series, which x value, what value."""

    label: str
    x_value: str
    value: float


@frozen
class CollapsedValue:
    """One ``seriesCollapsed`` cell: the series' value over the whole range."""

    value: float
    set_id: str | None = None


def _label_text(label: SeriesLabel) -> str:
    """Render a series label for tabular output (``[0, "Germany"]`` → ``"0, Germany"``)."""
    if isinstance(label, tuple):
        return ", ".join(str(part) for part in label)
    return str(label)


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


# --- series-shaped results ---------------------------------------------------------------------


@frozen
class SeriesResult:
    """Base of every series-shaped result: one value per series and x value.

    ``series[i][j]`` is the value of series ``i`` at ``x_values[j]``. Series ``i`` is named by
    ``series_labels[i]`` or ``series_meta[i]`` when the endpoint sends them.
    """

    x_values: tuple[str, ...]
    series: tuple[tuple[float, ...], ...]
    series_labels: tuple[SeriesLabel, ...] = ()
    series_meta: tuple[SeriesMeta, ...] = ()
    series_collapsed: tuple[tuple[CollapsedValue, ...], ...] = ()
    metadata: ResponseMetadata = ResponseMetadata()

    def label(self, index: int) -> str:
        """The display name of series ``index``: its label, its string meta, or the index."""
        if index < len(self.series_labels):
            return _label_text(self.series_labels[index])
        if index < len(self.series_meta):
            meta = self.series_meta[index]
            if isinstance(meta, str):
                return meta
        return str(index)

    def rows(self) -> tuple[Row, ...]:
        """Every point as a :class:`Row`, series by series, in x order."""
        return tuple(self._iter_rows())

    def _iter_rows(self) -> Iterator[Row]:
        for i, values in enumerate(self.series):
            name = self.label(i)
            for j, value in enumerate(values):
                # A series longer than x_values must not lose points; fall back to the index.
                x = self.x_values[j] if j < len(self.x_values) else str(j)
                yield Row(name, x, value)

    def x_dates(self) -> tuple[date | datetime | time | None, ...]:
        """``x_values`` parsed by :func:`parse_x_value` (``None`` where not a date/time)."""
        return tuple(parse_x_value(x) for x in self.x_values)


@frozen
class ActiveUsersResult(SeriesResult):
    """``/api/2/users``: active or new users per interval, one series per segment/group."""


@frozen
class SessionLengthDistributionResult(SeriesResult):
    """``/api/2/sessions/length``: session counts per length bucket (x values like ``0s-60s``)."""


@frozen
class AverageSessionLengthResult(SeriesResult):
    """``/api/2/sessions/average``: average session length in seconds per day."""


@frozen
class SessionsPerUserResult(SeriesResult):
    """``/api/2/sessions/peruser``: average sessions per user per day."""


@frozen
class UserCompositionResult(SeriesResult):
    """``/api/2/composition``: users per property value (the x values are property values)."""


@frozen
class EventSegmentationResult(SeriesResult):
    """``/api/2/events/segmentation``: the chosen metric per interval and group."""


@frozen
class RealtimeActiveUsersResult(SeriesResult):
    """``/api/2/realtime``: active users per 5 minutes (x values like ``15:05``)."""


@frozen
class ChartQueryResult(SeriesResult):
    """``/api/3/chart/{id}/query``: a saved chart's data, shaped like segmentation."""


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
class EventsListResult:
    """``/api/2/events/list``: the project's visible event types."""

    events: tuple[EventInfo, ...]
    metadata: ResponseMetadata = ResponseMetadata()


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
class FunnelResult:
    """``/api/2/funnels``: one :class:`FunnelGroup` per segment or group-by value."""

    groups: tuple[FunnelGroup, ...]
    metadata: ResponseMetadata = ResponseMetadata()

    def rows(self) -> tuple[Row, ...]:
        """Users reaching each step: label = group index, x value = step's event."""
        return tuple(
            Row(str(g), event, count)
            for g, group in enumerate(self.groups)
            for event, count in zip(group.events, group.cumulative_raw, strict=False)
        )


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
class RetentionResult:
    """``/api/2/retention``: one :class:`RetentionSeries` per segment."""

    series: tuple[RetentionSeries, ...]
    series_meta: tuple[SeriesMeta, ...] = ()
    metadata: ResponseMetadata = ResponseMetadata()

    def rows(self) -> tuple[Row, ...]:
        """Retained counts: label = cohort date (prefixed by the segment index when there are
        several segments), x value = day index (0 is the cohort size)."""
        several = len(self.series) > 1
        return tuple(
            Row(f"{i}: {cohort}" if several else cohort, str(day), cell.count)
            for i, one in enumerate(self.series)
            for cohort, cells in one.cohorts()
            for day, cell in enumerate(cells)
        )


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
class UserActivityResult:
    """``/api/2/useractivity``: the user summary and a page of events."""

    user_data: UserData
    events: tuple[UserEvent, ...] = ()


@frozen
class UserMatch:
    """A user found by ``/api/2/usersearch``."""

    amplitude_id: int
    user_id: str | None = None


@frozen
class UserSearchResult:
    """``/api/2/usersearch``: ``type`` is ``match_user_or_device_id``, ``match_user_prefix``
    or ``nomatch`` (then ``matches`` is empty)."""

    type: str
    matches: tuple[UserMatch, ...] = ()


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


@frozen
class RevenueLTVResult:
    """``/api/2/revenue/ltv``: one :class:`LTVSeries` per segment."""

    series: tuple[LTVSeries, ...]
    series_labels: tuple[SeriesLabel, ...] = ()
    metadata: ResponseMetadata = ResponseMetadata()


# --- saved charts ------------------------------------------------------------------------------


def _parse_csv(text: str) -> tuple[tuple[str, ...], ...]:
    # Amplitude prefixes cells with a tab so spreadsheets keep them as text; it is not data.
    return tuple(
        tuple(cell[1:] if cell.startswith("\t") else cell for cell in row)
        # newline="": the csv module reads line ends itself, so a bare "\r" or a line break
        # inside a quoted cell is parsed, not an error.
        for row in csv.reader(io.StringIO(text, newline=""))
        if row
    )


@frozen
class ChartCSVResult:
    """``/api/3/chart/{id}/csv``: the CSV text and its parsed ``table`` (blank lines dropped,
    the leading tab of each cell removed)."""

    text: str
    metadata: ResponseMetadata = ResponseMetadata()
    table: tuple[tuple[str, ...], ...] = field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        # Derived from ``text`` so the two can never disagree.
        object.__setattr__(self, "table", _parse_csv(self.text))
