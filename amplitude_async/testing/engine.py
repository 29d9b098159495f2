"""The emulator's answer engine: a query object plus a dataset in, the API's JSON body out.

:func:`answer` is pure: it reads the :class:`~amplitude_async.testing.dataset.Dataset` and the
query, and returns a JSON-able ``dict`` in the endpoint's documented response shape, or raises
an :class:`EngineError` (``status`` 400, or 404 for an unknown saved chart) whose message says
what is wrong or not supported. Nothing is ever made up: what cannot be computed is refused.

Semantics where Amplitude's documentation is silent (each decided once, here):

- Days, weeks and months are local to the dataset's time zone; weeks start on Sunday. Weekly
  and monthly buckets are labelled by their first day and clipped to ``[start, end]``. Hourly
  and 5-minute buckets are labelled ``YYYY-MM-DDTHH:MM:SS`` (local).
- A user is *active* in a bucket if they have any event in it; *new* in the bucket holding
  their first event in the whole dataset.
- Property filters and ``Where`` conditions look at the properties recorded on the event (at
  event time). Values compare as text: missing is ``(none)``, booleans ``true``/``false``,
  integral floats without ``.0``. ``is`` on a list property matches any element; ``set is``
  compares the whole set; ``contains`` is a case-insensitive substring test; ``less`` ... compare
  numbers (non-numeric values never match).
- "Who performed" conditions count matching events per user: ``allTime`` from the dataset's
  beginning to the end of the query range; ``currentInterval`` within the bucket being
  computed; ``forEachInterval`` (``time_value`` days) within the days ending with the bucket.
  Endpoints without buckets (funnels, retention, LTV) use the whole query range as the bucket.
- Group-by labels are the property's text (see above); a list value's label is its JSON text.
  Groups are ranked by their collapsed value (ties by label) and cut to ``limit`` (100).
- Segmentation ``seriesLabels`` are the segment index, or ``[segment index, label]`` when
  grouped (``g`` and ``g2`` labels joined by ``"; "``); ``pct_dau`` is a percentage of the
  segment's active users; ``average`` is events per user; the property metrics take the first
  event's first group-by as the property; ``histogram`` answers bins of the property's values
  (``xValues`` are bin labels); division by zero gives 0.
- Funnels use each user's furthest progress over every entry (a step-1 event in range; for
  ``unordered`` any step event), ties to the earliest entry; all steps must fall in
  ``[start, end]`` and within the conversion window of the entry. ``sequential`` needs the
  steps to be consecutive events of the user. Transition times are milliseconds between the
  times each step was completed; medians and averages are rounded to whole milliseconds.
- Retention cohorts are users by the bucket of their first start event in range; a return
  counts in the period (day/week/month) it falls in, relative to the start event's period;
  bracket day 0 counts returns after the start event on the same day. Periods end at the
  *horizon*, the earlier of ``now`` and the end of the dataset; a cell reaching past it is
  ``incomplete``. ``combined`` sums the complete cells (or, when none is complete, the started
  ones). Columns go to the horizon, at most 90 days / 26 weeks / 12 months.
- Revenue LTV cohorts are new users; ``rNd`` is the revenue of a cohort's users during their
  first N days, given only once all of the cohort's N-day windows have ended by the horizon.
- Realtime answers the 288 five-minute buckets ending with the one holding ``now``: "Today" is
  those buckets, "Yesterday" the same buckets a day earlier.
- The events list's totals are of the Sunday-to-``now`` week holding ``now``.
- ``now`` matters only to realtime, the events list, retention and LTV; other answers use every
  event of the dataset.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import statistics
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Any, ClassVar, Final

from amplitude_async import queries as q
from amplitude_async.testing.dataset import (
    SESSION_CAP_MS,
    Dataset,
    Value,
    as_number,
    user_property_key,
)
from amplitude_async.values import (
    COHORT_PROPERTY,
    Event,
    GroupBy,
    InCohort,
    PerformedEvent,
    Segment,
    Where,
)

__all__ = [
    "BadParameter",
    "ChartNotFound",
    "DEFAULT_SESSION_BINS_MS",
    "EngineError",
    "LTV_DAYS",
    "Unsupported",
    "answer",
    "label_of",
]

JSON = dict[str, Any]

DEFAULT_SESSION_BINS_MS: Final = (
    0,
    3_000,
    10_000,
    30_000,
    60_000,
    180_000,
    600_000,
    1_800_000,
    3_600_000,
    86_400_000,
)
"""Bounds of the default session-length bins (ms): ``[0, 3 s)`` ... ``[1 h, 24 h)``."""

LTV_DAYS: Final = (1, 2, 3, 4, 5, 6, 7, 14, 30, 60, 90)
"""The ``rNd`` columns of revenue LTV."""

DEFAULT_LIMIT: Final = 100
DEFAULT_CONVERSION_WINDOW_S: Final = 2_592_000
REALTIME_BUCKETS: Final = 288
_MINUTE_MS: Final = 60_000
_HOUR_MS: Final = 3_600_000
_DAY_MS: Final = 86_400_000
_RETENTION_MAX_COLUMNS: Final = {q.DAILY: 90, q.WEEKLY: 26, q.MONTHLY: 12}


# -- errors ---------------------------------------------------------------------------------


class EngineError(Exception):
    """A query the emulator cannot answer; ``status`` is the HTTP status to reply with."""

    status: ClassVar[int] = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.message = message
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class BadParameter(EngineError):
    """The query names something the project does not have, or a malformed value."""


class Unsupported(EngineError):
    """A valid query the emulator does not compute."""


class ChartNotFound(EngineError):
    """No saved chart has the requested id."""

    status: ClassVar[int] = 404


# -- values and operators -------------------------------------------------------------------


def label_of(value: Value) -> str:
    """A property value as text: the form used by comparisons and group-by labels."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        return json.dumps([_plain(v) for v in value])
    return str(value)


def _plain(value: Value) -> Value:
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value


def _elements(value: Value) -> list[Value]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


_NUMERIC_OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    "less": lambda a, b: a < b,
    "less or equal": lambda a, b: a <= b,
    "greater": lambda a, b: a > b,
    "greater or equal": lambda a, b: a >= b,
}


def _matcher(op: str, values: Sequence[str], field: str) -> Callable[[Value], bool]:
    """Compile ``op values`` into a test of one property value."""
    wanted = frozenset(values)
    if op in ("is", "is not"):
        negate = op == "is not"

        def is_(value: Value) -> bool:
            items = _elements(value) or [None]
            return any(label_of(v) in wanted for v in items) != negate

        return is_
    if op in ("contains", "does not contain"):
        needles = [v.lower() for v in values]
        negate = op == "does not contain"

        def contains(value: Value) -> bool:
            texts = [label_of(v).lower() for v in _elements(value)]
            return any(n in t for t in texts for n in needles) != negate

        return contains
    if op in _NUMERIC_OPS:
        compare = _NUMERIC_OPS[op]
        bound = as_number(values[0], finite_numbers=False) if len(values) == 1 else None
        if bound is None:
            raise BadParameter(f"operator {op!r} needs one number, got {list(values)}", field=field)

        def numeric(value: Value) -> bool:
            return any(
                (n := as_number(v, finite_numbers=False)) is not None and compare(n, bound)
                for v in _elements(value)
            )

        return numeric
    if op in ("set is", "set is not"):
        negate = op == "set is not"

        def set_is(value: Value) -> bool:
            return (frozenset(label_of(v) for v in _elements(value)) == wanted) != negate

        return set_is
    raise BadParameter(f"unknown operator {op!r}", field=field)


