"""Splitting a query by date range into chunks that fit a budget, and merging their results.

A dated query costs ``days x conditions x chart cost``, so a long range can exceed the window
budget (1000 by default) and never run. :func:`plan_chunks` cuts such a query into date chunks
that each fit; :func:`merge_results` puts the chunks' results back together. Running them is
:mod:`amplitude_async.chunks` (``client.run(query, split=True)``, ``client.run_split``), which
also splits a chunk again (:func:`halves`) when the server answers 504 or times out, which is
how Amplitude says a query is too heavy. This module only plans and merges: no I/O.

Chunks never cut an interval's bucket: daily, hourly and realtime chunks start on any day,
weekly ones on a Sunday (weeks start on Sunday) and monthly ones on the first of a month, so
every bucket of the whole range is a whole bucket of exactly one chunk and keeps its label.

Splitting only happens where the merged result is *identical* to the unsplit one (x values
concatenated, series concatenated per series, group labels unioned). That holds for:

- ``EventSegmentation`` with metric ``totals`` or ``sums``, any interval, no rolling window
  or rolling average: per-bucket values are independent of the range, and the whole-range
  ``seriesCollapsed`` is the sum of the buckets. Grouped series (``group_by`` or an event
  group-by) are unioned per segment and event, zero-filled where a chunk lacks a group, ranked
  by their summed collapsed value (ties by label) and cut to ``limit`` again. If a chunk answers
  as many groups as the limit, groups may have been cut from it, so the merge refuses;
- ``ActiveUsers`` with metric ``new``: a user is new in one bucket only, so the whole-range
  count is the sum of the buckets (grouped series as above, limit 100);
- ``AverageSessionLength`` and ``SessionsPerUser``: one value per day, nothing over the range.

Everything else raises :class:`~amplitude_async.errors.QueryTooExpensive` with a hint saying
why, when it would have to be split:

- ``uniques``, ``pct_dau``, ``average``, ``value_avg`` and ``formula`` segmentation and
  ``active`` users: their ``seriesCollapsed`` counts distinct users over the whole range (and
  ranks groups by it), which no sum of chunks gives;
- ``histogram`` segmentation: its bins come from all of the range's values;
- rolling windows and averages: what a chunk's first buckets see before its start is not
  documented;
- segments with an ``allTime`` "who performed" condition: it counts up to the end of the range;
- funnels, retention, revenue LTV: cohorts and conversions span the whole range;
- user composition (users' latest property value over the range) and session length
  distribution (bins of sessions over the whole range; how sessions crossing a chunk boundary
  are counted is not documented);
- queries without dates (events list, realtime, user activity and search, saved charts).

:func:`chunk_ranges` (interval-aligned date chunks) is also what the backfill plans with; a
backfill stores each chunk's rows as they are and needs no merge.

**Incremental refresh.** When the client has a result cache, a split run cuts every
splittable query into single buckets (days; weeks or months for those intervals), whatever its
budget (:func:`plan_incremental`). Bucket boundaries are fixed calendar dates, so the chunks of
two overlapping ranges are the same queries: a chart refreshed every hour finds its settled
days in the cache and sends only the unsettled ones (and the day that settled since). Larger
cached blocks would not survive a sliding range: once its start moves into a block, the block's
remaining days would have to be bought again. So a first fetch takes more requests (never more
cost), and every later one only what changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any, Final, TypeVar

import attrs

from .cost import days_in_range
from .errors import InvalidQuery, QueryTooExpensive
from .limits import DEFAULT_LIMITS
from .queries import (
    DAILY,
    MONTHLY,
    WEEKLY,
    ActiveUsers,
    AverageSessionLength,
    DatedQuery,
    EventSegmentation,
    Query,
    SessionsPerUser,
    period_start,
)
from .results import CollapsedValue, SegmentMeta, SeriesLabel, SeriesMeta, SeriesResult
from .values import PerformedEvent, Segment

__all__ = [
    "DEFAULT_GROUP_LIMIT",
    "aligned_chunks",
    "chunk_ranges",
    "max_chunk_days",
    "merge_results",
    "period_days",
    "period_start",
    "plan_chunks",
    "halves",
    "plan_incremental",
    "split_refusal",
]

R = TypeVar("R")

DEFAULT_GROUP_LIMIT: Final = 100
"""Groups the API answers when a query states no ``limit``."""

_BUDGET_NAME: Final = "cost_per_window"
_ADDITIVE_METRICS: Final = ("totals", "sums")
_LABEL_JOIN: Final = "; "


# -- calendar -------------------------------------------------------------------------------


def period_days(interval: int) -> int:
    """The most days one bucket of ``interval`` spans (31 for months)."""
    return {WEEKLY: 7, MONTHLY: 31}.get(interval, 1)


def _is_boundary(day: date, interval: int) -> bool:
    return period_start(day, interval) == day


def chunk_ranges(start: date, end: date, interval: int, max_days: int) -> list[tuple[date, date]]:
    """Cut ``[start, end]`` into consecutive inclusive ranges of at most ``max_days`` days,
    each starting on a bucket boundary of ``interval`` (except the first, at ``start``).

    Each chunk is as long as allowed (greedy). Raises :class:`ValueError` when a bucket is
    longer than ``max_days``, so no aligned cut exists.
    """
    if max_days < 1:
        raise ValueError(f"max_days must be at least 1, got {max_days}")
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    out: list[tuple[date, date]] = []
    current = start
    after_end = end + timedelta(days=1)
    while current <= end:
        limit = current + timedelta(days=max_days)
        if limit >= after_end:
            out.append((current, end))
            break
        cut = limit
        while cut > current and not _is_boundary(cut, interval):
            cut -= timedelta(days=1)
        if cut == current:
            raise ValueError(
                f"a bucket starting {period_start(current, interval)} is longer than "
                f"{max_days} day(s)"
            )
        out.append((current, cut - timedelta(days=1)))
        current = cut
    return out


# -- what may be split ----------------------------------------------------------------------


def _all_time_condition(segments: Sequence[Segment]) -> bool:
    return any(
        isinstance(c, PerformedEvent) and c.time_type == "allTime"
        for segment in segments
        for c in segment.conditions
    )


def split_refusal(query: Query[Any]) -> str | None:
    """Why splitting ``query`` by date would change its result, or ``None`` if it would not
    (the rules are in the module docstring)."""
    if not isinstance(query, DatedQuery):
        return f"{query.endpoint} has no date range"
    if isinstance(query, EventSegmentation):
        if query.metric not in _ADDITIVE_METRICS:
            return (
                f"metric {query.metric!r} is computed over the whole range (distinct users or "
                "bins), which no combination of chunks reproduces; only 'totals' and 'sums' "
                "can be split"
            )
        if query.rolling_window or query.rolling_average:
            return "rolling windows reach before a chunk's start"
        if _all_time_condition(query.segments):
            return "an 'allTime' who-performed condition counts up to the end of the range"
        return None
    if isinstance(query, ActiveUsers):
        if query.metric != "new":
            return (
                "active users over the whole range are distinct users, which no combination "
                "of chunks reproduces; only metric 'new' can be split"
            )
        if _all_time_condition(query.segments):
            return "an 'allTime' who-performed condition counts up to the end of the range"
        return None
    if isinstance(query, AverageSessionLength | SessionsPerUser):
        return None
    return f"{query.endpoint} results are computed over the whole date range"


# -- planning -------------------------------------------------------------------------------


def _interval_of(query: DatedQuery[Any]) -> int:
    interval = getattr(query, "interval", DAILY)
    return DAILY if interval is None else int(interval)


def max_chunk_days(query: DatedQuery[Any], budget: int, chunk_days: int | None = None) -> int:
    """The most days one chunk of ``query`` may cover: what ``budget`` pays for, at most
    ``chunk_days`` (rounded up to one bucket of the interval) and the interval's span limit.
    Below 1 when even one day costs more than ``budget``."""
    interval = _interval_of(query)
    per_day = query.cost // query.days
    most = budget // per_day if per_day else query.days
    if chunk_days is not None:
        # A chunk size is a target: chunks still hold whole buckets, only the budget is firm.
        most = min(most, max(chunk_days, period_days(interval)))
    if query.max_days is not None:
        most = min(most, query.max_days)
    return most


def aligned_chunks(
    query: DatedQuery[R],
    first: date,
    last: date,
    max_days: int,
    budget: int,
    *,
    label: str = "",
    max_chunks: int | None = None,
    chunk_cap: int | None = None,
) -> list[DatedQuery[R]]:
    """``query`` over ``[first, last]`` cut into interval-aligned chunks of at most
    ``max_days`` (from :func:`max_chunk_days`): the one chunk planner of ``split=True``,
    :func:`run_split` and backfills. Raises :class:`~amplitude_async.errors.QueryTooExpensive`
    (``label`` prefixed to the hint) when a day or a bucket costs more than ``budget``, and
    :class:`~amplitude_async.errors.InvalidQuery` naming ``chunk_days`` when there would be
    more than ``max_chunks`` (counted before any chunk is made; the message names
    ``chunk_cap``, the whole plan's cap, when ``max_chunks`` is what is left of it)."""
    interval = _interval_of(query)
    per_day = query.cost // query.days
    cost = per_day * days_in_range(first, last)
    if max_days < 1:
        raise QueryTooExpensive(
            cost,
            budget,
            _BUDGET_NAME,
            f"{label}even one day costs {per_day}: use fewer segments, conditions or group-bys",
        )
    if max_chunks is not None:
        # Counted first: a range of centuries must not exhaust memory before it is refused.
        estimate = -(-((last - first).days + 1) // max_days) + 1
        if estimate > max_chunks:
            raise InvalidQuery(
                "chunk_days",
                f"the plan would have more than {chunk_cap or max_chunks} chunks, the most "
                f"allowed ({label}about {estimate} of {max_days} day(s)); shorten the range, "
                "raise chunk_days or split the job",
            )
    try:
        ranges = chunk_ranges(first, last, interval, max_days)
    except ValueError:
        bucket = period_days(interval)
        raise QueryTooExpensive(
            cost,
            budget,
            _BUDGET_NAME,
            f"{label}one {bucket}-day bucket costs up to {per_day * bucket}"
            ": use a shorter interval, or fewer segments, conditions or group-bys",
        ) from None
    return [query.with_range(a, b) for a, b in ranges]


def plan_chunks(
    query: Query[R],
    budget: int,
    *,
    chunk_days: int | None = None,
    start: date | None = None,
    end: date | None = None,
) -> list[Query[R]]:
    """The queries to run instead of ``query`` so that each costs at most ``budget``.

    Returns ``[query]`` when it fits (and ``chunk_days`` does not ask for smaller chunks);
    otherwise interval-aligned date chunks, as long as the budget, ``chunk_days`` and the
    interval's span limit allow, whose merged results equal ``query``'s. ``start``/``end``
    plan ``query``'s fields over that range instead of its own; it may be longer than one
    request may cover (a daily segmentation over more than 365 days). ``chunk_days`` is
    rounded up to one bucket (a week, a month) where the interval needs it. Raises
    :class:`~amplitude_async.errors.QueryTooExpensive` when ``query`` does not fit and cannot be
    split (the hint says why), and :class:`~amplitude_async.errors.InvalidQuery` when only
    ``chunk_days`` or the span limit asks for a split that is not exact.
    """
    if chunk_days is not None and chunk_days < 1:
        raise InvalidQuery("chunk_days", f"must be at least 1, got {chunk_days}")
    cost = query.cost
    if not isinstance(query, DatedQuery):
        if start is not None or end is not None:
            raise InvalidQuery("start", f"{query.endpoint} has no date range")
        if cost > budget:
            raise QueryTooExpensive(
                cost, budget, _BUDGET_NAME, f"{query.endpoint} has no date range to split"
            )
        return [query]
    first = query.start if start is None else start
    last = query.end if end is None else end
    if last < first:
        raise InvalidQuery("end", f"end {last} is before start {first}")
    days = days_in_range(first, last)
    cost = query.cost // query.days * days
    max_days = max_chunk_days(query, budget, chunk_days)
    span_limit = query.max_days
    if 1 <= days <= max_days:
        return [
            query if (first, last) == (query.start, query.end) else query.with_range(first, last)
        ]
    reason = split_refusal(query)
    if reason is not None:
        if span_limit is not None and days > span_limit:
            raise InvalidQuery(
                "interval",
                f"one request covers at most {span_limit} days at this interval, and this "
                f"query cannot be split by date: {reason}",
            )
        if cost <= budget:
            raise InvalidQuery("chunk_days", f"this query cannot be split by date: {reason}")
        raise QueryTooExpensive(cost, budget, _BUDGET_NAME, f"cannot split it by date: {reason}")
    chunks: list[Query[R]] = list(aligned_chunks(query, first, last, max_days, budget))
    return chunks


def plan_incremental(query: Query[R], budget: int) -> list[Query[R]]:
    """Cut a splittable dated ``query`` into its buckets, on calendar boundaries (see the
    module doc), in date order.

    Raises :class:`~amplitude_async.errors.QueryTooExpensive` when ``query`` cannot be split
    exactly or one bucket costs more than ``budget``.
    """
    if not isinstance(query, DatedQuery):
        raise QueryTooExpensive(
            query.cost, budget, _BUDGET_NAME, f"{query.endpoint} has no date range to split"
        )
    reason = split_refusal(query)
    if reason is not None:
        raise QueryTooExpensive(query.cost, budget, _BUDGET_NAME, f"cannot split it: {reason}")
    interval = _interval_of(query)
    per_day = query.cost // query.days
    bucket = period_days(interval)
    if per_day * bucket > budget:
        raise QueryTooExpensive(
            query.cost,
            budget,
            _BUDGET_NAME,
            f"one {bucket}-day bucket costs up to {per_day * bucket}"
            ": use a shorter interval, or fewer segments, conditions or group-bys",
        )
    return [query.with_range(a, b) for a, b in _buckets(query.start, query.end, interval)]


def _buckets(start: date, end: date, interval: int) -> list[tuple[date, date]]:
    """``[start, end]`` cut at every bucket boundary of ``interval``."""
    starts = [start]
    day = start + timedelta(days=1)
    while day <= end:
        if _is_boundary(day, interval):
            starts.append(day)
        day += timedelta(days=1)
    ends = [later - timedelta(days=1) for later in starts[1:]] + [end]
    return list(zip(starts, ends, strict=True))


def halves(query: Query[R]) -> list[Query[R]] | None:
    """``query`` cut in two aligned chunks, or ``None`` when it cannot be (exactly) split."""
    if not isinstance(query, DatedQuery) or split_refusal(query) is not None:
        return None
    interval = _interval_of(query)
    try:
        ranges = chunk_ranges(query.start, query.end, interval, max(1, (query.days + 1) // 2))
    except ValueError:
        return None
    if len(ranges) < 2:
        return None
    # Greedy halves may leave a third sliver; two chunks are enough to make progress.
    head, tail = ranges[0], (ranges[1][0], ranges[-1][1])
    return [query.with_range(*head), query.with_range(*tail)]


# -- merging --------------------------------------------------------------------------------


def _key_parts(label: SeriesLabel) -> tuple[str, ...]:
    # Group labels join their property values with "; "; ranking compares the values.
    text = str(label[-1]) if isinstance(label, tuple) else str(label)
    return tuple(text.split(_LABEL_JOIN))


def _collapsed(values: Sequence[float]) -> tuple[CollapsedValue, ...]:
    # Summed in bucket order, the way a whole-range answer adds its buckets.
    return (CollapsedValue(value=sum(values), set_id=""),)


def _too_many_groups(query: Query[Any], limit: int, budget: int) -> QueryTooExpensive:
    return QueryTooExpensive(
        query.cost,
        budget,
        _BUDGET_NAME,
        f"a chunk answered {limit} groups, the group limit, so groups may be missing from it "
        "and the chunks cannot be merged exactly; raise 'limit' (at most 1000) or narrow the "
        "segment",
    )


def _group_limit(query: Query[Any]) -> int:
    limit = getattr(query, "limit", None)
    return DEFAULT_GROUP_LIMIT if limit is None else int(limit)


def _merge_positional(parts: Sequence[SeriesResult]) -> SeriesResult:
    """Merge ungrouped results: the same series, in the same order, in every chunk."""
    shaped = [p for p in parts if p.series]
    first = shaped[0] if shaped else parts[0]
    count = len(first.series)
    for part in shaped:
        if (
            len(part.series) != count
            or part.series_labels != first.series_labels
            or part.series_meta != first.series_meta
        ):
            raise ValueError("the chunks' results do not have the same series")
    series: list[list[float]] = [[] for _ in range(count)]
    for part in parts:
        for i in range(count):
            values = part.series[i] if part.series else (0,) * len(part.x_values)
            series[i].extend(values)
    return attrs.evolve(
        first,
        x_values=tuple(x for p in parts for x in p.x_values),
        series=tuple(tuple(s) for s in series),
        series_collapsed=(tuple(_collapsed(s) for s in series) if first.series_collapsed else ()),
    )


def _merge_grouped(query: Query[Any], parts: Sequence[SeriesResult], budget: int) -> SeriesResult:
    """Merge grouped results: union the groups per (segment, event) block, zero-fill, rank."""
    limit = _group_limit(query)
    # A series is keyed by its block and label; its metadata comes from the first chunk having it.
    blocks: dict[tuple[int, int], dict[SeriesLabel, list[float]]] = {}
    metas: dict[tuple[tuple[int, int], SeriesLabel], SeriesMeta | None] = {}
    done_x = 0
    total_x = sum(len(p.x_values) for p in parts)
    for part in parts:
        width = len(part.x_values)
        per_block: dict[tuple[int, int], int] = {}
        for i, values in enumerate(part.series):
            label = part.series_labels[i]
            meta = part.series_meta[i] if i < len(part.series_meta) else None
            if not isinstance(label, tuple) or not isinstance(label[0], int):
                raise ValueError("a grouped result has a series without a group label")
            # Segmentation labels lead with the event index, active users' with the segment's;
            # the meta, when it says, names the segment.
            segment = meta.segment_index if isinstance(meta, SegmentMeta) else None
            event = meta.event_index if isinstance(meta, SegmentMeta) else None
            block = (label[0] if segment is None else segment, event or 0)
            per_block[block] = per_block.get(block, 0) + 1
            row = blocks.setdefault(block, {}).get(label)
            if row is None:
                row = blocks[block][label] = [0] * done_x
                metas[block, label] = meta
            row.extend(values)
        if any(n >= limit for n in per_block.values()):
            raise _too_many_groups(query, limit, budget)
        done_x += width
        for rows in blocks.values():
            for row in rows.values():
                row.extend([0] * (done_x - len(row)))
    assert all(len(r) == total_x for rows in blocks.values() for r in rows.values())
    series: list[tuple[float, ...]] = []
    labels: list[SeriesLabel] = []
    meta_out: list[SeriesMeta] = []
    collapsed: list[tuple[CollapsedValue, ...]] = []
    has_meta = any(p.series_meta for p in parts)
    for block in sorted(blocks):
        rows = blocks[block]
        totals = {label: sum(row) for label, row in rows.items()}
        ranked = sorted(rows, key=lambda label: (-totals[label], _key_parts(label)))
        for label in ranked[:limit]:
            series.append(tuple(rows[label]))
            labels.append(label)
            collapsed.append(_collapsed(rows[label]))
            meta = metas[block, label]
            if has_meta and meta is not None:
                meta_out.append(meta)
    first = parts[0]
    return attrs.evolve(
        first,
        x_values=tuple(x for p in parts for x in p.x_values),
        series=tuple(series),
        series_labels=tuple(labels),
        series_meta=tuple(meta_out),
        series_collapsed=tuple(collapsed) if any(p.series_collapsed for p in parts) else (),
    )


def merge_results(
    query: Query[R], parts: Sequence[R], *, budget: int = DEFAULT_LIMITS.cost_per_window
) -> R:
    """Merge the results of ``query``'s date chunks (in date order) into ``query``'s result.

    ``budget`` is only quoted in errors (the window budget the split was planned for).
    Raises :class:`~amplitude_async.errors.QueryTooExpensive` when ``query`` cannot be merged
    exactly (see the module docstring), including when a chunk reached the group limit.
    """
    if not parts:
        raise ValueError("nothing to merge")
    if len(parts) == 1:
        return parts[0]
    reason = split_refusal(query)
    if reason is not None:
        raise QueryTooExpensive(query.cost, budget, _BUDGET_NAME, f"cannot merge chunks: {reason}")
    results: list[SeriesResult] = []
    for part in parts:
        if not isinstance(part, query.result_type) or not isinstance(part, SeriesResult):
            raise TypeError(f"expected {query.result_type.__name__}, got {type(part).__name__}")
        results.append(part)
    grouped = any(isinstance(label, tuple) for p in results for label in p.series_labels)
    merged = _merge_grouped(query, results, budget) if grouped else _merge_positional(results)
    return merged  # type: ignore[return-value]


def __getattr__(name: str) -> Any:
    # run_split moved to amplitude_async.chunks (it runs queries; this module only plans).
    if name == "run_split":
        import warnings

        warnings.warn(
            "amplitude_async.split.run_split moved: import it from amplitude_async.chunks",
            DeprecationWarning,
            stacklevel=2,
        )
        from . import chunks

        return chunks.run_split
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
