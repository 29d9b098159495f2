"""Coalescing: identical work in flight at the same time is done once.

:class:`Coalescer` runs one task per key; a caller that asks for a key already in flight waits
for that task instead of starting another, and every caller gets its result or its exception.
The task belongs to no caller: a caller that is cancelled leaves, and only when the last one
has left is the task cancelled, so one impatient viewer never fails the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["Coalescer"]

T = TypeVar("T")


class _Flight(Generic[T]):
    __slots__ = ("context", "key", "owner", "task", "waiters")

    def __init__(self, owner: Coalescer, key: Hashable, context: Any) -> None:
        self.owner = owner
        self.key = key
        self.context = context
        # Insertion-ordered: callers hear the outcome in the order they came.
        self.waiters: dict[asyncio.Future[T], None] = {}
        self.task: asyncio.Task[T] | None = None

    def done(self, task: asyncio.Task[T]) -> None:
        """The work ended: every caller still waiting gets its outcome."""
        self.owner._forget(self.key, self)
        if task.cancelled():
            outcome: BaseException | None = asyncio.CancelledError()
        else:
            # Retrieved even when every caller has left, so asyncio does not log "exception
            # was never retrieved" for an error nobody asked about.
            outcome = task.exception()
        for waiter in self.waiters:
            if waiter.done():
                continue
            if outcome is None:
                waiter.set_result(task.result())
            elif isinstance(outcome, asyncio.CancelledError):
                waiter.cancel()
            else:
                waiter.set_exception(outcome)


class Coalescer:
    """Run at most one task per key at a time and share its outcome with every caller."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight[Any]] = {}

    def __repr__(self) -> str:
        return f"<Coalescer in_flight={len(self._flights)}>"

    def __len__(self) -> int:
        return len(self._flights)

    def waiters(self, key: Hashable) -> int:
        """Callers waiting for ``key`` right now (0: nothing in flight for it)."""
        flight = self._flights.get(key)
        return 0 if flight is None else len(flight.waiters)

    def context(self, key: Hashable) -> Any:
        """The ``context`` given by the caller that started the flight for ``key`` (``None``:
        nothing in flight for it)."""
        flight = self._flights.get(key)
        return None if flight is None else flight.context

    async def run(
        self, key: Hashable, work: Callable[[], Coroutine[Any, Any, T]], *, context: Any = None
    ) -> T:
        """``work()``'s result, shared with every concurrent caller of the same ``key``.

        Starts ``work()`` unless it is already in flight for ``key``; raises what it raised.
        ``context`` is kept with a flight this call starts (see :meth:`context`).
        """
        loop = asyncio.get_running_loop()
        flight: _Flight[T] | None = self._flights.get(key)
        if flight is None:
            flight = _Flight(self, key, context)
            flight.task = loop.create_task(work())
            flight.task.add_done_callback(flight.done)
            self._flights[key] = flight
        # Each caller waits on a future of its own: cancelling the caller cancels that future
        # only, never the shared task (what asyncio.shield does, without its extra wrapping).
        mine: asyncio.Future[T] = loop.create_future()
        flight.waiters[mine] = None
        try:
            return await mine
        finally:
            if not mine.done() or mine.cancelled():
                self._left(flight, mine)

    def _left(self, flight: _Flight[Any], mine: asyncio.Future[Any]) -> None:
        """A caller left before the outcome: when nobody waits any more, stop the work, and
        let the next caller start afresh."""
        waiters = flight.waiters
        waiters.pop(mine, None)
        task = flight.task
        if not waiters and task is not None and not task.done():
            self._forget(flight.key, flight)
            task.cancel()

    def _forget(self, key: Hashable, flight: _Flight[Any]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
