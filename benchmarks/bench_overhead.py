"""Requests per second through AmplitudeClient vs raw aiohttp when the limits never bind.

A trivial aiohttp server (a separate process on 127.0.0.1, so its CPU is not charged to the
client) answers every GET with the same small events-list JSON. N requests are sent
``rounds`` times each way, alternating, at the same concurrency:

- raw: ``aiohttp.ClientSession`` (connection limit 100, as the library's transport),
  ``asyncio.Semaphore(concurrency)``, ``GET`` + ``read()`` + ``json.loads``;
- client: ``AmplitudeClient.gather([EventsList()] * N)`` with ``Limits(concurrent=concurrency)``
  and budgets so large they never bind: every request still passes the scheduler, the cost
  check, request building, response deciphering and cattrs structuring into a typed result.

The result is the ratio of the two ways measured side by side: each round runs raw then client,
so each round gives one client/raw ratio of requests/s and of CPU per request, and the medians
of those ratios are reported (absolute requests/s only as context: they swing with the
machine's load).

    python benchmarks/bench_overhead.py [-n 2000] [--concurrency 10] [--rounds 5] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection

import aiohttp
from aiohttp import web
from report import Report, add_write_option
from serving import serve_forever

from amplitude_async.client import AmplitudeClient
from amplitude_async.limits import Limits
from amplitude_async.queries import EventsList
from amplitude_async.results import EventsListResult
from amplitude_async.sansio import basic_auth, build_request

BODY = json.dumps({"data": [{"value": "Play Song", "display": "Play Song", "totals": 42}]}).encode()
NEVER_BINDS = 10**12  # a cost budget no run comes near


def serve(port_out: Connection) -> None:
    """Run the trivial server until the process is terminated."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=BODY, content_type="application/json")

    serve_forever(answer, port_out)


async def raw(url: str, n: int, concurrency: int) -> None:
    query = EventsList()
    request = build_request(url, query, authorization=basic_auth("key", "secret"))
    semaphore = asyncio.Semaphore(concurrency)
    headers = dict(request.headers)

    async def one(session: aiohttp.ClientSession) -> object:
        async with semaphore, session.get(request.url, headers=headers) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(response.status)
            return json.loads(body)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
        await asyncio.gather(*(one(session) for _ in range(n)))


async def client(url: str, n: int, concurrency: int) -> None:
    limits = Limits(concurrent=concurrency, cost_per_window=NEVER_BINDS, cost_per_hour=NEVER_BINDS)
    async with AmplitudeClient("key", "secret", base_url=url, limits=limits) as amp:
        results = await amp.gather([EventsList()] * n)
        assert all(isinstance(r, EventsListResult) for r in results)


Way = Callable[[str, int, int], Awaitable[None]]


async def timed(run: Way, url: str, n: int, concurrency: int) -> tuple[float, float]:
    """Wall seconds and process CPU seconds of one run."""
    wall, cpu = time.perf_counter(), time.process_time()
    await run(url, n, concurrency)
    return time.perf_counter() - wall, time.process_time() - cpu


async def main(args: argparse.Namespace) -> None:
    receive, send = multiprocessing.Pipe(duplex=False)
    server = multiprocessing.Process(target=serve, args=(send,), daemon=True)
    server.start()
    try:
        if not receive.poll(10):
            raise RuntimeError("the server did not start")
        url = f"http://127.0.0.1:{receive.recv()}"
        ways: dict[str, Way] = {
            "raw aiohttp": raw,
            "AmplitudeClient": client,
        }
        for run in ways.values():  # warm-up: imports, first connections
            await run(url, min(args.n, 200), args.concurrency)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        for _ in range(args.rounds):
            for name, run in ways.items():
                samples[name].append(await timed(run, url, args.n, args.concurrency))
    finally:
        server.terminate()
        server.join(5)
    out = args.report
    out.print(
        f"N={args.n} requests, concurrency {args.concurrency}, {args.rounds} rounds each "
        "(alternating), server in a separate process"
    )
    raw_runs, amp_runs = samples["raw aiohttp"], samples["AmplitudeClient"]
    rate_ratios = [
        raw_wall / amp_wall for (raw_wall, _), (amp_wall, _) in zip(raw_runs, amp_runs, strict=True)
    ]
    cpu_ratios = [
        amp_cpu / raw_cpu for (_, raw_cpu), (_, amp_cpu) in zip(raw_runs, amp_runs, strict=True)
    ]
    out.print(
        f"client/raw requests/s: median {statistics.median(rate_ratios):.2f} "
        f"({min(rate_ratios):.2f}..{max(rate_ratios):.2f} over {len(rate_ratios)} paired rounds)"
    )
    out.print(
        f"client/raw CPU per request: median {statistics.median(cpu_ratios):.2f} "
        f"({min(cpu_ratios):.2f}..{max(cpu_ratios):.2f})"
    )
    out.print("\ncontext (absolute, this machine and load):")
    out.print("| way | median req/s | min..max req/s | client CPU per request (median) |")
    out.print("|---|---|---|---|")
    for name, values in samples.items():
        rates = [args.n / wall for wall, _ in values]
        cpu = statistics.median(c / args.n for _, c in values)
        out.print(
            f"| {name} | {statistics.median(rates):.0f} | {min(rates):.0f}..{max(rates):.0f} "
            f"| {cpu * 1e6:.0f} µs |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="requests per round")
    parser.add_argument("--concurrency", type=int, default=10, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per way")
    add_write_option(parser)
    arguments = parser.parse_args()
    arguments.report = Report("bench_overhead", "Client overhead when limits do not bind")
    asyncio.run(main(arguments))
    arguments.report.finish(write=arguments.write)
