"""The columnar store: events as parallel arrays sorted by time, with the engine's indexes."""

from __future__ import annotations

import gzip
import json
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from itertools import accumulate, compress, islice, pairwise, repeat
from operator import add, itemgetter, le, mul, ne, sub
from pathlib import Path
from struct import Struct
from typing import Any
from zoneinfo import ZoneInfo

from .records import (
    BUILTIN_USER_PROPERTIES,
    SESSION_CAP_MS,
    Cohort,
    EventRecord,
    Value,
    _freeze,
    _from_ms,
    _record_from_export,
    _thaw,
    _to_ms,
    event_revenue,
)

# -- the columnar store ---------------------------------------------------------------------


class _Builder:
    """Accumulates events column by column, interning repeated values."""

    def __init__(self) -> None:
        self.time = array("q")
        self.user = array("l")
        self.type = array("l")
        self.session = array("q")
        self.device = array("l")
        self.ustate = array("l")
        self.eprops = array("l")
        self.type_ids: dict[str, int] = {}
        self.ustate_ids: dict[tuple[Value, ...], int] = {}
        self.eprops_ids: dict[tuple[tuple[str, Value], ...], int] = {}
        self.device_ids: dict[str, int] = {}
        self.user_of_amplitude: dict[int, int] = {}
        self.amplitude_ids: list[int] = []
        self.user_ids: list[str | None] = []
        self.prop_index: dict[str, int] = {k: i for i, k in enumerate(BUILTIN_USER_PROPERTIES)}

    def user_index(self, amplitude_id: int, user_id: str | None) -> int:
        index = self.user_of_amplitude.get(amplitude_id)
        if index is None:
            index = self.user_of_amplitude[amplitude_id] = len(self.amplitude_ids)
            self.amplitude_ids.append(amplitude_id)
            self.user_ids.append(user_id)
        elif user_id is not None:
            self.user_ids[index] = user_id
        return index

    def type_index(self, name: str) -> int:
        index = self.type_ids.get(name)
        if index is None:
            index = self.type_ids[name] = len(self.type_ids)
        return index

    def device_index(self, device_id: str | None) -> int:
        if device_id is None:
            return -1
        index = self.device_ids.get(device_id)
        if index is None:
            index = self.device_ids[device_id] = len(self.device_ids)
        return index

    def prop_slot(self, key: str) -> int:
        """The slot of user property ``key`` (canonical) in state rows, added if new."""
        slot = self.prop_index.get(key)
        if slot is None:
            slot = self.prop_index[key] = len(self.prop_index)
        return slot

    def ustate_index(self, props: Mapping[str, Value]) -> int:
        """Intern a user-property state given by canonical keys (``country``, ``gp:plan``)."""
        row: list[Value] = [None] * len(self.prop_index)
        for key, value in props.items():
            if value is None:
                continue
            slot = self.prop_slot(key)
            if slot == len(row):
                row.append(None)
            row[slot] = _freeze(value)
        while row and row[-1] is None:
            row.pop()
        return self.ustate_row_index(tuple(row))

    def ustate_row_index(self, row: tuple[Value, ...]) -> int:
        """Intern a user-property state row: frozen values in slot order, no trailing None."""
        index = self.ustate_ids.get(row)
        if index is None:
            index = self.ustate_ids[row] = len(self.ustate_ids)
        return index

    def eprops_index(self, props: Mapping[str, Value]) -> int:
        key = tuple(sorted((k, _freeze(v)) for k, v in props.items()))
        index = self.eprops_ids.get(key)
        if index is None:
            index = self.eprops_ids[key] = len(self.eprops_ids)
        return index

    def add(
        self, ms: int, user: int, type_: int, session: int, device: int, ustate: int, eprops: int
    ) -> None:
        self.time.append(ms)
        self.user.append(user)
        self.type.append(type_)
        self.session.append(session)
        self.device.append(device)
        self.ustate.append(ustate)
        self.eprops.append(eprops)


