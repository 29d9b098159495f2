"""Odd input at the edges: labels and indexes, dates at the calendar's end, credentials in URLs,
job files that are not files, the project's time zone, and the demo's processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from localserver import serve
from redisserver import RedisServer

from amplitude_async import (
    ActiveUsers,
    CachePolicy,
    ConfigurationError,
    EventSegmentation,
    Funnel,
    InvalidQuery,
    ResponseValidationError,
    Segment,
    Where,
)
from amplitude_async import demo as demo_module
from amplitude_async.backfill import CheckpointStore, load_job, parse_job
from amplitude_async.backfill.job import MAX_JOB_BYTES
from amplitude_async.cache import cache_ttl
from amplitude_async.converter import structure_result
from amplitude_async.results import (
    EventSegmentationResult,
    FunnelResult,
    SegmentMeta,
)
from amplitude_async.validation import EARLIEST_DATE, LATEST_DATE

ROOT = Path(__file__).resolve().parent.parent
PATIENCE = 120.0  # a guard against a hang, not a measure of speed


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMPLITUDE_")}
    return env | extra


def cli(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amplitude_async", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env(**env),
        timeout=PATIENCE,
        check=False,
    )


async def acli(*args: str, cwd: Path | None = None, **env: str) -> tuple[int, str, str]:
    """:func:`cli` while this event loop keeps serving."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "amplitude_async", *args, cwd=cwd, env=clean_env(**env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), PATIENCE)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


# -- labels and indexes -----------------------------------------------------------------------

DAY = date(2026, 9, 1)
TWO = EventSegmentation(
    ["A", "B"], DAY, DAY, segments=[Segment(), Segment(Where("country", "is", ["Chile"]))]
)


def segmentation(**data: Any) -> dict[str, Any]:
    return {"data": {"series": [[1]], "xValues": ["2026-09-01"], **data}}


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (segmentation(seriesMeta=[{"segmentIndex": -1}]), "data.seriesMeta[0]"),
        (segmentation(seriesMeta=[{"segmentIndex": 0, "eventIndex": -3}]), "data.seriesMeta[0]"),
    ],
)
def test_a_negative_index_fails_as_a_validation_error(body: Any, where: str) -> None:
    with pytest.raises(ResponseValidationError, match="must be an index") as caught:
        structure_result(body, EventSegmentationResult)
    assert caught.value.field == where
    funnel = {"data": [{"events": ["A"], "cumulativeRaw": [1], "cumulative": [1.0],
                        "meta": {"segmentIndex": -2}}]}  # fmt: skip
    with pytest.raises(ResponseValidationError, match="segmentIndex"):
        structure_result(funnel, FunnelResult)


def test_odd_labels_and_out_of_range_indexes_decode_to_names() -> None:
    cases = {
        "[-1]": (segmentation(seriesLabels=[-1]), "All Users; -1"),
        "[[-1, x]]": (segmentation(seriesLabels=[[-1, "x"]]), "All Users; -1, x"),
        "out of range": (
            segmentation(seriesMeta=[{"segmentIndex": 99, "eventIndex": 55}]),
            "Segment 100; event 56",
        ),
        "in range": (segmentation(seriesMeta=[{"segmentIndex": 1, "eventIndex": 1}]), None),
    }
    for name, (body, expected) in cases.items():
        result = structure_result(body, EventSegmentationResult)
        (row,) = result.rows(TWO)
        if expected is None:
            assert row.label == "country is Chile; B", name
        else:
            assert row.label == expected, name


indexes = st.none() | st.integers(-5, 40)
labels = st.text(max_size=3) | st.integers(-5, 40) | st.tuples(st.integers(-5, 40), st.text())


@settings(max_examples=200, deadline=None)
@given(
    labels=st.lists(labels, max_size=4),
    metas=st.lists(st.text(max_size=3) | st.builds(SegmentMeta, indexes, indexes), max_size=4),
    count=st.integers(0, 4),
)
def test_rows_name_every_series_whatever_its_labels(
    labels: list[Any], metas: list[Any], count: int
) -> None:
    # Built directly, bypassing the decoder's checks: naming alone must not fail either.
    result = EventSegmentationResult(
        x_values=("2026-09-01",),
        series=((1.0,),) * count,
        series_labels=tuple(labels),
        series_meta=tuple(metas),
    )
    for query in (TWO, None):
        rows = result.rows(query)
        assert len(rows) == count
        assert all(isinstance(row.label, str) and row.label for row in rows)


ODD_JOB = """
start = 2026-09-01
end = 2026-09-03
chunk_days = 1
output = "out"
formats = ["jsonl"]

[[queries]]
name = "views"
endpoint = "event_segmentation"
events = ["A"]
metric = "totals"
"""


