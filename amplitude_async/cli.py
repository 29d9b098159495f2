"""The ``amplitude-async`` command line: query, cost, backfill, emulator, demo.

A thin layer over the library: arguments become query objects (through the same structuring
as backfill job files, :func:`amplitude_async.backfill.build_query`), results become tables.
Errors are one line on standard error, never a traceback, with the exit codes of
:data:`EXIT_CODES`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Final, NoReturn, TextIO

from attrs import frozen

from .errors import (
    AmplitudeError,
    AuthenticationError,
    BadRequest,
    ConfigurationError,
    InvalidQuery,
    NotFound,
    QueryTooExpensive,
)
from .limits import DEFAULT_LIMITS, Limits
from .queries import DatedQuery, Query

__all__ = ["EXIT_CODES", "build_parser", "main"]

PROG: Final = "amplitude-async"

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_BAD_INPUT: Final = 2
EXIT_AUTH: Final = 3
EXIT_PARTIAL: Final = 4
EXIT_INTERRUPTED: Final = 130

EXIT_CODES: Final = {
    EXIT_OK: "success",
    EXIT_ERROR: "any other failure (network, server, unexpected response)",
    EXIT_BAD_INPUT: "bad input: arguments, query fields, job file, a query too expensive to run",
    EXIT_AUTH: "authentication failed (wrong keys, missing permission or wrong region)",
    EXIT_PARTIAL: "partial failure: some backfill chunks failed (run again to retry them)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); a backfill resumes when run again",
}

_EPILOG = (
    "exit codes:\n"
    + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES.items())
    + "\n\ncredentials: AMPLITUDE_API_KEY / AMPLITUDE_SECRET_KEY, or --api-key/--secret-key.\n"
    "Without credentials, backfill and query run against the built-in emulator."
)

_EMULATOR_DEFAULTS: Final = {"seed": 1, "users": 2000, "days": 90}


class _Fail(Exception):
    """A failure already phrased for the user, with its exit code."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        raise _Fail(EXIT_BAD_INPUT, f"{message} (see '{self.prog} --help')")


