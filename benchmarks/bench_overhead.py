"""Requests per second through AmplitudeClient vs raw aiohttp when the limits never bind.

A trivial aiohttp server (a separate process on 127.0.0.1, so its CPU is not charged to the
client) answers every GET with the same small segmentation JSON (``bench_calls.py``'s). N
*distinct* queries are sent ``rounds`` times each way, alternating, at the same concurrency:

- raw: ``aiohttp.ClientSession`` (connection limit 100, as the library's transport),
  ``asyncio.Semaphore(concurrency)``, ``GET`` of N distinct URLs + ``read()`` + ``json.loads``
  (``bench_calls.raw``);
- client: ``AmplitudeClient.gather`` of N distinct ``EventSegmentation`` queries (one event name
  each: nothing to coalesce, coalescing on as by default) with ``Limits(concurrent=
  concurrency)`` and budgets so large they never bind: every request still passes the
  coalescer, the scheduler, the cost check, request building, response deciphering and the
  decoding into a typed result.

The client runs in three observability setups: ``telemetry=False`` (no OpenTelemetry, no
hooks, logging silent: the cost of the call sites alone), the default with the OpenTelemetry API
installed but no SDK configured (every span and instrument a no-op), and the SDK with a
``SimpleSpanProcessor`` into an ``InMemorySpanExporter`` plus an ``InMemoryMetricReader`` (every
span and measurement really recorded). ``--baseline REV`` adds the client of commit ``REV``
(extracted with ``git archive`` and imported under another name), for the cost of a change
measured in the same run.

Each round runs every way once, in turn, so each round gives one ratio to raw aiohttp per way
(of requests/s and of CPU per request), and one ratio to the baseline; the medians of those
ratios are reported (absolute requests/s only as context: they swing with the machine's load).

    python benchmarks/bench_overhead.py [-n 2000] [--concurrency 10] [--rounds 5]
        [--baseline REV] [--write]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import importlib
import multiprocessing
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench_calls import END, NEVER_BINDS, START, raw, serve
from report import Report, add_write_option, extract_package, met

from amplitude_async.client import AmplitudeClient
from amplitude_async.limits import Limits
from amplitude_async.queries import EventSegmentation
from amplitude_async.results import EventSegmentationResult


async def client(
    url: str, n: int, concurrency: int, *, package: Any = None, **options: Any
) -> None:
    """``n`` distinct event segmentations through an AmplitudeClient (of ``package``, default
    this one)."""
    if package is None:
        make, limits_type, query = AmplitudeClient, Limits, EventSegmentation
    else:
        make, limits_type = package.AmplitudeClient, package.Limits
        query = package.EventSegmentation
    limits = limits_type(
        concurrent=concurrency, cost_per_window=NEVER_BINDS, cost_per_hour=NEVER_BINDS
    )
    queries = [query([f"event {i}"], START, END, metric="totals") for i in range(n)]
    async with make("key", "secret", base_url=url, limits=limits, **options) as amp:
        results = await amp.gather(queries)
        assert len(results) == n
        assert package is not None or all(isinstance(r, EventSegmentationResult) for r in results)


def with_sdk() -> tuple[Way, Callable[[], int]]:
    """The client with the OpenTelemetry SDK recording into memory; and a function that empties
    the memory, returning how many spans it held."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])

    def drain() -> int:
        held = len(spans.get_finished_spans())
        spans.clear()
        reader.get_metrics_data()
        return held

    way = functools.partial(client, tracer_provider=tracer_provider, meter_provider=meter_provider)
    return way, drain


def baseline_package(rev: str, into: Path) -> Any:
    """The ``amplitude_async`` package of commit ``rev``, imported as ``amplitude_async_<rev>``."""
    name = "amplitude_async_" + re.sub(r"\W", "_", rev)
    extract_package(rev, into)
    package = into / name
    (into / "amplitude_async").rename(package)
    for source in package.rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        source.write_text(re.sub(r"\bamplitude_async\b", name, text), encoding="utf-8")
    sys.path.insert(0, str(into))
    return importlib.import_module(name)


