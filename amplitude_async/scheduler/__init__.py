"""The cost-aware scheduler: admits (pool, cost) items so the budgets are filled but never exceeded.

It knows nothing of HTTP. A caller wraps each request in ``async with scheduler.slot(pool, cost)``:
the block starts once the budgets admit the request (the entry is recorded at that moment, the
dispatch) and its exit marks the response complete. The accounting rule and why it rules out 429s
are in :mod:`amplitude_async.budget`.

Which waiting request goes next, and when the next decision is due, is the admission policy:
its rules (starved claims first, then priorities with the heaviest fitting cost first, a
reservation nothing may delay, bounded waits) are written once, beside their code, in
:mod:`amplitude_async.policy`. The scheduler only carries this process's requests to the
budget store that applies it and hands the grants back.

The package, one module per job: :mod:`~amplitude_async.scheduler.slots` (:class:`Scheduler`,
:class:`Slot`, :class:`Ticket` and this process's waiting requests),
:mod:`~amplitude_async.scheduler.states` (a waiting request and its states),
:mod:`~amplitude_async.scheduler.exchange` (the loop that talks to the budget store: where
decisions run, and what happens when the store fails), :mod:`~amplitude_async.scheduler.statistics`
(the snapshots of :meth:`Scheduler.statistics`) and :mod:`~amplitude_async.scheduler.pacing`
(optional pacing).
"""

from .exchange import CLOSE_WAIT as CLOSE_WAIT
from .exchange import DECISION_TURNS as DECISION_TURNS
from .exchange import DECISION_WAIT as DECISION_WAIT
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
