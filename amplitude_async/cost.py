"""The pure cost model of the Dashboard REST API.

``cost = days * conditions * chart cost``, where

- *days* is the number of days in ``[start, end]`` (both inclusive), 1 for undated endpoints;
- *conditions* is the number of segments (at least 1: the implicit "all users" segment) plus the
  number of conditions inside them plus 4 per top-level group-by (``g``, ``g2``); event filters
  do not count;
- *chart cost* depends on the endpoint: event segmentation costs the number of events plus 4 per
  group-by of each event; funnels twice the number of steps plus 4 per group-by of each step;
  retention 8; the sessions endpoints (length, average, per user) 4; every other endpoint 1.

Saved charts cost 1 unless the caller states a cost (their definition is not visible to the
client); user activity and user search are not costed (cost 0) and count by number of queries in
their own pool. Nothing here performs I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import date
from typing import Final

__all__ = [
    "DEFAULT_CHART_COST",
    "GROUP_BY_WEIGHT",
    "RETENTION_CHART_COST",
    "SESSIONS_CHART_COST",
    "UNCOSTED",
    "ChartKind",
    "chart_cost",
    "condition_count",
    "days_in_range",
    "query_cost",
]

GROUP_BY_WEIGHT: Final = 4
"""Each group-by counts as this many conditions (top level) or this much chart cost (events)."""
RETENTION_CHART_COST: Final = 8
SESSIONS_CHART_COST: Final = 4
DEFAULT_CHART_COST: Final = 1
UNCOSTED: Final = 0
"""The cost of queries outside the cost budgets (user activity, user search)."""


class ChartKind(enum.StrEnum):
    """The chart families that the cost rule distinguishes."""

    EVENT_SEGMENTATION = "event_segmentation"
    FUNNEL = "funnel"
    RETENTION = "retention"
    SESSIONS = "sessions"
    OTHER = "other"


def days_in_range(start: date | None, end: date | None) -> int:
    """Days in ``[start, end]``, both inclusive; 1 when the query has no dates."""
    if start is None and end is None:
        return 1
    if start is None or end is None:
        raise ValueError("a date range needs both start and end")
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    return (end - start).days + 1


def condition_count(conditions_per_segment: Sequence[int], group_bys: int = 0) -> int:
    """Conditions of a query: segments (at least 1) + their conditions + 4 per group-by.

    ``conditions_per_segment`` holds, for each segment, how many conditions it has; ``group_bys``
    is the number of top-level group-bys (``g``, ``g2``), not the group-bys inside events.
    """
    if group_bys < 0 or any(n < 0 for n in conditions_per_segment):
        raise ValueError("counts must not be negative")
    segments = max(1, len(conditions_per_segment))
    return segments + sum(conditions_per_segment) + GROUP_BY_WEIGHT * group_bys


def chart_cost(kind: ChartKind, group_bys_per_event: Sequence[int] = ()) -> int:
    """The chart cost of ``kind``; ``group_bys_per_event`` lists each event's (step's) group-bys.

    The event list matters for event segmentation and funnels only.
    """
    if any(n < 0 for n in group_bys_per_event):
        raise ValueError("counts must not be negative")
    extra = GROUP_BY_WEIGHT * sum(group_bys_per_event)
    if kind is ChartKind.EVENT_SEGMENTATION:
        return len(group_bys_per_event) + extra
    if kind is ChartKind.FUNNEL:
        return 2 * len(group_bys_per_event) + extra
    if kind is ChartKind.RETENTION:
        return RETENTION_CHART_COST
    if kind is ChartKind.SESSIONS:
        return SESSIONS_CHART_COST
    return DEFAULT_CHART_COST


def query_cost(days: int, conditions: int, chart: int) -> int:
    """``days * conditions * chart``."""
    if days < 1 or conditions < 1 or chart < 1:
        raise ValueError(f"cost factors must be positive, got {days}, {conditions}, {chart}")
    return days * conditions * chart
