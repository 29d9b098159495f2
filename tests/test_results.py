"""Decoding and encoding of every endpoint's response (results + converter).

Samples live in ``tests/samples``: ``doc_*`` are the examples of the API document (invalid JSON
corrected, elisions filled in), ``real_*`` reproduce the shapes real servers send.
"""

from __future__ import annotations

import copy
import json
import sys
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amplitude_async.converter import converter, structure_result, unstructure_result
from amplitude_async.errors import ResponseValidationError
from amplitude_async.queries import ActiveUsers, Retention, RevenueLTV
from amplitude_async.results import (
    ActiveUsersResult,
    AverageSessionLengthResult,
    ChartCSVResult,
    ChartQueryResult,
    CollapsedValue,
    DaySeries,
    EventInfo,
    EventSegmentationResult,
    EventsListResult,
    FunnelGroup,
    FunnelResult,
    Location,
    LTVCell,
    LTVSeries,
    RealtimeActiveUsersResult,
    ResponseMetadata,
    RetentionCell,
    RetentionResult,
    RetentionSeries,
    RevenueLTVResult,
    Row,
    SegmentMeta,
    SessionLengthDistributionResult,
    SessionsPerUserResult,
    UserActivityResult,
    UserCompositionResult,
    UserData,
    UserEvent,
    UserMatch,
    UserSearchResult,
    parse_x_value,
)
from amplitude_async.values import Event, Segment, Where

SAMPLES = Path(__file__).parent / "samples"

SAMPLE_TYPES: dict[str, type] = {
    "doc_users": ActiveUsersResult,
    "doc_sessions_length": SessionLengthDistributionResult,
    "doc_sessions_average": AverageSessionLengthResult,
    "doc_sessions_peruser": SessionsPerUserResult,
    "doc_composition": UserCompositionResult,
    "doc_events_list": EventsListResult,
    "doc_segmentation": EventSegmentationResult,
    "doc_funnels": FunnelResult,
    "doc_retention": RetentionResult,
    "doc_useractivity": UserActivityResult,
    "doc_usersearch": UserSearchResult,
    "doc_usersearch_nomatch": UserSearchResult,
    "doc_realtime": RealtimeActiveUsersResult,
    "doc_ltv": RevenueLTVResult,
    "real_users_groupby": ActiveUsersResult,
    "real_segmentation_empty": EventSegmentationResult,
    "real_segmentation_hourly": EventSegmentationResult,
    "real_retention": RetentionResult,
    "real_ltv": RevenueLTVResult,
    "real_useractivity": UserActivityResult,
    "real_usersearch_prefix": UserSearchResult,
    "real_chart_csv": ChartCSVResult,
    "real_chart_query": ChartQueryResult,
}


def load(name: str) -> Any:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def decode(name: str) -> Any:
    return structure_result(load(name), SAMPLE_TYPES[name])


def test_every_sample_file_is_covered() -> None:
    assert {p.stem for p in SAMPLES.glob("*.json")} == set(SAMPLE_TYPES)


# --- the document's examples -------------------------------------------------------------------


def test_doc_users() -> None:
    r = decode("doc_users")
    assert r.x_values == ("2017-08-14", "2017-08-15")
    assert r.series == ((46109, 47542), (42845, 42626))
    assert r.series_meta == ("United States", "Canada")
    assert r.series_labels == ()
    assert r.metadata == ResponseMetadata()
    assert isinstance(r.series[0][0], int)


def test_doc_sessions() -> None:
    length = decode("doc_sessions_length")
    assert len(length.series[0]) == len(length.x_values) == 10
    assert length.x_values[0] == "0s-60s"
    assert length.series[0][7] == 336605
    average = decode("doc_sessions_average")
    assert average.series[0] == (1204.0238276716443, 1197.4160169086904)
    assert average.series_meta == (SegmentMeta(segment_index=0),)
    peruser = decode("doc_sessions_peruser")
    assert peruser.series[0][1] == pytest.approx(3.6232302614435854)


