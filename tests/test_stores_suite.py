"""One suite of several schedulers on one budget, run against every budget store.

Each scheduler stands for a process with a connection of its own to the shared budget: for the
in-process store they share one :class:`InMemoryBudgetStore` (on a virtual clock), for Redis
each has its own :class:`RedisBudgetStore` on a private ``redis-server`` (in real time, as the
store reads Redis ``TIME``: limits are scaled down to windows of a second or two, and the
assertions are about order and budgets, never exact times). A new store joins by adding a
``Budget`` kind here.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import pytest

from amplitude_async.admission import (
    BudgetStore,
    BudgetUsage,
    Changes,
    Grant,
    InMemoryBudgetStore,
    Outcome,
)
from amplitude_async.errors import BudgetUnavailable
from amplitude_async.limits import Limits, Pool
from amplitude_async.scheduler import Scheduler, Ticket
from amplitude_async.testing import Enforcer, run_virtual

if TYPE_CHECKING:
    from amplitude_async.redis_store import RedisBudgetStore

T = TypeVar("T")

API_KEY = "0123456789abcdef0123456789abcdef"
GUARD = 60.0
"""Seconds (virtual or real) after which a run counts as hung: a failure, not a timing bound."""


class Link:
    """A process's connection to the shared budget: counts the exchanges that were answered,
    remembers when the last one was sent, and can be cut (``down``: every exchange fails, as
    for a process partitioned from the store, or killed)."""

    def __init__(self, store: BudgetStore) -> None:
        self.store = store
        self.down = False
        self.exchanges = 0
        self.completions = 0
        """Answered exchanges that carried a completion."""
        self.busy = 0
        """Exchanges sent and not answered yet."""
        self.last_sent = -math.inf
        """Loop time at which the last answered exchange was sent (it renewed the leases)."""

    @property
    def limits(self) -> Limits:
        return self.store.limits

    @property
    def starvation_bound(self) -> float:
        return self.store.starvation_bound

    async def exchange(self, changes: Changes) -> Outcome:
        if self.down:
            await asyncio.sleep(0)
            raise BudgetUnavailable("cut off from the budget store")
        sent = asyncio.get_running_loop().time()
        self.busy += 1
        try:
            outcome = await self.store.exchange(changes)
        finally:
            self.busy -= 1
        self.exchanges += 1
        self.completions += bool(changes.complete)
        self.last_sent = sent
        return outcome

    def attach(self, owner: str, deliver: Callable[[Sequence[Grant]], None]) -> None:
        self.store.attach(owner, deliver)

    async def detach(self, owner: str) -> None:
        await self.store.detach(owner)

    def usage(self) -> BudgetUsage | None:
        return self.store.usage()


class Process:
    """A scheduler and its link to the budget."""

    def __init__(self, scheduler: Scheduler, link: Link) -> None:
        self.scheduler = scheduler
        self.link = link


class Budget:
    """One project's budget in the store under test. ``run`` runs a test's body; inside it,
    every :meth:`process` is a scheduler of another process sharing the budget."""

    def __init__(self, kind: str, url: str = "") -> None:
        self.kind = kind
        self.url = url
        self.limits = Limits()
        self.starvation_bound: float | None = None
        self._memory: InMemoryBudgetStore | None = None
        self._stores: list[RedisBudgetStore] = []
        self._processes: list[Process] = []

    def run(
        self,
        limits: Limits,
        main: Callable[[], Coroutine[Any, Any, T]],
        *,
        starvation_bound: float | None = None,
    ) -> T:
        """Run ``main()`` with a fresh budget of ``limits``; close every process afterwards."""
        self.limits, self.starvation_bound = limits, starvation_bound

        async def body() -> T:
            try:
                async with asyncio.timeout(GUARD):
                    return await main()
            finally:
                for process in self._processes:
                    await process.scheduler.aclose()
                for store in self._stores:
                    await store.aclose()

        if self.kind == "memory":
            return run_virtual(body())
        return asyncio.run(body())

    def process(self, *, lease: float = 30.0) -> Process:
        """A new process on the shared budget, its scheduler's lease term ``lease``."""
        store: BudgetStore
        if self.kind == "memory":
            if self._memory is None:
                self._memory = InMemoryBudgetStore(
                    self.limits, starvation_bound=self.starvation_bound
                )
            store = self._memory
        else:
            from amplitude_async.redis_store import RedisBudgetStore

            redis = RedisBudgetStore.from_url(
                self.url,
                api_key=API_KEY,
                limits=self.limits,
                starvation_bound=self.starvation_bound,
            )
            self._stores.append(redis)
            store = redis
        link = Link(store)
        process = Process(Scheduler(store=link, lease=lease), link)
        self._processes.append(process)
        return process

    async def usage(self) -> BudgetUsage:
        """The shared budget now, as the store sees it."""
        if self._memory is not None:
            return self._memory.usage()
        from amplitude_async.redis_store import RedisBudgetStore

        observer = await RedisBudgetStore.observe(self.url, api_key=API_KEY)
        assert observer is not None
        self._stores.append(observer)
        usage = await observer.read_usage()
        assert usage is not None
        return usage