def _ascending(column: array[int]) -> bool:
    return all(map(le, column, islice(column, 1, None)))


def _gather(column: Sequence[int], positions: Sequence[int]) -> Sequence[int]:
    """``[column[i] for i in positions]``, at C speed."""
    if len(positions) < 2:  # itemgetter of one index returns the bare value
        return [column[i] for i in positions]
    taken: Sequence[int] = itemgetter(*positions)(column)
    return taken


def _reorder(columns: list[array[int]], order: list[int]) -> list[array[int]]:
    """The columns permuted by ``order`` (``new[k] = old[order[k]]``).

    Gathering a million values column by column costs a Python int per value and column.
    When every column has 8-byte items, each event's values are packed into one bytes
    record instead, the records are put in order as objects (moving references only) and
    the columns are unpacked again with strided memoryview copies: about twice as fast.
    """
    n, width = len(order), len(columns)
    if n < 2 or any(c.itemsize != 8 for c in columns):
        return [array(c.typecode, _gather(c, order)) for c in columns]
    packed = bytearray(8 * width * n)
    slots = memoryview(packed).cast("q")
    for k, c in enumerate(columns):
        slots[k::width] = memoryview(c).cast("B").cast("q")
    records = list(map(itemgetter(0), Struct(f"{8 * width}s").iter_unpack(packed)))
    del slots, packed
    ordered = memoryview(b"".join(itemgetter(*order)(records))).cast("q")
    del records
    out = []
    for k, c in enumerate(columns):
        column = array(c.typecode, bytes(8 * n))
        memoryview(column).cast("B").cast("q")[:] = ordered[k::width]
        out.append(column)
    return out


def _split(flat: array[int], counts: Mapping[int, int], groups: int) -> list[array[int]]:
    """``flat`` cut into consecutive runs of ``counts[0]``, ``counts[1]``, ... items."""
    bounds = list(accumulate((counts.get(k, 0) for k in range(groups)), initial=0))
    return [flat[a:b] for a, b in pairwise(bounds)]


