"""One call carried down the client's pipeline: the query and everything decided about it once.

A :class:`Call` is made by :meth:`AmplitudeClient.run <amplitude_async.client.AmplitudeClient.run>`
(and by ``gather``, ``as_completed``, split and backfills through it) and passed, as one object,
through the savers (coalescing and cache), the scheduler and the transport. What every stage
needs is computed once here: the query's cost, its pool, its wire parameters (percent-encoded
once, shared by the request URL and the cache key), the cache flags and the priority.

The priority can only go up while the call waits: when a caller with a higher priority joins a
coalesced flight, :meth:`Call.raise_priority` re-queues the flight's request at that priority in
the scheduler (and so in a shared budget store).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from ._settings import check_priority
from .limits import Pool
from .queries import Query

if TYPE_CHECKING:  # the scheduler imports nothing of calls; a call only holds its slot
    from .scheduler import Slot

__all__ = ["Call"]

R = TypeVar("R")


class Call(Generic[R]):
    """``query`` on its way: ``cost`` (checked), ``priority``, ``bypass_cache``, and the wire
    form ``encoded`` (percent-encoded parameters) computed once."""

    __slots__ = ("_slot", "bypass_cache", "cost", "encoded", "pool", "priority", "query")

    def __init__(
        self, query: Query[R], *, cost: int, priority: int = 0, bypass_cache: bool = False
    ) -> None:
        self.query = query
        self.pool: Pool = query.pool
        self.cost = cost
        self.priority = check_priority(priority)
        self.bypass_cache = bypass_cache
        self.encoded = query.encoded_params()
        self._slot: Slot | None = None

    def __repr__(self) -> str:
        return (
            f"<Call {type(self.query).__name__} pool={self.pool} cost={self.cost} "
            f"priority={self.priority}>"
        )

    @property
    def path(self) -> str:
        """The endpoint's path."""
        return self.query.path

    def waiting_in(self, slot: Slot | None) -> None:
        """Record the scheduler slot this call waits in now (``None`` once it has left it)."""
        self._slot = slot

    def raise_priority(self, priority: int) -> None:
        """Let the call run at least at ``priority`` from now on; if it waits in the scheduler,
        it is re-queued there at the higher priority. A lower value changes nothing."""
        priority = check_priority(priority)
        if priority <= self.priority:
            return
        self.priority = priority
        if self._slot is not None:
            self._slot.raise_priority(priority)
