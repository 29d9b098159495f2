"""The client's cohort calls (:class:`CohortMethods`, part of
:class:`~amplitude_async.client.AmplitudeClient`): each checks its arguments before anything is
sent, then hands the request, the polls and the file to :class:`~.cohorts.CohortFlow`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable

from .cohort_files import CohortFormat
from .cohort_results import CohortDownload, CohortMember
from .cohorts import DEFAULT_JOB_TIMEOUT, DEFAULT_POLL_INTERVAL, CohortFlow, Progress
from .errors import ClientClosed
from .queries import CohortRequest

__all__ = ["CohortMethods"]


class CohortMethods:
    """``download_cohort`` and ``cohort_members`` of the client (``cohorts_list`` is a query:
    ``client.run(CohortsList())``)."""

    _cohorts: CohortFlow
    _closed: bool

    async def download_cohort(
        self,
        cohort_id: str,
        path: str | os.PathLike[str],
        *,
        props: bool = False,
        prop_keys: Iterable[str] = (),
        request_id: str | None = None,
        priority: int = 0,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        job_timeout: float = DEFAULT_JOB_TIMEOUT,
        progress: Progress | None = None,
        format: CohortFormat | None = None,
    ) -> CohortDownload:
        """Download a cohort's members into ``path`` as CSV (see :mod:`amplitude_async.cohorts`),
        or as Parquet with ``format="parquet"`` or a ``.parquet`` path (the ``parquet`` extra:
        ``amplitude_id`` int64, ``user_id`` and the properties as text, in row groups).

        Request the file (``props=True``: with every user property; ``prop_keys``: chosen ones),
        poll until the job completes, stream the file to a temporary name beside ``path`` and
        rename it into place once complete. ``request_id`` resumes an earlier request (no new
        request, no monthly quota). Bad input raises InvalidQuery before anything is sent; a
        used-up month QuotaExhausted; a job still running after ``job_timeout`` seconds
        CohortTimeout. ``progress`` is called with each
        :class:`~amplitude_async.cohorts.CohortProgress`.
        """
        query = CohortRequest(cohort_id, props=props, prop_keys=prop_keys)
        if self._closed:
            raise ClientClosed(path=query.path)
        return await self._cohorts.download(
            query,
            path,
            request_id=request_id,
            poll_interval=poll_interval,
            job_timeout=job_timeout,
            priority=priority,
            progress=progress,
            format=format,
        )

    def cohort_members(
        self,
        cohort_id: str,
        *,
        props: bool = False,
        prop_keys: Iterable[str] = (),
        request_id: str | None = None,
        priority: int = 0,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        job_timeout: float = DEFAULT_JOB_TIMEOUT,
        progress: Progress | None = None,
    ) -> AsyncIterator[CohortMember]:
        """A cohort's members as they stream in: the flow of :meth:`download_cohort` without a
        file. Arguments are checked here, before iterating."""
        query = CohortRequest(cohort_id, props=props, prop_keys=prop_keys)
        if self._closed:
            raise ClientClosed(path=query.path)
        return self._cohorts.members(
            query,
            request_id=request_id,
            poll_interval=poll_interval,
            job_timeout=job_timeout,
            priority=priority,
            progress=progress,
        )