def test_doc_composition() -> None:
    r = decode("doc_composition")
    assert r.series_labels == ("version",)
    assert dict(zip(r.x_values, r.series[0], strict=True))["(none)"] == 47419


def test_doc_events_list() -> None:
    r = decode("doc_events_list")
    assert r.events == (
        EventInfo("Add Content to Cart", "Add Content to Cart", 1505645),
        EventInfo("Add Friends", "Add Friends", 193167),
    )


def test_doc_segmentation() -> None:
    r = decode("doc_segmentation")
    assert r.series_labels == ("United States", "Germany")
    assert r.series_collapsed == ((CollapsedValue(273333),), (CollapsedValue(190351),))


def test_doc_funnels() -> None:
    r = decode("doc_funnels")
    (group,) = r.groups
    assert group.meta == SegmentMeta(segment_index=0)
    assert group.events[2] == "Play Song or Video"
    assert group.cumulative_raw == (163054, 161670, 157485)
    assert group.step_by_step[1] == pytest.approx(0.9915120144246691)
    assert group.median_trans_times == (0, 166444, 270194)
    assert group.avg_trans_times == (0, 2175406, 5607243)
    assert group.day_funnels == DaySeries(
        series=((125259, 123716, 118636), (126964, 125373, 119986)),
        x_values=("2017-08-14", "2017-08-15"),
        formatted_x_values=("Aug 14", "Aug 15"),
    )
    assert group.day_median_trans_times is not None
    assert group.day_median_trans_times.series[1][2] == 269444
    assert group.day_avg_trans_times is not None
    assert group.day_avg_trans_times.formatted_x_values == ("Aug 14", "Aug 15")


def test_doc_retention() -> None:
    r = decode("doc_retention")
    (series,) = r.series
    assert series.dates == ("Aug 15", "Aug 14")
    assert series.values["Aug 14"][0] == RetentionCell(12864, 12864, False)
    assert series.values["Aug 15"][-1] == RetentionCell(1773, 14720, True)
    assert series.combined[1] == RetentionCell(19310, 27584, False, None)
    assert r.series_meta == (SegmentMeta(segment_index=0, event_index=0),)


def test_doc_useractivity() -> None:
    r = decode("doc_useractivity")
    u = r.user_data
    assert u.user_id == "myusername"
    assert u.canonical_amplitude_id == 12345
    assert u.merged_amplitude_ids == (11111, 22222)
    assert u.first_used == date(2015, 3, 14)
    assert u.last_used == date(2015, 4, 22)
    assert (u.purchases, u.revenue) == (2, 9.98)
    assert u.dma == "San Francisco-Oakland-San Jose, CA"
    assert u.device_ids == ("some-device", "some-other-device")
    assert u.last_location == Location(37.133, -122.241)
    assert u.properties == {"gender": "female"}
    assert u.extra == {}
    first = r.events[0]
    assert first.event_type == "Play Song"
    assert first.event_time == datetime(2015, 4, 22, 10, 3, 12, 512000)
    assert first.session_id == 1429696800000
    assert first.event_properties == {"genre": "jazz"}


def test_doc_usersearch() -> None:
    assert decode("doc_usersearch") == UserSearchResult(
        "match_user_or_device_id", (UserMatch(12345, "myusername"),)
    )
    assert decode("doc_usersearch_nomatch") == UserSearchResult("nomatch", ())


def test_doc_realtime() -> None:
    r = decode("doc_realtime")
    assert r.series_labels == ("Today", "Yesterday")
    assert r.x_dates()[1] == time(15, 5)


def test_doc_ltv() -> None:
    r = decode("doc_ltv")
    assert r.series_labels == ("",)
    (series,) = r.series
    cell = series.values["2021-10-01"]
    assert cell == LTVCell(
        values={"r1d": 9.99, "r2d": 19.98, "r90d": 742.52}, count=110, paid=37, total_amount=781.39
    )
    assert series.dates[0] == "2021-10-04"
    assert series.values["2021-10-04"].values["r30d"] == pytest.approx(99.8)


