"""Running a batch with bounded look-ahead: the one policy for ``gather``, ``as_completed`` and
backfills.

:class:`Batch` starts ``work(item)`` for at most ``lookahead`` items at a time and yields each
outcome as it completes. The look-ahead counts work started but not yet *reported* (taken from
the batch by its reader), never what task callbacks have or have not cleaned up yet: a burst of
outcomes that arrive in one loop turn (say 2,048 callers of one coalesced request) is read
without the reader ever suspending, and each outcome read makes room for exactly one new item,
so the batch never waits for a completion that cannot come.

An item's work is a coroutine, run as a task of its own, or a future already under way (such
as the client's seat on a request's flight): either way its outcome is collected by a done
callback, and leaving early cancels it and waits until it has settled.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from typing import Any, Final, Generic, TypeVar

__all__ = ["DEFAULT_LOOKAHEAD", "TASK_NAME", "Batch", "Outcome"]

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_LOOKAHEAD: Final = 2048
"""How many items of a batch are under way at once: enough for the scheduler to pack tightly,
while a 100,000-query batch costs no more memory than this many waiting requests."""

TASK_NAME: Final = "amplitude_async query #"
"""Prefix of the names of the tasks a batch starts (the item's index follows)."""


class Outcome(Generic[R]):
    """One item's end: its index in the batch and its result, or the exception it raised."""

    __slots__ = ("error", "index", "result")

    def __init__(self, index: int, result: R | None, error: BaseException | None) -> None:
        self.index = index
        self.result = result
        self.error = error

    def unwrap(self) -> R:
        """The result, or raise the item's exception."""
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class Batch(Generic[T, R]):
    """Run ``work`` over ``items`` with at most ``lookahead`` under way; iterate the outcomes.

    Iterate it once (``async for outcome in batch``), inside :func:`contextlib.aclosing` or an
    ``async with batch:`` block: leaving early cancels every item still under way and waits for
    them to stop, so nothing more of them is sent. :meth:`stop` ends the iteration from outside
    (items not yet started are never started).
    """

    def __init__(
        self,
        items: Sequence[T],
        work: Callable[[T], Coroutine[Any, Any, R] | asyncio.Future[R]],
        *,
        lookahead: int = DEFAULT_LOOKAHEAD,
    ) -> None:
        if not isinstance(lookahead, int) or isinstance(lookahead, bool) or lookahead < 1:
            raise ValueError(f"lookahead must be a positive integer, got {lookahead!r}")
        self._items = items
        self._work = work
        self._lookahead = lookahead
        self._ready: deque[Outcome[R]] = deque()  # outcomes not yet reported
        self._wakeup: asyncio.Future[None] | None = None  # the reader, waiting for one
        self._tasks: dict[asyncio.Future[R], int] = {}  # under way -> the item's index
        self._next: Iterator[int] = iter(range(len(items)))
        self._started = 0
        self._reported = 0
        self._stopped = False
        self._last = -1  # once stopped: how many outcomes are reported before the end

    def __len__(self) -> int:
        return len(self._items)

    def stop(self) -> None:
        """End the iteration at its next step; nothing more is started."""
        if not self._stopped:
            self._stopped = True
            # Outcomes already in are still reported; the end comes right after them.
            self._last = self._reported + len(self._ready)
            self._wake()

    async def __aenter__(self) -> Batch[T, R]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel every item still under way and wait until they have stopped."""
        self._stopped = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def _finished(self, task: asyncio.Future[R]) -> None:
        index = self._tasks.pop(task)
        if task.cancelled():
            if self._stopped:
                return
            # Cancelled by someone else than this batch: still an outcome, or the reader
            # would wait for it forever.
            try:
                task.result()
            except asyncio.CancelledError as exc:
                outcome: Outcome[R] = Outcome(index, None, exc)
        else:
            error = task.exception()
            outcome = Outcome(index, None if error is not None else task.result(), error)
        self._ready.append(outcome)
        self._wake()

    def _top_up(self) -> None:
        while not self._stopped and self._started - self._reported < self._lookahead:
            index = next(self._next, None)
            if index is None:
                return
            self._started += 1
            try:
                work = self._work(self._items[index])
            except Exception as exc:  # refused before it started: still an outcome
                self._ready.append(Outcome(index, None, exc))
                self._wake()
                continue
            task = (
                work
                if isinstance(work, asyncio.Future)
                else asyncio.create_task(work, name=f"{TASK_NAME}{index}")
            )
            self._tasks[task] = index
            task.add_done_callback(self._finished)

    async def __aiter__(self) -> AsyncIterator[Outcome[R]]:
        try:
            self._top_up()
            ready = self._ready
            while self._reported < self._started and self._reported != self._last:
                if not ready:
                    if self._stopped:
                        return
                    self._wakeup = asyncio.get_running_loop().create_future()
                    try:
                        await self._wakeup
                    finally:
                        self._wakeup = None
                    continue
                outcome = ready.popleft()
                self._reported += 1
                self._top_up()
                yield outcome
        finally:
            await self.aclose()
