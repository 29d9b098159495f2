"""Backfill: job files, plans, checkpoints, resuming after SIGKILL, failed chunks retried."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from backfillprocess import PATIENCE, committed, run, start, wait_for_progress

from amplitude_async.backfill import (
    CHECKPOINT_NAME,
    MAX_CHUNKS,
    CheckpointLocked,
    CheckpointStore,
    CorruptCheckpoint,
    JobChanged,
    Target,
    TargetChanged,
    TidyRow,
    key_fingerprint,
    load_job,
    parse_job,
    plan_job,
    run_backfill,
    write_outputs,
)
from amplitude_async.backfill.output import tidy_rows
from amplitude_async.client import AmplitudeClient
from amplitude_async.errors import InvalidQuery, QueryTooExpensive
from amplitude_async.limits import Limits
from amplitude_async.queries import WEEKLY, EventSegmentation, Funnel
from amplitude_async.retry import RetryPolicy
from amplitude_async.testing.dataset import SyntheticDataset
from amplitude_async.testing.emulator import Emulator, Faults
from amplitude_async.values import Event, PerformedEvent, Where

SCALE = 0.002
LIMITS = Limits().scaled(SCALE)
START = date(2026, 9, 1)

JOB = """
start = 2026-09-01
end = 2026-10-31
chunk_days = 10
output = "out"

[[queries]]
name = "purchases"
endpoint = "event_segmentation"
events = ["Purchase"]
metric = "totals"
group_by = ["country"]

[[queries]]
name = "dau"
endpoint = "active_users"

[[queries]]
name = "weekly_new"
endpoint = "active_users"
metric = "new"
interval = "weekly"

[[queries]]
name = "retention"
endpoint = "retention"
start_event = "Sign Up"
return_event = "_active"
interval = "monthly"

[[queries]]
name = "ltv"
endpoint = "revenue_ltv"

[[queries]]
name = "funnel"
endpoint = "funnel"
events = ["Sign Up", "Purchase"]

[emulator]
users = 300
time_scale = 0.002
"""


def write_job(directory: Path, text: str = JOB) -> Path:
    path = directory / "job.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- job files ------------------------------------------------------------------------------


def test_job_file_builds_queries_with_the_classes_fields(tmp_path: Path) -> None:
    job = load_job(
        write_job(
            tmp_path,
            """
start = "20260901"
end = 2026-09-30
output = "o"
formats = "csv"

