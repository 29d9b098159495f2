"""Saved charts, by id: their data as CSV or as JSON."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

import attrs
from attrs import field, frozen

from ..errors import InvalidQuery
from ..results import ChartCSVResult, ChartQueryResult
from ..validation import check_str, int_validator
from .base import Query
from .fields import INT, wire

__all__ = ["ChartCSV", "ChartQuery"]

R = TypeVar("R")


def _chart_id(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    text = check_str(value, attribute.name)
    # The id becomes a path segment: anything that would change the URL's structure is refused.
    if text in (".", "..") or any(c in text for c in "/?#%") or any(c.isspace() for c in text):
        raise InvalidQuery(attribute.name, f"not a chart id: {text!r}")


@frozen
class _SavedChart(Query[R]):
    """A saved chart's data; ``_format`` is the last path segment (``csv`` or ``query``).

    The chart's definition is not visible here, so its ``cost`` is 1 unless stated; the cost
    is not part of the request (:func:`~amplitude_async.queries.parse_query` rebuilds the
    default).
    """

    _format: ClassVar[str] = ""

    chart_id: str = field(validator=_chart_id, metadata=wire("path", in_path=True))
    cost: int = field(default=1, validator=int_validator(1), metadata=wire(codec=INT))

    @property
    def path(self) -> str:
        return f"/api/3/chart/{self.chart_id}/{self._format}"


@frozen
class ChartCSV(_SavedChart[ChartCSVResult]):
    """A saved chart's data as CSV (``/api/3/chart/{chart_id}/csv``).

    The chart's definition is not visible here, so its ``cost`` is 1 unless stated.
    """

    endpoint: ClassVar[str] = "chart_csv"
    result_type = ChartCSVResult
    _format: ClassVar[str] = "csv"


@frozen
class ChartQuery(_SavedChart[ChartQueryResult]):
    """A saved chart's data as JSON (``/api/3/chart/{chart_id}/query``).

    The chart's definition is not visible here, so its ``cost`` is 1 unless stated.
    """

    endpoint: ClassVar[str] = "chart_query"
    result_type = ChartQueryResult
    _format: ClassVar[str] = "query"
