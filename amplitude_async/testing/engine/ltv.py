"""``/api/2/revenue/ltv``: revenue of new-user cohorts over their first days."""

from __future__ import annotations

from bisect import bisect_right
from datetime import date, timedelta
from typing import Final

from amplitude_async import queries as q
from amplitude_async.values import Event

from .buckets import _buckets, _month_day
from .cohorts import _cohort_entries, _grouped
from .predicates import _Scope
from .series import JSON, _envelope

LTV_DAYS: Final = (1, 2, 3, 4, 5, 6, 7, 14, 30, 60, 90)
"""The ``rNd`` columns of revenue LTV."""


def _revenue_ltv(scope: _Scope, query: q.RevenueLTV) -> JSON:
    ds = scope.ds
    interval = query.interval
    lo, hi = ds.midnight(query.start), ds.midnight(query.end + timedelta(days=1))
    entries = _cohort_entries(scope, Event("_new"), query.segments, lo, hi, "s")
    horizon = scope.horizon_ms
    revenue = ds.eprops_revenue
    cohorts = _buckets(ds, query.start, query.end, interval)
    starts = [b.start for b in cohorts]
    series, labels, meta = [], [], []
    for s, value, per_user in _grouped(scope, entries, query.group_by):
        members: list[list[tuple[int, date]]] = [[] for _ in cohorts]
        for u, i in per_user.items():
            members[bisect_right(starts, ds.time[i]) - 1].append((u, scope.day_of(ds.time[i])))
        values: dict[str, JSON] = {}
        for b, users in zip(cohorts, members, strict=True):
            last_day = scope.day_of(b.end - 1)
            row: JSON = {}
            paid_by: dict[int, set[int]] = {n: set() for n in LTV_DAYS}
            amount_by = dict.fromkeys(LTV_DAYS, 0.0)
            total, payers = 0.0, set()
            for u, day0 in users:
                for x in ds.user_events[u]:
                    amount = revenue[ds.eprops[x]]
                    t = ds.time[x]
                    if not amount or t >= horizon:
                        continue
                    total += amount
                    payers.add(u)
                    for n in LTV_DAYS:
                        if t < ds.midnight(day0 + timedelta(days=n)):
                            amount_by[n] += amount
                            paid_by[n].add(u)
            for n in LTV_DAYS:
                if ds.midnight(last_day + timedelta(days=n)) > horizon:
                    continue
                row[f"r{n}d"] = _ltv_value(query.metric, amount_by[n], len(users), len(paid_by[n]))
            row["count"] = len(users)
            row["paid"] = len(payers)
            row["total_amount"] = round(total, 6)
            values[_month_day(scope.day_of(b.start))] = row
        series.append(
            {
                "dates": [_month_day(scope.day_of(b.start)) for b in reversed(cohorts)],
                "values": values,
            }
        )
        labels.append(value if value is not None else "")
        entry: JSON = {"segmentIndex": s}
        if value is not None:
            entry["groupValue"] = value
        meta.append(entry)
    return _envelope(scope, {"seriesLabels": labels, "series": series, "seriesMeta": meta})


def _ltv_value(metric: str, amount: float, users: int, payers: int) -> float:
    if metric == "arpu":
        return round(amount / users, 6) if users else 0.0
    if metric == "arppu":
        return round(amount / payers, 6) if payers else 0.0
    if metric == "total_revenue":
        return round(amount, 6)
    return float(payers)
