"""Typed results of the Behavioral Cohorts endpoints: the cohort list, a download's summary,
and one member of a downloaded cohort.

Like :mod:`amplitude_async.results`, these say what an answer means; decoding (camelCase keys,
Unix times, ``null`` sizes, unknown keys) is :mod:`amplitude_async.converter`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attrs import field, frozen

from .results import Row, _ToPandas

if TYPE_CHECKING:
    from .queries import Query

__all__ = [
    "JOB_COMPLETED",
    "Cohort",
    "CohortDownload",
    "CohortJob",
    "CohortMember",
    "CohortsListResult",
]

JOB_COMPLETED = "JOB COMPLETED"
"""The ``async_status`` of a finished download job."""


@frozen
class Cohort:
    """A saved behavioral cohort as ``/api/3/cohorts`` lists it.

    ``size`` is ``None`` and ``finished`` false for a cohort never computed; ``created_at``,
    ``last_mod`` and ``last_computed`` are aware datetimes in UTC (``None`` when absent or
    null); ``definition`` is the cohort's definition as raw JSON. ``sync_metadata`` is sent
    with ``include_sync_info=True`` only (raw JSON). Other keys of the answer are ignored.
    """

    id: str
    name: str
    description: str | None = None
    size: int | None = None
    finished: bool = False
    archived: bool = False
    published: bool = False
    owners: tuple[str, ...] = ()
    created_at: datetime | None = None
    last_mod: datetime | None = None
    last_computed: datetime | None = None
    definition: Any = None
    sync_metadata: Any = None


@frozen
class CohortsListResult(_ToPandas):
    """The project's cohorts (:class:`~amplitude_async.queries.CohortsList`)."""

    cohorts: tuple[Cohort, ...] = ()

    def rows(self, query: Query[Any] | None = None) -> tuple[Row, ...]:
        """One row per cohort: label = its name, x value = when it was last computed (empty if
        never), value = its size (``None`` if not computed), metric = its id."""
        return tuple(
            Row(c.name, c.last_computed if c.last_computed is not None else "", c.size, c.id)
            for c in self.cohorts
        )

    def by_id(self, cohort_id: str) -> Cohort | None:
        """The cohort with ``cohort_id``, or ``None``."""
        return next((c for c in self.cohorts if c.id == cohort_id), None)


@frozen
class CohortMember:
    """One member of a downloaded cohort: its Amplitude ID, user ID (``None`` when empty) and
    the user properties requested (column name → text as the file has it)."""

    amplitude_id: int
    user_id: str | None
    properties: Mapping[str, str] = field(factory=dict)


@frozen
class CohortDownload:
    """A finished cohort download: the file at ``path`` (plain CSV with a header row) holds
    ``members`` rows of ``columns``; ``bytes`` is its size. ``request_id`` names the job: the
    file can be fetched again with it for seven days without a new request."""

    cohort_id: str
    request_id: str
    path: Path
    members: int
    columns: tuple[str, ...]
    bytes: int


@frozen
class CohortJob:
    """The answer to a download request or a poll: the job's ``request_id`` and, for a poll,
    its ``async_status`` (``"JOB INPROGRESS"``, then ``"JOB COMPLETED"``)."""

    request_id: str
    cohort_id: str | None = None
    async_status: str | None = None

    @property
    def completed(self) -> bool:
        """Whether the file is ready."""
        return self.async_status == JOB_COMPLETED
