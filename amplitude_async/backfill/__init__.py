"""Resumable bulk backfills: a job file, its plan, a checkpoint store, a runner, output files.

::

    job = load_job("job.toml")
    plan = plan_job(job, client.limits)
    with CheckpointStore(job.output) as store:
        store.begin(plan)
        report = await run_backfill(plan, client, store)
        write_outputs(job, plan, store)

The command line's ``amplitude-async backfill JOB.toml`` does the same with a progress line,
Ctrl-C handling and exit codes.
"""

from __future__ import annotations

from pathlib import Path

from .job import FORMATS, EmulatorSettings, Job, JobQuery, build_query, load_job, parse_job
from .output import COLUMNS, TidyRow, tidy_rows, write_csv, write_jsonl
from .plan import ChunkTask, Plan, describe_changes, ideal_seconds, plan_job
from .runner import BackfillReport, Progress, run_backfill
from .store import CHECKPOINT_NAME, CheckpointStore, JobChanged

__all__ = [
    "CHECKPOINT_NAME",
    "COLUMNS",
    "FORMATS",
    "BackfillReport",
    "CheckpointStore",
    "ChunkTask",
    "EmulatorSettings",
    "Job",
    "JobChanged",
    "JobQuery",
    "Plan",
    "Progress",
    "TidyRow",
    "build_query",
    "describe_changes",
    "ideal_seconds",
    "load_job",
    "parse_job",
    "plan_job",
    "run_backfill",
    "tidy_rows",
    "write_csv",
    "write_jsonl",
    "write_outputs",
]


def write_outputs(job: Job, plan: Plan, store: CheckpointStore) -> list[Path]:
    """Assemble the output files of ``job`` from ``store`` (each written atomically).

    Files are ``rows.jsonl`` and/or ``rows.csv`` in the job's output directory, in job order.
    """
    written = []
    for fmt in job.formats:
        rows = store.rows(plan.names)
        if fmt == "jsonl":
            written.append(write_jsonl(job.output / "rows.jsonl", rows))
        else:
            written.append(write_csv(job.output / "rows.csv", rows))
    return written
