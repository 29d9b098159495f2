"""The emulator's answer engine, checked against brute-force computations (tests/oracle.py)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import oracle
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amplitude_async import queries as q
from amplitude_async.testing.dataset import Dataset, EventRecord, SyntheticDataset
from amplitude_async.testing.engine import (
    BadParameter,
    ChartNotFound,
    EngineError,
    Unsupported,
    answer,
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

START = date(2026, 9, 1)
DAYS = 30
END = START + timedelta(days=DAYS - 1)
NOW = datetime(2026, 10, 3, 15, 2, tzinfo=UTC)
BERLIN_START = date(2026, 10, 12)  # the range crosses the end of summer time (Oct 25)


@pytest.fixture(scope="module")
def ds() -> SyntheticDataset:
    return SyntheticDataset(seed=11, users=300, days=DAYS, start=START)


@pytest.fixture(scope="module")
def records(ds: SyntheticDataset) -> list[EventRecord]:
    return list(ds.events)


@pytest.fixture(scope="module")
def berlin() -> SyntheticDataset:
    return SyntheticDataset(seed=5, users=200, days=20, start=BERLIN_START, tz="Europe/Berlin")


def data(query: Any, ds: Dataset, now: datetime = NOW) -> Any:
    return answer(query, ds, now)["data"]


def dates(start: date, end: date) -> list[date]:
    return [start + timedelta(days=k) for k in range((end - start).days + 1)]


# -- active and new users -------------------------------------------------------------------


@pytest.mark.parametrize("interval", [1, 7, 30])
@pytest.mark.parametrize("metric", ["active", "new"])
def test_active_and_new_users(
    ds: SyntheticDataset, records: list[EventRecord], interval: int, metric: str
) -> None:
    start, end = date(2026, 9, 3), date(2026, 9, 24)
    got = data(q.ActiveUsers(start, end, metric=metric, interval=interval), ds)  # type: ignore[arg-type]
    kind = "_active" if metric == "active" else "_new"
    cells = oracle.series(records, UTC, start, end, event_type=kind, interval=interval)[()]
    x_values = oracle.labels(start, end, interval)
    assert got["xValues"] == x_values
    assert got["series"] == [[len(cells.get(x, {"users": ()})["users"]) for x in x_values]]
    every = set().union(*(c["users"] for c in cells.values()))
    assert got["seriesCollapsed"] == [[{"setId": "", "value": len(every)}]]


def test_active_users_grouped_and_segmented(
    ds: SyntheticDataset, records: list[EventRecord]
) -> None:
    segment = Segment(Where("gp:age_group", "is", ["25-34", "35-44"]))
    got = data(q.ActiveUsers(START, END, segments=[segment], group_by="platform"), ds)
    cells = oracle.series(
        records,
        UTC,
        START,
        END,
        event_type="_active",
        where=[("user", "gp:age_group", "is", ["25-34", "35-44"])],
        group=lambda r: (oracle.text(r.platform),),
    )
    assert got["seriesMeta"] == sorted(
        (k[0] for k in cells),
        key=lambda v: (-len(set().union(*(c["users"] for c in cells[(v,)].values()))), v),
    )
    for label, row in zip(got["seriesMeta"], got["series"], strict=True):
        by_day = cells[(label,)]
        assert row == [
            len(by_day.get(d.isoformat(), {"users": ()})["users"]) for d in dates(START, END)
        ]


# -- sessions -------------------------------------------------------------------------------


def test_session_length_default_bins(ds: SyntheticDataset, records: list[EventRecord]) -> None:
    start, end = date(2026, 9, 5), date(2026, 9, 20)
    got = data(q.SessionLengthDistribution(start, end), ds)
    bounds = [0, 3_000, 10_000, 30_000, 60_000, 180_000, 600_000, 1_800_000, 3_600_000, 86_400_000]
    expected = [0] * 9
    for begin, length, _ in oracle.sessions(records):
        if start <= begin.date() <= end:
            for k in range(9):
                if bounds[k] <= length < bounds[k + 1] or (k == 8 and length == bounds[9]):
                    expected[k] += 1
    assert got["series"] == [expected]
    assert got["xValues"][0] == "0s-3s"
    assert got["xValues"][-1] == "1h-24h"
    assert sum(expected) > 0


def test_session_length_custom_bins(ds: SyntheticDataset, records: list[EventRecord]) -> None:
    query = q.SessionLengthDistribution(
        START, END, bin_unit="seconds", bin_min=0, bin_max=600, bin_size=60
    )
    got = data(query, ds)
    assert got["xValues"] == [f"{a}s-{a + 60}s" for a in range(0, 600, 60)]
    expected = [0] * 10
    for begin, length, _ in oracle.sessions(records):
        if START <= begin.date() <= END and length < 600_000:
            expected[length // 60_000] += 1
    assert got["series"] == [expected]


def test_average_session_length_and_sessions_per_user(
    ds: SyntheticDataset, records: list[EventRecord]
) -> None:
    average = data(q.AverageSessionLength(START, END), ds)
    per_user = data(q.SessionsPerUser(START, END), ds)
    by_day: dict[date, list[tuple[int, int]]] = {}
    for begin, length, amp in oracle.sessions(records):
        by_day.setdefault(begin.date(), []).append((length, amp))
    for k, day in enumerate(dates(START, END)):
        found = by_day.get(day, [])
        mean = sum(x for x, _ in found) / len(found) / 1000 if found else 0.0
        ratio = len(found) / len({a for _, a in found}) if found else 0.0
        assert average["xValues"][k] == per_user["xValues"][k] == f"{day}T00:00:00"
        assert average["series"][0][k] == pytest.approx(mean)
        assert per_user["series"][0][k] == pytest.approx(ratio)


# -- composition and events list ------------------------------------------------------------


@pytest.mark.parametrize("prop", ["country", "gp:plan", "version", "paying", "DMA"])
def test_composition(ds: SyntheticDataset, records: list[EventRecord], prop: str) -> None:
    start, end = date(2026, 9, 10), date(2026, 9, 25)
    got = data(q.UserComposition(start, end, prop), ds)
    latest: dict[int, EventRecord] = {}
    for r in records:
        if start <= r.event_time.date() <= end:
            latest[r.amplitude_id] = r
    counts = Counter(oracle.text(oracle.user_prop(r, prop)) for r in latest.values())
    assert dict(zip(got["xValues"], got["series"][0], strict=True)) == counts
    assert got["series"][0] == sorted(got["series"][0], reverse=True)
    assert got["seriesLabels"] == [prop]


def test_events_list_counts_the_current_week(
    ds: SyntheticDataset, records: list[EventRecord]
) -> None:
    now = datetime(2026, 9, 16, 10, 0, tzinfo=UTC)  # a Wednesday: the week began Sunday 13th
    got = answer(q.EventsList(), ds, now)["data"]
    week = [r for r in records if datetime(2026, 9, 13, tzinfo=UTC) <= r.event_time <= now]
    assert {row["value"]: row["totals"] for row in got} == {
        name: sum(1 for r in week if r.event_type == name) for name in ds.event_types
    }
    assert [row["value"] for row in got] == sorted(row["value"] for row in got)


# -- event segmentation ---------------------------------------------------------------------

FILTERS = st.sampled_from(
    [
        ("event", "category", "is", ["books", "music"]),
        ("event", "category", "is not", ["books"]),
        ("event", "price", "greater", ["50"]),
        ("event", "price", "less or equal", ["20.5"]),
        ("event", "item_id", "contains", ["SKU-000"]),
        ("event", "item_id", "does not contain", ["1"]),
        ("user", "country", "is", ["United States"]),
        ("user", "gp:interests", "is", ["music"]),
        ("user", "gp:interests", "set is", ["books", "music"]),
        ("user", "gp:interests", "set is not", ["tech"]),
        ("user", "paying", "is", ["true"]),
        ("user", "version", "greater or equal", ["3.3"]),
    ]
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    first=st.integers(0, DAYS - 1),
    span=st.integers(0, DAYS - 1),
    metric=st.sampled_from(["uniques", "totals", "average"]),
    event_type=st.sampled_from(["View Item", "Add to Cart", "Purchase", "_active"]),
    filters=st.lists(FILTERS, max_size=2),
)
def test_segmentation_matches_brute_force(
    ds: SyntheticDataset,
    records: list[EventRecord],
    first: int,
    span: int,
    metric: str,
    event_type: str,
    filters: list[oracle.Filter],
) -> None:
    start = START + timedelta(days=first)
    end = min(start + timedelta(days=span), END)
    event = Event(event_type, [PropertyFilter(k, op, v, t) for t, k, op, v in filters])  # type: ignore[arg-type]
    got = data(q.EventSegmentation([event], start, end, metric=metric), ds)  # type: ignore[arg-type]
    cells = oracle.series(records, UTC, start, end, event_type=event_type, filters=filters)
    by_day = cells.get((), {})

    def value(c: dict[str, Any] | None) -> float:
        if c is None:
            return 0
        if metric == "uniques":
            return len(c["users"])
        if metric == "totals":
            return float(c["total"])
        return float(c["total"] / len(c["users"]))

    assert got["xValues"] == [d.isoformat() for d in dates(start, end)]
    assert got["series"] == [
        [pytest.approx(value(by_day.get(d.isoformat()))) for d in dates(start, end)]
    ]


def test_segmentation_group_by_event_and_user_property_with_limit(
    ds: SyntheticDataset, records: list[EventRecord]
) -> None:
    event = Event("View Item", group_by=[GroupBy("category", "event")])
    got = data(q.EventSegmentation([event], START, END, group_by=["platform"], limit=4), ds)
    cells = oracle.series(
        records,
        UTC,
        START,
        END,
        event_type="View Item",
        group=lambda r: (oracle.text(r.event_properties.get("category")), oracle.text(r.platform)),
    )
    collapsed = {k: len(set().union(*(c["users"] for c in v.values()))) for k, v in cells.items()}
    top = sorted(collapsed, key=lambda k: (-collapsed[k], k))[:4]
    assert got["seriesLabels"] == [[0, "; ".join(k)] for k in top]
    assert [c[0]["value"] for c in got["seriesCollapsed"]] == [collapsed[k] for k in top]
    for key, row in zip(top, got["series"], strict=True):
        assert row == [
            len(cells[key].get(d.isoformat(), {"users": ()})["users"]) for d in dates(START, END)
        ]


def test_segmentation_property_metrics(ds: SyntheticDataset, records: list[EventRecord]) -> None:
    event = Event("Purchase", group_by=[GroupBy("revenue", "event")])
    sums = data(q.EventSegmentation([event], START, END, metric="sums"), ds)
    avg = data(q.EventSegmentation([event], START, END, metric="value_avg"), ds)
    cells = oracle.series(
        records,
        UTC,
        START,
        END,
        event_type="Purchase",
        value=lambda r: oracle.as_float(r.event_properties.get("revenue")),
    ).get((), {})
    for k, day in enumerate(dates(START, END)):
        c = cells.get(day.isoformat(), {"sum": 0.0, "n": 0})
        assert sums["series"][0][k] == pytest.approx(c["sum"])
        assert avg["series"][0][k] == pytest.approx(c["sum"] / c["n"] if c["n"] else 0.0)
    assert sum(sums["series"][0]) == pytest.approx(sums["seriesCollapsed"][0][0]["value"])
    assert sums["seriesCollapsed"][0][0]["value"] > 0


def test_segmentation_histogram(ds: SyntheticDataset, records: list[EventRecord]) -> None:
    event = Event("Rate Item", group_by=[GroupBy("rating", "event")])
    got = data(q.EventSegmentation([event], START, END, metric="histogram"), ds)
    ratings = Counter(
        oracle.text(r.event_properties["rating"]) for r in records if r.event_type == "Rate Item"
    )
    assert dict(zip(got["xValues"], got["series"][0], strict=True)) == {
        x: ratings.get(x, 0) for x in got["xValues"]
    }
    assert sum(got["series"][0]) == sum(ratings.values())


def test_segmentation_pct_dau_and_formula(ds: SyntheticDataset, records: list[EventRecord]) -> None:
    pct = data(q.EventSegmentation([Event("Search")], START, END, metric="pct_dau"), ds)
    formula = data(
        q.EventSegmentation(
            [Event("Add to Cart"), Event("View Item")],
            START,
            END,
            metric="formula",
            formula="TOTALS(A) / UNIQUES(B) * 2 - 1",
        ),
        ds,
    )
    search = oracle.series(records, UTC, START, END, event_type="Search").get((), {})
    active = oracle.series(records, UTC, START, END, event_type="_active")[()]
    carts = oracle.series(records, UTC, START, END, event_type="Add to Cart").get((), {})
    views = oracle.series(records, UTC, START, END, event_type="View Item").get((), {})
    for k, day in enumerate(dates(START, END)):
        x = day.isoformat()
        dau = len(active[x]["users"]) if x in active else 0
        users = len(search[x]["users"]) if x in search else 0
        assert pct["series"][0][k] == pytest.approx(100 * users / dau if dau else 0.0)
        viewers = len(views[x]["users"]) if x in views else 0
        total = carts[x]["total"] if x in carts else 0
        assert formula["series"][0][k] == pytest.approx(total / viewers * 2 - 1 if viewers else -1)
    assert formula["seriesMeta"][0]["formula"] == "TOTALS(A) / UNIQUES(B) * 2 - 1"


@pytest.mark.parametrize("interval", [7, 30])
def test_segmentation_weekly_and_monthly(
    ds: SyntheticDataset, records: list[EventRecord], interval: int
) -> None:
    got = data(q.EventSegmentation([Event("Share")], START, END, interval=interval), ds)
    cells = oracle.series(records, UTC, START, END, event_type="Share", interval=interval)[()]
    x_values = oracle.labels(START, END, interval)
    assert got["xValues"] == x_values
    assert got["series"][0] == [len(cells.get(x, {"users": ()})["users"]) for x in x_values]


def test_segmentation_hourly_and_realtime_intervals(
    ds: SyntheticDataset, records: list[EventRecord]
) -> None:
    day = date(2026, 9, 20)
    hourly = data(
        q.EventSegmentation([Event("_active")], day, day, metric="totals", interval=q.HOURLY), ds
    )
    assert len(hourly["xValues"]) == 24
    assert hourly["xValues"][13] == "2026-09-20T13:00:00"
    per_hour = Counter(r.event_time.hour for r in records if r.event_time.date() == day)
    assert hourly["series"][0] == [per_hour.get(h, 0) for h in range(24)]
    five = data(
        q.EventSegmentation([Event("_active")], day, day, metric="totals", interval=q.REALTIME), ds
    )
    assert len(five["xValues"]) == 288
    assert sum(five["series"][0]) == sum(per_hour.values())


def test_segmentation_rolling(ds: SyntheticDataset, records: list[EventRecord]) -> None:
    start = date(2026, 9, 10)
    window = data(q.EventSegmentation([Event("Search")], start, END, rolling_window=3), ds)
    average = data(
        q.EventSegmentation([Event("Search")], start, END, metric="totals", rolling_average=3), ds
    )
    cells = oracle.series(records, UTC, START, END, event_type="Search")[()]
    for k, day in enumerate(dates(start, END)):
        span = [(day - timedelta(days=n)).isoformat() for n in range(3)]
        users = set().union(*(cells[x]["users"] for x in span if x in cells))
        assert window["series"][0][k] == len(users)
        assert average["series"][0][k] == pytest.approx(
            sum(cells[x]["total"] for x in span if x in cells) / 3
        )


def test_segments_cohort_and_who_performed(
    ds: SyntheticDataset, records: list[EventRecord]
) -> None:
    buyers = {r.amplitude_id for r in records if r.event_type == "Purchase"}
    sharers = {r.amplitude_id for r in records if r.event_type == "Share"}
    segments = [
        Segment(InCohort("purchasers")),
        Segment(PerformedEvent("Share", ">=", 1)),
        Segment(Where("platform", "is not", ["Web"]), PerformedEvent("Share", "=", 0)),
    ]
    got = data(q.EventSegmentation([Event("Open App")], START, END, segments=segments), ds)
    assert [m["segmentIndex"] for m in got["seriesMeta"]] == [0, 1, 2]
    expectations = [
        oracle.series(records, UTC, START, END, event_type="Open App", members=buyers),
        oracle.series(records, UTC, START, END, event_type="Open App", members=sharers),
        oracle.series(
            records,
            UTC,
            START,
            END,
            event_type="Open App",
            where=[("user", "platform", "is not", ["Web"])],
            members={r.amplitude_id for r in records} - sharers,
        ),
    ]
    for row, cells in zip(got["series"], expectations, strict=True):
        by_day = cells.get((), {})
        assert row == [
            len(by_day.get(d.isoformat(), {"users": ()})["users"]) for d in dates(START, END)
        ]
    assert len(buyers) == len(ds.cohorts["purchasers"].amplitude_ids)


def test_who_performed_current_interval(ds: SyntheticDataset, records: list[EventRecord]) -> None:
    segment = Segment(PerformedEvent("Add to Cart", ">=", 2, time_type="currentInterval"))
    got = data(q.EventSegmentation([Event("View Item")], START, END, segments=[segment]), ds)
    for k, day in enumerate(dates(START, END)):
        carts = Counter(
            r.amplitude_id
            for r in records
            if r.event_type == "Add to Cart" and r.event_time.date() == day
        )
        viewers = {
            r.amplitude_id
            for r in records
            if r.event_type == "View Item"
            and r.event_time.date() == day
            and carts[r.amplitude_id] >= 2
        }
        assert got["series"][0][k] == len(viewers)


def test_empty_group_gives_no_series(ds: SyntheticDataset) -> None:
    event = Event("View Item", [PropertyFilter("category", "is", ["no such category"])])
    got = data(q.EventSegmentation([event], START, END, group_by=["country"]), ds)
    assert got["series"] == got["seriesLabels"] == got["seriesCollapsed"] == []
    assert len(got["xValues"]) == DAYS


def test_time_zone_days(berlin: SyntheticDataset) -> None:
    tz = berlin.tz
    end = BERLIN_START + timedelta(days=19)
    got = data(q.ActiveUsers(BERLIN_START, end), berlin, datetime(2026, 12, 1, tzinfo=UTC))
    cells = oracle.series(list(berlin.events), tz, BERLIN_START, end, event_type="_active")[()]
    assert got["series"][0] == [
        len(cells.get(d.isoformat(), {"users": ()})["users"]) for d in dates(BERLIN_START, end)
    ]
    hourly = data(
        q.EventSegmentation(
            [Event("_active")], date(2026, 10, 25), date(2026, 10, 25), interval=q.HOURLY
        ),
        berlin,
    )
    assert len(hourly["xValues"]) == 25  # the day summer time ends has 25 hours
    assert hourly["xValues"][2:4] == ["2026-10-25T02:00:00", "2026-10-25T02:00:00"]


# -- funnels --------------------------------------------------------------------------------

STEPS = ["Sign Up", "Complete Profile", "Purchase"]


@pytest.mark.parametrize("mode", ["ordered", "unordered", "sequential"])
def test_funnel_matches_brute_force(
    ds: SyntheticDataset, records: list[EventRecord], mode: str
) -> None:
    steps = ["View Item", "Add to Cart", "Purchase"] if mode != "ordered" else STEPS
    got = data(q.Funnel(steps, START, END, mode=mode, conversion_window=3 * 86_400), ds)[0]  # type: ignore[arg-type]
    paths = oracle.funnel(records, UTC, START, END, steps, mode=mode, window_s=3 * 86_400)
    raw = [sum(1 for _, times in paths.values() if len(times) > k) for k in range(3)]
    assert got["cumulativeRaw"] == raw
    assert got["cumulative"] == pytest.approx([r / raw[0] for r in raw])
    assert got["stepByStep"] == pytest.approx([1.0, raw[1] / raw[0], raw[2] / raw[1]])
    for k in (1, 2):
        gaps = [
            round((t[k] - t[k - 1]).total_seconds() * 1000) for _, t in paths.values() if len(t) > k
        ]
        assert got["medianTransTimes"][k] == oracle.median_ms(gaps)
    per_day = Counter(entry.event_time.date() for entry, _ in paths.values())
    assert [row[0] for row in got["dayFunnels"]["series"]] == [
        per_day.get(d, 0) for d in dates(START, END)
    ]
    assert [sum(col) for col in zip(*got["dayFunnels"]["series"], strict=True)] == raw
    assert got["events"] == steps
    assert raw[0] > raw[1] > raw[2] > 0


def test_funnel_new_users_grouped(ds: SyntheticDataset, records: list[EventRecord]) -> None:
    got = data(
        q.Funnel(["Open App", "Purchase"], START, END, user_type="new", group_by="platform"), ds
    )
    paths = oracle.funnel(records, UTC, START, END, ["Open App", "Purchase"])
    firsts = {amp: events[0].event_time.date() for amp, events in oracle.by_user(records).items()}
    new = {a: p for a, p in paths.items() if firsts[a] == p[0].event_time.date()}
    sizes = Counter(p[0].platform for p in new.values())
    assert {g["meta"]["groupValue"]: g["cumulativeRaw"][0] for g in got} == sizes
    assert len(new) < len(paths)


# -- retention ------------------------------------------------------------------------------


def test_retention_nday(ds: SyntheticDataset, records: list[EventRecord]) -> None:
    start, end = date(2026, 9, 5), date(2026, 9, 20)
    now = datetime(2026, 9, 25, 12, tzinfo=UTC)
    got = data(q.Retention(Event("Sign Up"), Event("_active"), start, end), ds, now)["series"][0]
    expected = oracle.retention_nday(records, UTC, start, end, "Sign Up", "_active", now)
    assert got["dates"][0] == "Sep 20, 2026"
    assert got["dates"][-1] == "Sep 5, 2026"
    columns = (date(2026, 9, 25) - start).days  # up to the day holding now
    for day, (size, returned) in expected.items():
        row = got["values"][f"{day:%b} {day.day}, {day.year}"]
        assert len(row) == columns + 1
        assert row[0] == {"count": size, "outof": size, "incomplete": False}
        for n in range(1, columns + 1):
            assert row[n]["count"] == returned.get(n, 0)
            assert row[n]["outof"] == size
            assert row[n]["incomplete"] == (day + timedelta(days=n) >= date(2026, 9, 25))
    # combined day 1 sums the complete cells of every cohort
    assert got["combined"][1]["count"] == sum(r.get(1, 0) for _, r in expected.values())
    assert got["combined"][1]["outof"] == sum(s for s, _ in expected.values())


def test_retention_rolling_and_bracket_are_consistent(ds: SyntheticDataset) -> None:
    args = (Event("Sign Up"), Event("Search"), date(2026, 9, 1), date(2026, 9, 10))
    nday = data(q.Retention(*args), ds)["series"][0]
    rolling = data(q.Retention(*args, mode="rolling"), ds)["series"][0]
    bracket = data(q.Retention(*args, mode="bracket", brackets=[(1, 2), (2, 4)]), ds)["series"][0]
    for label, row in nday["values"].items():
        roll = rolling["values"][label]
        for n in range(1, len(row)):
            assert roll[n]["count"] >= row[n]["count"]
            if n + 1 < len(row):
                assert roll[n]["count"] >= roll[n + 1]["count"]
        assert bracket["values"][label][1]["count"] == row[1]["count"]
        assert bracket["values"][label][2]["count"] >= max(row[2]["count"], row[3]["count"])


# -- revenue LTV ----------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["arpu", "total_revenue", "paying_users"])
def test_revenue_ltv(ds: SyntheticDataset, records: list[EventRecord], metric: str) -> None:
    got = data(q.RevenueLTV(START, END, metric=metric), ds, datetime(2027, 1, 1, tzinfo=UTC))  # type: ignore[arg-type]
    series = got["series"][0]
    users = oracle.by_user(records)
    for amp_day in dates(START, END):
        cohort = [a for a, ev in users.items() if ev[0].event_time.date() == amp_day]
        row = series["values"][f"{amp_day:%b} {amp_day.day}"]
        assert row["count"] == len(cohort)
        total = sum(oracle.revenue(r) for a in cohort for r in users[a])
        assert row["total_amount"] == pytest.approx(total)
        assert row["paid"] == sum(1 for a in cohort if any(oracle.revenue(r) for r in users[a]))
        for n in (1, 7, 30):
            limit = datetime(amp_day.year, amp_day.month, amp_day.day, tzinfo=UTC) + timedelta(
                days=n
            )
            if limit > datetime(2026, 10, 1, tzinfo=UTC):  # the data ends: the window is unfinished
                assert f"r{n}d" not in row
                continue
            amounts = {
                a: sum(oracle.revenue(r) for r in users[a] if r.event_time < limit) for a in cohort
            }
            expected = {
                "arpu": sum(amounts.values()) / len(cohort) if cohort else 0.0,
                "total_revenue": sum(amounts.values()),
                "paying_users": sum(1 for v in amounts.values() if v),
            }[metric]
            assert row[f"r{n}d"] == pytest.approx(expected, abs=1e-5)
    assert series["dates"][0] == "Sep 30"


def test_revenue_ltv_omits_unfinished_windows(ds: SyntheticDataset) -> None:
    row = data(q.RevenueLTV(START, START), ds, datetime(2026, 9, 5, tzinfo=UTC))["series"][0]
    assert set(row["values"]["Sep 1"]) == {
        "r1d",
        "r2d",
        "r3d",
        "r4d",
        "count",
        "paid",
        "total_amount",
    }


# -- users ----------------------------------------------------------------------------------


def test_user_activity(ds: SyntheticDataset, records: list[EventRecord]) -> None:
    users = oracle.by_user(records)
    amp = max(users, key=lambda a: len(users[a]))
    events = users[amp]
    full = answer(q.UserActivity(amp), ds, NOW)
    summary = full["userData"]
    assert summary["num_events"] == len(events)
    assert summary["num_sessions"] == len({r.session_id for r in events})
    assert summary["usage_time"] == sum(
        length for _, length, a in oracle.sessions(records) if a == amp
    )
    assert summary["first_used"] == events[0].event_time.date().isoformat()
    assert summary["purchases"] == sum(1 for r in events if oracle.revenue(r))
    assert summary["country"] == events[-1].country
    assert [e["event_time"] for e in full["events"]] == [
        e["event_time"] for e in sorted(full["events"], key=lambda e: e["event_time"], reverse=True)
    ]
    page = answer(q.UserActivity(amp, offset=2, limit=3, direction="earliest"), ds, NOW)["events"]
    assert [e["event_type"] for e in page] == [r.event_type for r in events[2:5]]
    assert [e["event_id"] for e in page] == [2, 3, 4]


def test_user_search_kinds(ds: SyntheticDataset, records: list[EventRecord]) -> None:
    record = next(r for r in records if r.user_id is not None)
    by_amp = answer(q.UserSearch(str(record.amplitude_id)), ds, NOW)
    assert by_amp == {
        "matches": [{"user_id": record.user_id, "amplitude_id": record.amplitude_id}],
        "type": "match_user_or_device_id",
    }
    assert answer(q.UserSearch(record.device_id or ""), ds, NOW)["matches"] == by_amp["matches"]
    assert answer(q.UserSearch(record.user_id or ""), ds, NOW)["matches"] == by_amp["matches"]
    prefix = answer(q.UserSearch("user0001"), ds, NOW)
    expected = sorted(
        {r.user_id for r in records if r.user_id and r.user_id.startswith("user0001")}
    )
    assert prefix["type"] == "match_user_prefix"
    assert [m["user_id"] for m in prefix["matches"]] == expected
    assert answer(q.UserSearch("nobody-like-this"), ds, NOW) == {"type": "nomatch", "matches": []}


def test_realtime(ds: SyntheticDataset, records: list[EventRecord]) -> None:
    now = datetime(2026, 9, 20, 18, 7, 30, tzinfo=UTC)
    got = data(q.RealtimeActiveUsers(), ds, now)
    assert got["seriesLabels"] == ["Today", "Yesterday"]
    assert len(got["xValues"]) == 288
    assert got["xValues"][-1] == "18:05"
    last = datetime(2026, 9, 20, 18, 5, tzinfo=UTC)
    for k in (0, 100, 287):
        t0 = last - timedelta(minutes=5 * (287 - k))
        for series, shift in zip(got["series"], (0, 1), strict=True):
            a = t0 - timedelta(days=shift)
            users = {
                r.amplitude_id for r in records if a <= r.event_time < a + timedelta(minutes=5)
            }
            assert series[k] == len(users)
    assert sum(got["series"][0]) > 0


# -- saved charts and errors ----------------------------------------------------------------


def test_chart_query_and_csv(ds: SyntheticDataset) -> None:
    chart = ds.charts["purchases-by-country"]
    assert answer(q.ChartQuery("purchases-by-country"), ds, NOW) == answer(chart, ds, NOW)
    body = answer(q.ChartCSV("purchases-by-country"), ds, NOW)["data"]
    lines = body.split("\r\n")
    # The recorded layout: name and description, blank, metric and event, blank, the table.
    assert lines[:6] == [
        '"\tChart purchases-by-country"',
        f'"\tevent_segmentation from {START} to {END}"',
        "",
        '"\tEvent Totals"',
        '"\tPurchase"',
        "",
    ]
    assert lines[-1] == ""
    rows = list(csv.reader(io.StringIO("\n".join(lines[6:-1]))))
    expected = data(chart, ds)
    assert rows[0] == ["\tSegment", *(f"\t{x}" for x in expected["xValues"])]
    # Text cells start with a tab, number cells do not.
    assert [r[0] for r in rows[1:]] == [
        f"\tAll Users, {label[1]}" for label in expected["seriesLabels"]
    ]
    assert [[int(v) for v in r[1:]] for r in rows[1:]] == expected["series"]


def test_chart_csv_names_segments_and_events(ds: SyntheticDataset) -> None:
    chart = q.EventSegmentation(
        ["Purchase", "Sign Up"],
        START,
        END,
        segments=[Segment(), Segment(Where("country", "is", ["Germany"]))],
    )
    local = SyntheticDataset(seed=3, users=50, days=DAYS, start=START)
    local.charts = {**local.charts, "two": chart}
    body = answer(q.ChartCSV("two"), local, NOW)["data"]
    names = [r[0] for r in csv.reader(io.StringIO(body)) if len(r) > 1][1:]
    assert names == [
        "\tPurchase, All Users",
        "\tSign Up, All Users",
        "\tPurchase, country is Germany",
        "\tSign Up, country is Germany",
    ]


def test_segmentation_labels_are_event_indices(ds: SyntheticDataset) -> None:
    plain = data(q.EventSegmentation(["Purchase", "Sign Up"], START, END), ds)
    assert plain["seriesLabels"] == [0, 1]
    assert plain["seriesMeta"] == [
        {"segmentIndex": 0, "eventIndex": 0},
        {"segmentIndex": 0, "eventIndex": 1},
    ]
    two_segments = [Segment(), Segment(Where("country", "is", ["Germany"]))]
    grouped = data(
        q.EventSegmentation(["Sign Up"], START, END, segments=two_segments, group_by=["platform"]),
        ds,
    )
    assert all(label[0] == 0 for label in grouped["seriesLabels"])
    assert {m["segmentIndex"] for m in grouped["seriesMeta"]} == {0, 1}


def test_user_activity_of_an_unknown_user_is_empty(ds: SyntheticDataset) -> None:
    got = answer(q.UserActivity(1), ds, NOW)
    assert got["events"] == []
    assert got["userData"]["num_events"] == 0
    assert got["userData"]["user_id"] is None


@pytest.mark.parametrize(
    ("query", "error", "field"),
    [
        (q.ActiveUsers(START, END, group_by="gp:plan"), None, None),
        (
            q.ActiveUsers(START, END, segments=[Segment(Where("favourite", "is", ["x"]))]),
            BadParameter,
            "segments[0][0].prop",
        ),
        (
            q.ActiveUsers(START, END, segments=[Segment(InCohort("nope"))]),
            BadParameter,
            "segments[0][0].values",
        ),
        (q.EventSegmentation([Event("ce:Engaged")], START, END), Unsupported, "e.event_type"),
        (q.EventSegmentation([Event("verified_revenue")], START, END), Unsupported, "e.event_type"),
        (
            q.EventSegmentation(["A", "B"], START, END, metric="formula", formula="UNIQUES(C)"),
            BadParameter,
            "formula",
        ),
        (
            q.EventSegmentation(["A"], START, END, metric="formula", formula="MEDIAN(A)"),
            BadParameter,
            "formula",
        ),
        (
            q.EventSegmentation(["A"], START, END, metric="formula", formula="UNIQUES(A"),
            BadParameter,
            "formula",
        ),
        (
            q.EventSegmentation([Event("A", [PropertyFilter("p", "less", ["x"])])], START, END),
            BadParameter,
            "e.filters[0]",
        ),
        (
            q.EventSegmentation(["A"], START, END, rolling_window=2, rolling_average=2),
            BadParameter,
            "rollingWindow",
        ),
        (q.ChartQuery("missing"), ChartNotFound, "chart_id"),
    ],
)
def test_errors(
    ds: SyntheticDataset, query: Any, error: type[EngineError] | None, field: str | None
) -> None:
    if error is None:
        answer(query, ds, NOW)
        return
    with pytest.raises(error) as caught:
        answer(query, ds, NOW)
    assert caught.value.field == field
    assert caught.value.status == (404 if error is ChartNotFound else 400)


def test_unknown_event_type_is_zero_not_an_error(ds: SyntheticDataset) -> None:
    got = data(q.EventSegmentation([Event("Never Happened")], START, END), ds)
    assert got["series"] == [[0] * DAYS]


def test_weekly_retention_cohorts_start_on_sunday(ds: SyntheticDataset) -> None:
    # Weeks start on Sunday everywhere (segmentation labels, split boundaries): retention too.
    query = q.Retention(
        Event("Sign Up"), Event("_active"), date(2026, 9, 2), date(2026, 9, 23), interval=7
    )
    series = data(query, ds)["series"][0]
    cohorts = [datetime.strptime(label, "%b %d, %Y").date() for label in series["dates"]]
    assert cohorts == [date(2026, 9, 20), date(2026, 9, 13), date(2026, 9, 6), date(2026, 8, 30)]
    assert all(day.weekday() == 6 for day in cohorts)
