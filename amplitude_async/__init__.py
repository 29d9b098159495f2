"""amplitude_async: a cost-aware asyncio client for the Amplitude Dashboard REST API.

Every query's cost is computed before it is sent, and a scheduler admits requests only when
every budget of the project allows them, so the limits are used to the last unit and never
exceeded. ``amplitude_async.testing`` holds an emulator of the API for offline use.
"""

from __future__ import annotations

import logging

from .admission import BudgetStore, InMemoryBudgetStore
from .cache import CachePolicy, MemoryCache, RedisCache, ResultCache
from .client import AmplitudeClient
from .clock import Clock, LoopClock
from .converter import structure_result, unstructure_result
from .errors import (
    AmplitudeError,
    APIError,
    AuthenticationError,
    BadRequest,
    BudgetUnavailable,
    CacheUnavailable,
    ClientClosed,
    ConfigurationError,
    InvalidQuery,
    NotFound,
    QueryTooExpensive,
    RateLimited,
    ResponseTooLarge,
    ResponseValidationError,
    ServerError,
    TransportError,
)
from .limits import Limits, Pool
from .observe import AdmittedEvent, RateLimitedEvent, ResponseEvent, RetryEvent
from .queries import (
    DAILY,
    HOURLY,
    MONTHLY,
    REALTIME,
    WEEKLY,
    ActiveUsers,
    AverageSessionLength,
    ChartCSV,
    ChartQuery,
    EventSegmentation,
    EventsList,
    Funnel,
    Query,
    RealtimeActiveUsers,
    Retention,
    RevenueLTV,
    SessionLengthDistribution,
    SessionsPerUser,
    UserActivity,
    UserComposition,
    UserSearch,
    parse_query,
)
from .results import (
    ActiveUsersResult,
    AverageSessionLengthResult,
    ChartCSVResult,
    ChartQueryResult,
    EventSegmentationResult,
    EventsListResult,
    FunnelResult,
    RealtimeActiveUsersResult,
    RetentionResult,
    RevenueLTVResult,
    Row,
    SessionLengthDistributionResult,
    SessionsPerUserResult,
    UserActivityResult,
    UserCompositionResult,
    UserSearchResult,
)
from .retry import RetryPolicy
from .savers import ClientStatistics, SavingsStatistics
from .scheduler import Scheduler, SchedulerStatistics
from .values import Event, GroupBy, InCohort, PerformedEvent, PropertyFilter, Segment, Where

__version__ = "0.1.0"

# Silent unless the application configures logging (the standard library's advice to libraries).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "DAILY",
    "HOURLY",
    "MONTHLY",
    "REALTIME",
    "WEEKLY",
    "APIError",
    "ActiveUsers",
    "ActiveUsersResult",
    "AdmittedEvent",
    "AmplitudeClient",
    "AmplitudeError",
    "AuthenticationError",
    "AverageSessionLength",
    "AverageSessionLengthResult",
    "BadRequest",
    "BudgetStore",
    "BudgetUnavailable",
    "CachePolicy",
    "CacheUnavailable",
    "ChartCSV",
    "ChartCSVResult",
    "ChartQuery",
    "ChartQueryResult",
    "ClientStatistics",
    "ClientClosed",
    "Clock",
    "ConfigurationError",
    "Event",
    "EventSegmentation",
    "EventSegmentationResult",
    "EventsList",
    "EventsListResult",
    "Funnel",
    "FunnelResult",
    "GroupBy",
    "InCohort",
    "InMemoryBudgetStore",
    "InvalidQuery",
    "Limits",
    "LoopClock",
    "MemoryCache",
    "NotFound",
    "PerformedEvent",
    "Pool",
    "PropertyFilter",
    "Query",
    "QueryTooExpensive",
    "RateLimited",
    "RealtimeActiveUsers",
    "RealtimeActiveUsersResult",
    "RateLimitedEvent",
    "RedisCache",
    "ResponseValidationError",
    "ResultCache",
    "Retention",
    "ResponseEvent",
    "ResponseTooLarge",
    "RetentionResult",
    "RetryEvent",
    "RetryPolicy",
    "RevenueLTV",
    "RevenueLTVResult",
    "Row",
    "SavingsStatistics",
    "Scheduler",
    "SchedulerStatistics",
    "Segment",
    "ServerError",
    "SessionLengthDistribution",
    "SessionLengthDistributionResult",
    "SessionsPerUser",
    "SessionsPerUserResult",
    "TransportError",
    "UserActivity",
    "UserActivityResult",
    "UserComposition",
    "UserCompositionResult",
    "UserSearch",
    "UserSearchResult",
    "Where",
    "__version__",
    "parse_query",
    "structure_result",
    "unstructure_result",
]
