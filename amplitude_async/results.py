"""Typed results of every Dashboard REST API endpoint (skeleton: fields to be filled in)."""

from __future__ import annotations

from attrs import frozen

__all__ = [
    "ActiveUsersResult",
    "AverageSessionLengthResult",
    "ChartCSVResult",
    "ChartQueryResult",
    "EventSegmentationResult",
    "EventsListResult",
    "FunnelResult",
    "RealtimeActiveUsersResult",
    "RetentionResult",
    "RevenueLTVResult",
    "SessionLengthDistributionResult",
    "SessionsPerUserResult",
    "UserActivityResult",
    "UserCompositionResult",
    "UserSearchResult",
]


@frozen
class ActiveUsersResult:
    pass


@frozen
class SessionLengthDistributionResult:
    pass


@frozen
class AverageSessionLengthResult:
    pass


@frozen
class SessionsPerUserResult:
    pass


@frozen
class UserCompositionResult:
    pass


@frozen
class EventsListResult:
    pass


@frozen
class EventSegmentationResult:
    pass


@frozen
class FunnelResult:
    pass


@frozen
class RetentionResult:
    pass


@frozen
class UserActivityResult:
    pass


@frozen
class UserSearchResult:
    pass


@frozen
class RealtimeActiveUsersResult:
    pass


@frozen
class RevenueLTVResult:
    pass


@frozen
class ChartCSVResult:
    pass


@frozen
class ChartQueryResult:
    pass
