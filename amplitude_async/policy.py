"""The admission policy: which waiting requests a budget store admits, and when to decide again.

Both stores decide with it: :class:`~amplitude_async.admission.InMemoryBudgetStore` calls these
functions; ``lua/policy.lua`` (see :mod:`amplitude_async.redis_store`) mirrors them with the
same names, for many processes at once. A decision sees one pool: its ledger at ``now`` (a
:class:`~amplitude_async.budget.PoolSnapshot`: room in every window, free in-flight slots, the
known expiries, a pause) and its queue of waiters (:class:`~amplitude_async.waiters.PoolQueue`,
every process's). It runs whenever something changes: a request queues, completes or is
cancelled, an entry leaves a window, a pause ends, a waiter's claim falls due.

**Admission order** (:func:`plan`):

1. *Starved* waiters (those past their *claim time*, below) come first, earliest claim first,
   whatever their priority. Only the first one claims in a decision (admitting every starved
   one first would turn a long backlog that outlived its claims into claim order, nearly FIFO,
   and ruin the packing); if it does not fit, it holds a *reservation*.
2. Then priorities are served from the highest down. Within a priority the heaviest waiting
   cost that fits goes first, repeatedly (:func:`~amplitude_async.budget.largest_first`): the
   small requests are kept to fill the gaps that expiries leave later. If waiters of that
   priority remain (none of them fits), its oldest holds the reservation.
3. While a reservation is held, other waiters are admitted only if they cannot delay it: the
   reserved request must still fit at the earliest time it could fit from the known expiry
   times, counting in-flight requests (and those admitted now) as never expiring, and one
   in-flight slot stays free for it. When that earliest time depends on completions, nothing
   else is admitted. A reservation only restrains the lower priorities still to come.

**Claim times** (:func:`settle_claims`). A request's claim time is set by the first decision a
*claim delay* (:func:`claim_delay`: a tenth of the window, at most a second) after the oldest
request still without a claim queued, for every request without one: that time, plus the
starvation bound, plus the time the budgets need at full use to admit all the weight then
waiting in its pool, its own and that of requests queued with it included (weight times
:func:`drain`, the largest ``length / budget`` of the pool's windows). The delay lets requests
that several processes queue at about the same moment count each other's work, as one
process's batch does. A request is only starving once it has waited longer than the work queued
with it takes to run: in a batch of twenty windows of work, a request still waiting after three
windows is not, and granting it a reservation would only cost packing (measured in
``benchmarks/sim_packing.py``). A request queued behind a stream of cheap ones that keep the
queue short gets a claim close to the starvation bound.

So admission is work-conserving (a request waits only if it does not fit, or admitting it
could delay a reserved one), and waits are bounded: a starved request becomes the reservation
holder once the starved ones with earlier claims are admitted, and from then on it waits at
most the longest response time plus the longest window that binds it (every entry it needs gone
has completed by then, and nothing admitted meanwhile stands in its way). Only starved requests
with earlier claims can be ahead of it, and all of them were queued before its claim time.

**The next decision** (:func:`next_decision`): after deciding, the store tells the owner that
keeps time for the queue when time alone could change the decision, so it exchanges again
then: never if nobody waits; with every in-flight slot taken, only when a lease runs out (a
completion arrives with an exchange anyway) or the claims fall due; otherwise the first of an
expiry that frees some weight, a lease running out, a pause ending, the claims falling due and
the earliest claim still to come.

Cost: waiters are bucketed by (priority, weight); a decision costs O(d log d) for d distinct
waiting costs (at most the window budget), independent of how many requests are queued, and
O(log n) in the n entries the ledger holds (see :class:`~amplitude_async.budget.PoolLedger`).
"""

from __future__ import annotations

import math
from typing import Final

from .budget import PoolSnapshot, Window, largest_first
from .limits import Limits
from .waiters import PoolQueue, Waiter

__all__ = [
    "DEFAULT_STARVATION_WINDOWS",
    "claim_delay",
    "default_starvation_bound",
    "drain",
    "next_decision",
    "plan",
    "settle_claims",
]

DEFAULT_STARVATION_WINDOWS: Final = 3.0
"""Default starvation bound, in windows of the limits."""


