"""User activity and user search results."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

if TYPE_CHECKING:
    from ..queries import Query

from .base import (
    Row,
    _ToPandas,
)

__all__ = [
    "Location",
    "UserActivityResult",
    "UserData",
    "UserEvent",
    "UserMatch",
    "UserSearchResult",
]


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
class UserActivityResult(_ToPandas):
    """``/api/2/useractivity``: the user summary and a page of events.

    An unknown user is an answer too: no events and a summary of zeros and nulls.
    """

    user_data: UserData
    events: tuple[UserEvent, ...] = ()

    def rows(self, query: Query[Any] | None = None) -> tuple[Row, ...]:
        """One row per event: label = event type, x value = its time, value = 1."""
        return tuple(
            Row(e.event_type, e.event_time if e.event_time is not None else "", 1, "events")
            for e in self.events
        )


@frozen
class UserMatch:
    """A user found by ``/api/2/usersearch``."""

    amplitude_id: int
    user_id: str | None = None


@frozen
class UserSearchResult(_ToPandas):
    """``/api/2/usersearch``: ``type`` is ``match_user_or_device_id``, ``match_user_prefix``
    or ``nomatch`` (then ``matches`` is empty)."""

    type: str
    matches: tuple[UserMatch, ...] = ()

    def rows(self, query: Query[Any] | None = None) -> tuple[Row, ...]:
        """One row per match: label = user ID, x value = the match type, value = Amplitude ID."""
        return tuple(
            Row(m.user_id or "", self.type, m.amplitude_id, "amplitude_id") for m in self.matches
        )
