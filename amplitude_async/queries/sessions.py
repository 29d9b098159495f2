"""Session queries: length distribution, average length, sessions per user."""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Literal, TypeAlias, TypeVar, get_args

from attrs import field, frozen

from ..cost import ChartKind
from ..errors import InvalidQuery
from ..results import (
    AverageSessionLengthResult,
    SessionLengthDistributionResult,
    SessionsPerUserResult,
)
from ..validation import date_validator, int_validator, one_of
from .base import DatedQuery, dated_cost
from .fields import DATE, INT, wire

__all__ = ["AverageSessionLength", "SessionLengthDistribution", "SessionsPerUser"]

R = TypeVar("R")

BinUnit: TypeAlias = Literal["hours", "minutes", "seconds"]


@frozen
class SessionLengthDistribution(DatedQuery[SessionLengthDistributionResult]):
    """Sessions per length bin (``/api/2/sessions/length``).

    Custom bins need ``bin_unit``, ``bin_min`` and ``bin_max`` together; ``bin_size`` is
    optional (the API picks one). Without them the API's default bins apply.
    """

    endpoint: ClassVar[str] = "session_length_distribution"
    result_type = SessionLengthDistributionResult
    _path: ClassVar[str] = "/api/2/sessions/length"

    start: date = field(validator=date_validator, metadata=wire("start", codec=DATE))
    end: date = field(validator=date_validator, metadata=wire("end", codec=DATE))
    bin_unit: BinUnit | None = field(
        default=None,
        validator=one_of(get_args(BinUnit), "bin unit", optional=True),
        metadata=wire("timeHistogramConfigBinTimeUnit"),
    )
    bin_min: int | None = field(
        default=None,
        validator=int_validator(0, optional=True),
        metadata=wire("timeHistogramConfigBinMin", codec=INT),
    )
    bin_max: int | None = field(
        default=None,
        validator=int_validator(1, optional=True),
        metadata=wire("timeHistogramConfigBinMax", codec=INT),
    )
    bin_size: int | None = field(
        default=None,
        validator=int_validator(1, optional=True),
        metadata=wire("timeHistogramConfigBinSize", codec=INT),
    )

    def __attrs_post_init__(self) -> None:
        self._check_range()
        together = {"bin_unit": self.bin_unit, "bin_min": self.bin_min, "bin_max": self.bin_max}
        given = [name for name, value in together.items() if value is not None]
        if given or self.bin_size is not None:
            for name, value in together.items():
                if value is None:
                    raise InvalidQuery(name, "custom bins need bin_unit, bin_min and bin_max")
        if self.bin_min is not None and self.bin_max is not None and self.bin_max <= self.bin_min:
            raise InvalidQuery("bin_max", f"must exceed bin_min ({self.bin_min})")

    @property
    def cost(self) -> int:
        return dated_cost(self, ChartKind.SESSIONS)


@frozen
class _DailySessionAverage(DatedQuery[R]):
    """A per-day session average: only a date range, costed as a sessions chart."""

    start: date = field(validator=date_validator, metadata=wire("start", codec=DATE))
    end: date = field(validator=date_validator, metadata=wire("end", codec=DATE))

    def __attrs_post_init__(self) -> None:
        self._check_range()

    @property
    def cost(self) -> int:
        return dated_cost(self, ChartKind.SESSIONS)


@frozen
class AverageSessionLength(_DailySessionAverage[AverageSessionLengthResult]):
    """Average session length in seconds per day (``/api/2/sessions/average``)."""

    endpoint: ClassVar[str] = "average_session_length"
    result_type = AverageSessionLengthResult
    _path: ClassVar[str] = "/api/2/sessions/average"


@frozen
class SessionsPerUser(_DailySessionAverage[SessionsPerUserResult]):
    """Average sessions per user per day (``/api/2/sessions/peruser``)."""

    endpoint: ClassVar[str] = "sessions_per_user"
    result_type = SessionsPerUserResult
    _path: ClassVar[str] = "/api/2/sessions/peruser"
