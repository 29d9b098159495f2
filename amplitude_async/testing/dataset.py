"""Event data behind the emulator: a columnar, indexed event log.

:class:`Dataset` holds events as parallel arrays sorted by time, plus the indexes the answer
engine needs (events per type, per user, sessions, first events), all built once. Records
(:class:`EventRecord`) are materialised only on demand by :attr:`Dataset.events`.

Two ways to get one:

- :class:`SyntheticDataset` generates a plausible product deterministically from a seed: users
  with location, device and custom ``gp:`` properties, sessions with a heavy-ish tail, a
  Sign Up → Complete Profile → Purchase funnel with drop-off, retention decaying over days,
  version upgrades and revenue. It also defines built-in cohorts and saved charts.
- :meth:`Dataset.from_export` reads Amplitude's export format (JSON lines, plain or gzip).

Decisions kept here:

- a user is an Amplitude ID; ``user_id`` is the last non-null one seen for it;
- user properties are recorded per event (at event time), so a property that changes
  (``version`` after an upgrade, ``paying`` after the first purchase) changes from that event on;
- built-in user properties use their query names (``version``, ``os``, ``device``, ``dma``, ...);
  custom ones are ``gp:name``;
- an event's revenue is its ``$revenue`` or ``revenue`` property, else ``price``/``$price``
  times ``quantity``/``$quantity`` (default 1) when a price is present;
- a session is (user, ``session_id``) with ``session_id`` ≠ -1; it starts at its first event and
  its length is last minus first event time, capped at one day.
"""

from __future__ import annotations

import gzip
import json
import math
import random
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from itertools import accumulate, compress, islice, pairwise, repeat
from operator import add, itemgetter, le, mul, ne, sub
from pathlib import Path
from struct import Struct
from typing import Any, Final, TypeAlias
from zoneinfo import ZoneInfo

from attrs import field, frozen

__all__ = [
    "BUILTIN_USER_PROPERTIES",
    "Cohort",
    "Dataset",
    "EventRecord",
    "SyntheticDataset",
    "as_number",
    "event_revenue",
    "user_property_key",
]

Value: TypeAlias = Any
"""A JSON property value: str, int, float, bool, None or a list of those."""

BUILTIN_USER_PROPERTIES: Final[tuple[str, ...]] = (
    "version",
    "country",
    "city",
    "region",
    "dma",
    "platform",
    "os",
    "device",
    "device_type",
    "language",
    "start_version",
    "paying",
)
"""Built-in user properties, by the (lower-case) names queries use for them."""

SESSION_CAP_MS: Final = 86_400_000
"""Session lengths are capped at one day, as Amplitude's are."""

_DAY_MS: Final = 86_400_000


def user_property_key(name: str) -> str | None:
    """The canonical key of a user property as named in a query, or None if it is unknown.

    Built-in names are matched case-insensitively (``DMA`` and ``dma``); custom properties
    must be spelled ``gp:name``.
    """
    if name.startswith("gp:") and len(name) > 3:
        return name
    lower = name.lower()
    return lower if lower in BUILTIN_USER_PROPERTIES else None


def event_revenue(props: Mapping[str, Value]) -> float:
    """The revenue an event carries (0.0 for none); see the module docstring for the rule."""
    for key in ("$revenue", "revenue"):
        amount = as_number(props.get(key))
        if amount is not None:
            return amount
    price = as_number(props.get("$price", props.get("price")))
    if price is None:
        return 0.0
    quantity = as_number(props.get("$quantity", props.get("quantity")))
    return price * (1.0 if quantity is None else quantity)


def as_number(value: Value, *, finite_numbers: bool = True) -> float | None:
    """A property value as a number: ints, floats and numeric strings; ``None`` otherwise.

    Strings must give a finite number. An infinite or NaN float is ``None`` too, unless
    ``finite_numbers`` is false: the answer engine's filters and sums take it as it is.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if not finite_numbers or math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _freeze(value: Value) -> Value:
    """Make a JSON value hashable (lists become tuples) so it can be interned."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def _thaw(value: Value) -> Value:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


