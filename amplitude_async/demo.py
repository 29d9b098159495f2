"""``amplitude-async demo``: a dashboard's worth of queries against the built-in emulator.

The demo starts an :class:`~amplitude_async.testing.emulator.Emulator` in-process on
127.0.0.1, with Amplitude's limits enforced strictly on a fast clock (the 5-minute window lasts
3 seconds, 0.3 with ``--quick``), and fans out every kind of query a product dashboard needs
through :meth:`AmplitudeClient.as_completed`. It shows progress and budget use while it runs
and ends with a summary: queries, cost, 429s, retries, budget used, wall time. It needs no
credentials and no network beyond 127.0.0.1.

Run it with ``amplitude-async demo`` or ``python -m amplitude_async.demo`` (``--quick`` for a
run of a few seconds, ``--seed`` for another synthetic project). ``--processes N`` splits the
dashboard over N worker processes that share one budget in Redis (``--budget-url``, or a
private ``redis-server`` started for the run when one is on PATH): the same summary, from N
processes, still without a 429.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from datetime import date, timedelta
from typing import Any, Final, TextIO

from attrs import frozen

from .client import AmplitudeClient
from .limits import Limits, Pool
from .queries import (
    HOURLY,
    WEEKLY,
    ActiveUsers,
    AverageSessionLength,
    ChartCSV,
    ChartQuery,
    CohortsList,
    EventSegmentation,
    EventsList,
    Funnel,
    Query,
    RealtimeActiveUsers,
    Retention,
    RevenueLTV,
    SessionLengthDistribution,
    SessionsPerUser,
    UserActivity,
    UserComposition,
    UserSearch,
)
from .results import ActiveUsersResult, FunnelResult
from .testing.dataset import Dataset, SyntheticDataset
from .testing.emulator import Emulator
from .values import Event, GroupBy, InCohort, PerformedEvent, PropertyFilter, Segment, Where

__all__ = [
    "MAX_PROCESSES",
    "DemoSummary",
    "Profile",
    "dashboard",
    "main",
    "run_demo",
    "run_shared_demo",
]

MAX_PROCESSES: Final = 64
"""The most worker processes ``--processes`` starts: far more than the demo's budget keeps
busy, few enough not to swamp one machine."""


@frozen
class Profile:
    """How big a demo run is: the synthetic project, the dashboard, the clock speed."""

    users: int
    days: int
    weeks: int
    """Weekly panels: one copy of the weekly dashboard per past week."""
    month: bool
    """Whether to add the 30-day panels."""
    countries: int
    """Per-country panels."""
    people: int
    """User look-ups (user search and user activity)."""
    scale: float
    """Factor applied to the limits' durations (0.01: the 300 s window lasts 3 s)."""
    progress_every: float
    """Seconds between progress lines when the output is not a terminal."""


FULL: Final = Profile(
    users=2000, days=60, weeks=4, month=True, countries=6, people=12, scale=0.01, progress_every=2
)
QUICK: Final = Profile(
    users=400, days=21, weeks=2, month=False, countries=2, people=3, scale=0.002, progress_every=1
)

_COUNTRIES: Final = ("United States", "Germany", "United Kingdom", "France", "Japan", "India")
_EVENTS: Final = (
    "Sign Up",
    "Complete Profile",
    "Open App",
    "Search",
    "View Item",
    "Add to Cart",
    "Purchase",
    "Share",
    "Rate Item",
)
_CHECKOUT: Final = ("View Item", "Add to Cart", "Purchase")
_ONBOARDING: Final = ("Sign Up", "Complete Profile", "Purchase")


