"""Plain, brute-force computations over a dataset's event records, to check the engine against.

Everything here loops over :class:`EventRecord` objects (``dataset.events``) and uses none of the
dataset's indexes or the engine's code; it restates the engine's documented semantics in the
most direct way, so a disagreement points at a bug in one of the two.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from amplitude_async.testing.dataset import EventRecord

Records = Sequence[EventRecord]

_BUILTIN = {
    "version": "version_name",
    "country": "country",
    "city": "city",
    "region": "region",
    "dma": "dma",
    "platform": "platform",
    "device": "device_family",
    "device_type": "device_type",
    "language": "language",
    "start_version": "start_version",
    "paying": "paying",
}


def user_prop(r: EventRecord, name: str) -> Any:
    if name.startswith("gp:"):
        return r.user_properties.get(name[3:])
    name = name.lower()
    if name == "os":
        return " ".join(p for p in (r.os_name, r.os_version) if p) or None
    return getattr(r, _BUILTIN[name])


def text(v: Any) -> str:
    if v is None:
        return "(none)"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, float) and v == int(v):
        return str(int(v))
    if isinstance(v, list):
        return json.dumps(v)
    return str(v)


def as_float(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def op_holds(op: str, values: Sequence[str], v: Any) -> bool:
    items = v if isinstance(v, list) else ([] if v is None else [v])
    if op == "is":
        return any(text(x) in values for x in (items or [None]))
    if op == "is not":
        return not op_holds("is", values, v)
    if op == "contains":
        return any(n.lower() in text(x).lower() for x in items for n in values)
    if op == "does not contain":
        return not op_holds("contains", values, v)
    if op == "set is":
        return {text(x) for x in items} == set(values)
    if op == "set is not":
        return not op_holds("set is", values, v)
    bound = float(values[0])
    numbers = [n for n in (as_float(x) for x in items) if n is not None]
    if op == "less":
        return any(n < bound for n in numbers)
    if op == "less or equal":
        return any(n <= bound for n in numbers)
    if op == "greater":
        return any(n > bound for n in numbers)
    assert op == "greater or equal", op
    return any(n >= bound for n in numbers)


Filter = tuple[str, str, str, Sequence[str]]  # (type, key, op, values)


def passes(r: EventRecord, filters: Iterable[Filter]) -> bool:
    for kind, key, op, values in filters:
        v = user_prop(r, key) if kind == "user" else r.event_properties.get(key)
        if not op_holds(op, values, v):
            return False
    return True


def is_type(r: EventRecord, event_type: str, firsts: set[int] | None = None) -> bool:
    if event_type in ("_active", "_all"):
        return True
    if event_type == "_new":
        assert firsts is not None
        return id(r) in firsts
    if event_type == "revenue_amount":
        return revenue(r) != 0
    return r.event_type == event_type


def revenue(r: EventRecord) -> float:
    p = r.event_properties
    for key in ("$revenue", "revenue"):
        if as_float(p.get(key)) is not None:
            return float(p[key])
    price = as_float(p.get("$price", p.get("price")))
    if price is None:
        return 0.0
    qty = as_float(p.get("$quantity", p.get("quantity")))
    return price * (1.0 if qty is None else qty)


def local_day(r: EventRecord, tz: tzinfo) -> date:
    return r.event_time.astimezone(tz).date()


def period_label(day: date, interval: int) -> str:
    if interval == 7:
        return (day - timedelta(days=(day.weekday() + 1) % 7)).isoformat()
    if interval == 30:
        return day.replace(day=1).isoformat()
    return day.isoformat()


def labels(start: date, end: date, interval: int) -> list[str]:
    out: list[str] = []
    day = start
    while day <= end:
        label = period_label(day, interval)
        if label not in out:
            out.append(label)
        day += timedelta(days=1)
    return out


def first_events(records: Records) -> set[int]:
    seen: set[int] = set()
    firsts: set[int] = set()
    for r in sorted(records, key=lambda r: r.event_time):
        if r.amplitude_id not in seen:
            seen.add(r.amplitude_id)
            firsts.add(id(r))
    return firsts


def series(
    records: Records,
    tz: tzinfo,
    start: date,
    end: date,
    *,
    event_type: str,
    filters: Sequence[Filter] = (),
    where: Sequence[Filter] = (),
    members: set[int] | None = None,
    interval: int = 1,
    group: Callable[[EventRecord], tuple[str, ...]] = lambda r: (),
    value: Callable[[EventRecord], float | None] | None = None,
) -> dict[tuple[str, ...], dict[str, dict[str, Any]]]:
    """Per group key, per bucket label: users set, event count, value sum and count."""
    firsts = first_events(records) if event_type == "_new" else None
    out: dict[tuple[str, ...], dict[str, dict[str, Any]]] = {}
    for r in records:
        day = local_day(r, tz)
        if not start <= day <= end or not is_type(r, event_type, firsts):
            continue
        if not passes(r, filters) or not passes(r, where):
            continue
        if members is not None and r.amplitude_id not in members:
            continue
        per_bucket = out.setdefault(group(r), {})
        cell = per_bucket.setdefault(
            period_label(day, interval), {"users": set(), "total": 0, "sum": 0.0, "n": 0}
        )
        cell["users"].add(r.amplitude_id)
        cell["total"] += 1
        if value is not None and (v := value(r)) is not None:
            cell["sum"] += v
            cell["n"] += 1
    return out


def sessions(records: Records) -> list[tuple[datetime, int, int]]:
    """(start, length ms, amplitude id) of every session."""
    spans: dict[tuple[int, int], list[datetime]] = {}
    for r in records:
        if r.session_id == -1:
            continue
        span = spans.setdefault((r.amplitude_id, r.session_id), [r.event_time, r.event_time])
        span[0] = min(span[0], r.event_time)
        span[1] = max(span[1], r.event_time)
    out = []
    for (amp, _), (a, b) in spans.items():
        ms = round((b - a).total_seconds() * 1000)
        out.append((a, min(ms, 86_400_000), amp))
    return out


def by_user(records: Records) -> dict[int, list[EventRecord]]:
    users: dict[int, list[EventRecord]] = defaultdict(list)
    for r in records:
        users[r.amplitude_id].append(r)
    for events in users.values():
        events.sort(key=lambda r: r.event_time)
    return users


def funnel(
    records: Records,
    tz: tzinfo,
    start: date,
    end: date,
    steps: Sequence[str],
    *,
    mode: str = "ordered",
    window_s: int = 2_592_000,
) -> dict[int, tuple[EventRecord, list[datetime]]]:
    """Each user's best funnel pass: (entry record, completion time of each reached step)."""
    out: dict[int, tuple[EventRecord, list[datetime]]] = {}
    window = timedelta(seconds=window_s)
    for amp, events in by_user(records).items():
        seq = [r for r in events if start <= local_day(r, tz) <= end]
        best: tuple[EventRecord, list[datetime]] | None = None
        for p, entry in enumerate(seq):
            limit = entry.event_time + window
            later = [r for r in seq[p:] if r.event_time <= limit]
            if mode == "unordered":
                if entry.event_type not in steps:
                    continue
                reached: list[datetime] = []
                for step in steps:
                    hits = [r.event_time for r in later if r.event_type == step]
                    if not hits:
                        break
                    reached.append(max([*reached, min(hits)]))
            else:
                if entry.event_type != steps[0]:
                    continue
                reached = [entry.event_time]
                for r in later[1:]:
                    if len(reached) == len(steps):
                        break
                    if r.event_type == steps[len(reached)]:
                        reached.append(r.event_time)
                    elif mode == "sequential":
                        break
            if reached and (best is None or len(reached) > len(best[1])):
                best = (entry, reached)
        if best is not None:
            out[amp] = best
    return out


