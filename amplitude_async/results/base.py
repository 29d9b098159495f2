"""What every result shares: rows, response metadata, series naming, ``query`` binding and
the frame conversions (``to_pandas``, ``to_arrow``, ``to_polars``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

from attrs import frozen

from .. import frames
from ..naming import ALL_USERS, Naming

if TYPE_CHECKING:
    from ..queries import Query


__all__ = [
    "AnyResult",
    "CollapsedValue",
    "ResponseMetadata",
    "Row",
    "SegmentMeta",
    "SeriesLabel",
    "SeriesMeta",
    "Tabular",
    "XValue",
    "bind_query",
    "parse_x_value",
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
    if 0 <= index < len(naming.segments):
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
