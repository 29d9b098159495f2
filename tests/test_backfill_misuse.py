"""Backfills under misuse, as real processes: concurrent runs, a killed lock holder, a switched
target, a corrupt checkpoint, no credentials."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from backfillprocess import PATIENCE, clean_env, committed, run, start, wait_for_progress

from amplitude_async.backfill import (
    CHECKPOINT_NAME,
    LOCK_NAME,
    MANIFEST_NAME,
    key_fingerprint,
    load_job,
    plan_job,
)
from amplitude_async.limits import Limits
from amplitude_async.testing.dataset import SyntheticDataset
from amplitude_async.testing.emulator import Emulator

# 240 days: cost 1440, more than one window of 1000. At time_scale 1 the first window's
# chunks finish at once and the rest wait five minutes: a run that is reliably still going
# (holding its lock) once progress has been seen, whatever the machine's load.
SLOW_JOB = """
start = 2026-09-01
end = 2027-04-28
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

[emulator]
users = 100
time_scale = 1.0
"""

# Small and fast: 6 chunks, at a 0.3 s window.
SMALL_JOB = """
start = 2026-09-01
end = 2026-09-30
chunk_days = 10
output = "out"

[[queries]]
name = "dau"
endpoint = "active_users"

[[queries]]
name = "purchases"
endpoint = "event_segmentation"
events = ["Purchase"]
metric = "totals"

