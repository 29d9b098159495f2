"""The package's public names: exactly these, and each importable from the top level."""

from __future__ import annotations

import amplitude_async

EXPECTED = {
    # models
    "Event", "PropertyFilter", "GroupBy", "Segment", "Where", "PerformedEvent", "InCohort",
    "Query", "ActiveUsers", "SessionLengthDistribution", "AverageSessionLength",
    "SessionsPerUser", "UserComposition", "EventsList", "EventSegmentation", "Funnel",
    "Retention", "UserActivity", "UserSearch", "RealtimeActiveUsers", "RevenueLTV",
    "ChartCSV", "ChartQuery", "CohortsList", "parse_query",
    "REALTIME", "HOURLY", "DAILY", "WEEKLY", "MONTHLY",
    # results
    "ActiveUsersResult", "SessionLengthDistributionResult", "AverageSessionLengthResult",
    "SessionsPerUserResult", "UserCompositionResult", "EventsListResult",
    "EventSegmentationResult", "FunnelResult", "RetentionResult", "UserActivityResult",
    "UserSearchResult", "RealtimeActiveUsersResult", "RevenueLTVResult", "ChartCSVResult",
    "ChartQueryResult", "Cohort", "CohortsListResult", "CohortDownload", "CohortMember", "Row",
    "structure_result", "unstructure_result",
    # errors
    "AmplitudeError", "InvalidQuery", "QueryTooExpensive", "ConfigurationError", "APIError",
    "BadRequest", "AuthenticationError", "NotFound", "RateLimited", "ServerError",
    "TransportError", "ResponseValidationError", "ClientClosed", "ResponseTooLarge",
    "BudgetUnavailable", "QuotaExhausted", "CohortTimeout",
    # client and scheduling
    "AmplitudeClient", "Limits", "Pool", "Scheduler", "SchedulerStatistics", "RetryPolicy",
    "BudgetStore", "InMemoryBudgetStore", "Clock", "LoopClock",
    "__version__",
    # coalescing and the result cache
    "CachePolicy", "CacheUnavailable", "ClientStatistics", "MemoryCache", "RedisCache",
    "ResultCache", "SavingsStatistics",
}  # fmt: skip


def test_all_is_exactly_the_public_api() -> None:
    assert set(amplitude_async.__all__) == EXPECTED
    assert len(amplitude_async.__all__) == len(EXPECTED)


def test_every_public_name_is_importable() -> None:
    for name in amplitude_async.__all__:
        assert getattr(amplitude_async, name) is not None, name


def test_errors_form_one_tree() -> None:
    for name in amplitude_async.__all__:
        obj = getattr(amplitude_async, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, amplitude_async.AmplitudeError), name
    assert issubclass(amplitude_async.InvalidQuery, ValueError)
