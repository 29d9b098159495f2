"""Shared predicates: property values as text, operators, and compiled events, segments
and group-bys over one query's view of the dataset (:class:`_Scope`)."""

from __future__ import annotations

import json
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta
from typing import Final

from amplitude_async.testing.dataset import Dataset, Value, as_number, user_property_key
from amplitude_async.values import (
    COHORT_PROPERTY,
    Event,
    GroupBy,
    InCohort,
    PerformedEvent,
    Segment,
    Where,
)

from .buckets import _DAY_MS, _ms, _period_index
from .errors import BadParameter, Unsupported

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
