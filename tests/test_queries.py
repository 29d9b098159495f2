"""Query classes: wire parameters, validation, cost, and the parse_query inverse."""

from __future__ import annotations

import itertools
import json
from datetime import date, datetime, timedelta
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import event_or_name, events, group_bys, names, optional_names, segment_lists

from amplitude_async import cohort_results, results
from amplitude_async.errors import InvalidQuery
from amplitude_async.limits import Pool
from amplitude_async.queries import (
    DAILY,
    ENDPOINTS,
    HOURLY,
    MONTHLY,
    REALTIME,
    WEEKLY,
    ActiveUsers,
    AverageSessionLength,
    ChartCSV,
    ChartQuery,
    DatedQuery,
    EventSegmentation,
    EventsList,
    Funnel,
    Query,
    RealtimeActiveUsers,
    Retention,
    RevenueLTV,
    SessionLengthDistribution,
    SessionsPerUser,
    UserActivity,
    UserComposition,
    UserSearch,
    parse_query,
)
from amplitude_async.values import (
    Event,
    GroupBy,
    InCohort,
    PerformedEvent,
    PropertyFilter,
    Segment,
    Where,
)

D1 = date(2024, 3, 1)
D7 = date(2024, 3, 7)
D30 = date(2024, 3, 30)


# -- exact wire parameters ------------------------------------------------------------------


def test_active_users_params() -> None:
    q = ActiveUsers(
        D1,
        D7,
        metric="new",
        interval=WEEKLY,
        segments=[Segment(Where("country", "is", ["Côte d'Ivoire", "A&B"]))],
        group_by="gp:Plan + Tier",
    )
    assert q.path == "/api/2/users"
    assert q.params() == (
        ("start", "20240301"),
        ("end", "20240307"),
        ("m", "new"),
        ("i", "7"),
        ("s", '[{"prop":"country","op":"is","values":["Côte d\'Ivoire","A&B"]}]'),
        ("g", "gp:Plan + Tier"),
    )


def test_active_users_defaults_are_sent() -> None:
    assert ActiveUsers(D1, D1).params() == (
        ("start", "20240301"),
        ("end", "20240301"),
        ("m", "active"),
        ("i", "1"),
    )


def test_several_segments_are_repeated_s_parameters_in_order() -> None:
    q = ActiveUsers(D1, D1, segments=[Segment(InCohort("c1")), Segment(), Segment(InCohort("c2"))])
    assert [value for name, value in q.params() if name == "s"] == [
        '[{"prop":"userdata_cohort","op":"is","values":["c1"]}]',
        "[]",
        '[{"prop":"userdata_cohort","op":"is","values":["c2"]}]',
    ]


def test_session_length_params() -> None:
    q = SessionLengthDistribution(D1, D7, bin_unit="minutes", bin_min=0, bin_max=10, bin_size=1)
    assert q.path == "/api/2/sessions/length"
    assert q.params() == (
        ("start", "20240301"),
        ("end", "20240307"),
        ("timeHistogramConfigBinTimeUnit", "minutes"),
        ("timeHistogramConfigBinMin", "0"),
        ("timeHistogramConfigBinMax", "10"),
        ("timeHistogramConfigBinSize", "1"),
    )
    assert SessionLengthDistribution(D1, D7).params() == (
        ("start", "20240301"),
        ("end", "20240307"),
    )


def test_session_average_and_per_user_params() -> None:
    dates = (("start", "20240301"), ("end", "20240330"))
    assert AverageSessionLength(D1, D30).path == "/api/2/sessions/average"
    assert AverageSessionLength(D1, D30).params() == dates
    assert SessionsPerUser(D1, D30).path == "/api/2/sessions/peruser"
    assert SessionsPerUser(D1, D30).params() == dates


def test_user_composition_params() -> None:
    q = UserComposition(D1, D7, "gp:Favourite Café")
    assert q.path == "/api/2/composition"
    assert q.params() == (("start", "20240301"), ("end", "20240307"), ("p", "gp:Favourite Café"))


def test_events_list_params() -> None:
    assert EventsList().path == "/api/2/events/list"
    assert EventsList().params() == ()


def test_event_segmentation_params_with_every_option() -> None:
    q = EventSegmentation(
        [
            Event(
                "Play Song & Dance",
                filters=[PropertyFilter("genre", "is", ["R&B", "Rock+Roll"])],
                group_by=[GroupBy("artist", "event")],
            ),
            "Añadir al carrito",
        ],
        D1,
        D7,
        metric="formula",
        interval=HOURLY,
        segments=[Segment(PerformedEvent("Sign Up", ">=", 2))],
        group_by=["country", "gp:a=b"],
        limit=500,
        formula="UNIQUES(A)/UNIQUES(B)",
        rolling_window=3,
        rolling_average=2,
        user_type="active",
    )
    assert q.path == "/api/2/events/segmentation"
    assert q.params() == (
        (
            "e",
            '{"event_type":"Play Song & Dance","filters":[{"subprop_type":"event",'
            '"subprop_key":"genre","subprop_op":"is","subprop_value":["R&B","Rock+Roll"]}],'
            '"group_by":[{"type":"event","value":"artist"}]}',
        ),
        ("e2", '{"event_type":"Añadir al carrito"}'),
        ("start", "20240301"),
        ("end", "20240307"),
        ("m", "formula"),
        ("n", "active"),
        ("i", "-3600000"),
        (
            "s",
            '[{"type":"event","event_type":"Sign Up","filters":[],"op":">=","value":2,'
            '"time_type":"allTime"}]',
        ),
        ("g", "country"),
        ("g2", "gp:a=b"),
        ("limit", "500"),
        ("formula", "UNIQUES(A)/UNIQUES(B)"),
        ("rollingWindow", "3"),
        ("rollingAverage", "2"),
    )


