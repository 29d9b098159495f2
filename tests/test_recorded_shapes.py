"""Answers in the shapes recorded from the live API, decoded and read as rows.

The fixtures in ``tests/samples/recorded`` are written from the reference's section "Recorded
response shapes" (``../shared/reference/dashboard-api.md``); each test reads one of them, with
and without the query that would have produced it. The emulator's answers take the same path
through a real client at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from amplitude_async import (
    ActiveUsers,
    AmplitudeClient,
    AverageSessionLength,
    BadRequest,
    ChartCSV,
    ChartQuery,
    EventSegmentation,
    Funnel,
    Retention,
    RevenueLTV,
    SessionsPerUser,
    UserActivity,
)
from amplitude_async.converter import structure_result, unstructure_result
from amplitude_async.errors import APIError, RateLimited, ServerError
from amplitude_async.limits import DEFAULT_LIMITS
from amplitude_async.results import (
    AverageSessionLengthResult,
    ChartCSVResult,
    EventSegmentationResult,
    FunnelResult,
    RetentionResult,
    Row,
    SessionsPerUserResult,
    UserActivityResult,
)
from amplitude_async.sansio import basic_auth, decipher
from amplitude_async.testing.dataset import SyntheticDataset
from amplitude_async.testing.emulator import Emulator
from amplitude_async.values import Event, Segment, Where

RECORDED = Path(__file__).parent / "samples" / "recorded"
JUNE = (date(2026, 6, 1), date(2026, 6, 3))


def load(name: str) -> Any:
    return json.loads((RECORDED / f"{name}.json").read_text())


def labels(rows: tuple[Row, ...]) -> list[str]:
    """Distinct labels in order of appearance."""
    return list(dict.fromkeys(r.label for r in rows))


# --- segmentation labels -----------------------------------------------------------------------


def test_ungrouped_series_is_named_after_its_event() -> None:
    body = load("segmentation_ungrouped")
    result = structure_result(body, EventSegmentationResult)
    assert result.series_labels == (0,)
    assert result.metadata.nova_cost == 0
    assert result.metadata.was_cached is True
    assert result.metadata.cache_freshness == "FRESH"
    assert result.metadata.millis_since_computed == 120344
    assert result.metadata.nova_request_duration == 57
    query = EventSegmentation(["Test Event"], *JUNE)
    assert result.rows(query) == (
        Row("Test Event", date(2026, 6, 1), 4),
        Row("Test Event", date(2026, 6, 2), 0),
        Row("Test Event", date(2026, 6, 3), 7),
    )
    # Without the query the event is named as charts name it: by its letter.
    assert labels(result.rows()) == ["A"]


def test_grouped_pairs_are_named_by_their_value() -> None:
    result = structure_result(load("segmentation_grouped_pairs"), EventSegmentationResult)
    assert result.series_labels == ((0, "United States"), (0, "Germany"))
    query = EventSegmentation(["Play Song"], *JUNE, group_by=["country"])
    assert labels(result.rows(query)) == ["United States", "Germany"]
    assert labels(result.rows()) == ["United States", "Germany"]
    assert result.series_collapsed[1][0].value == 130


def test_two_events_grouped_name_event_and_value() -> None:
    result = structure_result(load("segmentation_two_events_grouped"), EventSegmentationResult)
    query = EventSegmentation(["Play Song", "Sign Up"], *JUNE, group_by=["country"])
    assert labels(result.rows(query)) == [
        "Play Song; United States",
        "Play Song; Germany",
        "Sign Up; United States",
        "Sign Up; Germany",
    ]
    # The index alone still tells the events apart.
    assert labels(result.rows())[2] == "B; United States"


def test_string_labels_are_group_values() -> None:
    result = structure_result(load("segmentation_string_labels"), EventSegmentationResult)
    assert labels(result.rows()) == ["United States", "Germany"]


def test_several_segments_are_named() -> None:
    result = structure_result(load("segmentation_two_segments"), EventSegmentationResult)
    segments = [Segment(), Segment(Where("country", "is", ["Germany"]))]
    query = EventSegmentation(["Play Song"], date(2026, 6, 1), date(2026, 6, 2), segments=segments)
    assert labels(result.rows(query)) == [
        "All Users; Play Song",
        "country is Germany; Play Song",
    ]
    assert labels(result.rows()) == ["Segment 1; A", "Segment 2; A"]


def test_no_label_is_a_bare_index() -> None:
    for name in (
        "segmentation_ungrouped",
        "segmentation_grouped_pairs",
        "segmentation_two_events_grouped",
        "segmentation_two_segments",
    ):
        result = structure_result(load(name), EventSegmentationResult)
        assert not any(r.label.isdigit() for r in result.rows()), name


# --- time suffixes, unknown users --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls", "label"),
    [
        ("sessions_average", AverageSessionLengthResult, "Average Session Length"),
        ("sessions_peruser", SessionsPerUserResult, "Sessions per User"),
    ],
)
def test_midnight_x_values_are_days(
    name: str, cls: type[AverageSessionLengthResult | SessionsPerUserResult], label: str
) -> None:
    result = structure_result(load(name), cls)
    assert result.x_values[0] == "2024-01-01T00:00:00"  # kept as sent
    rows = result.rows()
    assert [r.x_value for r in rows] == [date(2024, 1, 1), date(2024, 1, 2)]
    assert {r.label for r in rows} == {label}
    assert all(isinstance(r.value, int | float) for r in rows)


def test_hourly_x_values_stay_timestamps() -> None:
    body = load("segmentation_ungrouped")
    body["data"]["xValues"] = ["2026-06-01T00:00:00", "2026-06-01T01:00:00", "2026-06-01T02:00:00"]
    result = structure_result(body, EventSegmentationResult)
    assert [r.x_value for r in result.rows()] == [datetime(2026, 6, 1, h) for h in range(3)]


def test_unknown_user_decodes_to_an_empty_page() -> None:
    result = structure_result(load("useractivity_unknown_user"), UserActivityResult)
    assert result.events == ()
    assert result.rows() == ()
    data = result.user_data
    assert data.user_id is None
    assert data.num_events == 0
    assert data.merged_amplitude_ids == ()
    assert data.device_ids == ()
    assert data.properties == {}
    assert data.first_used is None
    assert data.extra == {"cohort_ids": None}


# --- saved charts ------------------------------------------------------------------------------


def test_recorded_daily_chart_csv() -> None:
    body = load("chart_csv_daily")
    result = structure_result(body, ChartCSVResult)
    assert result.text == body["data"]
    assert result.title == "Sample Metric - Test Event Users"
    assert result.description == "Sample chart using a test event"
    assert result.metric == "Uniques"
    assert result.blocks[1] == ("Uniques", "Test Event")
    assert result.header[0] == "Segment"
    assert result.header[1:3] == ("2026-06-01", "2026-06-02")
    rows = result.rows()
    assert len(rows) == 30
    assert rows[0] == Row("All Users", date(2026, 6, 1), 0)
    assert rows[2] == Row("All Users", date(2026, 6, 3), 3)
    assert rows[29] == Row("All Users", date(2026, 6, 30), 2)
    assert unstructure_result(result)["data"] == body["data"]


def test_comparison_chart_keeps_previous_rows_apart() -> None:
    result = structure_result(load("chart_csv_comparison"), ChartCSVResult)
    assert result.title == "Weekly Purchases"
    assert result.description is None
    assert result.metric == "Event Totals"
    assert result.rows() == (
        Row("All Users", date(2024, 1, 1), 1204),
        Row("All Users", date(2024, 1, 8), 987),
        Row("All Users", date(2024, 1, 1), 1100, "previous"),
        Row("All Users", date(2024, 1, 8), None, "previous"),
    )


def test_chart_json_series_read_as_the_same_rows() -> None:
    body = load("chart_csv_json_series")
    result = structure_result(body, ChartCSVResult)
    assert result.series is not None
    assert json.loads(result.text) == body["data"]
    assert result.title is None
    assert result.rows() == (
        Row("iOS", date(2026, 6, 1), 5),
        Row("iOS", date(2026, 6, 2), 7),
        Row("Android", date(2026, 6, 1), 2),
        Row("Android", date(2026, 6, 2), 1),
    )
    again = unstructure_result(result)
    assert structure_result(json.loads(json.dumps(again)), ChartCSVResult) == result


# --- retention and funnels ---------------------------------------------------------------------


def test_recorded_retention_names_cohorts() -> None:
    result = structure_result(load("retention"), RetentionResult)
    query = Retention(Event("Sign Up"), Event("Purchase"), *JUNE)
    assert result.rows(query) == (
        Row("All Users", date(2026, 6, 2), 40, "day 0"),
        Row("All Users", date(2026, 6, 2), 9, "day 1"),
        Row("All Users", date(2026, 6, 1), 50, "day 0"),
        Row("All Users", date(2026, 6, 1), 12, "day 1"),
    )


def test_recorded_funnel_names_steps() -> None:
    result = structure_result(load("funnels"), FunnelResult)
    assert result.groups[0].day_funnels is not None
    assert result.groups[0].day_funnels.formatted_x_values == ("Jun 1", "Jun 2")
    assert result.rows() == (
        Row("All Users", "step 1: Sign Up", 80),
        Row("All Users", "step 2: Purchase", 20),
    )


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "details"),
    [("error_400", "Invalid user property country"), ("error_400_user", "Argument user must")],
)
def test_recorded_400_details_reach_the_message(name: str, details: str) -> None:
    body = json.dumps(load(name)).encode()
    with pytest.raises(BadRequest) as caught:
        decipher(400, {}, body, path="/api/2/events/segmentation")
    assert caught.value.message == "Invalid chart definition"
    assert details in str(caught.value)
    assert caught.value.error_type == "invalid"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        # the error as a plain string, details in metadata beside it
        (500, {"error": "Oops", "metadata": {"details": "shard 3 down"}}, "shard 3 down"),
        # no error key at all
        (503, {"message": "Busy", "metadata": {"details": "retry later"}}, "retry later"),
        # details that are not a string
        (400, {"error": {"message": "Bad", "metadata": {"details": ["a", "b"]}}}, '["a","b"]'),
        # only details
        (
            429,
            {"error": {"metadata": {"details": "Exceeded rate limit with query of cost 9"}}},
            "9",
        ),
    ],
)
def test_details_always_reach_the_message(status: int, body: Any, expected: str) -> None:
    with pytest.raises(APIError) as caught:
        decipher(status, {}, json.dumps(body).encode(), path="/p")
    assert expected in str(caught.value)
    assert isinstance(caught.value, ServerError | BadRequest | RateLimited)


# --- pandas ------------------------------------------------------------------------------------


def test_importing_the_library_does_not_import_pandas() -> None:
    code = (
        "import sys, amplitude_async, amplitude_async.testing, amplitude_async.cli\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_to_pandas_is_built_from_rows() -> None:
    pandas = pytest.importorskip("pandas")
    result = structure_result(load("segmentation_grouped_pairs"), EventSegmentationResult)
    query = EventSegmentation(["Play Song"], *JUNE, group_by=["country"])
    frame = result.to_pandas(query)
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame.columns) == ["label", "x", "value", "metric"]
    assert len(frame) == len(result.rows(query))
    wide = frame.pivot(index="x", columns="label", values="value")
    assert wide.loc[date(2026, 6, 2), "Germany"] == 38


# --- the emulator, through a real client -------------------------------------------------------

START = date(2026, 9, 1)
END = START + timedelta(days=9)
DATASET = SyntheticDataset(seed=5, users=200, days=10, start=START)


@pytest.fixture
def amplitude_emulator_options() -> dict[str, Any]:
    return {"dataset": DATASET, "limits": DEFAULT_LIMITS}


@pytest.fixture
def emu(amplitude_emulator: Emulator) -> Emulator:
    """The emulator of the project's pytest plugin, with this module's options."""
    return amplitude_emulator


@pytest.fixture
def client(amplitude_client: AmplitudeClient) -> AmplitudeClient:
    """The client of the project's pytest plugin, on that emulator."""
    return amplitude_client