[[queries]]
name = "q"
endpoint = "event_segmentation"
events = [
  { event_type = "View Item", filters = [{ key = "price", op = "greater", values = "20" }] },
  "Search",
]
segments = [
  [{ prop = "platform", op = "is", values = ["iOS"] }],
  [{ event_type = "Search", value = 2, time_type = "forEachInterval", time_value = 7 }],
]
interval = "weekly"
group_by = ["country", "platform"]
limit = "50"
""",
        )
    )
    (item,) = job.queries
    query = item.query
    assert isinstance(query, EventSegmentation)
    assert query.events[0].filters[0].values == ("20",)
    assert query.events[1] == Event("Search")
    assert query.segments[0].conditions == (Where("platform", "is", ["iOS"]),)
    assert query.segments[1].conditions == (
        PerformedEvent("Search", ">=", 2, time_type="forEachInterval", time_value=7),
    )
    assert (query.start, query.end, query.interval, query.limit) == (
        START,
        date(2026, 9, 30),
        WEEKLY,
        50,
    )
    assert job.output == tmp_path / "o"
    assert job.formats == ("csv",)


@pytest.mark.parametrize(
    ("patch", "field", "words"),
    [
        ('metric = "median"', '"q".metric', "metric"),
        ("colour = 1", '"q".colour', "not a field"),
        ('events = [{ event_type = "X", filter = [] }]', "events[0].filter", "unknown field"),
        ('formats = ["xlsx"]', "formats[0]", "unknown format 'xlsx'"),
    ],
)
def test_job_file_errors_name_the_field(tmp_path: Path, patch: str, field: str, words: str) -> None:
    base = 'start = 2026-09-01\nend = 2026-09-30\n[[queries]]\nname = "q"\n'
    base += 'endpoint = "event_segmentation"\nevents = ["Purchase"]\n'
    if patch.startswith("formats"):
        text = patch + "\n" + base
    elif patch.startswith("events"):
        text = base.replace('events = ["Purchase"]', patch)
    else:
        text = base + patch + "\n"
    with pytest.raises(InvalidQuery) as caught:
        load_job(write_job(tmp_path, text))
    assert field in caught.value.field
    assert words in caught.value.message


def test_bad_toml_and_untabular_endpoints_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidQuery, match="not valid TOML"):
        load_job(write_job(tmp_path, "start = ["))
    data: dict[str, Any] = {
        "start": START,
        "end": START,
        "queries": [{"name": "u", "endpoint": "user_search", "user": "x"}],
    }
    with pytest.raises(InvalidQuery, match="no tabular form"):
        parse_job(data)


# -- planning -------------------------------------------------------------------------------


def test_plan_chunks_fit_the_budget_and_respect_weeks(tmp_path: Path) -> None:
    job = load_job(write_job(tmp_path))
    plan = plan_job(job, Limits())
    weekly = [t for t in plan.tasks if t.name == "weekly_new"]
    assert all(t.start is not None and t.start.weekday() == 6 for t in weekly[1:])
    assert all(t.cost <= 1000 for t in plan.tasks)
    for name in ("purchases", "dau"):
        tasks = [t for t in plan.tasks if t.name == name]
        assert tasks[0].start == START
        assert tasks[-1].end == date(2026, 10, 31)
        assert all((t.end - t.start).days < 10 for t in tasks if t.start and t.end)
    # A tight budget shortens chunks below chunk_days: 5 per day (one group-by), budget 20.
    only = parse_job(
        {
            "start": START,
            "end": date(2026, 10, 31),
            "chunk_days": 10,
            "queries": [
                {
                    "name": "p",
                    "endpoint": "event_segmentation",
                    "events": ["Purchase"],
                    "group_by": ["country"],
                },
            ],
        }
    )
    small = plan_job(only, Limits(cost_per_window=20))
    assert {(t.end - t.start).days + 1 for t in small.tasks if t.start and t.end} == {
        4,
        1,
    }  # 61 days: 15 x 4 + 1
    assert all(t.cost <= 20 for t in small.tasks)
    assert plan.fingerprint == plan_job(load_job(tmp_path / "job.toml"), Limits()).fingerprint


def test_a_query_whose_day_exceeds_the_budget_is_refused(tmp_path: Path) -> None:
    job = load_job(write_job(tmp_path))
    with pytest.raises(QueryTooExpensive, match="'purchases'"):
        plan_job(job, Limits(cost_per_window=4))


def test_tidy_rows_of_whole_range_and_cohort_results() -> None:
    funnel = Funnel(["Sign Up", "Purchase"], START, START + timedelta(days=6))
    from amplitude_async.results import FunnelGroup, FunnelResult

    result = FunnelResult((FunnelGroup(("Sign Up", "Purchase"), (10, 4)),))
    rows = tidy_rows("f", funnel, result)
    assert [(r.label, r.date, r.metric, r.value) for r in rows] == [
        ("All Users", "2026-09-01", "step 1: Sign Up", 10),
        ("All Users", "2026-09-01", "step 2: Purchase", 4),
    ]


# -- running against the emulator ------------------------------------------------------------


def make_client(emulator: Emulator, *, max_retries: int = 3) -> AmplitudeClient:
    policy = RetryPolicy(max_retries=max_retries, backoff_base=0.002, backoff_cap=0.1)
    return AmplitudeClient(
        emulator.api_key,
        emulator.secret_key,
        base_url=emulator.url,
        limits=LIMITS,
        retry_policy=policy,
        timeout=10,
    )


DATASET = SyntheticDataset(seed=1, users=300, days=61, start=START)


@pytest.fixture
def amplitude_emulator_options() -> dict[str, Any]:
    return {"dataset": DATASET, "limits": LIMITS}


@pytest.fixture
def emulator(amplitude_emulator: Emulator) -> Emulator:
    """The emulator of the project's pytest plugin, with this module's options."""
    return amplitude_emulator


async def backfill(job_path: Path, emu: Emulator, **kwargs: Any) -> Any:
    job = load_job(job_path)
    plan = plan_job(job, LIMITS)
    with CheckpointStore(job.output) as store:
        store.begin(plan, restart=kwargs.pop("restart", False))
        async with make_client(emu, **kwargs) as client:
            report = await run_backfill(plan, client, store)
        write_outputs(job, plan, store)
    return report


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_backfill_writes_every_chunk_and_a_rerun_does_nothing(
    tmp_path: Path, emulator: Emulator
) -> None:
    job_path = write_job(tmp_path)
    report = await backfill(job_path, emulator)
    assert report.complete
    assert not report.failures
    assert report.resumed == 0
    rows = read_rows(tmp_path / "out" / "rows.jsonl")
    keys = [(r["query"], r["label"], r["date"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys))
    dau = [r for r in rows if r["query"] == "dau"]
    assert [r["date"] for r in dau] == [(START + timedelta(days=k)).isoformat() for k in range(61)]
    # Cohort endpoints get real dates (retention's "Sep 6, 2026", LTV's "Sep 1").
    assert {r["date"][:4] for r in rows if r["query"] in ("retention", "ltv")} == {"2026"}
    csv_lines = (tmp_path / "out" / "rows.csv").read_text().splitlines()
    assert csv_lines[0] == "query,label,date,metric,value"
    assert len(csv_lines) == len(rows) + 1
    sent = len(emulator.requests)
    again = await backfill(job_path, emulator)
    assert again.complete
    assert again.resumed == again.total
    assert len(emulator.requests) == sent
    assert read_rows(tmp_path / "out" / "rows.jsonl") == rows


async def test_a_changed_job_is_explained_and_restart_starts_over(
    tmp_path: Path, emulator: Emulator
) -> None:
    job_path = write_job(tmp_path)
    await backfill(job_path, emulator)
    write_job(tmp_path, JOB.replace('metric = "totals"', 'metric = "uniques"'))
    with pytest.raises(JobChanged) as caught:
        await backfill(job_path, emulator)
    message = str(caught.value)
    assert "query 'purchases': m totals -> uniques" in message
    assert "--restart" in message
    write_job(tmp_path, JOB.replace("chunk_days = 10", "chunk_days = 20"))
    with pytest.raises(JobChanged, match=r"chunks 2026-09-01\.\.2026-10-31 in 7 ->"):
        await backfill(job_path, emulator)
    report = await backfill(job_path, emulator, restart=True)
    assert report.complete
    assert report.resumed == 0


async def test_failed_chunks_are_reported_and_retried_on_the_next_run(tmp_path: Path) -> None:
    clean_dir, flaky_dir = tmp_path / "clean", tmp_path / "flaky"
    clean_dir.mkdir()
    flaky_dir.mkdir()
    async with Emulator(DATASET, limits=LIMITS) as emu:
        await backfill(write_job(clean_dir), emu)
    faults = Faults(error_rate=0.4, error_statuses=(503,), seed=7)
    async with Emulator(DATASET, limits=LIMITS, faults=faults) as emu:
        first = await backfill(write_job(flaky_dir), emu, max_retries=0)
    assert first.failures
    assert not first.complete
    assert all("503" in message for _, message in first.failures)
    with CheckpointStore(flaky_dir / "out") as store:
        assert set(store.failures()) == {key for key, _ in first.failures}
        assert len(store.done()) == first.done
    async with Emulator(DATASET, limits=LIMITS) as emu:
        second = await backfill(flaky_dir / "job.toml", emu)
        # Only the chunks not done were asked again.
        assert len(emu.requests) == len(first.failures)
    assert second.complete
    assert second.resumed == first.done
    assert read_rows(flaky_dir / "out" / "rows.jsonl") == read_rows(
        clean_dir / "out" / "rows.jsonl"
    )


# -- SIGKILL at random moments ----------------------------------------------------------------

KILL_JOB = """
start = 2026-09-01
end = 2027-02-27
chunk_days = 3
output = "out"
formats = ["jsonl", "csv", "parquet"]