async def test_a_backfill_marks_a_chunk_with_a_bad_index_failed_and_exits_4(
    tmp_path: Path,
) -> None:
    async def handler(request: web.Request) -> web.Response:
        day = datetime.strptime(request.query["start"], "%Y%m%d").date()
        body = segmentation(xValues=[day.isoformat()])
        if day == date(2026, 9, 2):
            body["data"]["seriesMeta"] = [{"segmentIndex": -1}]
        if day == date(2026, 9, 3):
            body["data"]["seriesLabels"] = [-1]
        return web.json_response(body)

    (tmp_path / "job.toml").write_text(ODD_JOB)
    keys = {"AMPLITUDE_API_KEY": "key", "AMPLITUDE_SECRET_KEY": "secret"}
    async with serve(handler) as url:
        code, _, err = await acli("backfill", "job.toml", "--base-url", url, cwd=tmp_path, **keys)
    assert code == 4, err
    assert "failed: views chunk 1" in err
    assert "segmentIndex must be an index" in err
    with CheckpointStore(tmp_path / "out") as store:
        assert set(store.failures()) == {("views", 1)}
        assert store.done() == {("views", 0), ("views", 2)}
    lines = (tmp_path / "out" / "rows.jsonl").read_text().splitlines()
    labels = {(row["date"], row["label"]) for row in map(json.loads, lines)}
    assert labels == {("2026-09-01", "A"), ("2026-09-03", "-1")}


# -- credentials in --base-url ----------------------------------------------------------------


@pytest.mark.parametrize("command", ["query", "backfill"])
def test_user_info_in_base_url_is_refused_and_never_shown(tmp_path: Path, command: str) -> None:
    (tmp_path / "job.toml").write_text(ODD_JOB)
    url = "http://user:PASSWORD@127.0.0.1:9"
    args = ["query", "active_users", "--start", "2026-09-01", "--end", "2026-09-02"]
    if command == "backfill":
        args = ["backfill", "job.toml"]
    done = cli(*args, "--base-url", url, cwd=tmp_path, AMPLITUDE_API_KEY="k",
               AMPLITUDE_SECRET_KEY="s")  # fmt: skip
    assert done.returncode == 2
    assert "--base-url must not contain a user name or password" in done.stderr
    assert "PASSWORD" not in done.stdout + done.stderr
    assert not (tmp_path / "out").exists()  # no checkpoint, no manifest


# -- the calendar's end -----------------------------------------------------------------------


def test_dates_keep_a_year_inside_the_calendar() -> None:
    for bad, name in [(date.max, "start"), (date.min, "start"), (date(9999, 1, 1), "end")]:
        start = bad if name == "start" else LATEST_DATE
        with pytest.raises(InvalidQuery, match="must be between") as caught:
            ActiveUsers(start, bad)
        assert caught.value.field == name
    ActiveUsers(EARLIEST_DATE, LATEST_DATE)
    # A funnel window past the calendar never settles, and raises nothing.
    far = Funnel(["A", "B"], LATEST_DATE, LATEST_DATE, conversion_window=10**15)
    assert cache_ttl(far, CachePolicy(), date(2026, 1, 1)) == CachePolicy().recent_ttl
    job: dict[str, Any] = {
        "start": "99991201",
        "end": "99991231",
        "queries": [{"name": "d", "endpoint": "active_users"}],
    }
    with pytest.raises(InvalidQuery, match="must be between") as refused:
        parse_job(job)
    assert refused.value.field == "start"


def test_the_cli_names_a_date_past_the_calendar(tmp_path: Path) -> None:
    done = cli("query", "event_segmentation", "--emulator", "--events", "A",
               "--start", "9999-12-31", "--end", "9999-12-31")  # fmt: skip
    assert done.returncode == 2
    assert "invalid start: must be between" in done.stderr
    # The last date a query may name works, the emulator's days ending there.
    last = LATEST_DATE.isoformat()
    done = cli("query", "event_segmentation", "--emulator", "--events", "A", "--metric",
               "totals", "--start", last, "--end", last)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert last in done.stdout
    (tmp_path / "job.toml").write_text(ODD_JOB + "\n[emulator]\nstart = 9998-06-01\ndays = 3000\n")
    done = cli("backfill", "job.toml", "--emulator", "--dry-run", cwd=tmp_path)
    assert done.returncode == 2
    assert "emulator.days" in done.stderr


# -- job files that are not files -------------------------------------------------------------


def test_job_files_must_be_small_regular_files(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * MAX_JOB_BYTES + "\n" + ODD_JOB)
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    for path, reason in [
        (tmp_path, "is a directory"),
        (big, f"larger than {MAX_JOB_BYTES:,} bytes"),
        (fifo, "device or pipe"),
        (Path("/dev/zero"), "device or pipe"),
    ]:
        with pytest.raises(InvalidQuery, match=reason) as caught:
            load_job(path)
        assert caught.value.field == "job"
    good = tmp_path / "job.toml"
    good.write_text(ODD_JOB)
    assert load_job(good).queries[0].name == "views"


