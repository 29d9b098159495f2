"""Coalescing: identical work in flight at the same time is done once.

:class:`Coalescer` runs one task per key (a *flight*); a caller that asks for a key already in
flight takes a :class:`Seat` on it instead of starting another, and every caller gets its
result or its exception. The task belongs to no caller: a caller that is cancelled leaves, and
only when the last one has left is the task cancelled, so one impatient viewer never fails the
others. The last caller to leave settles (as cancelled) once the task has stopped, so whoever
waits for it knows that nothing more of the work runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["Coalescer", "Seat"]

T = TypeVar("T")


class Seat(asyncio.Future[T]):
    """One caller's place in a flight: a future of the flight's outcome (passed through
    ``finish``, if given, for this caller). Cancelling it leaves the flight; the last seat to
    leave stops the work and is cancelled once the work has stopped."""

    __slots__ = ("_finish", "_flight", "_leaving")

    def __init__(
        self,
        flight: _Flight[Any],
        finish: Callable[[Any], T] | None,
        *,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        super().__init__(loop=loop)
        self._flight = flight
        self._finish = finish
        self._leaving = False

    def cancel(self, msg: Any | None = None) -> bool:
        if self.done():
            return False
        if self._leaving:
            return True
        self._leaving = True
        if self._flight.leave(self):
            return True  # settled by the flight when its work has stopped
        return super().cancel(msg)

    def _deliver(self, task: asyncio.Task[Any]) -> None:
        if self.done():
            return
        if self._leaving or task.cancelled():
            super().cancel()
            return
        error = task.exception()
        if error is not None:
            self.set_exception(error)
            return
        finish = self._finish
        if finish is None:
            self.set_result(task.result())
            return
        try:
            self.set_result(finish(task.result()))
        except Exception as exc:  # a caller's own finishing fails that caller only
            self.set_exception(exc)


class _Flight(Generic[T]):
    __slots__ = ("active", "context", "key", "owner", "seats", "task")

    def __init__(self, owner: Coalescer, key: Hashable, context: Any) -> None:
        self.owner = owner
        self.key = key
        self.context = context
        # Insertion-ordered: callers hear the outcome in the order they came.
        self.seats: dict[Seat[Any], None] = {}
        self.active = 0  # seats not leaving
        self.task: asyncio.Task[T] | None = None

    def done(self, task: asyncio.Task[T]) -> None:
        """The work ended: every seat gets its outcome."""
        self.owner._forget(self.key, self)
        if not task.cancelled():
            # Retrieved even when every caller has left, so asyncio does not log "exception
            # was never retrieved" for an error nobody asked about.
            task.exception()
        for seat in self.seats:
            seat._deliver(task)
        # No cycle left between the flight and its seats: both go with their last reference,
        # not at the next garbage collection.
        self.seats.clear()

    def leave(self, seat: Seat[Any]) -> bool:
        """``seat``'s caller leaves. Returns whether the work stops on its account (the seat
        is then settled when the work has stopped)."""
        self.active -= 1
        task = self.task
        if self.active <= 0 and task is not None and not task.done():
            # Nobody waits any more: stop the work; the next caller starts afresh.
            self.owner._forget(self.key, self)
            task.cancel()
            return True
        del self.seats[seat]
        return False


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
        return 0 if flight is None else flight.active

    def context(self, key: Hashable) -> Any:
        """The ``context`` given by the caller that started the flight for ``key`` (``None``:
        nothing in flight for it)."""
        flight = self._flights.get(key)
        return None if flight is None else flight.context

    def join(
        self,
        key: Hashable,
        work: Callable[[], Coroutine[Any, Any, Any]],
        *,
        context: Any = None,
        finish: Callable[[Any], T] | None = None,
        name: str | None = None,
    ) -> Seat[T]:
        """A seat on ``key``'s flight, starting ``work()`` as a task (named ``name``) unless
        it is already in flight. The seat's result is the work's, passed through ``finish``
        for this caller; its exception the work's. ``context`` is kept with a flight this call
        starts (see :meth:`context`)."""
        loop = asyncio.get_running_loop()
        flight = self._flights.get(key)
        if flight is None:
            flight = _Flight(self, key, context)
            flight.task = loop.create_task(work(), name=name)
            flight.task.add_done_callback(flight.done)
            self._flights[key] = flight
        seat: Seat[T] = Seat(flight, finish, loop=loop)
        flight.seats[seat] = None
        flight.active += 1
        return seat

    async def run(
        self, key: Hashable, work: Callable[[], Coroutine[Any, Any, T]], *, context: Any = None
    ) -> T:
        """``work()``'s result, shared with every concurrent caller of the same ``key``.

        Starts ``work()`` unless it is already in flight for ``key``; raises what it raised.
        ``context`` is kept with a flight this call starts (see :meth:`context`).
        """
        seat: Seat[T] = self.join(key, work, context=context)
        return await seat

    def _forget(self, key: Hashable, flight: _Flight[Any]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