_COUNT_OPS: Final[dict[str, Callable[[int, int], bool]]] = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    "=": lambda a, b: a == b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "!=": lambda a, b: a != b,
}


# -- compiled predicates --------------------------------------------------------------------


class _Scope:
    """One query's view of a dataset: property lookups and caches shared by its parts."""

    def __init__(self, ds: Dataset, now: datetime) -> None:
        self.ds = ds
        self.now_ms = _ms(now)
        self.horizon_ms = min(self.now_ms, ds.midnight(ds.end + timedelta(days=1)))
        self._first_set: frozenset[int] | None = None
        self._periods: dict[int, dict[int, int]] = {}

    def user_key(self, name: str, field: str) -> str:
        key = user_property_key(name)
        if key is None:
            raise BadParameter(f"Invalid user property {name}", field=field)
        return key

    def user_reader(self, name: str, field: str) -> Callable[[int], Value]:
        """A reader of user property ``name`` from a user state id."""
        key = self.user_key(name, field)
        slot = self.ds.prop_index.get(key)
        rows = self.ds.ustates
        if slot is None:
            return lambda _: None
        return lambda up: rows[up][slot] if slot < len(rows[up]) else None

    def first_events(self) -> frozenset[int]:
        if self._first_set is None:
            self._first_set = frozenset(self.ds.first_events)
        return self._first_set

    def day_of(self, ms: int) -> date:
        return self.ds.local_date(ms)

    def period_of_event(self, ms: int, interval: int) -> int:
        """:func:`_period_index` of an event's local day, memoised per day."""
        return self.period_of_day(self.ds.day_number(ms), interval)

    def period_of_day(self, number: int, interval: int) -> int:
        """:func:`_period_index` of local day ``number`` (days from the dataset's start)."""
        cache = self._periods.setdefault(interval, {})
        found = cache.get(number)
        if found is None:
            day = self.ds.start + timedelta(days=number)
            found = cache[number] = _period_index(day, interval)
        return found


class _Cached:
    """A predicate on small integer ids (event-property or user-state ids), memoised."""

    __slots__ = ("cache", "test")

    def __init__(self, test: Callable[[int], bool]) -> None:
        self.test = test
        self.cache: dict[int, bool] = {}

    def __call__(self, key: int) -> bool:
        hit = self.cache.get(key)
        if hit is None:
            hit = self.cache[key] = self.test(key)
        return hit


def _all_true(_: int) -> bool:
    return True


def _on_user(read: Callable[[int], Value], test: Callable[[Value], bool]) -> Callable[[int], bool]:
    return lambda up: test(read(up))


def _on_props(key: str, test: Callable[[Value], bool]) -> Callable[[dict[str, Value]], bool]:
    return lambda props: test(props.get(key))


class _EventMatch:
    """Which events an :class:`Event` definition selects (type and filters)."""

    def __init__(self, scope: _Scope, event: Event, field: str) -> None:
        self.scope = scope
        ds = scope.ds
        self.event = event
        name = event.event_type
        self.kind = "type"
        self.type_id = -1
        if name in ("_active", "_all"):
            self.kind = "all"
        elif name == "_new":
            self.kind = "new"
        elif name == "revenue_amount":
            self.kind = "revenue"
        elif name in ("verified_revenue", "unverified_revenue"):
            raise Unsupported(
                f"{name}: the dataset records no receipt verification", field=f"{field}.event_type"
            )
        elif name.startswith("ce:"):
            raise Unsupported(
                f"custom event {name!r}: the project defines no custom events",
                field=f"{field}.event_type",
            )
        else:
            self.type_id = ds.type_ids.get(name, -1)
            if self.type_id < 0:
                self.kind = "none"
        ep_tests: list[Callable[[dict[str, Value]], bool]] = []
        up_tests: list[Callable[[int], bool]] = []
        for k, flt in enumerate(event.filters):
            where = f"{field}.filters[{k}]"
            test = _matcher(flt.op, flt.values, where)
            if flt.type == "user":
                up_tests.append(_on_user(scope.user_reader(flt.key, f"{where}.subprop_key"), test))
            else:
                ep_tests.append(_on_props(flt.key, test))
        table = ds.eprops_table
        self.ep_ok: Callable[[int], bool] = (
            _Cached(lambda ep: all(t(table[ep]) for t in ep_tests)) if ep_tests else _all_true
        )
        self.up_ok: Callable[[int], bool] = (
            _Cached(lambda up: all(t(up) for t in up_tests)) if up_tests else _all_true
        )
        self.unfiltered = not event.filters

    def candidates(self, t0: int, t1: int) -> Sequence[int]:
        """Indices (time order) of events of the right type with ``t0 <= time < t1``."""
        ds = self.scope.ds
        if self.kind == "type":
            times = ds.type_times[self.type_id]
            return ds.type_events[self.type_id][bisect_left(times, t0) : bisect_left(times, t1)]
        if self.kind == "all":
            return ds.events_between(t0, t1)
        if self.kind == "new":
            return ds.first_events[
                bisect_left(ds.first_times, t0) : bisect_left(ds.first_times, t1)
            ]
        if self.kind == "revenue":
            times = ds.revenue_times
            return ds.revenue_events[bisect_left(times, t0) : bisect_left(times, t1)]
        return ()

    def stream(self, t0: int, t1: int) -> Iterator[int]:
        """Indices (time order) of the selected events with ``t0 <= time < t1``."""
        found = self.candidates(t0, t1)
        if self.unfiltered:
            yield from found
            return
        ds = self.scope.ds
        eprops, ustate, ep_ok, up_ok = ds.eprops, ds.ustate, self.ep_ok, self.up_ok
        for i in found:
            if ep_ok(eprops[i]) and up_ok(ustate[i]):
                yield i

    def selected(self, t0: int, t1: int) -> set[int] | None:
        """The selected events in ``[t0, t1)`` as a set, or None when that is all of them."""
        if self.kind == "all" and self.unfiltered:
            return None
        return set(self.stream(t0, t1))

    def matches(self, i: int) -> bool:
        """Whether event ``i`` is selected."""
        ds = self.scope.ds
        if self.kind == "type":
            if ds.type[i] != self.type_id:
                return False
        elif self.kind == "new":
            if i not in self.scope.first_events():
                return False
        elif self.kind == "revenue":
            if not ds.eprops_revenue[ds.eprops[i]]:
                return False
        elif self.kind == "none":
            return False
        return self.ep_ok(ds.eprops[i]) and self.up_ok(ds.ustate[i])


