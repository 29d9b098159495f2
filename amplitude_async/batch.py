"""Running a batch with bounded look-ahead: the one policy for ``gather``, ``as_completed`` and
backfills.

:class:`Batch` starts ``work(item)`` for at most ``lookahead`` items at a time and yields each
outcome as it completes. The look-ahead counts work started but not yet *reported* (taken from
the batch by its reader), never what task callbacks have or have not cleaned up yet: a burst of
outcomes that arrive in one loop turn (say 2,048 callers of one coalesced request) is read
without the reader ever suspending, and each outcome read makes room for exactly one new item,
so the batch never waits for a completion that cannot come.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Final, Generic, TypeVar

__all__ = ["DEFAULT_LOOKAHEAD", "TASK_NAME", "Batch", "Outcome"]

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_LOOKAHEAD: Final = 2048
"""How many items of a batch are under way at once: enough for the scheduler to pack tightly,
while a 100,000-query batch costs no more memory than this many waiting requests."""

TASK_NAME: Final = "amplitude_async query #"
"""Prefix of the names of the tasks a batch starts (the item's index follows)."""

_STOP: Final = object()


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
        work: Callable[[T], Awaitable[R]],
        *,
        lookahead: int = DEFAULT_LOOKAHEAD,
    ) -> None:
        if not isinstance(lookahead, int) or isinstance(lookahead, bool) or lookahead < 1:
            raise ValueError(f"lookahead must be a positive integer, got {lookahead!r}")
        self._items = items
        self._work = work
        self._lookahead = lookahead
        self._done: asyncio.Queue[Outcome[R] | object] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._next: Iterator[int] = iter(range(len(items)))
        self._started = 0
        self._reported = 0
        self._stopped = False

    def __len__(self) -> int:
        return len(self._items)

    def stop(self) -> None:
        """End the iteration at its next step; nothing more is started."""
        if not self._stopped:
            self._stopped = True
            self._done.put_nowait(_STOP)

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

    async def _one(self, index: int) -> None:
        try:
            result = await self._work(self._items[index])
        except asyncio.CancelledError as exc:
            if not self._stopped:
                # Cancelled by someone else than this batch: still an outcome, or the reader
                # would wait for it forever.
                self._done.put_nowait(Outcome(index, None, exc))
            raise
        except Exception as exc:
            self._done.put_nowait(Outcome(index, None, exc))
        else:
            self._done.put_nowait(Outcome(index, result, None))

    def _top_up(self) -> None:
        while not self._stopped and self._started - self._reported < self._lookahead:
            index = next(self._next, None)
            if index is None:
                return
            self._started += 1
            task = asyncio.create_task(self._one(index), name=f"{TASK_NAME}{index}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def __aiter__(self) -> AsyncIterator[Outcome[R]]:
        try:
            self._top_up()
            while self._reported < self._started:
                outcome = await self._done.get()
                if outcome is _STOP:
                    return
                assert isinstance(outcome, Outcome)
                self._reported += 1
                self._top_up()
                yield outcome
        finally:
            await self.aclose()
