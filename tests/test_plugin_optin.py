"""The pytest plugin is opt-in: installing the library loads nothing into other test runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import sys

def test_library_not_loaded():
    assert not [m for m in sys.modules if m.startswith("amplitude_async")]
"""


def _pytest(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(directory)],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_another_projects_run_does_not_import_the_library(tmp_path: Path) -> None:
    (tmp_path / "test_probe.py").write_text(PROBE, encoding="utf-8")
    run = _pytest(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


def test_one_line_activates_the_fixtures(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        'pytest_plugins = ["amplitude_async.testing.pytest_plugin"]\n', encoding="utf-8"
    )
    (tmp_path / "test_uses.py").write_text(
        "def test_fixture_exists(amplitude_emulator_options):\n"
        "    assert isinstance(amplitude_emulator_options, dict)\n",
        encoding="utf-8",
    )
    run = _pytest(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
