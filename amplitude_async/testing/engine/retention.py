"""``/api/2/retention``: cohorts by first start event, returns per period."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Final

from amplitude_async import queries as q

from .buckets import _long_date, _next_period, _period_index, _period_of_index
from .cohorts import _cohort_entries, _grouped
from .predicates import _EventMatch, _Scope
from .series import JSON, _envelope

_RETENTION_MAX_COLUMNS: Final = {q.DAILY: 90, q.WEEKLY: 26, q.MONTHLY: 12}


def _retention(scope: _Scope, query: q.Retention) -> JSON:
    ds = scope.ds
    interval = query.interval
    lo, hi = ds.midnight(query.start), ds.midnight(query.end + timedelta(days=1))
    entries = _cohort_entries(scope, query.start_event, query.segments, lo, hi, "se")
    horizon = scope.horizon_ms
    chosen = _EventMatch(scope, query.return_event, "re").selected(lo, horizon)
    horizon_period = _period_index(scope.day_of(max(horizon - 1, 0)), interval)
    first_period = _period_index(query.start, interval)
    last_period = _period_index(query.end, interval)
    cohorts = list(range(first_period, last_period + 1))

    def period_end(index: int) -> int:
        return ds.midnight(_next_period(_period_of_index(index, interval), interval))

    def period_begin(index: int) -> int:
        return ds.midnight(_period_of_index(index, interval))

    if query.mode == "bracket":
        assert query.brackets is not None  # the query class guarantees it
        columns: list[tuple[int, int]] = [(a, b) for a, b in query.brackets]
    else:
        count = min(max(horizon_period - first_period, 0), _RETENTION_MAX_COLUMNS[interval])
        columns = [(n, n + 1) for n in range(1, count + 1)]

    # the columns each offset (in periods) falls in, for counting users per column
    column_hits: dict[int, tuple[int, ...]] = {}

    def columns_of(offset: int) -> tuple[int, ...]:
        found = column_hits.get(offset)
        if found is None:
            found = column_hits[offset] = tuple(
                k for k, (a, b) in enumerate(columns) if a <= offset < b
            )
        return found

    # events before the horizon are a prefix of the time-sorted log
    horizon_index = bisect_left(ds.time, horizon)
    day, period_of_day = ds.day, scope.period_of_day
    series, meta = [], []
    for s, value, per_user in _grouped(scope, entries, query.group_by):
        # offsets (in periods) at which each cohort member came back, and the cohort
        members: dict[int, list[int]] = {c: [] for c in cohorts}
        offsets: dict[int, set[int]] = {}
        for u, i in per_user.items():
            period = period_of_day(day[i], interval)
            members[period].append(u)
            events = ds.user_events[u]
            later: Sequence[int] = events[
                bisect_right(events, i) : bisect_left(events, horizon_index)
            ]
            if chosen is not None:
                later = [x for x in later if x in chosen]
            offsets[u] = {
                period_of_day(d, interval) - period for d in set(map(day.__getitem__, later))
            }
        values: dict[str, list[JSON]] = {}
        cells_by_cohort: dict[int, list[JSON]] = {}
        for c in cohorts:
            size = len(members[c])
            row = [{"count": size, "outof": size, "incomplete": period_end(c) > horizon}]
            counts = [0] * len(columns)
            if query.mode == "rolling":
                # back at or after a column's start: the user's last offset tells
                latest = Counter(max(offsets[u]) for u in members[c] if offsets[u])
                for k, (a, _) in enumerate(columns):
                    counts[k] = sum(n for o, n in latest.items() if o >= a)
            else:
                for u in members[c]:
                    hit: set[int] = set()
                    for o in offsets[u]:
                        hit.update(columns_of(o))
                    for k in hit:
                        counts[k] += 1
            for (a, b), count in zip(columns, counts, strict=True):
                cell_end = period_end(c + b - 1)
                row.append(
                    {
                        "count": count,
                        "outof": size,
                        "incomplete": cell_end > horizon,
                        "started": period_begin(c + a) < horizon,
                    }
                )
            cells_by_cohort[c] = row
        combined = []
        for n in range(len(columns) + 1):
            cells = [cells_by_cohort[c][n] for c in cohorts]
            done = [x for x in cells if not x["incomplete"]]
            pool = done or [x for x in cells if x.get("started", True)]
            combined.append(
                {
                    "count": sum(x["count"] for x in pool),
                    "outof": sum(x["outof"] for x in pool),
                    "retainedSetId": None,
                    "incomplete": not done,
                }
            )
        for c in cohorts:
            values[_long_date(_period_of_index(c, interval))] = [
                {k: v for k, v in cell.items() if k != "started"} for cell in cells_by_cohort[c]
            ]
        series.append(
            {
                "dates": [_long_date(_period_of_index(c, interval)) for c in reversed(cohorts)],
                "values": values,
                "combined": combined,
            }
        )
        entry: JSON = {"segmentIndex": s, "eventIndex": 0}
        if value is not None:
            entry["groupValue"] = value
        meta.append(entry)
    return _envelope(scope, {"series": series, "seriesMeta": meta})
