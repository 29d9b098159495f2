"""The package's public names: exactly these, and each importable from the top level."""

from __future__ import annotations

import amplitude_async

EXPECTED = {
    # models
    "Event", "PropertyFilter", "GroupBy", "Segment", "Where", "PerformedEvent", "InCohort",
    "Query", "ActiveUsers", "SessionLengthDistribution", "AverageSessionLength",
    "SessionsPerUser", "UserComposition", "EventsList", "EventSegmentation", "Funnel",
    "Retention", "UserActivity", "UserSearch", "RealtimeActiveUsers", "RevenueLTV",
    "ChartCSV", "ChartQuery",
    "REALTIME", "HOURLY", "DAILY", "WEEKLY", "MONTHLY",
    # results
    "ActiveUsersResult", "SessionLengthDistributionResult", "AverageSessionLengthResult",
    "SessionsPerUserResult", "UserCompositionResult", "EventsListResult",
    "EventSegmentationResult", "FunnelResult", "RetentionResult", "UserActivityResult",
    "UserSearchResult", "RealtimeActiveUsersResult", "RevenueLTVResult", "ChartCSVResult",
    "ChartQueryResult", "Row",
    # errors
    "AmplitudeError", "InvalidQuery", "QueryTooExpensive", "ConfigurationError", "APIError",
    "BadRequest", "AuthenticationError", "NotFound", "RateLimited", "ServerError",
    "TransportError", "ResponseValidationError", "ClientClosed", "ResponseTooLarge",
    "BudgetUnavailable",
    # client and scheduling
    "AmplitudeClient", "Limits", "Pool", "Scheduler", "SchedulerStatistics", "PoolStatistics",
    "WindowUsage", "RetryPolicy",
    "__version__",
    # coalescing and the result cache
    "CachePolicy", "CacheUnavailable", "ClientStatistics", "MemoryCache", "RedisCache",
    "ResultCache", "SavingsStatistics",
    # observability
    "AdmittedEvent", "ResponseEvent", "RetryEvent", "RateLimitedEvent",
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


def test_plumbing_moved_out_of_the_top_level_still_imports_with_a_warning() -> None:
    import warnings

    from amplitude_async.admission import InMemoryBudgetStore
    from amplitude_async.converter import structure_result

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert amplitude_async.InMemoryBudgetStore is InMemoryBudgetStore
        assert amplitude_async.structure_result is structure_result
    assert [w.category for w in caught] == [DeprecationWarning, DeprecationWarning]
    assert "amplitude_async.admission" in str(caught[0].message)
    try:
        amplitude_async.no_such_name  # noqa: B018
    except AttributeError:
        pass
    else:
        raise AssertionError("unknown names must raise AttributeError")
