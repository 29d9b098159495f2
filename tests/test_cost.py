"""The pure cost model: the documented worked examples and its algebraic structure."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amplitude_async.cost import (
    ChartKind,
    chart_cost,
    condition_count,
    days_in_range,
    query_cost,
)

counts = st.lists(st.integers(min_value=0, max_value=10), max_size=6)
small = st.integers(min_value=1, max_value=400)
dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2040, 12, 31))


def test_worked_example_one_segment_one_condition_two_group_bys() -> None:
    # "one segment with one condition and two group-bys -> 10 conditions"
    assert condition_count([1], group_bys=2) == 10


def test_worked_example_funnel() -> None:
    # "a 30-day, 3-step funnel with 10 conditions -> 30 * 10 * 6 = 1800"
    days = days_in_range(date(2024, 6, 1), date(2024, 6, 30))
    assert days == 30
    chart = chart_cost(ChartKind.FUNNEL, [0, 0, 0])
    assert chart == 6
    assert query_cost(days, 10, chart) == 1800


def test_days_are_inclusive() -> None:
    assert days_in_range(date(2024, 1, 1), date(2024, 1, 1)) == 1
    assert days_in_range(date(2024, 2, 28), date(2024, 3, 1)) == 3  # leap year
    assert days_in_range(date(2023, 2, 28), date(2023, 3, 1)) == 2


def test_undated_endpoints_count_one_day() -> None:
    assert days_in_range(None, None) == 1


def test_days_reject_half_or_reversed_ranges() -> None:
    with pytest.raises(ValueError, match="both"):
        days_in_range(date(2024, 1, 1), None)
    with pytest.raises(ValueError, match="before"):
        days_in_range(date(2024, 1, 2), date(2024, 1, 1))


def test_no_segment_is_the_implicit_all_users_segment() -> None:
    assert condition_count([]) == 1
    assert condition_count([0]) == 1
    assert condition_count([], group_bys=1) == 5


def test_chart_costs_of_fixed_kinds() -> None:
    assert chart_cost(ChartKind.RETENTION) == 8
    assert chart_cost(ChartKind.SESSIONS) == 4
    assert chart_cost(ChartKind.OTHER) == 1
    # group-bys inside events matter only to segmentation and funnels
    assert chart_cost(ChartKind.RETENTION, [2, 2]) == 8


def test_event_segmentation_chart_cost() -> None:
    assert chart_cost(ChartKind.EVENT_SEGMENTATION, [0]) == 1
    assert chart_cost(ChartKind.EVENT_SEGMENTATION, [0, 0]) == 2
    assert chart_cost(ChartKind.EVENT_SEGMENTATION, [2, 1]) == 2 + 4 * 3


def test_funnel_chart_cost() -> None:
    assert chart_cost(ChartKind.FUNNEL, [1, 0]) == 2 * 2 + 4


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        condition_count([-1])
    with pytest.raises(ValueError, match="negative"):
        chart_cost(ChartKind.FUNNEL, [-1, 0])
    with pytest.raises(ValueError, match="positive"):
        query_cost(0, 1, 1)


@settings(max_examples=60, deadline=None)
@given(start=dates, length=st.integers(min_value=0, max_value=800))
def test_days_count_the_dates_in_the_range(start: date, length: int) -> None:
    end = start + timedelta(days=length)
    assert days_in_range(start, end) == len(
        {start + timedelta(days=i) for i in range((end - start).days + 1)}
    )


@settings(max_examples=60, deadline=None)
@given(start=dates, a=st.integers(0, 300), b=st.integers(0, 300))
def test_days_are_additive_over_adjacent_ranges(start: date, a: int, b: int) -> None:
    middle = start + timedelta(days=a)
    end = middle + timedelta(days=1 + b)
    whole = days_in_range(start, end)
    assert whole == days_in_range(start, middle) + days_in_range(middle + timedelta(days=1), end)


@settings(max_examples=60, deadline=None)
@given(days=small, conditions=small, chart=small, extra=st.integers(1, 50))
def test_cost_is_monotone_in_each_factor(
    days: int, conditions: int, chart: int, extra: int
) -> None:
    base = query_cost(days, conditions, chart)
    assert query_cost(days + extra, conditions, chart) > base
    assert query_cost(days, conditions + extra, chart) > base
    assert query_cost(days, conditions, chart + extra) > base


@settings(max_examples=60, deadline=None)
@given(days=small, conditions=small, chart=small, k=st.integers(1, 10))
def test_cost_scales_linearly_in_days(days: int, conditions: int, chart: int, k: int) -> None:
    # Splitting a range into k equal chunks keeps the total cost: what backfills rely on.
    assert query_cost(k * days, conditions, chart) == k * query_cost(days, conditions, chart)


@settings(max_examples=60, deadline=None)
@given(segments=counts, group_bys=st.integers(0, 2), more=st.integers(0, 5))
def test_conditions_grow_with_segments_conditions_and_group_bys(
    segments: list[int], group_bys: int, more: int
) -> None:
    base = condition_count(segments, group_bys)
    assert base >= 1
    assert condition_count([*segments, more], group_bys) == base + (more + 1 if segments else more)
    assert condition_count(segments, group_bys + 1) == base + 4


@settings(max_examples=60, deadline=None)
@given(group_bys=st.lists(st.integers(0, 2), min_size=1, max_size=8))
def test_event_charts_count_events_and_their_group_bys(group_bys: list[int]) -> None:
    seg = chart_cost(ChartKind.EVENT_SEGMENTATION, group_bys)
    funnel = chart_cost(ChartKind.FUNNEL, group_bys)
    # a funnel step costs one more than a segmentation event; group-bys weigh the same
    assert funnel - seg == len(group_bys)
    assert chart_cost(ChartKind.EVENT_SEGMENTATION, [0] * len(group_bys)) == len(group_bys)
    # order of the events does not matter
    assert chart_cost(ChartKind.FUNNEL, group_bys[::-1]) == funnel
