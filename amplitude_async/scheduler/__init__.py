"""The cost-aware scheduler: admits (pool, cost) items so the budgets are filled but never exceeded.

It knows nothing of HTTP. A caller wraps each request in ``async with scheduler.slot(pool, cost)``:
the block starts once the budgets admit the request (the entry is recorded at that moment, the
dispatch) and its exit marks the response complete. The accounting rule and why it rules out 429s
are in :mod:`amplitude_async.budget`.

Admission order, decided each time something changes (a request queues, completes or is
cancelled, an entry leaves a window, a pause ends, a waiter's claim falls due):

1. *Starved* waiters (those past their *claim time*, below) come first, earliest claim first,
   whatever their priority. The first one that does not fit holds a *reservation*.
2. Then priorities are served from the highest down. Within a priority the heaviest waiting
   cost that fits goes first, repeatedly (:func:`~amplitude_async.budget.largest_first`): the
   small requests are kept to fill the gaps that expiries leave later. If waiters of that
   priority remain (none of them fits), its oldest holds the reservation.
3. While a reservation is held, other waiters are admitted only if they cannot delay it: the
   reserved request must still fit at the earliest time it could fit from the known expiry times,
   counting in-flight requests (and those admitted now) as never expiring, and one in-flight slot
   stays free for it. When that earliest time depends on completions, nothing else is admitted.

A request's claim time is set by the first decision a *claim delay* (a tenth of the window, at
most a second: :func:`~amplitude_async.admission.claim_delay`) after the oldest request still
without a claim queued, for every request without one: that time, plus ``starvation_bound``,
plus the time the budgets need at full use to admit all the weight then waiting in its pool,
its own and that of requests queued with it included (weight times the largest
``length / budget`` of the pool's windows). The delay lets requests that several processes
queue at about the same moment count each other's work, as one process's batch does.
A request is only starving once it has waited longer than the work queued with it takes to
run: in a batch of twenty windows of work, a request still waiting after three windows is not,
and granting it a reservation would only cost packing (measured in
``benchmarks/sim_packing.py``). A request queued behind a stream of cheap ones that keep the
queue short gets a claim close to ``starvation_bound``.

So the scheduler is work-conserving (a request waits only if it does not fit, or admitting it
could delay a reserved one), and waits are bounded: a starved request becomes the reservation
holder once the starved ones with earlier claims are admitted, and from then on it waits at most
the longest response time plus the longest window that binds it (every entry it needs gone has
completed by then, and nothing admitted meanwhile stands in its way). Only starved requests
with earlier claims can be ahead of it, and all of them were queued before its claim time.

Waiters are bucketed by (priority, weight); a decision costs O(d log d) for d distinct waiting
costs (at most the window budget), independent of how many requests are queued, and
O(log n) in the n entries the ledger holds (see :class:`~amplitude_async.budget.PoolLedger`).

The package, one module per job: :mod:`~amplitude_async.scheduler.slots` (:class:`Scheduler`,
:class:`Slot`, :class:`Ticket` and this process's waiting requests),
:mod:`~amplitude_async.scheduler.states` (a waiting request and its states),
:mod:`~amplitude_async.scheduler.exchange` (the loop that talks to the budget store: where
decisions run, and what happens when the store fails), :mod:`~amplitude_async.scheduler.statistics`
(the snapshots of :meth:`Scheduler.statistics`) and :mod:`~amplitude_async.scheduler.pacing`
(optional pacing).
"""

from .exchange import CLOSE_WAIT as CLOSE_WAIT
from .exchange import DEFAULT_LEASE, DEFAULT_UNAVAILABLE_WAIT, HEARTBEAT, LEASE_MARGIN
from .exchange import RETRY_MAX as RETRY_MAX
from .exchange import RETRY_MIN as RETRY_MIN
from .pacing import PACING_STEPS as PACING_STEPS
from .slots import Scheduler, Slot, Ticket
from .statistics import PoolStatistics, SchedulerStatistics

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_UNAVAILABLE_WAIT",
    "HEARTBEAT",
    "LEASE_MARGIN",
    "PoolStatistics",
    "Scheduler",
    "SchedulerStatistics",
    "Slot",
    "Ticket",
]
