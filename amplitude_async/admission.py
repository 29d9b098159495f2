"""The budget store: one project's ledgers *and* its queue of waiting requests, and the decision
that admits them. Pure apart from reading the store's clock; no event loop needed.

A store is shared by every process spending one project's budget. Each process (an *owner*)
talks to it in *exchanges*: one call carries everything that changed locally since the last one
(requests queued or cancelled, responses completed, entries given back or abandoned, pauses) and
returns what the store decided for this owner (grants) and how long until time alone could
change a decision. The decision itself runs inside the store, atomically, over the waiters of
every owner, so priorities, packing and the bounded-wait reservation hold across processes as
they do inside one: it is :mod:`amplitude_async.policy`, rules and code. Grants for other
owners reach them through :meth:`BudgetStore.attach`.

Time belongs to the store: ledger times, lease deadlines and claim times are on the store's
clock, and owners only ever see durations (``wake_in``, pause lengths, the lease term), so clocks
of different machines never meet.

Leases: every in-flight entry has an owner and a deadline, renewed by the owner's exchanges; an
owner exchanges at least every third of its lease term while it has entries in flight, and
within its *heartbeat* while it has waiters. An entry whose lease runs out counts as completed
then (see :class:`~amplitude_async.budget.PoolLedger`); the waiters of an owner whose heartbeat
lapsed are dropped at once, not granted.

Lost exchanges: an owner may never hear the answer to an exchange the store applied (a timeout,
a frozen or restarted server). So every exchange says what the owner really holds (``held``: its
entries in flight) and is numbered (``seq``). The store renews only the held entries, and gives
back at once an entry it granted to the owner that the owner does not hold and was not told of
yet (a grant whose answer was lost: its request was never sent); an exchange older than one
already applied is refused, so a late copy cannot undo a newer one. Each answer carries the
store's version (``seen``: an epoch and a generation); an owner that saw a later version than the
store holds (a restored snapshot, a failover to a lagging replica) makes the store start cold.

:class:`InMemoryBudgetStore` is the reference store, for the schedulers of one process; its
operations never suspend. :class:`amplitude_async.redis_store.RedisBudgetStore` takes the same
decisions in a Lua script, for many processes and machines.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Protocol

from attrs import define, field, frozen

from ._settings import check_bound, check_instance
from .budget import EntryId, PoolLedger, WindowUsage, pool_cap, pool_windows
from .clock import Clock, LoopClock
from .errors import BudgetUnavailable
from .limits import DEFAULT_LIMITS, Limits, Pool
from .policy import (
    DEFAULT_STARVATION_WINDOWS,
    claim_delay,
    default_starvation_bound,
    drain,
    next_decision,
    plan,
    settle_claims,
)
from .quota import MonthlyCounts
from .waiters import DONE, PoolQueue, Waiter

__all__ = [
    "DEFAULT_STARVATION_WINDOWS",
    "BudgetStore",
    "BudgetUsage",
    "Changes",
    "Grant",
    "InMemoryBudgetStore",
    "Outcome",
    "PoolUsage",
    "Registration",
    "claim_delay",
    "default_starvation_bound",
    "plan",
]


@frozen
class Registration:
    """A request that starts waiting: ``local`` is its id within its owner."""

    local: int
    pool: Pool
    weight: int
    priority: int


@define
class Changes:
    """What one owner tells the store in one exchange (all of it applied atomically).

    ``lease`` is the owner's lease term in seconds. ``pause`` holds ``(pool, seconds)``.
    ``warm`` says the owner exchanged with this store within its longest window: if the store
    finds its state gone, it starts cold (see :class:`BudgetStore`). ``leaving``: the owner
    detaches after this exchange; its waiters are dropped and, if it kept time for the queue,
    the other owners are nudged (an empty delivery) to take over.

    ``held`` lists the entries the owner still has in flight (not abandoned): only they are
    renewed, and an entry of the owner that it neither holds nor completes, and that the store
    has not told it of yet, was granted by an exchange whose answer was lost and is given back
    (``None``: no reconciliation, every entry of the owner is renewed). ``seq`` numbers the
    owner's exchanges (0: unnumbered): the store refuses one not above the last it applied.
    ``seen`` is the store's version from the owner's last answer (see :attr:`Outcome.seen`).
    ``beat`` is the owner's heartbeat term in seconds (default: ``lease``): its waiters are
    dropped once it has been silent that long.
    """

    owner: str
    lease: float
    register: list[Registration] = field(factory=list)
    cancel: list[tuple[Pool, int]] = field(factory=list)
    complete: list[tuple[Pool, EntryId]] = field(factory=list)
    abandon: list[tuple[Pool, EntryId]] = field(factory=list)
    release: list[tuple[Pool, EntryId]] = field(factory=list)
    pause: list[tuple[Pool, float]] = field(factory=list)
    warm: bool = False
    leaving: bool = False
    held: list[tuple[Pool, EntryId]] | None = None
    seq: int = 0
    seen: str = ""
    beat: float | None = None


@frozen
class Grant:
    """Waiter ``local`` of an owner was admitted as ``entry`` of ``pool``."""

    pool: Pool
    local: int
    entry: EntryId


@frozen
class PoolUsage:
    """One pool of the shared budget, as the store sees it (every owner together)."""

    pool: Pool
    windows: tuple[WindowUsage, ...]
    in_flight: int
    queued: int
    paused_for: float
    """Seconds the pool stays paused (0: not paused)."""


@frozen
class BudgetUsage:
    """The whole budget as the store sees it: per pool usage and the owners attached."""

    pools: tuple[PoolUsage, ...]
    processes: int

    def __getitem__(self, pool: Pool) -> PoolUsage:
        for usage in self.pools:
            if usage.pool is pool:
                return usage
        raise KeyError(pool)


@frozen
class Outcome:
    """What the store answers an exchange.

    ``grants`` are this owner's; ``cancelled`` the ``(pool, local)`` waiters it removed (the
    others asked to be cancelled had already been granted: their grants arrive); ``wake_in``
    seconds until time alone could change a decision, if this owner is the one to exchange
    again then (``inf``: only a change can, or another owner keeps the time);
    ``rejoined``: the store did not know this owner (first exchange, dropped after its lease ran
    out, or the store's state was lost), so its waiting requests must be registered again;
    ``queued``: requests waiting in the store, every owner's; ``usage``: the budget after the
    exchange, if the store reports it with every answer. ``seen``: the store's version after
    the exchange (``epoch:generation``), to send back with the next one. ``reset``: why the
    store started cold in this exchange (its state was lost, rolled back or unreadable), if it
    did; the entries the owner held before belong to the old state.
    """

    grants: tuple[Grant, ...]
    cancelled: tuple[tuple[Pool, int], ...]
    wake_in: float
    queued: int = 0
    rejoined: bool = False
    usage: BudgetUsage | None = None
    seen: str = ""
    reset: str = ""


class BudgetStore(Protocol):
    """Where a project's budget lives: ledgers, the queue of waiters, the decision.

    Every :meth:`exchange` is atomic. Operations that carry the same changes for the same
    times take the same decisions in every store (a shared suite of tests runs against each).
    A store whose state was lost (a restart without persistence, a flush, a failover) while an
    owner was ``warm`` starts cold: as if every window had just been filled, and paused for one
    lease term, because the API still counts what was admitted before.
    """

    @property
    def limits(self) -> Limits:
        """The limits this store enforces."""
        ...

    @property
    def starvation_bound(self) -> float:
        """The starvation bound of its queue (seconds)."""
        ...

    async def exchange(self, changes: Changes) -> Outcome:
        """Apply ``changes`` atomically, decide, and answer. Raises
        :class:`~amplitude_async.errors.BudgetUnavailable` if the store cannot be reached."""
        ...

    def attach(self, owner: str, deliver: Callable[[Sequence[Grant]], None]) -> None:
        """Have grants decided for ``owner`` by other owners' exchanges passed to ``deliver``."""
        ...

    async def detach(self, owner: str) -> None:
        """Stop delivering grants to ``owner``."""
        ...

    def usage(self) -> BudgetUsage | None:
        """The budget without I/O: exact for a local store, as last seen for a remote one."""
        ...


# -- the in-process store ------------------------------------------------------------------------


class InMemoryBudgetStore(MonthlyCounts):
    """A :class:`BudgetStore` in this process: a :class:`~amplitude_async.budget.PoolLedger` and
    a :class:`~amplitude_async.waiters.PoolQueue` per pool, decided by
    :mod:`amplitude_async.policy`. Its exchanges never suspend. It also keeps the monthly quota
    counts (:class:`~amplitude_async.quota.MonthlyCounter`).

    ``clock`` is the store's clock (default: the running loop's). Several schedulers of one
    process may share it, each an owner of its own.
    """

    def __init__(
        self,
        limits: Limits = DEFAULT_LIMITS,
        *,
        clock: Clock | None = None,
        starvation_bound: float | None = None,
    ) -> None:
        check_instance("limits", limits, Limits, "a Limits")
        if starvation_bound is None:
            starvation_bound = default_starvation_bound(limits)
        starvation_bound = check_bound("starvation_bound", starvation_bound)
        super().__init__()
        self._limits = limits
        self._starvation_bound = starvation_bound
        self._clock: Clock = clock if clock is not None else LoopClock()
        self.ledgers = {
            pool: PoolLedger(pool_windows(limits, pool), pool_cap(limits, pool)) for pool in Pool
        }
        self.queues = {pool: PoolQueue() for pool in Pool}
        # Seconds the budgets need, at full use, to admit one unit of weight of each pool.
        self._drain = {pool: drain(pool_windows(limits, pool)) for pool in Pool}
        self._claim_delay = claim_delay(limits)
        self._seq = itertools.count()
        self._owners: dict[str, float] = {}  # owner -> deadline of its heartbeat
        self._leases: dict[str, float] = {}  # owner -> deadline of its lease
        self._numbers: dict[str, int] = {}  # owner -> the last exchange number applied
        self._generation = 0
        self._waiting: dict[str, dict[tuple[Pool, int], Waiter]] = {}
        self._listeners: dict[str, Callable[[Sequence[Grant]], None]] = {}
        self._pending: dict[str, list[Grant]] = {}
        self._keeper: tuple[str, float] = ("", -math.inf)  # who wakes for the queue, and when

    @property
    def limits(self) -> Limits:
        """The limits this store enforces."""
        return self._limits

    @property
    def starvation_bound(self) -> float:
        """The starvation bound of its queue (seconds)."""
        return self._starvation_bound

    def time(self) -> float:
        """The store's clock."""
        return self._clock.time()

    async def exchange(self, changes: Changes) -> Outcome:
        """Apply ``changes``, decide and answer (never suspends)."""
        return self.apply(changes)

    def attach(self, owner: str, deliver: Callable[[Sequence[Grant]], None]) -> None:
        """Pass grants other owners' exchanges decide for ``owner`` to ``deliver``."""
        self._listeners[owner] = deliver

    async def detach(self, owner: str) -> None:
        """Stop delivering to ``owner``."""
        self._listeners.pop(owner, None)

    def apply(self, changes: Changes) -> Outcome:
        """:meth:`exchange`, synchronously."""
        now = self._clock.time()
        owner = changes.owner
        if changes.seq:
            if changes.seq <= self._numbers.get(owner, 0):
                raise BudgetUnavailable(
                    f"exchange {changes.seq} of {owner} came after a later one: refused"
                )
            self._numbers[owner] = changes.seq
        self._generation += 1
        deadline = now + changes.lease
        rejoined = owner not in self._owners
        self._owners[owner] = now + (changes.beat if changes.beat is not None else changes.lease)
        self._leases[owner] = deadline
        if len(self._owners) > 1:
            self._drop_dead_owners(now)
        mine = self._waiting.get(owner)
        if mine is None:
            mine = self._waiting[owner] = {}
        ledgers = self.ledgers
        held: dict[Pool, set[EntryId]] | None = None
        if changes.held is not None:
            held = {pool: set() for pool in ledgers}
            for pool, entry in changes.held:
                held[pool].add(entry)
        for pool, ledger in ledgers.items():
            ledger.renew(owner, deadline, only=None if held is None else held[pool])
            ledger.expire(now)
        for pool, entry in changes.complete:
            self.complete(owner, pool, entry, now)
        for pool, entry in changes.abandon:
            if ledgers[pool].owns(entry) == owner:
                ledgers[pool].abandon(entry)
        for pool, entry in changes.release:
            if ledgers[pool].owns(entry) == owner:
                ledgers[pool].release(entry)
        # Grants other owners decided for this one stay pending (sent with every answer) until
        # an exchange of this owner accounts for them.
        pending = self._pending.pop(owner, [])
        if changes.held is not None and pending:
            acked = {
                *changes.held,
                *changes.complete,
                *changes.abandon,
                *changes.release,
            }
            pending = [
                g
                for g in pending
                if (g.pool, g.entry) not in acked and ledgers[g.pool].owns(g.entry) == owner
            ]
        if held is not None and owner:
            # Granted by an exchange whose answer never arrived: its request was never sent.
            told = {(g.pool, g.entry) for g in pending}
            for pool, ledger in ledgers.items():
                for entry in ledger.owned_by(owner):
                    if entry not in held[pool] and (pool, entry) not in told:
                        ledger.release(entry)
        cancelled: list[tuple[Pool, int]] = []
        for key in changes.cancel:
            waiter = mine.pop(key, None)
            if waiter is not None:
                self.queues[key[0]].discard(waiter)
                cancelled.append(key)
        for pool, seconds in changes.pause:
            ledgers[pool].pause(now + seconds)
        for reg in changes.register:
            key = (reg.pool, reg.local)
            if key not in mine:
                waiter = Waiter(owner, reg.local, reg.weight, reg.priority, next(self._seq))
                mine[key] = waiter
                queue = self.queues[reg.pool]
                if not queue.fresh:
                    queue.fresh_since = now
                queue.add(waiter)
        if changes.leaving:
            for (pool, _), waiter in mine.items():
                self.queues[pool].discard(waiter)
            mine.clear()

        grants: list[Grant] = []
        others: dict[str, list[Grant]] = {}
        wake_at = math.inf
        for pool, queue in self.queues.items():
            if queue.count:
                wake_at = min(wake_at, self._decide(pool, queue, now, owner, grants, others))
        for other, given in others.items():
            listener = self._listeners.get(other)
            if listener is not None:
                listener(given)
            else:
                self._pending.setdefault(other, []).extend(given)
        if pending:
            grants.extend(pending)
            if held is not None:
                self._pending[owner] = pending
        # One owner keeps time for the queue: it alone is told to exchange again when time
        # frees room, so owners do not all wake for the same expiry. Another takes the duty
        # over when it sees an earlier time, or the keeper's time passed or its lease ran out.
        duty = math.inf
        if changes.leaving:
            self._leave(owner)
        elif wake_at < math.inf:
            keeper, keeper_at = self._keeper
            if (
                keeper == owner
                or self._owners.get(keeper, -math.inf) <= now
                or keeper_at <= now
                or wake_at < keeper_at
            ):
                self._keeper = (owner, wake_at)
                duty = wake_at
        return Outcome(
            grants=tuple(grants),
            cancelled=tuple(cancelled),
            wake_in=duty - now,
            queued=sum(queue.count for queue in self.queues.values()),
            rejoined=rejoined,
            seen=f"local:{self._generation}",
        )

    def complete(self, owner: str, pool: Pool, entry: EntryId, now: float | None = None) -> None:
        """``owner``'s response for ``entry`` completed (at ``now``, default the store's time):
        what an exchange's ``complete`` does, for a scheduler in this process that need not
        wait for its next exchange to say so. Only the owner's own entries: an id it remembers
        from a state the store lost may name another owner's entry now. An entry whose lease
        ran out is completed already."""
        self.ledgers[pool].complete_leased(entry, owner, self._clock.time() if now is None else now)

    def _leave(self, owner: str) -> None:
        del self._owners[owner]
        self._leases.pop(owner, None)
        del self._waiting[owner]
        self._pending.pop(owner, None)
        if self._keeper[0] == owner:
            self._keeper = ("", -math.inf)
            for other, listener in list(self._listeners.items()):
                if other != owner and other in self._owners:
                    listener(())

    def _drop_dead_owners(self, now: float) -> None:
        dead = [owner for owner, deadline in self._owners.items() if deadline <= now]
        for owner in dead:
            del self._owners[owner]
            self._leases.pop(owner, None)
            # Its pending grants stay: it may be alive but slow, and using one it heard of.
            for (pool, _), waiter in self._waiting.pop(owner, {}).items():
                self.queues[pool].discard(waiter)

    def _decide(
        self,
        pool: Pool,
        queue: PoolQueue,
        now: float,
        owner: str,
        grants: list[Grant],
        others: dict[str, list[Grant]],
    ) -> float:
        """Admit what fits now; return when time alone could change this pool's decision."""
        ledger = self.ledgers[pool]
        claims_due = settle_claims(
            queue,
            now,
            delay=self._claim_delay,
            starvation_bound=self._starvation_bound,
            drain=self._drain[pool],
        )
        snap = ledger.snapshot(now)
        chosen = plan(queue, snap)
        if not chosen:
            return next_decision(queue, snap, claims_due)
        leases, waiting = self._leases, self._waiting
        for waiter in chosen:
            waiter.state = DONE
            entry = ledger.take(waiter.weight, waiter.owner, leases.get(waiter.owner, now))
            del waiting[waiter.owner][pool, waiter.local]
            grant = Grant(pool, waiter.local, entry)
            if waiter.owner == owner:
                grants.append(grant)
            else:
                others.setdefault(waiter.owner, []).append(grant)
        return next_decision(queue, ledger.snapshot(now), claims_due)

    def usage(self) -> BudgetUsage:
        """The budget now."""
        now = self._clock.time()
        pools = []
        for pool, ledger in self.ledgers.items():
            snap = ledger.snapshot(now)
            pools.append(
                PoolUsage(
                    pool=pool,
                    windows=snap.usage(),
                    in_flight=snap.in_flight,
                    queued=self.queues[pool].count,
                    paused_for=max(0.0, snap.paused_until - now),
                )
            )
        return BudgetUsage(pools=tuple(pools), processes=len(self._owners))

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{pool}: {ledger.in_flight} in flight, used {list(ledger.used)}, "
            f"{self.queues[pool].count} queued"
            for pool, ledger in self.ledgers.items()
        )
        return f"<InMemoryBudgetStore {parts}>"
