"""``amplitude-async cost``: a query's cost, its pool and whether it fits, without running it."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, TextIO

from ..errors import QueryTooExpensive
from ..limits import DEFAULT_LIMITS
from ..queries import DatedQuery, Query
from .common import EPILOG, EXIT_OK, QUERY_HELP
from .query import query_from, query_source


def add_parser(commands: Any, connection: argparse.ArgumentParser) -> None:
    """Add the ``cost`` command to ``commands``."""
    cost = commands.add_parser(
        "cost",
        help="print a query's cost without running it",
        description=f"Print a query's cost, its pool and whether it fits. {QUERY_HELP}",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    query_source(cost)


def _cost_report(query: Query[Any], out: TextIO) -> int:
    from ..split import plan_chunks

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


def run(args: argparse.Namespace, extra: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Run the ``cost`` command."""
    return _cost_report(query_from(args, extra), out)