def test_event_segmentation_minimal_params() -> None:
    assert EventSegmentation("Play Song", D1, D1).params() == (
        ("e", '{"event_type":"Play Song"}'),
        ("start", "20240301"),
        ("end", "20240301"),
        ("m", "uniques"),
        ("i", "1"),
    )


def test_funnel_params_repeat_e_per_step() -> None:
    q = Funnel(
        ["Search Song", Event("Select Song", group_by=["platform"]), "Play Song"],
        D1,
        D30,
        mode="unordered",
        user_type="new",
        interval=DAILY,
        segments=[Segment(Where("gp:Ünï", "greater or equal", ["3"]))],
        group_by="city",
        conversion_window=86400,
        limit=10,
    )
    assert q.path == "/api/2/funnels"
    assert q.params() == (
        ("e", '{"event_type":"Search Song"}'),
        ("e", '{"event_type":"Select Song","group_by":[{"type":"user","value":"platform"}]}'),
        ("e", '{"event_type":"Play Song"}'),
        ("start", "20240301"),
        ("end", "20240330"),
        ("mode", "unordered"),
        ("n", "new"),
        ("i", "1"),
        ("s", '[{"prop":"gp:Ünï","op":"greater or equal","values":["3"]}]'),
        ("g", "city"),
        ("cs", "86400"),
        ("limit", "10"),
    )
    assert Funnel(["a", "b"], D1, D1).params() == (
        ("e", '{"event_type":"a"}'),
        ("e", '{"event_type":"b"}'),
        ("start", "20240301"),
        ("end", "20240301"),
        ("mode", "ordered"),
    )


def test_retention_params() -> None:
    q = Retention(
        "_new",
        Event("Play Song"),
        D1,
        D30,
        mode="bracket",
        brackets=[(0, 5), (5, 10)],
        interval=MONTHLY,
        group_by="os",
    )
    assert q.path == "/api/2/retention"
    assert q.params() == (
        ("se", '{"event_type":"_new"}'),
        ("re", '{"event_type":"Play Song"}'),
        ("start", "20240301"),
        ("end", "20240330"),
        ("rm", "bracket"),
        ("rb", "[[0,5],[5,10]]"),
        ("i", "30"),
        ("g", "os"),
    )


def test_user_activity_params() -> None:
    q = UserActivity(12345, offset=100, limit=1000, direction="earliest")
    assert q.path == "/api/2/useractivity"
    assert q.params() == (
        ("user", "12345"),
        ("offset", "100"),
        ("limit", "1000"),
        ("direction", "earliest"),
    )
    assert UserActivity("678").params() == (("user", "678"),)


def test_user_search_params() -> None:
    assert UserSearch("jöhn+doe@example.com").path == "/api/2/usersearch"
    assert UserSearch("jöhn+doe@example.com").params() == (("user", "jöhn+doe@example.com"),)
    assert UserSearch(12345).params() == (("user", "12345"),)


def test_realtime_params() -> None:
    assert RealtimeActiveUsers().path == "/api/2/realtime"
    assert RealtimeActiveUsers().params() == (("i", "5"),)


@pytest.mark.parametrize(
    ("metric", "digit"), [("arpu", "0"), ("arppu", "1"), (2, "2"), ("paying_users", "3")]
)
def test_revenue_ltv_params(metric: Any, digit: str) -> None:
    q = RevenueLTV(D1, D7, metric=metric, interval=WEEKLY, group_by="country")
    assert q.path == "/api/2/revenue/ltv"
    assert q.params() == (
        ("start", "20240301"),
        ("end", "20240307"),
        ("m", digit),
        ("i", "7"),
        ("g", "country"),
    )


def test_revenue_ltv_metric_digits_become_names() -> None:
    assert RevenueLTV(D1, D1, metric=2).metric == "total_revenue"


def test_saved_chart_paths() -> None:
    assert ChartCSV("abc123").path == "/api/3/chart/abc123/csv"
    assert ChartQuery("abc123").path == "/api/3/chart/abc123/query"
    assert ChartCSV("abc123").params() == ChartQuery("abc123").params() == ()


# -- class-level facts ----------------------------------------------------------------------


