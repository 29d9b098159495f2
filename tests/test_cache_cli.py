"""The CLI with a result cache: ``query --split`` and ``backfill`` reuse answers across runs."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from redisserver import RedisServer

from amplitude_async import Limits
from amplitude_async.testing.dataset import SyntheticDataset
from amplitude_async.testing.emulator import Emulator

# Settled whatever today is on the machine running the tests (the data is from 2026-09).
QUERY = ("query", "event_segmentation", "--events", "Purchase", "--metric", "totals")
RANGE = ("--start", "2026-09-01", "--end", "2026-09-14")


@pytest.fixture
def amplitude_emulator_options() -> dict[str, Any]:
    dataset = SyntheticDataset(seed=2, users=100, days=14, start=date(2026, 9, 1))
    return {"dataset": dataset, "limits": Limits().scaled(0.01)}


@pytest.fixture
def emulator(amplitude_emulator: Emulator) -> Emulator:
    """The emulator of the project's pytest plugin, with this module's options."""
    return amplitude_emulator


def env_for(emulator: Emulator, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMPLITUDE_")}
    return env | {
        "AMPLITUDE_API_KEY": emulator.api_key,
        "AMPLITUDE_SECRET_KEY": emulator.secret_key,
        **extra,
    }


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "amplitude_async",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_query_split_reuses_cached_chunks_across_runs(
    emulator: Emulator, redis_server: RedisServer
) -> None:
    env = env_for(emulator, AMPLITUDE_CACHE_URL=redis_server.url)
    args = (*QUERY, *RANGE, "--base-url", emulator.url, "--split")
    code, first, err = await run_cli(*args, env=env)
    assert code == 0, err
    sent = len(emulator.requests)
    assert sent >= 1
    assert "cache: 0 hit(s)" in err
    code, second, err = await run_cli(*args, env=env)
    assert code == 0, err
    assert second == first
    assert len(emulator.requests) == sent
    assert "0 miss(es)" in err
    # A longer range: only the new day is sent.
    longer = (*QUERY, "--start", "2026-09-01", "--end", "2026-09-15")
    code, _, err = await run_cli(*longer, "--base-url", emulator.url, "--split", env=env)
    assert code == 0, err
    (new,) = emulator.requests[sent:]
    assert dict(new.params)["start"] == dict(new.params)["end"] == "20260915"


async def test_a_bad_cache_url_is_refused_before_sending(emulator: Emulator) -> None:
    env = env_for(emulator)
    args = (*QUERY, *RANGE, "--base-url", emulator.url, "--cache-url", "http://127.0.0.1:1")
    code, _, err = await run_cli(*args, env=env)
    assert code == 2
    assert "--cache-url" in err
    assert emulator.requests == []


async def test_backfill_uses_the_cache(
    emulator: Emulator, redis_server: RedisServer, tmp_path: Path
) -> None:
    end = date(2026, 9, 1) + timedelta(days=13)
    job = tmp_path / "job.toml"
    job.write_text(
        f"start = 2026-09-01\nend = {end.isoformat()}\nchunk_days = 7\n"
        f"output = '{tmp_path / 'out'}'\n"
        "[[queries]]\nname = 'purchases'\nendpoint = 'event_segmentation'\n"
        "events = ['Purchase']\nmetric = 'totals'\n"
    )
    env = env_for(emulator, AMPLITUDE_CACHE_URL=redis_server.url)
    args = ("backfill", str(job), "--base-url", emulator.url)
    code, _, err = await run_cli(*args, env=env)
    assert code == 0, err
    sent = len(emulator.requests)
    assert "cache: 0 hit(s)" in err
    code, _, err = await run_cli(*args, "--restart", env=env)
    assert code == 0, err
    assert len(emulator.requests) == sent
    assert "0 miss(es)" in err
