"""The emulator's event data: synthetic generation, records, export round trips."""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import oracle
import pytest

from amplitude_async.testing.dataset import (
    Dataset,
    EventRecord,
    SyntheticDataset,
    event_revenue,
    user_property_key,
)

START = date(2026, 9, 1)
STEPS = ("Sign Up", "Complete Profile", "Purchase")


@pytest.fixture(scope="module")
def ds() -> SyntheticDataset:
    return SyntheticDataset(seed=3, users=400, days=30, start=START)


@pytest.fixture(scope="module")
def records(ds: SyntheticDataset) -> list[EventRecord]:
    return list(ds.events)


def test_same_seed_same_events_other_seed_other_events(records: list[EventRecord]) -> None:
    again = list(SyntheticDataset(seed=3, users=400, days=30, start=START).events)
    other = list(SyntheticDataset(seed=4, users=400, days=30, start=START).events)
    assert again == records
    assert other != records


def test_records_are_in_range_sorted_and_aware(
    ds: SyntheticDataset, records: list[EventRecord]
) -> None:
    times = [r.event_time for r in records]
    assert times == sorted(times)
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in times)
    assert times[0].date() >= START
    assert times[-1].date() <= START + timedelta(days=29)
    assert (ds.start, ds.end) == (START, START + timedelta(days=29))
    assert len(ds) == len(records)
    assert ds.user_count == len({r.amplitude_id for r in records}) == 400


def test_users_have_plausible_properties(records: list[EventRecord]) -> None:
    for r in records[:500]:
        assert r.platform in ("iOS", "Android", "Web")
        assert all((r.country, r.city, r.version_name, r.start_version, r.language))
        assert r.user_properties["plan"] in ("free", "plus", "pro")
        assert r.user_properties["age_group"]
        assert isinstance(r.user_properties["interests"], list)
        assert (r.user_properties["plan"] != "free") == r.paying
    assert len({r.country for r in records}) > 5
    assert any(r.user_id is None for r in records)  # some users stay anonymous


def test_funnel_has_drop_off(records: list[EventRecord]) -> None:
    users = {t: {r.amplitude_id for r in records if r.event_type == t} for t in STEPS}
    signed, profiled, bought = (len(users[t]) for t in STEPS)
    assert signed == 400
    assert signed > profiled > bought > 0
    # every user's first event is their sign-up
    assert all(ev[0].event_type == "Sign Up" for ev in oracle.by_user(records).values())


def test_retention_decays(records: list[EventRecord]) -> None:
    users = oracle.by_user(records)
    back: Counter[int] = Counter()
    eligible = 0
    for events in users.values():
        day0 = events[0].event_time.date()
        if day0 > START + timedelta(days=15):
            continue
        eligible += 1
        days = {(r.event_time.date() - day0).days for r in events}
        back.update(n for n in (1, 3, 7, 14) if n in days)
    assert back[1] > back[7] > back[14] > 0
    assert back[1] < eligible