def test_endpoint_registry() -> None:
    assert set(ENDPOINTS) == {
        "active_users",
        "session_length_distribution",
        "average_session_length",
        "sessions_per_user",
        "user_composition",
        "events_list",
        "event_segmentation",
        "funnel",
        "retention",
        "user_activity",
        "user_search",
        "realtime_active_users",
        "revenue_ltv",
        "chart_csv",
        "chart_query",
        "cohorts_list",
    }
    for name, cls in ENDPOINTS.items():
        assert issubclass(cls, Query)
        assert cls.endpoint == name
        module = cohort_results if name.startswith("cohort") else results
        assert cls.result_type is getattr(module, cls.__name__ + "Result")


def test_pools() -> None:
    assert UserActivity(1).pool is Pool.USER
    assert UserSearch("x").pool is Pool.USER
    others = [cls for cls in ENDPOINTS.values() if cls not in (UserActivity, UserSearch)]
    assert all(cls.pool is Pool.STANDARD for cls in others)


def test_dated_queries() -> None:
    dated = {cls for cls in ENDPOINTS.values() if issubclass(cls, DatedQuery)}
    assert {cls.endpoint for cls in dated} == {
        "active_users",
        "session_length_distribution",
        "average_session_length",
        "sessions_per_user",
        "user_composition",
        "event_segmentation",
        "funnel",
        "retention",
        "revenue_ltv",
    }
    assert Funnel(["a", "b"], D1, D30).days == 30


def test_queries_are_frozen_and_hashable() -> None:
    q = EventSegmentation("a", D1, D7, segments=[Segment(InCohort("c"))])
    assert {q: 1}[EventSegmentation("a", D1, D7, segments=(Segment(InCohort("c")),))] == 1
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        q.start = D7  # type: ignore[misc]


def test_evolve_revalidates() -> None:
    q = EventSegmentation("a", D1, D7, interval=HOURLY)
    assert attrs.evolve(q, start=D7).days == 1
    with pytest.raises(InvalidQuery) as info:
        attrs.evolve(q, start=D7 + timedelta(days=1))
    assert info.value.field == "end"
    with pytest.raises(InvalidQuery) as info:
        attrs.evolve(q, end=D1 + timedelta(days=7))
    assert info.value.field == "interval"


def test_with_range_keeps_the_type_and_revalidates() -> None:
    q = Funnel(["a", "b"], D1, D7, interval=HOURLY)
    moved = q.with_range(D7, D7 + timedelta(days=6))
    assert type(moved) is Funnel
    assert (moved.start, moved.end, moved.events) == (D7, D7 + timedelta(days=6), q.events)
    with pytest.raises(InvalidQuery) as info:
        q.with_range(D1, D30)
    assert info.value.field == "interval"


def test_daily_segmentation_is_capped_at_365_days() -> None:
    year_end = date(2020, 12, 30)  # 2020 is a leap year: Jan 1 .. Dec 30 is 365 days
    assert EventSegmentation("a", date(2020, 1, 1), year_end).days == 365
    with pytest.raises(InvalidQuery, match="at most 365 days, got 366") as info:
        EventSegmentation("a", date(2020, 1, 1), year_end + timedelta(days=1))
    assert info.value.field == "interval"
    with pytest.raises(InvalidQuery) as info:
        Funnel(["a", "b"], date(2020, 1, 1), date(2021, 6, 1), interval=DAILY)
    assert info.value.field == "interval"
    # The reference caps only daily ranges of these endpoints: other intervals and endpoints
    # keep long ranges.
    assert EventSegmentation("a", date(2020, 1, 1), date(2024, 12, 31), interval=WEEKLY).days == (
        1827
    )
    assert Funnel(["a", "b"], date(2020, 1, 1), date(2024, 12, 31)).days == 1827
    assert ActiveUsers(date(2020, 1, 1), date(2024, 12, 31)).cost == 1827


def test_a_long_daily_segmentation_is_refused_from_the_wire_too() -> None:
    q = EventSegmentation("a", date(2020, 1, 1), date(2020, 1, 1))
    params = [(k, "20211231" if k == "end" else v) for k, v in q.params()]
    with pytest.raises(InvalidQuery) as info:
        parse_query(q.path, params)
    assert info.value.field == "i"


# -- validation -----------------------------------------------------------------------------


def _seg(**kw: Any) -> EventSegmentation:
    fields: dict[str, Any] = {"events": ["a"], "start": D1, "end": D7}
    return EventSegmentation(**(fields | kw))


def _funnel(**kw: Any) -> Funnel:
    fields: dict[str, Any] = {"events": ["a", "b"], "start": D1, "end": D7}
    return Funnel(**(fields | kw))


def _retention(**kw: Any) -> Retention:
    fields: dict[str, Any] = {"start_event": "a", "return_event": "b", "start": D1, "end": D7}
    return Retention(**(fields | kw))


