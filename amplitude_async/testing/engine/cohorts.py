"""Cohorts shared by retention and revenue LTV: each user's first qualifying event, per
segment, and the split of a segment by a user property."""

from __future__ import annotations

from collections.abc import Sequence

from amplitude_async.values import Event, Segment

from .predicates import _EventMatch, _Scope, _segments, label_of
from .series import Key, _rank


def _cohort_entries(
    scope: _Scope,
    start_event: Event,
    segments: Sequence[Segment],
    lo: int,
    hi: int,
    field: str,
) -> list[dict[int, int]]:
    """Per segment: user → index of their first qualifying start event in ``[lo, hi)``."""
    ds = scope.ds
    match = _EventMatch(scope, start_event, field)
    out = []
    for segment in _segments(scope, segments, hi):
        user_ok = segment.user_test(lo, hi)
        entries: dict[int, int] = {}
        for i in match.stream(lo, hi):
            u = ds.user[i]
            if u not in entries and segment.up_ok(ds.ustate[i]) and user_ok(u):
                entries[u] = i
        out.append(entries)
    return out


def _grouped(
    scope: _Scope, entries: list[dict[int, int]], group_by: str | None
) -> list[tuple[int, str | None, dict[int, int]]]:
    if group_by is None:
        return [(s, None, e) for s, e in enumerate(entries)]
    read = scope.user_reader(group_by, "g")
    out: list[tuple[int, str | None, dict[int, int]]] = []
    for s, per_user in enumerate(entries):
        by_key: dict[str, dict[int, int]] = {}
        for u, i in per_user.items():
            by_key.setdefault(label_of(read(scope.ds.ustate[i])), {})[u] = i
        sizes: dict[Key, float] = {(k,): float(len(v)) for k, v in by_key.items()}
        out.extend((s, key[0], by_key[key[0]]) for key in _rank(sizes, None))
    return out
