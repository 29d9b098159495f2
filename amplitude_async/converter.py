"""The one cattrs converter between API JSON and :mod:`amplitude_async.results`.

Everything about the wire lives here:

- renaming: camelCase keys (``xValues``, ``seriesCollapsed``, ``cumulativeRaw``) for the chart
  endpoints, snake_case (``user_id``, ``non_active``, ``total_amount``) where the API uses it;
- the envelope: query endpoints wrap their payload in ``data`` and put metadata beside it
  (``timeComputed``, ``wasCached``, ...), kept in
  :class:`~amplitude_async.results.ResponseMetadata`;
- numbers sent as strings (``"12"``, ``"9.98"``) are accepted wherever a number is expected;
  integers stay ``int``;
- strings, booleans and numbers are otherwise strict: a value of the wrong type is an error
  (cattrs would happily turn ``5`` into ``"5"`` or ``"false"`` into ``True``);
- unknown keys are ignored everywhere, except in the user activity payload, where they are
  kept in ``extra`` because the API sends many undocumented fields that callers may want;
  there ``null`` stands for an empty list or object (an unknown user's summary is all nulls);
- a saved chart's ``data`` is CSV text or, for some chart types, JSON series;
- decoding failures become :class:`~amplitude_async.errors.ResponseValidationError` naming the
  offending field by its wire path, e.g. ``data.series[0][3]``; a well-formed body takes the
  fast path of :mod:`amplitude_async.decoders` instead, to the same result.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar, get_origin

import attrs
from cattrs import Converter
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    IterableValidationError,
)
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.v import format_exception

from .cohort_results import Cohort, CohortJob, CohortsListResult
from .decoders import Decoder, Decoders, Payload, without_nulls
from .errors import ResponseValidationError
from .results import (
    ActiveUsersResult,
    AverageSessionLengthResult,
    ChartCSVResult,
    ChartQueryResult,
    CollapsedValue,
    DaySeries,
    EventInfo,
    EventSegmentationResult,
    EventsListResult,
    FunnelGroup,
    FunnelResult,
    Location,
    LTVCell,
    LTVSeries,
    RealtimeActiveUsersResult,
    ResponseMetadata,
    RetentionCell,
    RetentionResult,
    RetentionSeries,
    RevenueLTVResult,
    SegmentMeta,
    SeriesLabel,
    SeriesMeta,
    SeriesResult,
    SessionLengthDistributionResult,
    SessionsPerUserResult,
    UserActivityResult,
    UserCompositionResult,
    UserData,
    UserEvent,
    UserMatch,
    UserSearchResult,
)
from .scalars import WireError, kind
from .scalars import camel as camel_case
from .scalars import register as register_scalars

__all__ = ["converter", "structure_result", "unstructure_result"]

T = TypeVar("T")

#: The converter every part of amplitude_async uses for results.
converter = Converter()

# Attribute name → wire key, per class, so error paths speak the API's language.
# An empty wire key means the attribute has no key of its own (its content is spliced in).
_WIRE_NAMES: dict[type, dict[str, str]] = {}


_StructureFn = Callable[[Mapping[str, Any], Any], Any]
_UnstructureFn = Callable[[Any], dict[str, Any]]
_cls: type


register_scalars(converter)

# The fast path of structure_result: every hook registered below has its decoder registered
# beside it (see decoders.py), so the two always agree on what an answer decodes to.
_decoders = Decoders(converter)


# --- unions ------------------------------------------------------------------------------------


def _structure_series_meta(obj: object, _: object) -> SeriesMeta:
    if isinstance(obj, str):
        return obj
    if isinstance(obj, Mapping):
        return converter.structure(obj, SegmentMeta)
    raise WireError(f"expected a string or an object, got {kind(obj)}")


def _series_meta_decoder() -> Decoder:
    segment_meta = _decoders.get(SegmentMeta)
    return lambda obj: obj if type(obj) is str else segment_meta(obj)


def _label_part(obj: object) -> str | int:
    if isinstance(obj, str):
        return obj
    if isinstance(obj, int) and not isinstance(obj, bool):
        return obj
    raise WireError(f"expected a string or an integer, got {kind(obj)}")


def _structure_series_label(obj: object, _: object) -> SeriesLabel:
    if isinstance(obj, list | tuple):
        return tuple(_label_part(part) for part in obj)
    return _label_part(obj)


_LABEL_PARTS = frozenset({str, int})


def _decode_series_label(obj: Any) -> SeriesLabel:
    if type(obj) is list and _LABEL_PARTS.issuperset(map(type, obj)):
        return tuple(obj)
    return _structure_series_label(obj, None)


def _unstructure_series_label(label: SeriesLabel) -> Any:
    return list(label) if isinstance(label, tuple) else label


_MAX_FLOAT = sys.float_info.max


def _structure_location(obj: object, _: object) -> Location | None:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return converter.structure(obj, Location)
    # "Unknown" is sent as the largest double, usually as the string "1.7976931348623157E308".
    try:
        number = float(obj)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        pass
    else:
        if number >= _MAX_FLOAT:
            return None
    raise WireError(f"expected a location object, got {obj!r}")


converter.register_structure_hook(SeriesMeta, _structure_series_meta)
converter.register_structure_hook(SeriesLabel, _structure_series_label)
converter.register_unstructure_hook(SeriesLabel, _unstructure_series_label)
converter.register_structure_hook(Location | None, _structure_location)
_decoders.register(SeriesMeta, _series_meta_decoder, as_is=frozenset({str}))
_decoders.register(SeriesLabel, lambda: _decode_series_label, as_is=_LABEL_PARTS)
_decoders.register(Location | None, lambda: _decoders.delegate(Location | None))


# --- plain classes -----------------------------------------------------------------------------


def _wire_names(cls: type, *, camel: bool) -> dict[str, str]:
    names = {a.name: camel_case(a.name) if camel else a.name for a in attrs.fields(cls) if a.init}
    _WIRE_NAMES[cls] = names
    return names


def _overrides(
    names: Mapping[str, str], *, omit: tuple[str, ...] = (), omit_none: frozenset[str] = frozenset()
) -> dict[str, Any]:
    result: dict[str, Any] = {
        name: override(
            rename=wire if name != wire else None,
            omit_if_default=True if name in omit_none else None,
        )
        for name, wire in names.items()
        if name != wire or name in omit_none
    }
    for name in omit:
        result[name] = override(omit=True)
    return result


def _none_defaults(cls: type) -> frozenset[str]:
    return frozenset(a.name for a in attrs.fields(cls) if a.init and a.default is None)


def _register_plain(cls: type, *, camel: bool, omit_none: bool = False) -> None:
    """Key-by-key classes; ``omit_none`` leaves optional keys that are ``None`` out of the JSON
    (for objects whose optional keys the API itself leaves out)."""
    names = _wire_names(cls, camel=camel)
    structure_overrides = _overrides(names)
    unstructure_overrides = _overrides(
        names, omit_none=_none_defaults(cls) if omit_none else frozenset()
    )
    converter.register_structure_hook(
        cls, make_dict_structure_fn(cls, converter, **structure_overrides)
    )
    converter.register_unstructure_hook(
        cls, make_dict_unstructure_fn(cls, converter, **unstructure_overrides)
    )
    _decoders.register(cls, lambda: _decoders.plain(cls, names))


def _register_with_extra(cls: type) -> None:
    """Snake_case classes that keep unknown keys in their ``extra`` attribute."""
    names = _wire_names(cls, camel=False)
    known = frozenset(wire for name, wire in names.items() if name != "extra")
    overrides = _overrides(names, omit=("extra",))
    structure_fn: _StructureFn = make_dict_structure_fn(cls, converter, **overrides)
    unstructure_fn: _UnstructureFn = make_dict_unstructure_fn(cls, converter, **overrides)
    # Lists and objects sent as null take their empty default.
    attrs.resolve_types(cls)
    collections = frozenset(
        names[a.name]
        for a in attrs.fields(cls)
        if a.init and a.name != "extra" and get_origin(a.type) in (tuple, Mapping)
    )

    def structure(obj: object, _: object) -> Any:
        mapping = without_nulls(_require_mapping(obj), collections)
        instance = structure_fn(mapping, cls)
        extra = {key: value for key, value in mapping.items() if key not in known}
        return attrs.evolve(instance, extra=extra) if extra else instance

    def unstructure(instance: Any) -> dict[str, Any]:
        return {**instance.extra, **unstructure_fn(instance)}

    converter.register_structure_hook(cls, structure)
    converter.register_unstructure_hook(cls, unstructure)
    fields = {name: wire for name, wire in names.items() if name != "extra"}
    _decoders.register(cls, lambda: _decoders.keeping_extra(cls, fields, known, collections))


def _require_mapping(obj: object) -> Mapping[str, Any]:
    if isinstance(obj, Mapping):
        return obj
    raise WireError(f"expected an object, got {kind(obj)}")


# LTV cells mix fixed keys with an open family of period keys (r1d … r180d, r1new …).
_LTV_PERIOD = re.compile(r"r\d+")
_LTV_FIXED = ("count", "paid", "total_amount")
_WIRE_NAMES[LTVCell] = {"values": ""}
_ltv_cell_fn = make_dict_structure_fn(LTVCell, converter)


def _ltv_shape(mapping: Mapping[str, Any]) -> dict[str, Any]:
    shaped: dict[str, Any] = {
        "values": {key: value for key, value in mapping.items() if _LTV_PERIOD.match(key)}
    }
    shaped.update((key, mapping[key]) for key in _LTV_FIXED if key in mapping)
    return shaped


def _structure_ltv_cell(obj: object, _: object) -> LTVCell:
    return _ltv_cell_fn(_ltv_shape(_require_mapping(obj)), LTVCell)


def _unstructure_ltv_cell(cell: LTVCell) -> dict[str, Any]:
    out: dict[str, Any] = dict(cell.values)
    for key in _LTV_FIXED:
        value = getattr(cell, key)
        if value is not None:
            out[key] = value
    return out


converter.register_structure_hook(LTVCell, _structure_ltv_cell)
converter.register_unstructure_hook(LTVCell, _unstructure_ltv_cell)
_decoders.register(
    LTVCell,
    lambda: _decoders.then(
        _ltv_shape, _decoders.plain(LTVCell, {key: key for key in ("values", *_LTV_FIXED)})
    ),
)


# --- cohorts -----------------------------------------------------------------------------------


def _structure_unix_time(obj: object, _: object) -> datetime | None:
    # The cohort endpoints send Unix seconds (lastComputed is null for a cohort never computed).
    if obj is None:
        return None
    if isinstance(obj, str):
        try:
            obj = float(obj.strip())
        except ValueError:
            raise WireError(f"expected Unix seconds, got {obj!r}") from None
    if isinstance(obj, bool) or not isinstance(obj, int | float) or not math.isfinite(obj):
        raise WireError(f"expected Unix seconds, got {obj!r}")
    try:
        return datetime.fromtimestamp(obj, UTC)
    except (OverflowError, OSError, ValueError):
        raise WireError(f"Unix seconds out of range: {obj!r}") from None


def _unstructure_unix_time(value: datetime | None) -> float | None:
    if value is None:
        return None
    seconds = value.timestamp()
    return int(seconds) if seconds.is_integer() else seconds


def _structure_owners(obj: object, _: object) -> tuple[str, ...]:
    if obj is None:
        return ()
    return converter.structure(obj, tuple[str, ...])


def _register_cohort() -> None:
    names = _wire_names(Cohort, camel=True)
    times = ("created_at", "last_mod", "last_computed")
    structure: dict[str, Any] = {
        name: override(
            rename=wire if name != wire else None,
            struct_hook=_structure_unix_time if name in times else None,
        )
        for name, wire in names.items()
    }
    structure["owners"] = override(struct_hook=_structure_owners)
    unstructure: dict[str, Any] = {
        name: override(
            rename=wire if name != wire else None,
            unstruct_hook=_unstructure_unix_time if name in times else None,
        )
        for name, wire in names.items()
    }
    converter.register_structure_hook(
        Cohort, make_dict_structure_fn(Cohort, converter, **structure)
    )
    converter.register_unstructure_hook(
        Cohort, make_dict_unstructure_fn(Cohort, converter, **unstructure)
    )


_register_cohort()
_register_plain(CohortsListResult, camel=False)
_register_plain(CohortJob, camel=False)


# Generated hooks look up the hooks of nested types when they are made: leaves first.
for _cls in (SegmentMeta, CollapsedValue, RetentionCell):
    _register_plain(_cls, camel=True, omit_none=True)
_plain_segment_meta = converter.get_structure_hook(SegmentMeta)


def _check_segment_meta(meta: SegmentMeta) -> SegmentMeta:
    # Names are looked up by these indexes: a negative one would wrap around to another's.
    if (meta.segment_index or 0) >= 0 and (meta.event_index or 0) >= 0:
        return meta
    for wire, index in (("segmentIndex", meta.segment_index), ("eventIndex", meta.event_index)):
        if index is not None and index < 0:
            raise WireError(f"{wire} must be an index (0 or more), got {index}")
    return meta


def _structure_segment_meta(obj: object, tp: Any) -> SegmentMeta:
    return _check_segment_meta(_plain_segment_meta(obj, tp))


converter.register_structure_hook(SegmentMeta, _structure_segment_meta)
_decoders.register(
    SegmentMeta,
    lambda: _decoders.then(
        _decoders.plain(SegmentMeta, _WIRE_NAMES[SegmentMeta]), _check_segment_meta
    ),
)
for _cls in (DaySeries, FunnelGroup, RetentionSeries):
    _register_plain(_cls, camel=True)
for _cls in (EventInfo, Location, UserMatch, UserSearchResult, LTVSeries):
    _register_plain(_cls, camel=False)
_register_with_extra(UserData)
_register_with_extra(UserEvent)

_UA_NAMES = _wire_names(UserActivityResult, camel=True)
converter.register_structure_hook(
    UserActivityResult,
    make_dict_structure_fn(UserActivityResult, converter, **_overrides(_UA_NAMES)),
)
converter.register_unstructure_hook(
    UserActivityResult,
    make_dict_unstructure_fn(UserActivityResult, converter, **_overrides(_UA_NAMES)),
)
_decoders.register(UserActivityResult, lambda: _decoders.plain(UserActivityResult, _UA_NAMES))


# --- the data envelope -------------------------------------------------------------------------

_META_NAMES = _wire_names(ResponseMetadata, camel=True)
_NO_METADATA = ResponseMetadata()
converter.register_structure_hook(
    ResponseMetadata,
    make_dict_structure_fn(ResponseMetadata, converter, **_overrides(_META_NAMES)),
)
_unstructure_metadata = make_dict_unstructure_fn(
    ResponseMetadata,
    converter,
    **_overrides(_META_NAMES, omit_none=_none_defaults(ResponseMetadata)),
)
converter.register_unstructure_hook(ResponseMetadata, _unstructure_metadata)
_decoders.register(ResponseMetadata, lambda: _decoders.plain(ResponseMetadata, _META_NAMES))
_META_KEYS = frozenset(_META_NAMES.values())


def _note(exc: Exception, key: str, tp: Any) -> Exception:
    exc.add_note(AttributeValidationNote(f"Structuring key {key!r}", key, tp))
    return exc


def _register_envelope(
    cls: type,
    decode: Callable[[Any], Any],
    encode: Callable[[Any], Any],
    payload: Callable[[], Payload] | None = None,
) -> None:
    """``{"data": <payload>, <metadata>...}``; ``decode`` builds the instance from the payload,
    ``payload()`` the fast path's (see decoders.py), taking the metadata too."""

    def structure(body: object, _: object) -> Any:
        mapping = _require_mapping(body)
        errors: list[Exception] = []
        metadata = _NO_METADATA
        instance: Any = None
        try:
            metadata = converter.structure(mapping, ResponseMetadata)
        except Exception as exc:
            errors.append(exc)
        if "data" not in mapping:
            errors.append(_note(KeyError("data"), "data", cls))
        else:
            try:
                instance = decode(mapping["data"])
            except Exception as exc:
                errors.append(_note(exc, "data", cls))
        if errors:
            raise ClassValidationError(f"While structuring {cls.__name__}", errors, cls)
        if metadata != _NO_METADATA:
            instance = attrs.evolve(instance, metadata=metadata)
        return instance

    def unstructure(instance: Any) -> dict[str, Any]:
        return {"data": encode(instance), **_unstructure_metadata(instance.metadata)}

    converter.register_structure_hook(cls, structure)
    converter.register_unstructure_hook(cls, unstructure)
    if payload is not None:
        build = payload
        _decoders.register(cls, lambda: _decoders.envelope(ResponseMetadata, _META_KEYS, build()))


