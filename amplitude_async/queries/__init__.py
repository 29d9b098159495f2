"""One frozen attrs query class per Dashboard REST API endpoint, and :func:`parse_query`.

A query is validated when it is built (and again by ``attrs.evolve``), so nothing invalid is ever
scheduled or sent; a bad field raises :class:`~amplitude_async.errors.InvalidQuery` naming it.
Every query knows its ``path``, its ``pool``, its wire parameters (``params()``: ordered
``(name, value)`` pairs, not URL-encoded, JSON compact) and its ``cost`` (see
:mod:`amplitude_async.cost`). :func:`parse_query` is the inverse of ``(q.path, q.params())``.

Where things are:

- :mod:`.fields`: how a field declares its wire name and codecs, and what is derived from
  that (parameters, parsing them back, error names, job-file and CLI tables);
- :mod:`.tables`: loose values as job files and the command line write them;
- :mod:`.intervals`: intervals, their span limits and bucket boundaries;
- :mod:`.base`: :class:`Query` and :class:`DatedQuery`;
- one module per endpoint family: :mod:`.users`, :mod:`.sessions`, :mod:`.events`,
  :mod:`.revenue`, :mod:`.charts`, :mod:`.cohorts`;
- :mod:`.registry`: :data:`ENDPOINTS`, :func:`parse_query`, :func:`build_query`.

Decisions where the API documentation is silent:

- several segments are sent as repeated ``s`` parameters, in order (see :func:`segment_params`);
- parameters with a non-``None`` value are always sent, defaults included (``m=active``,
  ``i=1``), so a request states everything its cost was computed from; ``None`` fields are left
  out and the API's own default applies;
- funnels accept the same intervals as event segmentation, with the same span limits
  (realtime 2 days, hourly 7, daily 365);
- a ``ChartCSV``/``ChartQuery`` cost stated by the caller is not part of the request, so
  :func:`parse_query` rebuilds saved-chart queries with the default cost of 1.
"""

from __future__ import annotations

from .base import MAX_LIMIT, DatedQuery, Query, segment_params
from .charts import ChartCSV, ChartQuery
from .cohorts import (
    CohortRequest,
    CohortRequestStatus,
    CohortsList,
    check_cohort_id,
    check_prop_key,
    check_request_id,
)
from .events import (
    PROPERTY_METRICS,
    SEGMENTATION_METRICS,
    EventSegmentation,
    EventsList,
    Funnel,
    Retention,
)
from .intervals import (
    DAILY,
    DAILY_MAX_DAYS,
    HOURLY,
    HOURLY_MAX_DAYS,
    MONTHLY,
    REALTIME,
    REALTIME_MAX_DAYS,
    WEEKLY,
    period_start,
)
from .registry import ENDPOINTS, build_query, build_query_over, parse_query
from .revenue import LTV_METRICS, RevenueLTV
from .sessions import AverageSessionLength, SessionLengthDistribution, SessionsPerUser
from .users import ActiveUsers, RealtimeActiveUsers, UserActivity, UserComposition, UserSearch

__all__ = [
    "DAILY",
    "DAILY_MAX_DAYS",
    "ENDPOINTS",
    "HOURLY",
    "HOURLY_MAX_DAYS",
    "LTV_METRICS",
    "MAX_LIMIT",
    "MONTHLY",
    "PROPERTY_METRICS",
    "REALTIME",
    "REALTIME_MAX_DAYS",
    "SEGMENTATION_METRICS",
    "WEEKLY",
    "ActiveUsers",
    "AverageSessionLength",
    "ChartCSV",
    "ChartQuery",
    "CohortRequest",
    "CohortRequestStatus",
    "CohortsList",
    "DatedQuery",
    "EventSegmentation",
    "EventsList",
    "Funnel",
    "Query",
    "RealtimeActiveUsers",
    "Retention",
    "RevenueLTV",
    "SessionLengthDistribution",
    "SessionsPerUser",
    "UserActivity",
    "UserComposition",
    "UserSearch",
    "build_query",
    "check_cohort_id",
    "check_prop_key",
    "check_request_id",
    "build_query_over",
    "parse_query",
    "period_start",
    "segment_params",
]
