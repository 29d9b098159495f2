"""Envelopes and series aggregation shared by the series-shaped endpoints."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from .buckets import _Bucket
from .predicates import _all_true, _EventMatch, _Grouper, _Scope, _SegmentFilter

JSON = dict[str, Any]

DEFAULT_LIMIT: Final = 100


# -- envelopes ------------------------------------------------------------------------------


def _envelope(scope: _Scope, data: Any) -> JSON:
    return {"data": data, "timeComputed": scope.now_ms, "wasCached": False}


def _collapsed(value: float) -> list[JSON]:
    return [{"setId": "", "value": value}]


# -- series aggregation ---------------------------------------------------------------------


class _Agg:
    """What one series collected in one bucket."""

    __slots__ = ("total", "users", "vcount", "vsum")

    def __init__(self) -> None:
        self.users: set[int] = set()
        self.total = 0
        self.vsum = 0.0
        self.vcount = 0

    @staticmethod
    def merge(parts: Iterable[_Agg]) -> _Agg:
        out = _Agg()
        for p in parts:
            out.users |= p.users
            out.total += p.total
            out.vsum += p.vsum
            out.vcount += p.vcount
        return out


Key = tuple[str, ...]


def _collect(
    scope: _Scope,
    match: _EventMatch,
    segment: _SegmentFilter,
    grouper: _Grouper | None,
    buckets: Sequence[_Bucket],
    value: Callable[[int], float | None] | None = None,
) -> dict[Key, list[_Agg]]:
    """Per group key, one :class:`_Agg` per bucket, from one pass over the matching events."""
    ds = scope.ds
    n = len(buckets)
    out: dict[Key, list[_Agg]] = {}
    if not n:
        return out
    user, ustate, times = ds.user, ds.ustate, ds.time
    if match.unfiltered and segment.trivial and not grouper and value is None:
        # the common case gets by with slicing: no per-event Python tests at all
        aggs = out[()] = [_Agg() for _ in range(n)]
        for agg, b in zip(aggs, buckets, strict=True):
            found = match.candidates(b.start, b.end)
            if isinstance(found, range):
                agg.users = set(user[found.start : found.stop])
            else:
                agg.users = {user[i] for i in found}
            agg.total = len(found)
        return out
    starts = [b.start for b in buckets]
    j = -1
    bucket_end = buckets[0].start
    user_ok: Callable[[int], bool] = _all_true
    up_ok = segment.up_ok
    for i in match.stream(buckets[0].start, buckets[-1].end):
        t = times[i]
        if t >= bucket_end:
            j = bisect_right(starts, t) - 1
            bucket_end = buckets[j].end
            user_ok = segment.user_test(buckets[j].start, bucket_end)
        u = user[i]
        if not (up_ok(ustate[i]) and user_ok(u)):
            continue
        key = grouper.key(i) if grouper else ()
        cells = out.get(key)
        if cells is None:
            cells = out[key] = [_Agg() for _ in range(n)]
        agg = cells[j]
        agg.users.add(u)
        agg.total += 1
        if value is not None:
            v = value(i)
            if v is not None:
                agg.vsum += v
                agg.vcount += 1
    if not grouper and () not in out:
        out[()] = [_Agg() for _ in range(n)]
    return out


def _rank(totals: dict[Key, float], limit: int | None) -> list[Key]:
    """Group keys by collapsed value, largest first (ties by label), cut to ``limit``."""
    keys = sorted(totals, key=lambda k: (-totals[k], k))
    return keys[: limit or DEFAULT_LIMIT]
