"""The strict server-side enforcement used by the emulator and the scheduler's property tests."""

from __future__ import annotations

from amplitude_async.limits import Limits, Pool
from amplitude_async.testing import Enforcer, VirtualClock

LIMITS = Limits(
    concurrent=2,
    cost_per_window=100,
    window=10.0,
    cost_per_hour=150,
    hour=60.0,
    user_concurrent=2,
    user_queries_per_hour=3,
)


def test_sliding_window_is_strict_and_half_open() -> None:
    clock = VirtualClock()
    enforcer = Enforcer(LIMITS, clock)
    first = enforcer.arrive(Pool.STANDARD, 70)
    assert first.accepted
    assert first.ticket is not None
    enforcer.finish(first.ticket)
    clock._advance(9.999)
    refused = enforcer.arrive(Pool.STANDARD, 31)
    assert refused.rejected == "rate"
    assert refused.ticket is None
    clock._advance(0.001)  # the arrival at 0 stops counting at exactly 10
    assert enforcer.arrive(Pool.STANDARD, 31).accepted
    assert enforcer.rejected == {"concurrent": 0, "rate": 1}
    assert [cost for _, _, cost in enforcer.log] == [70, 31]


def test_hour_window_and_rejections_take_nothing() -> None:
    clock = VirtualClock()
    enforcer = Enforcer(LIMITS, clock)
    for _ in range(3):
        arrival = enforcer.arrive(Pool.STANDARD, 50)
        assert arrival.accepted
        assert arrival.ticket is not None
        enforcer.finish(arrival.ticket)
        clock._advance(10.0)
    assert enforcer.arrive(Pool.STANDARD, 1).rejected == "rate"  # 150 in the hour
    assert enforcer.window_usage(Pool.STANDARD) == (0, 150)
    clock._advance(30.0)  # now 60: the first arrival (at 0) has left the hour
    assert enforcer.arrive(Pool.STANDARD, 50).accepted


def test_concurrency_counts_arrived_and_unfinished() -> None:
    clock = VirtualClock()
    enforcer = Enforcer(LIMITS, clock)
    a = enforcer.arrive(Pool.STANDARD, 1)
    b = enforcer.arrive(Pool.STANDARD, 1)
    assert enforcer.arrive(Pool.STANDARD, 1).rejected == "concurrent"
    assert a.ticket is not None
    enforcer.finish(a.ticket)
    assert enforcer.arrive(Pool.STANDARD, 1).accepted
    assert b.accepted
    assert enforcer.peak_in_flight[Pool.STANDARD] == 2
    # The user pool is separate.
    assert enforcer.arrive(Pool.USER, 0).accepted


def test_user_pool_counts_queries_per_hour() -> None:
    clock = VirtualClock()
    enforcer = Enforcer(LIMITS, clock)
    for _ in range(3):
        arrival = enforcer.arrive(Pool.USER, 0)
        assert arrival.ticket is not None
        enforcer.finish(arrival.ticket)
    assert enforcer.arrive(Pool.USER, 0).rejected == "rate"


def test_in_flight_reading_limits_cost_at_the_same_time() -> None:
    clock = VirtualClock()
    enforcer = Enforcer(LIMITS, clock, reading="in_flight")
    a = enforcer.arrive(Pool.STANDARD, 80)
    assert enforcer.arrive(Pool.STANDARD, 21).rejected == "concurrent"
    assert a.ticket is not None
    enforcer.finish(a.ticket)
    # Finished work no longer counts (the window reading would still refuse this).
    assert enforcer.arrive(Pool.STANDARD, 70).accepted
    assert Enforcer(LIMITS, clock).arrive(Pool.STANDARD, 70).accepted
    window = Enforcer(LIMITS, clock)
    done = window.arrive(Pool.STANDARD, 80)
    assert done.ticket is not None
    window.finish(done.ticket)
    assert window.arrive(Pool.STANDARD, 70).rejected == "rate"