def _panels(start: date, end: date, *, heavy: bool) -> list[Query[Any]]:
    """The panels of one dashboard over ``[start, end]`` (``heavy``: grouped breakdowns too)."""
    mobile = Segment(InCohort("mobile"))
    engaged = Segment(Where("platform", "is not", ["Web"]), PerformedEvent("Search", ">=", 2))
    panels: list[Query[Any]] = [
        ActiveUsers(start, end),
        ActiveUsers(start, end, metric="new", interval=WEEKLY),
        ActiveUsers(start, end, segments=[mobile]),
        SessionLengthDistribution(start, end),
        AverageSessionLength(start, end),
        SessionsPerUser(start, end),
        UserComposition(start, end, "platform"),
        UserComposition(start, end, "gp:age_group"),
        *(EventSegmentation([name], start, end) for name in _EVENTS),
        EventSegmentation([Event("Search")], start, end, metric="pct_dau"),
        EventSegmentation(
            [Event("Purchase", group_by=[GroupBy("revenue", "event")])], start, end, metric="sums"
        ),
        EventSegmentation(
            ["Sign Up", "Purchase"],
            start,
            end,
            metric="formula",
            formula="UNIQUES(B)/UNIQUES(A)",
        ),
        EventSegmentation(
            [Event("View Item", [PropertyFilter("category", "is", ["books", "music"])])],
            start,
            end,
            metric="totals",
            segments=[engaged],
        ),
        Funnel(list(_ONBOARDING), start, end),
        Funnel(list(_CHECKOUT), start, end, mode="unordered", conversion_window=86_400),
        Retention(Event("Sign Up"), Event("_active"), start, end),
        Retention(Event("Sign Up"), Event("Purchase"), start, end, mode="rolling"),
        Retention(
            Event("Open App"),
            Event("Search"),
            start,
            end,
            mode="bracket",
            brackets=[(0, 2), (2, 7)],
        ),
        RevenueLTV(start, end),
    ]
    if heavy:
        panels += [
            ActiveUsers(start, end, group_by="country"),
            EventSegmentation(
                [Event("View Item", group_by=[GroupBy("category", "event")])],
                start,
                end,
                group_by=["platform"],
            ),
            Funnel(list(_ONBOARDING), start, end, group_by="platform"),
            RevenueLTV(start, end, metric="arppu", group_by="country"),
        ]
    return panels