def _register_object_envelope(cls: type, *, camel: bool = True) -> None:
    """The payload is an object holding every attribute but ``metadata``."""
    names = _wire_names(cls, camel=camel)
    overrides = _overrides(names, omit=("metadata",))
    structure_fn: _StructureFn = make_dict_structure_fn(cls, converter, **overrides)
    unstructure_fn: _UnstructureFn = make_dict_unstructure_fn(cls, converter, **overrides)
    fields = {name: wire for name, wire in names.items() if name != "metadata"}
    _register_envelope(
        cls,
        lambda data: structure_fn(_require_mapping(data), cls),
        unstructure_fn,
        lambda: _decoders.object_payload(cls, fields),
    )


def _register_field_envelope(cls: type, name: str) -> None:
    """The payload is the value of one attribute (a list of groups, a CSV string, ...)."""
    attrs.resolve_types(cls)
    tp: Any = attrs.fields_dict(cls)[name].type
    _WIRE_NAMES[cls] = {name: "data"}
    _register_envelope(
        cls,
        lambda data: cls(converter.structure(data, tp)),
        lambda instance: converter.unstructure(getattr(instance, name), tp),
        lambda: _decoders.field_payload(cls, name, tp),
    )


for _cls in (
    SeriesResult,
    ActiveUsersResult,
    SessionLengthDistributionResult,
    AverageSessionLengthResult,
    SessionsPerUserResult,
    UserCompositionResult,
    EventSegmentationResult,
    RealtimeActiveUsersResult,
    ChartQueryResult,
    RetentionResult,
    RevenueLTVResult,
):
    _register_object_envelope(_cls)
