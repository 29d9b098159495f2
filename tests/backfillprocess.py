"""Helpers for tests that run ``amplitude-async backfill`` as real processes."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from amplitude_async.backfill import CHECKPOINT_NAME

PATIENCE = 120.0
"""Seconds to wait for a child's progress before giving up (a hang guard, not a measurement)."""


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any ``AMPLITUDE_*`` setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMPLITUDE_")}
    return env | extra


def start(directory: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``amplitude-async backfill job.toml ARGS`` in ``directory``."""
    return subprocess.Popen(
        [sys.executable, "-m", "amplitude_async", "backfill", "job.toml", *args],
        cwd=directory,
        env=clean_env() if env is None else env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(directory: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``amplitude-async backfill job.toml ARGS`` to its end: (exit code, stdout, stderr)."""
    process = start(directory, *args, env=env)
    out, err = process.communicate(timeout=PATIENCE)
    return process.returncode, out, err


def committed(output: Path) -> int:
    """Chunks marked done in the checkpoint of ``output`` (read-only, without its lock)."""
    path = output / CHECKPOINT_NAME
    if not path.exists():
        return 0
    try:
        uri = path.resolve().as_uri() + "?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
            row = db.execute("SELECT count(*) FROM chunks WHERE status = 'done'").fetchone()
    except sqlite3.Error:
        # Not created yet, or caught between creation and its first tables.
        return 0
    return int(row[0])


def wait_for_progress(process: subprocess.Popen[str], output: Path, at_least: int) -> int:
    """Poll the checkpoint until ``at_least`` chunks are committed; return the count seen.

    Fails if the process ends first without reaching it (its stderr in the message).
    """
    deadline = time.monotonic() + PATIENCE
    while True:
        seen = committed(output)
        if seen >= at_least:
            return seen
        if process.poll() is not None:
            _out, err = process.communicate()
            raise AssertionError(
                f"exited {process.returncode} after {seen} < {at_least} chunks: {err}"
            )
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"no progress past {seen} chunks")
        time.sleep(0.005)