# -- records --------------------------------------------------------------------------------


@frozen
class EventRecord:
    """One event as Amplitude exports it; ``event_time`` is timezone-aware UTC.

    ``user_properties`` holds the custom properties (without ``gp:``); the built-in ones are
    fields. ``os_name``/``os_version`` together make the ``os`` property (``"ios 17.4"``).
    """

    event_type: str
    user_id: str | None
    amplitude_id: int
    device_id: str | None
    event_time: datetime
    session_id: int
    event_properties: Mapping[str, Value] = field(factory=dict)
    user_properties: Mapping[str, Value] = field(factory=dict)
    country: str | None = None
    city: str | None = None
    region: str | None = None
    dma: str | None = None
    platform: str | None = None
    os_name: str | None = None
    os_version: str | None = None
    device_family: str | None = None
    device_type: str | None = None
    version_name: str | None = None
    language: str | None = None
    start_version: str | None = None
    paying: bool | None = None

    @property
    def revenue(self) -> float:
        """The revenue this event carries (0.0 for none)."""
        return event_revenue(self.event_properties)

    def user_property(self, name: str) -> Value:
        """A user property by its query name (``country``, ``os``, ``gp:plan``)."""
        key = user_property_key(name)
        if key is None:
            raise KeyError(name)
        if key.startswith("gp:"):
            return self.user_properties.get(key[3:])
        return self._builtins()[key]

    def _builtins(self) -> dict[str, Value]:
        os = " ".join(p for p in (self.os_name, self.os_version) if p) or None
        return {
            "version": self.version_name,
            "country": self.country,
            "city": self.city,
            "region": self.region,
            "dma": self.dma,
            "platform": self.platform,
            "os": os,
            "device": self.device_family,
            "device_type": self.device_type,
            "language": self.language,
            "start_version": self.start_version,
            "paying": self.paying,
        }

    def to_export(self) -> dict[str, Value]:
        """This event in Amplitude's export format (one JSON line of an export file)."""
        return {
            "event_type": self.event_type,
            "user_id": self.user_id,
            "amplitude_id": self.amplitude_id,
            "device_id": self.device_id,
            "event_time": format_export_time(self.event_time),
            "session_id": self.session_id,
            "event_properties": dict(self.event_properties),
            "user_properties": dict(self.user_properties),
            "country": self.country,
            "city": self.city,
            "region": self.region,
            "dma": self.dma,
            "platform": self.platform,
            "os_name": self.os_name,
            "os_version": self.os_version,
            "device_family": self.device_family,
            "device_type": self.device_type,
            "version_name": self.version_name,
            "language": self.language,
            "start_version": self.start_version,
            "paying": self.paying,
        }


def format_export_time(moment: datetime) -> str:
    """``2026-09-01 12:34:56.789000`` in UTC, the export format's time stamp."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _parse_export_time(text: str) -> int:
    text = text.strip().replace("T", " ").removesuffix("Z")
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            moment = datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        return _to_ms(moment)
    raise ValueError(f"unreadable event_time {text!r}")


def _to_ms(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


@frozen
class Cohort:
    """A saved cohort: an id, a name and its members' Amplitude IDs."""

    id: str
    name: str
    amplitude_ids: frozenset[int]


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


def _record_from_export(line: str, line_no: int) -> EventRecord:
    try:
        raw = json.loads(line)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")

        def text(*keys: str) -> str | None:
            for key in keys:
                value = raw.get(key)
                if value is not None and value != "":
                    return str(value)
            return None

        paying = raw.get("paying")
        if isinstance(paying, str):
            paying = {"true": True, "false": False}.get(paying.lower())
        user_id = raw.get("user_id")
        return EventRecord(
            event_type=str(raw["event_type"]),
            user_id=None if user_id is None else str(user_id),
            amplitude_id=int(raw["amplitude_id"]),
            device_id=text("device_id"),
            event_time=_from_ms(_parse_export_time(str(raw["event_time"]))),
            session_id=int(raw.get("session_id") or -1),
            event_properties=dict(raw.get("event_properties") or {}),
            user_properties=dict(raw.get("user_properties") or {}),
            country=text("country"),
            city=text("city"),
            region=text("region"),
            dma=text("dma"),
            platform=text("platform"),
            os_name=text("os_name"),
            os_version=text("os_version"),
            device_family=text("device_family", "device_brand", "device_manufacturer"),
            device_type=text("device_type", "device_model"),
            version_name=text("version_name"),
            language=text("language"),
            start_version=text("start_version"),
            paying=paying if isinstance(paying, bool) else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"export line {line_no}: {exc}") from None


