"""``amplitude-async budget`` and ``demo --processes``: the shared budget from the outside."""

from __future__ import annotations

import io

import pytest
from redisserver import RedisServer

from amplitude_async import cli, demo
from amplitude_async.cli.budget import show_budget
from amplitude_async.limits import Limits, Pool
from amplitude_async.quota import COHORT_REQUESTS, utc_month
from amplitude_async.redis_store import RedisBudgetStore
from amplitude_async.scheduler import Scheduler

API_KEY = "budget-command-key"


async def test_budget_shows_the_live_shared_budget(redis_server: RedisServer) -> None:
    limits = Limits(concurrent=2, cost_per_window=100, cohort_requests_per_month=7).scaled(0.1)
    store = RedisBudgetStore.from_url(redis_server.url, api_key=API_KEY, limits=limits)
    scheduler = Scheduler(store=store, lease=30.0)
    out = io.StringIO()
    month = utc_month()
    assert await store.take_monthly(COHORT_REQUESTS, month, 7) == (True, 1)
    async with scheduler.slot(Pool.STANDARD, 60):
        await show_budget(redis_server.url, API_KEY, out=out)
    await scheduler.aclose()
    text = out.getvalue()
    assert "1 process(es) attached" in text
    assert "standard: 1/2 in flight, 0 queued" in text
    assert "cost_per_window" in text
    assert f"cohort_requests_per_month ({month}, UTC): used 1/7, remaining 6" in text
    assert "cohort: 0/4 in flight" in text
    assert "used       60/100 (60%) per 30 s, remaining 40" in text
    assert API_KEY not in text


async def test_budget_says_when_nobody_shares_it(redis_server: RedisServer) -> None:
    out = io.StringIO()
    assert await show_budget(redis_server.url, "nobody", out=out) == 0
    assert "no process shares this project's budget" in out.getvalue()


def test_budget_needs_a_url_and_a_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AMPLITUDE_BUDGET_URL", raising=False)
    monkeypatch.delenv("AMPLITUDE_API_KEY", raising=False)
    assert cli.main(["budget", "--api-key", "k"]) == 2
    assert "--budget-url" in capsys.readouterr().err
    assert cli.main(["budget", "--budget-url", "redis://127.0.0.1:1/0"]) == 2
    assert "--api-key" in capsys.readouterr().err


async def test_the_demo_split_over_processes_draws_no_429(redis_server: RedisServer) -> None:
    out = io.StringIO()
    summary = await demo.run_shared_demo(
        processes=2, budget_url=redis_server.url, quick=True, out=out, tty=False
    )
    text = out.getvalue()
    assert summary.rate_limited == 0
    assert summary.queries == 79
    assert summary.peak_window_cost <= summary.budget
    assert "process 2:" in text
    assert "none failed" in text
