"""A request waiting in this process for admission, and the states it goes through.

A waiter is created when a request queues (:meth:`Scheduler.slot
<amplitude_async.scheduler.Scheduler.slot>` entered) and is settled once: granted, given up
(its task cancelled), or failed (the store unavailable too long). Between, it is known to the
budget store or not yet, and the store may still hold a registration this process has given up
on. :class:`WaiterState` names these states; :data:`TRANSITIONS` is every move allowed between
them, and :meth:`Waiter.move` is the only way a state changes.
"""

from __future__ import annotations

import asyncio
import enum
from typing import TYPE_CHECKING, Final

from ..budget import weight_of
from ..limits import Pool

if TYPE_CHECKING:
    from .slots import Ticket

__all__ = ["TRANSITIONS", "Waiter", "WaiterState"]


class WaiterState(enum.Enum):
    """Where a waiting request stands with the budget store."""

    NEW = enum.auto()
    """Not yet sent to the store: the next exchange registers it."""
    SENT = enum.auto()
    """Registered in the store, waiting for a grant."""
    CANCELLING = enum.auto()
    """Given up here (or replaced by a registration at a higher priority) while the store may
    still hold it: its cancellation is on its way, and a grant that crosses it is given back."""
    DONE = enum.auto()
    """Settled: granted, cancelled in the store, or failed. Nothing more happens to it."""

    # Members are singletons compared by identity: hashed by identity too, in C (Enum's own
    # hash is a Python call, and every move looks a state up twice).
    __hash__ = object.__hash__


TRANSITIONS: Final[dict[WaiterState, frozenset[WaiterState]]] = {
    WaiterState.NEW: frozenset(
        {
            WaiterState.SENT,  # its registration went out with an exchange
            WaiterState.DONE,  # granted (a lost answer's grant delivered anyway), given up, failed
        }
    ),
    WaiterState.SENT: frozenset(
        {
            WaiterState.NEW,  # its exchange failed, the store forgot this process, or re-queued
            WaiterState.CANCELLING,  # given up or failed: the store must hear of it
            WaiterState.DONE,  # granted, or cancelled in the store
        }
    ),
    WaiterState.CANCELLING: frozenset(
        {
            WaiterState.DONE,  # the store confirmed the cancellation, granted it (given back),
            # or forgot it
        }
    ),
    WaiterState.DONE: frozenset(),
}
"""Every state a waiter may move to from each state; ``DONE`` is final."""


class Waiter:
    """One request of this process waiting for admission in ``pool`` at ``cost``.

    It starts ``NEW``; the one exception is the placeholder that stands, ``CANCELLING``, for a
    registration replaced at a higher priority until the store confirms its cancellation.

    ``local`` is its id in the store (with ``pool``); a waiter queued again at a higher priority
    gets a new one. ``weight`` is what its cost weighs in the pool
    (:func:`~amplitude_async.budget.weight_of`; computed unless given). ``future`` receives the
    :class:`~amplitude_async.scheduler.Ticket` once granted (``ticket`` keeps it, to give the
    grant back if the task is cancelled before it runs).
    """

    __slots__ = (
        "cost",
        "future",
        "local",
        "pool",
        "priority",
        "queued_at",
        "state",
        "ticket",
        "weight",
    )

    def __init__(
        self,
        local: int,
        pool: Pool,
        cost: int,
        priority: int,
        queued_at: float,
        future: asyncio.Future[Ticket],
        state: WaiterState = WaiterState.NEW,
        *,
        weight: int | None = None,
    ) -> None:
        self.local = local
        self.pool = pool
        self.cost = cost
        self.weight = weight_of(pool, cost) if weight is None else weight
        self.priority = priority
        self.queued_at = queued_at
        self.future = future
        self.state = state
        self.ticket: Ticket | None = None

    @property
    def key(self) -> tuple[Pool, int]:
        """Its id in the store: ``(pool, local)``."""
        return (self.pool, self.local)

    def move(self, to: WaiterState) -> None:
        """Change state to ``to``, which :data:`TRANSITIONS` must allow."""
        assert to in TRANSITIONS[self.state], f"a waiter cannot go from {self.state} to {to}"
        self.state = to

    def __repr__(self) -> str:
        return (
            f"<Waiter {self.pool} #{self.local} cost={self.cost} priority={self.priority} "
            f"{self.state.name}>"
        )