# --- real-world quirks -------------------------------------------------------------------------


def test_metadata_beside_data_is_kept_and_the_rest_ignored() -> None:
    r = decode("real_users_groupby")
    assert r.metadata == ResponseMetadata(
        time_computed=1789466523471,
        was_cached=False,
        cache_freshness="FRESH",
        nova_cost=50,
        nova_runtime=312,
        throttle_time=0,
        nova_request_duration=401,
        millis_since_computed=0,
    )
    assert r.series_meta == ("United States", "Canada")
    assert r.series_collapsed[1] == (CollapsedValue(85471, set_id=""),)


def test_empty_segmentation_keeps_x_values() -> None:
    r = decode("real_segmentation_empty")
    assert r.series == r.series_labels == r.series_collapsed == ()
    assert len(r.x_values) == 3
    assert r.rows() == ()


def test_numbers_as_strings_and_list_labels() -> None:
    r = decode("real_segmentation_hourly")
    assert r.series == ((12, 7.5, 3), (0, 1, 2))
    assert isinstance(r.series[0][0], int)
    assert r.series_labels == ((0, "iOS"), (0, "Android"))
    assert r.series_collapsed[0] == (CollapsedValue(22, ""),)
    assert r.series_meta[1] == SegmentMeta(segment_index=0, event_index=0)
    assert r.x_dates()[2] == datetime(2026, 9, 15, 12)


def test_retention_with_full_dates() -> None:
    (series,) = decode("real_retention").series
    assert series.dates == ("Sep 15, 2026", "Sep 14, 2026")
    assert series.values["Sep 14, 2026"][1] == RetentionCell(31, 120, True)
    assert series.combined[0].count == 218


def test_ltv_without_year_strings_and_period_keys() -> None:
    (series,) = decode("real_ltv").series
    assert series.dates == ("Sep 24", "Sep 23")
    assert series.values["Sep 24"] == LTVCell(
        values={"r1d": 1.25, "r2d": 2.5, "r1new": 0.75}, count=40, paid=3, total_amount=50.0
    )
    assert series.values["Sep 23"].values == {"r1d": 0, "r2d": None}


def test_useractivity_strings_sentinel_and_extras() -> None:
    r = decode("real_useractivity")
    u = r.user_data
    assert u.purchases == 2
    assert isinstance(u.purchases, int)
    assert u.revenue == 9.98
    assert u.last_location is None
    assert u.carrier is None
    assert u.extra == {
        "cohort_ids": ["c1"],
        "library": "amplitude-android/1.0",
        "gp:beta": True,
        "aliases": [],
    }
    (event,) = r.events
    assert event.event_time == datetime(2026, 9, 15, 8, 1, 2, 123000)
    assert event.extra["$insert_id"] == "ins-18"
    assert event.extra["data"] == {"path": "/2/httpapi"}
    assert "event_type" not in event.extra
    # Extras go back out unchanged.
    assert unstructure_result(r)["events"][0]["$insert_id"] == "ins-18"


def test_location_sentinel_as_a_number_is_unknown_too() -> None:
    body = load("doc_useractivity")
    body["userData"]["last_location"] = 1.7976931348623157e308
    assert structure_result(body, UserActivityResult).user_data.last_location is None


def test_usersearch_prefix_ignores_extra_match_fields() -> None:
    r = decode("real_usersearch_prefix")
    assert r.type == "match_user_prefix"
    assert r.matches == (UserMatch(1, "alice"), UserMatch(2, "alicia"))


def test_chart_csv_is_parsed() -> None:
    r = decode("real_chart_csv")
    assert r.text.startswith('"\tEvent Segmentation')
    assert r.table == (
        ("Event Segmentation: Uniques",),
        ("",),
        ("Segment", "2026-09-14", "2026-09-15"),
        ('All Users, "new"', "1,204", "987"),
    )
    assert r.metadata.nova_cost == 50
    assert unstructure_result(r)["data"] == load("real_chart_csv")["data"]


