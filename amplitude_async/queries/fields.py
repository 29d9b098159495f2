"""Query fields declared once: each field carries its wire name and its codecs.

A query class declares each field with ``field(..., metadata=wire("m", codec=...))``: a
:class:`Wire` in the attrs field's metadata holds the wire parameter name(s), how a value is
written to and read from the wire, and how a loose value from a job file or the command line
becomes a field value. Everything else is derived from that
one declaration by the functions here:

- :func:`to_params`: a query's ordered wire parameters (field order; ``None`` left out);
- :func:`from_params`: constructor arguments rebuilt from wire parameters (the emulator's
  parser and :func:`~amplitude_async.queries.parse_query`);
- :func:`wire_name`: the wire name of a field a construction error names;
- :func:`from_table`: constructor arguments from a table of loose values (job files, CLI).

Adding a field to a query is one line in its class.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date
from typing import Any, Final, TypeAlias
from urllib.parse import quote

import attrs
from attrs import frozen

from ..errors import InvalidQuery
from ..validation import Validator, check_int
from ..values import Event, Segment
from . import tables
from .intervals import INTERVAL_NAMES

__all__ = [
    "Codec",
    "Params",
    "Wire",
    "WireParams",
    "from_params",
    "from_table",
    "interval_validator",
    "layout",
    "to_params",
    "wire",
    "wire_name",
]

Params: TypeAlias = tuple[tuple[str, str], ...]
"""Ordered ``(name, value)`` wire parameters, not URL-encoded."""

WIRE: Final = "amplitude_async.wire"
"""The attrs metadata key of a field's :class:`Wire`."""


