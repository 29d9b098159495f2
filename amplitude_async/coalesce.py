"""Coalescing: identical work in flight at the same time is done once.

:class:`Coalescer` runs one task per key; a caller that asks for a key already in flight waits
for that task instead of starting another, and every caller gets its result or its exception.
The task belongs to no caller: a caller that is cancelled leaves, and only when the last one
has left is the task cancelled, so one impatient viewer never fails the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["Coalescer"]

T = TypeVar("T")


class _Flight(Generic[T]):
    __slots__ = ("context", "task", "waiters")

    def __init__(self, task: asyncio.Task[T], context: Any) -> None:
        self.task = task
        self.context = context
        self.waiters = 0


def _consume(task: asyncio.Task[Any]) -> None:
    # Every waiter may have left before the task failed: retrieve the exception so asyncio
    # does not log "exception was never retrieved" for an error nobody asked about.
    if not task.cancelled():
        task.exception()


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
        return 0 if flight is None else flight.waiters

    def context(self, key: Hashable) -> Any:
        """The ``context`` given by the caller that started the flight for ``key`` (``None``:
        nothing in flight for it)."""
        flight = self._flights.get(key)
        return None if flight is None else flight.context

    async def run(
        self, key: Hashable, work: Callable[[], Awaitable[T]], *, context: Any = None
    ) -> T:
        """``work()``'s result, shared with every concurrent caller of the same ``key``.

        Starts ``work()`` unless it is already in flight for ``key``; raises what it raised.
        ``context`` is kept with a flight this call starts (see :meth:`context`).
        """
        flight: _Flight[T] | None = self._flights.get(key)
        if flight is None:

            async def job() -> T:
                return await work()

            new: _Flight[T] = _Flight(asyncio.ensure_future(job()), context)
            self._flights[key] = flight = new
            new.task.add_done_callback(_consume)
            new.task.add_done_callback(lambda _: self._forget(key, new))
        flight.waiters += 1
        try:
            # shield(): cancelling this caller must not cancel the shared task.
            return await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                # Nobody waits any more: stop the work, and let the next caller start afresh.
                self._forget(key, flight)
                flight.task.cancel()

    def _forget(self, key: Hashable, flight: _Flight[Any]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