BAD_QUERIES: list[tuple[str, Any, str]] = [
    # dates
    ("end before start", lambda: ActiveUsers(D7, D1), "end"),
    ("start not a date", lambda: ActiveUsers("20240301", D7), "start"),  # type: ignore[arg-type]
    ("end a datetime", lambda: AverageSessionLength(D1, datetime(2024, 3, 7)), "end"),
    ("funnel end before start", lambda: _funnel(start=D7, end=D1), "end"),
    # events
    ("no events", lambda: _seg(events=[]), "events"),
    ("three events", lambda: _seg(events=["a", "b", "c"]), "events"),
    ("empty event type", lambda: _seg(events=[""]), "events[0].event_type"),
    ("second event empty", lambda: _seg(events=["a", Event("b"), " "]), "events[2].event_type"),
    ("event not an event", lambda: _seg(events=[42]), "events[0]"),
    ("events a mapping", lambda: _seg(events={"event_type": "a"}), "events"),
    ("funnel one step", lambda: _funnel(events=["a"]), "events"),
    ("funnel no steps", lambda: _funnel(events=[]), "events"),
    ("retention empty start event", lambda: _retention(start_event=""), "start_event.event_type"),
    ("retention bad return event", lambda: _retention(return_event=None), "return_event"),
    # group-bys
    ("three group-bys on an event", lambda: Event("a", group_by=["x", "y", "z"]), "group_by"),
    ("three group-bys on segmentation", lambda: _seg(group_by=["x", "y", "z"]), "group_by"),
    ("empty segmentation group-by", lambda: _seg(group_by=["x", ""]), "group_by[1]"),
    ("empty funnel group-by", lambda: _funnel(group_by=""), "group_by"),
    ("retention group-by not a str", lambda: _retention(group_by=3), "group_by"),
    # metrics, modes, operators, user types, directions
    ("unknown users metric", lambda: ActiveUsers(D1, D7, metric="returning"), "metric"),  # type: ignore[arg-type]
    ("unknown segmentation metric", lambda: _seg(metric="count"), "metric"),
    ("unknown ltv metric", lambda: RevenueLTV(D1, D7, metric="mrr"), "metric"),  # type: ignore[arg-type]
    ("ltv metric index out of range", lambda: RevenueLTV(D1, D7, metric=4), "metric"),
    ("unknown funnel mode", lambda: _funnel(mode="strict"), "mode"),
    ("unknown retention mode", lambda: _retention(mode="weekly"), "mode"),
    ("unknown operator", lambda: Where("country", "like", ["x"]), "op"),  # type: ignore[arg-type]
    ("unknown count operator", lambda: PerformedEvent("x", op="=>"), "op"),  # type: ignore[arg-type]
    ("unknown segmentation user type", lambda: _seg(user_type="new"), "user_type"),
    ("unknown funnel user type", lambda: _funnel(user_type="any"), "user_type"),
    ("unknown direction", lambda: UserActivity(1, direction="newest"), "direction"),  # type: ignore[arg-type]
    ("unknown bin unit", lambda: SessionLengthDistribution(D1, D7, "days", 0, 1), "bin_unit"),  # type: ignore[arg-type]
    # formula and property metrics
    ("formula metric without formula", lambda: _seg(metric="formula"), "formula"),
    ("formula with another metric", lambda: _seg(formula="UNIQUES(A)"), "formula"),
    ("empty formula", lambda: _seg(metric="formula", formula=""), "formula"),
    ("histogram without group-by", lambda: _seg(metric="histogram"), "metric"),
    ("sums without group-by", lambda: _seg(metric="sums"), "metric"),
    (
        "value_avg with group-by only on the second event",
        lambda: _seg(metric="value_avg", events=["a", Event("b", group_by=["p"])]),
        "metric",
    ),
    # intervals
    ("users hourly", lambda: ActiveUsers(D1, D1, interval=HOURLY), "interval"),
    ("users 14 days", lambda: ActiveUsers(D1, D7, interval=14), "interval"),
    ("retention realtime", lambda: _retention(interval=REALTIME), "interval"),
    ("ltv interval 0", lambda: RevenueLTV(D1, D7, interval=0), "interval"),
    ("segmentation interval str", lambda: _seg(interval="1"), "interval"),
    ("segmentation interval bool", lambda: _seg(interval=True), "interval"),
    ("funnel interval 2", lambda: _funnel(interval=2), "interval"),
    ("hourly over 7 days", lambda: _seg(end=D7 + timedelta(days=1), interval=HOURLY), "interval"),
    (
        "realtime over 2 days",
        lambda: _seg(end=D1 + timedelta(days=2), interval=REALTIME),
        "interval",
    ),
    ("funnel hourly over 7 days", lambda: _funnel(end=D30, interval=HOURLY), "interval"),
    ("realtime users interval 1", lambda: RealtimeActiveUsers(1), "interval"),
    ("realtime users interval str", lambda: RealtimeActiveUsers("5"), "interval"),  # type: ignore[arg-type]
    # limits and numbers
    ("segmentation limit 0", lambda: _seg(limit=0), "limit"),
    ("segmentation limit 1001", lambda: _seg(limit=1001), "limit"),
    ("funnel limit 1001", lambda: _funnel(limit=1001), "limit"),
    ("user activity limit 1001", lambda: UserActivity(1, limit=1001), "limit"),
    ("user activity limit 0", lambda: UserActivity(1, limit=0), "limit"),
    ("user activity negative offset", lambda: UserActivity(1, offset=-1), "offset"),
    ("conversion window 0", lambda: _funnel(conversion_window=0), "conversion_window"),
    ("conversion window negative", lambda: _funnel(conversion_window=-60), "conversion_window"),
    ("rolling window 0", lambda: _seg(rolling_window=0), "rolling_window"),
    ("rolling average float", lambda: _seg(rolling_average=1.5), "rolling_average"),
    # brackets
    ("bracket mode without brackets", lambda: _retention(mode="bracket"), "brackets"),
    ("brackets without bracket mode", lambda: _retention(brackets=[(0, 5)]), "brackets"),
    ("empty brackets", lambda: _retention(mode="bracket", brackets=[]), "brackets"),
    ("bracket not a pair", lambda: _retention(mode="bracket", brackets=[(0, 5, 9)]), "brackets[0]"),
    ("bracket reversed", lambda: _retention(mode="bracket", brackets=[(5, 0)]), "brackets[0]"),
    ("bracket empty span", lambda: _retention(mode="bracket", brackets=[(3, 3)]), "brackets[0]"),
    (
        "brackets overlap",
        lambda: _retention(mode="bracket", brackets=[(0, 5), (4, 9)]),
        "brackets[1]",
    ),
    ("bracket negative", lambda: _retention(mode="bracket", brackets=[(-1, 5)]), "brackets[0][0]"),
    ("bracket float", lambda: _retention(mode="bracket", brackets=[(0, 2.5)]), "brackets[0][1]"),
    # session bins
    ("bin min without max", lambda: SessionLengthDistribution(D1, D7, "minutes", 0), "bin_max"),
    ("bin size alone", lambda: SessionLengthDistribution(D1, D7, bin_size=5), "bin_unit"),
    ("bin max below min", lambda: SessionLengthDistribution(D1, D7, "hours", 5, 2), "bin_max"),
    # properties, users, charts, segments
    ("empty property", lambda: UserComposition(D1, D7, ""), "property"),
    ("blank property", lambda: UserComposition(D1, D7, "  "), "property"),
    ("empty search", lambda: UserSearch(""), "user"),
    ("amplitude id not digits", lambda: UserActivity("abc"), "user"),
    ("amplitude id negative", lambda: UserActivity(-5), "user"),
    ("empty chart id", lambda: ChartCSV(""), "chart_id"),
    ("chart id with slash", lambda: ChartQuery("a/b"), "chart_id"),
    ("chart id with query", lambda: ChartCSV("a?b=1"), "chart_id"),
    ("chart id dot-dot", lambda: ChartCSV(".."), "chart_id"),
    ("chart cost 0", lambda: ChartCSV("abc", cost=0), "cost"),
    ("segment not a segment", lambda: ActiveUsers(D1, D7, segments=[InCohort("c")]), "segments[0]"),  # type: ignore[list-item]
    ("segments a string", lambda: _seg(segments="country=US"), "segments"),
]


