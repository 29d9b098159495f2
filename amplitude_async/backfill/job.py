"""Backfill job files (TOML) and the table-to-query structuring they share with the CLI.

A job file::

    start = 2026-09-01          # the date range of every dated query (TOML dates or "YYYYMMDD")
    end = 2026-11-29
    chunk_days = 7              # days per request; rounded up to whole weeks/months if needed
    output = "backfill-out"     # relative to the job file
    formats = ["jsonl", "csv"]  # tidy rows: query, label, date, metric, value; "parquet"
                                # too (typed columns, needs amplitude-async[parquet])

    [[queries]]
    name = "purchases"                  # unique; names the rows and the checkpoints
    endpoint = "event_segmentation"     # a key of amplitude_async.queries.ENDPOINTS
    events = ["Purchase"]               # the query class's own fields from here on
    metric = "totals"
    group_by = ["country"]

    source = "emulator"         # optional: always run against the built-in emulator
                                # (default "amplitude": the API, with credentials)

    [emulator]                  # optional: the data the emulator serves (source or --emulator)
    seed = 1
    users = 1000
    time_scale = 0.001          # limits' windows scaled by this (a fast clock)

Field values follow the query classes (:mod:`amplitude_async.queries`): an event is a string
or a table ``{event_type, filters = [{key, op, values, type}], group_by = [...]}``; ``segments``
is a list of segments, each a list of condition tables (``{prop, op, values}``,
``{cohort_id}`` or ``{event_type, op, value, time_type, time_value, filters}``); intervals
are numbers or ``"daily"``, ``"weekly"``, ``"monthly"``, ``"hourly"``, ``"realtime"``. A query
may state its own ``start``/``end``. Strings are accepted for numbers and dates too, which is
how the CLI passes ``--param value`` pairs. ``"parquet"`` needs pyarrow: without it the job
is refused when it is read, before anything is sent.

Limits: a job spans at most :data:`MAX_RANGE_DAYS` days and its plan at most
:data:`~.plan.MAX_CHUNKS` chunks; the emulator's dataset at most :data:`MAX_EMULATOR_USERS`
users over :data:`MAX_EMULATOR_DAYS` days.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any, Final, Literal

from attrs import field, frozen

from ..errors import ConfigurationError, InvalidQuery
from ..frames import import_optional
from ..parquet import PARQUET_EXTRA
from ..queries import (
    ENDPOINTS,
    ChartCSV,
    DatedQuery,
    Query,
    UserActivity,
    UserSearch,
    build_query,
    build_query_over,
)
from ..queries.tables import to_date as _date
from ..queries.tables import to_int as _int
from ..queries.tables import to_list as _list
from ..queries.tables import to_table as _table

__all__ = [
    "DEFAULT_FORMATS",
    "FORMATS",
    "MAX_EMULATOR_DAYS",
    "MAX_EMULATOR_USERS",
    "MAX_RANGE_DAYS",
    "SOURCES",
    "EmulatorSettings",
    "Job",
    "JobQuery",
    "build_query",
    "load_job",
    "parse_job",
]

FORMATS: Final = ("jsonl", "csv", "parquet")
"""Output formats a job may ask for."""

DEFAULT_FORMATS: Final = ("jsonl", "csv")
"""The formats of a job that names none (they need no optional dependency)."""

SOURCES: Final = ("amplitude", "emulator")
"""Where a job's rows come from: the API (with credentials) or the built-in emulator."""

MAX_RANGE_DAYS: Final = 7305
"""The longest date range a job (or one of its queries) may span: 20 years."""

MAX_EMULATOR_USERS: Final = 1_000_000
"""The most users the emulator's synthetic dataset may have."""

MAX_EMULATOR_DAYS: Final = 3660
"""The most days the emulator's synthetic dataset may span."""

_UNTABULAR: Final = (UserActivity, UserSearch, ChartCSV)
_JOB_KEYS: Final = (
    "start",
    "end",
    "chunk_days",
    "output",
    "formats",
    "priority",
    "source",
    "queries",
)
_EMULATOR_KEYS: Final = ("seed", "users", "start", "days", "time_scale")


@frozen
class JobQuery:
    """One named query of a job."""

    name: str
    query: Query[Any]
    span: tuple[date, date] | None = None
    """The dates to backfill (``None`` for queries without dates); when longer than one
    request may cover, ``query`` covers only their first part."""


