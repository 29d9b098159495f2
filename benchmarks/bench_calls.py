"""CPU per call on the client's path: distinct queries against raw aiohttp, and a cache hit.

A trivial aiohttp server (a separate process on 127.0.0.1, so its CPU is not charged to the
client) answers every GET with a small segmentation JSON. Each round, alternating:

- raw: ``aiohttp.ClientSession`` + ``asyncio.Semaphore(concurrency)``, ``GET`` of N distinct
  URLs (one event name each) + ``read()`` + ``json.loads``;
- client: ``AmplitudeClient.gather`` of N *distinct* ``EventSegmentation`` queries (nothing to
  coalesce) with budgets that never bind: scheduler, cost check, request building, response
  deciphering, cattrs structuring;
- ideal: the raw way plus what any client must do per call (the call with its cost checked
  and parameters encoded once, the request, deciphering, decoding into the typed result bound
  to its query), with no scheduler, batch, coalescing or cache: what the client's plumbing is
  measured against (trees with ``amplitude_async.call`` only);
- cache hit: ``client.run`` of one query N times, sequentially, from a warm ``MemoryCache``
  (the whole hit path: call, key, policy, look-up, decoding of the stored body).

Reported: client CPU per request minus raw's (µs, median of the paired rounds), the ideal's
minus raw's, and the CPU of a cache hit. With ``--baseline REV`` (a commit, or a checkout's
directory) the same measurement runs in a child process importing that tree (``git archive``
of the commit's package), round by round alternating with this tree, so the two are read side
by side under the same load. Every way starts from a collected heap (``gc.collect()`` before
it, untimed): a full collection costs 10-20 ms here, and left to chance it lands in whichever
way happens to cross the threshold, often not the one whose garbage caused it.

With several ``-n``, one table per batch size: a batch above the client's look-ahead (2,048
queries under way) starts each query as an earlier one is reported, instead of all at once.

    python benchmarks/bench_calls.py [-n 2000 [6000 ...]] [--concurrency 10] [--rounds 5]
        [--baseline REV] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import date
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from report import Report, add_write_option, extract_package, met
from serving import serve_forever

if TYPE_CHECKING:  # imported by each way, from the tree under measure
    from amplitude_async.queries import EventSegmentation

BODY = json.dumps(
    {
        "data": {
            "series": [[1, 2, 3]],
            "seriesLabels": [0],
            "seriesCollapsed": [[{"setId": "", "value": 6}]],
            "xValues": ["2026-09-01", "2026-09-02", "2026-09-03"],
        }
    }
).encode()
Way = Callable[[str, int, int], Awaitable[None]]
NEVER_BINDS = 10**12
START, END = date(2026, 9, 1), date(2026, 9, 3)
TARGET_OVERHEAD_US = 40.0
TARGET_HIT_US = 25.0


def serve(port_out: Connection) -> None:
    """Run the trivial server until the process is terminated."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="application/json")

    serve_forever(answer, port_out)


def queries(n: int) -> list[EventSegmentation]:
    from amplitude_async.queries import EventSegmentation

    return [EventSegmentation([f"event {i}"], START, END, metric="totals") for i in range(n)]


