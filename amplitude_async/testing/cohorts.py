"""The emulator's Behavioral Cohorts: a catalogue computed from the event log, the async
download jobs, their gzip CSV files, and a second "storage" server for large files.

:class:`CohortService` belongs to an :class:`~amplitude_async.testing.emulator.Emulator`, which
authenticates and rate-limits the requests and hands the cohort steps here:

- ``/api/3/cohorts``: the catalogue in the live API's shape (:meth:`CohortService.list_body`):
  the dataset's saved cohorts, "active in the last 7 days", "performed Search at least 3
  times", a draft never computed (``size`` and ``lastComputed`` null), and any synthetic cohorts
  of a given size (for load tests: members are generated, not taken from the dataset);
- ``/api/5/cohorts/request/{id}``: 202 with a new ``request_id``; the job stays in progress for
  ``job_time`` seconds of the emulator's clock while its file is written (gzip CSV with a header
  row, in a temporary directory, in a thread);
- ``/api/5/cohorts/request-status/{request_id}``: 202 ``JOB INPROGRESS``, then 200
  ``JOB COMPLETED``;
- ``/api/5/cohorts/request/{request_id}/file``: files up to ``direct_bytes`` in the body,
  larger ones as a 302 to the storage server, whose links expire after ``link_lifetime``
  seconds and which refuses any request carrying an ``Authorization`` header (400), as a
  pre-signed S3 URL does.

Test knobs: :attr:`CohortService.expire_links` (the next N links are issued already expired),
:attr:`CohortService.cut_downloads` (the next N file bodies stop halfway, connection closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import gzip
import hashlib
import hmac
import io
import itertools
import json
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from attrs import define, frozen

from ..clock import Clock
from ..queries.cohorts import check_cohort_id, check_request_id
from .dataset import Dataset
from .wire import error_body

__all__ = ["CohortService", "EmulatedCohort", "catalogue", "list_body", "write_file"]

JOB_INPROGRESS: Final = "JOB INPROGRESS"
JOB_COMPLETED: Final = "JOB COMPLETED"
_SYNTHETIC_BASE: Final = 9_000_000_000
_COUNTRIES: Final = ("United States", "Germany", "India", "Brazil", "Japan", "France")
_PLATFORMS: Final = ("iOS", "Android", "Web")


@frozen
class EmulatedCohort:
    """One cohort of the emulator: ``users`` are dataset user indices, or ``None`` with
    ``synthetic`` members generated on download; ``computed`` false for a draft."""

    id: str
    name: str
    description: str | None
    definition: Any
    users: tuple[int, ...] | None = None
    synthetic: int = 0
    computed: bool = True

    @property
    def size(self) -> int | None:
        """Members, or ``None`` for a cohort never computed."""
        if not self.computed:
            return None
        return len(self.users) if self.users is not None else self.synthetic


def catalogue(
    dataset: Dataset, now: datetime, synthetic: Mapping[str, int] = {}
) -> list[EmulatedCohort]:
    """The emulator's cohorts over ``dataset`` at ``now`` (see the module docstring)."""
    cohorts = []
    for saved in dataset.cohorts.values():
        users = dataset.cohort_users(saved.id) or frozenset()
        definition = {"type": "saved", "cohort": saved.id}
        cohorts.append(EmulatedCohort(saved.id, saved.name, None, definition, tuple(sorted(users))))
    end_ms = int(now.timestamp() * 1000)
    recent = dataset.events_between(end_ms - 7 * 86_400_000, end_ms + 1)
    active = sorted({dataset.user[i] for i in recent})
    cohorts.append(
        EmulatedCohort(
            "active-7d",
            "Active in the last 7 days",
            "Users with any event in the 7 days before now",
            {"type": "event", "event_type": "_active", "days": 7},
            tuple(active),
        )
    )
    search = dataset.type_ids.get("Search")
    if search is not None:
        counts: dict[int, int] = {}
        for i in dataset.type_events[search]:
            counts[dataset.user[i]] = counts.get(dataset.user[i], 0) + 1
        frequent = sorted(u for u, n in counts.items() if n >= 3)
        cohorts.append(
            EmulatedCohort(
                "search-3x",
                "Performed Search at least 3 times",
                None,
                {"type": "event", "event_type": "Search", "operator": ">=", "value": 3},
                tuple(frequent),
            )
        )
    cohorts.append(
        EmulatedCohort("draft", "Draft (never computed)", None, {"type": "draft"}, (), 0, False)
    )
    for cohort_id, size in synthetic.items():
        check_cohort_id(cohort_id, "synthetic_cohorts")
        cohorts.append(
            EmulatedCohort(
                cohort_id, f"Synthetic ({size:,} members)", None, {"type": "synthetic"}, None, size
            )
        )
    return cohorts