@pytest.mark.parametrize("path", ["/dev/zero", "fifo"])
def test_the_cli_refuses_a_device_or_pipe_at_once(tmp_path: Path, path: str) -> None:
    if path == "fifo":
        os.mkfifo(tmp_path / "fifo")
        path = str(tmp_path / "fifo")
    done = cli("backfill", path, "--emulator")
    assert done.returncode == 2
    assert "invalid job:" in done.stderr
    assert "not a regular file" in done.stderr
    done = cli("query", "--file", path, "--emulator")
    assert done.returncode == 2
    assert "invalid --file:" in done.stderr


# -- the project's time zone ------------------------------------------------------------------

EAST, WEST = "Pacific/Kiritimati", "Pacific/Pago_Pago"  # UTC+14 and UTC-11


def settled_only_in_the_east() -> date:
    """A day settled (two days old) in the east, not yet in the west, whenever this runs."""
    return datetime.now(ZoneInfo(EAST)).date() - timedelta(days=2)


async def cached_ttls(redis_server: RedisServer) -> list[int]:
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_server.url)
    try:
        ttls = [await redis.ttl(key) for key in await redis.keys("*")]
        await redis.flushall()
        return ttls
    finally:
        await redis.aclose()


async def test_timezone_decides_when_the_cache_settles_a_day(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    day = settled_only_in_the_east().isoformat()
    query = ["query", "event_segmentation", "--emulator", "--events", "A", "--start", day,
             "--end", day, "--cache-url", redis_server.url]  # fmt: skip
    code, _, err = await acli(*query, "--timezone", EAST)
    assert code == 0, err
    (east,) = await cached_ttls(redis_server)
    code, _, err = await acli(*query, "--timezone", WEST)
    assert code == 0, err
    (west,) = await cached_ttls(redis_server)
    assert east > 86_400 >= 300 >= west
    # A job file says the same with timezone = "...".
    job = ODD_JOB.replace("2026-09-01", day).replace("2026-09-03", day)
    (tmp_path / "job.toml").write_text(f'timezone = "{EAST}"\n{job}')
    code, _, err = await acli("backfill", "job.toml", "--emulator", "--cache-url",
                              redis_server.url, cwd=tmp_path)  # fmt: skip
    assert code == 0, err
    assert min(await cached_ttls(redis_server)) > 86_400


def test_a_bad_timezone_is_named(tmp_path: Path) -> None:
    done = cli("query", "active_users", "--emulator", "--start", "2026-09-01", "--end",
               "2026-09-02", "--timezone", "America")  # fmt: skip
    assert done.returncode == 2
    assert "--timezone: unknown time zone 'America'" in done.stderr
    for bad in ("Nowhere/Atlantis", 3):
        with pytest.raises(InvalidQuery, match="time zone") as caught:
            parse_job({**json.loads(JOB_JSON), "timezone": bad})
        assert caught.value.field == "timezone"
    assert parse_job({**json.loads(JOB_JSON), "timezone": "Europe/Berlin"}).timezone == (
        "Europe/Berlin"
    )
    with pytest.raises(ConfigurationError, match="timezone"):
        CachePolicy(timezone="America")


JOB_JSON = json.dumps(
    {"start": "20260901", "end": "20260902", "queries": [{"name": "d", "endpoint": "active_users"}]}
)


# -- the demo's processes ---------------------------------------------------------------------


def test_demo_processes_are_capped(capsys: pytest.CaptureFixture[str]) -> None:
    done = cli("demo", "--processes", "100000")
    assert done.returncode == 2
    assert f"--processes must be 1 to {demo_module.MAX_PROCESSES}" in done.stderr
    with pytest.raises(SystemExit) as caught:
        demo_module.main(["--processes", str(demo_module.MAX_PROCESSES + 1)])
    assert caught.value.code == 2
    assert "--processes" in capsys.readouterr().err
    with pytest.raises(ValueError, match="processes"):
        asyncio.run(demo_module.run_shared_demo(processes=demo_module.MAX_PROCESSES + 1))


def children_of(pid: int) -> set[int]:
    """The live child processes of ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (name) state ppid ...": the name may hold spaces, so split after it.
            state, parent = stat.rsplit(")", 1)[1].split()[:2]
            if int(parent) == pid and state != "Z":
                found.add(int(entry.name))
    return found


def running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_sigterm_of_the_demo_stops_its_worker_processes() -> None:
    from redisserver import require_redis_server

    require_redis_server()
    parent = subprocess.Popen(
        [sys.executable, "-m", "amplitude_async", "demo", "--quick", "--processes", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(), cwd=ROOT,
    )  # fmt: skip
    try:
        # A private redis-server and two workers: once all three run, stop the parent.
        children: set[int] = set()
        while len(children) < 3 and parent.poll() is None:
            time.sleep(0.02)
            children |= children_of(parent.pid)
        assert parent.poll() is None, "the demo ended before it could be stopped"
        parent.send_signal(signal.SIGTERM)
        _, err = parent.communicate(timeout=PATIENCE)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    assert parent.returncode == 128 + signal.SIGTERM, err
    assert "terminated" in err
    assert not [pid for pid in children if running(pid)]
