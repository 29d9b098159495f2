"""The checkpoint store: a backfill's progress and rows in an SQLite database.

The database (``checkpoint.sqlite3`` in the output directory) holds the plan's fingerprint and
description, the :class:`~.target.Target` the rows come from, one row per finished or failed
chunk, and every finished chunk's tidy rows. A chunk's rows and its "done" mark are written in
one transaction, so after a crash at any moment a chunk is either wholly there or not at all: a
resumed run redoes exactly the chunks that are not done, and the output files, assembled from
the database, have no missing and no duplicate rows. The database runs in WAL mode; a commit
survives the process being killed.

One run at a time: opening a store for writing takes an exclusive ``flock`` on
``checkpoint.lock`` beside the database and holds it until :meth:`CheckpointStore.close`. The
kernel drops the lock when its process dies, so a lock left by ``kill -9`` is simply taken
over; the file names the holder (PID and job) for the message a second run prints.

A database that cannot be read (garbage, truncated, another program's tables) is refused with
:class:`CorruptCheckpoint` when the store is opened, before anything is spent;
``restart=True`` deletes it and starts a fresh one.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from ..errors import AmplitudeError
from .output import TidyRow
from .plan import ChunkTask, Plan, describe_changes
from .target import Target

__all__ = [
    "CHECKPOINT_NAME",
    "LOCK_NAME",
    "CheckpointError",
    "CheckpointLocked",
    "CheckpointStore",
    "CorruptCheckpoint",
    "JobChanged",
    "TargetChanged",
]

CHECKPOINT_NAME: Final = "checkpoint.sqlite3"
"""The checkpoint database's file name in the output directory."""

LOCK_NAME: Final = "checkpoint.lock"
"""The lock file beside the checkpoint (never deleted: removing a locked file races)."""

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    name TEXT NOT NULL,
    idx INTEGER NOT NULL,
    start TEXT,
    "end" TEXT,
    cost INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    finished_at REAL NOT NULL,
    PRIMARY KEY (name, idx)
);
CREATE TABLE IF NOT EXISTS rows (
    name TEXT NOT NULL,
    idx INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    label TEXT NOT NULL,
    date TEXT NOT NULL,
    metric TEXT NOT NULL,
    value,
    PRIMARY KEY (name, idx, seq)
);
"""

_COLUMNS: Final = {
    "meta": {"key", "value"},
    "chunks": {"name", "idx", "start", "end", "cost", "status", "error", "attempts", "finished_at"},
    "rows": {"name", "idx", "seq", "label", "date", "metric", "value"},
}

_RESTART_HINT: Final = "run again with --restart to discard it and start over"


class JobChanged(AmplitudeError):
    """The job's plan differs from the one the checkpoint was made with."""

    def __init__(self, changes: str, done: int) -> None:
        self.changes = changes
        self.done = done
        super().__init__(
            f"the job changed since the last run ({changes}); run again with --restart to "
            f"discard the {done} finished chunk(s) and start over"
        )


class CheckpointError(AmplitudeError):
    """A checkpoint cannot be used; ``path`` names it."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(message)


class CorruptCheckpoint(CheckpointError):
    """The checkpoint database is unreadable or is not a backfill checkpoint."""

    def __init__(self, path: Path, reason: str) -> None:
        self.reason = reason
        super().__init__(path, f"checkpoint {path} is unreadable ({reason}); {_RESTART_HINT}")


class CheckpointLocked(CheckpointError):
    """Another backfill holds the checkpoint's lock; ``pid`` and ``job`` name it if known."""

    def __init__(self, path: Path, pid: int | None, job: str | None) -> None:
        self.pid = pid
        self.job = job
        holder = f"pid {pid}" if pid is not None else "another process"
        stop = f" (kill {pid})" if pid is not None else ""
        super().__init__(
            path,
            f"checkpoint {path} is in use by {holder}"
            + (f" running job {job}" if job else "")
            + f"; wait for it to finish or stop it{stop}",
        )


