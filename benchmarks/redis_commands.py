"""Redis commands per admitted request on a shared budget, this tree against an earlier commit.

A private ``redis-server`` on a free 127.0.0.1 port and the emulator serve one client with
``budget_url``; after a warm-up of 20 queries, 280 distinct event segmentations are gathered
and Redis's own ``total_commands_processed`` counter (which counts the commands a script runs)
is read before and after. With ``--baseline REV`` the same run is made in a child process
importing commit ``REV``'s package (``git archive``), so both figures come from one sitting.
``--breakdown`` also prints, from ``INFO commandstats``, the calls of each command per admitted
request (the script's own ``EVALSHA`` among them).

    python benchmarks/redis_commands.py [--baseline REV] [--breakdown] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from redis_process import RedisProcess
from report import Report, add_write_option, extract_package, met, wrap

WARM_UP, MEASURED = 20, 280
TARGET = 1.5
"""How many times fewer commands per admitted request than the baseline the target asks for."""


Measurement = tuple[float, dict[str, float]]
"""Commands per admitted request, and per command name (lower case) the calls per request."""


def measure() -> Measurement:
    """Commands per admitted request through this interpreter's ``amplitude_async``."""
    import redis

    directory = tempfile.mkdtemp()
    server = RedisProcess(directory)
    server.start()
    try:
        return asyncio.run(run_queries(server.port, redis.Redis(port=server.port)))
    finally:
        server.kill()
        shutil.rmtree(directory, ignore_errors=True)


def command_calls(counter: Any) -> dict[str, int]:
    """Calls so far of each command (``INFO commandstats``), by lower-case name."""
    stats = counter.info("commandstats")
    return {
        name.removeprefix("cmdstat_").lower(): int(fields["calls"])
        for name, fields in stats.items()
    }


async def run_queries(port: int, counter: Any) -> Measurement:
    from amplitude_async import AmplitudeClient, EventSegmentation, Limits
    from amplitude_async.testing.dataset import SyntheticDataset
    from amplitude_async.testing.emulator import Emulator

    limits = Limits().scaled(0.01)
    dataset = SyntheticDataset(seed=1, users=100, days=14, start=date(2026, 9, 1))
    queries = [
        EventSegmentation([f"e{i}"], date(2026, 9, 1), date(2026, 9, 3), metric="totals")
        for i in range(WARM_UP + MEASURED)
    ]
    async with (
        Emulator(dataset, limits=limits) as emulator,
        AmplitudeClient(
            emulator.api_key,
            emulator.secret_key,
            base_url=emulator.url,
            limits=limits,
            budget_url=f"redis://127.0.0.1:{port}/0",
        ) as client,
    ):
        await client.gather(queries[:WARM_UP])
        calls_before = command_calls(counter)
        before = int(counter.info("stats")["total_commands_processed"])
        await client.gather(queries[WARM_UP:])
        after = int(counter.info("stats")["total_commands_processed"])
        calls_after = command_calls(counter)
    # The reading itself (INFO between the two counts) is not the client's.
    calls_after["info"] = calls_after.get("info", 0) - 2
    breakdown = {
        name: (calls - calls_before.get(name, 0)) / MEASURED
        for name, calls in calls_after.items()
        if calls > calls_before.get(name, 0)
    }
    return (after - before - 1) / MEASURED, breakdown


def baseline(rev: str) -> Measurement:
    with tempfile.TemporaryDirectory() as scratch:
        extract_package(rev, Path(scratch))
        done = subprocess.run(
            [sys.executable, __file__, "--one"],
            env={**os.environ, "PYTHONPATH": scratch},
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
        per_request, breakdown = json.loads(done.stdout.strip().splitlines()[-1])
        return float(per_request), {str(k): float(v) for k, v in breakdown.items()}


def breakdown_table(columns: dict[str, dict[str, float]]) -> list[str]:
    """Calls per admitted request of each command, one column per measured tree (commands
    called less than once in 200 requests everywhere left out)."""
    names = sorted(
        (
            name
            for name in {name for calls in columns.values() for name in calls}
            if max(calls.get(name, 0.0) for calls in columns.values()) >= 0.005
        ),
        key=lambda name: (-max(calls.get(name, 0.0) for calls in columns.values()), name),
    )
    width = max([len("command"), *map(len, names)]) + 2
    lines = ["command".ljust(width) + "".join(f"{title:>12}" for title in columns)]
    lines.append("-" * len(lines[0]))
    for name in names:
        cells = "".join(f"{calls.get(name, 0.0):>12.2f}" for calls in columns.values())
        lines.append(name.ljust(width) + cells)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", metavar="REV", help="also measure this commit")
    parser.add_argument(
        "--breakdown", action="store_true", help="also print the calls of each command"
    )
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    add_write_option(parser)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure()))
        return
    out = Report("redis_commands", "Redis commands per admitted request (`redis_commands.py`)")
    out.print(
        wrap(
            f"One client, budget_url on a private redis-server, {MEASURED} distinct event "
            f"segmentations after {WARM_UP} of warm-up, Limits().scaled(0.01). Counted by "
            "Redis (total_commands_processed, which counts the commands a script runs)."
        )
    )
    out.print()
    here, here_calls = measure()
    out.print(f"this tree: {here:.2f} Redis commands per admitted request")
    columns = {"this tree": here_calls}
    if args.baseline:
        base, base_calls = baseline(args.baseline)
        ratio = base / here
        out.print(f"{args.baseline}: {base:.2f}; fewer by {ratio:.2f}x")
        out.print(f"- at least {TARGET:g}x fewer than {args.baseline}: {met(ratio >= TARGET)}")
        columns[args.baseline] = base_calls
    if args.breakdown:
        out.print()
        out.print("Calls of each command per admitted request:")
        for line in breakdown_table(columns):
            out.print(line)
    out.finish(write=args.write)


if __name__ == "__main__":
    main()
