"""Revenue queries: lifetime value of new users."""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Final, Literal, TypeAlias, get_args

from attrs import field, frozen

from ..cost import ChartKind
from ..errors import InvalidQuery
from ..results import RevenueLTVResult
from ..validation import check_choice, date_validator, str_validator
from ..values import Segment
from .base import DatedQuery, dated_cost, to_segments
from .fields import DATE, INT, INTERVAL, SEGMENTS, Codec, interval_validator, wire
from .intervals import CALENDAR_INTERVALS, DAILY

__all__ = ["LTV_METRICS", "RevenueLTV"]

LTVMetric: TypeAlias = Literal["arpu", "arppu", "total_revenue", "paying_users"]
LTV_METRICS: Final[tuple[LTVMetric, ...]] = get_args(LTVMetric)
"""Revenue LTV metrics; the wire value is the index (``m=0`` … ``m=3``)."""


def _to_ltv_metric(value: LTVMetric | int) -> LTVMetric:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(LTV_METRICS):
        return LTV_METRICS[value]
    check_choice(value, LTV_METRICS, "metric", "metric")
    return value  # type: ignore[return-value]


def _metric_index(text: str, name: str, index: int) -> int:
    number: int = INT.decode(text, name, index)  # type: ignore[assignment]
    if not 0 <= number < len(LTV_METRICS):
        raise InvalidQuery(name, f"expected 0 to {len(LTV_METRICS) - 1}, got {number}")
    return number


_METRIC: Final = Codec(lambda metric: str(LTV_METRICS.index(metric)), _metric_index, INT.loose)


@frozen
class RevenueLTV(DatedQuery[RevenueLTVResult]):
    """Lifetime value of new users (``/api/2/revenue/ltv``).

    ``metric`` is one of ``arpu``, ``arppu``, ``total_revenue``, ``paying_users`` (or its wire
    index 0 to 3, converted to the name).
    """

    endpoint: ClassVar[str] = "revenue_ltv"
    result_type = RevenueLTVResult
    _path: ClassVar[str] = "/api/2/revenue/ltv"

    start: date = field(validator=date_validator, metadata=wire("start", codec=DATE))
    end: date = field(validator=date_validator, metadata=wire("end", codec=DATE))
    metric: LTVMetric = field(
        default="arpu", converter=_to_ltv_metric, metadata=wire("m", codec=_METRIC)
    )
    interval: int = field(
        default=DAILY,
        validator=interval_validator(CALENDAR_INTERVALS),
        metadata=wire("i", codec=INTERVAL),
    )
    segments: tuple[Segment, ...] = field(
        default=(), converter=to_segments, metadata=wire("s", codec=SEGMENTS, repeated=True)
    )
    group_by: str | None = field(
        default=None, validator=str_validator(optional=True), metadata=wire("g")
    )

    def __attrs_post_init__(self) -> None:
        self._check_range()

    @property
    def cost(self) -> int:
        return dated_cost(self, ChartKind.OTHER, int(self.group_by is not None))
