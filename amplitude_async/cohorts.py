"""Cohort downloads: request, poll, fetch the file, through the client's scheduler.

The flow of Amplitude's Behavioral Cohorts API, for one download:

1. **request** ``/api/5/cohorts/request/{id}`` (202, a ``request_id``). Refused with
   :class:`~amplitude_async.errors.QuotaExhausted` before anything is sent if the month's
   quota of cohort requests (``Limits.cohort_requests_per_month``, counted in the budget store,
   so shared by every process of the project) is used up. It takes a slot of the cohort pool
   (``cohort_concurrent`` in flight, ``cohort_requests_per_window`` per ``cohort_window``)
   first, then a slot of the standard pool at no cost: always in that order, so the two pools
   cannot deadlock;
2. **poll** ``/api/5/cohorts/request-status/{request_id}`` with a growing delay until
   ``JOB COMPLETED`` (a standard slot at no cost each); past ``job_timeout`` seconds:
   :class:`~amplitude_async.errors.CohortTimeout` naming the ``request_id``;
3. **file** ``/api/5/cohorts/request/{request_id}/file`` (a standard slot at no cost): the
   body itself, or a 302 to a pre-signed storage URL valid for a minute. The redirect is
   followed *without* the ``Authorization`` header (the storage host must never see the
   credentials) and outside the standard slot (the storage host is not the API); a link that
   expired before it was used (403) is asked for again.

The file is quoted CSV with a header row, gzip-compressed or not (detected by its first
bytes). :meth:`CohortFlow.download` streams it, decompressed, into a temporary file beside the
target and renames it into place only once complete: no partial file ever has the final name.
Memory stays flat whatever the cohort's size. :meth:`CohortFlow.members` parses the same stream
into :class:`~amplitude_async.cohort_results.CohortMember` objects.

A download that fails after step 1 can be resumed with its ``request_id`` (the file stays
available for seven days): no new request, no quota. Errors raised after step 1 carry a note
naming it, and ``progress`` callbacks see it as soon as it is known. Closing the client cuts a
download in progress like any failure (the temporary file is removed; resume it later).

The writing stage is :meth:`CohortFlow._write` (CSV as served) or, with ``format="parquet"``
(or a ``.parquet`` path), :meth:`CohortFlow._write_parquet`, the three requests staying as they
are.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import Final, Literal, Protocol, TypeVar, runtime_checkable
from urllib.parse import urljoin

from attrs import frozen

from ._settings import check_number
from .cohort_files import (
    CohortFormat,
    _columns,
    _MemberReader,
    _ParquetMembers,
    _plain,
    _Records,
    _rows,
    check_format,
    check_target,
)
from .cohort_results import CohortDownload, CohortJob, CohortMember
from .errors import (
    AmplitudeError,
    APIError,
    CohortTimeout,
    ConfigurationError,
    InvalidQuery,
    QuotaExhausted,
    RateLimited,
    ResponseValidationError,
    TransportError,
)
from .limits import Pool
from .queries import CohortRequest, CohortRequestStatus, Query
from .queries.cohorts import check_request_id, file_path
from .quota import COHORT_REQUESTS, MonthlyCounter, MonthlyCounts, QuotaUsage, utc_month
from .retry import Attempts, RetryPolicy
from .sansio import decipher
from .scheduler import Scheduler
from .transport import Stream

__all__ = [
    "CohortFormat",
    "DEFAULT_JOB_TIMEOUT",
    "DEFAULT_POLL_INTERVAL",
    "MAX_POLL_INTERVAL",
    "CohortFlow",
    "CohortProgress",
    "StreamingTransport",
]

R = TypeVar("R")

DEFAULT_POLL_INTERVAL: Final = 2.0
"""Seconds before the first poll of a new job; each next delay is half as long again."""
MAX_POLL_INTERVAL: Final = 30.0
"""Seconds: the longest delay between two polls."""
DEFAULT_JOB_TIMEOUT: Final = 3600.0
"""Seconds a job may stay in progress before :class:`CohortTimeout` (jobs commonly take 30 to 60
seconds whatever the cohort's size, sometimes much longer)."""
LINK_ATTEMPTS: Final = 3
"""Fresh storage links asked for when one expired before it was used."""
_CHUNK: Final = 256 * 1024
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_STORAGE: Final = "the cohort file's storage URL"
"""How errors name the storage request: a pre-signed URL carries its signature, so it never
goes into a message."""

Stage = Literal["requested", "running", "downloading", "done"]


@frozen
class CohortProgress:
    """Where a download is, for a progress line: ``stage`` ``"requested"`` (``request_id`` now
    known), ``"running"`` (a poll answered ``status``), ``"downloading"`` (``members`` and
    ``bytes`` so far) or ``"done"``."""

    stage: Stage
    cohort_id: str
    request_id: str
    status: str = ""
    members: int = 0
    bytes: int = 0


Progress = Callable[[CohortProgress], None]


@runtime_checkable
class StreamingTransport(Protocol):
    """A transport that can hand out a body unread (:class:`~.transport.AiohttpTransport`)."""

    def stream(
        self, url: str, headers: dict[str, str], *, path: str, read_timeout: float
    ) -> contextlib.AbstractAsyncContextManager[Stream]:
        """GET ``url`` with exactly ``headers``, redirects not followed; yield the answer."""
        ...


class _Runner(Protocol):
    async def run(self, query: Query[R], *, priority: int = 0) -> R: ...


# -- the flow -----------------------------------------------------------------------------------


class CohortFlow:
    """The three steps of cohort downloads for one client (see the module docstring).

    ``runner`` runs the step queries (the client: scheduling, retries, closing);
    ``scheduler`` gives the cohort and standard slots and the budget store whose monthly
    counts are shared; ``transport`` streams the file; ``authorization`` is sent to
    ``base_url`` only. ``timeout`` bounds each read of the file.
    """

    def __init__(
        self,
        *,
        runner: _Runner,
        scheduler: Scheduler,
        transport: object,
        base_url: str,
        authorization: str,
        redact: Callable[[str], str],
        retry_policy: RetryPolicy,
        timeout: float,
    ) -> None:
        self._runner = runner
        self._scheduler = scheduler
        self._transport = transport
        self._base_url = base_url
        self._authorization = authorization
        self._redact = redact
        self._retry_policy = retry_policy
        self._timeout = timeout
        store = scheduler.store
        # A store of the library counts months itself (shared through Redis); any other store
        # gets a count in this process.
        self._counter: MonthlyCounter = (
            store if isinstance(store, MonthlyCounter) else MonthlyCounts()
        )

    # -- the monthly quota ----------------------------------------------------------------

    def quota_usage(self) -> QuotaUsage:
        """The month's cohort requests as last seen: exact for the in-process store; for a
        shared store, as of this process's last request or check (0 before its first)."""
        month = utc_month()
        used = self._counter.monthly_seen(COHORT_REQUESTS, month) or 0
        return QuotaUsage(
            COHORT_REQUESTS, month, used, self._scheduler.limits.cohort_requests_per_month
        )

    async def _refuse_if_exhausted(self) -> None:
        month, limit = utc_month(), self._scheduler.limits.cohort_requests_per_month
        used = await self._counter.monthly_count(COHORT_REQUESTS, month)
        if used >= limit:
            raise QuotaExhausted(COHORT_REQUESTS, limit, used, month)

    # -- steps 1 and 2 --------------------------------------------------------------------

    async def request(self, query: CohortRequest, *, priority: int = 0) -> str:
        """Step 1: start a job for ``query`` and return its ``request_id``."""
        await self._refuse_if_exhausted()
        async with self._scheduler.slot(Pool.COHORT, 1, priority=priority):
            # Counted once admitted, right before sending, so a request that waits long for
            # its slot cannot pass a quota others used up meanwhile.
            month, limit = utc_month(), self._scheduler.limits.cohort_requests_per_month
            taken, used = await self._counter.take_monthly(COHORT_REQUESTS, month, limit)
            if not taken:
                raise QuotaExhausted(COHORT_REQUESTS, limit, used, month)
            job = await self._runner.run(query, priority=priority)
        return self._checked(job, query.path)

    def _checked(self, job: CohortJob, path: str) -> str:
        try:
            return check_request_id(job.request_id)
        except InvalidQuery as exc:
            raise ResponseValidationError(exc.message, path=path, field="request_id") from None

    async def wait(
        self,
        cohort_id: str,
        request_id: str,
        *,
        first_delay: float,
        poll_interval: float,
        job_timeout: float,
        priority: int,
        progress: Progress | None,
    ) -> None:
        """Step 2: poll until the job completes; CohortTimeout past ``job_timeout`` seconds."""
        clock = self._scheduler.clock
        started = clock.time()
        delay = first_delay
        status = ""
        while True:
            if delay > 0:
                if clock.time() + delay - started > job_timeout:
                    raise CohortTimeout(request_id, clock.time() - started, status=status)
                await clock.sleep(delay)
            query = CohortRequestStatus(request_id)
            job = await self._runner.run(query, priority=priority)
            status = job.async_status or ""
            if progress is not None:
                progress(CohortProgress("running", cohort_id, request_id, status=status))
            if job.completed:
                return
            delay = min(max(poll_interval, delay * 1.5), MAX_POLL_INTERVAL)

    # -- step 3 ---------------------------------------------------------------------------

    def _streaming(self) -> StreamingTransport:
        transport = self._transport
        if not isinstance(transport, StreamingTransport):
            raise ConfigurationError(
                "transport", "cohort downloads stream the file: they need an AiohttpTransport"
            )
        return transport

    @contextlib.asynccontextmanager
    async def _file(self, request_id: str, priority: int) -> AsyncIterator[Stream]:
        """Step 3: the file's answer, from the API or (after a redirect) from storage."""
        transport = self._streaming()
        path = file_path(request_id)
        url = self._base_url + path
        attempts = Attempts()
        links = 0
        yielded = False
        while True:
            try:
                async with self._scheduler.slot(Pool.STANDARD, 0, priority=priority) as ticket:
                    try:
                        async with transport.stream(
                            url,
                            {"Authorization": self._authorization},
                            path=path,
                            read_timeout=self._timeout,
                        ) as answer:
                            if answer.status == 200:
                                yielded = True
                                yield answer
                                return
                            if answer.status not in _REDIRECTS or "Location" not in answer.headers:
                                self._raise(answer, await answer.head(), path)
                            location = urljoin(url, answer.headers["Location"])
                    except TransportError:
                        # The server may still be counting it: its slot stays taken until the
                        # lease ends.
                        self._scheduler.abandon(ticket)
                        raise
                # Outside the slot, and without the credentials.
                async with transport.stream(
                    location, {}, path=_STORAGE, read_timeout=self._timeout
                ) as stored:
                    if stored.status == 200:
                        yielded = True
                        yield stored
                        return
                    body = await stored.head()
                    links += 1
                    if stored.status in (400, 403) and links < LINK_ATTEMPTS:
                        continue  # the link expired before it was used: ask for a fresh one
                    raise APIError(
                        stored.status,
                        f"the cohort file's storage answered HTTP {stored.status}",
                        details=self._redact(body[:200].decode("utf-8", "replace")),
                        path=_STORAGE,
                    )
            except AmplitudeError as exc:
                if yielded:
                    raise  # failed while the body was being read: the caller's to resume
                attempts = attempts.after(exc)
                decision = self._retry_policy.decide(attempts, exc)
                if not decision.retry:
                    raise
                attempts = attempts.after_wait(decision.delay)
                if isinstance(exc, RateLimited) and decision.pause_pool:
                    self._scheduler.record_rate_limited(Pool.STANDARD)
                    self._scheduler.pause(Pool.STANDARD, decision.delay)
                else:
                    await self._scheduler.clock.sleep(decision.delay)
                self._scheduler.record_retry(Pool.STANDARD)

    def _raise(self, answer: Stream, body: bytes, path: str) -> None:
        decipher(answer.status, answer.headers, body, path=path, redact=self._redact)
        raise ResponseValidationError(
            f"expected the file or a redirect to it, got HTTP {answer.status}", path=path
        )

    # -- the whole flow -------------------------------------------------------------------

    async def _ready(
        self,
        query: CohortRequest,
        request_id: str | None,
        *,
        poll_interval: float,
        job_timeout: float,
        priority: int,
        progress: Progress | None,
    ) -> str:
        """Steps 1 and 2 (step 1 skipped when resuming with ``request_id``)."""
        if request_id is None:
            request_id = await self.request(query, priority=priority)
            first_delay = poll_interval
        else:
            first_delay = 0.0  # resuming: the job may well be done
        if progress is not None:
            progress(CohortProgress("requested", query.cohort_id, request_id))
        try:
            await self.wait(
                query.cohort_id,
                request_id,
                first_delay=first_delay,
                poll_interval=poll_interval,
                job_timeout=job_timeout,
                priority=priority,
                progress=progress,
            )
        except AmplitudeError as exc:
            _note(exc, request_id)
            raise
        return request_id

    async def download(
        self,
        query: CohortRequest,
        path: str | os.PathLike[str],
        *,
        request_id: str | None,
        poll_interval: float,
        job_timeout: float,
        priority: int,
        progress: Progress | None,
        format: CohortFormat | None = None,
    ) -> CohortDownload:
        """The whole flow into ``path`` (see the module docstring)."""
        target = check_target(path)
        kind = check_format(format, target)
        if request_id is not None:
            check_request_id(request_id)
        _check_timing(poll_interval, job_timeout)
        request_id = await self._ready(
            query,
            request_id,
            poll_interval=poll_interval,
            job_timeout=job_timeout,
            priority=priority,
            progress=progress,
        )
        try:
            if kind == "parquet":
                return await self._write_parquet(
                    query.cohort_id, request_id, target, priority, progress
                )
            return await self._write(query.cohort_id, request_id, target, priority, progress)
        except AmplitudeError as exc:
            _note(exc, request_id)
            raise

    async def _write(
        self,
        cohort_id: str,
        request_id: str,
        target: Path,
        priority: int,
        progress: Progress | None,
    ) -> CohortDownload:
        path = file_path(request_id)
        fd, temporary = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".part"
        )
        size = 0
        records = _Records()
        header: bytes | None = None
        try:
            with os.fdopen(fd, "wb") as out:
                pieces = self._pieces(cohort_id, request_id, priority, progress, records)
                async with contextlib.aclosing(pieces):
                    async for data, whole in pieces:
                        out.write(data)
                        size += len(data)
                        if header is None and whole:
                            header = whole[: whole.find(b"\n") + 1] if data else whole
            if not header:
                raise ResponseValidationError("the cohort file is empty (no header row)", path=path)
            columns = _columns(next(_rows(header, path), []), path)
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        done = CohortDownload(cohort_id, request_id, target, records.records - 1, columns, size)
        if progress is not None:
            progress(
                CohortProgress("done", cohort_id, request_id, members=done.members, bytes=size)
            )
        return done

    async def _pieces(
        self,
        cohort_id: str,
        request_id: str,
        priority: int,
        progress: Progress | None,
        records: _Records,
    ) -> AsyncGenerator[tuple[bytes, bytes]]:
        """The file as it streams in: each piece of plain CSV with the whole records it
        completes (``records`` counts them), progress reported per piece; last, ``(b"", the
        final record)`` for a file that does not end with a newline."""
        path = file_path(request_id)
        size = 0
        async with self._file(request_id, priority) as answer:
            async for data in _plain(answer.chunks(_CHUNK), path):
                size += len(data)
                whole = records.feed(data)
                if progress is not None:
                    progress(
                        CohortProgress(
                            "downloading",
                            cohort_id,
                            request_id,
                            members=max(0, records.records - 1),
                            bytes=size,
                        )
                    )
                yield data, whole
        yield b"", records.finish()

    async def _write_parquet(
        self,
        cohort_id: str,
        request_id: str,
        target: Path,
        priority: int,
        progress: Progress | None,
    ) -> CohortDownload:
        """Like :meth:`_write`, into a Parquet file written in row groups as the CSV streams in
        (the writer renames its temporary file into place only when complete)."""
        size = 0
        records = _Records()
        members = _ParquetMembers(target, file_path(request_id))
        try:
            pieces = self._pieces(cohort_id, request_id, priority, progress, records)
            async with contextlib.aclosing(pieces):
                async for data, whole in pieces:
                    size += len(data)
                    if whole:
                        members.feed(whole)
            count, written = members.close()
        except BaseException:
            members.abort()
            raise
        assert members.columns is not None
        done = CohortDownload(cohort_id, request_id, target, count, members.columns, written)
        if progress is not None:
            progress(CohortProgress("done", cohort_id, request_id, members=count, bytes=size))
        return done

    def members(
        self,
        query: CohortRequest,
        *,
        request_id: str | None,
        poll_interval: float,
        job_timeout: float,
        priority: int,
        progress: Progress | None,
    ) -> AsyncIterator[CohortMember]:
        """The whole flow, yielding members as the file streams in; the arguments are checked
        now, before iterating."""
        if request_id is not None:
            check_request_id(request_id)
        _check_timing(poll_interval, job_timeout)
        return self._members(
            query,
            request_id=request_id,
            poll_interval=poll_interval,
            job_timeout=job_timeout,
            priority=priority,
            progress=progress,
        )

    async def _members(
        self,
        query: CohortRequest,
        *,
        request_id: str | None,
        poll_interval: float,
        job_timeout: float,
        priority: int,
        progress: Progress | None,
    ) -> AsyncIterator[CohortMember]:
        request_id = await self._ready(
            query,
            request_id,
            poll_interval=poll_interval,
            job_timeout=job_timeout,
            priority=priority,
            progress=progress,
        )
        reader = _MemberReader(file_path(request_id))
        try:
            # No "downloading" progress here: the caller sees the members themselves.
            pieces = self._pieces(query.cohort_id, request_id, priority, None, _Records())
            async with contextlib.aclosing(pieces):
                async for _, whole in pieces:
                    for member in reader.feed(whole):
                        yield member
        except AmplitudeError as exc:
            _note(exc, request_id)
            raise
        reader.finish()


def _check_timing(poll_interval: float, job_timeout: float) -> None:
    check_number("poll_interval", poll_interval)
    check_number("job_timeout", job_timeout)


def _note(exc: BaseException, request_id: str) -> None:
    note = f"resume the cohort download with request_id={request_id!r} (no new request)"
    if note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)