def test_chart_query_is_series_shaped() -> None:
    r = decode("real_chart_query")
    assert r.metadata.was_cached is True
    assert r.rows() == (Row("A", date(2026, 9, 14), 5), Row("A", date(2026, 9, 15), 7))


def _add_unknown_keys(node: Any, *, mapping_of_values: bool = False) -> Any:
    """Add an unknown key to every JSON object except those keyed by data (dates, names)."""
    if isinstance(node, list):
        return [_add_unknown_keys(item) for item in node]
    if isinstance(node, dict):
        out = {
            key: _add_unknown_keys(
                value,
                mapping_of_values=key in ("values", "properties") or key.endswith("_properties"),
            )
            for key, value in node.items()
        }
        if not mapping_of_values:
            out["zzSurprise"] = {"nested": [1, "two", None]}
        return out
    return node


@pytest.mark.parametrize("name", sorted(n for n in SAMPLE_TYPES if "useractivity" not in n))
def test_unknown_keys_are_ignored(name: str) -> None:
    noisy = _add_unknown_keys(load(name))
    assert structure_result(noisy, SAMPLE_TYPES[name]) == decode(name)


def test_unknown_user_keys_are_kept_not_fatal() -> None:
    noisy = _add_unknown_keys(load("doc_useractivity"))
    r = structure_result(noisy, UserActivityResult)
    assert r.user_data.extra == {"zzSurprise": {"nested": [1, "two", None]}}
    assert r.events[0].extra == {"zzSurprise": {"nested": [1, "two", None]}}
    assert r.user_data.user_id == "myusername"


# --- garbage -----------------------------------------------------------------------------------


def _set(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    body = copy.deepcopy(body)
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


def _drop(body: Any, path: tuple[Any, ...]) -> Any:
    body = copy.deepcopy(body)
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


GARBAGE = [
    ("doc_users", ("data", "series", 0, 1), "lots", "data.series[0][1]"),
    ("doc_users", ("data", "xValues"), 5, "data.xValues"),
    ("doc_users", ("data", "xValues", 0), 20170814, "data.xValues[0]"),
    ("doc_users", ("data", "xValues"), "2017-08-14", "data.xValues"),
    ("doc_funnels", ("data",), {"series": []}, "data"),
    ("doc_users", ("data", "seriesMeta", 1), ["Canada"], "data.seriesMeta[1]"),
    ("doc_users", ("data",), [1, 2], "data"),
    ("doc_users", ("wasCached",), "maybe", "wasCached"),
    (
        "doc_segmentation",
        ("data", "seriesCollapsed", 1, 0, "value"),
        None,
        "data.seriesCollapsed[1][0].value",
    ),
    ("doc_segmentation", ("data", "seriesLabels", 0), 1.5, "data.seriesLabels[0]"),
    ("doc_events_list", ("data", 1, "hidden"), "perhaps", "data[1].hidden"),
    ("doc_events_list", ("data", 0, "totals"), True, "data[0].totals"),
    ("doc_funnels", ("data", 0, "cumulativeRaw", 2), {"n": 1}, "data[0].cumulativeRaw[2]"),
    ("doc_funnels", ("data", 0, "dayFunnels", "series", 1), 7, "data[0].dayFunnels.series[1]"),
    (
        "doc_retention",
        ("data", "series", 0, "values", "Aug 14", 1, "count"),
        "many",
        "data.series[0].values['Aug 14'][1].count",
    ),
    (
        "doc_retention",
        ("data", "series", 0, "combined", 0, "retainedSetId"),
        [],
        "data.series[0].combined[0].retainedSetId",
    ),
    ("doc_useractivity", ("userData", "num_events"), [], "userData.num_events"),
    ("doc_useractivity", ("userData", "first_used"), "yesterday", "userData.first_used"),
    ("doc_useractivity", ("userData", "last_location"), "somewhere", "userData.last_location"),
    ("doc_useractivity", ("events", 1, "event_time"), 12, "events[1].event_time"),
    ("doc_usersearch", ("matches", 0, "amplitude_id"), None, "matches[0].amplitude_id"),
    (
        "doc_ltv",
        ("data", "series", 0, "values", "2021-10-01", "r1d"),
        "lots",
        "data.series[0].values['2021-10-01']['r1d']",
    ),
    (
        "doc_ltv",
        ("data", "series", 0, "values", "2021-10-01", "paid"),
        "some",
        "data.series[0].values['2021-10-01'].paid",
    ),
    ("real_chart_csv", ("data",), 5, "data"),
]


@pytest.mark.parametrize(("name", "where", "value", "field"), GARBAGE)
def test_wrong_types_name_the_field(
    name: str, where: tuple[Any, ...], value: Any, field: str
) -> None:
    body = _set(load(name), where, value)
    with pytest.raises(ResponseValidationError) as info:
        structure_result(body, SAMPLE_TYPES[name], path="/api/2/x")
    assert info.value.field == field
    assert info.value.path == "/api/2/x"
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("name", "where", "field"),
    [
        ("doc_users", ("data",), "data"),
        ("doc_users", ("data", "xValues"), "data.xValues"),
        ("doc_funnels", ("data", 0, "events"), "data[0].events"),
        (
            "doc_retention",
            ("data", "series", 0, "values", "Aug 15", 0, "outof"),
            "data.series[0].values['Aug 15'][0].outof",
        ),
        ("doc_usersearch", ("type",), "type"),
        ("doc_useractivity", ("userData",), "userData"),
    ],
)
def test_missing_required_keys_name_the_field(
    name: str, where: tuple[Any, ...], field: str
) -> None:
    with pytest.raises(ResponseValidationError, match="required field missing") as info:
        structure_result(_drop(load(name), where), SAMPLE_TYPES[name])
    assert info.value.field == field