class _Performed:
    """A compiled "who performed" condition."""

    def __init__(self, scope: _Scope, cond: PerformedEvent, field: str, range_end: int) -> None:
        self.match = _EventMatch(scope, Event(cond.event_type, cond.filters), field)
        self.compare = _COUNT_OPS[cond.op]
        self.value = cond.value
        self.time_type = cond.time_type
        self.days = cond.time_value or 0
        self.range_end = range_end
        self.begin = scope.ds.time[0] if len(scope.ds) else 0
        self._counts: dict[tuple[int, int], Counter[int]] = {}

    def window(self, b0: int, b1: int) -> tuple[int, int]:
        if self.time_type == "allTime":
            return self.begin, self.range_end
        if self.time_type == "currentInterval":
            return b0, b1
        return b1 - self.days * _DAY_MS, b1

    def test(self, b0: int, b1: int) -> Callable[[int], bool]:
        w = self.window(b0, b1)
        counts = self._counts.get(w)
        if counts is None:
            user = self.match.scope.ds.user
            counts = self._counts[w] = Counter(user[i] for i in self.match.stream(*w))
        compare, value = self.compare, self.value
        return lambda u: compare(counts.get(u, 0), value)


class _SegmentFilter:
    """A compiled segment: per-event property tests plus per-user tests."""

    def __init__(self, scope: _Scope, segment: Segment, field: str, range_end: int) -> None:
        self.scope = scope
        up_tests: list[Callable[[int], bool]] = []
        self.members: frozenset[int] | None = None
        self.excluded: set[int] = set()
        self.performed: list[_Performed] = []
        for k, cond in enumerate(segment.conditions):
            where = f"{field}[{k}]"
            if isinstance(cond, InCohort):
                self._cohort([cond.cohort_id], negate=False, field=f"{where}.values")
            elif isinstance(cond, PerformedEvent):
                self.performed.append(_Performed(scope, cond, where, range_end))
            elif isinstance(cond, Where) and cond.prop == COHORT_PROPERTY:
                if cond.op not in ("is", "is not"):
                    raise Unsupported("cohort conditions take 'is' or 'is not'", field=where)
                self._cohort(cond.values, negate=cond.op == "is not", field=f"{where}.values")
            else:
                test = _matcher(cond.op, cond.values, f"{where}.op")
                up_tests.append(_on_user(scope.user_reader(cond.prop, f"{where}.prop"), test))
        self.up_ok: Callable[[int], bool] = (
            _Cached(lambda up: all(t(up) for t in up_tests)) if up_tests else _all_true
        )
        self.trivial = not up_tests and self.members is None and not self.excluded
        self.trivial = self.trivial and not self.performed

    def _cohort(self, ids: Iterable[str], *, negate: bool, field: str) -> None:
        users: set[int] = set()
        for cohort_id in ids:
            found = self.scope.ds.cohort_users(cohort_id)
            if found is None:
                raise BadParameter(f"unknown cohort {cohort_id!r}", field=field)
            users |= found
        if negate:
            self.excluded |= users
        else:
            self.members = frozenset(users if self.members is None else self.members & users)

    def user_test(self, b0: int, b1: int) -> Callable[[int], bool]:
        """The per-user part of the segment for the bucket ``[b0, b1)``."""
        tests = [p.test(b0, b1) for p in self.performed]
        members, excluded = self.members, self.excluded
        if members is None and not excluded and not tests:
            return _all_true
        return lambda u: (
            (members is None or u in members)
            and u not in excluded
            and all(test(u) for test in tests)
        )


def _segments(scope: _Scope, segments: Sequence[Segment], range_end: int) -> list[_SegmentFilter]:
    return [
        _SegmentFilter(scope, s, f"segments[{k}]", range_end)
        for k, s in enumerate(segments or (Segment(),))
    ]


class _Grouper:
    """Computes an event's group key (a tuple of labels) from group-by specs."""

    def __init__(self, scope: _Scope, specs: Sequence[GroupBy], field: str) -> None:
        ds = scope.ds
        parts: list[tuple[bool, Callable[[int], str]]] = []
        for k, spec in enumerate(specs):
            if spec.type == "user":
                read = scope.user_reader(spec.value, f"{field}[{k}]")
                parts.append((True, _memo_label(read)))
            else:
                parts.append((False, _memo_label(_eprop_reader(ds, spec.value))))
        self.parts = parts
        self.ds = ds

    def __bool__(self) -> bool:
        return bool(self.parts)

    def key(self, i: int) -> tuple[str, ...]:
        ds = self.ds
        up, ep = ds.ustate[i], ds.eprops[i]
        return tuple(label(up if is_user else ep) for is_user, label in self.parts)


def _eprop_reader(ds: Dataset, key: str) -> Callable[[int], Value]:
    table = ds.eprops_table
    return lambda ep: table[ep].get(key)


def _memo_label(read: Callable[[int], Value]) -> Callable[[int], str]:
    cache: dict[int, str] = {}

    def label(key: int) -> str:
        hit = cache.get(key)
        if hit is None:
            hit = cache[key] = label_of(read(key))
        return hit

    return label


# -- time -----------------------------------------------------------------------------------


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise TypeError("now must be a timezone-aware datetime")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


class _Bucket:
    __slots__ = ("end", "label", "start")

    def __init__(self, label: str, start: int, end: int) -> None:
        self.label = label
        self.start = start
        self.end = end