Way = Callable[..., Awaitable[None]]


async def timed(run: Way, url: str, n: int, concurrency: int) -> tuple[float, float]:
    """Wall seconds and process CPU seconds of one run."""
    gc.collect()  # the garbage of the way before is not charged to this one
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
        sdk, drain = with_sdk()
        ways: dict[str, Way] = {"raw aiohttp": raw}
        if args.baseline:
            scratch = tempfile.TemporaryDirectory()
            package = baseline_package(args.baseline, Path(scratch.name))
            ways[f"client at {args.baseline}"] = functools.partial(client, package=package)
        ways["client, telemetry off"] = functools.partial(client, telemetry=False)
        ways["client, OTel API, no SDK"] = client
        ways["client, OTel SDK in memory"] = sdk
        for run in ways.values():  # warm-up: imports, first connections
            await run(url, min(args.n, 200), args.concurrency)
        drain()
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        for _ in range(args.rounds):
            for name, run in ways.items():
                samples[name].append(await timed(run, url, args.n, args.concurrency))
            # Every query and attempt was recorded; emptied outside the timed runs.
            assert drain() == 2 * args.n
    finally:
        server.terminate()
        server.join(5)
    report(args, samples)


def report(args: argparse.Namespace, samples: dict[str, list[tuple[float, float]]]) -> None:
    out = args.report
    out.print(
        f"N={args.n} distinct queries, concurrency {args.concurrency}, {args.rounds} rounds "
        f"(each round runs every way once, in turn), server in a separate process"
    )
    raw_runs = samples["raw aiohttp"]
    baseline = f"client at {args.baseline}" if args.baseline else None
    out.print(
        "\nratios measured in the same round, median (min..max) over the rounds;"
        "\nCPU is this process's CPU time per request"
    )
    header = "| way | requests/s vs raw | CPU per request vs raw |"
    rule = "|---|---|---|"
    if baseline:
        header += f" CPU per request vs {baseline} |"
        rule += "---|"
    out.print(header)
    out.print(rule)

    def spread(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} ({min(values):.2f}..{max(values):.2f})"

    for name, runs in samples.items():
        if name == "raw aiohttp":
            continue
        rates = [rw / w for (rw, _), (w, _) in zip(raw_runs, runs, strict=True)]
        cpus = [c / rc for (_, rc), (_, c) in zip(raw_runs, runs, strict=True)]
        line = f"| {name} | {spread(rates)} | {spread(cpus)} |"
        if baseline:
            base = samples[baseline]
            line += f" {spread([c / bc for (_, bc), (_, c) in zip(base, runs, strict=True)])} |"
        out.print(line)
    if baseline:
        cheap = ("client, telemetry off", "client, OTel API, no SDK")
        base = samples[baseline]
        medians = [
            statistics.median(c / bc for (_, bc), (_, c) in zip(base, samples[way], strict=True))
            for way in cheap
        ]
        out.print(
            f"\ntarget: telemetry off and the API without an SDK within 5 % of {baseline} "
            f"(median CPU per request {medians[0]:.2f}, {medians[1]:.2f}): "
            f"{met(max(medians) <= 1.05)}"
        )
    default = samples["client, OTel API, no SDK"]
    over = statistics.median(
        (c - rc) / args.n * 1e6 for (_, rc), (_, c) in zip(raw_runs, default, strict=True)
    )
    out.print(
        f"target: the default client's CPU per request over raw aiohttp <= +40 µs "
        f"(median of the rounds' differences, +{over:.0f} µs): {met(over <= 40)}"
    )
    out.print("\ncontext (absolute, this machine and load):")
    out.print("| way | median req/s | min..max req/s | CPU per request (median) |")
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
    parser.add_argument(
        "--baseline", metavar="REV", help="also run the client of this commit (git archive)"
    )
    add_write_option(parser)
    arguments = parser.parse_args()
    arguments.report = Report("bench_overhead", "Client overhead when limits do not bind")
    asyncio.run(main(arguments))
    arguments.report.finish(write=arguments.write)