@pytest.mark.parametrize("body", [None, [], "text", 3])
def test_non_object_bodies_are_rejected(body: Any) -> None:
    for cls in (ActiveUsersResult, FunnelResult, UserActivityResult, ChartCSVResult):
        with pytest.raises(ResponseValidationError):
            structure_result(body, cls)


def test_several_problems_are_all_reported() -> None:
    body = _set(load("doc_users"), ("data", "series", 1, 0), "x")
    body = _set(body, ("data", "xValues", 1), None)
    with pytest.raises(ResponseValidationError) as info:
        structure_result(body, ActiveUsersResult)
    assert "data.series[1][0]" in info.value.message
    assert "data.xValues[1]" in info.value.message


def test_booleans_are_not_coerced_from_arbitrary_strings() -> None:
    assert decode("doc_events_list").events[0].hidden is False
    body = _set(load("doc_events_list"), ("data", 0, "hidden"), "true")
    assert structure_result(body, EventsListResult).events[0].hidden is True


# --- tabular views -----------------------------------------------------------------------------


def test_rows_use_series_meta_when_labels_are_absent() -> None:
    rows = decode("doc_users").rows()
    assert rows == (
        Row("United States", date(2017, 8, 14), 46109),
        Row("United States", date(2017, 8, 15), 47542),
        Row("Canada", date(2017, 8, 14), 42845),
        Row("Canada", date(2017, 8, 15), 42626),
    )


def test_rows_name_series_by_label_then_by_the_endpoint() -> None:
    realtime = decode("doc_realtime").rows()
    assert len(realtime) == 8
    assert realtime[4] == Row("Yesterday", time(15, 0), 139)
    # Object-shaped meta carries no name: the endpoint names its one series.
    assert {r.label for r in decode("doc_sessions_average").rows()} == {"Average Session Length"}
    assert {r.label for r in decode("doc_sessions_length").rows()} == {"Sessions"}
    assert decode("real_segmentation_hourly").rows()[3] == Row(
        "Android", datetime(2026, 9, 15, 10), 0
    )


def test_rows_keep_points_beyond_x_values() -> None:
    r = ActiveUsersResult(x_values=("a",), series=((1, 2),))
    assert r.rows() == (Row("Users", "a", 1), Row("Users", "1", 2))


