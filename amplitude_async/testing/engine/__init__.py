"""The emulator's answer engine: a query object plus a dataset in, the API's JSON body out.

:func:`answer` is pure: it reads the :class:`~amplitude_async.testing.dataset.Dataset` and the
query, and returns a JSON-able ``dict`` in the endpoint's documented response shape, or raises
an :class:`EngineError` (``status`` 400, or 404 for an unknown saved chart) whose message says
what is wrong or not supported. Nothing is ever made up: what cannot be computed is refused.

Layout: shared pieces first (:mod:`.errors`, :mod:`.predicates` for property tests, events,
segments and group-bys, :mod:`.buckets` for time, :mod:`.series` for aggregation and the
``data`` envelope, :mod:`.formula`, :mod:`.cohorts` for retention and LTV), then one module per
endpoint family (:mod:`.segmentation`, :mod:`.usage` for active users, sessions, composition,
the events list and realtime, :mod:`.funnels`, :mod:`.retention`, :mod:`.ltv`, :mod:`.users`
for user activity and search, :mod:`.charts` for the CSV export's layout). Saved charts and
the dispatch table live here.

Semantics where Amplitude's documentation is silent (each decided once, here):

- Days, weeks and months are local to the dataset's time zone; weeks start on Sunday. Weekly
  and monthly buckets are labelled by their first day and clipped to ``[start, end]``. Hourly
  and 5-minute buckets are labelled ``YYYY-MM-DDTHH:MM:SS`` (local).
- A user is *active* in a bucket if they have any event in it; *new* in the bucket holding
  their first event in the whole dataset.
- Property filters and ``Where`` conditions look at the properties recorded on the event (at
  event time). Values compare as text: missing is ``(none)``, booleans ``true``/``false``,
  integral floats without ``.0``. ``is`` on a list property matches any element; ``set is``
  compares the whole set; ``contains`` is a case-insensitive substring test; ``less`` ... compare
  numbers (non-numeric values never match).
- "Who performed" conditions count matching events per user: ``allTime`` from the dataset's
  beginning to the end of the query range; ``currentInterval`` within the bucket being
  computed; ``forEachInterval`` (``time_value`` days) within the days ending with the bucket.
  Endpoints without buckets (funnels, retention, LTV) use the whole query range as the bucket.
- Group-by labels are the property's text (see above); a list value's label is its JSON text.
  Groups are ranked by their collapsed value (ties by label) and cut to ``limit`` (100).
- Segmentation ``seriesLabels`` are the event index, or ``[event index, label]`` when grouped
  (``g`` and ``g2`` labels joined by ``"; "``), as recorded from the live API; ``seriesMeta``
  says the segment and event (``{"segmentIndex": 0, "eventIndex": 0}``); ``pct_dau`` is a
  percentage of the segment's active users; ``average`` is events per user; the property
  metrics take the first event's first group-by as the property; ``histogram`` answers bins of
  the property's values (``xValues`` are bin labels); division by zero gives 0.
- Funnels use each user's furthest progress over every entry (a step-1 event in range; for
  ``unordered`` any step event), ties to the earliest entry; all steps must fall in
  ``[start, end]`` and within the conversion window of the entry. ``sequential`` needs the
  steps to be consecutive events of the user. Transition times are milliseconds between the
  times each step was completed; medians and averages are rounded to whole milliseconds.
- Retention cohorts are users by the bucket of their first start event in range; a return
  counts in the period (day/week/month) it falls in, relative to the start event's period;
  bracket day 0 counts returns after the start event on the same day. Periods end at the
  *horizon*, the earlier of ``now`` and the end of the dataset; a cell reaching past it is
  ``incomplete``. ``combined`` sums the complete cells (or, when none is complete, the started
  ones). Columns go to the horizon, at most 90 days / 26 weeks / 12 months.
- Revenue LTV cohorts are new users; ``rNd`` is the revenue of a cohort's users during their
  first N days, given only once all of the cohort's N-day windows have ended by the horizon.
- Realtime answers the 288 five-minute buckets ending with the one holding ``now``: "Today" is
  those buckets, "Yesterday" the same buckets a day earlier.
- The events list's totals are of the Sunday-to-``now`` week holding ``now``.
- Daily session averages and sessions per user label their days ``YYYY-MM-DDT00:00:00``, as
  the live API does. An unknown user's activity is a 200 with no events and a summary of zeros
  and nulls. A saved chart's CSV export follows the recorded layout (see :mod:`.charts`).
- ``now`` matters only to realtime, the events list, retention and LTV; other answers use every
  event of the dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from amplitude_async import queries as q
from amplitude_async.testing.dataset import Dataset

from .charts import chart_csv_text
from .errors import BadParameter, ChartNotFound, EngineError, Unsupported
from .funnels import _funnel
from .ltv import LTV_DAYS, _revenue_ltv
from .predicates import _Scope, label_of
from .retention import _retention
from .segmentation import _segmentation
from .series import JSON
from .usage import (
    DEFAULT_SESSION_BINS_MS,
    _active_users,
    _average_session,
    _composition,
    _events_list,
    _realtime,
    _session_length,
    _sessions_per_user,
)
from .users import _user_activity, _user_search

__all__ = [
    "BadParameter",
    "ChartNotFound",
    "DEFAULT_SESSION_BINS_MS",
    "EngineError",
    "LTV_DAYS",
    "Unsupported",
    "answer",
    "label_of",
]


# -- saved charts ---------------------------------------------------------------------------


def _chart(scope: _Scope, chart_id: str) -> Any:
    chart = scope.ds.charts.get(chart_id)
    if chart is None:
        raise ChartNotFound(f"no saved chart with id {chart_id!r}", field="chart_id")
    if isinstance(chart, q.ChartCSV | q.ChartQuery):
        raise Unsupported("a saved chart cannot refer to another saved chart", field="chart_id")
    return chart


def _chart_query(scope: _Scope, query: q.ChartQuery) -> JSON:
    return _answer(scope, _chart(scope, query.chart_id))


def _cohorts_list(scope: _Scope, query: q.CohortsList) -> JSON:
    from ..cohorts import catalogue, list_body  # it imports aiohttp, which the engine needs not

    now = datetime.fromtimestamp(scope.now_ms / 1000, UTC)
    return list_body(catalogue(scope.ds, now), now, query.include_sync_info)


def _chart_csv(scope: _Scope, query: q.ChartCSV) -> JSON:
    chart = _chart(scope, query.chart_id)
    if not isinstance(chart, q.EventSegmentation | q.ActiveUsers):
        raise Unsupported("CSV export covers segmentation and active-user charts", field="chart_id")
    return {"data": chart_csv_text(query.chart_id, chart, _answer(scope, chart)["data"])}


# -- dispatch -------------------------------------------------------------------------------

_HANDLERS: Final[dict[type[Any], Callable[[_Scope, Any], JSON]]] = {
    q.ActiveUsers: _active_users,
    q.SessionLengthDistribution: _session_length,
    q.AverageSessionLength: _average_session,
    q.SessionsPerUser: _sessions_per_user,
    q.UserComposition: _composition,
    q.EventsList: _events_list,
    q.EventSegmentation: _segmentation,
    q.Funnel: _funnel,
    q.Retention: _retention,
    q.UserActivity: _user_activity,
    q.UserSearch: _user_search,
    q.RealtimeActiveUsers: _realtime,
    q.RevenueLTV: _revenue_ltv,
    q.ChartCSV: _chart_csv,
    q.ChartQuery: _chart_query,
    q.CohortsList: _cohorts_list,
}


def _answer(scope: _Scope, query: Any) -> JSON:
    handler = _HANDLERS.get(type(query))
    if handler is None:
        raise Unsupported(f"no answers for {type(query).__name__}")
    return handler(scope, query)


def answer(query: q.Query[Any], dataset: Dataset, now: datetime) -> JSON:
    """The JSON body the API would send for ``query`` over ``dataset`` at ``now`` (aware).

    Raises :class:`EngineError` (``status`` 400 or 404) for what cannot be answered.
    """
    return _answer(_Scope(dataset, now), query)
