"""amplitude_async: a cost-aware asyncio client for the Amplitude Dashboard REST API.

Every query's cost is computed before it is sent, and a scheduler admits requests only when
every budget of the project allows them, so the limits are used to the last unit and never
exceeded. ``amplitude_async.testing`` holds an emulator of the API for offline use.
"""

from __future__ import annotations

import importlib as _importlib
import logging
import warnings as _warnings
from typing import Any as _Any

from .budget import WindowUsage
from .cache import CachePolicy, MemoryCache, RedisCache, ResultCache
from .client import AmplitudeClient
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
from .scheduler import PoolStatistics, Scheduler, SchedulerStatistics
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
    "BudgetUnavailable",
    "CachePolicy",
    "CacheUnavailable",
    "ChartCSV",
    "ChartCSVResult",
    "ChartQuery",
    "ChartQueryResult",
    "ClientStatistics",
    "ClientClosed",
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
    "InvalidQuery",
    "Limits",
    "MemoryCache",
    "NotFound",
    "PerformedEvent",
    "Pool",
    "PoolStatistics",
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
    "WindowUsage",
    "__version__",
]

# Plumbing that was exported here before: still importable from this package for one release
# (with a DeprecationWarning), and for good from the module named.
_MOVED = {
    "BudgetStore": "amplitude_async.admission",
    "InMemoryBudgetStore": "amplitude_async.admission",
    "Clock": "amplitude_async.clock",
    "LoopClock": "amplitude_async.clock",
    "parse_query": "amplitude_async.queries",
    "structure_result": "amplitude_async.converter",
    "unstructure_result": "amplitude_async.converter",
}


def __getattr__(name: str) -> _Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module 'amplitude_async' has no attribute {name!r}")
    _warnings.warn(
        f"amplitude_async.{name} moved: import it from {module}",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(_importlib.import_module(module), name)
