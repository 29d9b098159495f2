"""Resumable bulk backfills: a job file, its plan, a checkpoint store, a runner, output files.

::

    job = load_job("job.toml")
    plan = plan_job(job, client.limits)
    with CheckpointStore(job.output) as store:          # locked until closed
        store.begin(plan, target=Target.api(client.base_url, api_key))
        report = await run_backfill(plan, client, store)
        write_outputs(job, plan, store)

The command line's ``amplitude-async backfill JOB.toml`` does the same with a progress line,
Ctrl-C handling and exit codes. Beside the rows, ``manifest.json`` says which target produced
them, from which job and plan, and how many chunks are done.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from .job import (
    DEFAULT_FORMATS,
    FORMATS,
    MAX_EMULATOR_DAYS,
    MAX_EMULATOR_USERS,
    MAX_RANGE_DAYS,
    SOURCES,
    EmulatorSettings,
    Job,
    JobQuery,
    build_query,
    load_job,
    parse_job,
)
from .output import (
    COLUMNS,
    PARQUET_COLUMNS,
    TidyRow,
    atomic_write,
    tidy_rows,
    write_csv,
    write_jsonl,
    write_parquet_rows,
)
from .plan import MAX_CHUNKS, ChunkTask, Plan, describe_changes, ideal_seconds, plan_job
from .runner import BackfillReport, Progress, run_backfill
from .store import (
    CHECKPOINT_NAME,
    LOCK_NAME,
    CheckpointError,
    CheckpointLocked,
    CheckpointStore,
    CorruptCheckpoint,
    JobChanged,
    TargetChanged,
)
from .target import Target, key_fingerprint

__all__ = [
    "CHECKPOINT_NAME",
    "COLUMNS",
    "DEFAULT_FORMATS",
    "FORMATS",
    "LOCK_NAME",
    "MANIFEST_NAME",
    "MAX_CHUNKS",
    "MAX_EMULATOR_DAYS",
    "MAX_EMULATOR_USERS",
    "MAX_RANGE_DAYS",
    "PARQUET_COLUMNS",
    "SOURCES",
    "BackfillReport",
    "CheckpointError",
    "CheckpointLocked",
    "CheckpointStore",
    "ChunkTask",
    "CorruptCheckpoint",
    "EmulatorSettings",
    "Job",
    "JobChanged",
    "JobQuery",
    "Plan",
    "Progress",
    "Target",
    "TargetChanged",
    "TidyRow",
    "build_query",
    "describe_changes",
    "ideal_seconds",
    "key_fingerprint",
    "load_job",
    "parse_job",
    "plan_job",
    "remove_outputs",
    "run_backfill",
    "tidy_rows",
    "write_csv",
    "write_jsonl",
    "write_outputs",
    "write_parquet_rows",
]

MANIFEST_NAME: Final = "manifest.json"
"""The file beside the rows saying which target, job and plan produced them."""

_ROW_FILES: Final = {"jsonl": "rows.jsonl", "csv": "rows.csv", "parquet": "rows.parquet"}


def write_outputs(job: Job, plan: Plan, store: CheckpointStore) -> list[Path]:
    """Assemble the output files of ``job`` from ``store`` (each written atomically).

    Files are ``rows.jsonl``, ``rows.csv`` and/or ``rows.parquet`` in the job's output
    directory, in job order, then :data:`MANIFEST_NAME`: the target the rows come from, the
    job, the plan's fingerprint, the chunk counts and each file's row count.
    """
    written = []
    counts: dict[str, int] = {}
    target = store.target()
    source = None if target is None else target.describe()
    for fmt in job.formats:
        path = job.output / _ROW_FILES[fmt]
        counts[path.name] = 0

        def counted(name: str = path.name) -> Iterator[TidyRow]:
            # Streamed, so a large backfill is never held in memory whole.
            for row in store.rows(plan.names):
                counts[name] += 1
                yield row

        rows = counted()
        if fmt == "parquet":
            written.append(write_parquet_rows(path, rows, source=source))
        else:
            written.append(write_jsonl(path, rows) if fmt == "jsonl" else write_csv(path, rows))
    done = store.done()
    manifest = {
        "target": None if target is None else target.as_dict(),
        "job": None if job.source is None else str(job.source),
        "plan_fingerprint": plan.fingerprint,
        "chunks": {
            "total": len(plan.tasks),
            "done": sum(1 for t in plan.tasks if t.key in done),
            "failed": len(store.failures()),
        },
        "columns": list(COLUMNS),
        "files": counts,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if "parquet" in job.formats:
        manifest["parquet_columns"] = {c.name: c.type for c in PARQUET_COLUMNS}
    text = json.dumps(manifest, indent=2) + "\n"
    written.append(atomic_write(job.output / MANIFEST_NAME, lambda handle: handle.write(text)))
    return written


def remove_outputs(job: Job) -> None:
    """Delete the output files of ``job`` (not the checkpoint): a restarted job's old rows and
    manifest must not outlive it."""
    for name in (*_ROW_FILES.values(), MANIFEST_NAME):
        (job.output / name).unlink(missing_ok=True)
