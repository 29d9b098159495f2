"""What a person calls a series: event and segment names, and what a query tells about its
series (:class:`Naming`).

Each query says how its series are named (``Query.naming()``); results read a
:class:`Naming` and nothing else of the query, so results and queries do not import each other
for it.
"""

from __future__ import annotations

from datetime import date

from attrs import frozen

from .values import Event, InCohort, PerformedEvent, Segment, Where

__all__ = ["ALL_USERS", "Naming", "event_name", "segment_name"]

ALL_USERS = "All Users"
"""The name of the segment without conditions, as Amplitude's charts call it."""

_SPECIAL_EVENTS = {
    "_active": "Any Active Event",
    "_all": "Any Event",
    "_new": "New User",
    "revenue_amount": "Revenue",
    "verified_revenue": "Verified Revenue",
    "unverified_revenue": "Unverified Revenue",
}


def event_name(event: Event) -> str:
    """An event's display name: its type, custom events without ``ce:``, specials spelled out."""
    name = event.event_type
    return _SPECIAL_EVENTS.get(name, name.removeprefix("ce:"))


def segment_name(segment: Segment) -> str:
    """A segment's display name: ``All Users``, or its conditions (``country is Germany``)."""
    parts: list[str] = []
    for cond in segment.conditions:
        if isinstance(cond, Where):
            parts.append(f"{cond.prop} {cond.op} {', '.join(cond.values)}")
        elif isinstance(cond, InCohort):
            parts.append(f"in cohort {cond.cohort_id}")
        elif isinstance(cond, PerformedEvent):
            parts.append(f"performed {cond.event_type} {cond.op} {cond.value}")
    return " and ".join(parts) or ALL_USERS


@frozen
class Naming:
    """What a query tells about its series (all empty when the query is unknown): its events'
    and segments' names, a formula, the subject of a one-series chart, a retention interval
    and brackets, and the date range (to read dates sent without a year)."""

    events: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    formula: str | None = None
    subject: str | None = None
    interval: int | None = None
    brackets: tuple[tuple[int, int], ...] | None = None
    start: date | None = None
    end: date | None = None