_register_field_envelope(EventsListResult, "events")
_register_field_envelope(FunnelResult, "groups")


def _decode_chart_csv(data: object) -> ChartCSVResult:
    if isinstance(data, str):
        return ChartCSVResult(data)
    if isinstance(data, Mapping) and "series" in data:
        series = converter.structure({"data": data}, ChartQueryResult)
        return ChartCSVResult(json.dumps(data, separators=(",", ":")), series=series)
    raise WireError(f"expected CSV text or JSON series, got {kind(data)}")


def _encode_chart_csv(result: ChartCSVResult) -> Any:
    # JSON series were kept as their own text, so they go back exactly as they came.
    return json.loads(result.text) if result.series is not None else result.text


_WIRE_NAMES[ChartCSVResult] = {"text": "data"}
_register_envelope(ChartCSVResult, _decode_chart_csv, _encode_chart_csv)


# --- errors ------------------------------------------------------------------------------------


def _describe(exc: BaseException, tp: Any) -> str:
    if isinstance(exc, WireError):
        return str(exc)
    return format_exception(exc, tp)


def _join(path: str, key: str) -> str:
    if not key:
        return path
    return f"{path}.{key}" if path else key


def _flatten(exc: BaseException, path: str, tp: Any, out: list[tuple[str, str]]) -> None:
    """Walk cattrs' exception groups, collecting ``(wire path, description)`` pairs."""
    if isinstance(exc, IterableValidationError):
        with_index, without = exc.group_exceptions()
        for sub, index_note in with_index:
            _flatten(sub, f"{path}[{index_note.index!r}]", index_note.type, out)
        for sub in without:
            _flatten(sub, path, None, out)
    elif isinstance(exc, ClassValidationError):
        names = _WIRE_NAMES.get(exc.cl, {})
        with_name, without = exc.group_exceptions()
        for sub, name_note in with_name:
            key = names.get(name_note.name, name_note.name)
            _flatten(sub, _join(path, key), name_note.type, out)
        for sub in without:
            _flatten(sub, path, None, out)
    else:
        out.append((path, _describe(exc, tp)))


# --- public API --------------------------------------------------------------------------------


def structure_result(body: Any, cls: type[T], *, path: str = "") -> T:
    """Decode a whole decoded-JSON response ``body`` into ``cls``.

    ``path`` is the request path, used in the error message only.
    Raises :class:`~amplitude_async.errors.ResponseValidationError` naming the first bad field.
    """
    try:
        result: T = _decoders.get(cls)(body)
    except Exception:
        pass  # not a well-formed answer: the converter's careful path below says what is wrong
    else:
        return result
    try:
        return converter.structure(body, cls)
    except Exception as exc:
        problems: list[tuple[str, str]] = []
        _flatten(exc, "", None, problems)
        message = "; ".join(f"{text} at {where or '<root>'}" for where, text in problems)
        field = problems[0][0] if problems else ""
        raise ResponseValidationError(message, path=path, field=field) from exc


def unstructure_result(result: Any) -> Any:
    """Encode a result back into the API's JSON shape (camelCase keys, ``data`` envelope)."""
    return converter.unstructure(result)