@pytest.mark.parametrize(
    ("build", "field"),
    [pytest.param(build, field, id=rule) for rule, build, field in BAD_QUERIES],
)
def test_invalid_queries_are_refused_naming_the_field(build: Any, field: str) -> None:
    with pytest.raises(InvalidQuery) as info:
        build()
    assert info.value.field == field
    assert info.value.message


def test_boundaries_that_are_allowed() -> None:
    assert _seg(end=D1 + timedelta(days=6), interval=HOURLY).days == 7
    assert _seg(end=D1 + timedelta(days=1), interval=REALTIME).days == 2
    assert _seg(limit=1).limit == 1
    assert _seg(limit=1000).limit == 1000
    assert _seg(metric="histogram", events=[Event("a", group_by=["p"])]).metric == "histogram"
    assert UserActivity(0, offset=0, limit=1).user == 0
    assert _retention(mode="bracket", brackets=[[0, 1], [1, 2], [7, 14]]).brackets == (
        (0, 1),
        (1, 2),
        (7, 14),
    )


# -- cost -----------------------------------------------------------------------------------


def test_cost_of_each_endpoint() -> None:
    one_condition = Segment(Where("country", "is", ["US"]))
    # days * conditions * chart
    assert ActiveUsers(D1, D7).cost == 7 * 1 * 1
    assert ActiveUsers(D1, D7, segments=[one_condition], group_by="city").cost == 7 * (2 + 4)
    assert SessionLengthDistribution(D1, D7).cost == 7 * 1 * 4
    assert AverageSessionLength(D1, D30).cost == 30 * 4
    assert SessionsPerUser(D1, D1).cost == 4
    assert UserComposition(D1, D30, "country").cost == 30
    assert EventsList().cost == 1
    assert RealtimeActiveUsers().cost == 1
    assert RevenueLTV(D1, D7, segments=[one_condition, one_condition]).cost == 7 * 4
    assert Retention("a", "b", D1, D7).cost == 7 * 1 * 8
    assert Retention("a", "b", D1, D7, group_by="os").cost == 7 * 5 * 8
    assert UserActivity(1).cost == 0
    assert UserSearch("x").cost == 0
    assert ChartCSV("abc").cost == 1
    assert ChartQuery("abc", cost=250).cost == 250