[emulator]
seed = 3
users = 100
time_scale = 0.001
"""


def write_job(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "job.toml"
    path.write_text(text, encoding="utf-8")
    return path


def chunk_count(directory: Path, scale: float) -> int:
    return len(plan_job(load_job(directory / "job.toml"), Limits().scaled(scale)).tasks)


def rows(directory: Path) -> list[dict[str, object]]:
    text = (directory / "out" / "rows.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("amplitude-async: error: "), err
    return lines[0]


# -- one run per checkpoint ------------------------------------------------------------------


def test_a_second_run_exits_2_naming_the_holder_and_restart_is_refused_too(
    tmp_path: Path,
) -> None:
    job = write_job(tmp_path, SLOW_JOB)
    first = start(tmp_path, "--emulator")
    try:
        wait_for_progress(first, tmp_path / "out", 1)
        for extra in ((), ("--restart",)):
            code, out, err = run(tmp_path, "--emulator", *extra)
            assert code == 2, (extra, out, err)
            line = one_line(err)
            assert f"in use by pid {first.pid}" in line
            assert str(job.resolve()) in line
            assert "Traceback" not in err
        # The refused --restart deleted nothing: the first run's chunks are still there.
        assert committed(tmp_path / "out") >= 1
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGINT)
        _out, err = first.communicate(timeout=PATIENCE)
    assert first.returncode == 130, err
    saved = committed(tmp_path / "out")
    assert 0 < saved < chunk_count(tmp_path, 1.0)
    # A dry run reads without the lock; the next run resumes where the first stopped.
    code, out, err = run(tmp_path, "--emulator", "--dry-run")
    assert code == 0, err
    assert f"{saved} chunks already done" in out


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path: Path) -> None:
    # Two windows of 0.3 s: killed after its first commit, the run cannot have finished.
    write_job(tmp_path, SLOW_JOB.replace("time_scale = 1.0", "time_scale = 0.001"))
    first = start(tmp_path, "--emulator")
    seen = wait_for_progress(first, tmp_path / "out", 1)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=PATIENCE)
    holder = json.loads((tmp_path / "out" / LOCK_NAME).read_text())
    assert holder["pid"] == first.pid  # the file still names the dead holder
    saved = committed(tmp_path / "out")
    assert saved >= seen
    assert saved < chunk_count(tmp_path, 0.001)
    code, out, err = run(tmp_path, "--emulator")
    assert code == 0, err
    total = chunk_count(tmp_path, 0.001)
    assert f"done: {total}/{total} chunks ({saved} from earlier runs)" in out
    assert committed(tmp_path / "out") == total


# -- synthetic data only when asked ----------------------------------------------------------


def test_without_credentials_a_backfill_exits_2_naming_every_way(tmp_path: Path) -> None:
    write_job(tmp_path, SMALL_JOB)
    code, out, err = run(tmp_path)
    assert code == 2
    line = one_line(err)
    for words in ("AMPLITUDE_API_KEY", "AMPLITUDE_SECRET_KEY", "--emulator", 'source = "emulator"'):
        assert words in line
    assert not (tmp_path / "out").exists()
    # The plan alone costs nothing: a dry run shows it, and says a run needs credentials.
    code, out, err = run(tmp_path, "--dry-run")
    assert code == 0, err
    assert "target: https://amplitude.com (no credentials set: a run needs them)" in out
    assert "total cost" in out
    # Asked for, either way, it runs.
    code, out, err = run(tmp_path, "--emulator")
    assert code == 0, err
    assert "target: the built-in emulator (--emulator" in out
    write_job(tmp_path / "b", 'source = "emulator"\n' + SMALL_JOB)
    code, out, err = run(tmp_path / "b")
    assert code == 0, err
    assert rows(tmp_path / "b") == rows(tmp_path)


# -- bound to its target ---------------------------------------------------------------------


@pytest.fixture
def amplitude_emulator_options() -> dict[str, Any]:
    dataset = SyntheticDataset(seed=5, users=100, days=30, start=date(2026, 9, 1))
    return {"dataset": dataset, "limits": Limits().scaled(0.01)}


@pytest.fixture
def emulator(amplitude_emulator: Emulator) -> Emulator:
    """The emulator of the project's pytest plugin, with this module's options."""
    return amplitude_emulator


async def arun(directory: Path, *args: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run a backfill while this event loop keeps serving the emulator."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "amplitude_async",
        "backfill",
        "job.toml",
        *args,
        cwd=directory,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), PATIENCE)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_switched_target_is_refused_and_restart_binds_the_new_one(
    tmp_path: Path, emulator: Emulator
) -> None:
    write_job(tmp_path, SMALL_JOB)
    code, _out, err = await arun(tmp_path, "--emulator", env=clean_env())
    assert code == 0, err
    synthetic = rows(tmp_path)
    api = clean_env(AMPLITUDE_API_KEY=emulator.api_key, AMPLITUDE_SECRET_KEY=emulator.secret_key)
    args = ("--base-url", emulator.url)
    code, out, err = await arun(tmp_path, *args, env=api)
    assert code == 2, out
    line = one_line(err)
    assert "holds 6 chunk(s) from the built-in emulator (seed 3" in line
    assert f"this run targets {emulator.url}" in line
    assert "--restart" in line
    assert emulator.requests == []  # refused before anything was sent
    assert rows(tmp_path) == synthetic

    # Another dataset for the emulator is another target too.
    write_job(tmp_path, SMALL_JOB.replace("seed = 3", "seed = 4"))
    code, _out, err = await arun(tmp_path, "--emulator", env=clean_env())
    assert code == 2
    assert "(seed 3" in one_line(err)
    assert "(seed 4" in one_line(err)

    write_job(tmp_path, SMALL_JOB)
    code, out, err = await arun(tmp_path, *args, "--restart", env=api)
    assert code == 0, err
    assert len(emulator.requests) == 6
    assert rows(tmp_path) != synthetic
    manifest = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    assert manifest["target"] == {
        "kind": "api",
        "base_url": emulator.url,
        "key_sha256": key_fingerprint(emulator.api_key),
    }
    assert manifest["chunks"] == {"total": 6, "done": 6, "failed": 0}
    assert manifest["files"]["rows.jsonl"] == len(rows(tmp_path))
    # The key itself is written nowhere.
    for name in (CHECKPOINT_NAME, MANIFEST_NAME, LOCK_NAME, "rows.csv", "rows.jsonl"):
        data = (tmp_path / "out" / name).read_bytes()
        assert emulator.api_key.encode() not in data
        assert emulator.secret_key.encode() not in data
    # Resuming against the same target works; the emulator is asked nothing more.
    code, out, err = await arun(tmp_path, *args, env=api)
    assert code == 0, err
    assert "(6 from earlier runs)" in out
    assert len(emulator.requests) == 6


# -- a corrupt checkpoint --------------------------------------------------------------------


def garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xffnot sqlite at all\x13" * 200)


def truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def foreign(path: Path) -> None:
    path.unlink()
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE chunks (id INTEGER, payload BLOB)")


@pytest.mark.parametrize("spoil", [garbage, truncated, foreign])
async def test_a_corrupt_checkpoint_is_named_spends_nothing_and_restart_recovers(
    tmp_path: Path, emulator: Emulator, spoil: object
) -> None:
    write_job(tmp_path, SMALL_JOB)
    api = clean_env(AMPLITUDE_API_KEY=emulator.api_key, AMPLITUDE_SECRET_KEY=emulator.secret_key)
    args = ("--base-url", emulator.url)
    code, _out, err = await arun(tmp_path, *args, env=api)
    assert code == 0, err
    good = rows(tmp_path)
    sent = len(emulator.requests)
    checkpoint = tmp_path / "out" / CHECKPOINT_NAME
    assert callable(spoil)
    spoil(checkpoint)
    for extra in ((), ("--dry-run",)):
        code, out, err = await arun(tmp_path, *args, *extra, env=api)
        assert code == 2, out
        line = one_line(err)
        assert f"checkpoint out/{CHECKPOINT_NAME} is unreadable" in line
        assert "--restart" in line
    assert len(emulator.requests) == sent
    code, out, err = await arun(tmp_path, *args, "--restart", env=api)
    assert code == 0, err
    assert "(0 from earlier runs)" in out
    assert rows(tmp_path) == good