async def test_emulated_segmentation_rows_name_things(client: AmplitudeClient) -> None:
    grouped = EventSegmentation(["Sign Up"], START, END, group_by=["platform"])
    result = await client.run(grouped)
    assert all(isinstance(label, tuple) and label[0] == 0 for label in result.series_labels)
    names = labels(result.rows(grouped))
    assert names
    assert all(", " not in n and not n[0].isdigit() for n in names)
    assert {r.x_value for r in result.rows(grouped)} == {
        START + timedelta(days=k) for k in range(10)
    }
    two = EventSegmentation(["Sign Up", "Purchase"], START, END)
    assert labels((await client.run(two)).rows(two)) == ["Sign Up", "Purchase"]
    users = ActiveUsers(START, END, segments=[Segment(), Segment(Where("platform", "is", ["iOS"]))])
    assert labels((await client.run(users)).rows(users)) == [
        "All Users",
        "platform is iOS",
    ]


async def test_emulated_sessions_and_unknown_user(client: AmplitudeClient) -> None:
    average = AverageSessionLength(START, END)
    per_user = SessionsPerUser(START, END)
    for result, rows in (
        (a := await client.run(average), a.rows(average)),
        (p := await client.run(per_user), p.rows(per_user)),
    ):
        assert result.x_values[0] == f"{START}T00:00:00"
        assert rows[0].x_value == START
    nobody = await client.run(UserActivity(1))
    assert nobody.events == ()
    assert nobody.user_data.num_events == 0