def test_event_segmentation_cost_follows_the_worked_example() -> None:
    # one segment with one condition and two group-bys -> 10 conditions;
    # two events, the first with one group-by -> chart cost 2 + 4
    q = EventSegmentation(
        [Event("a", filters=[PropertyFilter("k", "is", "v")], group_by=["p"]), "b"],
        D1,
        D30,
        segments=[Segment(InCohort("c"))],
        group_by=["country", "city"],
    )
    assert q.cost == 30 * 10 * 6


def test_funnel_cost_follows_the_worked_example() -> None:
    # 30 days, 3 steps, 10 conditions -> 1800
    q = Funnel(
        ["a", "b", "c"],
        D1,
        D30,
        segments=[Segment(*(Where("country", "is", [str(i)]) for i in range(9)))],
    )
    assert q.cost == 1800
    with_group_bys = attrs.evolve(q, events=[Event("a", group_by=["p", "q"]), "b", "c"])
    assert with_group_bys.cost == 30 * 10 * (6 + 8)


def test_event_filters_do_not_count() -> None:
    plain = EventSegmentation("a", D1, D7)
    filtered = EventSegmentation(
        Event("a", filters=[PropertyFilter("k", "is", "v"), PropertyFilter("j", "is", "w")]),
        D1,
        D7,
    )
    assert plain.cost == filtered.cost == 7


# -- parse_query ----------------------------------------------------------------------------


def test_parse_query_examples() -> None:
    assert parse_query("/api/2/users", [("start", "20240301"), ("end", "20240307")]) == (
        ActiveUsers(D1, D7)
    )
    q = parse_query(
        "/api/2/funnels",
        [
            ("e", '{"event_type":"a"}'),
            ("e", '{"event_type": "b", "filters": [], "group_by": []}'),
            ("start", "20240301"),
            ("end", "20240330"),
        ],
    )
    assert q == Funnel(["a", "b"], D1, D30)
    assert q.cost == 30 * 4
    assert parse_query("/api/3/chart/xyz/query", []) == ChartQuery("xyz")
    assert parse_query("/api/2/events/list", []) == EventsList()


