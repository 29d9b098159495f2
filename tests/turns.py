"""Loop turns in tests of the in-process budget store, which decides a few turns after a change."""

from __future__ import annotations

import asyncio

from amplitude_async.scheduler.exchange import DECISION_TURNS


async def decided() -> None:
    """Let the scheduler decide what is queued: it waits ``DECISION_TURNS`` loop turns."""
    for _ in range(DECISION_TURNS + 1):
        await asyncio.sleep(0)
