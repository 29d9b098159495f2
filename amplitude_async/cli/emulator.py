"""``amplitude-async emulator``: serve the built-in emulator over HTTP until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any, TextIO

from ..errors import InvalidQuery
from ..limits import DEFAULT_LIMITS
from .common import EMULATOR_DEFAULTS, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, Fail


def add_parser(commands: Any, connection: argparse.ArgumentParser) -> None:
    """Add the ``emulator`` command to ``commands``."""
    emulator = commands.add_parser(
        "emulator",
        help="serve the built-in emulator over HTTP",
        description="Serve Amplitude's API over a synthetic project until Ctrl-C.",
    )
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8787)
    emulator.add_argument("--seed", type=int, default=EMULATOR_DEFAULTS["seed"])
    emulator.add_argument("--users", type=int, default=EMULATOR_DEFAULTS["users"])
    emulator.add_argument("--days", type=int, default=EMULATOR_DEFAULTS["days"])
    emulator.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply the limits' windows (0.01: a 3-second window)",
    )


def run(args: argparse.Namespace, extra: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Run the ``emulator`` command."""
    from ..backfill import EmulatorSettings
    from ..testing.emulator import serve

    try:
        # The job file's [emulator] table and these options share one validation.
        EmulatorSettings(
            seed=args.seed, users=args.users, days=args.days, time_scale=args.time_scale
        )
    except InvalidQuery as exc:
        option = "--" + exc.field.removeprefix("emulator.").replace("_", "-")
        raise Fail(EXIT_BAD_INPUT, f"{option}: {exc.message}") from None
    if not 0 <= args.port <= 65535:
        raise Fail(EXIT_BAD_INPUT, f"--port: expected 0 to 65535, got {args.port}")
    try:
        asyncio.run(
            serve(
                port=args.port,
                seed=args.seed,
                users=args.users,
                days=args.days,
                host=args.host,
                limits=DEFAULT_LIMITS.scaled(args.time_scale),
                out=out,
            )
        )
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_OK
