"""A virtual clock: asyncio code runs on it without sleeping for real.

:class:`VirtualClock` builds an event loop whose ``time()`` is virtual. Whenever every task is
blocked, the loop would ask its selector to wait until the next timer; the virtual selector
instead moves the clock forward by exactly that amount and returns at once. So ``asyncio.sleep``,
``asyncio.wait_for`` timeouts, ``loop.call_later`` and anything built on them (the scheduler
included) run in virtual time, deterministically, as fast as the CPU allows.

Real I/O still works (the selector is polled without blocking before time moves), but time may
jump ahead while a socket or a worker thread is busy: use the virtual clock for code whose waits
are on timers, not on real network round trips.

::

    clock = VirtualClock()
    result = clock.run(main())          # or: run_virtual(main())
"""

from __future__ import annotations

import asyncio
import contextvars
import selectors
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

__all__ = ["DeadlockError", "VirtualClock", "run_virtual"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class DeadlockError(RuntimeError):
    """Every task waits, no timer is pending and no I/O arrived: virtual time cannot move."""


class VirtualClock:
    """A clock whose time only moves when every task of its event loop is blocked.

    It satisfies :class:`amplitude_async.clock.Clock`; code that reads the running loop's time
    (the default :class:`~amplitude_async.clock.LoopClock`) sees the same virtual time when run
    with :meth:`run`.
    """

    def __init__(self, start: float = 0.0, *, deadlock_timeout: float = 10.0) -> None:
        self._now = float(start)
        # Real seconds to wait for I/O or another thread before declaring a deadlock.
        self.deadlock_timeout = deadlock_timeout

    def time(self) -> float:
        """Return the virtual time."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Sleep in virtual time (the loop must be one made by this clock)."""
        await asyncio.sleep(max(0.0, seconds))

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """Return a new event loop that runs on this clock."""
        return _VirtualEventLoop(self)

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        """Run ``main`` to completion on a fresh virtual-time loop and return its result."""
        with asyncio.Runner(loop_factory=self.new_event_loop) as runner:
            return runner.run(main)

    def _advance(self, seconds: float) -> None:
        self._now += seconds

    def __repr__(self) -> str:
        return f"VirtualClock(time={self._now!r})"


def run_virtual(main: Coroutine[Any, Any, T], *, start: float = 0.0) -> T:
    """Run ``main`` on a new :class:`VirtualClock` starting at ``start``."""
    return VirtualClock(start).run(main)


class _VirtualSelector(selectors.BaseSelector):
    """Delegates registrations to a real selector; turns timed waits into clock jumps."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self._real = selectors.DefaultSelector()

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # Real I/O that is already there wins: time does not move while work is ready.
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            # No timer at all: only another thread or real I/O can wake the loop.
            ready = self._real.select(self._clock.deadlock_timeout)
            if not ready:
                raise DeadlockError("every task is waiting and nothing is scheduled")
            return ready
        # The loop asked to wait exactly until its earliest timer: jump there.
        self._clock._advance(timeout)
        return []

    def close(self) -> None:
        self._real.close()

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._real.get_map()


class _VirtualEventLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: VirtualClock) -> None:
        self._virtual_clock = clock
        super().__init__(_VirtualSelector(clock))

    def time(self) -> float:
        return self._virtual_clock.time()

    def call_at(
        self,
        when: float,
        callback: Callable[[*Ts], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        # asyncio fires timers up to the clock resolution early. In real time that is harmless;
        # here time would stand still and "sleep until t, check the time" could spin forever.
        # So a timer that fires brings the virtual time up to its due time.
        return super().call_at(when, self._fire, when, callback, args, context=context)

    def _fire(self, when: float, callback: Callable[[*Ts], object], args: tuple[*Ts]) -> None:
        clock = self._virtual_clock
        clock._now = max(clock._now, when)
        callback(*args)