# -- synthetic data -------------------------------------------------------------------------

# (country, region, city, DMA, language, weight)
_PLACES: Final = (
    ("United States", "California", "San Francisco", "San Francisco-Oakland-San Jose, CA",
     "English", 9),
    ("United States", "New York", "New York", "New York, NY", "English", 10),
    ("United States", "Texas", "Austin", "Austin, TX", "English", 5),
    ("United States", "Illinois", "Chicago", "Chicago, IL", "English", 5),
    ("United Kingdom", "England", "London", None, "English", 8),
    ("Germany", "Berlin", "Berlin", None, "German", 6),
    ("Germany", "Bavaria", "Munich", None, "German", 3),
    ("France", "Île-de-France", "Paris", None, "French", 5),
    ("Canada", "Ontario", "Toronto", None, "English", 4),
    ("Brazil", "São Paulo", "São Paulo", None, "Portuguese", 4),
    ("India", "Maharashtra", "Mumbai", None, "English", 5),
    ("Japan", "Tokyo", "Tokyo", None, "Japanese", 4),
    ("Australia", "New South Wales", "Sydney", None, "English", 3),
)  # fmt: skip

# (platform, os_name, os_version, device family, device type, weight)
_DEVICES: Final = (
    ("iOS", "ios", "17.5", "Apple iPhone", "Apple iPhone 15", 18),
    ("iOS", "ios", "16.7", "Apple iPhone", "Apple iPhone 13", 9),
    ("iOS", "ios", "17.5", "Apple iPad", "Apple iPad Air", 3),
    ("Android", "android", "14", "Samsung Galaxy", "Samsung Galaxy S23", 12),
    ("Android", "android", "13", "Google Pixel", "Google Pixel 7", 6),
    ("Android", "android", "12", "Xiaomi Redmi", "Xiaomi Redmi Note 11", 5),
    ("Web", "Chrome", "126", "Mac", "Mac", 8),
    ("Web", "Chrome", "126", "Windows", "Windows", 7),
    ("Web", "Safari", "17", "Mac", "Mac", 4),
    ("Web", "Firefox", "127", "Linux", "Linux", 1),
)

_AGE_GROUPS: Final = ("18-24", "25-34", "35-44", "45-54", "55+")
_AGE_WEIGHTS: Final = (18, 34, 24, 14, 10)
_INTERESTS: Final = ("books", "music", "games", "outdoors", "cooking", "tech", "fashion")
_CATEGORIES: Final = ("books", "music", "games", "outdoors", "kitchen", "electronics")
_SEARCH_TERMS: Final = (
    "headphones", "tent", "novel", "vinyl", "blender", "keyboard", "jacket", "lamp", "puzzle",
    "guitar", "camera", "kettle", "boots", "backpack", "mouse", "speaker", "chess", "poster",
    "cookbook", "drone",
)  # fmt: skip
_N_ITEMS: Final = 120
_VERSIONS: Final = ("3.2.0", "3.3.0", "3.4.0", "3.4.1")
# hour-of-day weights of session starts: quiet nights, a lunch bump, a strong evening peak
_HOUR_WEIGHTS: Final = (
    1, 1, 1, 1, 1, 2, 3, 5, 7, 7, 7, 8, 10, 9, 7, 7, 8, 9, 11, 13, 14, 12, 8, 4,
)  # fmt: skip