def _next_period(day: date, interval: int) -> date:
    if interval == q.WEEKLY:
        return day + timedelta(days=7)
    if interval == q.MONTHLY:
        return (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return day + timedelta(days=1)


def _shift_periods(day: date, interval: int, count: int) -> date:
    """The period start ``count`` periods before ``day``'s period (calendar intervals)."""
    start = q.period_start(day, interval)
    if interval == q.MONTHLY:
        months = start.year * 12 + start.month - 1 - count
        return date(months // 12, months % 12 + 1, 1)
    return start - timedelta(days=count * (7 if interval == q.WEEKLY else 1))


def _buckets(ds: Dataset, start: date, end: date, interval: int) -> list[_Bucket]:
    """Buckets covering local days ``start``..``end`` (inclusive), clipped to them."""
    lo, hi = ds.midnight(start), ds.midnight(end + timedelta(days=1))
    if interval < 0:
        step = -interval
        out = []
        t = lo
        while t < hi:
            label = ds.local_time(t).strftime("%Y-%m-%dT%H:%M:%S")
            out.append(_Bucket(label, t, min(t + step, hi)))
            t += step
        return out
    out = []
    day = q.period_start(start, interval)
    while day <= end:
        following = _next_period(day, interval)
        b0 = max(ds.midnight(day), lo)
        b1 = min(ds.midnight(following), hi)
        out.append(_Bucket(day.isoformat(), b0, b1))
        day = following
    return out


def _month_day(day: date) -> str:
    return f"{day:%b} {day.day}"


def _long_date(day: date) -> str:
    return f"{day:%b} {day.day}, {day.year}"


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


# -- formula --------------------------------------------------------------------------------

_FORMULA_FUNCTIONS: Final = ("UNIQUES", "TOTALS", "PROPSUM", "PROPAVG")
_TOKEN: Final = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|([A-Za-z_]+)|(.))")


class _Formula:
    """A parsed formula such as ``UNIQUES(A)/UNIQUES(B)``: arithmetic over metric calls."""

    def __init__(self, text: str, letters: int) -> None:
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        for m in _TOKEN.finditer(text.strip()):
            number, name, other = m.groups()
            if number:
                self.tokens.append(("num", number))
            elif name:
                self.tokens.append(("name", name.upper()))
            elif other and not other.isspace():
                self.tokens.append(("op", other))
        self.pos = 0
        self.letters = letters
        self.calls: set[tuple[str, int]] = set()
        self.tree = self._expr()
        if self.pos != len(self.tokens):
            self._fail("unexpected text after the end of the formula")

    def _fail(self, message: str) -> None:
        raise BadParameter(f"{message} in {self.text!r}", field="formula")

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            self._fail("the formula ends too early")
            raise AssertionError  # unreachable: _fail raises
        self.pos += 1
        return token

    def _expr(self) -> Any:
        node = self._term()
        while (t := self._peek()) is not None and t[1] in "+-":
            self.pos += 1
            node = (t[1], node, self._term())
        return node

    def _term(self) -> Any:
        node = self._factor()
        while (t := self._peek()) is not None and t[1] in "*/":
            self.pos += 1
            node = (t[1], node, self._factor())
        return node

    def _factor(self) -> Any:
        kind, text = self._take()
        if kind == "num":
            return ("num", float(text))
        if text == "-":
            return ("-", ("num", 0.0), self._factor())
        if text == "(":
            node = self._expr()
            if self._take() != ("op", ")"):
                self._fail("a parenthesis is not closed")
            return node
        if kind == "name":
            if text not in _FORMULA_FUNCTIONS:
                self._fail(
                    f"unsupported function {text} (supported: {', '.join(_FORMULA_FUNCTIONS)})"
                )
            if self._take() != ("op", "("):
                self._fail(f"{text} needs an event letter in parentheses")
            kind2, letter = self._take()
            index = ord(letter) - ord("A") if kind2 == "name" and len(letter) == 1 else -1
            if not 0 <= index < self.letters:
                self._fail(f"{text} refers to {letter!r}, not to one of the query's events")
            if self._take() != ("op", ")"):
                self._fail(f"{text}({letter} is not closed")
            self.calls.add((text, index))
            return ("call", text, index)
        self._fail(f"unexpected {text!r}")
        raise AssertionError  # unreachable: _fail raises

    def metric(self, aggs: list[_Agg], _active: _Agg | None) -> float:
        """The formula's value given each event's aggregate."""
        return self.evaluate({call: _call_value(call[0], aggs[call[1]]) for call in self.calls})

    def evaluate(self, calls: dict[tuple[str, int], float]) -> float:
        def walk(node: Any) -> float:
            if node[0] == "num":
                return float(node[1])
            if node[0] == "call":
                return calls[node[1], node[2]]
            a, b = walk(node[1]), walk(node[2])
            if node[0] == "+":
                return a + b
            if node[0] == "-":
                return a - b
            if node[0] == "*":
                return a * b
            return a / b if b else 0.0

        return walk(self.tree)


def _call_value(name: str, agg: _Agg) -> float:
    if name == "UNIQUES":
        return float(len(agg.users))
    if name == "TOTALS":
        return float(agg.total)
    if name == "PROPSUM":
        return agg.vsum
    return agg.vsum / agg.vcount if agg.vcount else 0.0


# -- event segmentation ---------------------------------------------------------------------


def _event_value(scope: _Scope, spec: GroupBy, field: str) -> Callable[[int], float | None]:
    """A reader of a numeric property (the property metrics' subject) of event ``i``."""
    ds = scope.ds
    if spec.type == "user":
        read = scope.user_reader(spec.value, field)
        return lambda i: as_number(read(ds.ustate[i]), finite_numbers=False)
    table, key = ds.eprops_table, spec.value
    return lambda i: as_number(table[ds.eprops[i]].get(key), finite_numbers=False)


def _metric_value(metric: str, agg: _Agg, active: _Agg | None) -> float:
    if metric == "uniques":
        return len(agg.users)
    if metric == "totals":
        return agg.total
    if metric == "pct_dau":
        denominator = len(active.users) if active is not None else 0
        return 100.0 * len(agg.users) / denominator if denominator else 0.0
    if metric == "average":
        return agg.total / len(agg.users) if agg.users else 0.0
    if metric == "sums":
        return agg.vsum
    return agg.vsum / agg.vcount if agg.vcount else 0.0  # value_avg


RowMetric = Callable[[list[_Agg], "_Agg | None"], float]
"""A series' value from its per-event aggregates (and the segment's active users)."""


def _segmentation(scope: _Scope, query: q.EventSegmentation) -> JSON:
    ds = scope.ds
    if query.rolling_window and query.rolling_average:
        raise BadParameter("give rollingWindow or rollingAverage, not both", field="rollingWindow")
    window = query.rolling_window or query.rolling_average or 1
    if window > 1 and query.interval < 0:
        raise Unsupported("rolling metrics need a daily, weekly or monthly interval", field="i")
    if query.metric == "histogram":
        if window > 1:
            raise Unsupported("rolling metrics do not apply to histograms", field="m")
        return _histogram(scope, query)
    # a rolling series needs the window - 1 periods before start as well
    first = _shift_periods(query.start, query.interval, window - 1) if window > 1 else query.start
    buckets = _buckets(ds, first, query.end, query.interval)
    shown = range(window - 1, len(buckets))
    range_end = ds.midnight(query.end + timedelta(days=1))
    matches = [_EventMatch(scope, e, "e" if k == 0 else "e2") for k, e in enumerate(query.events)]
    formula = _Formula(query.formula, len(query.events)) if query.formula is not None else None
    by_property = query.metric in ("sums", "value_avg") or formula is not None
    seg_group = [GroupBy(g) for g in query.group_by]
    grouped = bool(seg_group) or (not by_property and any(e.group_by for e in query.events))

    def values_of(k: int) -> Callable[[int], float | None] | None:
        event = query.events[k]
        if formula is not None:
            needed = any(name.startswith("PROP") and e == k for name, e in formula.calls)
        else:
            needed = by_property
        if not needed:
            return None
        if not event.group_by:
            name = "e" if k == 0 else "e2"
            raise BadParameter("this metric needs a group_by property on the event", field=name)
        return _event_value(scope, event.group_by[0], "e.group_by[0]")

    def grouper_of(k: int) -> _Grouper | None:
        specs = seg_group if by_property else [*query.events[k].group_by, *seg_group]
        grouper = _Grouper(scope, specs, "g")
        return grouper if grouper else None

    def row(aggs: list[list[_Agg]], active: list[_Agg] | None, metric: RowMetric) -> list[float]:
        def at(x: int) -> float:
            return metric([a[x] for a in aggs], active[x] if active else None)

        if query.rolling_average:
            single = [at(x) for x in range(len(buckets))]
            return [sum(single[j - window + 1 : j + 1]) / window for j in shown]
        if query.rolling_window:
            return [
                metric(
                    [_Agg.merge(a[j - window + 1 : j + 1]) for a in aggs],
                    _Agg.merge(active[j - window + 1 : j + 1]) if active else None,
                )
                for j in shown
            ]
        return [at(j) for j in shown]

    def whole(aggs: list[list[_Agg]], active: list[_Agg] | None, metric: RowMetric) -> float:
        return metric(
            [_Agg.merge(a[window - 1 :]) for a in aggs],
            _Agg.merge(active[window - 1 :]) if active else None,
        )

    series: list[list[float]] = []
    collapsed: list[list[JSON]] = []
    labels: list[Any] = []
    meta: list[JSON] = []
    for s, segment in enumerate(_segments(scope, query.segments, range_end)):
        active: list[_Agg] | None = None
        if query.metric == "pct_dau":
            everyone = _EventMatch(scope, Event("_active"), "e")
            active = _collect(scope, everyone, segment, None, buckets)[()]
        collected = [
            _collect(scope, m, segment, grouper_of(k), buckets, values_of(k))
            for k, m in enumerate(matches)
        ]
        empty = [_Agg() for _ in buckets]
        # one block of series per event, or a single one for a formula over all events
        blocks: list[tuple[RowMetric, dict[Key, list[list[_Agg]]], JSON]]
        if formula is not None:
            keys: set[Key] = set().union(*collected)
            per_key = {key: [c.get(key, empty) for c in collected] for key in keys}
            info = {"segmentIndex": s, "formulaIndex": 0, "formula": query.formula}
            blocks = [(formula.metric, per_key, info)]
        else:
            metric = _single_metric(query.metric)
            blocks = [
                (
                    metric,
                    {key: [aggs] for key, aggs in c.items()},
                    {"segmentIndex": s, "eventIndex": k},
                )
                for k, c in enumerate(collected)
            ]
        for metric, per_key, info in blocks:
            totals = {key: whole(aggs, active, metric) for key, aggs in per_key.items()}
            for key in _rank(totals, query.limit) if grouped else [()]:
                aggs = per_key.get(key) or [empty] * len(collected)
                series.append(row(aggs, active, metric))
                collapsed.append(_collapsed(totals.get(key, 0.0)))
                labels.append([s, "; ".join(key)] if grouped else s)
                meta.append(info)
    data = {
        "series": series,
        "seriesLabels": labels,
        "seriesCollapsed": collapsed,
        "seriesMeta": meta,
        "xValues": [buckets[j].label for j in shown],
    }
    return _envelope(scope, data)


def _single_metric(name: str) -> RowMetric:
    def metric(aggs: list[_Agg], active: _Agg | None) -> float:
        return _metric_value(name, aggs[0], active)

    return metric


def _histogram(scope: _Scope, query: q.EventSegmentation) -> JSON:
    ds = scope.ds
    if len(query.events) > 1:
        raise Unsupported("a histogram takes one event", field="e2")
    event = query.events[0]
    if len(event.group_by) > 1:
        raise Unsupported("a histogram takes one property (one group_by)", field="e.group_by")
    read = _event_value(scope, event.group_by[0], "e.group_by[0]")
    lo, hi = ds.midnight(query.start), ds.midnight(query.end + timedelta(days=1))
    segments = _segments(scope, query.segments, hi)
    grouper = _Grouper(scope, [GroupBy(g) for g in query.group_by], "g")
    match = _EventMatch(scope, event, "e")
    per_segment: list[dict[Key, list[float]]] = []
    for segment in segments:
        values: dict[Key, list[float]] = {}
        user_ok = segment.user_test(lo, hi)
        for i in match.stream(lo, hi):
            if not (segment.up_ok(ds.ustate[i]) and user_ok(ds.user[i])):
                continue
            v = read(i)
            if v is not None:
                values.setdefault(grouper.key(i) if grouper else (), []).append(v)
        per_segment.append(values)
    everything = [v for values in per_segment for vs in values.values() for v in vs]
    edges, x_values = _histogram_bins(everything)
    series, collapsed, labels, meta = [], [], [], []
    for s, values in enumerate(per_segment):
        totals = {key: float(len(vs)) for key, vs in values.items()}
        for key in _rank(totals, query.limit) if grouper else [()]:
            counts = [0] * len(x_values)
            for v in values.get(key, []):
                counts[_bin_index(edges, v)] += 1
            series.append(counts)
            collapsed.append(_collapsed(sum(counts)))
            labels.append([s, "; ".join(key)] if grouper else s)
            meta.append({"segmentIndex": s, "eventIndex": 0})
    data = {
        "series": series,
        "seriesLabels": labels,
        "seriesCollapsed": collapsed,
        "seriesMeta": meta,
        "xValues": x_values,
    }
    return _envelope(scope, data)


def _histogram_bins(values: list[float]) -> tuple[list[float], list[str]]:
    """Bins for a histogram: one per integer for small integer ranges, else ten equal ones."""
    if not values:
        return [], []
    lo, hi = min(values), max(values)
    if all(v.is_integer() for v in values) and hi - lo < 20:
        edges = [lo + k for k in range(int(hi - lo) + 2)]
        return edges, [label_of(e) for e in edges[:-1]]
    width = (hi - lo) / 10 or 1.0
    edges = [lo + k * width for k in range(11)]
    return edges, [f"{edges[k]:g}-{edges[k + 1]:g}" for k in range(10)]


def _bin_index(edges: list[float], v: float) -> int:
    return min(max(bisect_right(edges, v) - 1, 0), len(edges) - 2)


# -- users, sessions, composition -----------------------------------------------------------


def _active_users(scope: _Scope, query: q.ActiveUsers) -> JSON:
    ds = scope.ds
    buckets = _buckets(ds, query.start, query.end, query.interval)
    range_end = ds.midnight(query.end + timedelta(days=1))
    match = _EventMatch(scope, Event("_active" if query.metric == "active" else "_new"), "m")
    grouper = _Grouper(scope, [GroupBy(query.group_by)] if query.group_by else [], "g")
    series: list[list[int]] = []
    collapsed: list[list[JSON]] = []
    labels: list[Any] = []
    meta: list[Any] = []
    for s, segment in enumerate(_segments(scope, query.segments, range_end)):
        per_key = _collect(scope, match, segment, grouper or None, buckets)
        totals = {key: float(len(_Agg.merge(aggs).users)) for key, aggs in per_key.items()}
        for key in _rank(totals, None) if grouper else [()]:
            series.append([len(a.users) for a in per_key[key]])
            collapsed.append(_collapsed(int(totals[key])))
            if grouper:
                labels.append([s, key[0]])
                meta.append(key[0])
            else:
                labels.append(s)
                meta.append({"segmentIndex": s})
    data = {
        "series": series,
        "seriesCollapsed": collapsed,
        "seriesLabels": labels,
        "seriesMeta": meta,
        "xValues": [b.label for b in buckets],
    }
    return _envelope(scope, data)


def _sessions_in(ds: Dataset, t0: int, t1: int) -> range:
    starts = ds.session_starts
    return range(bisect_left(starts, t0), bisect_left(starts, t1))


def _session_bins(query: q.SessionLengthDistribution) -> tuple[list[int], list[str]]:
    if query.bin_unit is None or query.bin_min is None or query.bin_max is None:
        edges = list(DEFAULT_SESSION_BINS_MS)
        return edges, [f"{_duration(a)}-{_duration(b)}" for a, b in pairwise(edges)]
    unit_ms = {"seconds": 1000, "minutes": _MINUTE_MS, "hours": _HOUR_MS}[query.bin_unit]
    suffix = {"seconds": "s", "minutes": "m", "hours": "h"}[query.bin_unit]
    span = query.bin_max - query.bin_min
    # without a size, ten bins (or one per unit when the range is narrower)
    size = query.bin_size or max(1, math.ceil(span / 10))
    bounds = [*range(query.bin_min, query.bin_max, size), query.bin_max]
    labels = [f"{a}{suffix}-{b}{suffix}" for a, b in pairwise(bounds)]
    return [b * unit_ms for b in bounds], labels


def _duration(ms: int) -> str:
    """A bin bound in the largest unit that states it exactly."""
    for unit, suffix in ((_HOUR_MS, "h"), (_MINUTE_MS, "m")):
        if ms and ms % unit == 0 and ms >= unit:
            return f"{ms // unit}{suffix}"
    return f"{ms // 1000}s"


def _session_length(scope: _Scope, query: q.SessionLengthDistribution) -> JSON:
    ds = scope.ds
    edges, labels = _session_bins(query)
    counts = [0] * len(labels)
    lengths = ds.session_lengths
    for k in _sessions_in(ds, ds.midnight(query.start), ds.midnight(query.end + timedelta(days=1))):
        length = lengths[k]
        if edges[0] <= length < edges[-1] or (length == edges[-1] == SESSION_CAP_MS):
            counts[min(bisect_right(edges, length) - 1, len(counts) - 1)] += 1
    return _envelope(scope, {"series": [counts], "xValues": labels})


def _per_day_sessions(
    scope: _Scope, start: date, end: date, value: Callable[[range], float]
) -> JSON:
    ds = scope.ds
    days = _buckets(ds, start, end, q.DAILY)
    series = [value(_sessions_in(ds, b.start, b.end)) for b in days]
    data = {
        "series": [series],
        "seriesMeta": [{"segmentIndex": 0}],
        "xValues": [b.label for b in days],
    }
    return _envelope(scope, data)


def _average_session(scope: _Scope, query: q.AverageSessionLength) -> JSON:
    lengths = scope.ds.session_lengths

    def mean_seconds(found: range) -> float:
        return sum(lengths[k] for k in found) / len(found) / 1000 if found else 0.0

    return _per_day_sessions(scope, query.start, query.end, mean_seconds)


def _sessions_per_user(scope: _Scope, query: q.SessionsPerUser) -> JSON:
    users = scope.ds.session_users

    def per_user(found: range) -> float:
        return len(found) / len(set(users[found.start : found.stop])) if found else 0.0

    return _per_day_sessions(scope, query.start, query.end, per_user)


def _composition(scope: _Scope, query: q.UserComposition) -> JSON:
    ds = scope.ds
    read = scope.user_reader(query.property, "p")
    latest: dict[int, int] = {}
    for i in ds.events_between(
        ds.midnight(query.start), ds.midnight(query.end + timedelta(days=1))
    ):
        latest[ds.user[i]] = ds.ustate[i]
    counts = Counter(label_of(read(up)) for up in latest.values())
    ranked = sorted(counts, key=lambda v: (-counts[v], v))
    data = {
        "series": [[counts[v] for v in ranked]],
        "seriesLabels": [query.property],
        "xValues": ranked,
    }
    return _envelope(scope, data)


def _events_list(scope: _Scope, _query: q.EventsList) -> JSON:
    ds = scope.ds
    today = scope.day_of(scope.now_ms)
    week_start = ds.midnight(q.period_start(today, q.WEEKLY))
    found = ds.events_between(week_start, scope.now_ms + 1)
    totals = Counter(ds.type[i] for i in found)
    data = [
        {
            "non_active": False,
            "value": name,
            "totals": totals.get(ds.type_ids[name], 0),
            "deleted": False,
            "flow_hidden": False,
            "hidden": False,
            "display": name,
        }
        for name in ds.event_types
    ]
    return {"data": data}


# -- funnels --------------------------------------------------------------------------------


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


# -- retention ------------------------------------------------------------------------------


def _period_index(day: date, interval: int) -> int:
    """A running number of the day/week/month holding ``day`` (differences count periods)."""
    if interval == q.MONTHLY:
        return day.year * 12 + day.month - 1
    if interval == q.WEEKLY:
        # Week starts are 7 days apart, so each falls in its own block of 7 ordinals.
        return q.period_start(day, interval).toordinal() // 7
    return day.toordinal()


def _period_of_index(index: int, interval: int) -> date:
    """The first day of the period numbered ``index`` by :func:`_period_index`."""
    if interval == q.MONTHLY:
        return date(index // 12, index % 12 + 1, 1)
    if interval == q.WEEKLY:
        # The week starting in ordinals [7 * index, 7 * index + 6] holds the last of them.
        return q.period_start(date.fromordinal(index * 7 + 6), interval)
    return date.fromordinal(index)


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


def _retention(scope: _Scope, query: q.Retention) -> JSON:
    ds = scope.ds
    interval = query.interval
    lo, hi = ds.midnight(query.start), ds.midnight(query.end + timedelta(days=1))
    entries = _cohort_entries(scope, query.start_event, query.segments, lo, hi, "se")
    horizon = scope.horizon_ms
    chosen = _EventMatch(scope, query.return_event, "re").selected(lo, horizon)
    horizon_period = _period_index(scope.day_of(max(horizon - 1, 0)), interval)
    first_period = _period_index(query.start, interval)
    last_period = _period_index(query.end, interval)
    cohorts = list(range(first_period, last_period + 1))

    def period_end(index: int) -> int:
        return ds.midnight(_next_period(_period_of_index(index, interval), interval))

    def period_begin(index: int) -> int:
        return ds.midnight(_period_of_index(index, interval))

    if query.mode == "bracket":
        assert query.brackets is not None  # the query class guarantees it
        columns: list[tuple[int, int]] = [(a, b) for a, b in query.brackets]
    else:
        count = min(max(horizon_period - first_period, 0), _RETENTION_MAX_COLUMNS[interval])
        columns = [(n, n + 1) for n in range(1, count + 1)]

    # the columns each offset (in periods) falls in, for counting users per column
    column_hits: dict[int, tuple[int, ...]] = {}

    def columns_of(offset: int) -> tuple[int, ...]:
        found = column_hits.get(offset)
        if found is None:
            found = column_hits[offset] = tuple(
                k for k, (a, b) in enumerate(columns) if a <= offset < b
            )
        return found

    # events before the horizon are a prefix of the time-sorted log
    horizon_index = bisect_left(ds.time, horizon)
    day, period_of_day = ds.day, scope.period_of_day
    series, meta = [], []
    for s, value, per_user in _grouped(scope, entries, query.group_by):
        # offsets (in periods) at which each cohort member came back, and the cohort
        members: dict[int, list[int]] = {c: [] for c in cohorts}
        offsets: dict[int, set[int]] = {}
        for u, i in per_user.items():
            period = period_of_day(day[i], interval)
            members[period].append(u)
            events = ds.user_events[u]
            later: Sequence[int] = events[
                bisect_right(events, i) : bisect_left(events, horizon_index)
            ]
            if chosen is not None:
                later = [x for x in later if x in chosen]
            offsets[u] = {
                period_of_day(d, interval) - period for d in set(map(day.__getitem__, later))
            }
        values: dict[str, list[JSON]] = {}
        cells_by_cohort: dict[int, list[JSON]] = {}
        for c in cohorts:
            size = len(members[c])
            row = [{"count": size, "outof": size, "incomplete": period_end(c) > horizon}]
            counts = [0] * len(columns)
            if query.mode == "rolling":
                # back at or after a column's start: the user's last offset tells
                latest = Counter(max(offsets[u]) for u in members[c] if offsets[u])
                for k, (a, _) in enumerate(columns):
                    counts[k] = sum(n for o, n in latest.items() if o >= a)
            else:
                for u in members[c]:
                    hit: set[int] = set()
                    for o in offsets[u]:
                        hit.update(columns_of(o))
                    for k in hit:
                        counts[k] += 1
            for (a, b), count in zip(columns, counts, strict=True):
                cell_end = period_end(c + b - 1)
                row.append(
                    {
                        "count": count,
                        "outof": size,
                        "incomplete": cell_end > horizon,
                        "started": period_begin(c + a) < horizon,
                    }
                )
            cells_by_cohort[c] = row
        combined = []
        for n in range(len(columns) + 1):
            cells = [cells_by_cohort[c][n] for c in cohorts]
            done = [x for x in cells if not x["incomplete"]]
            pool = done or [x for x in cells if x.get("started", True)]
            combined.append(
                {
                    "count": sum(x["count"] for x in pool),
                    "outof": sum(x["outof"] for x in pool),
                    "retainedSetId": None,
                    "incomplete": not done,
                }
            )
        for c in cohorts:
            values[_long_date(_period_of_index(c, interval))] = [
                {k: v for k, v in cell.items() if k != "started"} for cell in cells_by_cohort[c]
            ]
        series.append(
            {
                "dates": [_long_date(_period_of_index(c, interval)) for c in reversed(cohorts)],
                "values": values,
                "combined": combined,
            }
        )
        entry: JSON = {"segmentIndex": s, "eventIndex": 0}
        if value is not None:
            entry["groupValue"] = value
        meta.append(entry)
    return _envelope(scope, {"series": series, "seriesMeta": meta})


# -- revenue LTV ----------------------------------------------------------------------------


def _revenue_ltv(scope: _Scope, query: q.RevenueLTV) -> JSON:
    ds = scope.ds
    interval = query.interval
    lo, hi = ds.midnight(query.start), ds.midnight(query.end + timedelta(days=1))
    entries = _cohort_entries(scope, Event("_new"), query.segments, lo, hi, "s")
    horizon = scope.horizon_ms
    revenue = ds.eprops_revenue
    cohorts = _buckets(ds, query.start, query.end, interval)
    starts = [b.start for b in cohorts]
    series, labels, meta = [], [], []
    for s, value, per_user in _grouped(scope, entries, query.group_by):
        members: list[list[tuple[int, date]]] = [[] for _ in cohorts]
        for u, i in per_user.items():
            members[bisect_right(starts, ds.time[i]) - 1].append((u, scope.day_of(ds.time[i])))
        values: dict[str, JSON] = {}
        for b, users in zip(cohorts, members, strict=True):
            last_day = scope.day_of(b.end - 1)
            row: JSON = {}
            paid_by: dict[int, set[int]] = {n: set() for n in LTV_DAYS}
            amount_by = dict.fromkeys(LTV_DAYS, 0.0)
            total, payers = 0.0, set()
            for u, day0 in users:
                for x in ds.user_events[u]:
                    amount = revenue[ds.eprops[x]]
                    t = ds.time[x]
                    if not amount or t >= horizon:
                        continue
                    total += amount
                    payers.add(u)
                    for n in LTV_DAYS:
                        if t < ds.midnight(day0 + timedelta(days=n)):
                            amount_by[n] += amount
                            paid_by[n].add(u)
            for n in LTV_DAYS:
                if ds.midnight(last_day + timedelta(days=n)) > horizon:
                    continue
                row[f"r{n}d"] = _ltv_value(query.metric, amount_by[n], len(users), len(paid_by[n]))
            row["count"] = len(users)
            row["paid"] = len(payers)
            row["total_amount"] = round(total, 6)
            values[_month_day(scope.day_of(b.start))] = row
        series.append(
            {
                "dates": [_month_day(scope.day_of(b.start)) for b in reversed(cohorts)],
                "values": values,
            }
        )
        labels.append(value if value is not None else "")
        entry: JSON = {"segmentIndex": s}
        if value is not None:
            entry["groupValue"] = value
        meta.append(entry)
    return _envelope(scope, {"seriesLabels": labels, "series": series, "seriesMeta": meta})


def _ltv_value(metric: str, amount: float, users: int, payers: int) -> float:
    if metric == "arpu":
        return round(amount / users, 6) if users else 0.0
    if metric == "arppu":
        return round(amount / payers, 6) if payers else 0.0
    if metric == "total_revenue":
        return round(amount, 6)
    return float(payers)


# -- users ----------------------------------------------------------------------------------


def _user_activity(scope: _Scope, query: q.UserActivity) -> JSON:
    ds = scope.ds
    u = ds.user_of_amplitude.get(query.user)
    if u is None:
        raise BadParameter(f"no user with Amplitude ID {query.user}", field="user")
    events = ds.user_events[u]
    latest = ds.record(events[-1])
    sessions = {ds.session[i] for i in events if ds.session[i] != -1}
    usage = _usage_time(ds, u)
    revenues = [ds.eprops_revenue[ds.eprops[i]] for i in events]
    devices: list[str] = []
    for i in events:
        d = ds.device[i]
        if d >= 0 and ds.device_names[d] not in devices:
            devices.append(ds.device_names[d])
    user_data = {
        "user_id": ds.user_ids[u],
        "canonical_amplitude_id": query.user,
        "merged_amplitude_ids": [],
        "num_events": len(events),
        "num_sessions": len(sessions),
        "usage_time": usage,
        "first_used": scope.day_of(ds.time[events[0]]).isoformat(),
        "last_used": scope.day_of(ds.time[events[-1]]).isoformat(),
        "purchases": sum(1 for r in revenues if r),
        "revenue": round(sum(revenues), 6),
        "platform": latest.platform,
        "os": latest.user_property("os"),
        "version": latest.version_name,
        "device": latest.device_family,
        "device_type": latest.device_type,
        "carrier": None,
        "country": latest.country,
        "region": latest.region,
        "city": latest.city,
        "dma": latest.dma,
        "language": latest.language,
        "start_version": latest.start_version,
        "device_ids": devices,
        "last_location": None,
        "properties": dict(latest.user_properties),
    }
    ordered = list(events) if query.direction == "earliest" else list(reversed(events))
    offset = query.offset or 0
    chosen = ordered[offset : offset + (query.limit or q.MAX_LIMIT)]
    position = {i: n for n, i in enumerate(events)}
    rows = []
    for i in chosen:
        row = ds.record(i).to_export()
        row["event_id"] = position[i]
        rows.append(row)
    return {"userData": user_data, "events": rows}


def _usage_time(ds: Dataset, u: int) -> int:
    spans: dict[int, list[int]] = {}
    for i in ds.user_events[u]:
        sid = ds.session[i]
        if sid == -1:
            continue
        span = spans.setdefault(sid, [ds.time[i], ds.time[i]])
        span[1] = ds.time[i]
    return sum(min(b - a, SESSION_CAP_MS) for a, b in spans.values())


_SEARCH_PREFIX_LIMIT: Final = 100


def _user_search(scope: _Scope, query: q.UserSearch) -> JSON:
    ds = scope.ds
    term = query.user
    found: list[int] = []
    if term.isascii() and term.isdigit() and int(term) in ds.user_of_amplitude:
        found.append(ds.user_of_amplitude[int(term)])
    for u in [*ds.users_with_device(term), *ds.users_with_user_id(term)]:
        if u not in found:
            found.append(u)
    kind = "match_user_or_device_id"
    if not found:
        kind = "match_user_prefix"
        found = sorted(
            (u for u, name in enumerate(ds.user_ids) if name is not None and name.startswith(term)),
            key=lambda u: (ds.user_ids[u] or "", u),
        )[:_SEARCH_PREFIX_LIMIT]
    if not found:
        return {"type": "nomatch", "matches": []}
    matches = [{"user_id": ds.user_ids[u], "amplitude_id": ds.amplitude_ids[u]} for u in found]
    return {"matches": matches, "type": kind}


def _realtime(scope: _Scope, _query: q.RealtimeActiveUsers) -> JSON:
    ds = scope.ds
    step = 5 * _MINUTE_MS
    # 5-minute buckets aligned on the local clock
    local_now = ds.local_time(scope.now_ms)
    into_bucket = (local_now.minute % 5) * _MINUTE_MS + local_now.second * 1000
    into_bucket += local_now.microsecond // 1000
    last = scope.now_ms - into_bucket
    starts = [last - (REALTIME_BUCKETS - 1 - k) * step for k in range(REALTIME_BUCKETS)]

    def uniques(t0: int) -> int:
        found = ds.events_between(t0, t0 + step)
        return len(set(ds.user[found.start : found.stop]))

    data = {
        "xValues": [f"{ds.local_time(t):%H:%M}" for t in starts],
        "seriesLabels": ["Today", "Yesterday"],
        "series": [[uniques(t) for t in starts], [uniques(t - _DAY_MS) for t in starts]],
    }
    return _envelope(scope, data)


# -- saved charts ---------------------------------------------------------------------------


def _chart(scope: _Scope, chart_id: str) -> Any:
    chart = scope.ds.charts.get(chart_id)
    if chart is None:
        raise ChartNotFound(f"no saved chart with id {chart_id!r}", field="chart_id")
    if isinstance(chart, q.ChartCSV | q.ChartQuery):
        raise Unsupported("a saved chart cannot refer to another saved chart", field="chart_id")
    return chart


def _chart_query(scope: _Scope, query: q.ChartQuery) -> JSON:
    return _answer(scope, _chart(scope, query.chart_id))


def _chart_csv(scope: _Scope, query: q.ChartCSV) -> JSON:
    chart = _chart(scope, query.chart_id)
    if not isinstance(chart, q.EventSegmentation | q.ActiveUsers):
        raise Unsupported("CSV export covers segmentation and active-user charts", field="chart_id")
    data = _answer(scope, chart)["data"]
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    writer.writerow(["\t" + cell for cell in ["Series", *data["xValues"]]])
    for label, row in zip(data["seriesLabels"], data["series"], strict=True):
        name = (
            label[1]
            if isinstance(label, list)
            else ("All Users" if label == 0 else f"Segment {label}")
        )
        writer.writerow(["\t" + str(cell) for cell in [name, *row]])
    return {"data": out.getvalue()}


# -- dispatch -------------------------------------------------------------------------------

_HANDLERS: Final[dict[type[Any], Callable[[_Scope, Any], JSON]]] = {
    q.ActiveUsers: _active_users,
    q.SessionLengthDistribution: _session_length,
    q.AverageSessionLength: _average_session,
    q.SessionsPerUser: _sessions_per_user,
    q.UserComposition: _composition,
    q.EventsList: _events_list,
    q.EventSegmentation: _segmentation,
    q.Funnel: _funnel,
    q.Retention: _retention,
    q.UserActivity: _user_activity,
    q.UserSearch: _user_search,
    q.RealtimeActiveUsers: _realtime,
    q.RevenueLTV: _revenue_ltv,
    q.ChartCSV: _chart_csv,
    q.ChartQuery: _chart_query,
}


def _answer(scope: _Scope, query: Any) -> JSON:
    handler = _HANDLERS.get(type(query))
    if handler is None:
        raise Unsupported(f"no answers for {type(query).__name__}")
    return handler(scope, query)


def answer(query: q.Query[Any], dataset: Dataset, now: datetime) -> JSON:
    """The JSON body the API would send for ``query`` over ``dataset`` at ``now`` (aware).

    Raises :class:`EngineError` (``status`` 400 or 404) for what cannot be answered.
    """
    return _answer(_Scope(dataset, now), query)
