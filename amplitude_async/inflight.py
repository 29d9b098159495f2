"""The requests a client has under way, as its close sees them (see
:meth:`AmplitudeClient.aclose <amplitude_async.client.AmplitudeClient.aclose>`).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Tracked"]


class Tracked:
    """One request in progress (a call's sending task), as :meth:`AmplitudeClient.aclose` sees it.

    ``sending`` is true while a request is on the wire (and until its answer is decoded); the
    rest of the time the call only waits, and a close may cancel it without losing anything.
    Cancellation follows :func:`asyncio.timeout`'s pattern: the close cancels the caller's task,
    and the call turns exactly that cancellation (``uncancel``) into :class:`ClientClosed`,
    while a cancellation from anyone else passes through unchanged.
    """

    __slots__ = ("cancelling", "cut", "cut_sending", "finished", "sending", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.cancelling = task.cancelling()
        self.sending = False
        self.cut = False
        self.cut_sending = False
        self.finished = False

    def cancel(self) -> None:
        if not self.cut and not self.finished:
            self.cut = True
            self.cut_sending = self.sending
            self.task.cancel()
