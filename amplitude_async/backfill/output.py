"""Tidy rows from results, and the output files assembled from them atomically.

Every result becomes rows ``(query, label, date, metric, value)``:

- series endpoints (segmentation, active users, sessions per user/average, saved-chart
  queries): one row per series and x value; ``label`` is the series label, ``date`` the x
  value (``YYYY-MM-DD``, or ``YYYY-MM-DDTHH:MM:SS`` for hourly/realtime), ``metric`` the
  query's metric (``uniques``, ``new``, ``average_session_length``, ...);
- series whose x values are not dates (session length bins, composition values, histogram
  bins) and whole-range endpoints (funnels): ``date`` is the first day of the chunk the value
  covers and the bin, value or step is in ``label`` (funnels: ``metric`` is ``step N: event``);
- retention: ``date`` is the cohort's first day, ``metric`` ``day N`` / ``week N`` /
  ``month N`` (``bracket A-B`` in bracket mode; ``... 0`` is the cohort size);
- revenue LTV: ``date`` is the cohort's first day, ``metric`` ``r1d`` … plus ``count``,
  ``paid`` and ``total_amount``;
- the events list: ``label`` is the event type, ``metric`` ``totals``.

Files are written to a temporary name in the output directory and renamed into place
(:func:`os.replace`), so a reader never sees a half-written file.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any, Final

from attrs import frozen

from ..queries import (
    MONTHLY,
    WEEKLY,
    ActiveUsers,
    AverageSessionLength,
    DatedQuery,
    EventSegmentation,
    Query,
    Retention,
    SessionsPerUser,
)
from ..results import (
    EventsListResult,
    FunnelResult,
    RetentionResult,
    RevenueLTVResult,
    SeriesResult,
    parse_x_value,
)

__all__ = ["COLUMNS", "TidyRow", "atomic_write", "tidy_rows", "write_csv", "write_jsonl"]

COLUMNS: Final = ("query", "label", "date", "metric", "value")
"""The columns of every output file, in order."""


@frozen
class TidyRow:
    """One value of one query: which series (``label``), when, what, how much."""

    query: str
    label: str
    date: str
    metric: str
    value: float | None

    def as_dict(self) -> dict[str, Any]:
        """The row keyed by :data:`COLUMNS`."""
        return {
            "query": self.query,
            "label": self.label,
            "date": self.date,
            "metric": self.metric,
            "value": self.value,
        }


def _metric_name(query: Query[Any]) -> str:
    if isinstance(query, EventSegmentation | ActiveUsers):
        return str(query.metric)
    if isinstance(query, AverageSessionLength):
        return "average_session_length"
    if isinstance(query, SessionsPerUser):
        return "sessions_per_user"
    return query.endpoint


def _chunk_day(query: Query[Any]) -> str:
    return query.start.isoformat() if isinstance(query, DatedQuery) else ""


def _long_date(text: str) -> str:
    """``Sep 15, 2026`` → ``2026-09-15`` (other forms are kept as they are)."""
    try:
        return datetime.strptime(text, "%b %d, %Y").date().isoformat()
    except ValueError:
        return text


def _month_day(text: str, query: Query[Any]) -> str:
    """``Sep 24`` (no year) → the date of that day within the query's range."""
    if not isinstance(query, DatedQuery):
        return text
    try:
        parsed = datetime.strptime(text, "%b %d")
    except ValueError:
        return text
    for year in range(query.start.year, query.end.year + 1):
        try:
            day = date(year, parsed.month, parsed.day)
        except ValueError:
            continue
        if query.start.replace(day=1) <= day <= query.end:
            return day.isoformat()
    return text


def _series_rows(name: str, query: Query[Any], result: SeriesResult) -> Iterator[TidyRow]:
    metric = _metric_name(query)
    dated = all(parse_x_value(x) is not None for x in result.x_values)
    several = len(result.series) > 1
    for row in result.rows():
        if dated:
            yield TidyRow(name, row.label, row.x_value, metric, row.value)
        else:
            label = f"{row.label}; {row.x_value}" if several else row.x_value
            yield TidyRow(name, label, _chunk_day(query), metric, row.value)


def _funnel_rows(name: str, query: Query[Any], result: FunnelResult) -> Iterator[TidyRow]:
    day = _chunk_day(query)
    for g, group in enumerate(result.groups):
        for k, (event, count) in enumerate(
            zip(group.events, group.cumulative_raw, strict=False), start=1
        ):
            yield TidyRow(name, str(g), day, f"step {k}: {event}", count)


def _retention_rows(name: str, query: Query[Any], result: RetentionResult) -> Iterator[TidyRow]:
    unit = "day"
    columns: list[str] | None = None
    if isinstance(query, Retention):
        unit = {WEEKLY: "week", MONTHLY: "month"}.get(query.interval, "day")
        if query.brackets is not None:
            columns = [f"{unit} 0"] + [f"bracket {a}-{b}" for a, b in query.brackets]
    for s, series in enumerate(result.series):
        for cohort, cells in series.cohorts():
            for n, cell in enumerate(cells):
                metric = columns[n] if columns and n < len(columns) else f"{unit} {n}"
                yield TidyRow(name, str(s), _long_date(cohort), metric, cell.count)


def _ltv_rows(name: str, query: Query[Any], result: RevenueLTVResult) -> Iterator[TidyRow]:
    for s, series in enumerate(result.series):
        label = str(s)
        if s < len(result.series_labels) and result.series_labels[s] != "":
            label = str(result.series_labels[s])
        for cohort in sorted(series.values, key=lambda c: _month_day(c, query)):
            cell = series.values[cohort]
            day = _month_day(cohort, query)
            for key, value in cell.values.items():
                yield TidyRow(name, label, day, key, value)
            for key in ("count", "paid", "total_amount"):
                extra = getattr(cell, key)
                if extra is not None:
                    yield TidyRow(name, label, day, key, extra)


def tidy_rows(name: str, query: Query[Any], result: object) -> list[TidyRow]:
    """The rows of ``result``, the answer to ``query`` (one chunk of the job query ``name``)."""
    if isinstance(result, SeriesResult):
        return list(_series_rows(name, query, result))
    if isinstance(result, FunnelResult):
        return list(_funnel_rows(name, query, result))
    if isinstance(result, RetentionResult):
        return list(_retention_rows(name, query, result))
    if isinstance(result, RevenueLTVResult):
        return list(_ltv_rows(name, query, result))
    if isinstance(result, EventsListResult):
        return [TidyRow(name, e.value, "", "totals", e.totals) for e in result.events]
    raise TypeError(f"{type(result).__name__} has no tabular form")


# -- files ----------------------------------------------------------------------------------


def atomic_write(path: Path, write: Any) -> Path:
    """Write ``path`` through ``write(handle)`` to a temporary file renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def write_jsonl(path: Path, rows: Iterable[TidyRow]) -> Path:
    """Write one JSON object per line, atomically; returns ``path``."""

    def write(handle: IO[str]) -> None:
        for row in rows:
            handle.write(json.dumps(row.as_dict(), ensure_ascii=False) + "\n")

    return atomic_write(path, write)


def _cell(value: object) -> object:
    return "" if value is None else value


def write_csv(path: Path, rows: Iterable[TidyRow]) -> Path:
    """Write a CSV file with a header row, atomically; returns ``path``."""

    def write(handle: IO[str]) -> None:
        out = csv.writer(handle, lineterminator="\n")
        out.writerow(COLUMNS)
        for row in rows:
            out.writerow([_cell(v) for v in row.as_dict().values()])

    return atomic_write(path, write)
