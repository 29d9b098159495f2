"""Where the scheduler gets the time from.

Everything time-dependent in the scheduling core reads :meth:`Clock.time` and waits with
:meth:`Clock.sleep`, so tests can substitute a virtual clock
(:class:`amplitude_async.testing.VirtualClock`) and never sleep for real.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "LoopClock"]


@runtime_checkable
class Clock(Protocol):
    """A monotonic time source in seconds and a way to wait on it."""

    def time(self) -> float:
        """Return the current time in seconds (monotonic, arbitrary origin)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (zero or negative: just yield to the event loop)."""
        ...


class LoopClock:
    """The default clock: the running event loop's ``loop.time()`` and :func:`asyncio.sleep`.

    Reading the loop (rather than :func:`time.monotonic`) means any loop with a virtual
    ``time()`` drives the scheduler too.
    """

    def time(self) -> float:
        """Return the running loop's time."""
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the running loop."""
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "LoopClock()"
