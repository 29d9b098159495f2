"""``amplitude-async demo``: the quick run finishes with a summary and no 429."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from amplitude_async import demo
from amplitude_async.queries import ENDPOINTS
from amplitude_async.testing.dataset import SyntheticDataset

ROOT = Path(__file__).resolve().parent.parent


def summary_value(text: str, name: str) -> str:
    match = re.search(rf"^  {re.escape(name)}\s+(.+)$", text, re.MULTILINE)
    assert match, f"no {name!r} row in:\n{text}"
    return match.group(1)


@pytest.mark.parametrize("profile", [demo.QUICK, demo.FULL], ids=["quick", "full"])
def test_dashboard_covers_every_endpoint_within_budget(profile: demo.Profile) -> None:
    dataset = SyntheticDataset(seed=1, users=profile.users, days=profile.days)
    queries = demo.dashboard(dataset, profile)
    assert {type(q) for q in queries} == set(ENDPOINTS.values())
    assert all(q.cost <= 1000 for q in queries)
    assert len(queries) >= 40
    # Several windows' worth, so the run shows the budget being paced.
    assert sum(q.cost for q in queries) > 2 * 1000


async def test_quick_demo_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMPLITUDE_API_KEY", raising=False)
    monkeypatch.delenv("AMPLITUDE_SECRET_KEY", raising=False)
    out = io.StringIO()
    summary = await demo.run_demo(quick=True, seed=2, out=out, tty=False)
    text = out.getvalue()
    assert summary.rate_limited == 0
    assert summary.queries == len(
        demo.dashboard(SyntheticDataset(seed=2, users=400, days=21), demo.QUICK)
    )
    assert summary.peak_window_cost <= summary.budget
    assert summary.cost > summary.budget  # more than one window: pacing happened
    assert summary_value(text, "429s") == "0"
    assert summary_value(text, "queries").startswith(f"{summary.queries} (16 endpoints)")
    assert summary_value(text, "cost") == f"{summary.cost:,}"
    for row in ("retries", "budget used", "wall time"):
        summary_value(text, row)
    assert "\r" not in text  # plain lines when not on a terminal
    assert f"[{summary.queries}/{summary.queries}]" in text
    assert "credentials are not used" not in text


async def test_terminal_progress_and_credentials_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMPLITUDE_API_KEY", "real-key")
    out = io.StringIO()
    summary = await demo.run_demo(quick=True, out=out, tty=True)
    text = out.getvalue()
    assert summary.rate_limited == 0
    assert "credentials are not used" in text
    assert "real-key" not in text
    # One line rewritten in place, finished with a newline before the summary.
    progress = text[text.index("\r") : text.index("Summary")]
    assert progress.count("\n") <= 3


def test_quick_demo_subprocess() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMPLITUDE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "amplitude_async.demo", "--quick", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert summary_value(proc.stdout, "429s") == "0"
    assert "Summary" in proc.stdout


def test_main_rejects_unknown_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        demo.main(["--slow"])
    assert caught.value.code == 2
    assert "--slow" in capsys.readouterr().err
