"""Scheduler behaviour on a virtual clock: admission, waiting, pause, priorities, cancellation."""

from __future__ import annotations

import asyncio
import gc
import math
import time
import tracemalloc

import pytest
from turns import decided

from amplitude_async.admission import InMemoryBudgetStore
from amplitude_async.errors import QueryTooExpensive
from amplitude_async.limits import Limits, Pool
from amplitude_async.scheduler import Scheduler, Ticket
from amplitude_async.scheduler.exchange import DECISION_TURNS, DECISION_WAIT
from amplitude_async.testing import DeadlockError, Enforcer, VirtualClock, run_virtual

LIMITS = Limits(concurrent=3, cost_per_window=100, window=10.0, cost_per_hour=1000, hour=60.0)


async def query(
    scheduler: Scheduler,
    cost: int,
    latency: float = 1.0,
    *,
    pool: Pool = Pool.STANDARD,
    priority: int = 0,
    log: list[tuple[int, float]] | None = None,
) -> Ticket:
    async with scheduler.slot(pool, cost, priority=priority) as ticket:
        if log is not None:
            log.append((cost, ticket.dispatched_at))
        await asyncio.sleep(latency)
    return ticket


def test_virtual_clock_runs_timers_without_sleeping() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(3600)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), 2.5)
        return loop.time()

    started = time.perf_counter()
    clock = VirtualClock(start=100.0)
    assert clock.run(main()) == 3702.5
    assert clock.time() == 3702.5
    # It did not sleep the hour it simulated (a bound no machine load can reach).
    assert time.perf_counter() - started < 3600


def test_virtual_clock_reports_a_deadlock() -> None:
    async def main() -> None:
        await asyncio.get_running_loop().create_future()

    with pytest.raises(DeadlockError):
        VirtualClock(deadlock_timeout=0.01).run(main())


def test_free_budget_admits_at_once_and_full_budget_waits_for_expiry() -> None:
    async def main() -> list[Ticket]:
        scheduler = Scheduler(LIMITS)
        first = await query(scheduler, 60, latency=2.0)
        second = await query(scheduler, 60)  # 60 + 60 > 100 until 2 + 10
        return [first, second]

    first, second = run_virtual(main())
    assert (first.dispatched_at, first.waited) == (0.0, 0.0)
    assert second.dispatched_at == 12.0
    assert second.waited == 10.0


def test_too_expensive_is_raised_before_anything_waits() -> None:
    async def main() -> None:
        scheduler = Scheduler(LIMITS)
        with pytest.raises(QueryTooExpensive) as info:
            scheduler.slot(Pool.STANDARD, 101)
        assert info.value.budget_name == "cost_per_window"
        assert scheduler.statistics()[Pool.STANDARD].queued == 0

    run_virtual(main())


def test_pause_extends_never_shortens() -> None:
    async def main() -> tuple[float, float]:
        scheduler = Scheduler(LIMITS)
        scheduler.pause(Pool.STANDARD, 30.0)
        scheduler.pause(Pool.STANDARD, 5.0)
        assert scheduler.statistics()[Pool.STANDARD].paused_until == 30.0
        user = await query(scheduler, 0, pool=Pool.USER)  # another pool: not paused
        standard = await query(scheduler, 1)
        return user.dispatched_at, standard.dispatched_at

    assert run_virtual(main()) == (0.0, 30.0)


def test_a_completion_is_recorded_at_once_and_decided_a_few_turns_later() -> None:
    # The in-process store hears of a completion at once; the decision it allows waits
    # DECISION_TURNS loop turns, so that the completions of those turns (a busy client's
    # responses arrive a few per turn) and the next queries of a batch they set off are decided
    # in one exchange.
    async def main() -> tuple[int, list[int], int]:
        store = InMemoryBudgetStore(Limits(concurrent=1, cost_per_window=100, window=10.0))
        scheduler = Scheduler(store=store)
        first = scheduler.slot(Pool.STANDARD, 5)
        await first.__aenter__()
        waiting = asyncio.create_task(query(scheduler, 5))
        for _ in range(DECISION_TURNS + 2):  # queued, and decided: it waits
            await asyncio.sleep(0)
        assert scheduler.statistics()[Pool.STANDARD].queued_everywhere == 1
        first.leave()
        at_once = store.usage()[Pool.STANDARD].in_flight
        turns = []
        for _ in range(DECISION_TURNS):
            await asyncio.sleep(0)
            turns.append(store.usage()[Pool.STANDARD].in_flight)
        await waiting
        await scheduler.aclose()
        return at_once, turns, store.usage()[Pool.STANDARD].in_flight

    at_once, turns, after = run_virtual(main())
    assert (at_once, after) == (0, 0)
    assert turns == [0] * (DECISION_TURNS - 1) + [1]


