"""The queue of one pool of a budget store: its waiting requests, bucketed for the decision.

The decision (:mod:`amplitude_async.policy`) reads it in three ways: by priority and weight
(:attr:`PoolQueue.levels`, so a decision costs O(d log d) for d distinct waiting costs, however
many requests wait), by claim time (:meth:`PoolQueue.first_claim`, for the starvation rule), and
by arrival within a priority (:meth:`PoolQueue.oldest_at`, for the reservation). Pure data; no
clock, no I/O.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from typing import Final

__all__ = ["DONE", "PLANNED", "WAITING", "PoolQueue", "Waiter"]

WAITING: Final = 0
"""A waiter's state: in the queue."""
PLANNED: Final = 1
"""A waiter's state: chosen by a decision, its entry being taken."""
DONE: Final = 2
"""A waiter's state: granted or cancelled."""


class Waiter:
    """A request waiting in a store's queue."""

    __slots__ = ("local", "owner", "priority", "seq", "state", "weight")

    def __init__(self, owner: str, local: int, weight: int, priority: int, seq: int) -> None:
        self.owner = owner
        self.local = local
        self.weight = weight
        self.priority = priority
        self.seq = seq
        self.state = WAITING

    def __repr__(self) -> str:
        return f"<Waiter {self.owner}:{self.local} w={self.weight} p={self.priority}>"


class _Bucket:
    """Waiters of one (priority, weight), in arrival order; dead ones are skipped lazily."""

    __slots__ = ("live", "waiters")

    def __init__(self) -> None:
        self.waiters: deque[Waiter] = deque()
        self.live = 0

    def head(self) -> Waiter:
        while self.waiters[0].state != WAITING:
            self.waiters.popleft()
        return self.waiters[0]


class _Batch:
    """Waiters that got their claim time from the same decision, in arrival order."""

    __slots__ = ("pos", "waiters")

    def __init__(self, waiters: list[Waiter]) -> None:
        self.waiters = waiters
        self.pos = 0  # waiters before it are done


class PoolQueue:
    """The waiting requests of one pool, bucketed by (priority, weight)."""

    def __init__(self) -> None:
        self.levels: dict[int, dict[int, _Bucket]] = {}
        # Claim order for the starvation rule: one heap entry per decision's batch of fresh
        # waiters (they share a claim time), keyed by (claim time, first arrival). Batches hold
        # disjoint, increasing ranges of arrivals, so the first live waiter of the top batch is
        # the earliest claim overall.
        self.claims: list[tuple[float, int, _Batch]] = []
        # Queued without a claim yet, since ``fresh_since``: their claims are set together
        # (see :func:`amplitude_async.policy.settle_claims`).
        self.fresh: list[Waiter] = []
        self.fresh_since = math.inf
        self.count = 0
        self.backlog = 0  # total weight waiting

    def add(self, waiter: Waiter) -> None:
        buckets = self.levels.get(waiter.priority)
        if buckets is None:
            buckets = self.levels[waiter.priority] = {}
        bucket = buckets.get(waiter.weight)
        if bucket is None:
            bucket = buckets[waiter.weight] = _Bucket()
        bucket.waiters.append(waiter)
        bucket.live += 1
        self.fresh.append(waiter)
        self.count += 1
        self.backlog += waiter.weight

    def _unlink(self, waiter: Waiter) -> None:
        buckets = self.levels[waiter.priority]
        bucket = buckets[waiter.weight]
        bucket.live -= 1
        self.count -= 1
        self.backlog -= waiter.weight
        if not bucket.live:
            del buckets[waiter.weight]
            if not buckets:
                del self.levels[waiter.priority]

    def discard(self, waiter: Waiter) -> None:
        """Forget a waiting ``waiter`` (cancelled)."""
        self._unlink(waiter)
        waiter.state = DONE

    def plan(self, waiter: Waiter) -> None:
        """Take ``waiter`` out of the queue for admission."""
        self._unlink(waiter)
        waiter.state = PLANNED

    def plan_heads(self, priority: int, weight: int, count: int) -> list[Waiter]:
        """Take the ``count`` earliest waiters of ``(priority, weight)`` (no more than wait)
        out of the queue for admission, as :meth:`plan` takes one."""
        buckets = self.levels[priority]
        bucket = buckets[weight]
        waiters = bucket.waiters
        taken: list[Waiter] = []
        while len(taken) < count:
            waiter = waiters.popleft()
            if waiter.state == WAITING:
                waiter.state = PLANNED
                taken.append(waiter)
        bucket.live -= count
        self.count -= count
        self.backlog -= weight * count
        if not bucket.live:
            del buckets[weight]
            if not buckets:
                del self.levels[priority]
        return taken

    def set_claims(self, claim_at: float) -> None:
        """Give the waiters queued without a claim their claim time."""
        fresh = self.fresh
        if fresh:
            heapq.heappush(self.claims, (claim_at, fresh[0].seq, _Batch(fresh)))
            self.fresh = []

    def first_claim(self) -> tuple[float, Waiter] | None:
        """The waiting waiter with the earliest claim, and its claim time."""
        claims = self.claims
        while claims:
            claim_at, _, batch = claims[0]
            waiters, pos = batch.waiters, batch.pos
            while pos < len(waiters) and waiters[pos].state == DONE:
                pos += 1
            batch.pos = pos
            if pos == len(waiters):
                heapq.heappop(claims)
                continue
            if waiters[pos].state == WAITING:
                return claim_at, waiters[pos]
            # A planned head (only while a decision takes its entries): look further, the
            # slow way; there are at most a few planned waiters.
            return min(
                ((at, w) for at, _, b in claims for w in b.waiters[b.pos :] if w.state == WAITING),
                key=lambda item: (item[0], item[1].seq),
                default=None,
            )
        return None

    def oldest_at(self, priority: int) -> Waiter:
        """The waiting waiter of ``priority`` that arrived first."""
        return min((b.head() for b in self.levels[priority].values()), key=lambda w: w.seq)

    def items(self, priority: int) -> list[tuple[int, int]]:
        """``(weight, how many wait)`` for each weight waiting at ``priority``."""
        return [(weight, b.live) for weight, b in self.levels[priority].items()]