def test_funnel_rows_name_steps_and_groups() -> None:
    rows = decode("doc_funnels").rows()
    assert rows == (
        Row("All Users", "step 1: Search Song or Video", 163054),
        Row("All Users", "step 2: Select Song or Video", 161670),
        Row("All Users", "step 3: Play Song or Video", 157485),
    )


def test_retention_rows_follow_dates_order() -> None:
    rows = decode("doc_retention").rows()
    assert rows[0] == Row("All Users", "Aug 15", 14720, "day 0")
    assert rows[4] == Row("All Users", "Aug 14", 12864, "day 0")
    assert len(rows) == 8
    two = RetentionResult(series=decode("doc_retention").series * 2)
    assert two.rows()[0].label == "Segment 1"
    assert two.rows()[-1].label == "Segment 2"
    assert decode("real_retention").rows()[0] == Row("All Users", date(2026, 9, 15), 98, "day 0")


def test_every_result_has_rows() -> None:
    assert decode("doc_events_list").rows()[1] == Row("Add Friends", "", 193167, "totals")
    assert decode("doc_usersearch").rows() == (
        Row("myusername", "match_user_or_device_id", 12345, "amplitude_id"),
    )
    activity = decode("doc_useractivity")
    rows = activity.rows()
    assert len(rows) == len(activity.events)
    assert rows[0] == Row(activity.events[0].event_type, activity.events[0].event_time, 1, "events")
    assert decode("doc_composition").rows()[0] == Row("version", "1.0", 69643)


def test_ltv_rows_take_the_year_from_the_query() -> None:
    result = decode("real_ltv")
    query = RevenueLTV(date(2026, 9, 20), date(2026, 9, 30))
    rows = result.rows(query)
    # Oldest cohort first, period figures then the fixed ones.
    assert rows[0] == Row("All Users", date(2026, 9, 23), 0, "r1d")
    assert [r.metric for r in rows if r.x_value == date(2026, 9, 24)] == [
        "r1d",
        "r2d",
        "r1new",
        "count",
        "paid",
        "total_amount",
    ]
    # Without the query the year is unknown: the cohort stays as sent.
    assert {r.x_value for r in result.rows()} == {"Sep 23", "Sep 24"}


def test_retention_rows_name_brackets_and_weeks() -> None:
    result = decode("doc_retention")
    brackets = Retention(
        Event("A"),
        Event("B"),
        date(2017, 8, 14),
        date(2017, 8, 15),
        mode="bracket",
        brackets=[(1, 2), (2, 4)],
    )
    assert [r.metric for r in result.rows(brackets)][:4] == [
        "day 0",
        "bracket 1-2",
        "bracket 2-4",
        "day 3",
    ]
    weekly = Retention(Event("A"), Event("B"), date(2017, 8, 14), date(2017, 8, 15), interval=7)
    assert result.rows(weekly)[1].metric == "week 1"


def test_grouped_active_users_of_several_segments_name_both() -> None:
    r = ActiveUsersResult(
        x_values=("2026-09-01",),
        series=((1,), (2,)),
        series_labels=((0, "iOS"), (1, "iOS")),
    )
    query = ActiveUsers(
        date(2026, 9, 1),
        date(2026, 9, 1),
        segments=[Segment(), Segment(Where("country", "is", ["Germany"]))],
        group_by="platform",
    )
    assert [row.label for row in r.rows(query)] == ["All Users; iOS", "country is Germany; iOS"]


def test_to_pandas_without_pandas_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # makes "import pandas" fail
    with pytest.raises(ImportError, match=r"amplitude-async\[pandas\]"):
        decode("doc_users").to_pandas()


def test_parse_x_value() -> None:
    assert parse_x_value("2017-08-14") == date(2017, 8, 14)
    assert parse_x_value("2017-08-14T13:00:00") == datetime(2017, 8, 14, 13)
    assert parse_x_value("15:05") == time(15, 5)
    assert parse_x_value("0s-60s") is None
    assert parse_x_value("2017-02-30") is None
    assert parse_x_value("Aug 14") is None


