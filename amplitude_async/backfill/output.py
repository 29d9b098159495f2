"""Tidy rows from results, and the output files assembled from them atomically.

Every result becomes rows ``(query, label, date, metric, value)``:

- series endpoints (segmentation, active users, sessions per user/average, saved-chart
  queries): one row per series and x value; ``label`` is the series' name (a group-by value,
  an event's name, ``All Users``: the label of ``result.rows(query)``), ``date`` the x
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

``rows.parquet`` holds the same rows, in the same order, with typed columns
(:data:`PARQUET_COLUMNS`):

=========  =================  =================================================================
column     Parquet type       value
=========  =================  =================================================================
query      string, required   the job query's name
label      string, required   the series
x          string, required   the position as text: the ``date`` column of the other formats
date       date32             the day of ``x`` (an hourly row's day); null when ``x`` is no day
timestamp  timestamp[us]      an hourly row's hour (the project's time zone, as sent); null
                              for daily rows and rows without a date
metric     string, required   which figure
value      float64            the number; null for an empty cell
source     string             where the rows come from (the target, as the manifest names it)
=========  =================  =================================================================

It is written in row groups of :data:`~amplitude_async.parquet.DEFAULT_ROW_GROUP_ROWS` rows as
they are read from the checkpoint, so memory stays bounded whatever the backfill's size.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Iterable
from datetime import date, datetime, time
from pathlib import Path
from typing import IO, Any, Final

from attrs import frozen

from ..frames import Column
from ..parquet import DEFAULT_ROW_GROUP_ROWS, ParquetWriter
from ..queries import (
    ActiveUsers,
    AverageSessionLength,
    DatedQuery,
    EventSegmentation,
    Query,
    SessionsPerUser,
)
from ..results import SeriesResult, Tabular, parse_x_value

__all__ = [
    "COLUMNS",
    "PARQUET_COLUMNS",
    "TidyRow",
    "atomic_write",
    "tidy_rows",
    "write_csv",
    "write_jsonl",
    "write_parquet_rows",
]

COLUMNS: Final = ("query", "label", "date", "metric", "value")
"""The columns of ``rows.jsonl`` and ``rows.csv``, in order."""

PARQUET_COLUMNS: Final = (
    Column("query", "string", nullable=False),
    Column("label", "string", nullable=False),
    Column("x", "string", nullable=False),
    Column("date", "date"),
    Column("timestamp", "timestamp"),
    Column("metric", "string", nullable=False),
    Column("value", "float64"),
    Column("source", "string"),
)
"""The columns of ``rows.parquet``, in order (see the module docstring)."""


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


def tidy_rows(name: str, query: Query[Any], result: Tabular) -> list[TidyRow]:
    """The rows of ``result``, the answer to ``query`` (one chunk of the job query ``name``).

    Built from ``result.rows(query)``, so labels are the ones every other table shows.
    """
    metric = _metric_name(query)
    chunk = _chunk_day(query)
    rows = result.rows(query)
    several = len({row.label for row in rows}) > 1
    out = []
    for row in rows:
        x = row.x_value
        if isinstance(x, date | time):
            out.append(TidyRow(name, row.label, x.isoformat(), row.metric or metric, row.value))
        elif isinstance(result, SeriesResult):
            # Bins, property values: the value's name is the label, the chunk its date.
            label = f"{row.label}; {x}" if several else x
            out.append(TidyRow(name, label, chunk, metric, row.value))
        else:
            out.append(TidyRow(name, row.label, chunk, row.metric or x or metric, row.value))
    return out


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


def _typed_position(text: str) -> tuple[date | None, datetime | None]:
    """The day and (for hourly rows) the timestamp of a row's ``date`` text."""
    x = parse_x_value(text)
    if isinstance(x, datetime):
        return x.date(), x
    if isinstance(x, date):
        return x, None
    return None, None


def write_parquet_rows(
    path: Path,
    rows: Iterable[TidyRow],
    *,
    source: str | None,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
) -> Path:
    """Write ``rows`` as Parquet with :data:`PARQUET_COLUMNS`, atomically; returns ``path``.

    ``source`` fills the ``source`` column. Rows are streamed in row groups of
    ``row_group_rows``. Needs pyarrow (``ImportError`` naming the extra otherwise).
    """
    positions: dict[str, tuple[date | None, datetime | None]] = {}
    with ParquetWriter(path, PARQUET_COLUMNS, row_group_rows=row_group_rows) as out:
        for row in rows:
            position = positions.get(row.date)
            if position is None:
                # A backfill repeats a few hundred dates over millions of rows: parse each once.
                position = positions[row.date] = _typed_position(row.date)
            value = None if row.value is None else float(row.value)
            out.write((row.query, row.label, row.date, *position, row.metric, value, source))
    return path
