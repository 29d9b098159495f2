"""The command line, through real subprocesses (``python -m amplitude_async``)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import backfillprocess
import pytest

from amplitude_async.limits import Limits
from amplitude_async.testing.dataset import SyntheticDataset
from amplitude_async.testing.emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "backfill.toml"


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AMPLITUDE_")}


def cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amplitude_async", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env() if env is None else env,
        timeout=120,
    )


WEEK = ("--start", "2026-09-01", "--end", "2026-09-07")


def test_help_documents_the_exit_codes() -> None:
    done = cli("--help")
    assert done.returncode == 0
    for code in ("0", "1", "2", "3", "4", "130"):
        assert f"\n  {code} " in done.stdout
    assert "backfill" in done.stdout
    assert "emulator" in done.stdout


def test_query_prints_a_table_from_the_emulator() -> None:
    done = cli(
        "query",
        "event_segmentation",
        "--emulator",
        "--events",
        "Purchase",
        *WEEK,
        "--metric",
        "totals",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["label", "x", "value"]
    assert [line.split()[1] for line in lines[1:]] == [f"2026-09-0{d}" for d in range(1, 8)]


def test_query_json_output_and_split() -> None:
    # 181 days x (1 + 8 conditions) = 1629: too much for one window; --split runs 2 chunks.
    args = (
        "query",
        "event_segmentation",
        "--emulator",
        "--format",
        "json",
        "--json",
        '{"events": ["Purchase"], "metric": "totals"}',
        "--group-by",
        "country",
        "--group-by",
        "platform",
        "--start",
        "2026-09-01",
        "--end",
        "2027-02-28",
    )
    refused = cli(*args)
    assert refused.returncode == 2
    assert "split" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    done = cli(*args, "--split")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert len(body["data"]["xValues"]) == 181


def test_cost_says_whether_a_query_fits() -> None:
    done = cli(
        "cost",
        "event_segmentation",
        "--events",
        "Purchase",
        "--metric",
        "totals",
        "--start",
        "2026-01-01",
        "--end",
        "2026-12-31",
        "--group-by",
        "country",
        "--group-by",
        "platform",
    )
    assert done.returncode == 0, done.stderr
    assert "cost: 3285 over 365 day(s)" in done.stdout
    assert "does NOT fit" in done.stdout
    assert "4 date chunks" in done.stdout
    small = cli("cost", "active_users", *WEEK)
    assert "cost: 7" in small.stdout
    assert "window: fits" in small.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            (
                "query",
                "event_segmentation",
                "--events",
                "Purchase",
                "--start",
                "2026-13-01",
                "--end",
                "2026-09-07",
            ),
            "start",
        ),
        (("query", "event_segments", *WEEK), "unknown endpoint"),
        (
            ("cost", "event_segmentation", "--events", "Purchase", *WEEK, "--metric", "mean"),
            "metric",
        ),
        (("cost", "funnel", "--events", "Sign Up", *WEEK), "at least 2 steps"),
        (("backfill", "missing.toml"), "cannot read"),
        (("backfill", "x.toml", "--bogus"), "unrecognized arguments"),
        (("frobnicate",), "invalid choice"),
        (("query", "active_users", *WEEK), "pass --emulator for synthetic data"),
        (("query", "active_users", *WEEK, "--emulator", "--base-url", "http://h"), "exclude"),
        (("cost", "event_segmentation", "--json", "[" * 100_000), "--json: nested too deeply"),
        (
            ("cost", "event_segmentation", *WEEK, "--events", "[" * 50_000 + "]" * 50_000),
            "events: JSON nested too deeply",
        ),
        (("emulator", "--time-scale", "nan"), "--time-scale: expected a positive finite number"),
        (("emulator", "--time-scale", "inf"), "--time-scale: expected a positive finite number"),
        (("emulator", "--time-scale", "-1"), "--time-scale: expected a positive finite number"),
        (("emulator", "--users", "0"), "--users: expected a positive integer"),
        (("emulator", "--days", "100000"), "--days: at most 3660"),
        (("emulator", "--port", "70000"), "--port: expected 0 to 65535"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args: tuple[str, ...], words: str) -> None:
    done = cli(*args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("amplitude-async")
    assert words in lines[0]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "url", ["not a url", "ftp://example.com", "http://", "http://host:99999", "http://a b"]
)
def test_a_bad_base_url_is_refused_before_any_request(url: str) -> None:
    env = clean_env() | {"AMPLITUDE_API_KEY": "k", "AMPLITUDE_SECRET_KEY": "s"}
    done = cli("query", "active_users", *WEEK, "--base-url", url, env=env)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert f"--base-url {url!r} is not an http(s) URL" in line


DEEP_TOML = "a = " + "[" * 100_000 + "]" * 100_000 + "\n"
YEARS_TOML = """
start = 0001-01-01
end = 9999-12-31
chunk_days = 1
[[queries]]
name = "dau"
endpoint = "active_users"
"""
MANY_CHUNKS_TOML = "start = 2000-01-01\nend = 2019-12-31\nchunk_days = 1\n" + "".join(
    f'[[queries]]\nname = "q{i}"\nendpoint = "active_users"\n' for i in range(20)
)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (bytes(range(256)) * 8, "job.toml is not a text file"),
        (DEEP_TOML.encode(), "job.toml is nested too deeply to read"),
        (YEARS_TOML.encode(), "spans 3652059 days; a backfill covers at most 7305"),
        (MANY_CHUNKS_TOML.encode(), "the plan would have more than 100000 chunks"),
    ],
)
def test_hostile_job_files_are_bad_input(tmp_path: Path, content: bytes, words: str) -> None:
    (tmp_path / "job.toml").write_bytes(content)
    for extra in ((), ("--dry-run", "--emulator")):
        done = cli("backfill", "job.toml", *extra, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert words in line
        assert "unexpected" not in line
    assert not (tmp_path / "backfill-output").exists()


def test_output_into_a_closed_pipe_ends_quietly() -> None:
    # Like "| head": the reader is gone before the answer is printed.
    process = subprocess.Popen(
        [sys.executable, "-m", "amplitude_async", "query", "active_users", *WEEK, "--emulator"],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.close()
    _out, err = process.communicate(timeout=120)
    assert err == b""
    assert process.returncode == 141


def test_a_bad_job_file_names_the_field(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text(EXAMPLE.read_text().replace('metric = "totals"', 'metric = "total"'))
    done = cli("backfill", str(job), "--dry-run")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert '"purchases_by_country".metric' in line


def test_backfill_dry_run_of_the_example_shows_the_plan(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "job.toml")
    done = cli("backfill", "job.toml", "--dry-run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert 'target: the built-in emulator (source = "emulator" in the job file' in done.stdout
    assert "total cost" in done.stdout
    assert "ETA" in done.stdout
    assert not (tmp_path / "backfill-output").exists()


def test_example_job_runs_and_ctrl_c_resumes(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "job.toml")
    process = backfillprocess.start(tmp_path)
    # Interrupt after the first committed chunk: the job needs three budget windows, so the
    # run is still going when the signal arrives.
    output = tmp_path / "backfill-output"
    backfillprocess.wait_for_progress(process, output, 1)
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=backfillprocess.PATIENCE)
    assert process.returncode == 130, err
    assert "run 'amplitude-async backfill job.toml' again to resume" in err
    saved = backfillprocess.committed(output)
    assert f"interrupted: {saved} of 49 chunks saved" in err
    assert 0 < saved < 49
    done = cli("backfill", "job.toml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"done: 49/49 chunks ({saved} from earlier runs)" in done.stdout
    rows = (output / "rows.jsonl").read_text().splitlines()
    assert rows
    assert all(json.loads(r).keys() == {"query", "label", "date", "metric", "value"} for r in rows)
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["target"]["kind"] == "emulator"
    assert manifest["files"] == {"rows.jsonl": len(rows), "rows.csv": len(rows)}


@pytest.fixture
def amplitude_emulator_options() -> dict[str, Any]:
    dataset = SyntheticDataset(seed=2, users=100, days=14)
    return {"dataset": dataset, "limits": Limits().scaled(0.01)}


@pytest.fixture
def emulator(amplitude_emulator: Emulator) -> Emulator:
    """The emulator of the project's pytest plugin, with this module's options."""
    return amplitude_emulator


async def run_async(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "amplitude_async",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_query_against_a_server_with_keys_and_a_wrong_key(emulator: Emulator) -> None:
    env = clean_env() | {
        "AMPLITUDE_API_KEY": emulator.api_key,
        "AMPLITUDE_SECRET_KEY": emulator.secret_key,
    }
    code, out, err = await run_async(
        "query", "active_users", *WEEK, "--base-url", emulator.url, env=env
    )
    assert code == 0, err
    assert len(out.splitlines()) == 8
    assert emulator.requests[-1].status == 200
    code, out, err = await run_async(
        "query", "active_users", *WEEK, "--base-url", emulator.url, "--secret-key", "wrong", env=env
    )
    assert code == 3
    (line,) = err.strip().splitlines()
    assert "authentication failed" in line
    assert "wrong" not in line.split("failed")[0]
