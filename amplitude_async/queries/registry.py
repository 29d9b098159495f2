"""Every endpoint by name and by path; queries rebuilt from the wire or from a table of fields."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any, Final

from ..errors import InvalidQuery
from . import fields
from .base import DatedQuery, Query
from .charts import ChartCSV, ChartQuery
from .cohorts import CohortsList
from .events import EventSegmentation, EventsList, Funnel, Retention
from .revenue import RevenueLTV
from .sessions import AverageSessionLength, SessionLengthDistribution, SessionsPerUser
from .tables import to_date
from .users import ActiveUsers, RealtimeActiveUsers, UserActivity, UserComposition, UserSearch

__all__ = ["ENDPOINTS", "build_query", "build_query_over", "parse_query"]

ENDPOINTS: Final[dict[str, type[Query[Any]]]] = {
    cls.endpoint: cls
    for cls in (
        ActiveUsers,
        SessionLengthDistribution,
        AverageSessionLength,
        SessionsPerUser,
        UserComposition,
        EventsList,
        EventSegmentation,
        Funnel,
        Retention,
        UserActivity,
        UserSearch,
        RealtimeActiveUsers,
        RevenueLTV,
        ChartCSV,
        ChartQuery,
        CohortsList,
    )
}
"""Every query class by its snake_case endpoint name."""

_BY_PATH: Final[dict[str, type[Query[Any]]]] = {
    cls._path: cls for cls in ENDPOINTS.values() if cls._path
}
_CHART_PATH: Final = re.compile(r"/api/3/chart/(?P<chart_id>[^/]+)/(?P<kind>csv|query)")


def parse_query(path: str, params: Sequence[tuple[str, str]]) -> Query[Any]:
    """Rebuild the query that produced ``(path, params)``: the inverse of ``q.path, q.params()``.

    Raises InvalidQuery naming the wire parameter at fault (``"path"`` for an unknown endpoint,
    ``"e"``, ``"start"``, ...); unknown parameters are refused too.
    """
    cls = _BY_PATH.get(path)
    kwargs: dict[str, object] = {}
    if cls is None:
        match = _CHART_PATH.fullmatch(path) if isinstance(path, str) else None
        if match is None:
            raise InvalidQuery("path", f"unknown endpoint {path!r}")
        cls = ChartCSV if match["kind"] == "csv" else ChartQuery
        kwargs["chart_id"] = match["chart_id"]
    wire = fields.WireParams(params)
    kwargs |= fields.from_params(cls, wire)
    wire.finish(path)
    build: Callable[..., Query[Any]] = cls
    try:
        return build(**kwargs)
    except InvalidQuery as exc:
        raise fields.wire_name(cls, exc) from None


def _endpoint(endpoint: str, prefix: str) -> type[Query[Any]]:
    cls = ENDPOINTS.get(endpoint)
    if cls is None:
        raise InvalidQuery(
            f"{prefix}endpoint",
            f"unknown endpoint {endpoint!r}; expected one of {', '.join(ENDPOINTS)}",
        )
    return cls


def build_query(endpoint: str, table: Mapping[str, object], *, name: str = "") -> Query[Any]:
    """Build the query of ``endpoint`` (a key of ``ENDPOINTS``) from a table of its fields.

    Values may be typed (TOML) or text (command line), see :mod:`~amplitude_async.queries.tables`;
    errors are :class:`InvalidQuery` naming the field, prefixed with ``name``.
    """
    prefix = f"{name}." if name else ""
    cls = _endpoint(endpoint, prefix)
    kwargs = fields.from_table(cls, table, prefix=prefix, what=endpoint)
    build: Callable[..., Query[Any]] = cls
    try:
        return build(**kwargs)
    except InvalidQuery as exc:
        raise InvalidQuery(f"{prefix}{exc.field}", exc.message) from None


def build_query_over(
    endpoint: str, table: Mapping[str, object], *, name: str = ""
) -> tuple[Query[Any], tuple[date, date] | None]:
    """Like :func:`build_query`, for a range that may be longer than one request may cover.

    Returns the query over as much of its range as its interval allows (see
    :attr:`DatedQuery.max_days`), and the whole range to run it over by date chunks
    (``None`` for queries without dates).
    """
    prefix = f"{name}." if name else ""
    cls = _endpoint(endpoint, prefix)
    if not issubclass(cls, DatedQuery) or "start" not in table or "end" not in table:
        return build_query(endpoint, table, name=name), None
    start = to_date(table["start"], f"{prefix}start")
    end = to_date(table["end"], f"{prefix}end")
    if end < start:
        return build_query(endpoint, table, name=name), (start, end)
    # Every field but the range is checked over one day; the range then goes as far as allowed.
    probe = build_query(endpoint, {**table, "start": start, "end": start}, name=name)
    assert isinstance(probe, DatedQuery)
    limit = probe.max_days
    if limit is None or (end - start).days < limit:
        return build_query(endpoint, table, name=name), (start, end)
    return probe.with_range(start, start + timedelta(days=limit - 1)), (start, end)
