"""Budget arithmetic: ledgers, snapshots, forecasts, the cost check and heaviest-first packing."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from amplitude_async.budget import (
    Expiries,
    PoolLedger,
    PoolSnapshot,
    check_cost,
    largest_first,
    pool_cap,
    pool_windows,
    weight_of,
)
from amplitude_async.errors import QueryTooExpensive
from amplitude_async.limits import Limits, Pool

LIMITS = Limits(concurrent=3, cost_per_window=100, window=10.0, cost_per_hour=250, hour=60.0)


def ledger(pool: Pool = Pool.STANDARD, limits: Limits = LIMITS) -> PoolLedger:
    return PoolLedger(pool_windows(limits, pool), pool_cap(limits, pool))


def take(book: PoolLedger, weight: int, now: float) -> int:
    """Record an entry of ``weight`` dispatched at ``now``, as a store does: check, then take."""
    assert book.fits(weight, now), book.snapshot(now)
    return book.take(weight)


def test_pools_have_their_windows_and_caps() -> None:
    assert [w.name for w in pool_windows(LIMITS, Pool.STANDARD)] == [
        "cost_per_window",
        "cost_per_hour",
    ]
    assert [(w.budget, w.length) for w in pool_windows(LIMITS, Pool.USER)] == [(360, 60.0)]
    assert pool_cap(LIMITS, Pool.STANDARD) == 3
    assert pool_cap(LIMITS, Pool.USER) == 10
    assert weight_of(Pool.USER, 0) == 1
    assert weight_of(Pool.STANDARD, 42) == 42


def test_query_too_expensive_names_the_budget_and_hints() -> None:
    check_cost(LIMITS, Pool.STANDARD, 100)
    with pytest.raises(QueryTooExpensive) as info:
        check_cost(LIMITS, Pool.STANDARD, 101)
    assert (info.value.cost, info.value.budget, info.value.budget_name) == (
        101,
        100,
        "cost_per_window",
    )
    assert "shorter date range" in info.value.hint
    wide = Limits(cost_per_window=1000, cost_per_hour=500)
    with pytest.raises(QueryTooExpensive) as info:
        check_cost(wide, Pool.STANDARD, 600)
    assert info.value.budget_name == "cost_per_hour"
    check_cost(LIMITS, Pool.USER, 10_000)  # user queries weigh 1 whatever their cost
    with pytest.raises(ValueError, match="negative"):
        check_cost(LIMITS, Pool.STANDARD, -1)


def test_entry_occupies_from_dispatch_until_a_window_after_completion() -> None:
    book = ledger()
    entry = take(book, 60, now=0.0)
    assert not book.fits(41, 5.0)
    book.complete(entry, now=20.0)  # in flight for 20 s: occupied all that time
    assert not book.fits(41, 29.999)
    assert book.fits(41, 30.0)  # completion + window
    # The hour window still holds it: 60 + 41 + ... up to 250 per hour.
    assert book.snapshot(30.0).used == (0, 60)
    assert book.snapshot(80.0).used == (0, 0)


def test_all_windows_and_the_cap_are_checked_together() -> None:
    book = ledger()
    for now in (0.0, 20.0):
        book.complete(take(book, 100, now), now)
    # 200 of 250 used in the hour; the 10 s window is free again at 30 s.
    assert not book.fits(60, 31.0)
    assert book.snapshot(31.0).earliest_fit(60) == 60.0  # the first hour entry leaves at 0 + 60
    assert book.snapshot(31.0).used == (0, 200)  # the refusal took nothing
    for _ in range(3):
        take(book, 10, 61.0)
    assert not book.fits(1, 61.0)  # cap of 3 in flight
    assert book.snapshot(61.0).earliest_fit(1) == math.inf  # needs a completion


def test_forecasts_count_in_flight_entries_as_never_leaving() -> None:
    book = ledger()
    done = [take(book, w, 0.0) for w in (30, 20)]
    take(book, 40, 0.0)  # stays in flight
    book.complete(done[0], 1.0)
    book.complete(done[1], 2.0)
    snap = book.snapshot(3.0)
    assert snap.room() == 10
    assert tuple(snap.expiries[0]) == ((11.0, 30), (12.0, 20))
    assert snap.room_at(11.0) == 40
    assert snap.room_at(12.0) == 60
    assert snap.earliest_fit(35) == 11.0
    assert snap.earliest_fit(50) == 12.0
    assert snap.earliest_fit(61) == math.inf
    assert snap.earliest_fit(10, slots=1) == 3.0
    assert snap.next_change() == 11.0


def test_pause_extends_never_shortens_and_blocks() -> None:
    book = ledger()
    book.pause(50.0)
    book.pause(20.0)
    assert book.paused_until == 50.0
    assert not book.fits(1, 49.0)
    assert book.snapshot(49.0).earliest_fit(1) == 50.0
    assert book.fits(1, 50.0)


def test_release_forgets_an_unsent_entry() -> None:
    book = ledger()
    entry = take(book, 100, 0.0)
    book.release(entry)
    assert book.fits(100, 0.0)
    assert book.in_flight == 0


def test_out_of_order_completion_keeps_expiries_sorted() -> None:
    book = ledger()
    first, second = take(book, 10, 0.0), take(book, 20, 0.0)
    book.complete(first, 5.0)
    book.complete(second, 3.0)
    assert tuple(book.snapshot(5.0).expiries[0]) == ((13.0, 20), (15.0, 10))


def test_user_pool_counts_queries_not_cost() -> None:
    limits = Limits(user_concurrent=2, user_queries_per_hour=3, hour=60.0)
    book = ledger(Pool.USER, limits)
    for now in (0.0, 1.0, 2.0):
        book.complete(take(book, weight_of(Pool.USER, 0), now), now)
    assert not book.fits(1, 3.0)
    assert book.snapshot(3.0).earliest_fit(1) == 60.0


def test_an_expired_lease_counts_as_completed_at_its_deadline() -> None:
    book = ledger()
    entry = take_leased(book, 60, 0.0, owner="a", deadline=5.0)
    take_leased(book, 10, 0.0, owner="b", deadline=5.0)
    book.renew("b", 8.0)
    assert book.snapshot(1.0).lease_until == 5.0
    assert book.snapshot(1.0).next_change() == 5.0
    assert book.in_flight == 2
    book.expire(6.0)
    assert book.in_flight == 1  # a's entry ran out; b renewed
    assert book.owns(entry) is None
    assert not book.fits(41, 14.9)  # completed at 5: occupies until 15
    assert book.fits(30, 15.0)


def test_an_abandoned_entry_is_no_longer_renewed() -> None:
    book = ledger()
    entry = take_leased(book, 10, 0.0, owner="a", deadline=5.0)
    book.abandon(entry)
    book.renew("a", 50.0)
    assert book.owns(entry) == ""
    book.expire(5.0)
    assert book.in_flight == 0


def take_leased(book: PoolLedger, weight: int, now: float, *, owner: str, deadline: float) -> int:
    assert book.fits(weight, now), book.snapshot(now)
    return book.take(weight, owner, deadline)


def test_largest_first_examples() -> None:
    assert largest_first([(50, 3), (30, 1), (5, 10)], room=100, slots=5) == {50: 2}
    assert largest_first([(50, 3), (30, 1), (5, 10)], room=95, slots=5) == {50: 1, 30: 1, 5: 3}
    assert largest_first([(50, 3), (5, 10)], room=100, slots=1) == {50: 1}
    assert largest_first([(200, 1)], room=100, slots=5) == {}
    assert largest_first([(0, 4), (10, 1)], room=10, slots=3) == {10: 1, 0: 2}


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.integers(0, 120), st.integers(0, 6), max_size=12),
    st.integers(0, 150),
    st.integers(0, 6),
)
def test_largest_first_fits_and_is_maximal(items: dict[int, int], room: int, slots: int) -> None:
    chosen = largest_first(items.items(), room, slots)
    assert sum(w * n for w, n in chosen.items()) <= room
    assert sum(chosen.values()) <= slots
    assert all(0 < n <= items[w] for w, n in chosen.items())
    left_room = room - sum(w * n for w, n in chosen.items())
    if sum(chosen.values()) < slots:
        # Nothing left over would still fit: the choice is maximal (work-conserving).
        assert all(w > left_room for w, n in items.items() if n > chosen.get(w, 0))


# -- the incremental ledger against a brute-force recomputation ------------------------------

BRUTE = Limits(concurrent=4, cost_per_window=60, window=3.0, cost_per_hour=150, hour=7.5)

operations = st.lists(
    st.one_of(
        st.tuples(st.just("take"), st.integers(0, 70)),
        st.tuples(st.just("complete"), st.integers(0, 7), st.integers(-20, 0)),
        st.tuples(st.just("release"), st.integers(0, 7)),
        st.tuples(st.just("wait"), st.integers(0, 20)),
        st.tuples(st.just("pause"), st.integers(0, 6)),
    ),
    max_size=80,
)


class Brute:
    """The accounting rule recomputed from scratch from every entry ever taken."""

    def __init__(self, limits: Limits) -> None:
        self.windows = pool_windows(limits, Pool.STANDARD)
        self.cap = pool_cap(limits, Pool.STANDARD)
        self.entries: dict[int, tuple[int, float | None]] = {}  # entry -> (weight, completed)
        self.paused_until = -math.inf

    def used(self, now: float) -> list[int]:
        return [
            sum(w for w, done in self.entries.values() if done is None or done + win.length > now)
            for win in self.windows
        ]

    def fits(self, weight: int, now: float) -> bool:
        in_flight = sum(done is None for _, done in self.entries.values())
        return (
            now >= self.paused_until
            and in_flight < self.cap
            and all(
                u + weight <= w.budget for u, w in zip(self.used(now), self.windows, strict=True)
            )
        )

    def room_at(self, now: float, when: float) -> int:
        # Entries gone by ``now`` stay gone; the rest occupy at ``when`` unless they expire.
        live = [
            (w, done)
            for w, done in self.entries.values()
            if done is None or any(done + win.length > now for win in self.windows)
        ]
        return min(
            win.budget
            - sum(
                w
                for w, done in live
                if (done is None or done + win.length > now)
                and (done is None or done + win.length > when)
            )
            for win in self.windows
        )

    def earliest_fit(self, weight: int, now: float) -> float:
        in_flight = sum(done is None for _, done in self.entries.values())
        if in_flight >= self.cap:
            return math.inf
        start = max(now, self.paused_until)
        times = sorted(
            {start}
            | {
                done + win.length
                for _, done in self.entries.values()
                if done is not None
                for win in self.windows
                if done + win.length > start
            }
        )
        return next((t for t in times if self.room_at(now, t) >= weight), math.inf)


@settings(max_examples=300, deadline=None)
@given(ops=operations, compact_min=st.sampled_from([1, 2, 5, 256]))
@example(  # a completion reported after entries completed later have left both windows
    ops=[("take", 5), ("take", 7), ("complete", 0, 0), ("wait", 20), ("complete", 0, -20)],
    compact_min=256,
)
def test_incremental_ledger_matches_brute_force(
    ops: list[tuple[str, int] | tuple[str, int, int]], compact_min: int
) -> None:
    windows = pool_windows(BRUTE, Pool.STANDARD)
    book = PoolLedger(windows, pool_cap(BRUTE, Pool.STANDARD), compact_min=compact_min)
    brute = Brute(BRUTE)
    now = 0.0
    flying: list[int] = []
    kept: list[tuple[PoolSnapshot, list[tuple[tuple[float, int], ...]], int]] = []
    for op in ops:
        if op[0] == "take":
            weight = op[1]
            fits = brute.fits(weight, now)
            assert book.fits(weight, now) == fits
            if fits:
                entry = book.take(weight)
                brute.entries[entry] = (weight, None)
                flying.append(entry)
            else:
                assert book.snapshot(now).earliest_fit(weight) == brute.earliest_fit(weight, now)
        elif op[0] == "complete" and flying:
            entry = flying.pop(op[1] % len(flying))
            # Completion times may go back a little: several clocks, or a caller's own times.
            done = max(0.0, now + op[2] * 0.5)  # type: ignore[misc]
            book.complete(entry, done)
            brute.entries[entry] = (brute.entries[entry][0], done)
        elif op[0] == "release" and flying:
            entry = flying.pop(op[1] % len(flying))
            book.release(entry)
            del brute.entries[entry]
        elif op[0] == "wait":
            now += op[1] * 0.5
        elif op[0] == "pause":
            book.pause(now + op[1])
            brute.paused_until = max(brute.paused_until, now + op[1])
        snap = book.snapshot(now)
        assert list(snap.used) == brute.used(now)
        assert snap.in_flight == len(flying)
        for weight in (0, 1, 25, 60):
            assert snap.fits(weight) == brute.fits(weight, now)
            assert snap.earliest_fit(weight) == brute.earliest_fit(weight, now)
        for ahead in (0.0, 1.0, 3.0, 7.5, 20.0):
            assert snap.room_at(now + ahead) == brute.room_at(now, now + ahead)
        for window, expiries in zip(windows, snap.expiries, strict=True):
            pairs = tuple(sorted(expiries))  # ties in any order
            assert pairs == tuple(
                sorted(
                    (done + window.length, w)
                    for w, done in brute.entries.values()
                    if done is not None and done + window.length > now
                )
            )
        kept.append((snap, [tuple(e) for e in snap.expiries], snap.room_at(now + 5.0)))
    # Later appends, insertions and compactions never change a snapshot already handed out.
    for old, said, room in kept:
        assert [tuple(e) for e in old.expiries] == said
        assert old.room_at(old.now + 5.0) == room


def test_expiries_of_pairs_answers_forecasts() -> None:
    view = Expiries.of([(12.0, 20), (11.0, 30)])
    assert tuple(view) == ((11.0, 30), (12.0, 20))
    assert (view.first(), len(view)) == (11.0, 2)
    assert [view.freed_by(t) for t in (10.0, 11.0, 11.5, 12.0)] == [0, 30, 30, 50]
    assert [view.freed_at(w) for w in (0, 1, 30, 31, 50, 51)] == [
        -math.inf,
        11.0,
        11.0,
        12.0,
        12.0,
        math.inf,
    ]
    assert Expiries.of([]).first() == math.inf


def test_the_earliest_lease_stays_exact_when_entries_leave() -> None:
    book = PoolLedger(pool_windows(Limits(), Pool.STANDARD), 5)
    first = book.take(10, "a", 5.0)
    second = book.take(10, "a", 8.0)
    third = book.take(10, "b", 12.0)
    assert book.snapshot(0.0).lease_until == 5.0
    book.complete(first, 1.0)
    assert book.snapshot(1.0).lease_until == 8.0  # not the finished entry's 5.0
    book.release(second)
    assert book.snapshot(1.0).lease_until == 12.0
    book.complete(third, 2.0)
    assert book.snapshot(2.0).lease_until == math.inf


lease_operations = st.lists(
    st.one_of(
        st.tuples(st.just("take"), st.sampled_from(["a", "b"]), st.integers(1, 6)),
        st.tuples(st.just("renew"), st.sampled_from(["a", "b"]), st.integers(0, 6)),
        st.tuples(st.just("complete"), st.integers(0, 9), st.just(0)),
        st.tuples(st.just("release"), st.integers(0, 9), st.just(0)),
        st.tuples(st.just("abandon"), st.integers(0, 9), st.just(0)),
        st.tuples(st.just("wait"), st.integers(0, 4), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=lease_operations)
def test_the_earliest_lease_matches_brute_force(ops: list[tuple[str, int | str, int]]) -> None:
    # Leases share deadlines often (a renewal sets all of an owner's): the ledger counts those
    # at the earliest one instead of looking through every lease each time one goes.
    book = PoolLedger(pool_windows(Limits(), Pool.STANDARD), 10)
    leases: dict[int, tuple[str, float]] = {}  # entry -> (owner, deadline); "": abandoned
    now = 0.0
    for kind, what, number in ((op[0], op[1], op[-1]) for op in ops):
        if kind == "take" and len(leases) < 10:
            leases[book.take(1, str(what), now + number)] = (str(what), now + number)
        elif kind == "renew":
            book.renew(str(what), now + number)
            for entry, (owner, deadline) in leases.items():
                if owner == what:
                    leases[entry] = (owner, max(deadline, now + number))
        elif kind in ("complete", "release", "abandon") and leases:
            entry = sorted(leases)[int(what) % len(leases)]
            if kind == "complete":
                book.complete(entry, now)
                del leases[entry]
            elif kind == "release":
                book.release(entry)
                del leases[entry]
            else:
                book.abandon(entry)
                leases[entry] = ("", leases[entry][1])
        elif kind == "wait":
            now += int(what)
            # A lease that ran out counts as completed then.
            leases = {entry: lease for entry, lease in leases.items() if lease[1] > now}
        expected = min((deadline for _, deadline in leases.values()), default=math.inf)
        assert book.snapshot(now).lease_until == expected
        assert book.in_flight == len(leases)
