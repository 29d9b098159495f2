"""Cohort downloads: memory, throughput against plain aiohttp, and the Dashboard rate beside them.

The emulator runs in a child process (so its memory and CPU are not charged to the client) with
a synthetic cohort of ``--members`` members (2,000,000 by default: Amplitude's largest), served
as gzip CSV behind a 302 to its storage server, as large cohorts are. Then:

1. **memory**: a fresh process downloads the cohort with ``AmplitudeClient.download_cohort``
   (request, poll, redirect, stream, decompress, write to disk) and reports its peak resident set
   size (``ru_maxrss``) above its size after imports and client creation. Target: < 64 MiB;
2. **throughput**: another fresh process, with the ``request_id`` of step 1 (no new job), times
   side by side, alternating, ``--repeat`` times each: the client's download (its poll, the
   redirect, the stream to a file) against a plain aiohttp streaming read of the same storage
   link (``iter_chunked``, bytes dropped), and against plain aiohttp doing the client's work by
   hand (stream, gunzip, write the file). Medians and their ratios;
3. **Dashboard rate**: one client runs event segmentation queries at full budget for
   ``--seconds`` alone, then as long again with ``--downloads`` cohort downloads of the same
   cohort running beside them in the same client (same scheduler, same 5 slots). The rate is
   the cost completed per second against the budget's ``cost_per_window / window``; 429s are
   counted.

    python benchmarks/bench_cohorts.py [--members 2000000] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import statistics
import tempfile
import time
import zlib
from datetime import date, timedelta
from multiprocessing.connection import Connection
from typing import Any

from report import Report, add_write_option, met

MIB = 1024 * 1024
READING = """
Reading: the client's download is the whole flow from a `request_id` (a poll, the 302, the
stream, gunzip, counting records, writing the file); "plain read" only receives the gzip bytes
and drops them, "by hand" does the same work as the client with bare aiohttp and zlib (no
record counting, no progress, no temporary-file rename). Memory stays flat: a run with
`--members 200000` gave the same figure. The Dashboard queries keep the same share of the budget
with two downloads looping beside them: a download holds a standard slot only for its poll and
its `/file` request (cost 0), while the storage transfer runs outside the slot."""
SCALE = 0.01  # emulator and client limits: a 3 s cost window, 0.6 s storage links
START = date(2026, 9, 1)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def serve(members: int, port_out: Connection) -> None:
    """The emulator with a synthetic cohort ``big``, until terminated."""
    from amplitude_async.limits import Limits
    from amplitude_async.testing.dataset import SyntheticDataset
    from amplitude_async.testing.emulator import Emulator

    async def main() -> None:
        dataset = SyntheticDataset(seed=1, users=500, days=30, start=START)
        emulator = Emulator(
            dataset,
            limits=Limits().scaled(SCALE),
            cohort_job_time=0.5,
            synthetic_cohorts={"big": members},
            keep_log=10_000,
        )
        async with emulator:
            port_out.send(emulator.url)
            port_out.close()
            await asyncio.Event().wait()

    asyncio.run(main())


def client(url: str, **kwargs: Any) -> Any:
    from amplitude_async import AmplitudeClient, Limits

    return AmplitudeClient(
        "emulator-key", "emulator-secret", base_url=url, limits=Limits().scaled(SCALE), **kwargs
    )


def memory(url: str, directory: str, out: Connection) -> None:
    """In a fresh process: one whole download; send (baseline MiB, peak MiB, result, seconds)."""

    async def main() -> tuple[float, float, Any, float]:
        async with client(url) as c:
            baseline = peak_mib()
            began = time.perf_counter()
            done = await c.download_cohort("big", f"{directory}/memory.csv", poll_interval=0.05)
            return baseline, peak_mib(), done, time.perf_counter() - began

    out.send(asyncio.run(main()))
    out.close()


def throughput(url: str, request_id: str, repeat: int, directory: str, out: Connection) -> None:
    """In a fresh process: the three ways to fetch the file, alternating; send their times."""
    import aiohttp

    from amplitude_async.sansio import basic_auth

    auth = {"Authorization": basic_auth("emulator-key", "emulator-secret")}
    file_url = f"{url}/api/5/cohorts/request/{request_id}/file"

    async def link(session: aiohttp.ClientSession) -> str:
        async with session.get(file_url, headers=auth, allow_redirects=False) as answer:
            assert answer.status == 302, answer.status
            return answer.headers["Location"]

    async def plain_read(session: aiohttp.ClientSession) -> int:
        size = 0
        async with session.get(await link(session)) as answer:
            async for chunk in answer.content.iter_chunked(256 * 1024):
                size += len(chunk)
        return size

    async def by_hand(session: aiohttp.ClientSession) -> int:
        inflate = zlib.decompressobj(wbits=31)
        size = 0
        target = f"{directory}/by-hand.csv"
        with open(target, "wb") as f:  # noqa: ASYNC230 - as the client writes: in the loop
            async with session.get(await link(session)) as answer:
                async for chunk in answer.content.iter_chunked(256 * 1024):
                    data = inflate.decompress(chunk)
                    f.write(data)
                    size += len(data)
        os.replace(target, f"{directory}/by-hand-done.csv")
        return size

    async def main() -> dict[str, list[float]]:
        times: dict[str, list[float]] = {"client": [], "plain read": [], "by hand": []}
        async with client(url) as c, aiohttp.ClientSession() as session:
            for _ in range(repeat):
                for kind in times:
                    began = time.perf_counter()
                    if kind == "client":
                        await c.download_cohort(
                            "big", f"{directory}/client.csv", request_id=request_id
                        )
                    elif kind == "plain read":
                        await plain_read(session)
                    else:
                        await by_hand(session)
                    times[kind].append(time.perf_counter() - began)
        return times

    out.send(asyncio.run(main()))
    out.close()


async def dashboard_rate(url: str, seconds: float, downloads: int, directory: str) -> str:
    """Cost completed per second by Dashboard queries, alone and beside cohort downloads."""
    from amplitude_async import EventSegmentation

    query = EventSegmentation(
        ["Search"], START, START + timedelta(days=29), group_by="country"
    )  # cost: 30 days x 2 conditions = 60
    # Identical queries in flight would be sent once: every query here is sent.
    async with client(url, coalesce=False) as c:
        budget_rate = c.limits.cost_per_window / c.limits.window

        async def queries(until: float, done: list[tuple[float, int]]) -> None:
            async def one() -> None:
                while time.monotonic() < until:
                    await c.run(query, priority=0)
                    done.append((time.monotonic(), query.cost))

            await asyncio.gather(*(one() for _ in range(40)))

        async def cohort_loop(until: float, index: int, count: list[int]) -> None:
            while time.monotonic() < until:
                await c.download_cohort("big", f"{directory}/beside-{index}.csv", poll_interval=0.1)
                count[0] += 1

        lines = []
        for label, n in (("alone", 0), (f"beside {downloads} downloads", downloads)):
            began = time.monotonic()
            until = began + seconds
            done: list[tuple[float, int]] = []
            count = [0]
            before = c.statistics().rate_limited
            await asyncio.gather(
                queries(until, done), *(cohort_loop(until, i, count) for i in range(n))
            )
            # The rate over the whole windows of the phase, skipping the first (a burst).
            window = c.limits.window
            steady = [cost for at, cost in done if at >= began + window and at < until]
            rate = sum(steady) / (seconds - window)
            lines.append(
                f"  {label:<24} {rate:7.1f} cost/s = {rate / budget_rate:5.1%} of the budget "
                f"({len(done)} queries, {count[0]} downloads finished, "
                f"{c.statistics().rate_limited - before} x 429)"
            )
            if label == "alone":
                alone = rate
        lines.append(f"  ratio beside/alone: {rate / alone:.3f}")
        return "\n".join([f"budget {budget_rate:.0f} cost/s (scaled {SCALE})", *lines])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--downloads", type=int, default=2)
    add_write_option(parser)
    args = parser.parse_args()
    report = Report("bench_cohorts", "Cohort downloads (bench_cohorts.py)")
    context = multiprocessing.get_context("spawn")
    port_in, port_out = context.Pipe(duplex=False)
    server = context.Process(target=serve, args=(args.members, port_out), daemon=True)
    server.start()
    try:
        url = port_in.recv()
        with tempfile.TemporaryDirectory() as directory:
            result_in, result_out = context.Pipe(duplex=False)
            worker = context.Process(target=memory, args=(url, directory, result_out))
            worker.start()
            baseline, peak, done, seconds = result_in.recv()
            worker.join()
            report.print(
                f"cohort: {done.members:,} members, {done.bytes / MIB:.1f} MiB of CSV "
                f"(gzip behind a 302 to the storage server)"
            )
            above = peak - baseline
            report.print(
                f"memory: peak RSS {peak:.0f} MiB, {above:+.1f} MiB above the {baseline:.0f} MiB "
                f"after imports (target < 64 MiB: {met(above < 64)}); whole flow with the job's "
                f"wait {seconds:.1f} s"
            )
            result_in, result_out = context.Pipe(duplex=False)
            worker = context.Process(
                target=throughput,
                args=(url, done.request_id, args.repeat, directory, result_out),
            )
            worker.start()
            times = result_in.recv()
            worker.join()
            client_time = statistics.median(times["client"])
            report.print(f"throughput (median of {args.repeat}, alternating):")
            for kind, values in times.items():
                median = statistics.median(values)
                report.print(
                    f"  {kind:<11} {median:6.2f} s  {done.bytes / MIB / median:6.1f} MiB/s of CSV"
                    f"  client/this = {client_time / median:.2f}"
                )
            report.print("dashboard rate:")
            report.print(asyncio.run(dashboard_rate(url, args.seconds, args.downloads, directory)))
    finally:
        server.terminate()
        server.join()
    report.attach(READING)
    report.finish(write=args.write)


if __name__ == "__main__":
    main()
