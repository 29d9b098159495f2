"""Grant latency for the shared-budget benchmark: a Redis budget store that times its grants.

:class:`TimedBudgetStore` is a :class:`~amplitude_async.redis_store.RedisBudgetStore` that
records, per grant, the seconds from the decision to this process (:attr:`grant_latencies`):

- a grant in an exchange's answer: the exchange's round trip, on this process's clock;
- a grant published by another process's exchange: from the decision, stamped on the message
  on the Redis server's clock, to its arrival here, on this machine's clock. That compares two
  clocks, so it means something only when Redis and every process share one machine, as in
  ``benchmarks/bench_shared.py`` and the workers of :mod:`amplitude_async.testing.workers`.

Published grants are read by a listener of its own on the owner's channel, beside the store's
(one more Redis connection per owner), so the store itself works exactly as an untimed one.
Needs the ``redis`` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import RedisError

from ..admission import Changes, Grant, Outcome
from ..redis_store import CLOSE_WAIT, RedisBudgetStore

__all__ = ["TimedBudgetStore"]


class TimedBudgetStore(RedisBudgetStore):
    """A :class:`~amplitude_async.redis_store.RedisBudgetStore` that times every grant it
    hears of (see the module's docstring); same arguments."""

    def __init__(self, client: Any, **options: Any) -> None:
        super().__init__(client, **options)
        self.grant_latencies: list[float] = []
        """Seconds from the decision to this process, one per grant, in arrival order."""
        self._timers: dict[str, asyncio.Task[None]] = {}

    async def exchange(self, changes: Changes) -> Outcome:
        """:meth:`RedisBudgetStore.exchange`, timing the grants of its answer."""
        sent = time.perf_counter()
        outcome = await super().exchange(changes)
        if outcome.grants:
            self.grant_latencies.extend([time.perf_counter() - sent] * len(outcome.grants))
        return outcome

    def attach(self, owner: str, deliver: Callable[[Sequence[Grant]], None]) -> None:
        """:meth:`RedisBudgetStore.attach`, and time the grants published for ``owner``."""
        super().attach(owner, deliver)
        if owner not in self._timers:
            loop = asyncio.get_running_loop()
            self._timers[owner] = loop.create_task(self._time_published(owner))

    async def _time_published(self, owner: str) -> None:
        channel = self.channel + owner
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(channel)
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    data = message.get("data")
                    text = data.decode() if isinstance(data, bytes) else str(data)
                    stamp, _, grants = text.partition("|")
                    count = sum(1 for grant in grants.split(",") if grant)
                    if count:
                        delay = max(0.0, time.time() - float(stamp))
                        self.grant_latencies.extend([delay] * count)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, ValueError, UnicodeDecodeError):
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _stop_timers(self, owners: list[str]) -> None:
        tasks = [self._timers.pop(owner) for owner in owners if owner in self._timers]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_WAIT)

    async def detach(self, owner: str) -> None:
        """:meth:`RedisBudgetStore.detach`, and stop timing ``owner``'s grants."""
        await self._stop_timers([owner])
        await super().detach(owner)

    async def aclose(self) -> None:
        """:meth:`RedisBudgetStore.aclose`, and stop timing."""
        await self._stop_timers(list(self._timers))
        await super().aclose()