GOOD_SEGMENTATION = [("e", '{"event_type":"a"}'), ("start", "20240301"), ("end", "20240307")]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/2/nope", [], "path"),
        ("/api/3/chart//csv", [], "path"),
        ("/api/3/chart/abc/png", [], "path"),
        ("/api/2/users", [("end", "20240307")], "start"),
        ("/api/2/users", [("start", "2024-03-01"), ("end", "20240307")], "start"),
        ("/api/2/users", [("start", "20240231"), ("end", "20240307")], "start"),
        ("/api/2/users", [("start", "20240307"), ("end", "20240301")], "end"),
        ("/api/2/users", [("start", "20240301"), ("end", "20240307"), ("m", "x")], "m"),
        ("/api/2/users", [("start", "20240301"), ("end", "20240307"), ("i", "one")], "i"),
        ("/api/2/users", [("start", "20240301"), ("end", "20240307"), ("i", "-3600000")], "i"),
        ("/api/2/users", [("start", "20240301"), ("end", "20240307"), ("x", "1")], "x"),
        ("/api/2/users", [("start", "20240301"), ("end", "20240307"), ("g", "a"), ("g", "b")], "g"),
        ("/api/2/users", [("start", "20240301"), ("end", "20240307"), ("s", "[{]")], "s"),
        (
            "/api/2/users",
            [("start", "20240301"), ("end", "20240307"), ("s", '[{"prop":"x"}]')],
            "s",
        ),
        ("/api/2/events/segmentation", GOOD_SEGMENTATION[1:], "e"),
        ("/api/2/events/segmentation", [("e", "Play Song"), *GOOD_SEGMENTATION[1:]], "e"),
        ("/api/2/events/segmentation", [("e", '{"event_type":""}'), *GOOD_SEGMENTATION[1:]], "e"),
        ("/api/2/events/segmentation", [*GOOD_SEGMENTATION, ("e2", "{}")], "e2"),
        ("/api/2/events/segmentation", [*GOOD_SEGMENTATION, ("limit", "5000")], "limit"),
        ("/api/2/events/segmentation", [*GOOD_SEGMENTATION, ("m", "formula")], "formula"),
        ("/api/2/events/segmentation", [*GOOD_SEGMENTATION, ("m", "sums")], "m"),
        ("/api/2/events/segmentation", [*GOOD_SEGMENTATION, ("g2", "city")], "g2"),
        ("/api/2/events/segmentation", [*GOOD_SEGMENTATION, ("i", "-300000")], "i"),
        (
            "/api/2/events/segmentation",
            [*GOOD_SEGMENTATION, ("rollingWindow", "0")],
            "rollingWindow",
        ),
        ("/api/2/events/segmentation", [*GOOD_SEGMENTATION, ("n", "new")], "n"),
        ("/api/2/funnels", GOOD_SEGMENTATION, "e"),
        ("/api/2/funnels", [*GOOD_SEGMENTATION, ("e", '{"event_type":"b"}'), ("cs", "0")], "cs"),
        ("/api/2/retention", [("se", '{"event_type":"a"}'), *GOOD_SEGMENTATION[1:]], "re"),
        (
            "/api/2/retention",
            [("se", "{}"), ("re", '{"event_type":"a"}'), *GOOD_SEGMENTATION[1:]],
            "se",
        ),
        (
            "/api/2/retention",
            [("se", '"a"'), ("re", '"b"'), *GOOD_SEGMENTATION[1:], ("rm", "bracket")],
            "se",
        ),
        (
            "/api/2/retention",
            [
                ("se", '{"event_type":"a"}'),
                ("re", '{"event_type":"b"}'),
                *GOOD_SEGMENTATION[1:],
                ("rm", "bracket"),
            ],
            "rb",
        ),
        (
            "/api/2/retention",
            [
                ("se", '{"event_type":"a"}'),
                ("re", '{"event_type":"b"}'),
                *GOOD_SEGMENTATION[1:],
                ("rm", "bracket"),
                ("rb", "[[5,0]]"),
            ],
            "rb",
        ),
        ("/api/2/useractivity", [], "user"),
        ("/api/2/useractivity", [("user", "abc")], "user"),
        ("/api/2/useractivity", [("user", "1"), ("limit", "1001")], "limit"),
        ("/api/2/usersearch", [("user", "")], "user"),
        ("/api/2/realtime", [("i", "60")], "i"),
        ("/api/2/revenue/ltv", [("start", "20240301"), ("end", "20240307"), ("m", "7")], "m"),
        ("/api/2/revenue/ltv", [("start", "20240301"), ("end", "20240307"), ("m", "arpu")], "m"),
        ("/api/2/composition", [("start", "20240301"), ("end", "20240307")], "p"),
        ("/api/2/composition", [("start", "20240301"), ("end", "20240307"), ("p", "")], "p"),
        (
            "/api/2/sessions/length",
            [("start", "20240301"), ("end", "20240307"), ("timeHistogramConfigBinSize", "5")],
            "timeHistogramConfigBinTimeUnit",
        ),
        ("/api/2/events/list", [("start", "20240301")], "start"),
        ("/api/3/chart/abc/csv", [("start", "20240301")], "start"),
    ],
)
def test_parse_query_names_the_wire_parameter(
    path: str, params: list[tuple[str, str]], field: str
) -> None:
    with pytest.raises(InvalidQuery) as info:
        parse_query(path, params)
    assert info.value.field == field


def test_parse_query_explains_nested_errors() -> None:
    bad_filter = {
        "event_type": "a",
        "filters": [
            {"subprop_type": "event", "subprop_key": "k", "subprop_op": "~", "subprop_value": ["v"]}
        ],
    }
    with pytest.raises(InvalidQuery, match=r"^e: filters\[0\]\.subprop_op: unknown operator"):
        parse_query(
            "/api/2/events/segmentation", [("e", json.dumps(bad_filter)), *GOOD_SEGMENTATION[1:]]
        )


def test_stated_chart_cost_is_not_on_the_wire() -> None:
    q = ChartCSV("abc", cost=40)
    assert parse_query(q.path, q.params()) == ChartCSV("abc")


# -- round trip -----------------------------------------------------------------------------


@st.composite
def date_ranges(draw: st.DrawFn, max_days: int = 400) -> tuple[date, date]:
    start = draw(st.dates(min_value=date(2015, 1, 1), max_value=date(2030, 12, 31)))
    return start, start + timedelta(days=draw(st.integers(0, max_days - 1)))


@st.composite
def event_segmentations(draw: st.DrawFn) -> EventSegmentation:
    interval = draw(st.sampled_from([REALTIME, HOURLY, DAILY, WEEKLY, MONTHLY]))
    start, end = draw(date_ranges(EventSegmentation.span_limit(interval) or 400))
    metric = draw(
        st.sampled_from(
            ["uniques", "totals", "pct_dau", "average", "histogram", "sums", "value_avg", "formula"]
        )
    )
    first = draw(events)
    if metric in ("histogram", "sums", "value_avg") and not first.group_by:
        first = attrs.evolve(first, group_by=[draw(group_bys)])
    more = draw(st.lists(event_or_name, max_size=1))
    return EventSegmentation(
        [first, *more],
        start,
        end,
        metric=metric,  # type: ignore[arg-type]
        interval=interval,
        segments=draw(segment_lists),
        group_by=draw(st.lists(names, max_size=2)),
        limit=draw(st.none() | st.integers(1, 1000)),
        formula=draw(names) if metric == "formula" else None,
        rolling_window=draw(st.none() | st.integers(1, 30)),
        rolling_average=draw(st.none() | st.integers(1, 30)),
        user_type=draw(st.sampled_from([None, "any", "active"])),
    )


