"""The query base classes: what every query knows (path, pool, parameters, cost, result type)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any, ClassVar, Final, Generic, Self, TypeVar, cast

import attrs

from .. import cost as _cost
from ..cost import ChartKind
from ..errors import InvalidQuery
from ..limits import Pool
from ..naming import Naming, segment_name
from ..validation import as_list, describe
from ..values import Segment
from . import fields
from .fields import Params, compact_json
from .intervals import DAILY, INTERVAL_NAMES

__all__ = [
    "MAX_LIMIT",
    "DatedQuery",
    "Query",
    "conditions",
    "dated_cost",
    "segment_params",
    "to_segments",
]

R = TypeVar("R", covariant=True)

MAX_LIMIT: Final = 1000
"""The largest ``limit`` any endpoint accepts."""


def segment_params(segments: Sequence[Segment]) -> list[tuple[str, str]]:
    """Encode segments as wire parameters: one ``s`` per segment, in order.

    The API documents one ``s``; how several segments travel is not documented: a repeated
    parameter is this library's decision (declared by the ``segments`` fields).
    """
    return [("s", compact_json(segment.to_wire())) for segment in segments]


def conditions(segments: Sequence[Segment], group_bys: int) -> int:
    """The cost rule's condition count of ``segments`` and ``group_bys`` group-bys."""
    return _cost.condition_count([len(s.conditions) for s in segments], group_bys)


class Query(Generic[R]):
    """A validated request to one endpoint; ``R`` is its result type.

    Subclasses expose ``path``, ``pool``, ``params()``, ``cost`` and ``result_type``; their
    fields declare their own wire names (:mod:`amplitude_async.queries.fields`).
    """

    # The wire form, computed once: a query is immutable, and the client needs its parameters
    # for the request URL and the cache key (attrs leaves this slot out of eq, hash and repr).
    __slots__ = ("_encoded", "_params")

    endpoint: ClassVar[str] = ""
    """The snake_case endpoint name (the key in :data:`ENDPOINTS`)."""
    # Not a ClassVar: a ClassVar cannot mention R, and this way ``query.result_type`` is
    # ``type[R]`` to the type checker. Subclasses assign it in their class body.
    result_type: type[R]
    """The results class a response is decoded into (``R`` at run time)."""
    pool: ClassVar[Pool] = Pool.STANDARD
    """The set of limits this query counts against."""
    _path: ClassVar[str] = ""

    @property
    def path(self) -> str:
        """The request path, e.g. ``/api/2/users``."""
        return self._path

    def params(self) -> Params:
        """Ordered ``(name, value)`` wire parameters, not URL-encoded."""
        try:
            params: Params = object.__getattribute__(self, "_params")
        except AttributeError:
            params = fields.to_params(self)
            object.__setattr__(self, "_params", params)
        return params

    def encoded_params(self) -> str:
        """:meth:`params` percent-encoded as sent (the request's query string)."""
        try:
            encoded: str = object.__getattribute__(self, "_encoded")
        except AttributeError:
            encoded = fields.encode_params(self.params())
            object.__setattr__(self, "_encoded", encoded)
        return encoded

    @property
    def cost(self) -> int:
        """The query's cost under Amplitude's cost rule (0 when not costed)."""
        raise NotImplementedError

    def naming(self) -> Naming:
        """What this query tells about its result's series (results use it to name them)."""
        segments: Sequence[Segment] = getattr(self, "segments", ())
        return Naming(segments=tuple(segment_name(s) for s in segments))


class DatedQuery(Query[R]):
    """A query over the date range ``[start, end]`` (both inclusive, project time zone)."""

    __slots__ = ()

    start: date
    end: date
    _span_limits: ClassVar[Mapping[int, int]] = {}
    """The most days one request covers, per interval, where the API caps it."""

    @property
    def days(self) -> int:
        """Days in ``[start, end]``."""
        return _cost.days_in_range(self.start, self.end)

    @property
    def max_days(self) -> int | None:
        """The most days this query's interval lets one request cover (``None``: no cap).

        A longer range is run as several queries: :func:`amplitude_async.split.plan_chunks`
        with ``start``/``end``, or a backfill.
        """
        return self.span_limit(getattr(self, "interval", DAILY))

    @classmethod
    def span_limit(cls, interval: int | None) -> int | None:
        """The most days one request of this class covers at ``interval`` (``None``: no cap)."""
        return None if interval is None else cls._span_limits.get(interval)

    def naming(self) -> Naming:
        """The base naming with this query's date range (to read dates sent without a year)."""
        return attrs.evolve(super().naming(), start=self.start, end=self.end)

    def with_range(self, start: date, end: date) -> Self:
        """A copy over ``[start, end]``, validated again (interval spans included)."""
        # evolve() is typed for concrete attrs classes; every subclass is one.
        evolved: Self = attrs.evolve(cast(Any, self), start=start, end=end)
        return evolved

    def _check_range(self) -> None:
        if self.end < self.start:
            raise InvalidQuery("end", f"end {self.end} is before start {self.start}")

    def _check_span(self) -> None:
        interval = getattr(self, "interval", None)
        limit = self.span_limit(interval)
        if interval is None or limit is None or self.days <= limit:
            return
        hint = (
            ": use a weekly or monthly interval, or split the range (a backfill job, or"
            " amplitude_async.split.plan_chunks with start and end)"
            if interval == DAILY
            else ""
        )
        raise InvalidQuery(
            "interval",
            f"the {INTERVAL_NAMES[interval]} interval covers at most {limit} days,"
            f" got {self.days}{hint}",
        )


# -- fields several endpoints share ---------------------------------------------------------


def to_segments(value: Segment | Iterable[Segment] | None) -> tuple[Segment, ...]:
    """The ``segments`` converter: one segment or a sequence of them, as a tuple."""
    if value is None:
        return ()
    items = [value] if isinstance(value, Segment) else as_list(value, "segments", what=_SEQ)
    for i, item in enumerate(items):
        if not isinstance(item, Segment):
            raise InvalidQuery(f"segments[{i}]", f"expected a Segment, got {describe(item)}")
    return tuple(item for item in items if isinstance(item, Segment))


_SEQ: Final = "a sequence"


def dated_cost(query: DatedQuery[Any], kind: ChartKind, group_bys: int = 0) -> int:
    """The cost of a dated query whose ``segments`` and ``group_bys`` count as conditions."""
    segments: Sequence[Segment] = getattr(query, "segments", ())
    return _cost.query_cost(query.days, conditions(segments, group_bys), _cost.chart_cost(kind))
