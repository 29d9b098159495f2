"""Writing a backfill's output as Parquet against CSV: time, peak memory and file size.

Run: ``python benchmarks/bench_parquet.py [--rows 1000000] [--small 250000] [--repeat 3]
[--write]``. A checkpoint is filled with ``--rows`` synthetic tidy rows (10 queries x 250
days x 400 series at the default, about 2% empty cells), then ``write_outputs`` writes it as
``rows.csv`` and as ``rows.parquet``, each in a fresh process (so each peak RSS is its own),
alternating formats ``--repeat`` times. Printed per format: the median wall time of
``write_outputs``, the process's peak RSS and its growth while writing (peak RSS minus the RSS
just before), and the file's size; then the ratios Parquet / CSV of the same run. The same is
done for a ``--small`` checkpoint: a write that streams in row groups grows by about the same
amount whatever the row count, which the two sizes side by side show.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from report import Report, add_write_option

from amplitude_async.backfill import (
    CheckpointStore,
    Target,
    TidyRow,
    parse_job,
    plan_job,
    write_outputs,
)
from amplitude_async.limits import Limits

START = date(2026, 1, 1)
QUERIES = 10
SERIES_PER_MILLION = 400
COUNTRIES = ["United States", "Germany", "France", "India", "Brazil", "Japan", "Canada", "Spain"]
PLATFORMS = ["iOS", "Android", "Web", "Windows", "macOS"]


def job_data(days: int, fmt: str) -> dict[str, Any]:
    return {
        "start": START,
        "end": START + timedelta(days=days - 1),
        "chunk_days": 10,
        "output": "out",
        "formats": [fmt],
        "queries": [
            {"name": f"event {q} by country and platform", "endpoint": "event_segmentation",
             "events": [f"Event {q}"], "metric": "totals"}
            for q in range(QUERIES)
        ],
    }  # fmt: skip


def shape(rows: int) -> tuple[int, int]:
    """Days and series per query giving ``rows`` rows over :data:`QUERIES` queries."""
    series = SERIES_PER_MILLION if rows >= 1_000_000 else max(1, rows * SERIES_PER_MILLION // 10**6)
    days = rows // (QUERIES * series)
    if days * QUERIES * series != rows:
        raise SystemExit(f"--rows must be a multiple of {QUERIES * series}")
    return days, series


def fill(directory: Path, rows: int) -> None:
    """A finished checkpoint of ``rows`` synthetic rows in ``directory/out``."""
    days, series = shape(rows)
    job = parse_job(job_data(days, "csv"), base=directory)
    plan = plan_job(job, Limits())
    rng = random.Random(1)
    labels = [
        f"{COUNTRIES[i % len(COUNTRIES)]}; {PLATFORMS[i // len(COUNTRIES) % len(PLATFORMS)]}; v{i}"
        for i in range(series)
    ]
    target = Target.emulator(seed=1, users=1_000_000, start=START, days=days)
    with CheckpointStore(job.output) as store:
        store.begin(plan, target=target)
        for task in plan.tasks:
            assert task.start is not None
            assert task.end is not None
            chunk = []
            day = task.start
            while day <= task.end:
                text = day.isoformat()
                for label in labels:
                    value = None if rng.random() < 0.02 else rng.randrange(100_000)
                    chunk.append(TidyRow(task.name, label, text, "totals", value))
                day += timedelta(days=1)
            store.complete(task, chunk)


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def child(directory: Path, rows: int, fmt: str) -> None:
    """Write ``fmt`` from the checkpoint in ``directory``; print time, memory, size as JSON."""
    days, _ = shape(rows)
    job = parse_job(job_data(days, fmt), base=directory)
    plan = plan_job(job, Limits())
    if fmt == "parquet":
        import pyarrow.parquet  # noqa: F401  # loaded before the baseline, as parse_job does
    with CheckpointStore(job.output) as store:
        before = rss_kib()
        began = time.perf_counter()
        files = write_outputs(job, plan, store)
        seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    manifest = json.loads((job.output / "manifest.json").read_text())
    name = files[0].name
    print(
        json.dumps(
            {
                "seconds": seconds,
                "before_kib": before,
                "peak_kib": peak,
                "bytes": files[0].stat().st_size,
                "rows": manifest["files"][name],
            }
        )
    )


def measure(directory: Path, rows: int, fmt: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(directory), str(rows), fmt],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    if result["rows"] != rows:
        raise SystemExit(f"{fmt}: wrote {result['rows']} rows, expected {rows}")
    return result


def run_size(rows: int, repeat: int, out: Report) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        began = time.perf_counter()
        fill(directory, rows)
        out.print(f"{rows:,} rows: checkpoint filled in {time.perf_counter() - began:.1f} s")
        runs: dict[str, list[dict[str, Any]]] = {"csv": [], "parquet": []}
        for _ in range(repeat):
            for fmt in runs:
                runs[fmt].append(measure(directory, rows, fmt))
    summary = {}
    for fmt, results in runs.items():
        summary[fmt] = {
            "seconds": statistics.median(r["seconds"] for r in results),
            "peak": statistics.median(r["peak_kib"] for r in results) / 1024,
            "before": statistics.median(r["before_kib"] for r in results) / 1024,
            "growth": statistics.median(r["peak_kib"] - r["before_kib"] for r in results) / 1024,
            "mib": results[0]["bytes"] / 2**20,
        }
    return summary


def main(args: argparse.Namespace, out: Report) -> None:
    sizes = [args.small, args.rows] if args.small else [args.rows]
    results = {rows: run_size(rows, args.repeat, out) for rows in sizes}
    out.print()
    out.print(
        f"{'rows':>9}  {'format':<8} {'write s':>8} {'RSS before MiB':>15} "
        f"{'peak RSS MiB':>13} {'growth MiB':>11} {'file MiB':>9}"
    )
    for rows, summary in results.items():
        for fmt, s in summary.items():
            out.print(
                f"{rows:>9,}  {fmt:<8} {s['seconds']:>8.2f} {s['before']:>15.1f} "
                f"{s['peak']:>13.1f} {s['growth']:>11.1f} {s['mib']:>9.1f}"
            )
    out.print()
    out.print("Parquet / CSV, same run:")
    for rows, summary in results.items():
        csv, parquet = summary["csv"], summary["parquet"]
        out.print(
            f"{rows:>9,} rows: time {parquet['seconds'] / csv['seconds']:.2f}x, "
            f"peak RSS {parquet['peak'] / csv['peak']:.2f}x, "
            f"file size {parquet['mib'] / csv['mib']:.3f}x"
        )
    if args.small:
        out.print()
        out.print(f"growth while writing, {args.rows:,} rows vs {args.small:,}:")
        for fmt in ("csv", "parquet"):
            small, large = results[args.small][fmt], results[args.rows][fmt]
            out.print(
                f"  {fmt:<8} {small['growth']:.1f} MiB -> {large['growth']:.1f} MiB "
                f"for {args.rows / args.small:.0f}x the rows"
            )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=250_000, help="0: only --rows")
    parser.add_argument("--repeat", type=int, default=3)
    add_write_option(parser)
    arguments = parser.parse_args()
    report = Report("bench_parquet", "A backfill's output as Parquet vs CSV (`bench_parquet.py`)")
    main(arguments, report)
    report.finish(write=arguments.write)
