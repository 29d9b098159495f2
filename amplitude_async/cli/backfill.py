"""``amplitude-async backfill``: plan, run and resume a backfill job with checkpoints."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any, TextIO

from attrs import frozen

from ..backfill.job import MAX_EMULATOR_DAYS
from ..limits import DEFAULT_LIMITS, Limits
from ..validation import LATEST_DATE
from .common import (
    EPILOG,
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    PROG,
    Connection,
    Fail,
    base_url,
    cache_url,
    check_emulator_flags,
    client_for,
    emulated,
    has_credentials,
    real_connection,
    time_zone,
)


def add_parser(commands: Any, connection: argparse.ArgumentParser) -> None:
    """Add the ``backfill`` command to ``commands``."""
    backfill = commands.add_parser(
        "backfill",
        parents=[connection],
        help="run a resumable backfill job (TOML)",
        description=(
            "Plan every (query, chunk) of JOB, show its cost and ETA, then run it with "
            "checkpoints: run the same command again to resume after a crash or Ctrl-C."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    backfill.add_argument("job", type=Path, help="the job file")
    backfill.add_argument("--dry-run", action="store_true", help="show the plan and stop")
    backfill.add_argument(
        "--restart", action="store_true", help="discard the checkpoint and start over"
    )


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
    from ..backfill import ideal_seconds
    from ..backfill.runner import format_seconds

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


def _emulator_range(job: Any, plan: Any) -> tuple[date, int]:
    """The first day and length of the dataset the emulator serves for ``job``."""
    settings = job.emulator
    first: date = settings.start or min(job.start, *_starts(plan))
    last: date = max(job.end, *_ends(plan))
    days: int = settings.days or (last - first).days + 1
    if days > MAX_EMULATOR_DAYS:
        raise Fail(
            EXIT_BAD_INPUT,
            f"the emulator serves at most {MAX_EMULATOR_DAYS} days, the job needs {days}; "
            "shorten the range or set [emulator] start and days",
        )
    if first.toordinal() + days - 1 > LATEST_DATE.toordinal():
        raise Fail(
            EXIT_BAD_INPUT,
            f"emulator.days: {days} days from {first} run past {LATEST_DATE}, the latest date "
            "a query may name; set [emulator] start earlier or days lower",
        )
    return first, days


@frozen
class _Where:
    """Where a backfill's requests go (``connection``, or the in-process emulator over
    ``first``/``days``), the :class:`~amplitude_async.backfill.Target` the checkpoint records
    (``None`` for a dry run without credentials) and the line that says so."""

    target: Any
    line: str
    connection: Connection | None = None
    first: date | None = None
    days: int = 0


def _where(args: argparse.Namespace, job: Any, plan: Any) -> _Where:
    from ..backfill import Target

    settings = job.emulator
    if args.emulator or job.data_source == "emulator":
        first, days = _emulator_range(job, plan)
        why = "--emulator" if args.emulator else 'source = "emulator" in the job file'
        return _Where(
            Target.emulator(seed=settings.seed, users=settings.users, start=first, days=days),
            f"target: the built-in emulator ({why}; synthetic data, limits on a clock "
            f"{1 / settings.time_scale:g}x fast)",
            first=first,
            days=days,
        )
    if args.dry_run and not has_credentials(args):
        # A plan costs nothing to show; the run itself will ask for credentials.
        return _Where(None, f"target: {base_url(args)} (no credentials set: a run needs them)")
    connection = real_connection(args, job=True)
    target = Target.api(connection.base_url, connection.api_key)
    return _Where(target, f"target: {target.describe()}", connection)


@contextlib.asynccontextmanager
async def _connect(where: _Where, settings: Any) -> AsyncIterator[Connection]:
    if where.connection is not None:
        yield where.connection
        return
    assert where.first is not None
    async with emulated(
        settings.seed, settings.users, where.first, where.days, settings.time_scale
    ) as in_process:
        yield in_process


async def _backfill(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from ..backfill import (
        CheckpointStore,
        load_job,
        plan_job,
        remove_outputs,
        run_backfill,
        write_outputs,
    )

    job = load_job(args.job)
    cache = cache_url(args)
    zone = time_zone(args, job.timezone)
    settings = job.emulator
    use_emulator = args.emulator or job.data_source == "emulator"
    if use_emulator:
        check_emulator_flags(args, "--emulator" if args.emulator else 'source = "emulator"')
    limits = DEFAULT_LIMITS.scaled(settings.time_scale) if use_emulator else DEFAULT_LIMITS
    plan = plan_job(job, limits)
    where = _where(args, job, plan)

    if args.dry_run:
        done: set[tuple[str, int]] = set()
        existing = None if args.restart else CheckpointStore.existing(job.output)
        if existing is not None:
            with existing:
                if where.target is not None:
                    existing.check(plan, where.target)
                done = existing.done()
        print(where.line, file=out)
        print(_plan_summary(job, plan, done, limits), file=out, flush=True)
        return EXIT_OK

    # The lock is taken and the checkpoint checked (readable, same target, same plan) before
    # anything is sent: a refusal spends nothing.
    with CheckpointStore(job.output, restart=args.restart, owner=str(args.job.resolve())) as store:
        if args.restart:
            remove_outputs(job)
        store.begin(plan, target=where.target, restart=args.restart)
        print(where.line, file=out)
        print(_plan_summary(job, plan, store.done(), limits), file=out, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        handled = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
                handled.append(sig)
        printer = _ProgressPrinter(err)
        try:
            try:
                shared = args.budget_url or None
                async with (
                    _connect(where, settings) as to,
                    client_for(to, cache, shared, zone) as client,
                ):
                    report = await run_backfill(
                        plan, client, store, priority=job.priority, stop=stop, on_progress=printer
                    )
                    if cache:
                        print(client.statistics().savings.line(), file=err)
            finally:
                printer.finish()
                files = write_outputs(job, plan, store)
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
    return _conclude(report, files, job, f"{PROG} backfill {args.job}", out, err)


def _conclude(
    report: Any, files: list[Path], job: Any, command: str, out: TextIO, err: TextIO
) -> int:
    """Say how the run ended; return its exit code."""
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


def run(args: argparse.Namespace, extra: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Run the ``backfill`` command."""
    return asyncio.run(_backfill(args, out, err))
