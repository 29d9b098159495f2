"""``/api/2/events/segmentation``: metrics, rolling windows, formulas and histograms."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from amplitude_async import queries as q
from amplitude_async.testing.dataset import as_number
from amplitude_async.values import Event, GroupBy

from .buckets import _buckets, _shift_periods
from .errors import BadParameter, Unsupported
from .formula import _Formula
from .predicates import _EventMatch, _Grouper, _Scope, _segments, label_of
from .series import JSON, Key, _Agg, _collapsed, _collect, _envelope, _rank


def _event_value(scope: _Scope, spec: GroupBy, field: str) -> Callable[[int], float | None]:
    """A reader of a numeric property (the property metrics' subject) of event ``i``."""
    ds = scope.ds
    if spec.type == "user":
        read = scope.user_reader(spec.value, field)
        return lambda i: as_number(read(ds.ustate[i]), finite_numbers=False)
    table, key = ds.eprops_table, spec.value
    return lambda i: as_number(table[ds.eprops[i]].get(key), finite_numbers=False)


def _metric_value(metric: str, agg: _Agg, active: _Agg | None) -> float:
    if metric == "uniques":
        return len(agg.users)
    if metric == "totals":
        return agg.total
    if metric == "pct_dau":
        denominator = len(active.users) if active is not None else 0
        return 100.0 * len(agg.users) / denominator if denominator else 0.0
    if metric == "average":
        return agg.total / len(agg.users) if agg.users else 0.0
    if metric == "sums":
        return agg.vsum
    return agg.vsum / agg.vcount if agg.vcount else 0.0  # value_avg


RowMetric = Callable[[list[_Agg], "_Agg | None"], float]
"""A series' value from its per-event aggregates (and the segment's active users)."""


def _segmentation(scope: _Scope, query: q.EventSegmentation) -> JSON:
    ds = scope.ds
    if query.rolling_window and query.rolling_average:
        raise BadParameter("give rollingWindow or rollingAverage, not both", field="rollingWindow")
    window = query.rolling_window or query.rolling_average or 1
    if window > 1 and query.interval < 0:
        raise Unsupported("rolling metrics need a daily, weekly or monthly interval", field="i")
    if query.metric == "histogram":
        if window > 1:
            raise Unsupported("rolling metrics do not apply to histograms", field="m")
        return _histogram(scope, query)
    # a rolling series needs the window - 1 periods before start as well
    first = _shift_periods(query.start, query.interval, window - 1) if window > 1 else query.start
    buckets = _buckets(ds, first, query.end, query.interval)
    shown = range(window - 1, len(buckets))
    range_end = ds.midnight(query.end + timedelta(days=1))
    matches = [_EventMatch(scope, e, "e" if k == 0 else "e2") for k, e in enumerate(query.events)]
    formula = _Formula(query.formula, len(query.events)) if query.formula is not None else None
    by_property = query.metric in ("sums", "value_avg") or formula is not None
    seg_group = [GroupBy(g) for g in query.group_by]
    grouped = bool(seg_group) or (not by_property and any(e.group_by for e in query.events))

    def values_of(k: int) -> Callable[[int], float | None] | None:
        event = query.events[k]
        if formula is not None:
            needed = any(name.startswith("PROP") and e == k for name, e in formula.calls)
        else:
            needed = by_property
        if not needed:
            return None
        if not event.group_by:
            name = "e" if k == 0 else "e2"
            raise BadParameter("this metric needs a group_by property on the event", field=name)
        return _event_value(scope, event.group_by[0], "e.group_by[0]")

    def grouper_of(k: int) -> _Grouper | None:
        specs = seg_group if by_property else [*query.events[k].group_by, *seg_group]
        grouper = _Grouper(scope, specs, "g")
        return grouper if grouper else None

    def row(aggs: list[list[_Agg]], active: list[_Agg] | None, metric: RowMetric) -> list[float]:
        def at(x: int) -> float:
            return metric([a[x] for a in aggs], active[x] if active else None)

        if query.rolling_average:
            single = [at(x) for x in range(len(buckets))]
            return [sum(single[j - window + 1 : j + 1]) / window for j in shown]
        if query.rolling_window:
            return [
                metric(
                    [_Agg.merge(a[j - window + 1 : j + 1]) for a in aggs],
                    _Agg.merge(active[j - window + 1 : j + 1]) if active else None,
                )
                for j in shown
            ]
        return [at(j) for j in shown]

    def whole(aggs: list[list[_Agg]], active: list[_Agg] | None, metric: RowMetric) -> float:
        return metric(
            [_Agg.merge(a[window - 1 :]) for a in aggs],
            _Agg.merge(active[window - 1 :]) if active else None,
        )

    series: list[list[float]] = []
    collapsed: list[list[JSON]] = []
    labels: list[Any] = []
    meta: list[JSON] = []
    for s, segment in enumerate(_segments(scope, query.segments, range_end)):
        active: list[_Agg] | None = None
        if query.metric == "pct_dau":
            everyone = _EventMatch(scope, Event("_active"), "e")
            active = _collect(scope, everyone, segment, None, buckets)[()]
        collected = [
            _collect(scope, m, segment, grouper_of(k), buckets, values_of(k))
            for k, m in enumerate(matches)
        ]
        empty = [_Agg() for _ in buckets]
        # one block of series per event, or a single one for a formula over all events
        blocks: list[tuple[int, RowMetric, dict[Key, list[list[_Agg]]], JSON]]
        if formula is not None:
            keys: set[Key] = set().union(*collected)
            per_key = {key: [c.get(key, empty) for c in collected] for key in keys}
            info = {"segmentIndex": s, "formulaIndex": 0, "formula": query.formula}
            blocks = [(0, formula.metric, per_key, info)]
        else:
            metric = _single_metric(query.metric)
            blocks = [
                (
                    k,
                    metric,
                    {key: [aggs] for key, aggs in c.items()},
                    {"segmentIndex": s, "eventIndex": k},
                )
                for k, c in enumerate(collected)
            ]
        for k, metric, per_key, info in blocks:
            totals = {key: whole(aggs, active, metric) for key, aggs in per_key.items()}
            for key in _rank(totals, query.limit) if grouped else [()]:
                aggs = per_key.get(key) or [empty] * len(collected)
                series.append(row(aggs, active, metric))
                collapsed.append(_collapsed(totals.get(key, 0.0)))
                labels.append([k, "; ".join(key)] if grouped else k)
                meta.append(info)
    data = {
        "series": series,
        "seriesLabels": labels,
        "seriesCollapsed": collapsed,
        "seriesMeta": meta,
        "xValues": [buckets[j].label for j in shown],
    }
    return _envelope(scope, data)


def _single_metric(name: str) -> RowMetric:
    def metric(aggs: list[_Agg], active: _Agg | None) -> float:
        return _metric_value(name, aggs[0], active)

    return metric


def _histogram(scope: _Scope, query: q.EventSegmentation) -> JSON:
    ds = scope.ds
    if len(query.events) > 1:
        raise Unsupported("a histogram takes one event", field="e2")
    event = query.events[0]
    if len(event.group_by) > 1:
        raise Unsupported("a histogram takes one property (one group_by)", field="e.group_by")
    read = _event_value(scope, event.group_by[0], "e.group_by[0]")
    lo, hi = ds.midnight(query.start), ds.midnight(query.end + timedelta(days=1))
    segments = _segments(scope, query.segments, hi)
    grouper = _Grouper(scope, [GroupBy(g) for g in query.group_by], "g")
    match = _EventMatch(scope, event, "e")
    per_segment: list[dict[Key, list[float]]] = []
    for segment in segments:
        values: dict[Key, list[float]] = {}
        user_ok = segment.user_test(lo, hi)
        for i in match.stream(lo, hi):
            if not (segment.up_ok(ds.ustate[i]) and user_ok(ds.user[i])):
                continue
            v = read(i)
            if v is not None:
                values.setdefault(grouper.key(i) if grouper else (), []).append(v)
        per_segment.append(values)
    everything = [v for values in per_segment for vs in values.values() for v in vs]
    edges, x_values = _histogram_bins(everything)
    series, collapsed, labels, meta = [], [], [], []
    for s, values in enumerate(per_segment):
        totals = {key: float(len(vs)) for key, vs in values.items()}
        for key in _rank(totals, query.limit) if grouper else [()]:
            counts = [0] * len(x_values)
            for v in values.get(key, []):
                counts[_bin_index(edges, v)] += 1
            series.append(counts)
            collapsed.append(_collapsed(sum(counts)))
            labels.append([0, "; ".join(key)] if grouper else 0)
            meta.append({"segmentIndex": s, "eventIndex": 0})
    data = {
        "series": series,
        "seriesLabels": labels,
        "seriesCollapsed": collapsed,
        "seriesMeta": meta,
        "xValues": x_values,
    }
    return _envelope(scope, data)


def _histogram_bins(values: list[float]) -> tuple[list[float], list[str]]:
    """Bins for a histogram: one per integer for small integer ranges, else ten equal ones."""
    if not values:
        return [], []
    lo, hi = min(values), max(values)
    if all(v.is_integer() for v in values) and hi - lo < 20:
        edges = [lo + k for k in range(int(hi - lo) + 2)]
        return edges, [label_of(e) for e in edges[:-1]]
    width = (hi - lo) / 10 or 1.0
    edges = [lo + k * width for k in range(11)]
    return edges, [f"{edges[k]:g}-{edges[k + 1]:g}" for k in range(10)]


def _bin_index(edges: list[float], v: float) -> int:
    return min(max(bisect_right(edges, v) - 1, 0), len(edges) - 2)
