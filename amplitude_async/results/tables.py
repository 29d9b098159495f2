"""Funnels, retention and revenue LTV: results whose rows are cohorts or steps, not x values."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

from ..naming import Naming

if TYPE_CHECKING:
    from ..queries import Query

from .base import (
    ResponseMetadata,
    Row,
    SegmentMeta,
    SeriesLabel,
    SeriesMeta,
    _group_name,
    _meta_parts,
    _ToPandas,
)

__all__ = [
    "DaySeries",
    "FunnelGroup",
    "FunnelResult",
    "LTVCell",
    "LTVSeries",
    "RetentionCell",
    "RetentionResult",
    "RetentionSeries",
    "RevenueLTVResult",
]


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