class TargetChanged(CheckpointError):
    """The checkpoint's rows come from another target than this run's."""

    def __init__(self, path: Path, old: Target | None, new: Target | None, done: int) -> None:
        self.old = old
        self.new = new
        self.done = done
        before = old.describe() if old is not None else "an unrecorded target"
        now = new.describe() if new is not None else "an unrecorded target"
        super().__init__(
            path,
            f"checkpoint {path} holds {done} chunk(s) from {before}, but this run targets "
            f"{now}; run again with --restart to discard them and start over (or use another "
            "output directory)",
        )


class _Lock:
    """An exclusive ``flock`` on ``path``, naming its holder in the file."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path, checkpoint: Path, owner: str) -> _Lock:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise CheckpointLocked(checkpoint, *holder) from None
        except BaseException:
            os.close(fd)
            raise
        record = {"pid": os.getpid(), "job": owner, "since": datetime.now(UTC).isoformat()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is not None:
            # Closing the descriptor drops the lock; the file stays for the next run.
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> tuple[int | None, str | None]:
    """PID and job written by the lock's holder (it writes them just after locking)."""
    for _ in range(20):
        try:
            record = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        except ValueError:
            time.sleep(0.01)
            continue
        if isinstance(record, dict):
            pid = record.get("pid")
            job = record.get("job")
            return (
                pid if isinstance(pid, int) else None,
                str(job) if job else None,
            )
    return None, None


