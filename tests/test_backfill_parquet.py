"""Backfills written as Parquet: the same rows as JSON lines and CSV, typed, resumable."""

from __future__ import annotations

import asyncio
import csv
import json
import sys
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from amplitude_async.backfill import (
    PARQUET_COLUMNS,
    CheckpointStore,
    ChunkTask,
    Target,
    TidyRow,
    load_job,
    plan_job,
    run_backfill,
    write_outputs,
    write_parquet_rows,
)
from amplitude_async.cli import main
from amplitude_async.client import AmplitudeClient
from amplitude_async.frames import arrow_schema
from amplitude_async.limits import Limits
from amplitude_async.retry import RetryPolicy
from amplitude_async.testing.dataset import SyntheticDataset
from amplitude_async.testing.emulator import Emulator

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

LIMITS = Limits().scaled(0.002)
START = date(2026, 9, 1)
DATASET = SyntheticDataset(seed=3, users=200, days=40, start=START)
TARGET = Target.emulator(seed=3, users=200, start=START, days=40)

JOB = """
start = 2026-09-01
end = 2026-10-10
chunk_days = 10
output = "out"
formats = ["jsonl", "csv", "parquet"]

[[queries]]
name = "purchases"
endpoint = "event_segmentation"
events = ["Purchase"]
metric = "totals"
group_by = ["country"]

[[queries]]
name = "hourly"
endpoint = "event_segmentation"
events = ["Purchase"]
interval = "hourly"
start = 2026-09-01
end = 2026-09-03

[[queries]]
name = "retention"
endpoint = "retention"
start_event = "Sign Up"
return_event = "_active"

[[queries]]
name = "lengths"
endpoint = "session_length_distribution"

[[queries]]
name = "events"
endpoint = "events_list"
"""


def write_job(directory: Path, text: str = JOB) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "job.toml"
    path.write_text(text, encoding="utf-8")
    return path


def make_client(emulator: Emulator) -> AmplitudeClient:
    return AmplitudeClient(
        emulator.api_key,
        emulator.secret_key,
        base_url=emulator.url,
        limits=LIMITS,
        retry_policy=RetryPolicy(max_retries=3, backoff_base=0.002, backoff_cap=0.1),
        timeout=10,
    )


class StoppingStore(CheckpointStore):
    """A checkpoint store that sets ``stop`` once ``after`` chunks are committed: an
    interruption at a known point."""

    def __init__(self, directory: Path, stop: asyncio.Event, after: int) -> None:
        super().__init__(directory)
        self.stop = stop
        self.after = after

    def complete(self, task: ChunkTask, rows: Sequence[TidyRow]) -> None:
        super().complete(task, rows)
        if len(self.done()) >= self.after:
            self.stop.set()


async def backfill(job_path: Path, emulator: Emulator, *, stop_after: int | None = None) -> Any:
    job = load_job(job_path)
    plan = plan_job(job, LIMITS)
    stop = asyncio.Event()
    store = (
        CheckpointStore(job.output)
        if stop_after is None
        else StoppingStore(job.output, stop, stop_after)
    )
    with store:
        store.begin(plan, target=TARGET)
        async with make_client(emulator) as client:
            report = await run_backfill(plan, client, store, stop=stop, lookahead=2)
        write_outputs(job, plan, store)
    return report


