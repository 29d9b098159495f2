"""Active users, sessions, composition, the events list and realtime active users."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta
from itertools import pairwise
from typing import Any, Final

from amplitude_async import queries as q
from amplitude_async.testing.dataset import SESSION_CAP_MS, Dataset
from amplitude_async.values import Event, GroupBy

from .buckets import _DAY_MS, _HOUR_MS, _MINUTE_MS, _buckets
from .predicates import _EventMatch, _Grouper, _Scope, _segments, label_of
from .series import JSON, _Agg, _collapsed, _collect, _envelope, _rank

DEFAULT_SESSION_BINS_MS: Final = (
    0,
    3_000,
    10_000,
    30_000,
    60_000,
    180_000,
    600_000,
    1_800_000,
    3_600_000,
    86_400_000,
)
"""Bounds of the default session-length bins (ms): ``[0, 3 s)`` ... ``[1 h, 24 h)``."""

REALTIME_BUCKETS: Final = 288


def _active_users(scope: _Scope, query: q.ActiveUsers) -> JSON:
    ds = scope.ds
    buckets = _buckets(ds, query.start, query.end, query.interval)
    range_end = ds.midnight(query.end + timedelta(days=1))
    match = _EventMatch(scope, Event("_active" if query.metric == "active" else "_new"), "m")
    grouper = _Grouper(scope, [GroupBy(query.group_by)] if query.group_by else [], "g")
    series: list[list[int]] = []
    collapsed: list[list[JSON]] = []
    labels: list[Any] = []
    meta: list[Any] = []
    for s, segment in enumerate(_segments(scope, query.segments, range_end)):
        per_key = _collect(scope, match, segment, grouper or None, buckets)
        totals = {key: float(len(_Agg.merge(aggs).users)) for key, aggs in per_key.items()}
        for key in _rank(totals, None) if grouper else [()]:
            series.append([len(a.users) for a in per_key[key]])
            collapsed.append(_collapsed(int(totals[key])))
            if grouper:
                labels.append([s, key[0]])
                meta.append(key[0])
            else:
                labels.append(s)
                meta.append({"segmentIndex": s})
    data = {
        "series": series,
        "seriesCollapsed": collapsed,
        "seriesLabels": labels,
        "seriesMeta": meta,
        "xValues": [b.label for b in buckets],
    }
    return _envelope(scope, data)


def _sessions_in(ds: Dataset, t0: int, t1: int) -> range:
    starts = ds.session_starts
    return range(bisect_left(starts, t0), bisect_left(starts, t1))


def _session_bins(query: q.SessionLengthDistribution) -> tuple[list[int], list[str]]:
    if query.bin_unit is None or query.bin_min is None or query.bin_max is None:
        edges = list(DEFAULT_SESSION_BINS_MS)
        return edges, [f"{_duration(a)}-{_duration(b)}" for a, b in pairwise(edges)]
    unit_ms = {"seconds": 1000, "minutes": _MINUTE_MS, "hours": _HOUR_MS}[query.bin_unit]
    suffix = {"seconds": "s", "minutes": "m", "hours": "h"}[query.bin_unit]
    span = query.bin_max - query.bin_min
    # without a size, ten bins (or one per unit when the range is narrower)
    size = query.bin_size or max(1, math.ceil(span / 10))
    bounds = [*range(query.bin_min, query.bin_max, size), query.bin_max]
    labels = [f"{a}{suffix}-{b}{suffix}" for a, b in pairwise(bounds)]
    return [b * unit_ms for b in bounds], labels


def _duration(ms: int) -> str:
    """A bin bound in the largest unit that states it exactly."""
    for unit, suffix in ((_HOUR_MS, "h"), (_MINUTE_MS, "m")):
        if ms and ms % unit == 0 and ms >= unit:
            return f"{ms // unit}{suffix}"
    return f"{ms // 1000}s"


def _session_length(scope: _Scope, query: q.SessionLengthDistribution) -> JSON:
    ds = scope.ds
    edges, labels = _session_bins(query)
    counts = [0] * len(labels)
    lengths = ds.session_lengths
    for k in _sessions_in(ds, ds.midnight(query.start), ds.midnight(query.end + timedelta(days=1))):
        length = lengths[k]
        if edges[0] <= length < edges[-1] or (length == edges[-1] == SESSION_CAP_MS):
            counts[min(bisect_right(edges, length) - 1, len(counts) - 1)] += 1
    return _envelope(scope, {"series": [counts], "xValues": labels})


def _per_day_sessions(
    scope: _Scope, start: date, end: date, value: Callable[[range], float]
) -> JSON:
    ds = scope.ds
    days = _buckets(ds, start, end, q.DAILY)
    series = [value(_sessions_in(ds, b.start, b.end)) for b in days]
    data = {
        "series": [series],
        "seriesMeta": [{"segmentIndex": 0}],
        # The live API stamps these days with a time of day.
        "xValues": [f"{b.label}T00:00:00" for b in days],
    }
    return _envelope(scope, data)


def _average_session(scope: _Scope, query: q.AverageSessionLength) -> JSON:
    lengths = scope.ds.session_lengths

    def mean_seconds(found: range) -> float:
        return sum(lengths[k] for k in found) / len(found) / 1000 if found else 0.0

    return _per_day_sessions(scope, query.start, query.end, mean_seconds)


def _sessions_per_user(scope: _Scope, query: q.SessionsPerUser) -> JSON:
    users = scope.ds.session_users

    def per_user(found: range) -> float:
        return len(found) / len(set(users[found.start : found.stop])) if found else 0.0

    return _per_day_sessions(scope, query.start, query.end, per_user)


def _composition(scope: _Scope, query: q.UserComposition) -> JSON:
    ds = scope.ds
    read = scope.user_reader(query.property, "p")
    latest: dict[int, int] = {}
    for i in ds.events_between(
        ds.midnight(query.start), ds.midnight(query.end + timedelta(days=1))
    ):
        latest[ds.user[i]] = ds.ustate[i]
    counts = Counter(label_of(read(up)) for up in latest.values())
    ranked = sorted(counts, key=lambda v: (-counts[v], v))
    data = {
        "series": [[counts[v] for v in ranked]],
        "seriesLabels": [query.property],
        "xValues": ranked,
    }
    return _envelope(scope, data)


def _events_list(scope: _Scope, _query: q.EventsList) -> JSON:
    ds = scope.ds
    today = scope.day_of(scope.now_ms)
    week_start = ds.midnight(q.period_start(today, q.WEEKLY))
    found = ds.events_between(week_start, scope.now_ms + 1)
    totals = Counter(ds.type[i] for i in found)
    data = [
        {
            "non_active": False,
            "value": name,
            "totals": totals.get(ds.type_ids[name], 0),
            "deleted": False,
            "flow_hidden": False,
            "hidden": False,
            "display": name,
        }
        for name in ds.event_types
    ]
    return {"data": data}


def _realtime(scope: _Scope, _query: q.RealtimeActiveUsers) -> JSON:
    ds = scope.ds
    step = 5 * _MINUTE_MS
    # 5-minute buckets aligned on the local clock
    local_now = ds.local_time(scope.now_ms)
    into_bucket = (local_now.minute % 5) * _MINUTE_MS + local_now.second * 1000
    into_bucket += local_now.microsecond // 1000
    last = scope.now_ms - into_bucket
    starts = [last - (REALTIME_BUCKETS - 1 - k) * step for k in range(REALTIME_BUCKETS)]

    def uniques(t0: int) -> int:
        found = ds.events_between(t0, t0 + step)
        return len(set(ds.user[found.start : found.stop]))

    data = {
        "xValues": [f"{ds.local_time(t):%H:%M}" for t in starts],
        "seriesLabels": ["Today", "Yesterday"],
        "series": [[uniques(t) for t in starts], [uniques(t - _DAY_MS) for t in starts]],
    }
    return _envelope(scope, data)