@st.composite
def funnels(draw: st.DrawFn) -> Funnel:
    interval = draw(st.sampled_from([None, REALTIME, HOURLY, DAILY, WEEKLY, MONTHLY]))
    start, end = draw(date_ranges(Funnel.span_limit(interval) or 400))
    return Funnel(
        draw(st.lists(event_or_name, min_size=2, max_size=5)),
        start,
        end,
        mode=draw(st.sampled_from(["ordered", "unordered", "sequential"])),
        user_type=draw(st.sampled_from([None, "active", "new"])),
        interval=interval,
        segments=draw(segment_lists),
        group_by=draw(optional_names),
        conversion_window=draw(st.none() | st.integers(1, 10**7)),
        limit=draw(st.none() | st.integers(1, 1000)),
    )


@st.composite
def brackets(draw: st.DrawFn) -> list[tuple[int, int]]:
    bounds = sorted(draw(st.sets(st.integers(0, 90), min_size=2, max_size=6)))
    return list(itertools.pairwise(bounds))


@st.composite
def retentions(draw: st.DrawFn) -> Retention:
    start, end = draw(date_ranges())
    mode = draw(st.sampled_from(["nday", "n-day", "rolling", "bracket"]))
    return Retention(
        draw(event_or_name),
        draw(event_or_name),
        start,
        end,
        mode=mode,
        brackets=draw(brackets()) if mode == "bracket" else None,
        interval=draw(st.sampled_from([DAILY, WEEKLY, MONTHLY])),
        segments=draw(segment_lists),
        group_by=draw(optional_names),
    )


@st.composite
def session_lengths(draw: st.DrawFn) -> SessionLengthDistribution:
    start, end = draw(date_ranges())
    if not draw(st.booleans()):
        return SessionLengthDistribution(start, end)
    low = draw(st.integers(0, 100))
    return SessionLengthDistribution(
        start,
        end,
        bin_unit=draw(st.sampled_from(["hours", "minutes", "seconds"])),
        bin_min=low,
        bin_max=low + draw(st.integers(1, 100)),
        bin_size=draw(st.none() | st.integers(1, 50)),
    )


def _dated(cls: Any, **extra: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(
        lambda r, kw: cls(r[0], r[1], **kw), date_ranges(), st.fixed_dictionaries(extra)
    )


chart_ids = st.text(
    alphabet=st.characters(whitelist_categories=("L", "N"), whitelist_characters="-_"), min_size=1
)
all_queries: st.SearchStrategy[Query[Any]] = st.one_of(
    _dated(
        ActiveUsers,
        metric=st.sampled_from(["active", "new"]),
        interval=st.sampled_from([DAILY, WEEKLY, MONTHLY]),
        segments=segment_lists,
        group_by=optional_names,
    ),
    session_lengths(),
    _dated(AverageSessionLength),
    _dated(SessionsPerUser),
    _dated(UserComposition, property=names),
    st.just(EventsList()),
    event_segmentations(),
    funnels(),
    retentions(),
    st.builds(
        UserActivity,
        user=st.integers(0, 10**15),
        offset=st.none() | st.integers(0, 10**6),
        limit=st.none() | st.integers(1, 1000),
        direction=st.sampled_from([None, "latest", "earliest"]),
    ),
    st.builds(UserSearch, user=names),
    st.just(RealtimeActiveUsers()),
    _dated(
        RevenueLTV,
        metric=st.sampled_from(["arpu", "arppu", "total_revenue", "paying_users"]),
        interval=st.sampled_from([DAILY, WEEKLY, MONTHLY]),
        segments=segment_lists,
        group_by=optional_names,
    ),
    st.builds(ChartCSV, chart_id=chart_ids),
    st.builds(ChartQuery, chart_id=chart_ids),
)


@settings(max_examples=300, deadline=None)
@given(q=all_queries)
def test_parse_query_inverts_params(q: Query[Any]) -> None:
    params = q.params()
    assert all(isinstance(n, str) and isinstance(v, str) for n, v in params)
    back = parse_query(q.path, params)
    assert back == q
    assert type(back) is type(q)
    assert back.cost == q.cost
    assert back.params() == params


@settings(max_examples=100, deadline=None)
@given(q=all_queries)
def test_json_parameters_are_compact_and_unescaped(q: Query[Any]) -> None:
    for name, value in q.params():
        if name in ("e", "e2", "se", "re", "s", "rb"):
            decoded = json.loads(value)
            assert value == json.dumps(decoded, separators=(",", ":"), ensure_ascii=False)


@settings(max_examples=100, deadline=None)
@given(q=st.one_of(event_segmentations(), funnels(), retentions()), extra=st.integers(1, 30))
def test_cost_grows_with_the_range(q: DatedQuery[Any], extra: int) -> None:
    longer_start = q.start - timedelta(days=extra)
    try:
        longer = q.with_range(longer_start, q.end)
    except InvalidQuery:
        return  # hourly/realtime spans cannot grow
    assert longer.cost > q.cost
    assert longer.cost * q.days == q.cost * longer.days
