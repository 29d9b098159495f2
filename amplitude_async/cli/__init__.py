"""The ``amplitude-async`` command line: query, cost, backfill, emulator, demo, budget.

One module per command (``add_parser`` and ``run``); :mod:`.common` holds what they share.

A thin layer over the library: arguments become query objects (through the same structuring
as backfill job files, :func:`amplitude_async.backfill.build_query`), results become tables.
Errors are one line on standard error, never a traceback, with the exit codes of
:data:`EXIT_CODES`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from ..errors import (
    AmplitudeError,
    AuthenticationError,
    BadRequest,
    ConfigurationError,
    InvalidQuery,
    NotFound,
    QueryTooExpensive,
)
from . import backfill, budget, cohorts, cost, demo, emulator, query
from .common import (
    EPILOG,
    EXIT_AUTH,
    EXIT_BAD_INPUT,
    EXIT_CODES,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_PIPE,
    PROG,
    Fail,
    Parser,
    connection_options,
)

__all__ = ["EXIT_CODES", "build_parser", "main"]

_COMMANDS = {
    "query": query,
    "cost": cost,
    "backfill": backfill,
    "emulator": emulator,
    "demo": demo,
    "budget": budget,
    "cohorts": cohorts,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``amplitude-async``."""
    connection = connection_options()
    parser = Parser(
        prog=PROG,
        description="Cost-aware client for the Amplitude Dashboard REST API.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for module in _COMMANDS.values():
        module.add_parser(commands, connection)
    return parser


def _describe(exc: BaseException) -> tuple[int, str]:
    """Exit code and one-line message for an exception."""
    if isinstance(exc, Fail):
        return exc.code, exc.message
    if isinstance(exc, InvalidQuery):
        return EXIT_BAD_INPUT, f"invalid {exc.field}: {exc.message}"
    if isinstance(exc, ConfigurationError):
        # Only the credentials have command-line spellings worth pointing to.
        hint = " (or --api-key/--secret-key)" if exc.field in ("api_key", "secret_key") else ""
        return EXIT_BAD_INPUT, f"{exc.field}: {exc.message}{hint}"
    if isinstance(exc, QueryTooExpensive):
        return EXIT_BAD_INPUT, str(exc)
    if isinstance(exc, AuthenticationError):
        return EXIT_AUTH, f"authentication failed: {exc} (check the keys and --region)"
    if isinstance(exc, BadRequest | NotFound):
        return EXIT_BAD_INPUT, f"the API refused the query: {exc}"
    from ..backfill import (
        CheckpointLocked,
        CorruptCheckpoint,
        JobChanged,
        TargetChanged,
    )

    if isinstance(exc, JobChanged | TargetChanged | CheckpointLocked | CorruptCheckpoint):
        return EXIT_BAD_INPUT, str(exc)
    if isinstance(exc, RecursionError):
        return EXIT_BAD_INPUT, "the input is nested too deeply to read"
    if isinstance(exc, AmplitudeError):
        return EXIT_ERROR, str(exc)
    if isinstance(exc, OSError):
        return EXIT_ERROR, f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return EXIT_ERROR, f"unexpected error: {type(exc).__name__}: {exc}"


def _dispatch(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help(out)
        return EXIT_BAD_INPUT
    if extra and args.command not in ("query", "cost"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    code: int = _COMMANDS[args.command].run(args, extra, out, err)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``amplitude-async`` with ``argv`` (default: the process's); return the exit code."""
    out, err = sys.stdout, sys.stderr
    try:
        code = _dispatch(sys.argv[1:] if argv is None else argv, out, err)
        # Flushed here, not at exit, so that a closed pipe is handled below.
        out.flush()
        return code
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly. Point stdout at /dev/null so the
        # interpreter's final flush cannot fail again (the Python documentation's recipe).
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
        return EXIT_PIPE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=err)
        return EXIT_INTERRUPTED
    except Exception as exc:
        code, message = _describe(exc)
        print(f"{PROG}: error: {message}", file=err)
        if os.environ.get("AMPLITUDE_ASYNC_DEBUG"):
            raise
        return code