def compact_json(value: object) -> str:
    """Compact JSON, non-ASCII kept: how the API's JSON parameters are written."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# -- wire parameters being read -------------------------------------------------------------


class WireParams:
    """Wire parameters being decoded; remembers which were read to reject unknown ones."""

    def __init__(self, params: Sequence[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        self._read: set[str] = set()
        for pair in params:
            if (
                not isinstance(pair, tuple | list)
                or len(pair) != 2
                or not all(isinstance(x, str) for x in pair)
            ):
                raise InvalidQuery("params", f"expected (name, value) string pairs, got {pair!r}")
            self._values.setdefault(pair[0], []).append(pair[1])

    def all(self, name: str) -> list[str]:
        """Every value given for ``name``."""
        self._read.add(name)
        return self._values.get(name, [])

    def get(self, name: str) -> str | None:
        """The one value of ``name``, or ``None``; given twice is an error."""
        values = self.all(name)
        if len(values) > 1:
            raise InvalidQuery(name, "given more than once")
        return values[0] if values else None

    def finish(self, path: str) -> None:
        """Refuse parameters nothing read."""
        unknown = sorted(set(self._values) - self._read)
        if unknown:
            raise InvalidQuery(unknown[0], f"unknown parameter for {path}")


# -- codecs ---------------------------------------------------------------------------------


@frozen
class Codec:
    """How a value is written to the wire, read back, and read from a job file or the CLI.

    ``decode(text, name, index)`` turns one wire value (the ``index``-th of a repeated
    parameter) into a constructor argument, raising InvalidQuery(name); ``loose(value, name)``
    does the same for a value as a job file or the command line gives it.
    """

    encode: Callable[[Any], str]
    decode: Callable[[str, str, int], object]
    loose: Callable[[object, str], object] = tables.as_is


def _text(text: str, name: str, index: int) -> str:
    return text


def _int(text: str, name: str, index: int) -> int:
    if not re.fullmatch(r"-?[0-9]+", text):
        raise InvalidQuery(name, f"expected an integer, got {text!r}")
    return int(text)


def _date(text: str, name: str, index: int) -> date:
    if not re.fullmatch(r"[0-9]{8}", text):
        raise InvalidQuery(name, f"expected a date as YYYYMMDD, got {text!r}")
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError as exc:
        raise InvalidQuery(name, f"not a date: {text!r} ({exc})") from None


def _decode_json(text: str, name: str) -> object:
    try:
        return json.loads(text)
    except RecursionError:
        raise InvalidQuery(name, "JSON nested too deeply to read") from None
    except ValueError as exc:
        raise InvalidQuery(name, f"not valid JSON: {exc}") from None


def _event(text: str, name: str, index: int) -> Event:
    try:
        return Event.from_wire(_decode_json(text, name))
    except InvalidQuery as exc:
        if exc.field == name:
            raise
        message = f"{exc.field}: {exc.message}" if exc.field else exc.message
        raise InvalidQuery(name, message) from None


def _segment(text: str, name: str, index: int) -> Segment:
    try:
        return Segment.from_wire(_decode_json(text, name))
    except InvalidQuery as exc:
        where = f"segment {index + 1}" + (f" {exc.field}" if exc.field else "")
        raise InvalidQuery(name, f"{where}: {exc.message}") from None


def _json(text: str, name: str, index: int) -> object:
    return _decode_json(text, name)


TEXT: Final = Codec(str, _text)
INT: Final = Codec(str, _int, tables.to_int)
INTERVAL: Final = Codec(str, _int, tables.to_interval)
DATE: Final = Codec(lambda day: day.strftime("%Y%m%d"), _date, tables.to_date)
EVENT: Final = Codec(lambda event: compact_json(event.to_wire()), _event, tables.to_event)
EVENTS: Final = Codec(EVENT.encode, _event, tables.to_events)
SEGMENTS: Final = Codec(
    lambda segment: compact_json(segment.to_wire()), _segment, tables.to_segments
)
JSON: Final = Codec(compact_json, _json, tables.to_json)


# -- field declarations ---------------------------------------------------------------------


@frozen
class Wire:
    """A field's wire form: its parameter names and codec (attrs metadata under :data:`WIRE`).

    ``names`` holds one name, or one per item of a sequence field (``e``, ``e2``); with
    ``repeated`` every item is sent under the one name (``s``, a funnel's ``e``). A field
    with ``in_path`` is part of the request path, not a parameter (its one name is what errors
    call it); one with no names is not sent at all.
    """

    names: tuple[str, ...]
    codec: Codec
    repeated: bool = False
    in_path: bool = False


def wire(
    *names: str, codec: Codec = TEXT, repeated: bool = False, in_path: bool = False
) -> dict[str, Wire]:
    """attrs field metadata: the field travels as ``names`` (see :class:`Wire`).

    Used as ``field(validator=..., metadata=wire("m"))``, so attrs (and its mypy plugin)
    still see the field's default, validator and converter.
    """
    return {WIRE: Wire(names, codec, repeated, in_path)}


def interval_validator(allowed: tuple[int, ...], *, optional: bool = False) -> Validator:
    """Validate an interval: one of ``allowed`` (or ``None`` when ``optional``)."""

    def validate(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None and optional:
            return
        check_int(value, attribute.name)
        if value not in allowed:
            names = ", ".join(f"{i} ({INTERVAL_NAMES[i]})" for i in allowed)
            raise InvalidQuery(
                attribute.name, f"interval {value!r} not allowed here; expected one of {names}"
            )

    return validate


# -- derived: parameters, parsing, error names, tables --------------------------------------


@functools.cache
def layout(cls: type) -> tuple[tuple[attrs.Attribute[Any], Wire], ...]:
    """``cls``'s init fields with their :class:`Wire`, in declaration order."""
    out = []
    for attribute in attrs.fields(cls):
        spec = attribute.metadata.get(WIRE)
        if attribute.init and spec is not None:
            out.append((attribute, spec))
    return tuple(out)


@functools.cache
def _sent(cls: type) -> tuple[tuple[str, Wire], ...]:
    return tuple((a.name, w) for a, w in layout(cls) if w.names and not w.in_path)


def encode_params(params: Iterable[tuple[str, str]]) -> str:
    """Percent-encode ordered ``(name, value)`` pairs as Amplitude expects (space → ``%20``;
    every reserved character escaped)."""
    return "&".join(f"{quote(name, safe='')}={quote(value, safe='')}" for name, value in params)


def to_params(query: object) -> Params:
    """``query``'s wire parameters, in field order; ``None`` fields are left out."""
    out: list[tuple[str, str]] = []
    cls: Any = type(query)
    for name, spec in _sent(cls):
        value = getattr(query, name)
        if value is None:
            continue
        encode = spec.codec.encode
        if spec.repeated:
            out += [(spec.names[0], encode(item)) for item in value]
        elif len(spec.names) > 1:
            out += [(n, encode(item)) for n, item in zip(spec.names, value, strict=False)]
        else:
            out.append((spec.names[0], encode(value)))
    return tuple(out)


def _read(spec: Wire, params: WireParams, *, required: bool) -> object | None:
    decode = spec.codec.decode
    if spec.repeated:
        name = spec.names[0]
        texts = params.all(name)
        return [decode(text, name, i) for i, text in enumerate(texts)] if texts else None
    if len(spec.names) == 1:
        text = params.get(spec.names[0])
        return None if text is None else decode(text, spec.names[0], 0)
    found = [params.get(name) for name in spec.names]
    if found[0] is None and required:
        return None
    for i in range(1, len(found)):
        if found[i] is not None and found[i - 1] is None:
            raise InvalidQuery(spec.names[i], f"{spec.names[i]} needs {spec.names[i - 1]}")
    values = [
        decode(text, n, i)
        for i, (n, text) in enumerate(zip(spec.names, found, strict=True))
        if text is not None
    ]
    return values or None


def from_params(cls: type, params: WireParams) -> dict[str, object]:
    """Constructor arguments of ``cls`` read from wire parameters (absent ones left out).

    Raises InvalidQuery naming the wire parameter: missing when required, or unreadable.
    """
    kwargs: dict[str, object] = {}
    for attribute, spec in layout(cls):
        if spec.in_path or not spec.names:
            continue
        value = _read(spec, params, required=attribute.default is attrs.NOTHING)
        if value is not None:
            kwargs[attribute.name] = value
        elif attribute.default is attrs.NOTHING:
            raise InvalidQuery(spec.names[0], "missing required parameter")
    return kwargs


@functools.cache
def _error_names(cls: type) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for attribute, spec in layout(cls):
        if not spec.names:
            continue
        pairs.append((attribute.name, spec.names[0]))
        if not spec.repeated:
            pairs += [(f"{attribute.name}[{i}]", n) for i, n in enumerate(spec.names) if i]
    # Longest first, so "events[1]" wins over "events".
    return tuple(sorted(pairs, key=lambda pair: len(pair[0]), reverse=True))


def wire_name(cls: type, exc: InvalidQuery) -> InvalidQuery:
    """Rename a construction error's field to the wire parameter it came from."""
    for name, wire_param in _error_names(cls):
        if exc.field == name or exc.field.startswith((name + ".", name + "[")):
            message = exc.message if exc.field == name else f"{exc.field}: {exc.message}"
            return InvalidQuery(wire_param, message)
    return exc


def from_table(
    cls: type, table: Mapping[str, object], *, prefix: str = "", what: str = ""
) -> dict[str, object]:
    """Constructor arguments of ``cls`` from loose values keyed by field name.

    Raises InvalidQuery naming ``prefix + field`` for an unknown or missing field, or a value
    its codec cannot read.
    """
    fields = {attribute.name: (attribute, wire) for attribute, wire in layout(cls)}
    kwargs: dict[str, object] = {}
    for key, raw in table.items():
        found = fields.get(key)
        if found is None:
            raise InvalidQuery(
                f"{prefix}{key}",
                f"not a field of {what or cls.__name__}; expected one of {', '.join(fields)}",
            )
        kwargs[key] = found[1].codec.loose(raw, f"{prefix}{key}")
    for name, (attribute, _) in fields.items():
        if attribute.default is attrs.NOTHING and name not in kwargs:
            raise InvalidQuery(f"{prefix}{name}", f"required by {what or cls.__name__}")
    return kwargs
