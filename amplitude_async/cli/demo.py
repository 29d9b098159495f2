"""``amplitude-async demo``: a dashboard's worth of queries against the built-in emulator."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, TextIO


def add_parser(commands: Any, connection: argparse.ArgumentParser) -> None:
    """Add the ``demo`` command to ``commands``."""
    demo = commands.add_parser(
        "demo",
        help="run a dashboard's worth of queries against the emulator",
        description="Run a dashboard's worth of queries against the built-in emulator.",
    )
    demo.add_argument("--quick", action="store_true", help="a run of a few seconds")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument(
        "--processes", type=int, default=1, help="split the dashboard over N processes (1)"
    )
    demo.add_argument("--budget-url", help="the shared budget's Redis for --processes")


def run(args: argparse.Namespace, extra: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Run the ``demo`` command."""
    from .. import demo

    argv = ["--seed", str(args.seed)] + (["--quick"] if args.quick else [])
    argv += ["--processes", str(args.processes)]
    argv += ["--budget-url", args.budget_url] if args.budget_url else []
    code: int = demo.main(argv)
    return code
