"""A waiting request's states: every move goes through one table, and none traps a waiter."""

from __future__ import annotations

import asyncio

import pytest

from amplitude_async.limits import Pool
from amplitude_async.scheduler import Ticket
from amplitude_async.scheduler.states import TRANSITIONS, Waiter, WaiterState


def waiter(future: asyncio.Future[Ticket]) -> Waiter:
    return Waiter(0, Pool.STANDARD, 5, 0, 0.0, future)


async def test_a_move_the_table_does_not_allow_is_refused() -> None:
    w = waiter(asyncio.get_running_loop().create_future())
    with pytest.raises(AssertionError, match=r"NEW to .*CANCELLING"):
        w.move(WaiterState.CANCELLING)  # never sent: nothing to cancel in the store
    w.move(WaiterState.SENT)
    w.move(WaiterState.DONE)
    for state in WaiterState:
        with pytest.raises(AssertionError):
            w.move(state)
    assert w.state is WaiterState.DONE


def test_every_state_can_settle_and_only_done_is_final() -> None:
    assert set(TRANSITIONS) == set(WaiterState)
    for state, targets in TRANSITIONS.items():
        assert state not in targets
        if state is WaiterState.DONE:
            assert targets == frozenset()
        else:
            assert WaiterState.DONE in targets
