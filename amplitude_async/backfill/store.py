"""The checkpoint store: a backfill's progress and rows in an SQLite database.

The database (``checkpoint.sqlite3`` in the output directory) holds the plan's fingerprint and
description, one row per finished or failed chunk, and every finished chunk's tidy rows. A
chunk's rows and its "done" mark are written in one transaction, so after a crash at any
moment a chunk is either wholly there or not at all: a resumed run redoes exactly the chunks
that are not done, and the output files, assembled from the database, have no missing and no
duplicate rows. The database runs in WAL mode; a commit survives the process being killed.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from ..errors import AmplitudeError
from .output import TidyRow
from .plan import ChunkTask, Plan, describe_changes

__all__ = ["CHECKPOINT_NAME", "CheckpointStore", "JobChanged"]

CHECKPOINT_NAME: Final = "checkpoint.sqlite3"
"""The checkpoint database's file name in the output directory."""

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


class JobChanged(AmplitudeError):
    """The job's plan differs from the one the checkpoint was made with."""

    def __init__(self, changes: str, done: int) -> None:
        self.changes = changes
        self.done = done
        super().__init__(
            f"the job changed since the last run ({changes}); run again with --restart to "
            f"discard the {done} finished chunk(s) and start over"
        )


class CheckpointStore:
    """Progress and rows of one backfill, in ``directory / CHECKPOINT_NAME``."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / CHECKPOINT_NAME
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    @classmethod
    def existing(cls, directory: Path) -> CheckpointStore | None:
        """Open the store in ``directory`` if there is one (creates nothing otherwise)."""
        return cls(directory) if (directory / CHECKPOINT_NAME).exists() else None

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
        """Close the database."""
        self._db.close()

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def check(self, plan: Plan) -> None:
        """Raise :class:`JobChanged` if the store belongs to a different plan."""
        fingerprint = self._meta("fingerprint")
        if fingerprint is None or fingerprint == plan.fingerprint:
            return
        old: Mapping[str, Any] = json.loads(self._meta("description") or "{}")
        raise JobChanged(describe_changes(old, plan.description), len(self.done()))

    def begin(self, plan: Plan, *, restart: bool = False) -> None:
        """Adopt ``plan``: check it matches (unless ``restart``, which discards everything)."""
        if restart:
            with self._transaction():
                self._db.execute("DELETE FROM rows")
                self._db.execute("DELETE FROM chunks")
                self._db.execute("DELETE FROM meta")
        else:
            self.check(plan)
        with self._transaction():
            for key, value in (
                ("fingerprint", plan.fingerprint),
                ("description", json.dumps(plan.description, sort_keys=True)),
            ):
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
