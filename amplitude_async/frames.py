"""Rows as data frames: one column and type definition for pandas, Arrow and polars.

A result's :class:`~amplitude_async.results.Row` objects become the columns ``label``,
``x``, ``value``, ``metric``. Their types are decided here once, for all three libraries:

========  ==========================================================================
column    type
========  ==========================================================================
label     string
x         ``date`` when every x value is a day, ``timestamp`` when every one is a
          ``datetime`` (``timestamp_utc`` when they carry a time zone), ``time`` when
          every one is a clock time, else ``string`` (ISO text for dates and times);
          an empty x value (``""``) is null in a typed column
value     float64, null for an empty cell
metric    string
========  ==========================================================================

:data:`ColumnType` names these types; :func:`arrow_type`, :func:`polars_type` and
:func:`pandas_dtype` spell them for each library, and :mod:`amplitude_async.parquet` writes
them. Each library is imported only by the function that needs it, and a missing one raises
``ImportError`` naming the extra that installs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

from attrs import frozen

if TYPE_CHECKING:
    from .results import Row

__all__ = [
    "FRAME_COLUMNS",
    "Column",
    "ColumnType",
    "arrow_schema",
    "arrow_type",
    "import_optional",
    "pandas_dtype",
    "polars_type",
    "row_columns",
    "to_arrow",
    "to_pandas",
    "to_polars",
]

ColumnType: TypeAlias = Literal[
    "string", "float64", "int64", "bool", "date", "timestamp", "timestamp_utc", "time"
]
"""A column's type, independent of the library: ``timestamp`` has microseconds and no time
zone, ``timestamp_utc`` is in UTC, ``time`` is a clock time in microseconds."""

FRAME_COLUMNS: Final = ("label", "x", "value", "metric")
"""The columns of ``to_pandas()``, ``to_arrow()`` and ``to_polars()``, in order."""

_EXTRAS: Final = {"pandas": "pandas", "pyarrow": "parquet", "polars": "polars"}


@frozen
class Column:
    """A named, typed column; ``nullable=False`` columns never hold a null."""

    name: str
    type: ColumnType
    nullable: bool = True


def import_optional(module: str, what: str) -> ModuleType:
    """Import the optional dependency ``module`` for ``what`` (e.g. ``"to_arrow()"``).

    Raises ``ImportError`` naming the extra that installs it.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        package = module.partition(".")[0]
        extra = _EXTRAS.get(package, package)
        raise ImportError(
            f"{what} needs {package}: pip install 'amplitude-async[{extra}]'"
        ) from None


# -- the columns of a result's rows -----------------------------------------------------------


def _x_type(values: Sequence[object]) -> ColumnType:
    present = [v for v in values if v != ""]
    if not present:
        return "string"
    if all(isinstance(v, datetime) for v in present):
        aware = {v.tzinfo is not None for v in present if isinstance(v, datetime)}
        if aware == {False}:
            return "timestamp"
        if aware == {True}:
            return "timestamp_utc"
        return "string"
    if all(isinstance(v, date) and not isinstance(v, datetime) for v in present):
        return "date"
    if all(isinstance(v, time) for v in present):
        return "time"
    return "string"


def _x_text(value: object) -> str:
    return value.isoformat() if isinstance(value, date | time) else str(value)


def _x_cell(value: object, kind: ColumnType) -> object:
    if kind == "string":
        return _x_text(value)
    if value == "":
        return None
    if kind == "timestamp_utc" and isinstance(value, datetime):
        return value.astimezone(UTC)
    return value


