"""CPU of ``structure_result`` per answer: decoded JSON to a typed result, this tree against an
earlier commit side by side.

The bodies are the shapes recorded from the live API (``tests/samples/recorded``, with their
metadata beside ``data``), some scaled up to what a dashboard asks for:

- the small segmentation answer of ``bench_calls.py`` (one series of three days);
- a grouped segmentation answer, 50 series x 90 days (labels ``[0, "value"]``, collapsed values,
  segment meta);
- a funnel of 3 groups x 5 steps with 30 days of per-day figures;
- a retention answer of 30 daily cohorts x up to 31 days of cells;
- a user's activity with 100 events, each with the API's undocumented fields (kept in
  ``extra``);
- a revenue LTV answer as recorded (numbers partly sent as strings).

Each tree runs in its own child process (the baseline's package extracted with ``git
archive``), rounds alternating between trees; per round and body, the best of 5 timings (CPU
time of the process) of a loop of calls. Reported: µs per call (median of the rounds) for each
tree, the ratio, and ``json.loads`` of the same body as context. Both trees must decode every
body to the same result (their ``repr`` is compared), or the script fails.

    python benchmarks/bench_decode.py [--rounds 5] [--baseline REV] [--write]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from report import Report, add_write_option, extract_package

RECORDED = Path(__file__).resolve().parent.parent / "tests" / "samples"
REPEAT = 5
BUDGET_S = 0.05  # seconds per timing, about


def _recorded(name: str) -> Any:
    return json.loads((RECORDED / f"{name}.json").read_text(encoding="utf-8"))


def _metadata(name: str) -> dict[str, Any]:
    """The keys beside ``data`` in a recorded answer."""
    return {k: v for k, v in _recorded(name).items() if k != "data"}


def _days(n: int) -> list[str]:
    return [(date(2026, 6, 1) + timedelta(days=d)).isoformat() for d in range(n)]


def small_segmentation() -> Any:
    days = ["2026-09-01", "2026-09-02", "2026-09-03"]
    return {
        "data": {
            "series": [[1, 2, 3]],
            "seriesLabels": [0],
            "seriesCollapsed": [[{"setId": "", "value": 6}]],
            "xValues": days,
        }
    }


def large_segmentation(groups: int = 50, days: int = 90) -> Any:
    series = [[(g * 37 + d * 11) % 500 for d in range(days)] for g in range(groups)]
    return {
        "data": {
            "series": series,
            "seriesLabels": [[0, f"Country {g}"] for g in range(groups)],
            "seriesCollapsed": [[{"setId": "", "value": sum(row)}] for row in series],
            "seriesMeta": [{"segmentIndex": 0} for _ in range(groups)],
            "xValues": _days(days),
        },
        **_metadata("recorded/segmentation_grouped_pairs"),
    }


def funnels(groups: int = 3, steps: int = 5, days: int = 30) -> Any:
    def per_day(scale: int) -> dict[str, Any]:
        return {
            "series": [[(d + 1) * scale // (k + 1) for k in range(steps)] for d in range(days)],
            "xValues": _days(days),
            "formattedXValues": [f"Jun {d + 1}" for d in range(days)],
        }

    def group(g: int) -> dict[str, Any]:
        raw = [1000 // (k + 1) + g for k in range(steps)]
        return {
            "meta": {"segmentIndex": g},
            "events": [f"Step {k}" for k in range(steps)],
            "stepByStep": [1.0] + [raw[k] / raw[k - 1] for k in range(1, steps)],
            "cumulative": [r / raw[0] for r in raw],
            "cumulativeRaw": raw,
            "avgTransTimes": [0] + [5400000 + k for k in range(1, steps)],
            "medianTransTimes": [0] + [3600000 + k for k in range(1, steps)],
            "dayFunnels": per_day(50),
            "dayMedianTransTimes": per_day(3600),
            "dayAvgTransTimes": per_day(5400),
        }

    return {"data": [group(g) for g in range(groups)], **_metadata("recorded/funnels")}


def retention(cohorts: int = 30) -> Any:
    dates = [f"Jun {d + 1}, 2026" for d in range(cohorts)]

    def cells(size: int, n: int) -> list[dict[str, Any]]:
        return [
            {
                "count": size // (k + 1),
                "outof": size,
                "incomplete": k == n - 1,
                "retainedSetId": None,
            }
            for k in range(n)
        ]

    return {
        "data": {
            "series": [
                {
                    "dates": dates[::-1],
                    "values": {day: cells(50 + d, cohorts + 1 - d) for d, day in enumerate(dates)},
                    "combined": cells(1500, cohorts + 1),
                }
            ],
            "seriesMeta": [{"segmentIndex": 0}],
        },
        **_metadata("recorded/retention"),
    }


def user_activity(events: int = 100) -> Any:
    body = _recorded("real_useractivity")
    template = body["events"][0]
    body["events"] = [
        {
            **template,
            "event_id": i,
            "$insert_id": f"ins-{i}",
            "session_id": template["session_id"] + i,
        }
        for i in range(events)
    ]
    return body


BODIES: dict[str, Any] = {
    "segmentation, 1 series x 3 days (bench_calls)": (
        "EventSegmentationResult",
        small_segmentation,
    ),
    "segmentation, 50 series x 90 days": ("EventSegmentationResult", large_segmentation),
    "funnels, 3 groups x 5 steps x 30 days": ("FunnelResult", funnels),
    "retention, 30 cohorts x 30 days": ("RetentionResult", retention),
    "user activity, 100 events": ("UserActivityResult", user_activity),
    "revenue LTV (recorded)": ("RevenueLTVResult", lambda: _recorded("real_ltv")),
}


def one_round() -> dict[str, dict[str, Any]]:
    """In a child: per body, µs per ``structure_result``, per ``json.loads``, and the result's
    fingerprint."""
    from amplitude_async import results
    from amplitude_async.converter import structure_result

    out: dict[str, dict[str, Any]] = {}
    for name, (cls_name, make) in BODIES.items():
        cls = getattr(results, cls_name)
        text = json.dumps(make())
        decoded = json.loads(text)
        result = structure_result(decoded, cls, path="/bench")
        fingerprint = hashlib.sha256(repr(result).encode()).hexdigest()[:12]

        def best(call: Any) -> float:
            timer = timeit.Timer(call, timer=time.process_time)
            number, _ = timer.autorange()
            number = max(1, int(number * BUDGET_S / 0.2))
            return min(timer.repeat(REPEAT, number)) / number * 1e6

        out[name] = {
            "structure": best(lambda: structure_result(decoded, cls, path="/bench")),  # noqa: B023
            "loads": best(lambda: json.loads(text)),  # noqa: B023
            "fingerprint": fingerprint,
        }
    return out


def child_round(tree: Path) -> dict[str, dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, __file__, "--one-round"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent,
    )
    result: dict[str, dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(args: argparse.Namespace) -> None:
    here = Path(__file__).resolve().parent.parent
    scratch = tempfile.TemporaryDirectory()
    try:
        trees = {"this tree": here}
        if args.baseline:
            base = Path(args.baseline)
            trees["baseline"] = (
                base if base.is_dir() else extract_package(args.baseline, Path(scratch.name))
            )
        samples: dict[str, list[dict[str, dict[str, Any]]]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                samples[name].append(child_round(tree))
    finally:
        scratch.cleanup()

    out: Report = args.report
    out.print(
        f"structure_result per answer, µs of CPU (median of {args.rounds} rounds, each the best "
        f"of {REPEAT} timings); each tree in a fresh child process, trees alternating"
    )
    baseline = "baseline" in samples
    out.print(
        "| answer | this tree | "
        + ("baseline | baseline / this tree | " if baseline else "")
        + "json.loads |"
    )
    out.print("|---|---:|" + ("---:|---:|" if baseline else "") + "---:|")
    ratios = []
    for body in BODIES:

        def median(tree: str, what: str) -> float:
            return float(statistics.median(r[body][what] for r in samples[tree]))  # noqa: B023

        ours, loads = median("this tree", "structure"), median("this tree", "loads")
        row = f"| {body} | {ours:.1f} |"
        if baseline:
            theirs = median("baseline", "structure")
            ratios.append(theirs / ours)
            row += f" {theirs:.1f} | {theirs / ours:.1f}x |"
            same = {r[body]["fingerprint"] for t in samples.values() for r in t}
            if len(same) != 1:
                raise SystemExit(f"{body}: the trees decode to different results")
        out.print(row + f" {loads:.1f} |")
    if baseline:
        out.print(
            f"\nboth trees decode every answer to the same result (repr compared); "
            f"speed-up {min(ratios):.1f}x to {max(ratios):.1f}x"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per tree")
    parser.add_argument("--baseline", metavar="REV", help="a commit (or a checkout) to compare")
    parser.add_argument("--one-round", action="store_true", help=argparse.SUPPRESS)
    add_write_option(parser)
    arguments = parser.parse_args()
    if arguments.one_round:
        print(json.dumps(one_round()))
        sys.exit(0)
    arguments.report = Report("bench_decode", "Decoding: structure_result per answer")
    main(arguments)
    arguments.report.finish(write=arguments.write)
