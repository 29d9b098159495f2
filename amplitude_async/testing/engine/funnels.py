"""``/api/2/funnels``: each user's furthest progress, per segment and group."""

from __future__ import annotations

import statistics
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Final

from amplitude_async import queries as q
from amplitude_async.testing.dataset import Dataset

from .buckets import _Bucket, _buckets, _month_day
from .errors import Unsupported
from .predicates import _EventMatch, _Scope, _segments, label_of
from .series import JSON, Key, _envelope, _rank

DEFAULT_CONVERSION_WINDOW_S: Final = 2_592_000


class _Path:
    """One user's best pass through a funnel."""

    __slots__ = ("entry", "times")

    def __init__(self, entry: int, times: list[int]) -> None:
        self.entry = entry
        self.times = times  # completion time of each reached step


def _funnel_paths(
    scope: _Scope, query: q.Funnel, matches: list[_EventMatch], lo: int, hi: int, window: int
) -> dict[int, _Path]:
    """Each user's furthest progress, keyed by user index (only users who entered)."""
    ds = scope.ds
    steps = len(matches)
    entrants = {ds.user[i] for i in matches[0].stream(lo, hi)}
    if query.mode == "unordered":
        for m in matches[1:]:
            entrants |= {ds.user[i] for i in m.stream(lo, hi)}
    out: dict[int, _Path] = {}
    times = ds.time
    chosen = [m.selected(lo, hi) for m in matches]
    # which steps an event counts for, as bits (step k is 1 << k)
    every = sum(1 << k for k, c in enumerate(chosen) if c is None)
    step_bits: dict[int, int] = {}
    for k, c in enumerate(chosen):
        for i in c or ():
            step_bits[i] = step_bits.get(i, 0) | 1 << k
    # unless steps must be consecutive, events of no step cannot matter: then each
    # entrant's sequence is their step events, grouped by user in one pass
    step_events: dict[int, list[int]] | None = None
    if query.mode != "sequential" and not every:
        step_events = {}
        user = ds.user
        for i in sorted(step_bits):
            u = user[i]
            if u in entrants:
                found = step_events.get(u)
                if found is None:
                    step_events[u] = [i]
                else:
                    found.append(i)
    window_events = ds.events_between(lo, hi)
    unordered, strict = query.mode == "unordered", query.mode == "sequential"
    for u in entrants:
        seq: Sequence[int]
        if step_events is not None:
            seq = step_events.get(u, ())
            hits = [step_bits[i] for i in seq]
        else:
            events = ds.user_events[u]
            seq = events[
                bisect_left(events, window_events.start) : bisect_left(events, window_events.stop)
            ]
            hits = [every | step_bits.get(i, 0) for i in seq]
        best: _Path | None = None
        for p in range(len(seq)):
            if unordered:
                if not hits[p]:
                    continue
                path = _unordered_from(seq, hits, p, times, window, steps)
            else:
                if not hits[p] & 1:
                    continue
                path = _ordered_from(seq, hits, p, times, window, steps, strict)
            if path is not None and (best is None or len(path.times) > len(best.times)):
                best = path
                if len(best.times) == steps:
                    break
        if best is not None:
            out[u] = best
    return out


def _ordered_from(
    seq: Sequence[int],
    hits: list[int],
    p: int,
    times: Sequence[int],
    window: int,
    steps: int,
    strict: bool,
) -> _Path:
    limit = times[seq[p]] + window
    reached = [times[seq[p]]]
    for x in range(p + 1, len(seq)):
        if len(reached) == steps or times[seq[x]] > limit:
            break
        if hits[x] >> len(reached) & 1:
            reached.append(times[seq[x]])
        elif strict:
            break
    return _Path(seq[p], reached)


def _unordered_from(
    seq: Sequence[int],
    hits: list[int],
    p: int,
    times: Sequence[int],
    window: int,
    steps: int,
) -> _Path | None:
    limit = times[seq[p]] + window
    first: list[int | None] = [None] * steps
    for x in range(p, len(seq)):
        if times[seq[x]] > limit:
            break
        for k in range(steps):
            if hits[x] >> k & 1 and first[k] is None:
                first[k] = times[seq[x]]
    reached: list[int] = []
    done = 0
    for k in range(steps):
        at = first[k]
        if at is None:
            break
        done = max(done, at)
        reached.append(done)
    return _Path(seq[p], reached) if reached else None