def median_ms(gaps: list[int]) -> int:
    return round(statistics.median(gaps)) if gaps else 0


def retention_nday(
    records: Records,
    tz: tzinfo,
    start: date,
    end: date,
    start_event: str,
    return_event: str,
    horizon: datetime,
) -> dict[date, tuple[int, dict[int, int]]]:
    """Daily cohort → (size, {day offset: users who returned on exactly that day})."""
    out: dict[date, tuple[int, dict[int, int]]] = {}
    cohorts: dict[date, list[int]] = defaultdict(list)
    users = by_user(records)
    entry: dict[int, EventRecord] = {}
    for amp, events in users.items():
        for r in events:
            if r.event_type == start_event and start <= local_day(r, tz) <= end:
                entry[amp] = r
                cohorts[local_day(r, tz)].append(amp)
                break
    for day in (start + timedelta(days=k) for k in range((end - start).days + 1)):
        returned: dict[int, int] = defaultdict(int)
        for amp in cohorts.get(day, []):
            t0 = entry[amp].event_time
            offsets = {
                (local_day(r, tz) - day).days
                for r in users[amp]
                if r.event_time > t0 and r.event_time < horizon and is_type(r, return_event)
            }
            for off in offsets:
                returned[off] += 1
        out[day] = (len(cohorts.get(day, [])), dict(returned))
    return out
