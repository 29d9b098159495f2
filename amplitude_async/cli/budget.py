"""``amplitude-async budget``: a project's shared budget, live from Redis.

Reads the budget the processes of one project share (see
:mod:`amplitude_async.redis_store`) without joining it: per pool, the use of each window, the
requests in flight and queued across every process, a pause after a 429, and how many
processes are attached. ``--watch`` refreshes it until Ctrl-C. ``--metrics-port`` serves it
to Prometheus instead, for every ``--api-key`` given (see :mod:`.budget_metrics`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import urllib.parse
from collections.abc import Sequence
from typing import Any, TextIO

from ..admission import BudgetUsage
from ..errors import ConfigurationError
from ..limits import Limits

__all__ = ["add_parser", "format_usage", "run", "show_budget"]


def add_parser(commands: Any, connection: argparse.ArgumentParser) -> None:
    """Add the ``budget`` command to ``commands`` (it needs no connection options)."""
    parser = commands.add_parser(
        "budget",
        help="show a project's shared budget, live from Redis",
        description=(
            "Show the budget the processes of one project share through Redis: window use, "
            "requests in flight and queued, pauses and processes attached."
        ),
    )
    parser.add_argument("--budget-url", help="the Redis URL (default: $AMPLITUDE_BUDGET_URL)")
    parser.add_argument(
        "--api-key",
        action="append",
        help="the project's API key (default: $AMPLITUDE_API_KEY); with --metrics-port it may "
        "be repeated, and written NAME=KEY to label the project NAME",
    )
    parser.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (1)")
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve the budgets in the Prometheus format on this port until Ctrl-C",
    )
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="the address to serve metrics on (127.0.0.1; 0.0.0.0 for every interface)",
    )


def _where(url: str) -> str:
    """``url`` without its credentials."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def format_usage(usage: BudgetUsage | None, limits: Limits | None, where: str) -> str:
    """The shared budget as text lines."""
    if usage is None or limits is None:
        return f"no process shares this project's budget at {where} right now"
    lines = [f"shared budget at {where}: {usage.processes} process(es) attached"]
    caps = {"standard": limits.concurrent, "user": limits.user_concurrent}
    for pool in usage.pools:
        paused = f", paused {pool.paused_for:.1f} s more" if pool.paused_for > 0 else ""
        lines.append(
            f"  {pool.pool}: {pool.in_flight}/{caps[str(pool.pool)]} in flight, "
            f"{pool.queued} queued{paused}"
        )
        for window in pool.windows:
            share = window.used / window.budget if window.budget else 0.0
            lines.append(
                f"    {window.name:<22} used {window.used:>8,}/{window.budget:,} "
                f"({share:.0%}) per {window.length:g} s, remaining {window.remaining:,}"
            )
    return "\n".join(lines)


async def show_budget(
    url: str, api_key: str, *, watch: bool = False, interval: float = 1.0, out: TextIO
) -> int:
    """Print the shared budget of ``api_key`` at ``url`` (every ``interval`` s with ``watch``)."""
    from ..redis_store import RedisBudgetStore

    where = _where(url)
    while True:
        store = await RedisBudgetStore.observe(url, api_key=api_key)
        usage, limits = None, None
        if store is not None:
            try:
                usage, limits = await store.read_usage(), store.limits
            finally:
                await store.aclose()
        text = format_usage(usage, limits, where)
        if watch:
            out.write("\x1b[H\x1b[J" if out.isatty() else "\n")
        print(text, file=out, flush=True)
        if not watch:
            return 0
        await asyncio.sleep(interval)


def run(args: argparse.Namespace, extra: Sequence[str], out: TextIO, err: TextIO) -> int:
    """Run the ``budget`` command."""
    url = args.budget_url or os.environ.get("AMPLITUDE_BUDGET_URL")
    if not url:
        raise ConfigurationError("--budget-url", "name the shared budget's Redis")
    env_key = os.environ.get("AMPLITUDE_API_KEY")
    keys: list[str] = args.api_key or ([env_key] if env_key else [])
    if not keys or not all(keys):
        raise ConfigurationError("--api-key", "the shared budget is named by the API key")
    if args.interval <= 0:
        raise ConfigurationError("--interval", f"must be positive, got {args.interval!r}")
    if args.metrics_port is not None:
        return _serve_metrics(url, keys, args, out)
    if len(keys) > 1:
        raise ConfigurationError("--api-key", "give one key (several with --metrics-port)")
    try:
        return asyncio.run(
            show_budget(url, keys[0], watch=args.watch, interval=args.interval, out=out)
        )
    except KeyboardInterrupt:
        return 0


def _serve_metrics(url: str, keys: list[str], args: argparse.Namespace, out: TextIO) -> int:
    from .budget_metrics import parse_projects, serve_budget_metrics

    if args.watch:
        raise ConfigurationError("--watch", "cannot be combined with --metrics-port")
    if not 1 <= args.metrics_port <= 65535:
        raise ConfigurationError("--metrics-port", f"must be 1..65535, got {args.metrics_port}")
    projects = parse_projects(keys)
    server, thread = serve_budget_metrics(
        url, projects, host=args.metrics_host, port=args.metrics_port
    )
    names = ", ".join(name for name, _ in projects)
    print(
        f"serving the shared budget of {names} at {_where(url)} on "
        f"http://{args.metrics_host}:{server.server_port}/metrics (Ctrl-C to stop)",
        file=out,
        flush=True,
    )
    try:
        thread.join()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
    return 0
