"""Behavioral Cohorts against real servers: the emulator, its storage server, a redis-server.

The list's decoding, the download flow (request, poll, file), the redirect without
credentials, expired links, gzip and plain files, cut downloads and their resumption, the
cohort pool beside Dashboard queries, the monthly quota (shared by two processes through
Redis) and bad input refused before anything is sent.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import importlib
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redisserver import RedisServer

from amplitude_async import (
    AmplitudeClient,
    AmplitudeError,
    CohortsList,
    CohortsListResult,
    CohortTimeout,
    ConfigurationError,
    EventSegmentation,
    InvalidQuery,
    Limits,
    NotFound,
    QuotaExhausted,
    TransportError,
)
from amplitude_async.cohort_files import _plain, _Records
from amplitude_async.cohorts import CohortProgress
from amplitude_async.converter import structure_result
from amplitude_async.errors import ResponseValidationError
from amplitude_async.limits import Pool
from amplitude_async.quota import COHORT_REQUESTS, utc_month
from amplitude_async.sansio import basic_auth
from amplitude_async.testing.dataset import SyntheticDataset
from amplitude_async.testing.emulator import Emulator

START = date(2026, 9, 1)
DS = SyntheticDataset(seed=5, users=200, days=14, start=START)
LIMITS = Limits().scaled(0.01)  # 3 s cost window, 6 s cohort window, 0.6 s storage links
POLL = 0.02


def emulator(**kwargs: Any) -> Emulator:
    kwargs.setdefault("limits", LIMITS)
    kwargs.setdefault("cohort_job_time", 0.1)
    return Emulator(DS, **kwargs)


def client_for(emu: Emulator, **kwargs: Any) -> AmplitudeClient:
    kwargs.setdefault("limits", emu.limits)
    return AmplitudeClient(emu.api_key, emu.secret_key, base_url=emu.url, **kwargs)


def expected_members(cohort_id: str) -> set[tuple[int, str]]:
    if cohort_id == "active-7d":
        # Any event in the 7 days before the emulator's now (noon of the last day).
        now = datetime.combine(DS.end, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
        end = int(now.timestamp() * 1000)
        users = {DS.user[i] for i, t in enumerate(DS.time) if end - 7 * 86_400_000 <= t <= end}
    else:
        users = set(DS.cohort_users(cohort_id) or ())
    assert users
    return {(DS.amplitude_ids[u], DS.user_ids[u] or "") for u in users}


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def steps(emu: Emulator, kind: str) -> int:
    """Requests of one step the emulator saw: request, status or file."""
    paths = [r.path for r in emu.requests]
    if kind == "file":
        return sum(p.endswith("/file") for p in paths)
    if kind == "status":
        return sum(p.startswith("/api/5/cohorts/request-status/") for p in paths)
    return sum(p.startswith("/api/5/cohorts/request/") and not p.endswith("/file") for p in paths)


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with emulator() as running:
        yield running


# -- the list ---------------------------------------------------------------------------


def test_cohort_list_decodes_the_live_shapes() -> None:
    body = {
        "cohorts": [
            {
                "id": "9apg8e8f",
                "name": "Never computed",
                "description": None,
                "appId": 123,
                "archived": False,
                "published": False,
                "hidden": False,
                "finished": False,
                "size": None,
                "type": "redshift",
                "owners": ["a@example.com"],
                "viewers": [],
                "lastMod": 1700000000,
                "createdAt": 1690000000,
                "lastComputed": None,
                "definition": {"cohortType": "UNIQUES", "conditions": [{"type": "event"}]},
                "cohort_output_type": "UNIQUES",
                "shortcut_ids": [],
                "a_field_from_next_year": {"x": 1},
            },
            {
                "id": "abc",
                "name": "Computed",
                "size": 1234,
                "finished": True,
                "archived": True,
                "published": True,
                "owners": None,
                "lastComputed": 1700003600.5,
            },
        ]
    }
    result = structure_result(body, CohortsListResult)
    draft, computed = result.cohorts
    assert draft.size is None
    assert draft.last_computed is None
    assert draft.finished is False
    assert draft.created_at == datetime(2023, 7, 22, 4, 26, 40, tzinfo=UTC)
    assert draft.last_mod == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert draft.definition == body["cohorts"][0]["definition"]  # type: ignore[index]
    assert draft.owners == ("a@example.com",)
    assert computed.size == 1234
    assert computed.archived
    assert computed.published
    assert computed.finished
    assert computed.owners == ()
    assert computed.last_computed == datetime(2023, 11, 14, 23, 13, 20, 500000, tzinfo=UTC)
    assert computed.created_at is None
    rows = result.rows()
    assert [(r.label, r.value, r.metric) for r in rows] == [
        ("Never computed", None, "9apg8e8f"),
        ("Computed", 1234, "abc"),
    ]
    assert rows[0].x_value == ""
    assert result.by_id("abc") is computed


def test_cohort_list_refuses_a_bad_time() -> None:
    body = {"cohorts": [{"id": "a", "name": "b", "lastComputed": "yesterday"}]}
    with pytest.raises(ResponseValidationError):
        structure_result(body, CohortsListResult)


def test_include_sync_info_is_sent_only_when_asked() -> None:
    assert CohortsList().params() == ()
    assert CohortsList(include_sync_info=True).params() == (("includeSyncInfo", "true"),)
    with pytest.raises(InvalidQuery) as caught:
        CohortsList(include_sync_info="yes")  # type: ignore[arg-type]
    assert caught.value.field == "include_sync_info"


async def test_list_through_the_client(emu: Emulator) -> None:
    async with client_for(emu) as client:
        result = await client.cohorts_list()
        again = await client.run(CohortsList(include_sync_info=True))
    by_id = {c.id: c for c in result.cohorts}
    assert by_id["purchasers"].size == len(DS.cohort_users("purchasers") or ())
    assert by_id["draft"].size is None
    assert by_id["draft"].last_computed is None
    assert by_id["active-7d"].last_computed is not None
    assert by_id["active-7d"].last_computed.tzinfo is UTC
    assert all(c.sync_metadata == [] for c in again.cohorts)
    assert all(r.cost == 0 for r in emu.requests)


# -- the flow ---------------------------------------------------------------------------


@pytest.mark.parametrize("gzipped", [True, False])
@pytest.mark.parametrize("direct_bytes", [10**9, 0], ids=["body", "redirect"])
async def test_download_gzip_or_plain_in_the_body_or_behind_a_redirect(
    tmp_path: Path, gzipped: bool, direct_bytes: int
) -> None:
    seen: list[CohortProgress] = []
    async with (
        emulator(cohort_gzip=gzipped, cohort_direct_bytes=direct_bytes) as emu,
        client_for(emu) as client,
    ):
        done = await client.download_cohort(
            "mobile", tmp_path / "members.csv", poll_interval=POLL, progress=seen.append
        )
    rows = read_csv(tmp_path / "members.csv")
    assert rows[0] == ["amplitude_id", "user_id"]
    assert {(int(a), u) for a, u in rows[1:]} == expected_members("mobile")
    assert done.members == len(rows) - 1
    assert done.columns == ("amplitude_id", "user_id")
    assert done.bytes == (tmp_path / "members.csv").stat().st_size
    assert done.path == tmp_path / "members.csv"
    assert os.listdir(tmp_path) == ["members.csv"]  # no temporary file left
    assert (steps(emu, "request"), steps(emu, "file")) == (1, 1)
    assert seen[0].stage == "requested"
    assert seen[0].request_id == done.request_id
    assert seen[-1].stage == "done"
    assert seen[-1].members == done.members
    assert any(p.stage == "running" and p.status == "JOB INPROGRESS" for p in seen)
    # Through storage (redirect) or not, credentials never left for the storage host.
    assert emu.cohorts.storage_requests == (
        [] if direct_bytes else [(emu.cohorts.storage_requests[0][0], False)]
    )


async def test_the_storage_host_refuses_credentials(emu: Emulator, tmp_path: Path) -> None:
    emu.cohorts.direct_bytes = 0
    async with client_for(emu) as client:
        job = await client.download_cohort("purchasers", tmp_path / "p.csv", poll_interval=POLL)
    auth = basic_auth(emu.api_key, emu.secret_key)
    async with aiohttp.ClientSession() as session:
        file_url = f"{emu.url}/api/5/cohorts/request/{job.request_id}/file"
        async with session.get(file_url, headers={"Authorization": auth}) as answer:
            assert answer.status == 200  # aiohttp followed the redirect, credentials dropped
        async with session.get(
            file_url, headers={"Authorization": auth}, allow_redirects=False
        ) as answer:
            location = answer.headers["Location"]
        async with session.get(location, headers={"Authorization": auth}) as answer:
            assert answer.status == 400
            assert "Only one auth mechanism" in await answer.text()
    assert [had for _, had in emu.cohorts.storage_requests] == [False, False, True]


async def test_members_with_properties_stream_in(emu: Emulator) -> None:
    async with client_for(emu) as client:
        members = [
            m
            async for m in client.cohort_members(
                "purchasers", props=True, prop_keys=["country", "gp:plan"], poll_interval=POLL
            )
        ]
    assert {(m.amplitude_id, m.user_id or "") for m in members} == expected_members("purchasers")
    assert all(set(m.properties) == {"country", "gp:plan"} for m in members)
    assert all(m.properties["country"] for m in members)
    assert emu.requests[0].params == (
        ("props", "1"),
        ("propKeys", "country"),
        ("propKeys", "gp:plan"),
    )


async def test_all_properties_become_columns(emu: Emulator, tmp_path: Path) -> None:
    async with client_for(emu) as client:
        done = await client.download_cohort(
            "search-3x", tmp_path / "s.csv", props=True, poll_interval=POLL
        )
    assert done.columns[:2] == ("amplitude_id", "user_id")
    assert {"country", "platform", "gp:interests"} <= set(done.columns)
    rows = read_csv(tmp_path / "s.csv")
    assert all(len(row) == len(done.columns) for row in rows)


async def test_an_expired_link_is_fetched_again(emu: Emulator, tmp_path: Path) -> None:
    emu.cohorts.direct_bytes = 0
    emu.cohorts.expire_links = 1
    async with client_for(emu) as client:
        done = await client.download_cohort("mobile", tmp_path / "m.csv", poll_interval=POLL)
    assert done.members == len(expected_members("mobile"))
    assert steps(emu, "request") == 1
    assert steps(emu, "file") == 2  # one link expired before use, a fresh one worked
    assert len(emu.cohorts.storage_requests) == 2


@pytest.mark.parametrize("direct_bytes", [10**9, 0], ids=["body", "redirect"])
async def test_a_cut_download_leaves_no_file_and_resumes_without_a_new_request(
    tmp_path: Path, direct_bytes: int
) -> None:
    target = tmp_path / "members.csv"
    async with emulator(cohort_direct_bytes=direct_bytes) as emu:
        emu.cohorts.cut_downloads = 1
        async with client_for(emu) as client:
            seen: list[CohortProgress] = []
            with pytest.raises(TransportError) as caught:
                await client.download_cohort(
                    "active-7d", target, poll_interval=POLL, progress=seen.append
                )
            request_id = seen[0].request_id
            assert any(request_id in note for note in caught.value.__notes__)
            assert os.listdir(tmp_path) == []  # neither the final name nor a temporary file
            assert steps(emu, "request") == 1
            done = await client.download_cohort("active-7d", target, request_id=request_id)
    assert done.request_id == request_id
    assert steps(emu, "request") == 1  # resumed: no new request
    assert client.statistics().quotas[0].used == 1
    rows = read_csv(target)
    assert {(int(a), u) for a, u in rows[1:]} == expected_members("active-7d")


async def test_a_job_that_never_completes_times_out_naming_its_request(
    tmp_path: Path,
) -> None:
    async with emulator(cohort_job_time=3600.0) as emu, client_for(emu) as client:
        with pytest.raises(CohortTimeout) as caught:
            await client.download_cohort(
                "mobile", tmp_path / "m.csv", poll_interval=POLL, job_timeout=0.2
            )
    assert caught.value.request_id in str(caught.value)
    assert caught.value.status == "JOB INPROGRESS"
    assert steps(emu, "status") >= 2
    assert steps(emu, "file") == 0
    assert os.listdir(tmp_path) == []


async def test_unknown_cohort_is_not_found(emu: Emulator, tmp_path: Path) -> None:
    async with client_for(emu) as client:
        with pytest.raises(NotFound):
            await client.download_cohort("nosuchcohort", tmp_path / "x.csv")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cohort_id": ""}, "cohort_id"),
        ({"cohort_id": "a/../b"}, "cohort_id"),
        ({"cohort_id": 12}, "cohort_id"),
        ({"prop_keys": ["country"]}, "prop_keys"),
        ({"props": True, "prop_keys": [""]}, "prop_keys[0]"),
        ({"path": "missing-directory/m.csv"}, "path"),
        ({"path": "."}, "path"),
        ({"request_id": "x?y"}, "request_id"),
        ({"poll_interval": 0}, "poll_interval"),
    ],
)
async def test_bad_input_is_refused_before_anything_is_sent(
    emu: Emulator, tmp_path: Path, kwargs: dict[str, Any], field: str, monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    args: dict[str, Any] = {"cohort_id": "mobile", "path": tmp_path / "m.csv"} | kwargs
    cohort_id, path = args.pop("cohort_id"), args.pop("path")
    async with client_for(emu) as client:
        with pytest.raises((InvalidQuery, ConfigurationError)) as caught:
            await client.download_cohort(cohort_id, path, **args)
        if field != "path":
            with pytest.raises((InvalidQuery, ConfigurationError)) as again:
                client.cohort_members(cohort_id, **args)
            assert isinstance(again.value, InvalidQuery | ConfigurationError)
            assert again.value.field == field
    assert isinstance(caught.value, InvalidQuery | ConfigurationError)
    assert caught.value.field == field
    assert emu.requests == []
    assert client.statistics().quotas[0].used == 0


# -- the scheduler: the cohort pool, the standard pool, the monthly quota ------------------


async def test_dashboard_queries_and_cohort_downloads_at_full_budget_draw_no_429(
    tmp_path: Path,
) -> None:
    limits = Limits(
        cohort_requests_per_window=3, cohort_concurrent=2, cohort_requests_per_month=50
    ).scaled(0.002)  # 0.6 s cost window, 1.2 s cohort window
    query = EventSegmentation(["Search"], START, START + timedelta(days=13), group_by="country")
    async with (
        emulator(limits=limits, processing_time=(0.0, 0.01), cohort_direct_bytes=2000) as emu,
        client_for(emu) as client,
    ):
        downloads = [
            client.download_cohort(cid, tmp_path / f"{i}.csv", poll_interval=POLL)
            for i, cid in enumerate(["mobile", "purchasers", "active-7d", "power-users"] * 2)
        ]
        queries = [client.run(query) for _ in range(3 * limits.cost_per_window // query.cost)]
        results = await asyncio.gather(*downloads, *queries)
    served = emu.statistics()
    assert served.rate_limited == 0
    assert served.peak_window_cost <= limits.cost_per_window
    assert served.peak_in_flight <= limits.concurrent
    assert emu.enforcer.peak_in_flight[Pool.COHORT] <= 2
    assert steps(emu, "request") == 8
    assert all(r is not None for r in results)
    # Eight requests with three per cohort window: at least two windows went by.
    stamps = sorted(r.at for r in emu.requests if r.path.startswith("/api/5/cohorts/request/"))
    assert stamps[-1] - stamps[0] >= 2 * limits.cohort_window - 0.05


@pytest.mark.parametrize(
    "field",
    [
        "cohort_concurrent",
        "cohort_requests_per_window",
        "cohort_window",
        "cohort_requests_per_month",
    ],
)
def test_cohort_limits_are_checked_and_scaled(field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Limits(**{field: 0})
    assert caught.value.field == f"Limits.{field}"
    scaled = Limits().scaled(0.5)
    assert scaled.cohort_window == 300.0
    assert (scaled.cohort_concurrent, scaled.cohort_requests_per_window) == (4, 60)
    assert scaled.cohort_requests_per_month == 500  # a count, not a duration


async def test_the_emulator_enforces_the_cohort_window_with_429s() -> None:
    limits = Limits(cohort_requests_per_window=2).scaled(0.01)
    auth = {"Authorization": basic_auth("emulator-key", "emulator-secret")}
    async with emulator(limits=limits) as emu, aiohttp.ClientSession() as session:
        statuses = []
        for _ in range(3):
            async with session.get(f"{emu.url}/api/5/cohorts/request/mobile", headers=auth) as r:
                statuses.append(r.status)
                body = await r.json()
        polls = []
        for _ in range(3):  # polls weigh nothing in the cohort window
            url = f"{emu.url}/api/5/cohorts/request-status/nosuchrequest"
            async with session.get(url, headers=auth) as r:
                polls.append(r.status)
    assert statuses == [202, 202, 429]
    assert "Exceeded rate limit" in body["error"]["metadata"]["details"]
    assert polls == [404, 404, 404]


async def test_the_monthly_quota_refuses_before_sending(emu: Emulator, tmp_path: Path) -> None:
    limits = Limits(cohort_requests_per_month=2).scaled(0.01)
    async with client_for(emu, limits=limits) as client:
        await client.download_cohort("mobile", tmp_path / "1.csv", poll_interval=POLL)
        first = await client.download_cohort("purchasers", tmp_path / "2.csv", poll_interval=POLL)
        with pytest.raises(QuotaExhausted) as caught:
            await client.download_cohort("mobile", tmp_path / "3.csv", poll_interval=POLL)
        # A resumed download is no new request: the quota does not stop it.
        await client.download_cohort("purchasers", tmp_path / "4.csv", request_id=first.request_id)
        usage = client.statistics().quotas
    assert (caught.value.limit, caught.value.used, caught.value.month) == (2, 2, utc_month())
    assert steps(emu, "request") == 2
    assert not (tmp_path / "3.csv").exists()
    assert [(q.name, q.used, q.limit) for q in usage] == [(COHORT_REQUESTS, 2, 2)]


_CHILD = """
import asyncio, json, sys
from amplitude_async import AmplitudeClient, Limits, QuotaExhausted
url, budget_url, directory, name = sys.argv[1:5]
limits = Limits(cohort_requests_per_month=3).scaled(0.01)