def _open(path: Path) -> sqlite3.Connection:
    """Open ``path``, check it is a readable checkpoint, and create the tables if it is new."""
    try:
        db = sqlite3.connect(path, isolation_level=None)
    except sqlite3.DatabaseError as exc:
        raise CorruptCheckpoint(path, str(exc)) from None
    try:
        db.execute("PRAGMA busy_timeout = 10000")
        problems = [str(row[0]) for row in db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise CorruptCheckpoint(path, "; ".join(problems[:3]))
        tables = {
            str(name)
            for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if tables:
            for table, columns in _COLUMNS.items():
                found = {str(row[1]) for row in db.execute(f'PRAGMA table_info("{table}")')}
                if found != columns:
                    raise CorruptCheckpoint(
                        path,
                        f"not a backfill checkpoint: table {table!r} "
                        + ("is missing" if not found else "has other columns"),
                    )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        if not tables:
            db.executescript(_SCHEMA)
    except sqlite3.OperationalError as exc:
        db.close()
        if "locked" in str(exc) or "busy" in str(exc):
            raise CheckpointError(path, f"checkpoint {path}: {exc}") from None
        raise CorruptCheckpoint(path, str(exc)) from None
    except sqlite3.DatabaseError as exc:
        db.close()
        raise CorruptCheckpoint(path, str(exc)) from None
    except BaseException:
        db.close()
        raise
    return db


class CheckpointStore:
    """Progress and rows of one backfill, in ``directory / CHECKPOINT_NAME``.

    Opening takes the checkpoint's lock (unless ``lock=False``, for reading a finished run) and
    checks the database is readable, raising :class:`CheckpointLocked` or
    :class:`CorruptCheckpoint` before anything else happens. ``restart=True`` deletes the
    database first (under the lock), which also recovers from a corrupt one. ``owner`` (the
    job's name or path) is written into the lock file for other runs' messages.
    """

    def __init__(
        self, directory: Path, *, restart: bool = False, lock: bool = True, owner: str = ""
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / CHECKPOINT_NAME
        self._lock = _Lock.acquire(directory / LOCK_NAME, self.path, owner) if lock else None
        try:
            if restart:
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            self._db = _open(self.path)
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise

    @classmethod
    def existing(cls, directory: Path, *, lock: bool = False) -> CheckpointStore | None:
        """Open the store in ``directory`` if there is one (creates nothing otherwise).

        Without ``lock`` it is for reading (a dry run, a look at a finished run).
        """
        return cls(directory, lock=lock) if (directory / CHECKPOINT_NAME).exists() else None

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the database and release the lock."""
        try:
            self._db.close()
        finally:
            if self._lock is not None:
                self._lock.release()

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def target(self) -> Target | None:
        """The target the stored rows come from (``None`` if none was recorded)."""
        text = self._meta("target")
        if text is None:
            return None
        try:
            return Target.from_json(text)
        except ValueError as exc:
            raise CorruptCheckpoint(self.path, f"unreadable target: {exc}") from None

    def check(self, plan: Plan, target: Target | None = None) -> None:
        """Raise if the store belongs to another target (:class:`TargetChanged`) or plan
        (:class:`JobChanged`). A store with no finished chunk belongs to anyone."""
        done = len(self.done())
        stored = self.target()
        if stored != target and done:
            raise TargetChanged(self.path, stored, target, done)
        fingerprint = self._meta("fingerprint")
        if fingerprint is None or fingerprint == plan.fingerprint:
            return
        old: Mapping[str, Any] = json.loads(self._meta("description") or "{}")
        raise JobChanged(describe_changes(old, plan.description), done)

    def begin(self, plan: Plan, *, target: Target | None = None, restart: bool = False) -> None:
        """Adopt ``plan`` and ``target``: check they match the stored ones (unless ``restart``,
        which discards everything)."""
        if restart:
            with self._transaction():
                self._db.execute("DELETE FROM rows")
                self._db.execute("DELETE FROM chunks")
                self._db.execute("DELETE FROM meta")
        else:
            self.check(plan, target)
        values = [
            ("fingerprint", plan.fingerprint),
            ("description", json.dumps(plan.description, sort_keys=True)),
        ]
        if target is not None:
            values.append(("target", target.to_json()))
        with self._transaction():
            if target is None:
                self._db.execute("DELETE FROM meta WHERE key = 'target'")
            for key, value in values:
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def done(self) -> set[tuple[str, int]]:
        """Keys of the finished chunks."""
        rows = self._db.execute("SELECT name, idx FROM chunks WHERE status = 'done'")
        return {(str(name), int(idx)) for name, idx in rows}

    def failures(self) -> dict[tuple[str, int], str]:
        """Failed chunks (not yet redone) and their last error."""
        rows = self._db.execute("SELECT name, idx, error FROM chunks WHERE status = 'failed'")
        return {(str(name), int(idx)): str(error) for name, idx, error in rows}

    def complete(self, task: ChunkTask, rows: Sequence[TidyRow]) -> None:
        """Store a finished chunk's rows and mark it done, in one transaction."""
        with self._transaction():
            self._db.execute("DELETE FROM rows WHERE name = ? AND idx = ?", task.key)
            self._db.executemany(
                "INSERT INTO rows (name, idx, seq, label, date, metric, value) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (task.name, task.index, seq, r.label, r.date, r.metric, r.value)
                    for seq, r in enumerate(rows)
                ],
            )
            self._upsert(task, "done", None)

    def fail(self, task: ChunkTask, error: str) -> None:
        """Record that ``task`` failed (it is tried again on the next run)."""
        with self._transaction():
            self._upsert(task, "failed", error)

    def _upsert(self, task: ChunkTask, status: str, error: str | None) -> None:
        self._db.execute(
            'INSERT INTO chunks (name, idx, start, "end", cost, status, error, finished_at) '
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (name, idx) DO UPDATE SET status = excluded.status, "
            "error = excluded.error, attempts = attempts + 1, finished_at = excluded.finished_at",
            (
                task.name,
                task.index,
                task.start.isoformat() if task.start else None,
                task.end.isoformat() if task.end else None,
                task.cost,
                status,
                error,
                time.time(),
            ),
        )

    def rows(self, names: Sequence[str]) -> Iterator[TidyRow]:
        """Every stored row of the queries ``names``, in that order, then by chunk and position."""
        for name in names:
            cursor = self._db.execute(
                "SELECT label, date, metric, value FROM rows WHERE name = ? ORDER BY idx, seq",
                (name,),
            )
            for label, day, metric, value in cursor:
                yield TidyRow(name, label, day, metric, value)


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
