"""Redis commands per admitted request on a shared budget, this tree against an earlier commit.

A private ``redis-server`` on a free 127.0.0.1 port and the emulator serve one client with
``budget_url``; after a warm-up of 20 queries, 280 distinct event segmentations are gathered
and Redis's own ``total_commands_processed`` counter (which counts the commands a script runs)
is read before and after. With ``--baseline REV`` the same run is made in a child process
importing commit ``REV``'s package (``git archive``), so both figures come from one sitting.

    python benchmarks/redis_commands.py [--baseline REV]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from report import extract_package

WARM_UP, MEASURED = 20, 280


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def measure() -> float:
    """Commands per admitted request through this interpreter's ``amplitude_async``."""
    import redis

    port, directory = free_port(), tempfile.mkdtemp()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    server = subprocess.Popen(
        [*command, "--appendonly", "no", "--dir", directory], stdout=subprocess.DEVNULL
    )
    try:
        counter = redis.Redis(port=port)
        for _ in range(100):
            try:
                counter.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        return asyncio.run(run_queries(port, counter))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(directory, ignore_errors=True)


async def run_queries(port: int, counter: Any) -> float:
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
        before = int(counter.info("stats")["total_commands_processed"])
        await client.gather(queries[WARM_UP:])
        after = int(counter.info("stats")["total_commands_processed"])
    return (after - before) / MEASURED


def baseline(rev: str) -> float:
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
        return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", metavar="REV", help="also measure this commit")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(measure())
        return
    here = measure()
    print(f"this tree: {here:.2f} Redis commands per admitted request")
    if args.baseline:
        base = baseline(args.baseline)
        print(f"{args.baseline}: {base:.2f}; fewer by {base / here:.2f}x")


if __name__ == "__main__":
    main()