def dashboard(dataset: Dataset, profile: Profile) -> list[Query[Any]]:
    """A realistic dashboard's queries over ``dataset``: every endpoint kind, many costs."""
    end = dataset.end
    queries: list[Query[Any]] = [
        RealtimeActiveUsers(),
        EventsList(),
        ChartQuery("daily-signups"),
        ChartQuery("active-users"),
        ChartCSV("purchases-by-country"),
        CohortsList(),
        EventSegmentation([Event("_active")], end, end, metric="totals", interval=HOURLY),
    ]
    for week in range(profile.weeks):
        week_end = end - timedelta(days=7 * week)
        queries += _panels(week_end - timedelta(days=6), week_end, heavy=True)
    if profile.month:
        queries += _panels(end - timedelta(days=29), end, heavy=False)
    fortnight = end - timedelta(days=13)
    for country in _COUNTRIES[: profile.countries]:
        where = Segment(Where("country", "is", [country]))
        queries += [
            ActiveUsers(fortnight, end, segments=[where]),
            Funnel(list(_CHECKOUT), fortnight, end, segments=[where]),
        ]
    ids = sorted(dataset.amplitude_ids)[:: max(1, dataset.user_count // max(1, profile.people))]
    for amplitude_id in ids[: profile.people]:
        queries += [UserActivity(amplitude_id, limit=50), UserSearch(str(amplitude_id))]
    return queries


@frozen
class DemoSummary:
    """What a demo run did; ``rate_limited`` counts the 429s the emulator sent."""

    queries: int
    endpoints: int
    cost: int
    rate_limited: int
    retries: int
    peak_window_cost: int
    budget: int
    window: float
    wall_time: float

    @property
    def utilisation(self) -> float:
        """Cost sent as a fraction of the most a client could send in ``wall_time``.

        A strict sliding window admits one budget at once and one more per window length
        after that, so the most is ``budget * (1 + wall_time / window)``.
        """
        return self.cost / (self.budget * (1 + self.wall_time / self.window))

    def table(self) -> str:
        """The summary as aligned text lines."""
        rows = [
            ("queries", f"{self.queries} ({self.endpoints} endpoints)"),
            ("cost", f"{self.cost:,}"),
            ("429s", str(self.rate_limited)),
            ("retries", str(self.retries)),
            (
                "budget used",
                f"peak {self.peak_window_cost:,}/{self.budget:,} in any {self.window:g} s window; "
                f"{self.utilisation:.0%} of the budget over the run",
            ),
            ("wall time", f"{self.wall_time:.1f} s"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


@contextlib.asynccontextmanager
async def _ticking(
    progress: _Progress, line: Callable[[], str], every: float
) -> AsyncIterator[None]:
    """Show ``line()`` every ``every`` seconds while the body runs."""

    async def ticker() -> None:
        while True:
            progress.show(line())
            await asyncio.sleep(every)

    task = asyncio.create_task(ticker())
    try:
        yield
    finally:
        task.cancel()


class _Progress:
    """One updating line on a terminal; a line every few seconds otherwise."""

    def __init__(self, out: TextIO, *, tty: bool, every: float) -> None:
        self.out = out
        self.tty = tty
        self.every = every
        self._last = -float("inf")
        self._width = 0

    def show(self, text: str, *, final: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            pad = max(0, self._width - len(text))
            self.out.write("\r" + text + " " * pad + ("\n" if final else ""))
            self._width = len(text)
        elif final or now - self._last >= self.every:
            self.out.write(text + "\n")
        else:
            return
        self._last = now
        self.out.flush()


def _highlights(results: dict[type[Any], list[tuple[Query[Any], Any]]]) -> list[str]:
    lines = []
    for query, result in results.get(ActiveUsers, []):
        if not isinstance(query, ActiveUsers) or not isinstance(result, ActiveUsersResult):
            continue
        if query.metric == "active" and not query.segments and query.group_by is None:
            if result.series and result.series[0]:
                lines.append(f"active users on {query.end}: {result.series[0][-1]:.0f}")
            break
    for query, result in results.get(Funnel, []):
        if not isinstance(query, Funnel) or not isinstance(result, FunnelResult):
            continue
        if query.group_by is None and not query.segments and result.groups:
            steps = result.groups[0].cumulative_raw
            if steps and steps[0]:
                rate = steps[-1] / steps[0]
                lines.append(
                    f"{' → '.join(query.events[i].event_type for i in range(len(steps)))} "
                    f"({query.start} .. {query.end}): {rate:.1%} convert"
                )
            break
    return lines


async def run_demo(
    *,
    quick: bool = False,
    seed: int = 1,
    out: TextIO | None = None,
    tty: bool | None = None,
    profile: Profile | None = None,
) -> DemoSummary:
    """Run the demo (see the module docstring), writing to ``out`` (standard output).

    ``tty`` forces the progress style (default: whether ``out`` is a terminal); ``profile``
    replaces the sizes chosen by ``quick``.
    """
    out = out if out is not None else sys.stdout
    tty = tty if tty is not None else out.isatty()
    profile = profile or (QUICK if quick else FULL)
    if os.environ.get("AMPLITUDE_API_KEY") or os.environ.get("AMPLITUDE_SECRET_KEY"):
        print(
            "note: the demo always runs against the built-in emulator; your project's "
            "credentials are not used (run real queries with 'amplitude-async query' or "
            "'amplitude-async backfill')",
            file=out,
        )
    dataset = SyntheticDataset(seed=seed, users=profile.users, days=profile.days)
    limits = Limits().scaled(profile.scale)
    queries = dashboard(dataset, profile)
    total = len(queries)
    kinds = len({type(q) for q in queries})
    print(
        f"Emulated project: {dataset.user_count:,} users, {len(dataset):,} events, "
        f"{dataset.start} .. {dataset.end} (seed {seed})\n"
        f"Limits: {limits.concurrent} in flight, {limits.cost_per_window:,} cost per "
        f"{limits.window:g} s window (Amplitude's 5 minutes, {1 / profile.scale:g}x faster)\n"
        f"Dashboard: {total} queries over {kinds} endpoints, total cost "
        f"{sum(q.cost for q in queries):,}",
        file=out,
        flush=True,
    )
    progress = _Progress(out, tty=tty, every=profile.progress_every)
    emulator = Emulator(
        dataset, limits=limits, seed=seed, arrival_delay=(0.0, 0.004), processing_time=(0.0, 0.01)
    )
    by_kind: dict[type[Any], list[tuple[Query[Any], Any]]] = {}
    started = time.monotonic()
    async with (
        emulator,
        AmplitudeClient(
            emulator.api_key, emulator.secret_key, base_url=emulator.url, limits=limits
        ) as client,
    ):
        done = 0
        cost = 0

        def line() -> str:
            window = emulator.enforcer.window_usage(Pool.STANDARD)[0]
            stats = client.statistics()
            return (
                f"[{done:>{len(str(total))}}/{total}] cost {cost:,} | window "
                f"{window:,}/{limits.cost_per_window:,} ({window / limits.cost_per_window:.0%}) "
                f"| in flight {stats[Pool.STANDARD].in_flight} | 429s {stats.rate_limited} "
                f"| {time.monotonic() - started:.1f} s"
            )

        async with _ticking(progress, line, 0.1 if tty else min(0.25, profile.progress_every)):
            async for query, result in client.as_completed(queries):
                done += 1
                cost += query.cost
                by_kind.setdefault(type(query), []).append((query, result))
        progress.show(line(), final=True)
        stats = client.statistics()
    wall = time.monotonic() - started
    served = emulator.statistics()
    summary = DemoSummary(
        queries=done,
        endpoints=kinds,
        cost=cost,
        rate_limited=served.rate_limited,
        retries=stats.retries,
        peak_window_cost=served.peak_window_cost,
        budget=limits.cost_per_window,
        window=limits.window,
        wall_time=wall,
    )
    for text in _highlights(by_kind):
        print(f"  {text}", file=out)
    print("Summary", file=out)
    print(summary.table(), file=out, flush=True)
    return summary


async def run_shared_demo(
    *,
    processes: int,
    budget_url: str | None = None,
    quick: bool = False,
    seed: int = 1,
    out: TextIO | None = None,
    tty: bool | None = None,
) -> DemoSummary:
    """The demo's dashboard split over ``processes`` worker processes sharing one budget.

    ``budget_url`` is the shared budget's Redis; without one a private ``redis-server`` is
    started for the run (:class:`FileNotFoundError` if there is none on PATH).
    """
    from .testing.workers import WorkerSpec, private_redis, run_workers

    if not 1 <= processes <= MAX_PROCESSES:
        raise ValueError(f"processes must be 1 to {MAX_PROCESSES}, got {processes!r}")
    out = out if out is not None else sys.stdout
    tty = tty if tty is not None else out.isatty()
    profile = QUICK if quick else FULL
    dataset = SyntheticDataset(seed=seed, users=profile.users, days=profile.days)
    limits = Limits().scaled(profile.scale)
    queries = dashboard(dataset, profile)
    kinds = len({type(q) for q in queries})
    async with contextlib.AsyncExitStack() as stack:
        if budget_url is None:
            budget_url = await stack.enter_async_context(private_redis())
            where = "a private redis-server"
        else:
            where = budget_url.split("@")[-1]
        print(
            f"Emulated project: {dataset.user_count:,} users (seed {seed}); limits "
            f"{limits.concurrent} in flight, {limits.cost_per_window:,} cost per "
            f"{limits.window:g} s\n"
            f"Dashboard: {len(queries)} queries, total cost {sum(q.cost for q in queries):,}, "
            f"split over {processes} processes sharing one budget in {where}",
            file=out,
            flush=True,
        )
        emulator = Emulator(
            dataset,
            limits=limits,
            seed=seed,
            arrival_delay=(0.0, 0.004),
            processing_time=(0.0, 0.01),
        )
        progress = _Progress(out, tty=tty, every=profile.progress_every)
        started = time.monotonic()
        async with emulator:
            specs = [
                WorkerSpec(
                    emulator.url,
                    emulator.api_key,
                    emulator.secret_key,
                    budget_url=budget_url,
                    part=i,
                    parts=processes,
                    scale=profile.scale,
                    seed=seed,
                    profile="quick" if quick else "full",
                )
                for i in range(processes)
            ]

            def line() -> str:
                served = emulator.statistics()
                window = emulator.enforcer.window_usage(Pool.STANDARD)[0]
                return (
                    f"[{served.answered}/{len(queries)}] window {window:,}/"
                    f"{limits.cost_per_window:,} | in flight "
                    f"{emulator.enforcer.in_flight(Pool.STANDARD)} | 429s {served.rate_limited} "
                    f"| {time.monotonic() - started:.1f} s"
                )

            every = 0.1 if tty else min(0.25, profile.progress_every)
            async with _ticking(progress, line, every):
                reports = await run_workers(specs)
            progress.show(line(), final=True)
        served = emulator.statistics()
    # From the workers' first query (their start-up is not the budget's business).
    wall = max(r.elapsed for r in reports)
    for index, report in enumerate(reports):
        failed = ", ".join(f"{n} {name}" for name, n in report.failed.items()) or "none failed"
        print(
            f"  process {index + 1}: {report.done}/{report.queries} queries, cost "
            f"{report.cost:,}, {report.round_trips} budget round trips ({failed})",
            file=out,
        )
    summary = DemoSummary(
        queries=sum(r.done for r in reports),
        endpoints=kinds,
        cost=sum(r.cost for r in reports),
        rate_limited=served.rate_limited,
        retries=sum(r.retries for r in reports),
        peak_window_cost=served.peak_window_cost,
        budget=limits.cost_per_window,
        window=limits.window,
        wall_time=wall,
    )
    print("Summary", file=out)
    print(summary.table(), file=out, flush=True)
    return summary


async def _until_terminated(run: Coroutine[Any, Any, DemoSummary]) -> DemoSummary:
    """Await ``run``; SIGTERM cancels it, so that its clean-up stops the worker processes and
    the private ``redis-server`` (the default action would end this process without it)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    handled = False
    with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        handled = True
    try:
        return await run
    finally:
        if handled:
            loop.remove_signal_handler(signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: ``amplitude-async demo [--quick] [--seed N] [--processes N]
    [--budget-url URL]``; 0 when no 429."""
    parser = argparse.ArgumentParser(
        prog="amplitude-async demo",
        description="Run a dashboard's worth of queries against the built-in emulator.",
    )
    parser.add_argument("--quick", action="store_true", help="a run of a few seconds")
    parser.add_argument("--seed", type=int, default=1, help="synthetic project seed (1)")
    parser.add_argument(
        "--processes", type=int, default=1, help="split the dashboard over N processes (1)"
    )
    parser.add_argument("--budget-url", help="the shared budget's Redis for --processes")
    args = parser.parse_args(argv)
    if not 1 <= args.processes <= MAX_PROCESSES:
        parser.error(f"--processes must be 1 to {MAX_PROCESSES}, got {args.processes}")
    try:
        if args.processes == 1 and args.budget_url is None:
            summary = asyncio.run(_until_terminated(run_demo(quick=args.quick, seed=args.seed)))
        else:
            summary = asyncio.run(
                _until_terminated(
                    run_shared_demo(
                        processes=args.processes,
                        budget_url=args.budget_url,
                        quick=args.quick,
                        seed=args.seed,
                    )
                )
            )
    except KeyboardInterrupt:
        return 130
    except asyncio.CancelledError:
        print("amplitude-async demo: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except FileNotFoundError:
        print(
            "amplitude-async demo: error: --processes needs --budget-url or redis-server on "
            "PATH (Debian package redis-server)",
            file=sys.stderr,
        )
        return 2
    return 0 if summary.rate_limited == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