async def raw(url: str, n: int, concurrency: int) -> None:
    from amplitude_async.sansio import basic_auth, build_request

    auth = basic_auth("key", "secret")
    requests = [build_request(url, q, authorization=auth) for q in queries(n)]
    semaphore = asyncio.Semaphore(concurrency)

    async def one(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> object:
        async with semaphore, session.get(url, headers=headers) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(response.status)
            return json.loads(body)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
        await asyncio.gather(*(one(session, r.url, dict(r.headers)) for r in requests))


async def ideal(url: str, n: int, concurrency: int) -> None:
    """The raw way plus what the client must do to each call whatever its design: the call (its
    cost checked, its parameters encoded once), the request, deciphering the answer and decoding
    it into the typed result bound to its query. No scheduler, batch, coalescing or cache."""
    from yarl import URL

    from amplitude_async.call import Call
    from amplitude_async.converter import structure_result
    from amplitude_async.results import bind_query
    from amplitude_async.sansio import basic_auth, build_request, decipher

    auth = basic_auth("key", "secret")
    semaphore = asyncio.Semaphore(concurrency)

    async def one(session: aiohttp.ClientSession, query: EventSegmentation) -> object:
        call = Call(query, cost=query.cost)
        request = build_request(url, query, authorization=auth, encoded=call.encoded)
        target = URL(request.url, encoded=True)
        async with (
            semaphore,
            session.get(target, headers=request.headers, allow_redirects=False) as response,
        ):
            body = await response.read()
        decoded = decipher(response.status, response.headers, body, path=request.path)
        return bind_query(structure_result(decoded, query.result_type, path=query.path), query)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
        await asyncio.gather(*(one(session, q) for q in queries(n)))


async def client(url: str, n: int, concurrency: int) -> None:
    from amplitude_async.client import AmplitudeClient
    from amplitude_async.limits import Limits

    limits = Limits(concurrent=concurrency, cost_per_window=NEVER_BINDS, cost_per_hour=NEVER_BINDS)
    batch = queries(n)
    async with AmplitudeClient("key", "secret", base_url=url, limits=limits) as amp:
        results = await amp.gather(batch)
        assert len(results) == n


async def cache_hits(url: str, n: int) -> float:
    """CPU seconds of ``n`` cache hits, after one miss fills the cache."""
    from amplitude_async.cache import CachePolicy, MemoryCache
    from amplitude_async.client import AmplitudeClient
    from amplitude_async.limits import Limits

    limits = Limits(cost_per_window=NEVER_BINDS, cost_per_hour=NEVER_BINDS)
    policy = CachePolicy(today=lambda: date(2026, 12, 1))
    query = queries(1)[0]
    async with AmplitudeClient(
        "key", "secret", base_url=url, limits=limits, cache=MemoryCache(), cache_policy=policy
    ) as amp:
        await amp.run(query)
        gc.collect()
        cpu = time.process_time()
        for _ in range(n):
            await amp.run(query)
        return time.process_time() - cpu


async def measure(url: str, n: int, concurrency: int) -> dict[str, float]:
    """One round in this process: µs of CPU per request for raw and client, µs per hit."""
    out: dict[str, float] = {}
    ways: list[tuple[str, Way]] = [("raw", raw), ("client", client)]
    if importlib.util.find_spec("amplitude_async.call") is not None:
        ways.append(("ideal", ideal))  # older trees have no Call
    for name, way in ways:
        gc.collect()  # the garbage of the way before is not charged to this one
        cpu = time.process_time()
        await way(url, n, concurrency)
        out[name] = (time.process_time() - cpu) / n * 1e6
    out["hit"] = await cache_hits(url, n) / n * 1e6
    return out


def child_round(tree: Path, url: str, n: int, args: argparse.Namespace) -> dict[str, float]:
    """One round of ``n`` queries in a child process importing ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--one-round",
            url,
            *("-n", str(n), "--concurrency", str(args.concurrency)),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def baseline_tree(rev: str, into: Path) -> Path:
    """A directory whose ``amplitude_async`` is commit ``rev``'s (``rev`` may be one already)."""
    return Path(rev) if Path(rev).is_dir() else extract_package(rev, into)


def here_round(url: str, n: int, args: argparse.Namespace) -> dict[str, float]:
    return child_round(Path(__file__).resolve().parent.parent, url, n, args)


def main(args: argparse.Namespace) -> None:
    receive, send = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.Process(target=serve, args=(send,), daemon=True)
    server.start()
    try:
        if not receive.poll(10):
            raise RuntimeError("the server did not start")
        url = f"http://127.0.0.1:{receive.recv()}"
        scratch = tempfile.TemporaryDirectory()
        base = baseline_tree(args.baseline, Path(scratch.name)) if args.baseline else None
        trees = {"this tree": None} | ({"baseline": base} if base else {})
        sizes: dict[int, dict[str, list[dict[str, float]]]] = {}
        for n in args.n:
            samples = sizes[n] = {name: [] for name in trees}
            for _ in range(args.rounds):
                for name, tree in trees.items():
                    samples[name].append(
                        here_round(url, n, args)
                        if tree is None
                        else child_round(tree, url, n, args)
                    )
    finally:
        server.terminate()
        server.join(5)
        if args.baseline:
            scratch.cleanup()
    for n, samples in sizes.items():
        report(args, n, samples)


def report(args: argparse.Namespace, n: int, samples: dict[str, list[dict[str, float]]]) -> None:
    """One table: batches of ``n`` queries, every tree."""
    from amplitude_async.batch import DEFAULT_LOOKAHEAD  # this tree's

    out: Report = args.report
    fits = "within" if n <= DEFAULT_LOOKAHEAD else "above"
    out.print(
        f"\nN={n} distinct queries per round ({fits} the batch look-ahead of "
        f"{DEFAULT_LOOKAHEAD}), "
        f"concurrency {args.concurrency}, {args.rounds} rounds, each tree in a fresh child "
        "process, trees alternating; server in its own process"
    )
    out.print(
        "| tree | client - raw CPU per request | ideal - raw | cache hit CPU "
        "| raw CPU per request |"
    )
    out.print("|---|---|---|---|---|")
    medians: dict[str, tuple[float, float]] = {}
    for name, rounds in samples.items():
        overhead = statistics.median(r["client"] - r["raw"] for r in rounds)
        hit = statistics.median(r["hit"] for r in rounds)
        raw_cpu = statistics.median(r["raw"] for r in rounds)
        medians[name] = (overhead, hit)
        floor = (
            f"+{statistics.median(r['ideal'] - r['raw'] for r in rounds):.0f} µs"
            if all("ideal" in r for r in rounds)
            else "n/a"
        )
        out.print(f"| {name} | +{overhead:.0f} µs | {floor} | {hit:.0f} µs | {raw_cpu:.0f} µs |")
    overhead, hit = medians["this tree"]
    verdicts = (
        f"client overhead <= +{TARGET_OVERHEAD_US:.0f} µs: {met(overhead <= TARGET_OVERHEAD_US)}",
        f"MemoryCache hit <= {TARGET_HIT_US:.0f} µs: {met(hit <= TARGET_HIT_US)}",
    )
    out.print("\ntargets: " + "; ".join(verdicts))
    if "baseline" in medians:
        base_overhead, base_hit = medians["baseline"]
        out.print(
            f"this tree / baseline: overhead {overhead / base_overhead:.2f}, "
            f"cache hit {hit / base_hit:.2f} (same rounds, alternating)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-n", type=int, nargs="+", default=[2000], help="queries per round (several: a table each)"
    )
    parser.add_argument("--concurrency", type=int, default=10, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per tree")
    parser.add_argument("--baseline", metavar="REV", help="a commit (or a checkout) to compare")
    parser.add_argument("--one-round", metavar="URL", help=argparse.SUPPRESS)
    add_write_option(parser)
    arguments = parser.parse_args()
    if arguments.one_round:
        # A child: warm up once (imports, first connections), then measure one round.
        n = arguments.n[0]
        asyncio.run(measure(arguments.one_round, min(n, 200), arguments.concurrency))
        print(json.dumps(asyncio.run(measure(arguments.one_round, n, arguments.concurrency))))
        sys.exit(0)
    arguments.report = Report("bench_calls", "CPU per call: distinct queries and cache hits")
    main(arguments)
    arguments.report.finish(write=arguments.write)
