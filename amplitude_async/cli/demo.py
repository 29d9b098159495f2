"""``amplitude-async demo``: a dashboard's worth of queries against the built-in emulator."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, TextIO

from .common import EXIT_BAD_INPUT, Fail


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
        "--processes",
        type=int,
        default=1,
        help="split the dashboard over N processes (1; at most 64)",
    )
    demo.add_argument("--budget-url", help="the shared budget's Redis for --processes")


def run(args: argparse.Namespace, extra: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Run the ``demo`` command."""
    from .. import demo

    if not 1 <= args.processes <= demo.MAX_PROCESSES:
        raise Fail(
            EXIT_BAD_INPUT,
            f"--processes must be 1 to {demo.MAX_PROCESSES} (one machine's worth of workers), "
            f"got {args.processes}",
        )
    argv = ["--seed", str(args.seed)] + (["--quick"] if args.quick else [])
    argv += ["--processes", str(args.processes)]
    argv += ["--budget-url", args.budget_url] if args.budget_url else []
    code: int = demo.main(argv)
    return code
