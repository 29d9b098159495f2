"""What every benchmark script shares: the machine's state, a speed yardstick, and its own
section of RESULTS.md.

A script prints as it goes through a :class:`Report`; with ``--write`` it also replaces its
section of ``benchmarks/RESULTS.md`` (between ``<!-- BEGIN name -->`` and ``<!-- END name -->``)
with what it printed, headed by the command, the commit, the CPU and the load averages at the
start and end of the run. RESULTS.md is only ever written this way.

Ratios measured side by side in one run (client against raw aiohttp, against the ideal,
against a baseline) carry over to other machines; absolute times do not, so they are given
as context next to the machine's load and the yardstick (the seconds a fixed pure-Python
workload took in the same run).
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path
from typing import Final

RESULTS: Final = Path(__file__).with_name("RESULTS.md")
HEADER: Final = """# Benchmark results

Every section below is written by its script, run with `--write` from the repository root
(`python benchmarks/<script>.py --write`); nothing here is edited by hand. Each section starts
with the command, the commit, the machine and its load. Read the ratios: they are measured side
by side in one run and carry over to other machines. Absolute times are context only. What the
scripts measure, and how: [README.md](README.md) and each script's docstring.
"""


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what the platform module knows."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return platform.processor() or platform.machine()
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return match.group(1).strip() if match else platform.machine()


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def commit() -> str:
    """The short commit hash, marked ``+changes`` when the work tree differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        # The scripts' outputs (RESULTS.md, plots) and their notes do not count as changes to
        # the code measured.
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":!benchmarks/*.md",
                ":!benchmarks/*.png",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" +changes" if dirty else "")


def yardstick() -> float:
    """Seconds a fixed pure-Python workload takes here now (median of 3): a machine-speed unit."""

    def work() -> float:
        rng = random.Random(0)
        began = time.perf_counter()
        items = sorted(rng.random() for _ in range(300_000))
        _ = {round(x, 3): i for i, x in enumerate(items)}
        return time.perf_counter() - began

    return statistics.median(work() for _ in range(3))


class Report:
    """Prints a benchmark's output and, on request, writes it as the script's RESULTS section."""

    def __init__(self, name: str, title: str) -> None:
        self.name = name
        self.title = title
        self.lines: list[str] = []
        self.markdown: list[str] = []
        self.began = datetime.datetime.now(datetime.UTC)
        self.load_before = load()
        self.command = " ".join(["python", *[Path(sys.argv[0]).as_posix(), *sys.argv[1:]]])
        self.yardstick = yardstick()

    def print(self, text: str = "") -> None:
        """Print ``text`` and keep it for the section."""
        print(text, flush=True)
        self.lines.extend(text.split("\n"))

    def attach(self, markdown: str) -> None:
        """Markdown to put after the printed output in the section (a plot's image link)."""
        self.markdown.append(markdown)

    def finish(self, *, write: bool) -> None:
        """Print the run's context; with ``write``, replace the script's RESULTS.md section."""
        ended = datetime.datetime.now(datetime.UTC)
        context = [
            f"- command: `{self.command}`".replace(" --write", ""),
            f"- run: {self.began:%Y-%m-%d %H:%M} to {ended:%H:%M} UTC, commit `{commit()}`",
            f"- machine: {cpu_model()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            f"- load average (1/5/15 min): {self.load_before} at the start, {load()} at the end",
            f"- yardstick (a fixed pure-Python workload): {self.yardstick * 1000:.0f} ms",
        ]
        print("\n".join(["", *context]))
        if write:
            body = "\n".join(
                [f"## {self.title}", "", *context, "", "```", *self.lines, "```", *self.markdown]
            )
            write_section(self.name, body)
            print(f"\nwritten to {RESULTS}")


def write_section(name: str, body: str, path: Path = RESULTS) -> None:
    """Replace the text between ``name``'s markers in ``path`` (appended if not there yet)."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def bullets(items: list[str], width: int = 96) -> list[str]:
    """``items`` as a Markdown list, each wrapped to ``width`` columns."""
    return [
        textwrap.fill(item, width, initial_indent="- ", subsequent_indent="  ") for item in items
    ]


def wrap(text: str, width: int = 96) -> str:
    """A paragraph wrapped to ``width`` columns."""
    return textwrap.fill(text, width)


def met(ok: bool) -> str:
    """A target's verdict."""
    return "met" if ok else "missed"


def add_write_option(parser: argparse.ArgumentParser) -> None:
    """``--write``: also replace this script's section of RESULTS.md."""
    parser.add_argument(
        "--write", action="store_true", help="also replace this script's section of RESULTS.md"
    )


def extract_package(rev: str, into: Path) -> Path:
    """Extract commit ``rev``'s ``amplitude_async`` package into ``into`` (``git archive``) and
    return ``into``: put it first on ``PYTHONPATH`` to run that commit's client."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "amplitude_async"],
        capture_output=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,  # the paths are the repository root's
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into