def _check_seed(_instance: object, _attribute: object, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidQuery("emulator.seed", f"expected an integer, got {value!r}")


def _check_users(_instance: object, _attribute: object, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidQuery("emulator.users", f"expected a positive integer, got {value!r}")
    if value > MAX_EMULATOR_USERS:
        raise InvalidQuery("emulator.users", f"at most {MAX_EMULATOR_USERS}, got {value}")


def _check_days(_instance: object, _attribute: object, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidQuery("emulator.days", f"expected a positive integer, got {value!r}")
    if value > MAX_EMULATOR_DAYS:
        raise InvalidQuery("emulator.days", f"at most {MAX_EMULATOR_DAYS}, got {value}")


def _check_scale(_instance: object, _attribute: object, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidQuery(
            "emulator.time_scale", f"expected a positive finite number, got {value!r}"
        )


@frozen
class EmulatorSettings:
    """What the built-in emulator serves when a job runs with ``--emulator``.

    ``start``/``days`` default to the job's range; ``time_scale`` multiplies the limits'
    windows (0.001: a 300 s window lasts 0.3 s).
    """

    seed: int = field(default=1, validator=_check_seed)
    users: int = field(default=1000, validator=_check_users)
    start: date | None = None
    days: int | None = field(default=None, validator=_check_days)
    time_scale: float = field(default=0.001, validator=_check_scale)


@frozen
class Job:
    """A parsed backfill job (see the module docstring)."""

    queries: tuple[JobQuery, ...]
    start: date
    end: date
    chunk_days: int
    output: Path
    formats: tuple[str, ...] = DEFAULT_FORMATS
    priority: int = 0
    emulator: EmulatorSettings = field(factory=EmulatorSettings)
    source: Path | None = None
    data_source: Literal["amplitude", "emulator"] = "amplitude"


# -- job files ------------------------------------------------------------------------------


def _positive_int(value: object, name: str) -> int:
    value = _int(value, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidQuery(name, f"expected a positive integer, got {value!r}")
    return value


def _emulator(value: object) -> EmulatorSettings:
    table = dict(_table(value, "emulator"))
    for key in table:
        if key not in _EMULATOR_KEYS:
            raise InvalidQuery(
                f"emulator.{key}", f"unknown key; expected one of {', '.join(_EMULATOR_KEYS)}"
            )
    kwargs: dict[str, Any] = {}
    for key in ("seed", "users", "days"):
        if key in table:
            kwargs[key] = _int(table[key], f"emulator.{key}")
    if "start" in table:
        kwargs["start"] = _date(table["start"], "emulator.start")
    if "time_scale" in table:
        scale = table["time_scale"]
        kwargs["time_scale"] = float(scale) if type(scale) is int else scale
    return EmulatorSettings(**kwargs)


def parse_job(
    data: Mapping[str, object], *, base: Path = Path(), source: Path | None = None
) -> Job:
    """Build a :class:`Job` from a decoded TOML document; relative paths are under ``base``."""
    for key in data:
        if key not in (*_JOB_KEYS, "emulator"):
            raise InvalidQuery(key, f"unknown key; expected one of {', '.join(_JOB_KEYS)}")
    if "start" not in data or "end" not in data:
        raise InvalidQuery("start" if "start" not in data else "end", "the job needs a date range")
    start, end = _date(data["start"], "start"), _date(data["end"], "end")
    if end < start:
        raise InvalidQuery("end", f"end {end} is before start {start}")
    _check_span(start, end, "end")
    chunk_days = _positive_int(data.get("chunk_days", 30), "chunk_days")
    output = data.get("output", "backfill-output")
    if not isinstance(output, str) or not output:
        raise InvalidQuery("output", "expected a directory path")
    formats_raw = data.get("formats", list(DEFAULT_FORMATS))
    formats = [formats_raw] if isinstance(formats_raw, str) else _list(formats_raw, "formats")
    for i, fmt in enumerate(formats):
        if fmt not in FORMATS:
            raise InvalidQuery(
                f"formats[{i}]", f"unknown format {fmt!r}; expected {', '.join(FORMATS)}"
            )
        if fmt == "parquet":
            _check_parquet(f"formats[{i}]")
    if not formats:
        raise InvalidQuery("formats", "name at least one format")
    priority = _int(data.get("priority", 0), "priority")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidQuery("priority", f"expected an integer, got {priority!r}")
    raw_queries = data.get("queries")
    if raw_queries is None:
        raise InvalidQuery("queries", "the job names no queries (add [[queries]] tables)")
    queries: list[JobQuery] = []
    seen: set[str] = set()
    for i, raw in enumerate(_list(raw_queries, "queries")):
        queries.append(_job_query(_table(raw, f"queries[{i}]"), i, start, end, seen))
    if not queries:
        raise InvalidQuery("queries", "the job names no queries")
    emulator = _emulator(data["emulator"]) if "emulator" in data else EmulatorSettings()
    raw_source = data.get("source", "amplitude")
    if raw_source not in SOURCES:
        raise InvalidQuery("source", f"expected one of {', '.join(SOURCES)}, got {raw_source!r}")
    data_source: Literal["amplitude", "emulator"] = (
        "emulator" if raw_source == "emulator" else "amplitude"
    )
    return Job(
        queries=tuple(queries),
        start=start,
        end=end,
        chunk_days=chunk_days,
        output=(base / output),
        formats=tuple(str(f) for f in dict.fromkeys(formats)),
        priority=priority,
        emulator=emulator,
        source=source,
        data_source=data_source,
    )


def _check_parquet(name: str) -> None:
    """Refuse Parquet output now, before anything is sent, if pyarrow cannot be imported."""
    try:
        import_optional("pyarrow.parquet", "Parquet output")
    except ImportError:
        raise ConfigurationError(
            name,
            f"Parquet output needs pyarrow, which is not installed: pip install '{PARQUET_EXTRA}'",
        ) from None


def _check_span(start: date, end: date, name: str) -> None:
    days = (end - start).days + 1
    if days > MAX_RANGE_DAYS:
        raise InvalidQuery(
            name,
            f"{start}..{end} spans {days} days; a backfill covers at most {MAX_RANGE_DAYS} "
            "(20 years)",
        )


def _job_query(
    table: Mapping[str, object], index: int, start: date, end: date, seen: set[str]
) -> JobQuery:
    where = f"queries[{index}]"
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidQuery(f"{where}.name", "each query needs a name")
    if name in seen:
        raise InvalidQuery(f"{where}.name", f"the name {name!r} is used twice")
    seen.add(name)
    endpoint = table.get("endpoint")
    if not isinstance(endpoint, str):
        raise InvalidQuery(f"{where}.endpoint", f"expected one of {', '.join(ENDPOINTS)}")
    fields = {k: v for k, v in table.items() if k not in ("name", "endpoint")}
    cls = ENDPOINTS.get(endpoint)
    if cls is not None and issubclass(cls, DatedQuery):
        fields.setdefault("start", start)
        fields.setdefault("end", end)
    if cls is not None and issubclass(cls, _UNTABULAR):
        raise InvalidQuery(
            f"{where}.endpoint", f"{endpoint} results have no tabular form for a backfill"
        )
    label = f'queries[{index}] "{name}"'
    query, span = build_query_over(endpoint, fields, name=label)
    if span is not None:
        _check_span(*span, f"{label}.end")
    return JobQuery(name, query, span)


def load_job(path: str | Path) -> Job:
    """Read and parse a job file; relative output paths are taken from the file's directory."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidQuery("job", f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InvalidQuery("job", f"{path} is not a text file (not UTF-8)") from None
    data = parse_toml(text, str(path))
    return parse_job(data, base=path.parent, source=path)


def parse_toml(text: str, what: str, field: str = "job") -> dict[str, Any]:
    """Decode TOML ``text`` (from ``what``); errors, including nesting too deep to decode, are
    :class:`InvalidQuery` naming ``field``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidQuery(field, f"{what} is not valid TOML: {exc}") from None
    except RecursionError:
        raise InvalidQuery(field, f"{what} is nested too deeply to read") from None


def parse_json(text: str, what: str) -> object:
    """Decode JSON ``text``; errors (syntax, nesting too deep to decode) name ``what``."""
    try:
        return json.loads(text)
    except RecursionError:
        raise InvalidQuery(what, "nested too deeply to read") from None
    except ValueError as exc:
        raise InvalidQuery(what, f"not valid JSON: {exc}") from None