@pytest.fixture(params=["memory", "redis"])
def budget(request: pytest.FixtureRequest) -> Budget:
    """A budget in each store: the in-process one, and Redis on a private server."""
    if request.param == "memory":
        return Budget("memory")
    server = request.getfixturevalue("redis_server")
    return Budget("redis", server.url)


def now() -> float:
    return asyncio.get_running_loop().time()


async def until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds (what the store answers takes a round trip)."""
    while not condition():  # noqa: ASYNC110 - the state of other processes, no event
        await asyncio.sleep(0.01)


async def query(
    process: Process,
    cost: int,
    latency: float = 0.0,
    *,
    priority: int = 0,
    log: list[tuple[str, Ticket]] | None = None,
    tag: str = "",
) -> Ticket:
    async with process.scheduler.slot(Pool.STANDARD, cost, priority=priority) as ticket:
        if log is not None:
            log.append((tag, ticket))
        await asyncio.sleep(latency)
    return ticket


LIMITS = Limits(concurrent=1, cost_per_window=100, window=2.0, cost_per_hour=1000, hour=8.0)


def test_a_slot_freed_by_one_scheduler_goes_to_the_other_at_once(budget: Budget) -> None:
    # Long windows: the waiting process's own next exchange (its claim, its heartbeat) is a
    # second or more away.
    limits = attrs.evolve(LIMITS, window=10.0, hour=40.0)

    async def main() -> tuple[float, float, int, int]:
        first, second = budget.process(), budget.process()
        inside, leave = asyncio.Event(), asyncio.Event()

        async def hold() -> float:
            async with first.scheduler.slot(Pool.STANDARD, 10):
                inside.set()
                await leave.wait()
            return now()

        async def wait() -> tuple[float, int]:
            async with second.scheduler.slot(Pool.STANDARD, 10) as ticket:
                return ticket.dispatched_at, second.link.exchanges

        holder = asyncio.create_task(hold())
        await inside.wait()
        waiter = asyncio.create_task(wait())
        # Queued in the store, and nothing more to say to it.
        await until(lambda: second.link.exchanges >= 1 and not second.link.busy)
        assert not waiter.done()
        before = second.link.exchanges
        leave.set()
        freed_at = await holder
        dispatched_at, heard = await waiter
        return freed_at, dispatched_at, before, heard

    freed_at, dispatched_at, before, heard = budget.run(limits, main)
    assert dispatched_at >= freed_at
    # Granted by the other's exchange and delivered: the waiting process did not ask again.
    assert heard == before


def test_a_priority_request_of_one_scheduler_passes_another_schedulers_flood(
    budget: Budget,
) -> None:
    limits = Limits(concurrent=5, cost_per_window=100, window=2.0, cost_per_hour=1000, hour=8.0)

    async def main() -> tuple[list[tuple[str, Ticket]], Ticket, int]:
        flood, urgent = budget.process(), budget.process()
        log: list[tuple[str, Ticket]] = []
        floods = [
            asyncio.create_task(query(flood, 60, 0.1, log=log, tag="flood")) for _ in range(6)
        ]
        await until(lambda: len(log) >= 1)  # one fits the window; five wait in the store
        # Lighter than a flood request: only its priority puts it first.
        ticket = await query(urgent, 50, priority=10, log=log, tag="urgent")
        waiting = sum(not task.done() for task in floods)
        for task in floods:
            task.cancel()
        await asyncio.gather(*floods, return_exceptions=True)
        return log, ticket, waiting

    log, urgent, waiting = budget.run(limits, main, starvation_bound=math.inf)
    before = [ticket for tag, ticket in log[: log.index(("urgent", urgent))] if tag == "flood"]
    # Only the flood request admitted before it queued went first; the older waiting ones,
    # heavier (heaviest first within a priority), did not.
    assert len(before) == 1
    assert all(ticket.dispatched_at <= urgent.queued_at for ticket in before)
    assert waiting == 5
    assert urgent.waited > 0  # it did wait for the first to leave the window


def test_schedulers_sharing_a_budget_draw_no_429_from_a_strict_server(budget: Budget) -> None:
    limits = Limits(concurrent=3, cost_per_window=100, window=0.4, cost_per_hour=250, hour=1.0)
    costs = [10 + (i * 37) % 60 for i in range(12)]

    async def main() -> tuple[list[Enforcer], float]:
        processes = [budget.process() for _ in range(3)]
        clock = processes[0].scheduler.clock
        servers = [Enforcer(limits, clock), Enforcer(limits, clock, reading="in_flight")]

        async def one(process: Process, cost: int, latency: float) -> None:
            async with process.scheduler.slot(Pool.STANDARD, cost):
                arrivals = [server.arrive(Pool.STANDARD, cost) for server in servers]
                await asyncio.sleep(latency)
                for server, arrival in zip(servers, arrivals, strict=True):
                    if arrival.ticket is not None:
                        server.finish(arrival.ticket)

        start = now()
        await asyncio.gather(
            *(one(processes[i % 3], cost, 0.05 + 0.05 * (i % 4)) for i, cost in enumerate(costs))
        )
        return servers, now() - start

    servers, took = budget.run(limits, main)
    for server in servers:
        assert server.rejected == {"concurrent": 0, "rate": 0}
        assert server.accepted == len(costs)
    # The budget did bind: what was sent needs more than one hour window's budget.
    assert sum(costs) > limits.cost_per_hour
    assert took >= limits.hour


def test_a_pause_by_one_scheduler_holds_every_scheduler(budget: Budget) -> None:
    async def main() -> tuple[float, list[Ticket]]:
        first, second = budget.process(), budget.process()
        paused_at = now()
        first.scheduler.pause(Pool.STANDARD, 1.0)  # a 429 seen by the first process
        await until(lambda: first.link.exchanges >= 1)  # the store has it
        tickets = await asyncio.gather(query(second, 10), query(first, 10))
        return paused_at, list(tickets)

    paused_at, tickets = budget.run(LIMITS, main)
    assert all(ticket.dispatched_at >= paused_at + 1.0 for ticket in tickets)


def test_a_silent_schedulers_slot_comes_back_when_its_lease_runs_out(budget: Budget) -> None:
    # A process cut off from the store (killed, or partitioned) cannot renew its lease: its
    # entry counts as completed when the lease runs out, and the other process gets the slot.
    lease = 1.0

    async def main() -> tuple[Ticket, float, BudgetUsage]:
        lost, alive = budget.process(lease=lease), budget.process()
        log: list[tuple[str, Ticket]] = []
        holder = asyncio.create_task(query(lost, 10, 1000.0, log=log))
        await until(lambda: bool(log))
        await asyncio.sleep(0.5)  # renewed meanwhile, every third of the lease term
        lost.link.down = True
        renewed = lost.link.last_sent
        async with alive.scheduler.slot(Pool.STANDARD, 10) as ticket:
            usage = await budget.usage()
        holder.cancel()
        await asyncio.gather(holder, return_exceptions=True)
        return ticket, renewed, usage

    ticket, renewed, usage = budget.run(LIMITS, main)
    assert ticket.dispatched_at >= renewed + lease
    standard = usage[Pool.STANDARD]
    assert standard.in_flight == 1  # the new request; the lost one counts as completed
    # The lost request still occupies its windows (the server may have counted it).
    assert [window.used for window in standard.windows] == [20, 20]


def test_waiters_of_a_closed_scheduler_are_dropped(budget: Budget) -> None:
    async def main() -> tuple[BudgetUsage, list[str]]:
        holding, leaving, alive = budget.process(), budget.process(), budget.process()
        log: list[tuple[str, Ticket]] = []
        inside, leave, done = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with holding.scheduler.slot(Pool.STANDARD, 10):
                inside.set()
                await leave.wait()

        async def wait() -> None:
            async with alive.scheduler.slot(Pool.STANDARD, 10) as ticket:
                log.append(("alive", ticket))
                await done.wait()

        holder = asyncio.create_task(hold())
        await inside.wait()
        # Queued first, at the same priority and cost: it would be admitted first.
        stranded = asyncio.create_task(query(leaving, 10, log=log, tag="leaving"))
        await until(lambda: leaving.link.exchanges >= 1)
        waiter = asyncio.create_task(wait())
        await until(lambda: alive.link.exchanges >= 1)
        await leaving.scheduler.aclose()
        leave.set()
        await holder
        # The slot is decided in the exchange that carries the completion.
        await until(lambda: holding.link.completions >= 1)
        usage = await budget.usage()
        await until(lambda: bool(log))
        done.set()
        await waiter
        stranded.cancel()
        await asyncio.gather(stranded, return_exceptions=True)
        return usage, [tag for tag, _ in log]

    usage, admitted = budget.run(LIMITS, main)
    standard = usage[Pool.STANDARD]
    # Right when the slot was freed, it went to the waiter of the process still there.
    assert (standard.in_flight, standard.queued) == (1, 0)
    assert admitted == ["alive"]