def jsonl_rows(path: Path) -> list[tuple[Any, ...]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [tuple(json.loads(line).values()) for line in lines]


def number(text: str) -> float | None:
    return float(text) if text else None


def csv_rows(path: Path) -> list[tuple[Any, ...]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [
            (r["query"], r["label"], r["date"], r["metric"], number(r["value"]))
            for r in csv.DictReader(handle)
        ]


def parquet_rows(path: Path) -> list[tuple[Any, ...]]:
    table = pq.read_table(path)
    return [(r["query"], r["label"], r["x"], r["metric"], r["value"]) for r in table.to_pylist()]


@pytest.fixture
async def emulator() -> Any:
    async with Emulator(DATASET, limits=LIMITS) as emu:
        yield emu


async def test_the_three_formats_hold_the_same_rows_and_parquet_keeps_the_types(
    tmp_path: Path, emulator: Emulator
) -> None:
    report = await backfill(write_job(tmp_path), emulator)
    assert report.complete
    out = tmp_path / "out"
    from_jsonl = jsonl_rows(out / "rows.jsonl")
    assert from_jsonl
    assert csv_rows(out / "rows.csv") == from_jsonl
    assert parquet_rows(out / "rows.parquet") == from_jsonl
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"]["rows.parquet"] == len(from_jsonl)
    assert manifest["parquet_columns"]["date"] == "date"

    table = pq.read_table(out / "rows.parquet")
    assert table.schema.equals(arrow_schema(PARQUET_COLUMNS))
    kinds = set()
    for row in table.to_pylist():
        x = row["x"]
        if "T" in x:
            kinds.add("hour")
            assert row["timestamp"] == datetime.fromisoformat(x)
            assert row["date"] == row["timestamp"].date()
        elif x:
            kinds.add("day")
            assert row["date"] == date.fromisoformat(x)
            assert row["timestamp"] is None
        else:
            kinds.add("none")  # the events list has no dates
            assert row["date"] is None
            assert row["timestamp"] is None
        assert row["source"] == TARGET.describe()
    assert kinds == {"hour", "day", "none"}
    hourly = [r for r in table.to_pylist() if r["query"] == "hourly"]
    assert [r["timestamp"] for r in hourly] == [
        datetime(2026, 9, 1) + timedelta(hours=h) for h in range(72)
    ]


async def test_a_resumed_backfill_writes_the_same_parquet_as_an_uninterrupted_one(
    tmp_path: Path, emulator: Emulator
) -> None:
    whole = await backfill(write_job(tmp_path / "whole"), emulator)
    assert whole.complete
    job_path = write_job(tmp_path / "resumed")
    first = await backfill(job_path, emulator, stop_after=3)
    assert first.interrupted
    assert 3 <= first.done < first.total
    # The interrupted run's file holds what was done; the resumed one's holds it all.
    partial = pq.read_table(tmp_path / "resumed" / "out" / "rows.parquet")
    expected = pq.read_table(tmp_path / "whole" / "out" / "rows.parquet")
    assert 0 < partial.num_rows < expected.num_rows
    second = await backfill(job_path, emulator)
    assert second.complete
    assert second.resumed == first.done
    assert pq.read_table(tmp_path / "resumed" / "out" / "rows.parquet").equals(expected)


def test_empty_cells_are_nulls_in_every_format(tmp_path: Path) -> None:
    job = load_job(write_job(tmp_path))
    plan = plan_job(job, LIMITS)
    task = plan.tasks[0]
    rows = [
        TidyRow(task.name, "DE", "2026-09-01", "totals", None),
        TidyRow(task.name, "DE", "2026-09-02", "totals", 3),
        TidyRow(task.name, "FR", "2026-09-01T05:00:00", "totals", 0.5),
    ]
    with CheckpointStore(job.output) as store:
        store.begin(plan)
        store.complete(task, rows)
        write_outputs(job, plan, store)
    table = pq.read_table(job.output / "rows.parquet")
    assert table.column("value").to_pylist() == [None, 3.0, 0.5]
    assert table.column("date").to_pylist() == [
        date(2026, 9, 1),
        date(2026, 9, 2),
        date(2026, 9, 1),
    ]
    assert table.column("timestamp").to_pylist() == [None, None, datetime(2026, 9, 1, 5)]
    assert table.column("source").to_pylist() == [None] * 3  # no target recorded
    assert [r[-1] for r in csv_rows(job.output / "rows.csv")] == [None, 3.0, 0.5]
    assert [r[-1] for r in jsonl_rows(job.output / "rows.jsonl")] == [None, 3, 0.5]


def test_rows_are_written_in_row_groups_as_they_stream(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    read = []

    def rows() -> Any:
        for i in range(1050):
            read.append(i)
            yield TidyRow("q", f"l{i % 7}", "2026-09-01", "m", i)

    write_parquet_rows(path, rows(), source="s", row_group_rows=100)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == len(read) == 1050
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [100] * 10 + [50]


def test_without_pyarrow_a_parquet_job_is_refused_before_anything_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    job_path = write_job(tmp_path, 'source = "emulator"\n' + JOB)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes "import pyarrow" fail
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert main(["backfill", str(job_path)]) == 2
    err = capsys.readouterr().err
    assert "formats[2]" in err
    assert "pip install 'amplitude-async[parquet]'" in err
    assert not (tmp_path / "out").exists()  # no checkpoint, no request, no file
