"""``amplitude-async budget --metrics-port``: the shared budget scraped over HTTP, from a real
redis-server, in the Prometheus text format."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redisserver import RedisServer, free_port

from amplitude_async import cli
from amplitude_async.cli.budget_metrics import parse_projects, serve_budget_metrics
from amplitude_async.limits import Limits, Pool
from amplitude_async.redis_store import RedisBudgetStore, budget_key_tag
from amplitude_async.scheduler import Scheduler

KEY, OTHER = "metrics-project-key", "metrics-other-key"
LIMITS = Limits(concurrent=2, cost_per_window=100).scaled(0.1)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, frozenset(sample.labels.items())] = sample.value
    return found


def at(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return f"amplitude_budget_{name}", frozenset(labels.items())


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return await response.text()


async def test_one_scrape_shows_every_project(redis_server: RedisServer) -> None:
    store = RedisBudgetStore.from_url(redis_server.url, api_key=KEY, limits=LIMITS)
    first, second = Scheduler(store=store, lease=30.0), Scheduler(store=store, lease=30.0)
    projects = parse_projects([f"web={KEY}", OTHER])
    server, _ = serve_budget_metrics(redis_server.url, projects, host="127.0.0.1", port=0)
    try:
        async with first.slot(Pool.STANDARD, 60), second.slot(Pool.STANDARD, 30):
            text = await scrape(f"http://127.0.0.1:{server.server_port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
        await first.aclose()
        await second.aclose()
    found = samples(text)
    window = {"project": "web", "pool": "standard", "window": "cost_per_window"}
    assert found[at("up", project="web")] == 1
    assert found[at("processes", project="web")] == 2
    assert found[at("window_used", **window)] == 90
    assert found[at("window_budget", **window)] == 100
    assert found[at("window_remaining", **window)] == 10
    assert found[at("window_length_seconds", **window)] == 30
    assert found[at("in_flight", project="web", pool="standard")] == 2
    assert found[at("concurrency_limit", project="web", pool="standard")] == 2
    assert found[at("queued", project="web", pool="standard")] == 0
    assert found[at("in_flight", project="web", pool="user")] == 0
    # Nobody shares the other project's budget: answered, with no process.
    other = budget_key_tag(OTHER)[:12]
    assert found[at("up", project=other)] == 1
    assert found[at("processes", project=other)] == 0
    assert KEY not in text
    assert OTHER not in text


async def test_an_unreachable_store_is_down_not_an_error() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    server, _ = serve_budget_metrics(url, parse_projects([KEY]), host="127.0.0.1", port=0)
    try:
        text = await scrape(f"http://127.0.0.1:{server.server_port}/metrics")
    finally:
        server.shutdown()
        server.server_close()
    assert samples(text)[at("up", project=budget_key_tag(KEY)[:12])] == 0


def test_the_command_serves_until_interrupted(redis_server: RedisServer) -> None:
    port = free_port()
    command = [sys.executable, "-m", "amplitude_async", "budget"]
    options = ["--budget-url", redis_server.url, "--api-key", f"web={KEY}"]
    process = subprocess.Popen(
        [*command, *options, "--metrics-port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert f"http://127.0.0.1:{port}/metrics" in banner
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        assert samples(text)[at("up", project="web")] == 1
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(
    ("argv", "field"),
    [
        (["--metrics-port", "0"], "--metrics-port"),
        (["--metrics-port", "70000"], "--metrics-port"),
        (["--metrics-port", "9000", "--watch"], "--watch"),
        (["--api-key", "b"], "--api-key"),  # two keys without --metrics-port
        (["--api-key", "a=", "--metrics-port", "9000"], "--api-key"),
        (["--api-key", "a=b", "--api-key", "a=c", "--metrics-port", "9000"], "--api-key"),
    ],
)
def test_bad_metrics_options_exit_2(
    argv: list[str], field: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["budget", "--budget-url", "redis://127.0.0.1:1/0", "--api-key", "a"]
    assert cli.main([*base, *argv]) == 2
    assert field in capsys.readouterr().err