class Dataset:
    """An indexed event log; see the module docstring.

    The public columns (``time``, ``user``, ``type``, ``session``, ``device``, ``ustate``,
    ``eprops``) are parallel arrays sorted by time; treat them and the indexes as read-only.
    Times are epoch milliseconds (UTC); days are local days of :attr:`tz`.
    """

    tz: tzinfo
    """The project's time zone (UTC unless one was given)."""
    start: date
    """The first local day the dataset covers."""
    end: date
    """The last local day the dataset covers (inclusive)."""
    cohorts: Mapping[str, Cohort]
    """Saved cohorts by id."""
    charts: Mapping[str, Any]
    """Saved charts by id: query objects of :mod:`amplitude_async.queries`."""

    def __init__(
        self,
        builder: _Builder,
        *,
        tz: str | None = None,
        start: date | None = None,
        end: date | None = None,
        cohorts: Iterable[Cohort] = (),
        charts: Mapping[str, Any] | None = None,
    ) -> None:
        self.tz = ZoneInfo(tz) if tz else UTC
        self.tz_name = tz or "UTC"
        b = builder
        columns = [b.time, b.user, b.type, b.session, b.device, b.ustate, b.eprops]
        n = len(b.time)
        if not _ascending(b.time):
            # a stable sort by time; float keys take the sort's fast path and are exact for
            # epoch milliseconds (far below 2**53)
            columns = _reorder(columns, sorted(range(n), key=array("d", b.time).__getitem__))
        self.time: array[int] = columns[0]
        self.user: array[int] = columns[1]
        self.type: array[int] = columns[2]
        self.session: array[int] = columns[3]
        self.device: array[int] = columns[4]
        self.ustate: array[int] = columns[5]
        self.eprops: array[int] = columns[6]
        b.time, b.user, b.type, b.session, b.device, b.ustate, b.eprops = columns

        self.type_names: list[str] = sorted(b.type_ids, key=b.type_ids.__getitem__)
        self.type_ids: dict[str, int] = dict(b.type_ids)
        self.amplitude_ids: list[int] = b.amplitude_ids
        self.user_ids: list[str | None] = b.user_ids
        self.user_of_amplitude: dict[int, int] = b.user_of_amplitude
        self.device_names: list[str] = sorted(b.device_ids, key=b.device_ids.__getitem__)
        self.prop_index: dict[str, int] = dict(b.prop_index)
        self.ustates: list[tuple[Value, ...]] = list(b.ustate_ids)
        self.eprops_table: list[dict[str, Value]] = [dict(k) for k in b.eprops_ids]
        self.eprops_revenue: list[float] = [event_revenue(p) for p in self.eprops_table]

        times = self.time
        # positions grouped by user (or type) by a stable sort, so each group is in time order
        by_user = sorted(range(n), key=self.user.__getitem__)
        self.user_events: list[array[int]] = _split(
            array("l", by_user), Counter(self.user), len(self.amplitude_ids)
        )
        """Per user, indices of its events in time order."""
        del by_user
        by_type = sorted(range(n), key=self.type.__getitem__)
        type_counts = Counter(self.type)
        self.type_events: list[array[int]] = _split(
            array("l", by_type), type_counts, len(self.type_names)
        )
        """Per event type, indices of its events in time order."""
        self.type_times: list[array[int]] = _split(
            array("q", _gather(times, by_type)), type_counts, len(self.type_names)
        )
        del by_type
        revenue = self.eprops_revenue
        self.revenue_events: array[int] = array(
            "l", compress(range(n), map(revenue.__getitem__, self.eprops))
        )
        self.revenue_times: array[int] = array("q", _gather(times, self.revenue_events))
        self.first_events: array[int] = array("l", sorted(e[0] for e in self.user_events if e))
        """Index of each user's first event, in time order ("new user" events)."""
        self.first_times: array[int] = array("q", _gather(times, self.first_events))
        self._build_sessions()

        if n:
            first_day = self.local_date(times[0])
            last_day = self.local_date(times[-1])
        else:
            first_day = last_day = start or date(2026, 9, 1)
        self.start = start or first_day
        self.end = end or last_day
        self.cohorts = {c.id: c for c in cohorts}
        self.charts = dict(charts or {})
        self._midnights: dict[date, int] = {}
        self._cohort_users: dict[str, frozenset[int]] = {}
        self._day_bounds: list[int] | None = None
        self._by_device: dict[str, list[int]] | None = None
        self._by_user_id: dict[str, list[int]] | None = None
        self.day: array[int] = self._event_days()
        """Per event, its local day as a number of days from :attr:`start` (``day_number``)."""

    def _build_sessions(self) -> None:
        times, n, n_users = self.time, len(self.time), max(len(self.amplitude_ids), 1)
        # one int per (user, session id) pair: dicts of ints are much cheaper than of tuples
        keys = list(map(add, map(mul, self.session, repeat(n_users)), self.user))
        # a dict keeps a key where it first occurs and the value it last got: so ``last``
        # lists sessions by their first event, with the index of their last one
        last = dict(zip(keys, range(n), strict=True))
        first = dict(zip(reversed(keys), range(n - 1, -1, -1), strict=True))
        del keys
        ends = list(last.values())
        real = list(map(ne, _gather(self.session, ends), repeat(-1)))
        ends = list(compress(ends, real))
        begins = list(map(first.__getitem__, compress(last, real)))
        begin_times = _gather(times, begins)
        lengths = map(min, map(sub, _gather(times, ends), begin_times), repeat(SESSION_CAP_MS))
        # ties in start time order by length, then user
        starts = sorted(zip(begin_times, lengths, _gather(self.user, ends), strict=True))
        self.session_starts: array[int] = array("q", [s[0] for s in starts])
        """Session start times (ms), sorted; parallel to ``session_lengths``/``session_users``."""
        self.session_lengths: array[int] = array("q", [s[1] for s in starts])
        self.session_users: array[int] = array("l", [s[2] for s in starts])

    def _event_days(self) -> array[int]:
        """The :attr:`day` column: runs of equal day numbers between local midnights."""
        times = self.time
        count = (self.end - self.start).days + 1
        cuts = [
            bisect_left(times, self.midnight(self.start + timedelta(days=k)))
            for k in range(count + 1)
        ]
        days = array("l", [self.day_number(times[i]) for i in range(cuts[0])])
        for k in range(count):
            days.extend(array("l", [k]) * (cuts[k + 1] - cuts[k]))
        days.extend(self.day_number(times[i]) for i in range(cuts[-1], len(times)))
        return days

    # -- time ------------------------------------------------------------------------------

    def midnight(self, day: date) -> int:
        """Epoch ms of the local midnight starting ``day``."""
        ms = self._midnights.get(day)
        if ms is None:
            local = datetime(day.year, day.month, day.day, tzinfo=self.tz)
            ms = self._midnights[day] = _to_ms(local)
        return ms

    def day_number(self, ms: int) -> int:
        """Local days from :attr:`start` to the day holding ``ms`` (fast; for event times)."""
        bounds = self._day_bounds
        if bounds is None:
            count = (self.end - self.start).days + 2
            bounds = self._day_bounds = [
                self.midnight(self.start + timedelta(days=k)) for k in range(count)
            ]
        if bounds[0] <= ms < bounds[-1]:
            return bisect_right(bounds, ms) - 1
        return (self.local_date(ms) - self.start).days

    def local_time(self, ms: int) -> datetime:
        """The local (project time zone) moment of epoch ms ``ms``."""
        return _from_ms(ms).astimezone(self.tz)

    def local_date(self, ms: int) -> date:
        """The local day containing epoch ms ``ms``."""
        return self.local_time(ms).date()

    # -- lookups ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.time)

    @property
    def user_count(self) -> int:
        """Number of distinct users (Amplitude IDs)."""
        return len(self.amplitude_ids)

    @property
    def event_types(self) -> list[str]:
        """Event types that occur, sorted by name."""
        return sorted(self.type_names)

    def user_value(self, ustate: int, key: str) -> Value:
        """The user property ``key`` (canonical) in user state ``ustate``; None if unset."""
        slot = self.prop_index.get(key)
        if slot is None:
            return None
        row = self.ustates[ustate]
        return row[slot] if slot < len(row) else None

    def cohort_users(self, cohort_id: str) -> frozenset[int] | None:
        """User indices of a cohort, or None if there is no such cohort."""
        cached = self._cohort_users.get(cohort_id)
        if cached is None:
            cohort = self.cohorts.get(cohort_id)
            if cohort is None:
                return None
            lookup = self.user_of_amplitude
            cached = frozenset(lookup[a] for a in cohort.amplitude_ids if a in lookup)
            self._cohort_users[cohort_id] = cached
        return cached

    def users_with_device(self, device_id: str) -> list[int]:
        """User indices that used device ``device_id``."""
        if self._by_device is None:
            pairs = sorted(set(zip(self.device, self.user, strict=True)))
            by_device: dict[str, list[int]] = {}
            for d, u in pairs:
                if d >= 0:
                    by_device.setdefault(self.device_names[d], []).append(u)
            self._by_device = by_device
        return self._by_device.get(device_id, [])

    def users_with_user_id(self, user_id: str) -> list[int]:
        """User indices whose user ID is ``user_id``."""
        if self._by_user_id is None:
            by_user_id: dict[str, list[int]] = {}
            for u, name in enumerate(self.user_ids):
                if name is not None:
                    by_user_id.setdefault(name, []).append(u)
            self._by_user_id = by_user_id
        return self._by_user_id.get(user_id, [])

    def events_between(self, start_ms: int, end_ms: int) -> range:
        """Indices of the events with ``start_ms <= time < end_ms``."""
        return range(bisect_left(self.time, start_ms), bisect_left(self.time, end_ms))

    def record(self, i: int) -> EventRecord:
        """Materialise event ``i`` as an :class:`EventRecord`."""
        u = self.user[i]
        state = self.ustates[self.ustate[i]]
        slots = self.prop_index

        def prop(key: str) -> Value:
            slot = slots[key]
            return _thaw(state[slot]) if slot < len(state) else None

        os_value = prop("os")
        os_name, _, os_version = (os_value or "").partition(" ")
        custom = {
            key[3:]: _thaw(state[slot])
            for key, slot in slots.items()
            if key.startswith("gp:") and slot < len(state) and state[slot] is not None
        }
        device = self.device[i]
        return EventRecord(
            event_type=self.type_names[self.type[i]],
            user_id=self.user_ids[u],
            amplitude_id=self.amplitude_ids[u],
            device_id=self.device_names[device] if device >= 0 else None,
            event_time=_from_ms(self.time[i]),
            session_id=self.session[i],
            event_properties={k: _thaw(v) for k, v in self.eprops_table[self.eprops[i]].items()},
            user_properties=custom,
            country=prop("country"),
            city=prop("city"),
            region=prop("region"),
            dma=prop("dma"),
            platform=prop("platform"),
            os_name=os_name or None,
            os_version=os_version or None,
            device_family=prop("device"),
            device_type=prop("device_type"),
            version_name=prop("version"),
            language=prop("language"),
            start_version=prop("start_version"),
            paying=prop("paying"),
        )

    @property
    def events(self) -> Iterator[EventRecord]:
        """Every event as a record, in time order (materialised lazily)."""
        return (self.record(i) for i in range(len(self.time)))

    def write_export(self, path: str | Path) -> None:
        """Write every event to ``path`` in the export format (gzip if it ends in ``.gz``)."""
        target = Path(path)
        opener = gzip.open if target.suffix == ".gz" else open
        with opener(target, "wt", encoding="utf-8") as out:
            for record in self.events:
                out.write(json.dumps(record.to_export()) + "\n")

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def from_records(
        cls,
        records: Iterable[EventRecord],
        *,
        tz: str | None = None,
        cohorts: Iterable[Cohort] = (),
        charts: Mapping[str, Any] | None = None,
    ) -> Dataset:
        """Index ``records`` (any order)."""
        builder = _Builder()
        for r in records:
            custom = {f"gp:{k}": v for k, v in r.user_properties.items()}
            builder.add(
                _to_ms(r.event_time),
                builder.user_index(r.amplitude_id, r.user_id),
                builder.type_index(r.event_type),
                r.session_id,
                builder.device_index(r.device_id),
                builder.ustate_index({**r._builtins(), **custom}),
                builder.eprops_index(r.event_properties),
            )
        return cls(builder, tz=tz, cohorts=cohorts, charts=charts)

    @classmethod
    def from_export(
        cls,
        path: str | Path,
        *,
        tz: str | None = None,
        cohorts: Iterable[Cohort] = (),
        charts: Mapping[str, Any] | None = None,
    ) -> Dataset:
        """Read an Amplitude export file (JSON lines, plain or gzip) into a dataset.

        ``tz`` is the project's time zone (zoneinfo key); ``cohorts`` and ``charts`` give the
        project's saved cohorts and charts, which an export does not contain.
        """
        source = Path(path)
        with source.open("rb") as probe:
            gzipped = probe.read(2) == b"\x1f\x8b"
        opener = gzip.open if gzipped else open
        with opener(source, "rt", encoding="utf-8") as lines:
            return cls.from_records(
                (_record_from_export(line, n) for n, line in enumerate(lines, 1) if line.strip()),
                tz=tz,
                cohorts=cohorts,
                charts=charts,
            )