[[queries]]
name = "purchases"
endpoint = "event_segmentation"
events = ["Purchase"]
metric = "totals"
group_by = ["country"]

[[queries]]
name = "views"
endpoint = "event_segmentation"
events = ["View Item"]
group_by = ["platform"]

[[queries]]
name = "dau"
endpoint = "active_users"

[[queries]]
name = "searches"
endpoint = "event_segmentation"
events = ["Search"]
metric = "totals"
group_by = ["country", "platform"]

[emulator]
users = 200
time_scale = 0.001
"""


def test_sigkill_after_observed_progress_then_resume_loses_and_repeats_nothing(
    tmp_path: Path,
) -> None:
    pq = pytest.importorskip("pyarrow.parquet")  # the job writes Parquet too
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    for directory in (reference, killed):
        directory.mkdir()
        write_job(directory, KILL_JOB)
    code, _out, err = run(reference, "--emulator")
    assert code == 0, err
    plan = plan_job(load_job(killed / "job.toml"), Limits().scaled(0.001))
    total = len(plan.tasks)
    seed = random.randrange(2**32)  # shown on failure, to replay the same kill points
    rng = random.Random(seed)
    # Each kill waits for a random number of newly committed chunks, so it lands mid-run
    # however long the start-up takes; the run needs several 0.3 s windows, so it is still
    # going when the signal arrives.
    after_kill = []
    for low, high in (
        (1, total // 4),
        (total // 4 + 1, total // 2),
        (total // 2 + 1, 3 * total // 4),
    ):
        process = start(killed, "--emulator")
        wait_for_progress(process, killed / "out", rng.randint(low, high))
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=PATIENCE)
        assert process.returncode == -signal.SIGKILL, seed
        after_kill.append(committed(killed / "out"))
    assert after_kill == sorted(after_kill), seed
    assert 0 < after_kill[0] < total, (after_kill, total, seed)
    code, out, err = run(killed, "--emulator")
    assert code == 0, err
    assert f"({after_kill[-1]} from earlier runs)" in out
    expected = read_rows(reference / "out" / "rows.jsonl")
    assert read_rows(killed / "out" / "rows.jsonl") == expected
    assert (killed / "out" / "rows.csv").read_text() == (reference / "out" / "rows.csv").read_text()
    parquet = pq.read_table(killed / "out" / "rows.parquet")
    assert parquet.equals(pq.read_table(reference / "out" / "rows.parquet"))
    assert parquet.num_rows == len(expected)
    # The store agrees with the files: one row per stored row, every chunk done once.
    with CheckpointStore(killed / "out") as store:
        assert store.done() == {t.key for t in plan.tasks}
        assert sum(1 for _ in store.rows(plan.names)) == len(expected)


# -- the checkpoint store under misuse ---------------------------------------------------------


def test_one_writer_per_checkpoint_and_the_lock_names_its_holder(tmp_path: Path) -> None:
    with CheckpointStore(tmp_path, owner="first.toml") as store:
        with pytest.raises(CheckpointLocked) as caught:
            CheckpointStore(tmp_path, owner="second.toml")
        assert caught.value.pid == os.getpid()
        assert caught.value.job == "first.toml"
        # Not even to start over.
        with pytest.raises(CheckpointLocked):
            CheckpointStore(tmp_path, restart=True)
        # Readers need no lock.
        reader = CheckpointStore.existing(tmp_path)
        assert reader is not None
        reader.close()
        store.done()
    with CheckpointStore(tmp_path, owner="second.toml"):
        pass


def test_a_checkpoint_is_bound_to_its_target(tmp_path: Path) -> None:
    job = load_job(write_job(tmp_path))
    plan = plan_job(job, LIMITS)
    emulated = Target.emulator(seed=1, users=300, start=START, days=61)
    api = Target.api("https://amplitude.com/", "key-1")
    assert api.settings["key_sha256"] == key_fingerprint("key-1") != key_fingerprint("key-2")
    assert "key-1" not in api.to_json()
    with CheckpointStore(job.output) as store:
        store.begin(plan, target=emulated)
        # No chunk done yet: another target may still take it over.
        store.begin(plan, target=api)
        store.complete(plan.tasks[0], [])
        for other in (emulated, Target.api("https://amplitude.com", "key-2"), None):
            with pytest.raises(TargetChanged, match="--restart") as caught:
                store.begin(plan, target=other)
            assert caught.value.old == api
            assert caught.value.done == 1
        store.begin(plan, target=Target.api("https://amplitude.com", "key-1"))
        store.begin(plan, target=emulated, restart=True)
        assert store.target() == emulated
        assert store.done() == set()


def spoil_garbage(path: Path) -> None:
    path.write_bytes(os.urandom(4096))


def spoil_truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def spoil_foreign(path: Path) -> None:
    path.unlink()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE rows (x)")
        db.commit()


@pytest.mark.parametrize("spoil", [spoil_garbage, spoil_truncated, spoil_foreign])
def test_a_corrupt_checkpoint_is_refused_on_open_and_restart_recovers(
    tmp_path: Path, spoil: Callable[[Path], None]
) -> None:
    job = load_job(write_job(tmp_path))
    plan = plan_job(job, LIMITS)
    rows = [TidyRow(t.name, "x" * 200, "2026-09-01", "m", i) for i, t in enumerate(plan.tasks)]
    with CheckpointStore(job.output) as store:
        store.begin(plan)
        for task in plan.tasks:
            store.complete(task, rows * 5)
    spoil(job.output / CHECKPOINT_NAME)
    with pytest.raises(CorruptCheckpoint) as caught:
        CheckpointStore(job.output)
    assert caught.value.path == job.output / CHECKPOINT_NAME
    assert "--restart" in str(caught.value)
    # The failed open left the lock free.
    with CheckpointStore(job.output, restart=True) as store:
        store.begin(plan)
        assert store.done() == set()


def test_ranges_and_plans_are_capped_before_planning(tmp_path: Path) -> None:
    base: dict[str, Any] = {
        "start": "00010101",
        "end": "99991231",
        "queries": [{"name": "d", "endpoint": "active_users"}],
    }
    with pytest.raises(InvalidQuery, match="at most 7305") as caught:
        parse_job(base)
    assert caught.value.field == "end"
    own = {**base, "start": START, "end": START}
    own["queries"] = [{**base["queries"][0], "start": "20000101", "end": "20500101"}]
    with pytest.raises(InvalidQuery, match="at most 7305"):
        parse_job(own)
    many = {
        "start": date(2000, 1, 1),
        "end": date(2019, 12, 31),
        "chunk_days": 1,
        "queries": [
            {"name": f"q{i}", "endpoint": "active_users"} for i in range(MAX_CHUNKS // 7000)
        ],
    }
    with pytest.raises(InvalidQuery, match=f"more than {MAX_CHUNKS} chunks") as caught:
        plan_job(parse_job(many), Limits())
    assert caught.value.field == "chunk_days"


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({"time_scale": float("nan")}, "emulator.time_scale"),
        ({"time_scale": float("inf")}, "emulator.time_scale"),
        ({"time_scale": 0}, "emulator.time_scale"),
        ({"users": 0}, "emulator.users"),
        ({"users": 10**9}, "emulator.users"),
        ({"days": 10**6}, "emulator.days"),
        ({"seed": 1.5}, "emulator.seed"),
    ],
)
def test_emulator_settings_are_checked(table: dict[str, object], field: str) -> None:
    data: dict[str, Any] = {
        "start": START,
        "end": START,
        "queries": [{"name": "d", "endpoint": "active_users"}],
        "emulator": table,
    }
    with pytest.raises(InvalidQuery) as caught:
        parse_job(data)
    assert caught.value.field == field


def test_the_source_setting(tmp_path: Path) -> None:
    assert load_job(write_job(tmp_path)).data_source == "amplitude"
    emulated = load_job(write_job(tmp_path, 'source = "emulator"\n' + JOB))
    assert emulated.data_source == "emulator"
    with pytest.raises(InvalidQuery, match="expected one of amplitude, emulator") as caught:
        load_job(write_job(tmp_path, 'source = "synthetic"\n' + JOB))
    assert caught.value.field == "source"


def test_a_daily_job_longer_than_a_year_is_planned_in_chunks() -> None:
    # A backfill exists to cover ranges no single request may (daily segmentation: a year).
    job = parse_job(
        {
            "start": date(2024, 1, 1),
            "end": date(2025, 12, 31),
            "chunk_days": 30,
            "queries": [{"name": "p", "endpoint": "event_segmentation", "events": ["Purchase"]}],
        }
    )
    plan = plan_job(job, Limits())
    assert plan.tasks[0].start == date(2024, 1, 1)
    assert plan.tasks[-1].end == date(2025, 12, 31)
    assert all(t.start and t.end and (t.end - t.start).days < 30 for t in plan.tasks)