def test_sessions_have_a_tail_and_a_cap(ds: SyntheticDataset, records: list[EventRecord]) -> None:
    lengths = sorted(length for _, length, _ in oracle.sessions(records))
    assert max(lengths) <= 86_400_000
    assert lengths[len(lengths) // 2] < 300_000  # most sessions are short
    assert lengths[-1] > 1_800_000  # a few are long
    assert sorted(ds.session_lengths) == lengths


def test_revenue_events(records: list[EventRecord]) -> None:
    purchases = [r for r in records if r.event_type == "Purchase"]
    assert purchases
    for r in purchases:
        p = r.event_properties
        assert r.revenue == pytest.approx(p["price"] * p["quantity"], abs=0.01)
        assert r.revenue > 0
    assert all(r.revenue == 0 for r in records if r.event_type in ("Search", "Sign Up"))


def test_event_revenue_rule() -> None:
    assert event_revenue({"$revenue": 3.5, "price": 100}) == 3.5
    assert event_revenue({"revenue": "2"}) == 2.0
    assert event_revenue({"$price": 2.5, "$quantity": 4}) == 10.0
    assert event_revenue({"price": 2.5}) == 2.5
    assert event_revenue({"price": "free"}) == 0.0
    assert event_revenue({}) == 0.0


def test_user_property_names() -> None:
    assert user_property_key("DMA") == "dma"
    assert user_property_key("gp:plan") == "gp:plan"
    assert user_property_key("plan") is None
    assert user_property_key("gp:") is None


def test_builtin_cohorts(ds: SyntheticDataset, records: list[EventRecord]) -> None:
    buyers = {r.amplitude_id for r in records if r.event_type == "Purchase"}
    assert ds.cohorts["purchasers"].amplitude_ids == buyers
    days: dict[int, set[date]] = defaultdict(set)
    for r in records:
        days[r.amplitude_id].add(r.event_time.date())
    assert ds.cohorts["power-users"].amplitude_ids == {a for a, d in days.items() if len(d) >= 5}
    mobile = {r.amplitude_id for r in records if r.platform in ("iOS", "Android")}
    assert ds.cohorts["mobile"].amplitude_ids == mobile
    assert set(ds.charts) == {"daily-signups", "purchases-by-country", "active-users"}


def test_time_zone_days_are_local() -> None:
    tz = "America/Los_Angeles"
    local = SyntheticDataset(seed=1, users=100, days=10, start=START, tz=tz)
    days = {r.event_time.astimezone(ZoneInfo(tz)).date() for r in local.events}
    assert min(days) >= START
    assert max(days) <= START + timedelta(days=9)
    # some events fall on the next UTC day, which only the local reading puts in range
    assert any(
        r.event_time.date() != r.event_time.astimezone(ZoneInfo(tz)).date() for r in local.events
    )


@pytest.mark.parametrize("name", ["events.json", "events.json.gz"])
def test_export_round_trip(
    ds: SyntheticDataset, records: list[EventRecord], tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    ds.write_export(path)
    if name.endswith(".gz"):
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    loaded = Dataset.from_export(path)
    assert list(loaded.events) == records
    assert loaded.user_count == ds.user_count
    assert list(loaded.session_lengths) == list(ds.session_lengths)


def test_from_export_reads_amplitude_lines(tmp_path: Path) -> None:
    lines = [
        {
            "event_type": "Play Song",
            "amplitude_id": 42,
            "user_id": None,
            "device_id": "dev-1",
            "event_time": "2026-09-02 10:00:00.500000",
            "session_id": 1788343200000,
            "event_properties": {"genre": "jazz"},
            "user_properties": {"plan": "pro"},
            "country": "France",
            "os_name": "ios",
            "os_version": "17.5",
            "device_family": "Apple iPhone",
            "paying": "true",
        },
        {
            "event_type": "Play Song",
            "amplitude_id": 42,
            "user_id": "ana",
            "device_id": "dev-1",
            "event_time": "2026-09-01 23:59:59",
            "session_id": -1,
        },
    ]
    path = tmp_path / "export.json.gz"
    with gzip.open(path, "wt") as out:
        out.write("\n".join(json.dumps(line) for line in lines) + "\n\n")
    loaded = Dataset.from_export(path, tz="Europe/Paris")
    first, second = loaded.events
    assert first.event_time.isoformat() == "2026-09-01T23:59:59+00:00"
    assert (loaded.start, loaded.end) == (date(2026, 9, 2), date(2026, 9, 2))  # Paris days
    assert second.user_properties == {"plan": "pro"}
    assert second.user_property("os") == "ios 17.5"
    assert second.user_property("gp:plan") == "pro"
    assert second.paying is True
    assert second.event_time.microsecond == 500_000
    assert loaded.user_ids == ["ana"]  # the last known user ID wins
    assert len(loaded.session_lengths) == 1  # session -1 is no session


def test_from_export_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(
        '{"event_type": "x", "amplitude_id": 1, "event_time": "2026-09-01 00:00:00"}\n{"oops": 1}\n'
    )
    with pytest.raises(ValueError, match="line 2"):
        Dataset.from_export(path)


def test_records_round_trip_through_from_records(records: list[EventRecord]) -> None:
    shuffled = records[::-1]
    rebuilt = Dataset.from_records(shuffled, tz="UTC")
    assert list(rebuilt.events) == records
    assert rebuilt.event_types == sorted({r.event_type for r in records})
