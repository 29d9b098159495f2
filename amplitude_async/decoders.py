"""The fast path of :func:`~amplitude_async.converter.structure_result`.

A *decoder* turns decoded JSON into one type, as the converter's hook for that type does, but
accepts only what a JSON parser produces (``dict``, ``list``, exact ``str``/``int``/``float``/
``bool``/``None``) and never says what is wrong: it returns exactly what the converter would
return, or raises. ``structure_result`` then decodes the same body again with the converter,
whose careful path names the bad field. Which answers are accepted, what they decode to and
every error message stay the converter's; only the time taken changes.

What makes it cheaper:

- a type may have JSON types it keeps *as is* (a number for ``float``, a string or an integer
  for a series label, ``None`` for anything optional): a value of one of them is taken without
  a call, and an array, an array of arrays (a series table) or an object's values are checked
  by one pass of ``type`` over them, in C, then copied; anything else goes to the type's
  decoder, and for a scalar that is the converter's own hook (so a number sent as a string
  still decodes);
- an object is read by straight-line code generated per class, as cattrs generates it, minus
  exception notes and error lists, and built with positional arguments.

Types with hooks of their own in :mod:`amplitude_async.converter` register their decoders here
(:meth:`Decoders.register`); any other type without a structural rule below is decoded by its
converter hook (:meth:`Decoders.delegate`): correct, only not faster.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping, Set
from itertools import chain
from typing import Any, Union, get_args, get_origin

import attrs
from cattrs import Converter

__all__ = ["Decoder", "Decoders", "NotJSON", "Payload", "without_nulls"]

#: Decoded JSON in, a value of the decoder's type out (or any exception).
Decoder = Callable[[Any], Any]
#: An envelope's ``data`` and its metadata (``None`` when the body has none) in, a result out.
Payload = Callable[[Any, Any], Any]

# What the converter's scalar hooks return unchanged.
_SCALARS: dict[Any, frozenset[type]] = {
    str: frozenset({str}),
    int: frozenset({int}),
    float: frozenset({int, float}),
    bool: frozenset({bool}),
}
_NONE = frozenset({type(None)})
_KEYS = frozenset({str})
_LISTS = frozenset({list})
_MISSING = object()


class NotJSON(TypeError):
    """A value no JSON parser produces where a container was expected: left to the converter."""


class Decoders:
    """Decoders per type, built on first use and kept."""

    def __init__(self, converter: Converter) -> None:
        self._converter = converter
        self._built: dict[Any, Decoder] = {}
        self._builders: dict[Any, Callable[[], Decoder]] = {}
        self._as_is: dict[Any, frozenset[type]] = dict(_SCALARS)

    def register(
        self, tp: Any, build: Callable[[], Decoder], *, as_is: frozenset[type] = frozenset()
    ) -> None:
        """Decode ``tp`` with what ``build()`` returns; it is called on first use, when the
        decoders of the types it holds can be looked up whatever the order of registration.
        ``as_is``: JSON types that ``tp``'s hook returns unchanged."""
        self._builders[tp] = build
        self._built.pop(tp, None)
        if as_is:
            self._as_is[tp] = as_is
        else:
            self._as_is.pop(tp, None)

    def get(self, tp: Any) -> Decoder:
        """The decoder of ``tp``."""
        decoder = self._built.get(tp)
        if decoder is None:
            decoder = self._built[tp] = self._build(tp)
        return decoder

    def as_is(self, tp: Any) -> frozenset[type]:
        """The JSON types that decode to themselves as ``tp`` (none for most types)."""
        kept = self._as_is.get(tp)
        if kept is None:
            inner = _optional_of(tp)
            kept = self._as_is[tp] = _NONE | self.as_is(inner) if inner is not None else frozenset()
        return kept

    def delegate(self, tp: Any) -> Decoder:
        """A decoder that is the converter's hook for ``tp``."""
        hook = self._converter.get_structure_hook(tp)

        def decode(obj: Any) -> Any:
            return hook(obj, tp)

        return decode

    def plain(self, cls: type, names: Mapping[str, str]) -> Decoder:
        """A decoder of ``cls`` from a JSON object holding its attributes under ``names``
        (attribute → wire key); an attribute not in ``names`` takes its default, a missing key
        without a default raises, unknown keys are ignored, as in cattrs' generated hooks."""
        return self._generate(cls, names)

    def _generate(
        self, cls: type, names: Mapping[str, str], given: tuple[str, ...] = ()
    ) -> Callable[..., Any]:
        """``plain``'s decoder, taking the attributes named in ``given`` as further arguments.

        One function per class, one argument expression per attribute, ``cls`` called with
        positional arguments; for ``CollapsedValue``::

            def decode(obj):
                if type(obj) is not dict: raise NotJSON
                return cls(
                    (v if type(v := obj['value']) in as_is0 else decode0(v)),
                    (default1 if (v := obj.get('setId', MISSING)) is MISSING
                     else v if type(v) in as_is1 else decode1(v)),
                )

        A loop over the attributes, or keyword arguments, would cost about as much again on
        small objects (retention cells, collapsed values), read by the thousand in a large
        answer. A default is the attribute's own object (or its factory's new one), as
        ``__init__`` would take it.
        """
        attrs.resolve_types(cls)
        scope: dict[str, Any] = {"cls": cls, "NotJSON": NotJSON, "MISSING": _MISSING}
        arguments: list[str] = []
        for n, field in enumerate(a for a in attrs.fields(cls) if a.init):
            default = field.default
            if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                if default.takes_self:
                    raise TypeError(f"{cls.__name__}.{field.name}: a factory taking self")
                scope[f"factory{n}"], fallback = default.factory, f"factory{n}()"
            else:
                scope[f"default{n}"], fallback = default, f"default{n}"
            if field.name in given:
                value = field.name
            elif field.name not in names:
                value = fallback
            else:
                scope[f"decode{n}"], as_is = self.get(field.type), self.as_is(field.type)
                scope[f"as_is{n}"] = as_is
                key = repr(names[field.name])
                if default is attrs.NOTHING and as_is:
                    value = f"(v if type(v := obj[{key}]) in as_is{n} else decode{n}(v))"
                elif default is attrs.NOTHING:
                    value = f"decode{n}(obj[{key}])"
                else:
                    decoded = (
                        f"v if type(v) in as_is{n} else decode{n}(v)" if as_is else f"decode{n}(v)"
                    )
                    value = (
                        f"({fallback} if (v := obj.get({key}, MISSING)) is MISSING else {decoded})"
                    )
            arguments.append(f"{field.alias}={value}" if field.kw_only else value)
        lines = [
            f"def decode({', '.join(('obj', *given))}):",
            "    if type(obj) is not dict: raise NotJSON",
            f"    return cls({', '.join(arguments)})",
        ]
        # The source is built here from the class's attributes; no text from outside goes in.
        exec("\n".join(lines), scope)
        decode: Callable[..., Any] = scope["decode"]
        return decode

    def then(self, first: Decoder, second: Callable[[Any], Any]) -> Decoder:
        """``second`` applied to what ``first`` returns (a reshaping, then a decoder; a decoder,
        then a check that returns the value or raises)."""
        return lambda obj: second(first(obj))

    def keeping_extra(
        self, cls: type, names: Mapping[str, str], known: Set[str], collections: Set[str]
    ) -> Decoder:
        """A decoder of ``cls`` that keeps keys not in ``known`` in its ``extra`` attribute and
        takes ``null`` under a key of ``collections`` for an absent key."""
        build = self._generate(cls, names, given=("extra",))

        def decode(obj: Any) -> Any:
            mapping = without_nulls(require_dict(obj), collections)
            return build(
                mapping, {key: value for key, value in mapping.items() if key not in known}
            )

        return decode

    def envelope(self, metadata: type, keys: Set[str], payload: Payload) -> Decoder:
        """``{"data": ..., <metadata keys>...}``: ``metadata`` is decoded only when one of its
        ``keys`` is there; ``payload`` builds the result from both."""
        decode_metadata = self.get(metadata)

        def decode(obj: Any) -> Any:
            body = require_dict(obj)
            found = None if keys.isdisjoint(body) else decode_metadata(body)
            return payload(body["data"], found)

        return decode

    def object_payload(self, cls: type, names: Mapping[str, str]) -> Payload:
        """An envelope whose ``data`` is an object holding ``cls``'s attributes (``names``)."""
        build = self._generate(cls, names, given=("metadata",))
        default = attrs.fields_dict(cls)["metadata"].default
        return lambda data, metadata: build(data, default if metadata is None else metadata)

    def field_payload(self, cls: type, name: str, tp: Any) -> Payload:
        """An envelope whose ``data`` is the value of ``cls``'s attribute ``name`` (type ``tp``)."""
        decode_value = self.get(tp)

        def decode(data: Any, metadata: Any) -> Any:
            arguments = {name: decode_value(data)}
            if metadata is not None:
                arguments["metadata"] = metadata
            return cls(**arguments)

        return decode

    # --- structural rules ----------------------------------------------------------------------

    def _build(self, tp: Any) -> Decoder:
        build = self._builders.get(tp)
        if build is not None:
            return build()
        item = _homogeneous_item(tp)
        if item is not None:
            return self._tuple(item)
        origin, args = get_origin(tp), get_args(tp)
        if origin is Mapping and len(args) == 2 and args[0] is str:
            return self._mapping(args[1])
        inner = _optional_of(tp)
        if inner is not None:
            decode_inner = self.get(inner)
            return lambda obj: None if obj is None else decode_inner(obj)
        return self.delegate(tp)

    def _tuple(self, item: Any) -> Decoder:
        decode_item, as_is = self.get(item), self.as_is(item)
        row = _homogeneous_item(item)
        cells = self.as_is(row) if row is not None else frozenset()
        if cells:

            def decode_table(obj: Any) -> tuple[Any, ...]:
                # A table of numbers (series, per-day funnels) is checked and copied in C.
                if type(obj) is not list:
                    raise NotJSON
                if _LISTS.issuperset(map(type, obj)) and cells.issuperset(
                    map(type, chain.from_iterable(obj))
                ):
                    return tuple(map(tuple, obj))
                return tuple(map(decode_item, obj))

            return decode_table
        if as_is:

            def decode_kept(obj: Any) -> tuple[Any, ...]:
                if type(obj) is not list:
                    raise NotJSON
                if as_is.issuperset(map(type, obj)):
                    return tuple(obj)
                return tuple([x if type(x) in as_is else decode_item(x) for x in obj])

            return decode_kept

        def decode(obj: Any) -> tuple[Any, ...]:
            if type(obj) is not list:
                raise NotJSON
            return tuple(map(decode_item, obj))

        return decode

    def _mapping(self, value: Any) -> Decoder:
        decode_value, as_is = self.get(value), self.as_is(value)
        keep_all = value is Any  # the converter keeps a value typed Any as it is

        def decode(obj: Any) -> dict[str, Any]:
            if type(obj) is not dict or not _KEYS.issuperset(map(type, obj)):
                raise NotJSON
            if keep_all or as_is.issuperset(map(type, obj.values())):
                return dict(obj)
            return {key: decode_value(item) for key, item in obj.items()}

        return decode


def _homogeneous_item(tp: Any) -> Any:
    """``X`` of ``tuple[X, ...]``, else ``None``."""
    args = get_args(tp)
    if get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return None


def _optional_of(tp: Any) -> Any:
    """``X`` of ``X | None``, else ``None``."""
    args = get_args(tp)
    if get_origin(tp) in (Union, types.UnionType) and len(args) == 2 and type(None) in args:
        return args[0] if args[1] is type(None) else args[1]
    return None


def without_nulls(mapping: Mapping[str, Any], keys: Set[str]) -> Mapping[str, Any]:
    """``mapping`` without the ``keys`` whose value is ``None``."""
    # A missing key reads as None here too: then the copy below just drops nothing.
    if None in map(mapping.get, keys):
        return {k: v for k, v in mapping.items() if not (v is None and k in keys)}
    return mapping


def require_dict(obj: Any) -> dict[str, Any]:
    """``obj`` if it is a JSON object, else :class:`NotJSON`."""
    if type(obj) is not dict:
        raise NotJSON
    return obj