async def main():
    outcomes = []
    async with AmplitudeClient("emulator-key", "emulator-secret", base_url=url,
                               limits=limits, budget_url=budget_url) as client:
        for i in range(3):
            try:
                await client.download_cohort("purchasers", f"{directory}/{name}{i}.csv",
                                             poll_interval=0.02)
                outcomes.append("ok")
            except QuotaExhausted:
                outcomes.append("quota")
    print(json.dumps(outcomes))

asyncio.run(main())
"""


async def test_two_processes_share_the_monthly_quota(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with emulator() as emu:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AMPLITUDE_")}
        children = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                _CHILD,
                emu.url,
                redis_server.url,
                str(tmp_path),
                name,
                stdout=subprocess.PIPE,
                env=env,
            )
            for name in ("a", "b")
        ]
        async with asyncio.timeout(120):
            outputs = [await child.communicate() for child in children]
    assert [child.returncode for child in children] == [0, 0]
    outcomes = [o for out, _ in outputs for o in json.loads(out)]
    assert sorted(outcomes) == ["ok"] * 3 + ["quota"] * 3
    assert steps(emu, "request") == 3
    assert sorted(name[-4:] for name in os.listdir(tmp_path)) == [".csv"] * 3
    from amplitude_async.redis_store import RedisBudgetStore

    store = RedisBudgetStore.from_url(redis_server.url, api_key=emu.api_key)
    try:
        assert await store.monthly_count(COHORT_REQUESTS, utc_month()) == 3
    finally:
        await store.aclose()


async def test_the_quota_count_is_atomic_in_redis(redis_server: RedisServer) -> None:
    from amplitude_async.redis_store import RedisBudgetStore

    stores = [RedisBudgetStore.from_url(redis_server.url, api_key="k") for _ in range(4)]
    try:
        taken = await asyncio.gather(
            *(s.take_monthly("q", "2026-12", 10) for s in stores for _ in range(5))
        )
        assert sum(ok for ok, _ in taken) == 10
        assert sorted(n for ok, n in taken if ok) == list(range(1, 11))
        assert await stores[0].monthly_count("q", "2026-12") == 10
        assert await stores[0].monthly_count("q", "2027-01") == 0  # a new month starts at 0
    finally:
        for store in stores:
            await store.aclose()


# -- the stream: record boundaries and gzip, whatever the chunking ------------------------

_cells = st.text(alphabet=st.sampled_from('ab,"\n\r é'), max_size=6)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.lists(_cells, min_size=1, max_size=3), max_size=12),
    cuts=st.lists(st.integers(1, 40), max_size=30),
    gzipped=st.booleans(),
    trailing_newline=st.booleans(),
)
def test_records_and_gzip_survive_any_chunking(
    rows: list[list[str]], cuts: list[int], gzipped: bool, trailing_newline: bool
) -> None:
    text = io.StringIO()
    csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(
        [["amplitude_id", "user_id"], *rows]
    )
    plain = text.getvalue().encode()
    if not trailing_newline:
        plain = plain.rstrip(b"\n")
    body = gzip.compress(plain) if gzipped else plain
    pieces, at = [], 0
    for size in cuts:
        pieces.append(body[at : at + size])
        at += size
    pieces.append(body[at:])

    async def collect() -> tuple[bytes, list[bytes], int]:
        async def chunks() -> AsyncIterator[bytes]:
            for piece in pieces:
                yield piece

        records, out, whole = _Records(), b"", []
        async for data in _plain(chunks(), "/file"):
            out += data
            whole.append(records.feed(data))
        whole.append(records.finish())
        return out, whole, records.records

    out, whole, count = asyncio.run(collect())
    assert out == plain
    assert b"".join(whole) == plain
    expected = list(csv.reader(io.StringIO(plain.decode())))
    assert count == len(expected)
    # Each piece handed on holds whole records: parsed apart, they give the same rows.
    assert [r for w in whole for r in csv.reader(io.StringIO(w.decode()))] == expected


def test_a_truncated_gzip_file_is_refused() -> None:
    body = gzip.compress(b'"amplitude_id","user_id"\n"1","a"\n' * 50)[:-12]

    async def run() -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield body

        async for _ in _plain(chunks(), "/file"):
            pass

    with pytest.raises(ResponseValidationError):
        asyncio.run(run())


# -- the command line ---------------------------------------------------------------------


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AMPLITUDE_")}
    return subprocess.run(
        [sys.executable, "-m", "amplitude_async", "cohorts", *args],
        capture_output=True,
        text=True,
        env=clean | (env or {}),
        cwd=cwd,
        timeout=120,
    )


def test_cli_lists_and_downloads_from_the_emulator(tmp_path: Path) -> None:
    listed = cli("list", "--emulator")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["id", "name", "size", "last", "computed"]
    assert any(line.startswith("draft ") and line.endswith("never") for line in lines)
    target = tmp_path / "members.csv"
    done = cli("download", "mobile", "-o", str(target), "--emulator", "--prop-key", "country")
    assert done.returncode == 0, done.stderr
    assert read_csv(target)[0] == ["amplitude_id", "user_id", "country"]
    assert "members" in done.stdout
    assert "request_id" in done.stderr
    assert "done:" in done.stderr.splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("download", "a/b", "-o", "x.csv"), "cohort_id"),
        (("download", "mobile", "-o", "missing/x.csv"), "path"),
        (("download", "mobile", "-o", "x.csv", "--props", "--prop-key", "c"), "not allowed"),
        (("download", "nosuchcohort", "-o", "x.csv"), "404"),
    ],
)
def test_cli_bad_input_exits_2(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    done = cli(*args, "--emulator", cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert os.listdir(tmp_path) == []


async def test_cli_prints_the_request_id_to_resume_a_cut_download(tmp_path: Path) -> None:
    target = tmp_path / "members.csv"
    keys = {"AMPLITUDE_API_KEY": "emulator-key", "AMPLITUDE_SECRET_KEY": "emulator-secret"}
    async with emulator(limits=Limits(), cohort_job_time=0.0) as emu:
        emu.cohorts.cut_downloads = 1
        args = ("download", "active-7d", "-o", str(target), "--base-url", emu.url)
        cut = await asyncio.to_thread(cli, *args, env=keys)
        assert cut.returncode == 1
        (hint,) = [line for line in cut.stderr.splitlines() if "resume with" in line]
        assert "--request-id" in hint
        request_id = hint.split("--request-id ")[1].strip()
        assert not target.exists()
        resumed = await asyncio.to_thread(cli, *args, "--request-id", request_id, env=keys)
    assert resumed.returncode == 0, resumed.stderr
    assert steps(emu, "request") == 1
    assert len(read_csv(target)) - 1 == len(expected_members("active-7d"))


async def test_cli_interrupted_while_the_job_runs_prints_the_request_id(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AMPLITUDE_")}
    keys = {"AMPLITUDE_API_KEY": "emulator-key", "AMPLITUDE_SECRET_KEY": "emulator-secret"}
    async with emulator(limits=Limits(), cohort_job_time=3600.0) as emu:
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "amplitude_async", "cohorts", "download", "mobile"),
            *("-o", str(tmp_path / "m.csv"), "--base-url", emu.url),
            stderr=subprocess.PIPE,
            env=clean | keys,
        )
        assert child.stderr is not None
        async with asyncio.timeout(60):
            first = (await child.stderr.readline()).decode()
            assert first.startswith("requested: request_id ")
            child.send_signal(signal.SIGINT)
            rest = (await child.stderr.read()).decode()
            code = await child.wait()
    assert code == 130
    request_id = first.split()[-1]
    assert f"--request-id {request_id}" in rest
    assert "interrupted" in rest
    assert os.listdir(tmp_path) == []


async def test_the_months_cohort_requests_are_an_opentelemetry_gauge(
    emu: Emulator, tmp_path: Path
) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    async with client_for(emu, meter_provider=meters) as client:
        await client.download_cohort("mobile", tmp_path / "1.csv", poll_interval=POLL)
        await client.download_cohort("purchasers", tmp_path / "2.csv", poll_interval=POLL)
        data = reader.get_metrics_data()
    assert data is not None
    points: list[Any] = [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "amplitude.quota.used"
        for point in metric.data.data_points
    ]
    assert [(p.attributes["amplitude.quota"], p.value) for p in points] == [(COHORT_REQUESTS, 2)]
    assert points[0].attributes["amplitude.month"] == utc_month()


# -- Parquet ----------------------------------------------------------------------------


@pytest.mark.parametrize("direct_bytes", [10**9, 0], ids=["body", "redirect"])
async def test_a_download_written_as_parquet_holds_the_csv_members_typed(
    tmp_path: Path, direct_bytes: int
) -> None:
    pq: Any = importlib.import_module("pyarrow.parquet")
    async with (
        emulator(cohort_direct_bytes=direct_bytes) as emu,
        client_for(emu) as client,
    ):
        as_csv = await client.download_cohort(
            "mobile", tmp_path / "m.csv", prop_keys=["country"], props=True, poll_interval=POLL
        )
        # A .parquet path picks the format; the request_id resumes with no new request.
        as_parquet = await client.download_cohort(
            "mobile", tmp_path / "m.parquet", request_id=as_csv.request_id
        )
        explicit = await client.download_cohort(
            "mobile", tmp_path / "m.bin", request_id=as_csv.request_id, format="parquet"
        )
    table = pq.read_table(tmp_path / "m.parquet")
    assert table.column_names == ["amplitude_id", "user_id", "country"]
    assert str(table.schema.field("amplitude_id").type) == "int64"
    assert not table.schema.field("amplitude_id").nullable
    rows = read_csv(tmp_path / "m.csv")
    expected = [(int(a), u or None, c or None) for a, u, c in rows[1:]]
    got = list(zip(*(table.column(n).to_pylist() for n in table.column_names), strict=True))
    assert got == expected
    assert {(a, u or "") for a, u, _ in got} == expected_members("mobile")
    assert as_parquet.members == as_csv.members == len(expected)
    assert as_parquet.columns == ("amplitude_id", "user_id", "country")
    assert as_parquet.bytes == (tmp_path / "m.parquet").stat().st_size
    assert pq.read_table(tmp_path / "m.bin").equals(table)
    assert explicit.members == as_csv.members
    assert sorted(os.listdir(tmp_path)) == ["m.bin", "m.csv", "m.parquet"]  # no temporaries


async def test_a_cut_parquet_download_leaves_no_file(emu: Emulator, tmp_path: Path) -> None:
    async with client_for(emu) as client:
        first = await client.download_cohort("mobile", tmp_path / "m.csv", poll_interval=POLL)
        with pytest.raises(AmplitudeError):
            await client.download_cohort(
                "mobile", tmp_path / "m.parquet", request_id=first.request_id + "x"
            )
    assert os.listdir(tmp_path) == ["m.csv"]


async def test_a_bad_format_is_refused_before_anything_is_sent(
    emu: Emulator, tmp_path: Path
) -> None:
    async with client_for(emu) as client:
        with pytest.raises(InvalidQuery) as caught:
            await client.download_cohort(
                "mobile",
                tmp_path / "m.csv",
                poll_interval=POLL,
                format="xlsx",  # type: ignore[arg-type]
            )
    assert caught.value.field == "format"
    assert steps(emu, "request") == 0


def test_cli_writes_parquet_for_a_parquet_name(tmp_path: Path) -> None:
    pq: Any = importlib.import_module("pyarrow.parquet")
    target = tmp_path / "members.parquet"
    done = cli("download", "mobile", "-o", str(target), "--emulator")
    assert done.returncode == 0, done.stderr
    table = pq.read_table(target)
    assert table.column_names == ["amplitude_id", "user_id"]
    assert table.num_rows > 0
    assert f"{table.num_rows:,} members" in done.stdout


def test_cli_parquet_without_pyarrow_exits_2_naming_the_extra(tmp_path: Path) -> None:
    # A child interpreter where pyarrow cannot be imported, running the command line.
    code = (
        "import sys; sys.modules['pyarrow'] = None; sys.modules['pyarrow.parquet'] = None\n"
        "from amplitude_async.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AMPLITUDE_")}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            *("cohorts", "download", "mobile"),
            "-o",
            "m.parquet",
            "--emulator",
        ],
        capture_output=True,
        text=True,
        env=clean,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "amplitude-async[parquet]" in done.stderr
    assert "format" in done.stderr
    assert os.listdir(tmp_path) == []