def list_body(
    cohorts: Iterable[EmulatedCohort], now: datetime, include_sync_info: bool
) -> dict[str, Any]:
    """The answer of ``/api/3/cohorts`` for ``cohorts`` at ``now``, in the live API's shape
    (made 30 days ago, computed an hour ago, most fields constant)."""
    created = int((now - timedelta(days=30)).timestamp())
    computed = int((now - timedelta(hours=1)).timestamp())
    out = []
    for c in cohorts:
        item: dict[str, Any] = {
            "id": c.id,
            "name": c.name,
            "description": c.description,
            "appId": 1,
            "archived": False,
            "published": c.computed,
            "hidden": False,
            "finished": c.computed,
            "size": c.size,
            "type": "redshift",
            "owners": ["owner@example.com"],
            "viewers": [],
            "createdAt": created,
            "lastMod": created,
            "lastComputed": computed if c.computed else None,
            "definition": c.definition,
            "metadata": None,
            "view_count": 0,
            "popularity": 0,
            "chart_id": None,
            "edit_id": None,
            "location_id": None,
            "is_predictive": False,
            "is_official_content": False,
            "cohort_output_type": "UNIQUES",
        }
        if include_sync_info:
            item["syncMetadata"] = []
        out.append(item)
    return {"cohorts": out}


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return json.dumps(list(value))
    return str(value)


def _rows(cohort: EmulatedCohort, dataset: Dataset, columns: Sequence[str]) -> Iterator[list[str]]:
    if cohort.users is None:
        for i in range(cohort.synthetic):
            props = {"country": _COUNTRIES[i % 6], "platform": _PLATFORMS[i % 3]}
            yield [str(_SYNTHETIC_BASE + i), f"synthetic{i:07d}"] + [
                props.get(c, "") for c in columns
            ]
        return
    for u in cohort.users:
        events = dataset.user_events[u]
        state = dataset.ustate[events[-1]] if len(events) else None
        values = [_text(dataset.user_value(state, c)) if state is not None else "" for c in columns]
        yield [str(dataset.amplitude_ids[u]), dataset.user_ids[u] or "", *values]


def write_file(
    cohort: EmulatedCohort,
    dataset: Dataset,
    columns: Sequence[str],
    target: Path,
    *,
    compress: bool,
) -> int:
    """Write ``cohort``'s CSV (quoted, header row) to ``target``; return its size in bytes."""
    raw = target.open("wb")
    out: Any = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) if compress else raw
    with raw, out, io.TextIOWrapper(out, encoding="utf-8", newline="") as text:
        writer = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow(["amplitude_id", "user_id", *columns])
        batch: list[list[str]] = []
        for row in _rows(cohort, dataset, columns):
            batch.append(row)
            if len(batch) >= 10_000:
                writer.writerows(batch)
                batch.clear()
        writer.writerows(batch)
    return target.stat().st_size


@define
class _Job:
    request_id: str
    cohort_id: str
    ready_at: float
    file: asyncio.Task[tuple[Path, int]]