def claim_delay(limits: Limits) -> float:
    """How long requests queue before their claim times are set, together: a tenth of the
    window, at most a second. Requests queued within it by several processes count each
    other's work, as requests queued together by one process do."""
    return min(1.0, limits.window / 10)


def default_starvation_bound(limits: Limits) -> float:
    """The default starvation bound for ``limits``: three cost windows."""
    return DEFAULT_STARVATION_WINDOWS * limits.window


def drain(windows: tuple[Window, ...]) -> float:
    """Seconds a pool's budgets need, at full use, to admit one unit of weight."""
    return max(w.length / w.budget for w in windows)


def settle_claims(
    queue: PoolQueue, now: float, *, delay: float, starvation_bound: float, drain: float
) -> float:
    """Give the waiters queued without a claim their claim time if ``delay`` has passed since
    the oldest of them queued; return when their claims fall due (``inf``: none to set)."""
    if not queue.fresh:
        return math.inf
    due = queue.fresh_since + delay
    if now < due:
        return due
    queue.set_claims(now + starvation_bound + queue.backlog * drain)
    return math.inf


def plan(queue: PoolQueue, snap: PoolSnapshot) -> list[Waiter]:
    """Choose the waiters to admit at ``snap.now`` and mark them planned.

    The rules are this module's: the first starved waiter, then priorities from the highest
    down with heaviest-first packing, and a reservation that later admissions may not delay.
    """
    if snap.paused or not snap.slots:
        return []
    now = snap.now
    room, slots = snap.room(), snap.slots
    planned: list[Waiter] = []
    taken = 0
    reserved: Waiter | None = None

    def admit(waiter: Waiter) -> None:
        nonlocal room, slots, taken
        queue.plan(waiter)
        planned.append(waiter)
        room -= waiter.weight
        slots -= 1
        taken += waiter.weight

    def reserve(waiter: Waiter) -> None:
        # Others may only use room the reserved waiter will not need, and must leave it a slot.
        nonlocal room, slots, reserved
        reserved = waiter
        when = snap.earliest_fit(waiter.weight + taken, slots=len(planned) + 1)
        if when == math.inf:
            room, slots = 0, 0
            return
        room = min(room, snap.room_at(when) - taken - waiter.weight)
        slots -= 1

    # Only the first starved waiter claims: admitting every starved one first would turn a
    # long backlog that outlived its claims into claim (nearly FIFO) order and ruin the packing.
    first = queue.first_claim()
    if first is not None and first[0] <= now:
        if first[1].weight <= room:
            admit(first[1])
        else:
            reserve(first[1])

    levels = sorted(queue.levels, reverse=True)
    for index, priority in enumerate(levels):
        if slots <= 0 or room < 0:
            break
        if priority not in queue.levels:
            continue
        for weight, count in largest_first(queue.items(priority), room, slots).items():
            planned += queue.plan_heads(priority, weight, count)
            room -= weight * count
            slots -= count
            taken += weight * count
        # A reservation only restrains the lower priorities still to come.
        if reserved is None and index + 1 < len(levels) and priority in queue.levels:
            reserve(queue.oldest_at(priority))
    return planned


def next_decision(queue: PoolQueue, snap: PoolSnapshot, claims_due: float) -> float:
    """When time alone could next change the decision for a pool, after a decision at
    ``snap.now`` (``inf``: only an exchange can). ``snap`` is the ledger after the decision's
    admissions, its ``lease_until`` exact; ``claims_due`` is what :func:`settle_claims` said.

    - Nobody waits: never.
    - Every in-flight slot is taken: only a lease running out frees one (a completion comes
      with an exchange), or the claim times falling due.
    - Otherwise the first of: a window freeing some weight (an expiry of weight 0 frees
      nothing), a lease running out, the end of a pause, the claim times falling due, and the
      earliest claim still to come (a waiter starving).
    """
    if not queue.count:
        return math.inf
    if snap.in_flight >= snap.cap:
        return min(snap.lease_until, claims_due)
    change = min(snap.lease_until, claims_due)
    for expiries in snap.expiries:
        change = min(change, expiries.freed_at(1))
    if snap.paused:
        change = min(change, snap.paused_until)
    first = queue.first_claim()
    if first is not None and first[0] > snap.now:
        change = min(change, first[0])
    return change