# --- encoding ----------------------------------------------------------------------------------


def _covers(encoded: Any, original: Any) -> bool:
    """Whether ``encoded`` holds everything in ``original`` (a null may be left out)."""
    if isinstance(original, dict):
        return isinstance(encoded, dict) and all(
            (value is None and key not in encoded)
            or (key in encoded and _covers(encoded[key], value))
            for key, value in original.items()
        )
    if isinstance(original, list):
        return (
            isinstance(encoded, list)
            and len(encoded) == len(original)
            and all(_covers(e, o) for e, o in zip(encoded, original, strict=True))
        )
    return bool(encoded == original)


@pytest.mark.parametrize("name", sorted(n for n in SAMPLE_TYPES if n.startswith("doc_")))
def test_encoding_reproduces_the_doc_examples(name: str) -> None:
    encoded = unstructure_result(decode(name))
    assert _covers(encoded, load(name)), encoded


@pytest.mark.parametrize("name", sorted(SAMPLE_TYPES))
def test_every_sample_survives_a_json_round_trip(name: str) -> None:
    result = decode(name)
    again = json.loads(json.dumps(unstructure_result(result)))
    assert structure_result(again, SAMPLE_TYPES[name]) == result


def test_converter_is_the_shared_instance() -> None:
    r = decode("doc_users")
    assert converter.unstructure(r) == unstructure_result(r)
    assert converter.structure(load("doc_users"), ActiveUsersResult) == r