def _funnel(scope: _Scope, query: q.Funnel) -> JSON:
    ds = scope.ds
    lo, hi = ds.midnight(query.start), ds.midnight(query.end + timedelta(days=1))
    window = (query.conversion_window or DEFAULT_CONVERSION_WINDOW_S) * 1000
    matches = [_EventMatch(scope, e, f"e[{k}]") for k, e in enumerate(query.events)]
    if any(e.group_by for e in query.events):
        raise Unsupported("funnels group by g only, not by an event's group_by", field="e")
    paths = _funnel_paths(scope, query, matches, lo, hi, window)
    if query.user_type == "new":
        paths = {
            u: p
            for u, p in paths.items()
            if scope.day_of(ds.time[ds.user_events[u][0]]) == scope.day_of(ds.time[p.entry])
        }
    buckets = _buckets(ds, query.start, query.end, query.interval or q.DAILY)
    starts = [b.start for b in buckets]
    read = scope.user_reader(query.group_by, "g") if query.group_by else None
    steps = len(query.events)
    groups: list[tuple[int, str | None, list[_Path]]] = []
    for s, segment in enumerate(_segments(scope, query.segments, hi)):
        user_ok = segment.user_test(lo, hi)
        by_key: dict[str | None, list[_Path]] = {}
        if segment.trivial and read is None:
            groups.append((s, None, list(paths.values())))
            continue
        for u, path in paths.items():
            if segment.up_ok(ds.ustate[path.entry]) and user_ok(u):
                key = label_of(read(ds.ustate[path.entry])) if read else None
                by_key.setdefault(key, []).append(path)
        if read is None:
            groups.append((s, None, by_key.get(None, [])))
            continue
        sizes: dict[Key, float] = {(k or "",): float(len(v)) for k, v in by_key.items()}
        groups.extend((s, rank[0], by_key[rank[0]]) for rank in _rank(sizes, query.limit))
    data = []
    for s, value, members in groups:
        raw = _reached(members, steps)
        per_bucket: list[list[_Path]] = [[] for _ in buckets]
        for p in members:
            per_bucket[bisect_right(starts, ds.time[p.entry]) - 1].append(p)
        medians, averages = _transition_times(members, steps)
        days = [_transition_times(ps, steps) for ps in per_bucket]
        x_values = [b.label for b in buckets]
        formatted = [_format_x(ds, b) for b in buckets]
        meta: JSON = {"segmentIndex": s}
        if value is not None:
            meta["groupValue"] = value
        data.append(
            {
                "meta": meta,
                "events": [e.event_type for e in query.events],
                "cumulativeRaw": raw,
                "cumulative": [r / raw[0] if raw[0] else 0.0 for r in raw],
                "stepByStep": [
                    1.0 if k == 0 and raw[0] else (raw[k] / raw[k - 1] if raw[k - 1] else 0.0)
                    for k in range(steps)
                ],
                "medianTransTimes": medians,
                "avgTransTimes": averages,
                "dayFunnels": {
                    "series": [_reached(ps, steps) for ps in per_bucket],
                    "xValues": x_values,
                    "formattedXValues": formatted,
                },
                "dayMedianTransTimes": {
                    "series": [d[0] for d in days],
                    "xValues": x_values,
                    "formattedXValues": formatted,
                },
                "dayAvgTransTimes": {
                    "series": [d[1] for d in days],
                    "xValues": x_values,
                    "formattedXValues": formatted,
                },
            }
        )
    return _envelope(scope, data)


def _reached(paths: list[_Path], steps: int) -> list[int]:
    """How many of ``paths`` reached each step."""
    lengths = Counter(len(p.times) for p in paths)
    return [sum(n for length, n in lengths.items() if length > k) for k in range(steps)]


def _transition_times(paths: list[_Path], steps: int) -> tuple[list[int], list[int]]:
    medians, averages = [0], [0]
    for k in range(1, steps):
        gaps = [p.times[k] - p.times[k - 1] for p in paths if len(p.times) > k]
        medians.append(round(statistics.median(gaps)) if gaps else 0)
        averages.append(round(sum(gaps) / len(gaps)) if gaps else 0)
    return medians, averages


def _format_x(ds: Dataset, bucket: _Bucket) -> str:
    moment = ds.local_time(bucket.start)
    text = _month_day(moment.date())
    return f"{text} {moment:%H:%M}" if "T" in bucket.label else text
