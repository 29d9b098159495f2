"""Saved charts' CSV exports."""

from __future__ import annotations

import csv
import io
import math
import re
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

if TYPE_CHECKING:
    from ..queries import Query

from .base import (
    ResponseMetadata,
    Row,
    _ToPandas,
    _x_values,
)
from .series import ChartQueryResult

__all__ = [
    "ChartCSVResult",
]


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
