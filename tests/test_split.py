"""Date splitting and merging: split-then-merge equals the unsplit answer of the emulator engine."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from amplitude_async import queries as q
from amplitude_async.chunks import run_split
from amplitude_async.converter import structure_result
from amplitude_async.errors import InvalidQuery, QueryTooExpensive, ServerError
from amplitude_async.limits import Limits
from amplitude_async.results import ResponseMetadata, SeriesResult
from amplitude_async.split import (
    chunk_ranges,
    merge_results,
    period_start,
    plan_chunks,
    split_refusal,
)
from amplitude_async.testing.dataset import SyntheticDataset
from amplitude_async.testing.engine import answer
from amplitude_async.values import Event, GroupBy, PerformedEvent, Segment, Where

DATASET = SyntheticDataset(seed=3, users=150, days=70)
NOW = datetime.combine(DATASET.end + timedelta(days=1), datetime.min.time(), UTC)
FIRST, LAST = DATASET.start - timedelta(days=3), DATASET.end + timedelta(days=3)


def run(query: q.Query[Any]) -> Any:
    result = structure_result(answer(query, DATASET, NOW), query.result_type)
    return attrs.evolve(result, metadata=ResponseMetadata())


# -- chunk ranges ---------------------------------------------------------------------------


@given(
    start=st.dates(date(2024, 1, 1), date(2026, 12, 31)),
    span=st.integers(0, 400),
    interval=st.sampled_from([q.DAILY, q.WEEKLY, q.MONTHLY]),
    max_days=st.integers(1, 120),
)
def test_chunk_ranges_cover_the_range_on_bucket_boundaries(
    start: date, span: int, interval: int, max_days: int
) -> None:
    end = start + timedelta(days=span)
    try:
        ranges = chunk_ranges(start, end, interval, max_days)
    except ValueError:
        # Only when some bucket is longer than max_days.
        assert max_days < {q.WEEKLY: 7, q.MONTHLY: 31}.get(interval, 1)
        return
    assert ranges[0][0] == start
    assert ranges[-1][1] == end
    for (_, a_end), (b_start, _) in itertools.pairwise(ranges):
        assert b_start == a_end + timedelta(days=1)
        assert period_start(b_start, interval) == b_start
    for a, b in ranges:
        assert a <= b
        assert (b - a).days + 1 <= max_days


def test_weekly_chunks_start_on_sunday() -> None:
    # 2026-09-01 is a Tuesday; the next Sundays are 09-06, 09-13, ...
    ranges = chunk_ranges(date(2026, 9, 1), date(2026, 9, 30), q.WEEKLY, 10)
    assert ranges == [
        (date(2026, 9, 1), date(2026, 9, 5)),
        (date(2026, 9, 6), date(2026, 9, 12)),
        (date(2026, 9, 13), date(2026, 9, 19)),
        (date(2026, 9, 20), date(2026, 9, 26)),
        (date(2026, 9, 27), date(2026, 9, 30)),
    ]
    assert all(a.weekday() == 6 for a, _ in ranges[1:])


def test_monthly_chunks_follow_months() -> None:
    assert chunk_ranges(date(2026, 1, 15), date(2026, 4, 2), q.MONTHLY, 45) == [
        (date(2026, 1, 15), date(2026, 2, 28)),
        (date(2026, 3, 1), date(2026, 4, 2)),
    ]
    assert chunk_ranges(date(2026, 1, 15), date(2026, 4, 2), q.MONTHLY, 31) == [
        (date(2026, 1, 15), date(2026, 1, 31)),
        (date(2026, 2, 1), date(2026, 2, 28)),
        (date(2026, 3, 1), date(2026, 3, 31)),
        (date(2026, 4, 1), date(2026, 4, 2)),
    ]


# -- planning -------------------------------------------------------------------------------


def test_a_query_that_fits_is_not_split() -> None:
    query = q.EventSegmentation(["Purchase"], date(2026, 9, 1), date(2026, 9, 30), metric="totals")
    assert plan_chunks(query, 1000) == [query]


def test_chunks_fit_the_budget_and_are_as_long_as_allowed() -> None:
    # 2 group-bys: conditions 1 + 8 = 9 per day; 1000 // 9 = 111 days per chunk.
    query = q.EventSegmentation(
        ["Purchase"],
        date(2026, 1, 1),
        date(2026, 12, 31),
        metric="totals",
        group_by=["country", "platform"],
    )
    assert query.cost == 365 * 9
    chunks = plan_chunks(query, 1000)
    assert [c.days for c in chunks if isinstance(c, q.DatedQuery)] == [111, 111, 111, 32]
    assert all(c.cost <= 1000 for c in chunks)
    assert sum(c.cost for c in chunks) == query.cost


@pytest.mark.parametrize(
    ("query", "why"),
    [
        (q.EventSegmentation(["Purchase"], date(2026, 1, 1), date(2026, 12, 31)), "uniques"),
        (q.ActiveUsers(date(2026, 1, 1), date(2026, 12, 31), group_by="country"), "distinct"),
        (q.Funnel(["Sign Up", "Purchase"], date(2026, 1, 1), date(2026, 12, 31)), "whole"),
        (q.Retention("Sign Up", "_active", date(2026, 1, 1), date(2026, 12, 31)), "whole"),
        (q.SessionLengthDistribution(date(2026, 1, 1), date(2026, 12, 31)), "whole"),
        (
            q.EventSegmentation(
                ["Purchase"],
                date(2026, 1, 1),
                date(2026, 12, 31),
                metric="totals",
                segments=[Segment(PerformedEvent("Search"))],
            ),
            "allTime",
        ),
    ],
)
def test_unsplittable_queries_raise_with_a_reason(query: q.Query[Any], why: str) -> None:
    with pytest.raises(QueryTooExpensive) as caught:
        plan_chunks(query, 250)
    assert why in caught.value.hint
    assert caught.value.cost == query.cost
    assert caught.value.budget == 250


def test_a_bucket_that_does_not_fit_raises() -> None:
    # A monthly bucket of 31 days at 9 per day is 279 > 250.
    query = q.EventSegmentation(
        ["Purchase"],
        date(2026, 1, 1),
        date(2026, 3, 31),
        metric="totals",
        interval=q.MONTHLY,
        group_by=["country", "platform"],
    )
    with pytest.raises(QueryTooExpensive, match="31-day bucket"):
        plan_chunks(query, 250)


def test_chunk_days_on_an_unsplittable_query_is_invalid() -> None:
    query = q.EventSegmentation(["Purchase"], date(2026, 9, 1), date(2026, 9, 30))
    with pytest.raises(InvalidQuery) as caught:
        plan_chunks(query, 1000, chunk_days=7)
    assert caught.value.field == "chunk_days"


def test_refusals_cover_exactly_the_documented_set() -> None:
    start, end = date(2026, 9, 1), date(2026, 9, 30)
    ok: list[q.Query[Any]] = [
        q.EventSegmentation(["Purchase"], start, end, metric="totals"),
        q.EventSegmentation(
            [Event("Purchase", group_by=[GroupBy("price", "event")])], start, end, metric="sums"
        ),
        q.ActiveUsers(start, end, metric="new"),
        q.AverageSessionLength(start, end),
        q.SessionsPerUser(start, end),
    ]
    assert [split_refusal(x) for x in ok] == [None] * len(ok)
    refused: list[q.Query[Any]] = [
        q.EventSegmentation(["Purchase"], start, end, metric="totals", rolling_window=3),
        q.EventSegmentation(["Purchase"], start, end, metric="pct_dau"),
        q.ActiveUsers(start, end),
        q.UserComposition(start, end, "country"),
        q.RevenueLTV(start, end),
        q.EventsList(),
    ]
    assert all(split_refusal(x) for x in refused)


# -- split then merge equals the unsplit answer ---------------------------------------------

_EVENTS = ["Purchase", "View Item", "Search", "_active", "Open App"]
_SEGMENTS = [
    (),
    (Segment(Where("platform", "is", ["iOS"])),),
    (Segment(Where("platform", "is", ["Android"])), Segment(Where("country", "is not", ["US"]))),
    (Segment(PerformedEvent("Search", ">=", 1, time_type="currentInterval")),),
    (Segment(PerformedEvent("View Item", ">=", 2, time_type="forEachInterval", time_value=3)),),
]


@st.composite
def splittable_queries(draw: st.DrawFn) -> q.DatedQuery[Any]:
    interval = draw(st.sampled_from([q.DAILY, q.WEEKLY, q.MONTHLY, q.HOURLY, q.REALTIME]))
    max_span = {q.HOURLY: q.HOURLY_MAX_DAYS, q.REALTIME: q.REALTIME_MAX_DAYS}.get(interval, 80)
    start = draw(st.dates(FIRST, LAST))
    end = start + timedelta(days=draw(st.integers(0, max_span - 1)))
    segments = draw(st.sampled_from(_SEGMENTS))
    kind = draw(st.sampled_from(["totals", "sums", "new", "average", "per_user"]))
    if kind == "totals":
        events = draw(st.lists(st.sampled_from(_EVENTS), min_size=1, max_size=2))
        event_group = draw(st.sampled_from([(), ("platform",)]))
        first = Event(events[0], group_by=event_group)
        return q.EventSegmentation(
            [first, *events[1:]],
            start,
            end,
            metric="totals",
            interval=interval,
            segments=segments,
            group_by=draw(st.sampled_from([(), ("country",), ("platform", "gp:plan")])),
            limit=draw(st.sampled_from([None, 3, 1000])),
        )
    if kind == "sums":
        prop = draw(st.sampled_from(["price", "quantity"]))
        return q.EventSegmentation(
            [
                Event(
                    draw(st.sampled_from(["Purchase", "Add to Cart"])),
                    group_by=[GroupBy(prop, "event")],
                )
            ],
            start,
            end,
            metric="sums",
            interval=interval,
            segments=segments,
            group_by=draw(st.sampled_from([(), ("country",)])),
        )
    if interval < 0:
        interval = q.DAILY
        end = start + timedelta(days=draw(st.integers(0, 79)))
    if kind == "new":
        return q.ActiveUsers(
            start,
            end,
            metric="new",
            interval=interval,
            segments=segments,
            group_by=draw(st.sampled_from([None, "country", "platform"])),
        )
    if kind == "average":
        return q.AverageSessionLength(start, end)
    return q.SessionsPerUser(start, end)


def max_groups_per_block(result: SeriesResult) -> int:
    """The most groups one (segment, event) block of ``result`` has (0 when ungrouped)."""
    counts: dict[tuple[object, object], int] = {}
    for i, label in enumerate(result.series_labels):
        if isinstance(label, tuple):
            meta = result.series_meta[i] if i < len(result.series_meta) else None
            # Labels lead with the event index (segmentation) or the segment (active users);
            # the meta, when it has one, names the segment.
            segment = getattr(meta, "segment_index", None)
            block = (label[0] if segment is None else segment, getattr(meta, "event_index", None))
            counts[block] = counts.get(block, 0) + 1
    return max(counts.values(), default=0)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=splittable_queries(), chunk_days=st.integers(1, 40))
def test_split_then_merge_equals_the_unsplit_answer(
    query: q.DatedQuery[Any], chunk_days: int
) -> None:
    assert split_refusal(query) is None
    chunks = plan_chunks(query, 10**9, chunk_days=chunk_days)
    dated = [c for c in chunks if isinstance(c, q.DatedQuery)]
    assert dated[0].start == query.start
    assert dated[-1].end == query.end
    parts = [run(chunk) for chunk in chunks]
    whole = run(query)
    limit = getattr(query, "limit", None) or 100
    if len(parts) > 1 and any(max_groups_per_block(p) >= limit for p in parts):
        # A chunk may have lost groups to the limit: the merge must refuse, not guess.
        with pytest.raises(QueryTooExpensive, match="group limit"):
            merge_results(query, parts)
        assume(False)
    merged = merge_results(query, parts)
    assert isinstance(merged, SeriesResult)
    assert merged == whole


def test_merging_catches_a_group_cut_by_the_limit() -> None:
    # Few groups, limit 2: the whole answer keeps the top 2 of all chunks, which chunks cannot
    # know; the merge must refuse rather than guess.
    query = q.EventSegmentation(
        ["_active"],
        DATASET.start,
        DATASET.start + timedelta(days=27),
        metric="totals",
        group_by=["country"],
        limit=2,
    )
    chunks = plan_chunks(query, 10**9, chunk_days=7)
    with pytest.raises(QueryTooExpensive, match="group limit"):
        merge_results(query, [run(c) for c in chunks])


class _FakeClient:
    """Answers from the engine; refuses (504) any chunk longer than ``max_days``."""

    def __init__(self, max_days: int, budget: int = 1000) -> None:
        self.limits = Limits(cost_per_window=budget)
        self.max_days = max_days
        self.sent: list[q.Query[Any]] = []

    async def run(self, query: q.Query[Any], *, priority: int = 0) -> Any:
        self.sent.append(query)
        if isinstance(query, q.DatedQuery) and query.days > self.max_days:
            raise ServerError(504, "Gateway timeout", path=query.path)
        return run(query)


async def test_run_split_splits_by_budget_and_again_on_504() -> None:
    query = q.EventSegmentation(
        ["View Item"],
        DATASET.start,
        DATASET.start + timedelta(days=59),
        metric="totals",
        group_by=["platform"],
        limit=1000,
    )
    assert query.cost == 300
    client = _FakeClient(max_days=9, budget=100)
    assert await run_split(client, query) == run(query)
    # 20-day chunks fit the budget; each was refused, halved to 10, refused, halved to 5.
    assert {c.days for c in client.sent if isinstance(c, q.DatedQuery)} == {20, 10, 5}
    unsplittable = q.EventSegmentation(["View Item"], DATASET.start, DATASET.start)
    with pytest.raises(ServerError):
        await run_split(_FakeClient(max_days=0), unsplittable)


def test_merged_grouped_series_fill_missing_groups_with_zeros() -> None:
    query = q.EventSegmentation(
        ["Purchase"],
        DATASET.start,
        DATASET.start + timedelta(days=27),
        metric="totals",
        group_by=["country"],
        limit=1000,
    )
    chunks = plan_chunks(query, 10**9, chunk_days=3)
    parts = [run(c) for c in chunks]
    labels = [set(p.series_labels) for p in parts]
    # The data must actually exercise the zero-fill: some group is missing from some chunk.
    assert set.union(*labels) != set.intersection(*labels)
    assert merge_results(query, parts) == run(query)