def row_columns(rows: Iterable[Row]) -> tuple[tuple[Column, ...], dict[str, list[Any]]]:
    """The columns of ``rows`` (:data:`FRAME_COLUMNS` with their types) and their values.

    Values are plain Python objects already of the column's type: ``value`` is a ``float`` or
    ``None``, ``x`` a ``date``/``datetime``/``time`` (``None`` where empty) or text.
    """
    rows = tuple(rows)
    xs = [r.x_value for r in rows]
    kind = _x_type(xs)
    columns = (
        Column("label", "string", nullable=False),
        Column("x", kind, nullable=kind != "string"),
        Column("value", "float64"),
        Column("metric", "string", nullable=False),
    )
    data: dict[str, list[Any]] = {
        "label": [r.label for r in rows],
        "x": [_x_cell(x, kind) for x in xs],
        "value": [None if r.value is None else float(r.value) for r in rows],
        "metric": [r.metric for r in rows],
    }
    return columns, data


# -- each library's spelling of the types ---------------------------------------------------------


def arrow_type(kind: ColumnType) -> Any:
    """The ``pyarrow.DataType`` of ``kind`` (imports pyarrow)."""
    pa = import_optional("pyarrow", "Arrow output")
    types = {
        "string": pa.string,
        "float64": pa.float64,
        "int64": pa.int64,
        "bool": pa.bool_,
        "date": pa.date32,
        "timestamp": lambda: pa.timestamp("us"),
        "timestamp_utc": lambda: pa.timestamp("us", tz="UTC"),
        "time": lambda: pa.time64("us"),
    }
    return types[kind]()


def arrow_schema(columns: Sequence[Column], metadata: Mapping[str, str] | None = None) -> Any:
    """The ``pyarrow.Schema`` of ``columns`` (imports pyarrow)."""
    pa = import_optional("pyarrow", "Arrow output")
    return pa.schema(
        [pa.field(c.name, arrow_type(c.type), nullable=c.nullable) for c in columns],
        metadata=dict(metadata) if metadata else None,
    )


def polars_type(kind: ColumnType) -> Any:
    """The polars data type of ``kind`` (imports polars)."""
    pl = import_optional("polars", "to_polars()")
    types = {
        "string": pl.String,
        "float64": pl.Float64,
        "int64": pl.Int64,
        "bool": pl.Boolean,
        "date": pl.Date,
        "timestamp": pl.Datetime("us"),
        "timestamp_utc": pl.Datetime("us", time_zone="UTC"),
        "time": pl.Time,
    }
    return types[kind]


def pandas_dtype(kind: ColumnType) -> str:
    """The pandas dtype of ``kind``: what ``pyarrow.Table.to_pandas()`` gives for its Arrow
    type (days and clock times stay Python objects; ``str`` is pandas' default text type)."""
    return {
        "string": "str",
        "float64": "float64",
        "int64": "int64",
        "bool": "bool",
        "date": "object",
        "timestamp": "datetime64[us]",
        "timestamp_utc": "datetime64[us, UTC]",
        "time": "object",
    }[kind]


# -- the frames --------------------------------------------------------------------------------


def to_pandas(rows: Iterable[Row]) -> Any:
    """``rows`` as a ``pandas.DataFrame`` with the columns of :func:`row_columns`."""
    pandas = import_optional("pandas", "to_pandas()")
    columns, data = row_columns(rows)
    return pandas.DataFrame(
        {c.name: pandas.Series(data[c.name], dtype=pandas_dtype(c.type)) for c in columns}
    )


def to_arrow(rows: Iterable[Row]) -> Any:
    """``rows`` as a ``pyarrow.Table`` with the columns of :func:`row_columns`."""
    pa = import_optional("pyarrow", "to_arrow()")
    columns, data = row_columns(rows)
    schema = arrow_schema(columns)
    arrays = [pa.array(data[c.name], type=f.type) for c, f in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


def to_polars(rows: Iterable[Row]) -> Any:
    """``rows`` as a ``polars.DataFrame`` with the columns of :func:`row_columns` (built from
    Python values: pyarrow is not needed)."""
    pl = import_optional("polars", "to_polars()")
    columns, data = row_columns(rows)
    return pl.DataFrame(
        {c.name: data[c.name] for c in columns},
        schema={c.name: polars_type(c.type) for c in columns},
    )
