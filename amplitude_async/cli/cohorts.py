"""``amplitude-async cohorts``: list a project's behavioral cohorts, download one's members.

``cohorts list`` prints a table (id, name, size, last computed). ``cohorts download ID -o
FILE`` runs the whole download through the client's scheduler (see
:mod:`amplitude_async.cohorts`) with a progress line on standard error: the job's status
while it runs, then members and bytes. A download that stops after its request was made
(Ctrl-C, a cut connection) prints the ``--request-id`` that resumes it without a new request.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from datetime import date
from typing import Any, TextIO

from ..cohort_files import check_format, check_target
from ..cohorts import DEFAULT_POLL_INTERVAL, CohortProgress
from ..errors import AmplitudeError
from ..queries import CohortRequest, CohortsList, check_request_id
from .common import (
    EMULATOR_DEFAULTS,
    EPILOG,
    EXIT_OK,
    PROG,
    Connection,
    check_emulator_flags,
    client_for,
    emulated,
    real_connection,
)

__all__ = ["add_parser", "run"]

_EMULATOR_SCALE = 0.01
"""The emulator's clock scale here: its windows, links and polls run a hundred times faster."""


def add_parser(commands: Any, connection: argparse.ArgumentParser) -> None:
    """Add the ``cohorts`` command (``list``, ``download``) to ``commands``."""
    parser = commands.add_parser(
        "cohorts",
        help="list behavioral cohorts, download a cohort's members",
        description=(
            "List the project's behavioral cohorts, or download one cohort's members as CSV "
            "through the same scheduler as every query (the 5 concurrent requests, the cohort "
            "limits and the monthly quota)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser(
        "list",
        parents=[connection],
        help="a table of cohorts: id, name, size, last computed",
        description="Print the project's cohorts: id, name, size and when last computed (UTC).",
    )
    download = actions.add_parser(
        "download",
        parents=[connection],
        help="download a cohort's members to a CSV file",
        description=(
            "Request a cohort's members, wait for the job, and write them to a CSV file (to a "
            "temporary name first: the file appears only once complete)."
        ),
    )
    download.add_argument("cohort_id", metavar="ID", help="the cohort's id, e.g. 9apg8e8f")
    download.add_argument(
        "-o",
        "--output",
        required=True,
        help="the file to write: CSV, or Parquet for a .parquet name (needs the parquet extra)",
    )
    which = download.add_mutually_exclusive_group()
    which.add_argument("--props", action="store_true", help="with every user property")
    which.add_argument(
        "--prop-key",
        action="append",
        default=[],
        metavar="NAME",
        help="with this user property (repeat for several)",
    )
    download.add_argument(
        "--request-id", help="resume a download already requested (no new request, no quota)"
    )


class _ProgressLine:
    """The progress of a download on ``err``: one rewritten line on a terminal, a line per
    stage (and at most one a second while downloading) otherwise."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.tty = err.isatty()
        self.request_id: str | None = None
        self._last = ""
        self._shown = 0.0

    def __call__(self, progress: CohortProgress) -> None:
        self.request_id = progress.request_id
        if progress.stage == "requested":
            text = f"requested: request_id {progress.request_id}"
        elif progress.stage == "running":
            text = f"job: {progress.status}"
        elif progress.stage == "downloading":
            now = time.monotonic()
            if now - self._shown < (0.2 if self.tty else 1.0):
                return
            self._shown = now
            text = f"downloading: {progress.members:,} members, {progress.bytes:,} bytes"
        else:
            text = f"done: {progress.members:,} members, {progress.bytes:,} bytes"
        if text == self._last:
            return
        self._last = text
        if self.tty:
            self.err.write(f"\r\x1b[K{text}" + ("\n" if progress.stage == "done" else ""))
        else:
            self.err.write(text + "\n")
        self.err.flush()

    def end(self) -> None:
        if self.tty and self._last and not self._last.startswith("done"):
            self.err.write("\n")
            self.err.flush()


def _table(rows: Sequence[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(row[k]) for row in rows) for k in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths, strict=True)).rstrip(),
            file=out,
        )


async def _list(client: Any, out: TextIO) -> None:
    result = await client.run(CohortsList())
    rows = [("id", "name", "size", "last computed")]
    for c in result.cohorts:
        computed = c.last_computed.strftime("%Y-%m-%d %H:%M") if c.last_computed else "never"
        rows.append((c.id, c.name, "" if c.size is None else f"{c.size:,}", computed))
    _table(rows, out)


async def _download(
    client: Any, args: argparse.Namespace, poll: float, line: _ProgressLine, out: TextIO
) -> None:
    done = await client.download_cohort(
        args.cohort_id,
        args.output,
        props=bool(args.props or args.prop_key),
        prop_keys=args.prop_key,
        request_id=args.request_id,
        poll_interval=poll,
        progress=line,
    )
    print(
        f"{done.path}: {done.members:,} members, {len(done.columns)} columns, "
        f"{done.bytes:,} bytes (request_id {done.request_id})",
        file=out,
    )


def run(args: argparse.Namespace, extra: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Run the ``cohorts`` command."""
    line = _ProgressLine(err)
    if args.action == "download":
        # Bad input fails here, before an emulator starts or anything is sent.
        CohortRequest(
            args.cohort_id, props=bool(args.props or args.prop_key), prop_keys=args.prop_key
        )
        check_format(None, check_target(args.output))
        if args.request_id is not None:
            check_request_id(args.request_id, "--request-id")

    async def go(target: Connection) -> None:
        poll = DEFAULT_POLL_INTERVAL * target.time_scale
        async with client_for(target, None, args.budget_url or None) as client:
            if args.action == "list":
                await _list(client, out)
            else:
                await _download(client, args, poll, line, out)

    async def main() -> None:
        if args.emulator:
            check_emulator_flags(args)
            days = EMULATOR_DEFAULTS["days"]
            seed = EMULATOR_DEFAULTS["seed"]
            async with emulated(seed, 500, date(2026, 9, 1), days, _EMULATOR_SCALE) as target:
                await go(target)
        else:
            await go(real_connection(args))

    try:
        asyncio.run(main())
    except (KeyboardInterrupt, AmplitudeError):
        line.end()
        if args.action == "download" and line.request_id is not None:
            print(
                f"{PROG}: resume with: {PROG} cohorts download {args.cohort_id} "
                f"-o {args.output} --request-id {line.request_id}",
                file=err,
            )
        raise
    line.end()
    return EXIT_OK
