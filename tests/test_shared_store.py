"""Several schedulers on one budget store, leases and store failures, on a virtual clock.

Each scheduler stands for a process: it talks to the store only through exchanges, so what
holds here for the in-process store holds for any store taking the same decisions.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence

import pytest
from turns import decided

from amplitude_async.admission import BudgetUsage, Changes, Grant, InMemoryBudgetStore, Outcome
from amplitude_async.errors import BudgetUnavailable, QueryTooExpensive
from amplitude_async.limits import Limits, Pool
from amplitude_async.scheduler import Scheduler, Ticket
from amplitude_async.testing import Enforcer, run_virtual

LIMITS = Limits(concurrent=1, cost_per_window=100, window=10.0, cost_per_hour=1000, hour=60.0)


async def query(
    scheduler: Scheduler,
    cost: int,
    latency: float = 1.0,
    *,
    priority: int = 0,
    log: list[tuple[str, int, float]] | None = None,
    tag: str = "",
) -> Ticket:
    async with scheduler.slot(Pool.STANDARD, cost, priority=priority) as ticket:
        if log is not None:
            log.append((tag, cost, ticket.dispatched_at))
        await asyncio.sleep(latency)
    return ticket


class Flaky:
    """A store that fails (as an unreachable Redis would) while ``down`` is set."""

    def __init__(self, inner: InMemoryBudgetStore, error: Exception | None = None) -> None:
        self.inner = inner
        self.down = False
        self.error = error or BudgetUnavailable("connection refused")
        self.exchanges = 0

    @property
    def limits(self) -> Limits:
        return self.inner.limits

    @property
    def starvation_bound(self) -> float:
        return self.inner.starvation_bound

    async def exchange(self, changes: Changes) -> Outcome:
        await asyncio.sleep(0)
        if self.down:
            raise self.error
        self.exchanges += 1
        return self.inner.apply(changes)

    def attach(self, owner: str, deliver: Callable[[Sequence[Grant]], None]) -> None:
        self.inner.attach(owner, deliver)

    async def detach(self, owner: str) -> None:
        await self.inner.detach(owner)

    def usage(self) -> BudgetUsage | None:
        return None if self.down else self.inner.usage()


def test_a_slot_freed_by_one_process_goes_to_the_other_at_once() -> None:
    async def main() -> list[float]:
        store = InMemoryBudgetStore(LIMITS)
        first, second = Scheduler(store=store), Scheduler(store=store)
        holder = asyncio.create_task(query(first, 10, latency=1.0))
        await asyncio.sleep(0)
        waiter = await query(second, 10)
        await holder
        return [waiter.dispatched_at, waiter.waited]

    assert run_virtual(main()) == [1.0, 1.0]


def test_priority_work_of_one_process_passes_another_process_flood() -> None:
    limits = Limits(concurrent=5, cost_per_window=100, window=10.0)

    async def main() -> list[tuple[str, int, float]]:
        store = InMemoryBudgetStore(limits, starvation_bound=math.inf)
        flood, urgent = Scheduler(store=store), Scheduler(store=store)
        log: list[tuple[str, int, float]] = []
        tasks = [asyncio.create_task(query(flood, 50, log=log, tag="flood")) for _ in range(10)]
        await asyncio.sleep(0.5)
        tasks.append(asyncio.create_task(query(urgent, 60, priority=10, log=log, tag="urgent")))
        await asyncio.gather(*tasks)
        return log

    log = run_virtual(main())
    urgent = next(t for tag, _, t in log if tag == "urgent")
    # The two floods admitted at 0 leave the window at 11; the urgent query goes first then.
    assert urgent == 11.0
    assert [t for tag, _, t in log if tag == "flood" and t <= urgent] == [0.0, 0.0]


def test_processes_sharing_a_store_draw_no_429_from_a_strict_server() -> None:
    limits = Limits(concurrent=3, cost_per_window=100, window=10.0, cost_per_hour=400, hour=40.0)

    async def main() -> tuple[int, dict[str, int]]:
        store = InMemoryBudgetStore(limits)
        schedulers = [Scheduler(store=store, lease=30.0) for _ in range(3)]
        enforcer = Enforcer(limits, schedulers[0].clock)
        in_flight = Enforcer(limits, schedulers[0].clock, reading="in_flight")

        async def one(scheduler: Scheduler, cost: int, latency: float) -> None:
            async with scheduler.slot(Pool.STANDARD, cost):
                arrivals = [
                    enforcer.arrive(Pool.STANDARD, cost),
                    in_flight.arrive(Pool.STANDARD, cost),
                ]
                await asyncio.sleep(latency)
                for server, arrival in zip((enforcer, in_flight), arrivals, strict=True):
                    if arrival.ticket is not None:
                        server.finish(arrival.ticket)

        await asyncio.gather(
            *(one(schedulers[i % 3], 10 + (i * 37) % 60, 0.5 + (i % 4)) for i in range(60))
        )
        rejected: dict[str, int] = {
            k: enforcer.rejected[k] + in_flight.rejected[k] for k in enforcer.rejected
        }
        return enforcer.accepted, rejected

    accepted, rejected = run_virtual(main())
    assert accepted == 60
    assert rejected == {"concurrent": 0, "rate": 0}


def test_a_pause_by_one_process_holds_every_process() -> None:
    async def main() -> float:
        store = InMemoryBudgetStore(LIMITS)
        first, second = Scheduler(store=store), Scheduler(store=store)
        first.pause(Pool.STANDARD, 30.0)
        await asyncio.sleep(1.0)
        return (await query(second, 10)).dispatched_at

    assert run_virtual(main()) == 30.0


def test_a_silent_process_gives_its_slot_back_when_its_lease_runs_out() -> None:
    # A process cut off from the store (killed, or partitioned) cannot renew its lease: its
    # entry counts as completed at the lease's end, and the other process gets the slot then.
    async def main() -> tuple[float, float]:
        store = InMemoryBudgetStore(LIMITS)
        cut = Flaky(store)
        lost, alive = Scheduler(store=cut, lease=20.0), Scheduler(store=store, lease=20.0)
        holder = asyncio.create_task(query(lost, 10, latency=1000.0))
        await asyncio.sleep(1.0)
        cut.down = True
        waiter = await query(alive, 10)
        holder.cancel()
        return waiter.dispatched_at, store.ledgers[Pool.STANDARD].used[0]

    dispatched, used = run_virtual(main())
    # The lease was renewed until about a third of its term before the cut (at 0 at the
    # latest), and runs out 20 s after the last renewal.
    assert 20.0 <= dispatched <= 21.0
    assert used == 20  # the lost entry still occupies the window, beside the new one


def test_waiters_end_with_budget_unavailable_when_the_store_stays_down() -> None:
    async def main() -> tuple[float, int, int]:
        store = Flaky(InMemoryBudgetStore(LIMITS))
        scheduler = Scheduler(store=store, unavailable_wait=30.0)
        holder = asyncio.create_task(query(scheduler, 10, latency=50.0))
        await asyncio.sleep(1.0)
        store.down = True
        waiting = asyncio.create_task(query(scheduler, 10))
        with pytest.raises(BudgetUnavailable):
            await waiting
        failed_at = asyncio.get_running_loop().time()
        store.down = False
        ticket = await holder  # in flight: finishes normally
        assert ticket.dispatched_at == 0.0
        await asyncio.sleep(1.0)  # its completion reaches the store once it is back
        return failed_at, store.inner.ledgers[Pool.STANDARD].in_flight, store.exchanges

    failed_at, in_flight, exchanges = run_virtual(main())
    assert failed_at == pytest.approx(31.0, abs=1.0)
    assert in_flight == 0
    assert exchanges >= 2


def test_a_broken_store_fails_every_waiter_at_once() -> None:
    async def main() -> list[BaseException | Ticket]:
        store = Flaky(InMemoryBudgetStore(LIMITS), error=RuntimeError("boom"))
        store.down = True
        scheduler = Scheduler(store=store)
        return await asyncio.gather(
            *(query(scheduler, 10) for _ in range(3)), return_exceptions=True
        )

    outcomes = run_virtual(main())
    assert all(isinstance(o, BudgetUnavailable) for o in outcomes)
    assert all(
        isinstance(o, BaseException) and isinstance(o.__cause__, RuntimeError) for o in outcomes
    )


def test_a_process_that_lost_the_store_registers_its_waiters_again() -> None:
    async def main() -> float:
        inner = InMemoryBudgetStore(LIMITS)
        store = Flaky(inner)
        scheduler = Scheduler(store=store, lease=5.0, unavailable_wait=100.0)
        holder = asyncio.create_task(query(scheduler, 100, latency=1.0))
        await asyncio.sleep(0)
        waiting = asyncio.create_task(query(scheduler, 10))
        await asyncio.sleep(0.5)
        store.down = True
        other = Scheduler(store=inner, lease=5.0)
        await asyncio.sleep(8.0)  # the lost process's lease runs out: its waiter is dropped
        await query(other, 0, latency=0.0)
        store.down = False
        await holder
        return (await waiting).dispatched_at

    # Registered again once the store answers. The 100's completion (at 1) could not reach the
    # store before its lease ran out (at 5, the last renewal being at 0), so it counts as
    # completed at 5; the waiter goes when it leaves the window.
    assert run_virtual(main()) == 15.0


def test_the_store_brings_its_limits_and_bound() -> None:
    store = InMemoryBudgetStore(LIMITS, starvation_bound=5.0)
    scheduler = Scheduler(store=store)
    assert (scheduler.limits, scheduler.starvation_bound) == (LIMITS, 5.0)
    with pytest.raises(ValueError, match="starvation_bound"):
        Scheduler(store=store, starvation_bound=7.0)
    with pytest.raises(QueryTooExpensive):
        scheduler.slot(Pool.STANDARD, 101)


def test_waiters_of_a_silent_process_expire_with_its_lease() -> None:
    async def main() -> tuple[int, float]:
        store = InMemoryBudgetStore(LIMITS)
        cut = Flaky(store)
        lost, alive = Scheduler(store=cut, lease=5.0), Scheduler(store=store, lease=5.0)
        holder = asyncio.create_task(query(alive, 100, latency=1.0))
        await decided()
        stranded = asyncio.create_task(query(lost, 10))  # queued first: it would go first
        await asyncio.sleep(0.5)
        cut.down = True
        await asyncio.sleep(6.0)  # its lease runs out
        waiter = asyncio.create_task(query(alive, 10))
        await asyncio.sleep(0)
        ticket = await waiter
        await holder
        stranded.cancel()
        return store.queues[Pool.STANDARD].count, ticket.dispatched_at

    queued, dispatched = run_virtual(main())
    assert queued == 0  # the silent process's waiter is gone, and took nothing
    assert dispatched == 11.0  # when the 100 leaves the window


def test_a_process_that_leaves_hands_its_timekeeping_to_the_others() -> None:
    # The process whose completion set the next expiry keeps time for the queue; when it
    # closes, the others are nudged and one of them takes over at once, instead of waiting for
    # its own lease renewal (a third of the lease term later).
    async def main() -> float:
        store = InMemoryBudgetStore(LIMITS)
        first, second = Scheduler(store=store, lease=90.0), Scheduler(store=store, lease=90.0)
        holder = asyncio.create_task(query(first, 100, latency=1.0))
        await asyncio.sleep(0.5)
        waiter = asyncio.create_task(query(second, 10))
        await holder  # completes at 1: the entry leaves the window at 11
        await asyncio.sleep(1.0)
        await first.aclose()
        return (await waiter).dispatched_at

    assert run_virtual(main()) == 11.0


class Stalls(Flaky):
    """A store whose exchanges carrying a completion hang (a frozen server), except a goodbye."""

    async def exchange(self, changes: Changes) -> Outcome:
        if changes.complete and not changes.leaving:
            await asyncio.Event().wait()
        return await super().exchange(changes)


def test_a_close_during_an_exchange_still_sends_its_completions() -> None:
    async def main() -> tuple[int, tuple[int, ...]]:
        store = Stalls(InMemoryBudgetStore(LIMITS))
        scheduler = Scheduler(store=store, lease=30.0)
        await query(scheduler, 3, latency=0.1)
        await asyncio.sleep(0.1)  # the exchange carrying the completion hangs meanwhile
        await scheduler.aclose()  # cancels it: the goodbye carries the completion instead
        ledger = store.inner.ledgers[Pool.STANDARD]
        return ledger.in_flight, ledger.used

    # Completed, so it still occupies its windows (given back, it would not: the server counts
    # a request that was sent).
    assert run_virtual(main()) == (0, (3, 3))


def test_a_new_process_registers_each_request_once() -> None:
    # A process's first exchange is answered "rejoined" (the store did not know it); the
    # requests that exchange registered are not registered again.
    async def main() -> list[int]:
        inner = InMemoryBudgetStore(LIMITS)
        registered: list[int] = []

        class Recording(Flaky):
            async def exchange(self, changes: Changes) -> Outcome:
                registered.extend(r.local for r in changes.register)
                return await super().exchange(changes)

        scheduler = Scheduler(store=Recording(inner))
        holder = asyncio.create_task(query(scheduler, 10, latency=1.0))
        waiting = [asyncio.create_task(query(scheduler, 10)) for _ in range(3)]
        await asyncio.gather(holder, *waiting)
        await scheduler.aclose()
        return registered

    registered = run_virtual(main())
    assert sorted(registered) == sorted(set(registered))
    assert len(registered) == 4