class CohortService:
    """The cohort endpoints of one emulator (see the module docstring).

    ``job_time`` (seconds of ``clock``) is how long a job stays in progress; ``direct_bytes``
    the largest file served in the answer itself; ``link_lifetime`` how long a storage link
    stays valid; ``compress`` false serves plain CSV instead of gzip.
    """

    def __init__(
        self,
        dataset: Dataset,
        now: datetime,
        clock: Clock,
        *,
        synthetic: Mapping[str, int] = {},
        job_time: float = 1.0,
        direct_bytes: int = 64 * 1024,
        link_lifetime: float = 60.0,
        compress: bool = True,
        host: str = "127.0.0.1",
    ) -> None:
        self.dataset = dataset
        self.clock = clock
        self.job_time = job_time
        self.direct_bytes = direct_bytes
        self.link_lifetime = link_lifetime
        self.compress = compress
        self.host = host
        self.cohorts = {c.id: c for c in catalogue(dataset, now, synthetic)}
        self.now = now
        self.jobs: dict[str, _Job] = {}
        self.expire_links = 0
        """Test knob: the next this-many storage links are issued already expired."""
        self.cut_downloads = 0
        """Test knob: the next this-many file bodies stop halfway (connection closed)."""
        self.storage_requests: list[tuple[str, bool]] = []
        """Storage requests as ``(path, had an Authorization header)``."""
        self._secret = secrets.token_bytes(16)
        self._directory: str | None = None
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.storage_url: str | None = None
        self.storage = web.Application()
        self.storage.router.add_get("/cohort-files/{name}", self._serve_storage)

    # -- life ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the storage server on a free port of ``host``."""
        if self._runner is not None:
            return
        self._directory = tempfile.mkdtemp(prefix="amplitude-emulator-cohorts-")
        runner = web.AppRunner(self.storage, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, 0)
        await site.start()
        self._runner = runner
        self.storage_url = f"http://{self.host}:{runner.addresses[0][1]}"

    async def close(self) -> None:
        """Stop the storage server; drop the files and unfinished jobs."""
        for job in self.jobs.values():
            job.file.cancel()
        for job in self.jobs.values():
            with contextlib.suppress(BaseException):
                await job.file
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    # -- the list -----------------------------------------------------------------------

    def list_body(self, include_sync_info: bool) -> dict[str, Any]:
        """``/api/3/cohorts``'s answer."""
        return list_body(self.cohorts.values(), self.now, include_sync_info)

    # -- the steps ----------------------------------------------------------------------

    def request(self, cohort_id: str, params: Sequence[tuple[str, str]]) -> web.Response:
        """Step 1: start a job (202), or 404/400."""
        cohort = self.cohorts.get(cohort_id)
        if cohort is None:
            return _error(404, f"No cohort with id {cohort_id}")
        if not cohort.computed:
            return _error(400, f"Cohort {cohort_id} has not been computed")
        props = [v for k, v in params if k == "props"]
        keys = [v for k, v in params if k == "propKeys"]
        unknown = sorted({k for k, _ in params} - {"props", "propKeys"})
        if unknown or props not in ([], ["0"], ["1"]) or (keys and props != ["1"]):
            return _error(400, "Invalid parameters: props=1 and repeated propKeys=NAME only")
        if keys:
            columns: list[str] = keys
        elif props == ["1"]:
            # Every user property: the dataset's, or the two a synthetic cohort has.
            synthetic = cohort.users is None
            columns = ["country", "platform"] if synthetic else list(self.dataset.prop_index)
        else:
            columns = []
        request_id = f"req{next(self._ids):06d}{secrets.token_hex(4)}"
        target = Path(self._require_directory()) / f"{request_id}.csv"
        task = asyncio.get_running_loop().create_task(
            asyncio.to_thread(self._write, cohort, columns, target)
        )
        self.jobs[request_id] = _Job(request_id, cohort_id, self.clock.time() + self.job_time, task)
        return _json(202, {"request_id": request_id, "cohort_id": cohort_id})

    def _write(
        self, cohort: EmulatedCohort, columns: Sequence[str], target: Path
    ) -> tuple[Path, int]:
        return target, write_file(cohort, self.dataset, columns, target, compress=self.compress)

    def _require_directory(self) -> str:
        if self._directory is None:
            raise RuntimeError("the cohort service is not started")
        return self._directory

    def _done(self, job: _Job) -> bool:
        return self.clock.time() >= job.ready_at and job.file.done()

    def status(self, request_id: str) -> web.Response:
        """Step 2: 202 in progress, 200 completed, 404 unknown."""
        job = self.jobs.get(request_id)
        if job is None:
            return _error(404, f"No cohort request with id {request_id}")
        if self._done(job) and job.file.exception() is not None:
            return _error(500, "The cohort job failed")
        done = self._done(job)
        body = {
            "request_id": request_id,
            "cohort_id": job.cohort_id,
            "async_status": JOB_COMPLETED if done else JOB_INPROGRESS,
        }
        return _json(200 if done else 202, body)

    async def file(self, request: web.Request, request_id: str) -> web.StreamResponse:
        """Step 3: the file (small), a 302 to storage (large), 400 not ready, 404 unknown."""
        job = self.jobs.get(request_id)
        if job is None:
            return _error(404, f"No cohort request with id {request_id}")
        if not self._done(job):
            return _error(400, f"Cohort request {request_id} has not completed")
        path, size = job.file.result()
        if size <= self.direct_bytes:
            return await self._send_file(request, path, size)
        expires = self.clock.time() + self.link_lifetime
        if self.expire_links > 0:
            self.expire_links -= 1
            expires = self.clock.time() - 1.0
        stamp = f"{expires:.6f}"
        signature = self._sign(path.name, stamp)
        location = (
            f"{self.storage_url}/cohort-files/{path.name}?X-Expires={stamp}&X-Signature={signature}"
        )
        return web.Response(status=302, headers={"Location": location})

    def _sign(self, name: str, stamp: str) -> str:
        return hmac.new(self._secret, f"{name}\n{stamp}".encode(), hashlib.sha256).hexdigest()

    async def _serve_storage(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        authorized = "Authorization" in request.headers
        self.storage_requests.append((request.path, authorized))
        if authorized:
            return _xml(400, "InvalidArgument", "Only one auth mechanism allowed")
        stamp = request.query.get("X-Expires", "")
        signature = request.query.get("X-Signature", "")
        if not hmac.compare_digest(signature, self._sign(name, stamp)):
            return _xml(403, "SignatureDoesNotMatch", "The request signature does not match")
        if float(stamp) < self.clock.time():
            return _xml(403, "AccessDenied", "Request has expired")
        job = self.jobs.get(name.removesuffix(".csv"))
        if job is None or not job.file.done() or job.file.exception() is not None:
            return _xml(404, "NoSuchKey", "The specified key does not exist.")
        path, size = job.file.result()
        return await self._send_file(request, path, size)

    async def _send_file(self, request: web.Request, path: Path, size: int) -> web.StreamResponse:
        cut = self.cut_downloads > 0
        if cut:
            self.cut_downloads -= 1
        response = web.StreamResponse(status=200)
        response.content_type = "application/gzip" if self.compress else "text/csv"
        response.content_length = size
        await response.prepare(request)
        limit = size // 2 if cut else size
        sent = 0
        with path.open("rb") as source:
            while sent < limit:
                chunk = source.read(min(256 * 1024, limit - sent))
                if not chunk:
                    break
                await response.write(chunk)
                sent += len(chunk)
        if cut:
            # Half the announced body, then the connection goes: a cut download.
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response


def parse_step(path: str) -> tuple[str, str] | None:
    """``(step, id)`` for a cohort download path (``request``, ``status`` or ``file``), or
    ``None`` when the path is not one."""
    parts = path.split("/")
    if len(parts) == 6 and parts[1:4] == ["api", "5", "cohorts"]:
        if parts[4] == "request":
            return "request", parts[5]
        if parts[4] == "request-status":
            return "status", parts[5]
    if len(parts) == 7 and parts[1:5] == ["api", "5", "cohorts", "request"] and parts[6] == "file":
        return "file", parts[5]
    return None


def check_step_id(step: str, value: str) -> str | None:
    """Why ``value`` is not a valid id for ``step`` (``None`` if it is)."""
    try:
        if step == "request":
            check_cohort_id(value)
        else:
            check_request_id(value)
    except ValueError as exc:
        return str(exc)
    return None


def _json(status: int, body: object) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type="application/json"
    )


def _error(status: int, details: str) -> web.Response:
    return web.Response(
        status=status, body=error_body(status, details), content_type="application/json"
    )


def _xml(status: int, code: str, message: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")
