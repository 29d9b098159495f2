"""Event records, Amplitude's export format, cohorts and the property rules every layer shares."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeAlias

from attrs import field, frozen

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