async def test_emulated_chart_csv_reads_like_the_chart_query(client: AmplitudeClient) -> None:
    for chart_id in ("daily-signups", "purchases-by-country", "active-users"):
        csv_result = await client.run(ChartCSV(chart_id))
        assert csv_result.title == f"Chart {chart_id}"
        assert csv_result.header[0] == "Segment"
        assert "\r\n" in csv_result.text
        data = await client.run(ChartQuery(chart_id))
        assert [r.value for r in csv_result.rows()] == [r.value for r in data.rows()]
        assert [r.x_value for r in csv_result.rows()] == [r.x_value for r in data.rows()]


async def test_emulated_funnel_retention_ltv_rows(client: AmplitudeClient) -> None:
    funnel = Funnel(["Sign Up", "Purchase"], START, END, group_by="platform")
    rows = (await client.run(funnel)).rows(funnel)
    assert rows
    assert {r.x_value for r in rows} == {"step 1: Sign Up", "step 2: Purchase"}
    assert not any(r.label.isdigit() for r in rows)
    retention = Retention(Event("Sign Up"), Event("_active"), START, END)
    rows = (await client.run(retention)).rows(retention)
    assert {r.label for r in rows} == {"All Users"}
    assert all(isinstance(r.x_value, date) and START <= r.x_value <= END for r in rows)
    ltv = RevenueLTV(START, END, group_by="platform")
    rows = (await client.run(ltv)).rows(ltv)
    assert rows
    assert all(isinstance(r.x_value, date) for r in rows)
    assert {r.metric for r in rows} >= {"count", "paid", "total_amount"}


async def test_emulated_errors_carry_details(emu: Emulator, client: AmplitudeClient) -> None:
    bad = ActiveUsers(START, END, segments=[Segment(Where("favourite", "is", ["x"]))])
    with pytest.raises(BadRequest, match="favourite"):
        await client.run(bad)
    # A user that is not a number: the client refuses to send it, so send it by hand.
    url = f"{emu.url}/api/2/useractivity?user=abc"
    auth = basic_auth(emu.api_key, emu.secret_key)
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers={"Authorization": auth}) as response,
    ):
        body = await response.read()
        status = response.status
    with pytest.raises(BadRequest) as caught:
        decipher(status, {}, body, path="/api/2/useractivity")
    assert caught.value.message == "Invalid chart definition"
    assert "Argument user must be an int" in str(caught.value)
