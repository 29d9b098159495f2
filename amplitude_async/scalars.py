"""Strict hooks for the wire's scalars and arrays: what the API may send for a string, a bool,
an integer, a number, a date, a datetime and a list, and nothing else (a string is no list, a
float with a fraction is no integer, NaN is no number). Registered on the converter by
:func:`register`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, get_args, get_origin

from cattrs import BaseConverter, Converter
from cattrs.cols import homogenous_tuple_structure_factory

__all__ = ["WireError", "camel", "kind", "register"]


class WireError(ValueError):
    """A value of the wrong shape, with a message meant for people."""


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def kind(obj: object) -> str:
    return "null" if obj is None else type(obj).__name__


# --- scalars -----------------------------------------------------------------------------------

_INT_TEXT = re.compile(r"[+-]?\d+")


def _structure_str(obj: object, _: object) -> str:
    if isinstance(obj, str):
        return obj
    raise WireError(f"expected a string, got {kind(obj)}")


def _structure_bool(obj: object, _: object) -> bool:
    if isinstance(obj, bool):
        return obj
    if obj in ("true", "false"):
        return obj == "true"
    raise WireError(f"expected a boolean, got {kind(obj)}")


def _structure_int(obj: object, _: object) -> int:
    if isinstance(obj, bool):
        raise WireError("expected an integer, got bool")
    if isinstance(obj, int):
        return obj
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)
    if isinstance(obj, str):
        text = obj.strip()
        if _INT_TEXT.fullmatch(text):
            return int(text)
        try:
            number = float(text)
        except ValueError:
            pass
        else:
            if number.is_integer():
                return int(number)
    raise WireError(f"expected an integer, got {obj!r}")


def _structure_number(obj: object, _: object) -> float:
    # Integers are returned as int on purpose: counts stay counts, and int is a float for typing.
    if isinstance(obj, bool):
        raise WireError("expected a number, got bool")
    if isinstance(obj, int | float):
        return obj
    if isinstance(obj, str):
        text = obj.strip()
        if _INT_TEXT.fullmatch(text):
            return int(text)
        try:
            return float(text)
        except ValueError:
            pass
    raise WireError(f"expected a number, got {obj!r}")


def _structure_date(obj: object, _: object) -> date:
    if isinstance(obj, str):
        try:
            return date.fromisoformat(obj)
        except ValueError:
            try:
                return datetime.fromisoformat(obj).date()
            except ValueError:
                pass
    raise WireError(f"expected a date like 2015-03-14, got {obj!r}")


def _structure_datetime(obj: object, _: object) -> datetime:
    if isinstance(obj, str):
        try:
            return datetime.fromisoformat(obj)
        except ValueError:
            pass
    raise WireError(f"expected a timestamp like 2015-04-22 10:00:00.000000, got {obj!r}")


def _unstructure_datetime(value: datetime) -> str:
    # The API's own form: a space separator and always six fractional digits.
    return value.isoformat(sep=" ", timespec="microseconds")


def _unstructure_date(value: date) -> str:
    return value.isoformat()


def _is_homogeneous_tuple(tp: Any) -> bool:
    args = get_args(tp)
    return get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis


def _strict_tuple_factory(tp: Any, conv: BaseConverter) -> Callable[[object, object], Any]:
    # cattrs turns any iterable into a tuple: a string into its characters, an object into its
    # keys. Only JSON arrays are sequences here.
    inner = homogenous_tuple_structure_factory(tp, conv)

    def structure(obj: object, _: object) -> Any:
        if isinstance(obj, list | tuple):
            return inner(obj, tp)
        raise WireError(f"expected a list, got {kind(obj)}")

    return structure


def register(converter: Converter) -> None:
    """Install the scalar and array hooks on ``converter``."""
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(float, _structure_number)
    converter.register_structure_hook(date, _structure_date)
    converter.register_structure_hook(datetime, _structure_datetime)
    converter.register_unstructure_hook(date, _unstructure_date)
    converter.register_unstructure_hook(datetime, _unstructure_datetime)
    converter.register_structure_hook_factory(_is_homogeneous_tuple, _strict_tuple_factory)
