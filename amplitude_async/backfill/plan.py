"""Planning a backfill: every (query, date chunk) of a job, its cost and how long it takes.

Chunks hold whole buckets of the query's interval (weeks start on Sunday, months on the 1st,
see :func:`amplitude_async.split.chunk_ranges`) and are at most ``chunk_days`` long, or one
bucket when a bucket is longer; they are shortened further when a chunk of that length would
exceed the window budget. A query without dates is one chunk.

A plan has a *fingerprint*: a hash of its normalised description (per query name: endpoint,
wire parameters without the dates, and the chunk ranges). The checkpoint store keeps it, so a
changed job file is detected, and :func:`describe_changes` says what changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import date
from typing import Any, Final

from attrs import frozen

from ..errors import QueryTooExpensive
from ..limits import Limits
from ..queries import DatedQuery, Query
from ..split import aligned_chunks, max_chunk_days
from .job import Job

__all__ = ["MAX_CHUNKS", "ChunkTask", "Plan", "describe_changes", "ideal_seconds", "plan_job"]

MAX_CHUNKS: Final = 100_000
"""The most chunks a plan may have (checked from the chunk sizes before any is made)."""


@frozen
class ChunkTask:
    """One request of a backfill: chunk ``index`` of the job query ``name``."""

    name: str
    index: int
    query: Query[Any]

    @property
    def key(self) -> tuple[str, int]:
        """``(name, index)``: the chunk's identity in the checkpoint store."""
        return (self.name, self.index)

    @property
    def cost(self) -> int:
        """The chunk's cost."""
        return self.query.cost

    @property
    def start(self) -> date | None:
        """The chunk's first day (``None`` for undated queries)."""
        return self.query.start if isinstance(self.query, DatedQuery) else None

    @property
    def end(self) -> date | None:
        """The chunk's last day (``None`` for undated queries)."""
        return self.query.end if isinstance(self.query, DatedQuery) else None


@frozen
class Plan:
    """Every chunk of a job, in job order, with the plan's description and fingerprint."""

    tasks: tuple[ChunkTask, ...]
    description: Mapping[str, Any]
    fingerprint: str
    names: tuple[str, ...]

    @property
    def total_cost(self) -> int:
        """The cost of every chunk together."""
        return sum(task.cost for task in self.tasks)


def ideal_seconds(cost: int, limits: Limits) -> float:
    """The least time ``cost`` can be spent in: the tighter of the window and hourly budgets."""
    return max(
        cost / limits.cost_per_window * limits.window,
        cost / limits.cost_per_hour * limits.hour,
    )


def _describe(name: str, query: Query[Any], chunks: list[Query[Any]]) -> dict[str, Any]:
    params = [[k, v] for k, v in query.params() if k not in ("start", "end")]
    ranges = [[c.start.isoformat(), c.end.isoformat()] for c in chunks if isinstance(c, DatedQuery)]
    return {"endpoint": query.endpoint, "params": params, "chunks": ranges}


def _chunks(
    name: str,
    query: Query[Any],
    chunk_days: int,
    budget: int,
    room: int,
    span: tuple[date, date] | None = None,
) -> list[Query[Any]]:
    if not isinstance(query, DatedQuery):
        if query.cost > budget:
            raise QueryTooExpensive(query.cost, budget, "cost_per_window", f"query {name!r}")
        return [query]
    # Each chunk's rows are stored as they are: no merge, so any query may be cut (split's
    # exactness rules do not apply), and a daily range longer than one request is cut too.
    start, end = span or (query.start, query.end)
    days = max_chunk_days(query, budget, chunk_days)
    chunks: list[Query[Any]] = list(
        aligned_chunks(
            query,
            start,
            end,
            days,
            budget,
            label=f"query {name!r}: ",
            max_chunks=room,
            chunk_cap=MAX_CHUNKS,
        )
    )
    return chunks


def plan_job(job: Job, limits: Limits) -> Plan:
    """Plan every chunk of ``job`` so that each fits ``limits.cost_per_window``.

    Raises :class:`~amplitude_async.errors.QueryTooExpensive` naming the query when a single
    day (or bucket) of it exceeds the budget, and :class:`~amplitude_async.errors.InvalidQuery`
    when the plan would exceed :data:`MAX_CHUNKS`.
    """
    tasks: list[ChunkTask] = []
    description: dict[str, Any] = {}
    for item in job.queries:
        room = MAX_CHUNKS - len(tasks)
        chunks = _chunks(
            item.name, item.query, job.chunk_days, limits.cost_per_window, room, item.span
        )
        description[item.name] = _describe(item.name, item.query, chunks)
        tasks.extend(ChunkTask(item.name, i, chunk) for i, chunk in enumerate(chunks))
    text = json.dumps(description, sort_keys=True, separators=(",", ":"))
    fingerprint = hashlib.sha256(text.encode()).hexdigest()
    return Plan(
        tasks=tuple(tasks),
        description=description,
        fingerprint=fingerprint,
        names=tuple(item.name for item in job.queries),
    )


def _param_changes(old: list[list[str]], new: list[list[str]]) -> str:
    def grouped(params: list[list[str]]) -> dict[str, str]:
        # Repeated parameters (one "s" per segment, one "e" per step) are compared together.
        out: dict[str, list[str]] = {}
        for key, value in params:
            out.setdefault(key, []).append(value)
        return {key: " ".join(values) for key, values in out.items()}

    before, after = grouped(old), grouped(new)
    parts = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            parts.append(f"{key} {before.get(key, '(unset)')} -> {after.get(key, '(unset)')}")
    return ", ".join(parts) or "parameter order changed"


def describe_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """What differs between two plan descriptions, in one line."""
    changes = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            changes.append(f"query {name!r} removed")
        elif name not in old:
            changes.append(f"query {name!r} added")
        elif old[name] != new[name]:
            a, b = old[name], new[name]
            if a["endpoint"] != b["endpoint"]:
                changes.append(f"query {name!r}: endpoint {a['endpoint']} -> {b['endpoint']}")
            elif a["params"] != b["params"]:
                changes.append(f"query {name!r}: {_param_changes(a['params'], b['params'])}")
            else:
                span_a = f"{a['chunks'][0][0]}..{a['chunks'][-1][1]}" if a["chunks"] else "-"
                span_b = f"{b['chunks'][0][0]}..{b['chunks'][-1][1]}" if b["chunks"] else "-"
                changes.append(
                    f"query {name!r}: chunks {span_a} in {len(a['chunks'])} -> "
                    f"{span_b} in {len(b['chunks'])}"
                )
    return "; ".join(changes) or "the plan changed"
