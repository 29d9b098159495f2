"""Queries about users: active users, composition, realtime, user activity and user search."""

from __future__ import annotations

import builtins
from datetime import date
from typing import ClassVar, Final, Literal, TypeAlias, get_args

import attrs
from attrs import field, frozen

from .. import cost as _cost
from ..cost import ChartKind
from ..errors import InvalidQuery
from ..limits import Pool
from ..naming import Naming
from ..results import (
    ActiveUsersResult,
    RealtimeActiveUsersResult,
    UserActivityResult,
    UserCompositionResult,
    UserSearchResult,
)
from ..validation import check_int, check_str, date_validator, int_validator, one_of, str_validator
from ..values import Segment
from .base import MAX_LIMIT, DatedQuery, Query, dated_cost, to_segments
from .fields import DATE, INT, INTERVAL, SEGMENTS, Codec, interval_validator, wire
from .intervals import CALENDAR_INTERVALS, DAILY

__all__ = [
    "REALTIME_ACTIVE_USERS_INTERVAL",
    "ActiveUsers",
    "RealtimeActiveUsers",
    "UserActivity",
    "UserComposition",
    "UserSearch",
]

ActiveUsersMetric: TypeAlias = Literal["active", "new"]
Direction: TypeAlias = Literal["latest", "earliest"]
REALTIME_ACTIVE_USERS_INTERVAL: Final = 5


@frozen
class ActiveUsers(DatedQuery[ActiveUsersResult]):
    """Active or new users per interval (``/api/2/users``)."""

    endpoint: ClassVar[str] = "active_users"
    result_type = ActiveUsersResult
    _path: ClassVar[str] = "/api/2/users"

    start: date = field(validator=date_validator, metadata=wire("start", codec=DATE))
    end: date = field(validator=date_validator, metadata=wire("end", codec=DATE))
    metric: ActiveUsersMetric = field(
        default="active",
        validator=one_of(get_args(ActiveUsersMetric), "metric"),
        metadata=wire("m"),
    )
    interval: int = field(
        default=DAILY,
        validator=interval_validator(CALENDAR_INTERVALS),
        metadata=wire("i", codec=INTERVAL),
    )
    segments: tuple[Segment, ...] = field(
        default=(), converter=to_segments, metadata=wire("s", codec=SEGMENTS, repeated=True)
    )
    group_by: str | None = field(
        default=None, validator=str_validator(optional=True), metadata=wire("g")
    )

    def __attrs_post_init__(self) -> None:
        self._check_range()

    def naming(self) -> Naming:
        """Segments, range, and the chart's subject (active or new users)."""
        subject = "New Users" if self.metric == "new" else "Active Users"
        return attrs.evolve(super().naming(), subject=subject)

    @property
    def cost(self) -> int:
        return dated_cost(self, ChartKind.OTHER, int(self.group_by is not None))


@frozen
class UserComposition(DatedQuery[UserCompositionResult]):
    """Users per value of a user property (``/api/2/composition``).

    ``property`` is a built-in property or ``gp:name``.
    """

    endpoint: ClassVar[str] = "user_composition"
    result_type = UserCompositionResult
    _path: ClassVar[str] = "/api/2/composition"

    start: date = field(validator=date_validator, metadata=wire("start", codec=DATE))
    end: date = field(validator=date_validator, metadata=wire("end", codec=DATE))
    property: str = field(validator=str_validator(), metadata=wire("p"))

    def __attrs_post_init__(self) -> None:
        self._check_range()

    # The field named ``property`` shadows the builtin inside this class body.
    @builtins.property
    def cost(self) -> int:
        return dated_cost(self, ChartKind.OTHER)


def _to_amplitude_id(value: int | str) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return check_int(value, "user", minimum=0)


def _amplitude_id(text: str, name: str, index: int) -> int:
    if not (text.isascii() and text.isdigit()):
        raise InvalidQuery(name, f"expected an Amplitude ID, got {text!r}")
    return int(text)


_AMPLITUDE_ID: Final = Codec(str, _amplitude_id, INT.loose)


@frozen
class UserActivity(Query[UserActivityResult]):
    """A user's summary and events (``/api/2/useractivity``; user pool, not costed).

    ``user`` is the Amplitude ID (a digit string is accepted and converted).
    """

    endpoint: ClassVar[str] = "user_activity"
    result_type = UserActivityResult
    pool: ClassVar[Pool] = Pool.USER
    _path: ClassVar[str] = "/api/2/useractivity"

    user: int = field(converter=_to_amplitude_id, metadata=wire("user", codec=_AMPLITUDE_ID))
    offset: int | None = field(
        default=None, validator=int_validator(0, optional=True), metadata=wire("offset", codec=INT)
    )
    limit: int | None = field(
        default=None,
        validator=int_validator(1, MAX_LIMIT, optional=True),
        metadata=wire("limit", codec=INT),
    )
    direction: Direction | None = field(
        default=None,
        validator=one_of(get_args(Direction), "direction", optional=True),
        metadata=wire("direction"),
    )

    @property
    def cost(self) -> int:
        return _cost.UNCOSTED


def _to_search_term(value: str | int) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return check_str(value, "user")


@frozen
class UserSearch(Query[UserSearchResult]):
    """Find users by Amplitude ID, device ID, user ID or user-ID prefix (user pool, not costed)."""

    endpoint: ClassVar[str] = "user_search"
    result_type = UserSearchResult
    pool: ClassVar[Pool] = Pool.USER
    _path: ClassVar[str] = "/api/2/usersearch"

    user: str = field(converter=_to_search_term, metadata=wire("user"))

    @property
    def cost(self) -> int:
        return _cost.UNCOSTED


@frozen
class RealtimeActiveUsers(Query[RealtimeActiveUsersResult]):
    """Active users in 5-minute buckets over the last two days (``/api/2/realtime``)."""

    endpoint: ClassVar[str] = "realtime_active_users"
    result_type = RealtimeActiveUsersResult
    _path: ClassVar[str] = "/api/2/realtime"

    interval: int = field(default=REALTIME_ACTIVE_USERS_INTERVAL, metadata=wire("i", codec=INT))

    def __attrs_post_init__(self) -> None:
        check_int(self.interval, "interval")
        if self.interval != REALTIME_ACTIVE_USERS_INTERVAL:
            raise InvalidQuery(
                "interval",
                f"realtime active users only take interval {REALTIME_ACTIVE_USERS_INTERVAL},"
                f" got {self.interval}",
            )

    @property
    def cost(self) -> int:
        return _cost.query_cost(1, 1, _cost.chart_cost(ChartKind.OTHER))