# -- arguments ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``amplitude-async``."""
    connection = _Parser(add_help=False)
    group = connection.add_argument_group("connection")
    group.add_argument("--api-key", help="API key (default: $AMPLITUDE_API_KEY)")
    group.add_argument("--secret-key", help="secret key (default: $AMPLITUDE_SECRET_KEY)")
    group.add_argument("--region", choices=("us", "eu"), default="us", help="data region (us)")
    group.add_argument("--base-url", help="another API host (a proxy, a running emulator)")
    group.add_argument(
        "--budget-url",
        help="share the project's budget with other processes through Redis, e.g. "
        "redis://host:6379/0 (default: $AMPLITUDE_BUDGET_URL)",
    )
    group.add_argument(
        "--emulator",
        action="store_true",
        help="use the built-in emulator in-process (also the default without credentials)",
    )

    parser = _Parser(
        prog=PROG,
        description="Cost-aware client for the Amplitude Dashboard REST API.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    query_help = (
        "fields are the query class's, as --name value (repeat for lists; JSON for tables), "
        "e.g. --events 'Sign Up' --start 2026-09-01 --end 2026-09-30 --metric totals"
    )
    query = commands.add_parser(
        "query",
        parents=[connection],
        help="run one query and print its result",
        description=f"Run one query and print its result. {query_help}",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _query_source(query)
    query.add_argument("--format", choices=("table", "json"), default="table")
    query.add_argument(
        "--split", action="store_true", help="split a query too costly for one window by date"
    )

    cost = commands.add_parser(
        "cost",
        help="print a query's cost without running it",
        description=f"Print a query's cost, its pool and whether it fits. {query_help}",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _query_source(cost)

    backfill = commands.add_parser(
        "backfill",
        parents=[connection],
        help="run a resumable backfill job (TOML)",
        description=(
            "Plan every (query, chunk) of JOB, show its cost and ETA, then run it with "
            "checkpoints: run the same command again to resume after a crash or Ctrl-C."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    backfill.add_argument("job", type=Path, help="the job file")
    backfill.add_argument("--dry-run", action="store_true", help="show the plan and stop")
    backfill.add_argument(
        "--restart", action="store_true", help="discard the checkpoint and start over"
    )

    emulator = commands.add_parser(
        "emulator",
        help="serve the built-in emulator over HTTP",
        description="Serve Amplitude's API over a synthetic project until Ctrl-C.",
    )
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8787)
    emulator.add_argument("--seed", type=int, default=_EMULATOR_DEFAULTS["seed"])
    emulator.add_argument("--users", type=int, default=_EMULATOR_DEFAULTS["users"])
    emulator.add_argument("--days", type=int, default=_EMULATOR_DEFAULTS["days"])
    emulator.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply the limits' windows (0.01: a 3-second window)",
    )

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

    from .budget_command import add_budget_command

    add_budget_command(commands)
    return parser


def _query_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("endpoint", nargs="?", help="endpoint name, e.g. event_segmentation")
    parser.add_argument("--json", dest="json_fields", help="the query's fields as a JSON object")
    parser.add_argument(
        "--file", type=Path, help="a TOML file with the query's fields (and 'endpoint')"
    )


def _field_pairs(extra: Sequence[str]) -> dict[str, object]:
    """``--name value`` pairs (``--name=value`` too) into a table; repeats make lists."""
    table: dict[str, object] = {}
    items = list(extra)
    i = 0
    while i < len(items):
        item = items[i]
        if not item.startswith("--") or len(item) < 3:
            raise _Fail(EXIT_BAD_INPUT, f"unexpected argument {item!r}: fields are --name value")
        name, sep, value = item[2:].partition("=")
        if not sep:
            if i + 1 >= len(items):
                raise _Fail(EXIT_BAD_INPUT, f"--{name} needs a value")
            value = items[i + 1]
            i += 1
        i += 1
        key = name.replace("-", "_")
        if key in table:
            previous = table[key]
            table[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            table[key] = value
    return table


def _query_from(args: argparse.Namespace, extra: Sequence[str]) -> Query[Any]:
    from .backfill.job import build_query

    table: dict[str, object] = {}
    endpoint = args.endpoint
    if args.file is not None:
        try:
            loaded = tomllib.loads(args.file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise _Fail(EXIT_BAD_INPUT, f"cannot read {args.file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise _Fail(EXIT_BAD_INPUT, f"{args.file} is not valid TOML: {exc}") from None
        file_endpoint = loaded.pop("endpoint", None)
        endpoint = endpoint or file_endpoint
        table.update(loaded)
    if args.json_fields is not None:
        try:
            fields = json.loads(args.json_fields)
        except ValueError as exc:
            raise _Fail(EXIT_BAD_INPUT, f"--json is not valid JSON: {exc}") from None
        if not isinstance(fields, dict):
            raise _Fail(EXIT_BAD_INPUT, "--json must be a JSON object of query fields")
        endpoint = endpoint or fields.pop("endpoint", None)
        table.update(fields)
    table.update(_field_pairs(extra))
    if not endpoint:
        raise _Fail(EXIT_BAD_INPUT, "name an endpoint, e.g. 'query event_segmentation ...'")
    return build_query(str(endpoint), table)


# -- clients --------------------------------------------------------------------------------


@frozen
class _Target:
    """Where requests go: a URL with keys and the limits to schedule by."""

    api_key: str | None
    secret_key: str | None
    base_url: str | None
    region: str
    limits: Limits
    time_scale: float = 1.0
    budget_url: str | None = None


def _wants_emulator(args: argparse.Namespace) -> bool:
    if args.emulator:
        return True
    has_keys = (args.api_key or os.environ.get("AMPLITUDE_API_KEY")) and (
        args.secret_key or os.environ.get("AMPLITUDE_SECRET_KEY")
    )
    return not has_keys and args.base_url is None


@contextlib.asynccontextmanager
async def _emulated(
    seed: int, users: int, start: date, days: int, time_scale: float
) -> AsyncIterator[_Target]:
    from .testing.dataset import SyntheticDataset
    from .testing.emulator import Emulator

    dataset = SyntheticDataset(seed=seed, users=users, days=days, start=start)
    limits = DEFAULT_LIMITS.scaled(time_scale)
    async with Emulator(dataset, limits=limits) as emulator:
        yield _Target(emulator.api_key, emulator.secret_key, emulator.url, "us", limits, time_scale)


def _client(target: _Target) -> Any:
    from .client import AmplitudeClient
    from .retry import RetryPolicy

    # A fast clock: backoffs shrink with the windows.
    policy = RetryPolicy().scaled(target.time_scale)
    return AmplitudeClient(
        target.api_key,
        target.secret_key,
        region=target.region,  # type: ignore[arg-type]
        base_url=target.base_url,
        limits=target.limits,
        retry_policy=policy,
        budget_url=target.budget_url,
    )


def _real_target(args: argparse.Namespace) -> _Target:
    return _Target(
        args.api_key,
        args.secret_key,
        args.base_url,
        args.region,
        DEFAULT_LIMITS,
        budget_url=args.budget_url,
    )


# -- query and cost -------------------------------------------------------------------------


def _print_table(result: Any, out: TextIO) -> None:
    rows = result.rows() if hasattr(result, "rows") else None
    if rows is None:
        from .converter import unstructure_result

        print(json.dumps(unstructure_result(result), indent=2, default=str), file=out)
        return
    header = ("label", "x", "value")
    cells = [header, *((r.label, r.x_value, _number(r.value)) for r in rows)]
    widths = [max(len(str(row[k])) for row in cells) for k in range(3)]
    for row in cells:
        print(
            f"{row[0]!s:<{widths[0]}}  {row[1]!s:<{widths[1]}}  {row[2]!s:>{widths[2]}}",
            file=out,
        )


def _number(value: float) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.6g}"
    return str(int(value)) if isinstance(value, float) else str(value)


async def _run_query(args: argparse.Namespace, query: Query[Any], out: TextIO) -> int:
    from .converter import unstructure_result
    from .split import run_split

    async def go(target: _Target) -> Any:
        async with _client(target) as client:
            if args.split:
                return await run_split(client, query)
            return await client.run(query)

    if _wants_emulator(args):
        # Say so on stderr: a user who forgot their keys must not mistake synthetic numbers
        # for their project's.
        if not args.emulator:
            print("no credentials set: answering from the built-in emulator", file=sys.stderr)
        start, end = (query.start, query.end) if isinstance(query, DatedQuery) else (None, None)
        first = start or date(2026, 9, 1)
        days = max(_EMULATOR_DEFAULTS["days"], ((end or first) - first).days + 1)
        async with _emulated(_EMULATOR_DEFAULTS["seed"], 500, first, days, 0.01) as target:
            result = await go(target)
    else:
        result = await go(_real_target(args))
    if args.format == "json":
        print(json.dumps(unstructure_result(result), indent=2, default=str), file=out)
    else:
        _print_table(result, out)
    return EXIT_OK


def _cost_report(query: Query[Any], out: TextIO) -> int:
    from .split import plan_chunks

    limits = DEFAULT_LIMITS
    cost = query.cost
    print(f"endpoint: {query.endpoint} ({query.path})", file=out)
    if query.pool.value == "user":
        print("pool: user (not costed: counts one of 360 queries per hour)", file=out)
        return EXIT_OK
    days = f" over {query.days} day(s)" if isinstance(query, DatedQuery) else ""
    print(f"cost: {cost}{days}", file=out)
    print("pool: standard", file=out)
    fits = cost <= limits.cost_per_window
    verdict = "fits" if fits else "does NOT fit"
    print(
        f"window: {verdict} the budget of {limits.cost_per_window} per {limits.window:g} s",
        file=out,
    )
    if not fits:
        try:
            chunks = plan_chunks(query, limits.cost_per_window)
        except QueryTooExpensive as exc:
            print(f"split: not possible: {exc.hint}", file=out)
        else:
            print(f"split: {len(chunks)} date chunks with 'query --split'", file=out)
    print(
        f"hourly: {cost} of {limits.cost_per_hour} per {limits.hour:g} s "
        f"({100 * cost / limits.cost_per_hour:.1f}%)",
        file=out,
    )
    return EXIT_OK


# -- backfill -------------------------------------------------------------------------------


class _ProgressPrinter:
    """Writes progress to ``err``: one rewritten line on a terminal, else a line every few
    seconds."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.tty = err.isatty()
        self.last = 0.0

    def __call__(self, progress: Any) -> None:
        now = time.monotonic()
        if self.tty:
            print(f"\r\x1b[K{progress.line()}", end="", file=self.err, flush=True)
        elif now - self.last >= 5.0:
            print(progress.line(), file=self.err, flush=True)
            self.last = now

    def finish(self) -> None:
        if self.tty:
            print(file=self.err, flush=True)


def _plan_summary(job: Any, plan: Any, done: set[tuple[str, int]], limits: Limits) -> str:
    from .backfill import ideal_seconds
    from .backfill.runner import format_seconds

    left = [t for t in plan.tasks if t.key not in done]
    cost_left = sum(t.cost for t in left)
    lines = [
        f"plan: {len(job.queries)} queries, {len(plan.tasks)} chunks, total cost "
        f"{plan.total_cost}" + (f"; {len(done)} chunks already done" if done else ""),
    ]
    for item in job.queries:
        tasks = [t for t in plan.tasks if t.name == item.name]
        lines.append(
            f"  {item.name}: {item.query.endpoint}, {len(tasks)} chunk(s), cost "
            f"{sum(t.cost for t in tasks)}"
        )
    windows = cost_left / limits.cost_per_window
    hours = cost_left / limits.cost_per_hour
    lines.append(
        f"to run: cost {cost_left} = {windows:.1f} windows of {limits.cost_per_window} per "
        f"{format_seconds(limits.window)} and {hours:.2f} of the hourly {limits.cost_per_hour}"
        f"; ETA {format_seconds(ideal_seconds(cost_left, limits))} at full budget"
    )
    return "\n".join(lines)


async def _backfill(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .backfill import CheckpointStore, load_job, plan_job, run_backfill, write_outputs

    job = load_job(args.job)
    use_emulator = _wants_emulator(args)
    settings = job.emulator
    limits = DEFAULT_LIMITS.scaled(settings.time_scale) if use_emulator else DEFAULT_LIMITS
    plan = plan_job(job, limits)
    existing = None if args.restart else CheckpointStore.existing(job.output)
    done: set[tuple[str, int]] = set()
    if existing is not None:
        with existing:
            existing.check(plan)
            done = existing.done()
    if use_emulator:
        print(
            "target: the built-in emulator (in-process, limits on a clock "
            f"{1 / settings.time_scale:g}x fast)"
            + ("" if args.emulator else "; no credentials set"),
            file=out,
        )
    print(_plan_summary(job, plan, done, limits), file=out, flush=True)
    if args.dry_run:
        return EXIT_OK

    @contextlib.asynccontextmanager
    async def target() -> AsyncIterator[_Target]:
        if use_emulator:
            first = settings.start or min(job.start, *_starts(plan))
            last = max(job.end, *_ends(plan))
            days = settings.days or (last - first).days + 1
            async with _emulated(
                settings.seed, settings.users, first, days, settings.time_scale
            ) as t:
                yield t
        else:
            yield _real_target(args)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
    printer = _ProgressPrinter(err)
    try:
        with CheckpointStore(job.output) as store:
            store.begin(plan, restart=args.restart)
            try:
                async with target() as where, _client(where) as client:
                    report = await run_backfill(
                        plan, client, store, priority=job.priority, stop=stop, on_progress=printer
                    )
            finally:
                printer.finish()
                files = write_outputs(job, plan, store)
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)
    command = f"{PROG} backfill {args.job}"
    if report.interrupted:
        print(
            f"interrupted: {report.done} of {report.total} chunks saved in {job.output}; "
            f"run '{command}' again to resume",
            file=err,
        )
        return EXIT_INTERRUPTED
    print(
        f"done: {report.done}/{report.total} chunks ({report.resumed} from earlier runs), cost "
        f"{report.cost_spent} spent in {report.elapsed:.1f} s; wrote "
        + ", ".join(str(f) for f in files),
        file=out,
    )
    if report.failures:
        for (name, index), message in report.failures[:10]:
            print(f"failed: {name} chunk {index}: {message}", file=err)
        more = len(report.failures) - 10
        if more > 0:
            print(f"failed: ... and {more} more", file=err)
        print(
            f"{len(report.failures)} chunk(s) failed; run '{command}' again to retry them",
            file=err,
        )
        return EXIT_PARTIAL
    return EXIT_OK


def _starts(plan: Any) -> list[date]:
    return [t.start for t in plan.tasks if t.start is not None]


def _ends(plan: Any) -> list[date]:
    return [t.end for t in plan.tasks if t.end is not None]


# -- emulator and demo ----------------------------------------------------------------------


def _emulator(args: argparse.Namespace) -> int:
    from .testing.emulator import serve

    if args.time_scale <= 0:
        raise _Fail(EXIT_BAD_INPUT, "--time-scale must be positive")
    try:
        asyncio.run(
            serve(
                port=args.port,
                seed=args.seed,
                users=args.users,
                days=args.days,
                host=args.host,
                limits=DEFAULT_LIMITS.scaled(args.time_scale),
            )
        )
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from . import demo

    argv = ["--seed", str(args.seed)] + (["--quick"] if args.quick else [])
    argv += ["--processes", str(args.processes)]
    argv += ["--budget-url", args.budget_url] if args.budget_url else []
    code: int = demo.main(argv)
    return code


# -- entry point ----------------------------------------------------------------------------


def _describe(exc: BaseException) -> tuple[int, str]:
    """Exit code and one-line message for an exception."""
    if isinstance(exc, _Fail):
        return exc.code, exc.message
    if isinstance(exc, InvalidQuery):
        return EXIT_BAD_INPUT, f"invalid {exc.field}: {exc.message}"
    if isinstance(exc, ConfigurationError):
        return EXIT_BAD_INPUT, f"{exc.field}: {exc.message} (or --api-key/--secret-key)"
    if isinstance(exc, QueryTooExpensive):
        return EXIT_BAD_INPUT, str(exc)
    if isinstance(exc, AuthenticationError):
        return EXIT_AUTH, f"authentication failed: {exc} (check the keys and --region)"
    if isinstance(exc, BadRequest | NotFound):
        return EXIT_BAD_INPUT, f"the API refused the query: {exc}"
    from .backfill import JobChanged

    if isinstance(exc, JobChanged):
        return EXIT_BAD_INPUT, str(exc)
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
    if args.command == "query":
        query = _query_from(args, extra)
        return asyncio.run(_run_query(args, query, out))
    if args.command == "cost":
        return _cost_report(_query_from(args, extra), out)
    if args.command == "backfill":
        return asyncio.run(_backfill(args, out, err))
    if args.command == "emulator":
        return _emulator(args)
    if args.command == "budget":
        from .budget_command import run_budget_command

        return run_budget_command(args, out)
    return _demo(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``amplitude-async`` with ``argv`` (default: the process's); return the exit code."""
    out, err = sys.stdout, sys.stderr
    try:
        return _dispatch(sys.argv[1:] if argv is None else argv, out, err)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=err)
        return EXIT_INTERRUPTED
    except Exception as exc:
        code, message = _describe(exc)
        print(f"{PROG}: error: {message}", file=err)
        if os.environ.get("AMPLITUDE_ASYNC_DEBUG"):
            raise
        return code