class SteppedClock:
    """A clock that moves only when a test moves it (its sleeps are the loop's own)."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


def test_a_slow_turn_ends_the_wait_for_a_decision() -> None:
    # A loop busy with long callbacks turns slowly: the freed slot waits DECISION_WAIT at
    # most, not DECISION_TURNS of those turns.
    async def main() -> list[int]:
        clock = SteppedClock()
        store = InMemoryBudgetStore(Limits(concurrent=1, cost_per_window=100), clock=clock)
        scheduler = Scheduler(store=store, clock=clock)
        first = scheduler.slot(Pool.STANDARD, 5)
        await first.__aenter__()
        waiting = asyncio.create_task(query(scheduler, 5, latency=0.0))
        for _ in range(DECISION_TURNS + 2):
            await asyncio.sleep(0)
        assert scheduler.statistics()[Pool.STANDARD].queued_everywhere == 1
        first.leave()
        await asyncio.sleep(0)
        in_flight = [store.usage()[Pool.STANDARD].in_flight]
        clock.now += DECISION_WAIT  # that turn took this long
        await asyncio.sleep(0)
        in_flight.append(store.usage()[Pool.STANDARD].in_flight)
        await waiting
        await scheduler.aclose()
        return in_flight

    assert DECISION_TURNS > 2
    assert asyncio.run(main()) == [0, 1]


def test_requests_queued_over_the_turns_of_a_wait_are_decided_together() -> None:
    # One slot: the 10 queued first would take it if it were decided alone; the 70 queued a
    # turn later is decided with it and goes first (heaviest first).
    async def main() -> list[tuple[int, float]]:
        scheduler = Scheduler(Limits(concurrent=1, cost_per_window=100, window=10.0))
        log: list[tuple[int, float]] = []
        light = asyncio.create_task(query(scheduler, 10, log=log))
        await asyncio.sleep(0)
        heavy = asyncio.create_task(query(scheduler, 70, log=log))
        await asyncio.gather(light, heavy)
        await scheduler.aclose()
        return log

    assert DECISION_TURNS > 2
    assert run_virtual(main()) == [(70, 0.0), (10, 1.0)]


def test_higher_priority_goes_first_and_holds_a_reservation() -> None:
    async def main() -> list[tuple[int, float]]:
        scheduler = Scheduler(LIMITS, starvation_bound=math.inf)
        log: list[tuple[int, float]] = []
        blocker = asyncio.create_task(query(scheduler, 70, latency=1.0, log=log))
        await asyncio.sleep(0.5)
        # Room 30 now, 100 at 11. All the cheap backfill would fit now, but the urgent 80 must
        # not be delayed by it: the backfill may only use what the 80 leaves (20 at 11).
        tasks = [asyncio.create_task(query(scheduler, 10, log=log)) for _ in range(3)]
        await decided()  # without the 80: two fit (three slots)
        tasks.append(asyncio.create_task(query(scheduler, 80, priority=5, log=log)))
        await asyncio.gather(blocker, *tasks)
        return log

    log = run_virtual(main())
    assert log[0] == (70, 0.0)
    # Two backfill queries fit beside the reserved 80 (10 + 10 + 80 <= 100 at 11), the third
    # waits; the urgent one is admitted the moment the 70 expires.
    assert sorted(log[1:]) == [(10, 0.5), (10, 0.5), (10, 11.5), (80, 11.0)]


def test_priorities_order_admission_when_room_frees() -> None:
    async def main() -> list[tuple[int, float]]:
        scheduler = Scheduler(LIMITS, starvation_bound=math.inf)
        log: list[tuple[int, float]] = []
        blocker = asyncio.create_task(query(scheduler, 100, latency=1.0))
        await decided()
        tasks = [
            asyncio.create_task(query(scheduler, cost, priority=priority, log=log))
            for cost, priority in ((60, 0), (50, 1), (40, 2))
        ]
        await asyncio.gather(blocker, *tasks)
        return log

    log = run_virtual(main())
    assert log[:2] == [(40, 11.0), (50, 11.0)]  # the 60 waits: it would not fit beside them
    assert log[2][0] == 60


def test_heaviest_first_within_a_priority() -> None:
    async def main() -> list[tuple[int, float]]:
        scheduler = Scheduler(LIMITS, starvation_bound=math.inf)
        log: list[tuple[int, float]] = []
        costs = (10, 20, 70, 30)
        await asyncio.gather(*(query(scheduler, c, log=log) for c in costs))
        return log

    assert run_virtual(main())[:2] == [(70, 0.0), (30, 0.0)]


def test_cancelled_waiter_takes_nothing() -> None:
    async def main() -> tuple[float, int, int]:
        scheduler = Scheduler(LIMITS)
        blocker = asyncio.create_task(query(scheduler, 50, latency=5.0))
        await decided()
        waiting = asyncio.create_task(query(scheduler, 60))
        await asyncio.sleep(1.0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await decided()  # the store confirms the cancellation
        stats = scheduler.statistics()[Pool.STANDARD]
        assert stats.queued == 0
        assert stats.windows[0].used == 50
        later = await query(scheduler, 50)  # the room the cancelled one never took
        await blocker
        return later.dispatched_at, stats.cancelled_waiting, stats.requests_sent

    assert run_virtual(main()) == (1.0, 1, 1)


def test_cancelled_in_flight_keeps_its_entry_until_its_lease_runs_out() -> None:
    # The server may still be counting a request its client gave up on: the entry stays in
    # flight until its lease (renewed until the cancellation) runs out, then a window more.
    async def main() -> tuple[int, float, float]:
        scheduler = Scheduler(LIMITS, lease=6.0)
        running = asyncio.create_task(query(scheduler, 70, latency=100.0))
        await asyncio.sleep(3.0)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        flying = scheduler.statistics()[Pool.STANDARD].in_flight
        await asyncio.sleep(10.0)
        gone_at = scheduler.statistics()[Pool.STANDARD].in_flight
        return flying, gone_at, (await query(scheduler, 70)).dispatched_at

    flying, gone, later = run_virtual(main())
    assert (flying, gone) == (1, 0)
    # Renewed at most at 3 (lease until 9 at most) and at least at 0 (until 6).
    assert 6.0 + LIMITS.window <= later <= 9.0 + LIMITS.window


def test_a_slot_left_by_hand_completes_or_abandons_its_entry_once() -> None:
    # Slot.leave() is the exit of ``async with`` for a caller that entered with __aenter__.
    async def main() -> tuple[int, int, float]:
        scheduler = Scheduler(LIMITS, lease=6.0)
        slot = scheduler.slot(Pool.STANDARD, 70)
        with pytest.raises(RuntimeError, match="entered"):
            slot.leave()
        await slot.__aenter__()
        await asyncio.sleep(1.0)
        slot.leave()
        with pytest.raises(RuntimeError, match="once"):
            slot.leave()
        await asyncio.sleep(0)
        completed = scheduler.statistics()[Pool.STANDARD].in_flight
        # Abandoned: in flight until its lease (6 s) runs out, then a window more.
        abandoned = scheduler.slot(Pool.STANDARD, 30)
        await abandoned.__aenter__()
        abandoned.leave(abandoned=True)
        await asyncio.sleep(0)
        held = scheduler.statistics()[Pool.STANDARD].in_flight
        later = await query(scheduler, 80)
        return completed, held, later.dispatched_at

    completed, held, later = run_virtual(main())
    assert (completed, held) == (0, 1)
    # The completed 70 leaves its window at 11 (80 would fit then, were the 30 completed too);
    # the abandoned 30 holds its room until its lease runs out (6 s after its last renewal at
    # 1) and a window more.
    assert later >= 1.0 + 6.0 + LIMITS.window


def test_statistics_snapshot() -> None:
    async def main() -> None:
        scheduler = Scheduler(LIMITS)
        running = asyncio.create_task(query(scheduler, 70, latency=5.0))
        queued = asyncio.create_task(query(scheduler, 40))
        await asyncio.sleep(1.0)
        scheduler.record_rate_limited(Pool.STANDARD)
        scheduler.record_retry(Pool.STANDARD)
        stats = scheduler.statistics()
        standard = stats[Pool.STANDARD]
        assert stats.time == 1.0
        assert (standard.in_flight, standard.queued) == (1, 1)
        assert [(w.name, w.used, w.remaining) for w in standard.windows] == [
            ("cost_per_window", 70, 30),
            ("cost_per_hour", 70, 930),
        ]
        assert (standard.requests_sent, standard.cost_sent) == (1, 70)
        assert (stats.rate_limited, stats.retries, stats.requests_sent) == (1, 1, 1)
        assert stats[Pool.USER].queued == 0
        await asyncio.gather(running, queued)
        after = scheduler.statistics()[Pool.STANDARD]
        assert (after.completed, after.requests_sent, after.cost_sent) == (2, 2, 110)

    run_virtual(main())


def test_expensive_query_is_not_starved_by_a_stream_of_cheap_ones() -> None:
    limits = Limits()  # 1000 per 300 s, 5 in flight
    latency = 5.0

    async def main(bound: float) -> float:
        scheduler = Scheduler(limits, starvation_bound=bound)

        async def stream() -> None:
            # 60 cost every 10 s: more than the window allows, so there is always a cheap
            # query that fits whenever a little room frees.
            tasks = []
            for _ in range(400):
                tasks.append(asyncio.create_task(query(scheduler, 60, latency=latency)))
                await asyncio.sleep(10.0)
            await asyncio.gather(*tasks)

        feeder = asyncio.create_task(stream())
        await asyncio.sleep(15.0)
        assert scheduler.statistics()[Pool.STANDARD].queued == 0
        big = await query(scheduler, 900, latency=latency)
        feeder.cancel()
        return big.waited

    bound = 3 * limits.window
    # Nothing else waits when it queues, so its claim falls due after the bound plus the time
    # the window needs for its own cost; then it waits at most a window and a response.
    claim = bound + 900 * limits.window / limits.cost_per_window
    waited = run_virtual(main(bound))
    assert claim < waited <= claim + limits.window + latency
    # Without the age rule the cheap stream would keep it out far longer.
    assert run_virtual(main(math.inf)) > 2 * (claim + limits.window + latency)


def test_a_batch_that_outlasts_the_bound_is_packed_as_if_nothing_starved() -> None:
    # Six windows of work queued at once with a one-window bound: no claim falls due before
    # the batch could have drained, so no reservation disturbs heaviest-first packing.
    costs = [5, 90, 35, 60, 20, 75, 10, 45, 95, 40, 70, 25, 55, 15, 85, 30]

    async def main(bound: float) -> list[tuple[int, float]]:
        scheduler = Scheduler(LIMITS, starvation_bound=bound)
        log: list[tuple[int, float]] = []
        await asyncio.gather(*(query(scheduler, c, latency=2.0, log=log) for c in costs))
        return log

    packed = run_virtual(main(LIMITS.window))
    assert packed == run_virtual(main(math.inf))
    assert packed[:2] == [(95, 0.0), (5, 0.0)]


def test_pacing_spreads_dispatches_and_still_respects_budgets() -> None:
    async def main(pacing: bool) -> list[float]:
        scheduler = Scheduler(LIMITS, pacing=pacing)
        enforcer = Enforcer(LIMITS, scheduler.clock)

        async def paced(cost: int) -> float:
            async with scheduler.slot(Pool.STANDARD, cost) as ticket:
                arrival = enforcer.arrive(Pool.STANDARD, cost)
                assert arrival.accepted
                assert arrival.ticket is not None
                await asyncio.sleep(0.5)
                enforcer.finish(arrival.ticket)
            return ticket.dispatched_at

        return await asyncio.gather(*(paced(10) for _ in range(6)))

    assert run_virtual(main(False)) == [0.0, 0.0, 0.0, 0.5, 0.5, 0.5]
    paced = run_virtual(main(True))
    assert paced[0] == 0.0
    assert paced[-1] >= 4.0  # bursts of 10 per 1 s


def test_many_queued_queries_cost_little_memory_and_time() -> None:
    n = 20_000

    async def main() -> float:
        scheduler = Scheduler(Limits(concurrent=5, cost_per_window=1000, window=10.0))
        scheduler.pause(Pool.STANDARD, 1.0)  # everything queues first

        async def plain(event: asyncio.Event) -> None:
            await event.wait()

        # Baseline: the same number of bare tasks, to subtract what tasks themselves cost.
        gc.collect()
        tracemalloc.start()
        event = asyncio.Event()
        bare = [asyncio.create_task(plain(event)) for _ in range(n)]
        await asyncio.sleep(0)
        bare_bytes = tracemalloc.get_traced_memory()[0]
        event.set()
        await asyncio.gather(*bare)
        del bare
        gc.collect()
        tracemalloc.stop()
        tracemalloc.start()
        tasks = [asyncio.create_task(query(scheduler, 1 + i % 200, latency=0.1)) for i in range(n)]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        queued_bytes = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert scheduler.statistics()[Pool.STANDARD].queued == n
        await asyncio.gather(*tasks)
        return (queued_bytes - bare_bytes) / n

    per_query = run_virtual(main())
    assert per_query < 2048


def test_like_requests_are_admitted_in_arrival_order_as_slots_free() -> None:
    # One (priority, cost) bucket takes the scheduler's shortcut; it must decide as the full
    # rule does: arrival order, as many as the cap and the budgets allow, waiting for expiries.
    async def main() -> list[tuple[int, float]]:
        scheduler = Scheduler(LIMITS, starvation_bound=math.inf)
        log: list[tuple[int, float]] = []

        async def tagged(tag: int) -> None:
            async with scheduler.slot(Pool.STANDARD, 30) as ticket:
                log.append((tag, ticket.dispatched_at))
                await asyncio.sleep(1.0)

        await asyncio.gather(*(tagged(i) for i in range(7)))
        return log

    # Three fit the cap at 0 (90 of 100); the fourth needs the first 30 back (1 + 10), and so on.
    assert run_virtual(main()) == [
        (0, 0.0),
        (1, 0.0),
        (2, 0.0),
        (3, 11.0),
        (4, 11.0),
        (5, 11.0),
        (6, 22.0),
    ]


def test_a_clock_other_than_the_loop_drives_the_alarms() -> None:
    class Shifted:
        """The loop's time plus an offset: not the loop's own clock, so alarms sleep on it."""

        def time(self) -> float:
            return asyncio.get_running_loop().time() + 1000.0

        async def sleep(self, seconds: float) -> None:
            await asyncio.sleep(max(0.0, seconds))

    async def main() -> list[float]:
        scheduler = Scheduler(LIMITS, clock=Shifted())
        first = await query(scheduler, 60, latency=2.0)
        second = await query(scheduler, 60)
        return [first.dispatched_at, second.dispatched_at]

    assert run_virtual(main()) == [1000.0, 1012.0]


def test_a_full_in_flight_cap_waits_for_a_completion_not_for_expiries() -> None:
    # While every slot is taken nothing can start, whatever expires meanwhile; the completion
    # itself hands the slot on, in the same instant.
    async def main() -> list[float]:
        scheduler = Scheduler(LIMITS)
        long = [asyncio.create_task(query(scheduler, 10, latency=30.0)) for _ in range(3)]
        await asyncio.sleep(0)
        later = await query(scheduler, 10)
        await asyncio.gather(*long)
        return [later.dispatched_at, later.waited]

    assert run_virtual(main()) == [30.0, 30.0]
