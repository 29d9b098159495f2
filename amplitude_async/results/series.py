"""Series-shaped results (one value per series and x value), and the events list."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any, ClassVar

from attrs import frozen

from ..naming import ALL_USERS

if TYPE_CHECKING:
    from ..queries import Query

from .base import (
    CollapsedValue,
    ResponseMetadata,
    Row,
    SeriesLabel,
    SeriesMeta,
    _join,
    _letter,
    _meta_parts,
    _segment_part,
    _ToPandas,
    _x_values,
    parse_x_value,
)

__all__ = [
    "ActiveUsersResult",
    "AverageSessionLengthResult",
    "ChartQueryResult",
    "EventInfo",
    "EventSegmentationResult",
    "EventsListResult",
    "RealtimeActiveUsersResult",
    "SeriesResult",
    "SessionLengthDistributionResult",
    "SessionsPerUserResult",
    "UserCompositionResult",
]


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
                known = 0 <= event < len(naming.events)
                event_text = naming.events[event] if known else _letter(event)
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
            # A negative number is no index: it stays in the label's text.
            leading = head if isinstance(head, int) and head >= 0 else None
            rest = label[1:] if leading is not None else label
            if leading is not None and self._event_labels:
                event = leading
            elif leading is not None and segment is None:
                # Without events to count, a leading index can only be the segment's.
                segment = leading
            group = ", ".join(str(part) for part in rest) or group
        elif isinstance(label, int):
            if label < 0:
                group = str(label)
            elif self._event_labels:
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