texts = st.text(max_size=6)
numbers = st.integers(-(10**12), 10**12) | st.floats(allow_nan=False, allow_infinity=False)
maybe_int = st.none() | st.integers(0, 10**9)
json_scalars = st.none() | st.booleans() | st.integers(-1000, 1000) | texts
labels = texts | st.integers(0, 9) | st.tuples(st.integers(0, 9), texts)
metas = texts | st.builds(SegmentMeta, maybe_int, maybe_int)
metadata = st.builds(
    ResponseMetadata,
    maybe_int,
    st.none() | st.booleans(),
    st.none() | texts,
    st.none() | numbers,
    st.none() | numbers,
    st.none() | numbers,
)
row_of_numbers = st.lists(numbers, max_size=4).map(tuple)
series_results = st.sampled_from(
    [ActiveUsersResult, EventSegmentationResult, RealtimeActiveUsersResult, ChartQueryResult]
).flatmap(
    lambda cls: st.builds(
        cls,
        x_values=st.lists(texts, max_size=4).map(tuple),
        series=st.lists(row_of_numbers, max_size=3).map(tuple),
        series_labels=st.lists(labels, max_size=3).map(tuple),
        series_meta=st.lists(metas, max_size=3).map(tuple),
        series_collapsed=st.lists(
            st.lists(st.builds(CollapsedValue, numbers, st.none() | texts), max_size=2).map(tuple),
            max_size=2,
        ).map(tuple),
        metadata=metadata,
    )
)
day_series = st.builds(
    DaySeries,
    st.lists(row_of_numbers, max_size=2).map(tuple),
    st.lists(texts, max_size=2).map(tuple),
    st.lists(texts, max_size=2).map(tuple),
)
funnels = st.builds(
    FunnelResult,
    st.lists(
        st.builds(
            FunnelGroup,
            events=st.lists(texts, max_size=3).map(tuple),
            cumulative_raw=row_of_numbers,
            cumulative=row_of_numbers,
            meta=st.none() | st.builds(SegmentMeta, maybe_int, maybe_int),
            day_funnels=st.none() | day_series,
        ),
        max_size=2,
    ).map(tuple),
    metadata,
)
cells = st.builds(
    RetentionCell, st.integers(0, 10**6), st.integers(0, 10**6), st.booleans(), st.none() | texts
)
retentions = st.builds(
    RetentionResult,
    st.lists(
        st.builds(
            RetentionSeries,
            st.lists(texts, max_size=3).map(tuple),
            st.dictionaries(texts, st.lists(cells, max_size=3).map(tuple), max_size=3),
            st.lists(cells, max_size=3).map(tuple),
        ),
        max_size=2,
    ).map(tuple),
    st.lists(metas, max_size=2).map(tuple),
    metadata,
)
ltvs = st.builds(
    RevenueLTVResult,
    st.lists(
        st.builds(
            LTVSeries,
            st.lists(texts, max_size=3).map(tuple),
            st.dictionaries(
                texts,
                st.builds(
                    LTVCell,
                    st.dictionaries(
                        st.from_regex(r"r[0-9]{1,3}(d|new)", fullmatch=True),
                        st.none() | numbers,
                        max_size=4,
                    ),
                    maybe_int,
                    maybe_int,
                    st.none() | numbers,
                ),
                max_size=3,
            ),
        ),
        max_size=2,
    ).map(tuple),
    st.lists(labels, max_size=2).map(tuple),
    metadata,
)
extras = st.dictionaries(texts.map(lambda k: f"x-{k}"), json_scalars, max_size=3)
user_activity = st.builds(
    UserActivityResult,
    st.builds(
        UserData,
        user_id=st.none() | texts,
        canonical_amplitude_id=maybe_int,
        purchases=maybe_int,
        revenue=st.none() | numbers,
        first_used=st.none() | st.dates(),
        last_location=st.none() | st.builds(Location, numbers, numbers),
        device_ids=st.lists(texts, max_size=2).map(tuple),
        properties=st.dictionaries(texts, json_scalars, max_size=3),
        extra=extras,
    ),
    st.lists(
        st.builds(
            UserEvent,
            event_type=texts,
            event_time=st.none() | st.datetimes(),
            session_id=maybe_int,
            event_properties=st.dictionaries(texts, json_scalars, max_size=2),
            extra=extras,
        ),
        max_size=2,
    ).map(tuple),
)
others = st.one_of(
    st.builds(EventsListResult, st.lists(st.builds(EventInfo, texts), max_size=2).map(tuple)),
    st.builds(
        UserSearchResult,
        texts,
        st.lists(st.builds(UserMatch, st.integers(0, 10**12)), max_size=2).map(tuple),
    ),
    st.builds(ChartCSVResult, st.text(max_size=40), metadata),
)


@settings(max_examples=60, deadline=None)
@given(st.one_of(series_results, funnels, retentions, ltvs, user_activity, others))
def test_round_trip(result: Any) -> None:
    wire = json.loads(json.dumps(unstructure_result(result)))
    assert structure_result(wire, type(result)) == result


@settings(max_examples=30, deadline=None)
@given(series_results)
def test_series_rows_cover_every_point(result: Any) -> None:
    rows = result.rows()
    assert len(rows) == sum(len(s) for s in result.series)
    assert [r.value for r in rows] == [v for s in result.series for v in s]


def test_wire_keys_are_camel_case() -> None:
    encoded = unstructure_result(decode("real_segmentation_hourly"))
    assert set(encoded["data"]) == {
        "xValues",
        "series",
        "seriesLabels",
        "seriesMeta",
        "seriesCollapsed",
    }
    assert encoded["data"]["seriesLabels"][0] == [0, "iOS"]
    assert encoded["data"]["seriesMeta"][0] == {"segmentIndex": 0, "eventIndex": 0}
    assert encoded["timeComputed"] == 1789466523471
    assert encoded["data"]["seriesCollapsed"][0][0] == {"value": 22, "setId": ""}


def test_chart_csv_accepts_any_line_ending() -> None:
    text = '"\tDate","\tUsers"\r"\t2026-09-01","\t5"\r\n"\t2026-09-02","\t7"\n"a\rb",c'
    table = ChartCSVResult(text).table
    assert table == (("Date", "Users"), ("2026-09-01", "5"), ("2026-09-02", "7"), ("a\rb", "c"))