SIGN_UP: Final = "Sign Up"
COMPLETE_PROFILE: Final = "Complete Profile"
OPEN_APP: Final = "Open App"
SEARCH: Final = "Search"
VIEW_ITEM: Final = "View Item"
ADD_TO_CART: Final = "Add to Cart"
PURCHASE: Final = "Purchase"
SHARE: Final = "Share"
RATE_ITEM: Final = "Rate Item"


def _cumulative(weights: Iterable[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


_CUSTOM_USER_PROPERTIES: Final = ("gp:age_group", "gp:interests", "gp:plan")
# the rates and shapes of the generator's draws (see _Generator)
_UPGRADE_RATE: Final = 1 / 4
_DECAY_RATE: Final = 1 / 5
_BROWSE_RATE: Final = 1 / 2.0
_RATING_RATE: Final = 1 / 3
_ITEM_SKEW: Final = -1.0 / 1.2
_N_TERMS: Final = len(_SEARCH_TERMS)
_TERM_BITS: Final = _N_TERMS.bit_length()
_NV_MAGIC: Final = 4 * math.exp(-0.5) / math.sqrt(2.0)


def _below(getrandbits: Callable[[int], int], n: int) -> int:
    """A uniform draw from ``range(n)`` exactly as ``random.Random.randrange(n)`` makes it."""
    bits = n.bit_length()
    r = getrandbits(bits)
    while r >= n:
        r = getrandbits(bits)
    return r


def _uuid4_text(bits: int) -> str:
    """``str(uuid.UUID(int=bits, version=4))``, without building the UUID."""
    bits = (bits & ~(0xC000 << 48) | 0x8000 << 48) & ~(0xF000 << 64) | 4 << 76
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class SyntheticDataset(Dataset):
    """A deterministic, plausible product's event log (see the module docstring).

    ``users`` users sign up over ``days`` local days from ``start``; each keeps coming back
    with a decaying probability, so about 10 events per user for a 30-day set. The same
    arguments always give the same events.

    Built-in cohorts: ``purchasers`` (bought at least once), ``power-users`` (active on 5 or
    more days), ``mobile`` (iOS or Android). Built-in charts: ``daily-signups``,
    ``purchases-by-country``, ``active-users`` (see :func:`builtin_charts`).
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        users: int = 1000,
        days: int = 30,
        start: date = date(2026, 9, 1),
        tz: str | None = None,
    ) -> None:
        if users < 1 or days < 1:
            raise ValueError("a synthetic dataset needs at least one user and one day")
        self.seed = seed
        zone = ZoneInfo(tz) if tz else UTC
        midnights = [
            _to_ms(datetime(d.year, d.month, d.day, tzinfo=zone))
            for d in (start + timedelta(days=k) for k in range(days + 1))
        ]
        builder = _Builder()
        end = start + timedelta(days=days - 1)
        _Generator(random.Random(seed), builder, midnights).run(users)
        super().__init__(builder, tz=tz, start=start, end=end)
        self.cohorts = {c.id: c for c in self._builtin_cohorts()}
        self.charts = builtin_charts(start, end)

    def _builtin_cohorts(self) -> list[Cohort]:
        purchase = self.type_ids.get(PURCHASE)
        buyers = (
            {self.amplitude_ids[self.user[i]] for i in self.type_events[purchase]}
            if purchase is not None
            else set()
        )
        power, mobile = set(), set()
        platform_slot = self.prop_index["platform"]
        day = self.day
        for u, events in enumerate(self.user_events):
            if len(set(map(day.__getitem__, events))) >= 5:
                power.add(self.amplitude_ids[u])
            if events and self.ustates[self.ustate[events[0]]][platform_slot] in ("iOS", "Android"):
                mobile.add(self.amplitude_ids[u])
        return [
            Cohort("purchasers", "Purchasers", frozenset(buyers)),
            Cohort("power-users", "Power users (active 5+ days)", frozenset(power)),
            Cohort("mobile", "Mobile users", frozenset(mobile)),
        ]


def builtin_charts(start: date, end: date) -> dict[str, Any]:
    """The saved charts of a synthetic project, as query objects over ``start``..``end`` (at
    most its last 365 days)."""
    from amplitude_async import queries  # a cycle-free late import: queries never imports us
    from amplitude_async.values import Event

    # A daily chart covers at most a year (the API's span limit): the last year of the data.
    start = max(start, end - timedelta(days=queries.DAILY_MAX_DAYS - 1))
    return {
        "daily-signups": queries.EventSegmentation(
            events=(Event(SIGN_UP),), start=start, end=end, metric="uniques"
        ),
        "purchases-by-country": queries.EventSegmentation(
            events=(Event(PURCHASE),), start=start, end=end, metric="totals", group_by=("country",)
        ),
        "active-users": queries.ActiveUsers(start=start, end=end),
    }


class _Generator:
    """Writes a synthetic product's events into a builder (one pass, users in order).

    Draws come straight from :class:`random.Random` (``random``/``getrandbits``) with the
    arithmetic of its ``expovariate``, ``lognormvariate``, ``paretovariate``, ``randrange``
    and ``sample`` written out in place: at a million events those calls were a large share
    of the build time. The draws and their order are those methods' own, so a seed keeps its events.
    """

    def __init__(self, rng: random.Random, builder: _Builder, midnights: list[int]) -> None:
        self.rng = rng
        self.b = builder
        self.midnights = midnights
        self.days = len(midnights) - 1
        self.place_cum = _cumulative(p[-1] for p in _PLACES)
        self.device_cum = _cumulative(d[-1] for d in _DEVICES)
        self.age_cum = _cumulative(_AGE_WEIGHTS)
        self.hour_cum = _cumulative(_HOUR_WEIGHTS)
        # later versions ship during the period; the first one predates it
        self.releases = [0] + [
            max(1, round(self.days * k / len(_VERSIONS))) for k in range(1, len(_VERSIONS))
        ]
        self.types = {name: builder.type_index(name) for name in _EVENT_TYPES}
        # user states are interned as rows in slot order: the built-in properties, then ours
        for key in _CUSTOM_USER_PROPERTIES:
            builder.prop_slot(key)
        if tuple(builder.prop_index) != BUILTIN_USER_PROPERTIES + _CUSTOM_USER_PROPERTIES:
            raise RuntimeError("a synthetic dataset needs a fresh builder")
        self.items = [
            {
                "item_id": f"sku-{k:04d}",
                "category": _CATEGORIES[k % len(_CATEGORIES)],
                "price": round(4.99 + (k * 7919 % 97) * 1.5, 2),
            }
            for k in range(_N_ITEMS)
        ]
        # event properties are drawn from small sets; interning by a cheap key skips
        # building (and hashing) a dict for the vast majority of events
        self.eprops_cache: dict[tuple[Any, ...], int] = {}

    def run(self, users: int) -> None:
        for n in range(users):
            self.user(n)

    def user(self, n: int) -> None:
        rng, b = self.rng, self.b
        random_, getrandbits, log, exp = rng.random, rng.getrandbits, math.log, math.exp
        amplitude_id = 100_000_000_000 + n
        anonymous = random_() < 0.1
        user = b.user_index(amplitude_id, None if anonymous else f"user{n:06d}")
        device = b.device_index(_uuid4_text(getrandbits(128)))
        country, region, city, dma, language, _ = _PLACES[
            bisect_right(self.place_cum, random_() * self.place_cum[-1])
        ]
        platform, os_name, os_version, family, model, _ = _DEVICES[
            bisect_right(self.device_cum, random_() * self.device_cum[-1])
        ]
        age = _AGE_GROUPS[bisect_right(self.age_cum, random_() * self.age_cum[-1])]
        # rng.sample(_INTERESTS, rng.randint(1, 3)), drawn the way those methods draw
        pool = list(_INTERESTS)
        picked = []
        for i in range(1 + _below(getrandbits, 3)):
            j = _below(getrandbits, len(pool) - i)
            picked.append(pool[j])
            pool[j] = pool[len(pool) - i - 1]
        interests = tuple(sorted(picked))
        # sign-ups grow a little over the period
        signup = min(int(self.days * random_() ** 0.85), self.days - 1)
        version_at_signup = max(v for v, day in enumerate(self.releases) if day <= signup)
        upgrades = [
            (self.releases[v] + int(-log(1.0 - random_()) / _UPGRADE_RATE), v)
            for v in range(version_at_signup + 1, len(_VERSIONS))
        ]
        activated = random_() < 0.62
        buyer = activated and random_() < 0.5
        engagement = 0.15 + 0.45 * random_()
        decay = 1.0 + -log(1.0 - random_()) / _DECAY_RATE
        # a user state row in slot order: version, the fixed properties, paying, custom ones
        fixed = (
            country, city, region, dma, platform, f"{os_name} {os_version}", family, model,
            language, _VERSIONS[version_at_signup],
        )  # fmt: skip
        plan = "plus" if n % 3 else "pro"
        states: dict[tuple[int, bool], int] = {}

        def ustate(version: int, paying: bool) -> int:
            index = states.get((version, paying))
            if index is None:
                row = (
                    _VERSIONS[version],
                    *fixed,
                    paying,
                    age,
                    interests,
                    plan if paying else "free",
                )
                index = states[version, paying] = b.ustate_row_index(row)
            return index

        add_time, add_user, add_type = b.time.append, b.user.append, b.type.append
        add_session, add_device = b.session.append, b.device.append
        add_ustate, add_eprops = b.ustate.append, b.eprops.append
        types, midnights, flow = self.types, self.midnights, self.flow
        eprops_cache = self.eprops_cache
        hour_cum = self.hour_cum
        hour_total = hour_cum[-1]
        paying = False
        profile_done = False
        end_ms = midnights[-1]
        for day in range(signup, self.days):
            age_days = day - signup
            if age_days and random_() >= engagement * exp(-age_days / decay) + 0.015:
                continue
            version = version_at_signup
            for when, v in upgrades:
                if when <= day:
                    version = v
            state = ustate(version, paying)
            sessions = 1 + (random_() < 0.25) + (random_() < 0.06)
            midnight = midnights[day]
            clock = midnight
            for s in range(sessions):
                hour = bisect_right(hour_cum, random_() * hour_total)
                t = midnight + hour * 3_600_000 + int(random_() * 3_600_000)
                if t < clock:
                    t = clock
                session_id = t
                kind = random_()
                # most sessions are brisk; a few linger, which gives lengths a heavy tail
                gap_scale = 12_000 if kind < 0.72 else (70_000 if kind < 0.95 else 420_000)
                for k, name in enumerate(flow(age_days == 0 and s == 0)):
                    if name == COMPLETE_PROFILE:
                        if profile_done or not (activated or random_() < 0.05):
                            continue
                        profile_done = True
                    elif name == PURCHASE and not (buyer and random_() < 0.8):
                        continue
                    if k:
                        # a log-normal gap: lognormvariate(0, 1)'s ratio-of-uniforms draw
                        while True:
                            u1 = random_()
                            u2 = 1.0 - random_()
                            z = _NV_MAGIC * (u1 - 0.5) / u2
                            if z * z / 4.0 <= -log(u2):
                                break
                        gap = int(exp(z) * gap_scale)
                        t += gap if gap < 1_500_000 else 1_500_000
                    if t >= end_ms:
                        break
                    add_time(t)
                    add_user(user)
                    add_type(types[name])
                    add_session(session_id)
                    add_device(device)
                    add_ustate(state)
                    # the event's properties, drawn here (not in a method) for speed
                    key: tuple[Any, ...]
                    if name in _ITEM_EVENTS:
                        # a Pareto draw: a few items are hits
                        item = int((1.0 - random_()) ** _ITEM_SKEW) - 1
                        if item >= _N_ITEMS:
                            item = _N_ITEMS - 1
                        if name == VIEW_ITEM:
                            key = (name, item)
                        elif name == ADD_TO_CART:
                            key = (name, item, 1 + (random_() < 0.2))
                        elif name == PURCHASE:
                            key = (name, item, 1 + (random_() < 0.15), random_() < 0.7)
                        elif name == SHARE:
                            key = (name, item, _below(getrandbits, 4))
                        else:  # RATE_ITEM
                            rating = 1 + int(-log(1.0 - random_()) / _RATING_RATE)
                            key = (name, item, min(5, rating), _below(getrandbits, 6))
                    elif name == SEARCH:
                        term = getrandbits(_TERM_BITS)
                        while term >= _N_TERMS:
                            term = getrandbits(_TERM_BITS)
                        results = getrandbits(6)
                        while results >= 40:
                            results = getrandbits(6)
                        key = (name, term, results)
                    elif name == OPEN_APP:
                        key = (name, random_() < 0.2)
                    elif name == SIGN_UP:
                        key = (name, _below(getrandbits, 3))
                    else:  # COMPLETE_PROFILE
                        key = (name, 3 + _below(getrandbits, 6))
                    eprops = eprops_cache.get(key)
                    if eprops is None:
                        eprops = eprops_cache[key] = b.eprops_index(self.props_of(key))
                    add_eprops(eprops)
                    if name == PURCHASE and not paying:
                        paying = True
                        state = ustate(version, paying)
                clock = t + 1_800_000

    def flow(self, first: bool) -> list[str]:
        """The event types of one session, from a small Markov chain of browsing."""
        random_ = self.rng.random
        steps = [SIGN_UP, COMPLETE_PROFILE] if first else [OPEN_APP]
        if not first and random_() < 0.08:
            steps.append(COMPLETE_PROFILE)
        current = SEARCH if random_() < 0.5 else VIEW_ITEM
        for _ in range(1 + int(-math.log(1.0 - random_()) / _BROWSE_RATE)):
            steps.append(current)
            r = random_()
            if current == SEARCH:
                current = VIEW_ITEM if r < 0.8 else SEARCH
            elif current == VIEW_ITEM:
                if r < 0.4:
                    current = VIEW_ITEM
                elif r < 0.65:
                    current = ADD_TO_CART
                elif r < 0.8:
                    current = SEARCH
                else:
                    current = SHARE if r < 0.9 else RATE_ITEM
            elif current == ADD_TO_CART:
                current = PURCHASE if r < 0.6 else VIEW_ITEM
            else:
                current = VIEW_ITEM if r < 0.7 else SEARCH
        return steps

    def props_of(self, key: tuple[Any, ...]) -> dict[str, Value]:
        name = key[0]
        if name in _ITEM_EVENTS:
            props = dict(self.items[key[1]])
            if name == ADD_TO_CART:
                props["quantity"] = key[2]
            elif name == PURCHASE:
                props["quantity"] = key[2]
                props["revenue"] = round(props["price"] * key[2], 2)
                props["payment_method"] = "card" if key[3] else "paypal"
            elif name == SHARE:
                props["channel"] = ("link", "email", "whatsapp", "instagram")[key[2]]
            elif name == RATE_ITEM:
                props["rating"] = key[2]
                props["tags"] = list(_TAG_PAIRS[key[3]])
            return props
        if name == SEARCH:
            return {"query": _SEARCH_TERMS[key[1]], "results": key[2]}
        if name == SIGN_UP:
            return {"method": ("email", "google", "apple")[key[1]]}
        if name == OPEN_APP:
            return {"source": "push" if key[1] else "organic"}
        if name == COMPLETE_PROFILE:
            return {"fields_filled": key[1]}
        return {}


_EVENT_TYPES: Final = (
    SIGN_UP,
    COMPLETE_PROFILE,
    OPEN_APP,
    SEARCH,
    VIEW_ITEM,
    ADD_TO_CART,
    PURCHASE,
    SHARE,
    RATE_ITEM,
)
_ITEM_EVENTS: Final = frozenset((VIEW_ITEM, ADD_TO_CART, PURCHASE, SHARE, RATE_ITEM))
_TAG_PAIRS: Final = (
    ("cheap", "fast"),
    ("fast", "quality"),
    ("gift", "quality"),
    ("cheap", "gift"),
    ("fast", "gift"),
    ("cheap", "quality"),
)
