"""A project's budget in Redis, shared by every process and machine that spends it.

:class:`RedisBudgetStore` is a :class:`~amplitude_async.admission.BudgetStore`: each exchange is
one Lua script (the files of ``lua/`` joined, see :data:`SCRIPT_PARTS`; its arguments and
answer are described at the top of ``lua/prelude.lua``; run with ``EVALSHA``, a server that
lost its scripts gets it again) that mirrors :mod:`amplitude_async.policy` name for name, on
the server's clock (``TIME``), over the waiters of every process. Grants decided for another
process are kept for its next exchange and published on its channel at once, so a waiting
process hears of them without polling. It needs the optional ``redis`` extra
(``pip install amplitude-async[redis]``).

Keys: every key of a project shares one hash tag, ``{<sha256 of the API key>}`` (truncated), so
one script may touch them all on Redis Cluster; neither the API key nor the secret is stored.
The keys expire together, the config a second before the rest, between one and a half and two
times the longest window plus the lease term after the last exchange, so an idle project's
budget vanishes whole: an exchange sets the expiry only on the keys it creates, and moves every
key's on once per quarter of that period. It sends one write per key and kind of change,
however many requests it carries. The limits are stored with the budget: a process joining
with other limits gets :class:`~amplitude_async.errors.ConfigurationError`.

Faults: if Redis cannot be reached, or does not answer within the call timeout, an exchange
raises :class:`~amplitude_async.errors.BudgetUnavailable` (the scheduler admits nothing and
retries); the client never retries a call by itself, and the script refuses a late copy of an
exchange (see :mod:`amplitude_async.admission` for how an answer that never arrived is made
harmless). The budget starts *cold* -- each pool as if its smallest window budget had just
been spent, and paused for one lease term, because Amplitude still counts what was admitted
before -- when its keys vanished while processes were using it (a restart without persistence,
a flush: known from a process that exchanged before, or from another process still listening
on its channel), when its state is older than what a process has seen (a restored snapshot, a
failover to a replica that had not seen the last writes), or when a key holds what the budget
never writes (another type, a value that is not a number or is out of range): the script
checks everything before writing and wipes such a state whole. Each reset is reported with a
:class:`RuntimeWarning` naming its cause (the key, for garbage). An eviction policy that may
drop keys with a TTL (``volatile-*``, ``allkeys-*``) could reset a budget silently: the store
warns when it sees one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, Final, Self

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .admission import BudgetUsage, Changes, Grant, Outcome, PoolUsage
from .budget import WindowUsage, pool_cap, pool_windows
from .errors import BudgetUnavailable, ConfigurationError
from .limits import DEFAULT_LIMITS, Limits, Pool
from .policy import claim_delay, default_starvation_bound, drain

__all__ = ["CLOSE_WAIT", "KEY_PREFIX", "SCRIPT_PARTS", "RedisBudgetStore", "budget_key_tag"]

KEY_PREFIX: Final = "amplitude-async"
"""First part of every key and channel name."""

_POOLS: Final = tuple(Pool)
_POOL_KEYS: Final = (
    "ledger",
    "flight",
    "done-cum",
    "done-time",
    "queue",
    "buckets",
    "claims",
    "waiters",
    "owners",
    "fresh",
)
_MAX_PRIORITY: Final = 10**9
CLOSE_WAIT: Final = 1.0
"""Seconds :meth:`RedisBudgetStore.aclose` waits for its connections to close."""
_RISKY_POLICIES: Final = ("volatile-", "allkeys-")
SCRIPT_PARTS: Final = ("prelude", "ledger", "waiters", "policy", "exchange")
"""The budget script's parts, ``lua/<part>.lua`` in the package, in the order they are joined
into one script: each part uses the locals of those before it."""
_SCRIPT: Final = "\n".join(
    (resources.files(__package__) / "lua" / f"{part}.lua").read_text(encoding="utf-8")
    for part in SCRIPT_PARTS
)
_MONTHLY_TTL: Final = 40 * 86400
"""Seconds a month's quota count is kept after its last change (longer than any month)."""
# Increment-with-check of a monthly count, atomic: KEYS[1] the count; ARGV limit, ttl (s).
_TAKE_MONTHLY: Final = """
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then return {0, n} end
n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {1, n}
"""


def budget_key_tag(api_key: str) -> str:
    """The hash tag naming a project's keys: a one-way hash of its API key."""
    digest = hashlib.sha256(b"amplitude-async budget\0" + api_key.encode()).hexdigest()
    return digest[:32]


def _config(limits: Limits, starvation_bound: float) -> str:
    """The limits as stored with the budget (and compared when a process joins)."""
    pools = []
    for pool in _POOLS:
        windows = pool_windows(limits, pool)
        pools.append(
            {
                "pool": str(pool),
                "cap": pool_cap(limits, pool),
                "windows": [[w.budget, w.length] for w in windows],
                "drain": drain(windows),
            }
        )
    bound = -1.0 if starvation_bound == math.inf else starvation_bound
    config = {
        "pools": pools,
        "bound": bound,
        "claim_delay": claim_delay(limits),
        "cohort_month": limits.cohort_requests_per_month,
    }
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def _parse_config(text: str) -> tuple[Limits, float]:
    """The limits and starvation bound stored with a budget (see :func:`_config`)."""
    config = json.loads(text)
    pools = {p["pool"]: p for p in config["pools"]}
    standard, user = pools[str(Pool.STANDARD)], pools[str(Pool.USER)]
    (cost_per_window, window), (cost_per_hour, hour) = standard["windows"]
    ((user_per_hour, _),) = user["windows"]
    # A budget stored before the cohort pool existed: its defaults.
    cohort: dict[str, Any] = {
        "cap": DEFAULT_LIMITS.cohort_concurrent,
        "windows": [[DEFAULT_LIMITS.cohort_requests_per_window, DEFAULT_LIMITS.cohort_window]],
    }
    cohort.update(pools.get(str(Pool.COHORT), {}))
    ((cohort_per_window, cohort_window),) = cohort["windows"]
    limits = Limits(
        concurrent=standard["cap"],
        cost_per_window=cost_per_window,
        window=window,
        cost_per_hour=cost_per_hour,
        hour=hour,
        user_concurrent=user["cap"],
        user_queries_per_hour=user_per_hour,
        cohort_concurrent=cohort["cap"],
        cohort_requests_per_window=cohort_per_window,
        cohort_window=cohort_window,
        cohort_requests_per_month=config.get(
            "cohort_month", DEFAULT_LIMITS.cohort_requests_per_month
        ),
    )
    bound = config["bound"]
    return limits, math.inf if bound < 0 else float(bound)


class RedisBudgetStore:
    """A :class:`~amplitude_async.admission.BudgetStore` in Redis, for one project.

    ``client`` is a ``redis.asyncio.Redis``; :meth:`from_url` makes one. ``api_key`` names the
    project (only its hash is used). ``limits`` and ``starvation_bound`` must match those of
    every other process sharing the budget. ``call_timeout`` (seconds) bounds each exchange,
    whatever the client's own settings.
    """

    def __init__(
        self,
        client: Any,
        *,
        api_key: str,
        limits: Limits = DEFAULT_LIMITS,
        starvation_bound: float | None = None,
        call_timeout: float = 5.0,
    ) -> None:
        if not api_key:
            raise ConfigurationError("api_key", "is needed to name the shared budget")
        if starvation_bound is None:
            starvation_bound = default_starvation_bound(limits)
        self._redis = client
        self._limits = limits
        self._starvation_bound = starvation_bound
        self.tag = budget_key_tag(api_key)
        base = f"{KEY_PREFIX}:{{{self.tag}}}"
        self.keys = [f"{base}:config", f"{base}:owners", f"{base}:pending", f"{base}:info"] + [
            f"{base}:{pool}:{name}" for pool in _POOLS for name in _POOL_KEYS
        ]
        self.channel = f"{base}:grants:"
        self.live_channel = f"{base}:live:"
        self._call_timeout = call_timeout
        # The store's clock at the last answer, and this process's monotonic clock then: an
        # exchange says when (on the store's clock) it was sent, so a late run is refused.
        self._store_clock: tuple[float, float] | None = None
        self._live: set[str] = set()  # owners that have exchanged
        self._config = _config(limits, starvation_bound)
        longest = max(limits.window, limits.hour)
        self._longest = longest
        self._script = client.register_script(_SCRIPT)
        self._take_script = client.register_script(_TAKE_MONTHLY)
        self._monthly: dict[tuple[str, str], int] = {}
        self._listeners: dict[str, asyncio.Task[None]] = {}
        self._subscribed: dict[str, asyncio.Event] = {}
        self._usage: BudgetUsage | None = None
        self._checked_policy = False
        self.round_trips = 0
        """Scripts run (one per exchange)."""

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        api_key: str,
        limits: Limits = DEFAULT_LIMITS,
        starvation_bound: float | None = None,
        timeout: float = 5.0,
    ) -> Self:
        """Connect lazily to ``url`` (``redis://host:6379/0``, ``rediss://`` for TLS).

        ``timeout`` bounds each Redis call, so an unresponsive server surfaces as
        :class:`~amplitude_async.errors.BudgetUnavailable` instead of a hang.
        """
        try:
            # No retries inside the client: a retried script could run twice, and a frozen
            # server would hold a call for several timeouts. The scheduler retries.
            client = aioredis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:
            raise ConfigurationError("budget_url", str(exc)) from None
        return cls(
            client,
            api_key=api_key,
            limits=limits,
            starvation_bound=starvation_bound,
            call_timeout=timeout,
        )

    @classmethod
    async def observe(
        cls, url: str, *, api_key: str, call_timeout: float = 5.0
    ) -> RedisBudgetStore | None:
        """A store for reading the shared budget of ``api_key`` with the limits stored with it
        (see :meth:`read_usage`); ``None`` if no process uses that budget now."""
        probe = cls.from_url(url, api_key=api_key, timeout=call_timeout)
        try:
            stored = await probe._redis.hget(probe.keys[0], "config")
        except (RedisError, OSError) as exc:
            await probe.aclose()
            raise BudgetUnavailable(f"the budget store cannot be reached: {exc}") from exc
        await probe.aclose()
        if stored is None:
            return None
        limits, bound = _parse_config(stored.decode() if isinstance(stored, bytes) else stored)
        return cls.from_url(
            url, api_key=api_key, limits=limits, starvation_bound=bound, timeout=call_timeout
        )

    @property
    def limits(self) -> Limits:
        """The limits this store enforces."""
        return self._limits

    @property
    def starvation_bound(self) -> float:
        """The starvation bound of the shared queue (seconds)."""
        return self._starvation_bound

    def __repr__(self) -> str:
        return f"<RedisBudgetStore {{{self.tag}}} limits={self._limits!r}>"

    # -- exchanges --------------------------------------------------------------------------

    async def exchange(self, changes: Changes) -> Outcome:
        """Run the script: apply ``changes``, decide, answer."""
        return await self._exchange(changes, None)

    async def exchange_at(self, changes: Changes, at: float) -> Outcome:
        """Debug interface: :meth:`exchange` as if the server's clock read ``at``.

        For tests that compare this store with another at the same times (Redis ``TIME``
        cannot be set). Never for a budget in use: every other process is on ``TIME``.
        """
        return await self._exchange(changes, at)

    async def _exchange(self, changes: Changes, at: float | None) -> Outcome:
        event = self._subscribed.get(changes.owner)
        if event is not None and not event.is_set():
            # Grants published before the subscription would wait for the next exchange.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), 1.0)
        index = {pool: i + 1 for i, pool in enumerate(_POOLS)}
        for reg in changes.register:
            if not -_MAX_PRIORITY <= reg.priority <= _MAX_PRIORITY:
                raise ValueError(f"priority must be within ±10**9, got {reg.priority!r}")
        body: dict[str, Any] = {
            "register": [[index[r.pool], r.local, r.weight, r.priority] for r in changes.register],
            "cancel": [[index[p], local] for p, local in changes.cancel],
            "complete": [[index[p], e] for p, e in changes.complete],
            "abandon": [[index[p], e] for p, e in changes.abandon],
            "release": [[index[p], e] for p, e in changes.release],
            "pause": [[index[p], s] for p, s in changes.pause],
            "leaving": changes.leaving,
            "seq": changes.seq,
            "seen": changes.seen,
        }
        if changes.held is not None:
            body["held"] = [[index[p], e] for p, e in changes.held]
        if changes.beat is not None:
            body["beat"] = changes.beat
        if at is None and self._store_clock is not None:
            store_at, local_at = self._store_clock
            body["sent_at"] = store_at + (time.monotonic() - local_at)
            body["patience"] = self._call_timeout + 0.5
        ttl = math.ceil(2 * (self._longest + changes.lease) * 1000)
        args = [
            changes.owner,
            repr(float(changes.lease)),
            "1" if changes.warm else "0",
            "" if at is None else repr(float(at)),
            self._config,
            json.dumps(body, separators=(",", ":")),
            str(ttl),
            self.channel,
            self.live_channel,
        ]
        try:
            self.round_trips += 1
            # Bounded here too: a frozen server must not hold the caller longer.
            async with asyncio.timeout(self._call_timeout + 0.5):
                reply = await self._script(keys=self.keys, args=args)
        except ResponseError as exc:
            text = str(exc)
            if "AMPLITUDE_LIMITS" in text:
                raise ConfigurationError(
                    "limits",
                    "differ from those stored with this project's shared budget "
                    f"({text.split('AMPLITUDE_LIMITS', 1)[1].strip()}); every process sharing "
                    "it must use the same limits",
                ) from None
            raise BudgetUnavailable(f"the budget store refused the exchange: {text}") from exc
        except (RedisConnectionError, RedisTimeoutError, OSError, RedisError) as exc:
            raise BudgetUnavailable(f"the budget store cannot be reached: {exc}") from exc
        except TimeoutError as exc:
            raise BudgetUnavailable(
                f"the budget store did not answer within {self._call_timeout} s"
            ) from exc
        try:
            outcome = self._outcome(reply)
        except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
            raise BudgetUnavailable(f"the budget store sent an unreadable answer: {exc}") from exc
        if outcome.reset:
            warnings.warn(
                f"the shared budget {{{self.tag}}} started cold: {outcome.reset}",
                RuntimeWarning,
                stacklevel=2,
            )
        if changes.owner:
            self._live.add(changes.owner)
        if not self._checked_policy:
            self._checked_policy = True
            await self._check_eviction_policy()
        return outcome

    def _outcome(self, reply: str | bytes) -> Outcome:
        answer = json.loads(reply)
        self._store_clock = (float(answer["now"]), time.monotonic())
        pools = []
        for pool, usage in zip(_POOLS, answer["usage"], strict=True):
            windows = pool_windows(self._limits, pool)
            pools.append(
                PoolUsage(
                    pool=pool,
                    windows=tuple(
                        WindowUsage(w.name, w.budget, w.length, int(used))
                        for w, used in zip(windows, usage["used"], strict=True)
                    ),
                    in_flight=int(usage["in_flight"]),
                    queued=int(usage["queued"]),
                    paused_for=float(usage["paused_for"]),
                )
            )
        self._usage = BudgetUsage(pools=tuple(pools), processes=int(answer["processes"]))
        return Outcome(
            grants=_parse_grants(answer["grants"]),
            cancelled=tuple(
                (_POOLS[int(p) - 1], int(local))
                for p, local in (item.split(":") for item in answer["cancelled"].split(",") if item)
            ),
            wake_in=float(answer["wake_in"]),
            queued=int(answer["queued"]),
            rejoined=bool(answer["rejoined"]),
            usage=self._usage,
            seen=str(answer["seen"]),
            reset=str(answer["reset"]),
        )

    async def _check_eviction_policy(self) -> None:
        try:
            reply = await self._redis.config_get("maxmemory-policy")
        except RedisError:
            return  # CONFIG is often disabled on managed Redis
        policy = reply.get("maxmemory-policy") or reply.get(b"maxmemory-policy") or ""
        if isinstance(policy, bytes):
            policy = policy.decode()
        if policy.startswith(_RISKY_POLICIES):
            warnings.warn(
                f"Redis maxmemory-policy is {policy!r}: under memory pressure it may evict the "
                "shared budget's keys and reset the budget (429s follow); use noeviction",
                RuntimeWarning,
                stacklevel=3,
            )

    def usage(self) -> BudgetUsage | None:
        """The budget as the last exchange reported it."""
        return self._usage

    async def read_usage(self) -> BudgetUsage | None:
        """The budget now, without joining it (``None`` if no process has used it)."""
        if not await self._redis.exists(self.keys[0]):
            return None
        probe = Changes(owner="", lease=1.0)
        outcome = await self.exchange(probe)
        return outcome.usage

    # -- monthly quotas (amplitude_async.quota) ---------------------------------------------

    def _monthly_key(self, name: str, month: str) -> str:
        return f"{KEY_PREFIX}:{{{self.tag}}}:monthly:{name}:{month}"

    async def take_monthly(self, name: str, month: str, limit: int) -> tuple[bool, int]:
        """Count one more ``name`` in ``month`` unless ``limit`` are counted, atomically for
        every process: ``(taken, count after)``. BudgetUnavailable if Redis cannot be reached."""
        try:
            taken, count = await self._take_script(
                keys=[self._monthly_key(name, month)], args=[limit, _MONTHLY_TTL]
            )
        except (RedisError, OSError) as exc:
            raise BudgetUnavailable(f"the budget store cannot be reached: {exc}") from exc
        self._monthly[name, month] = int(count)
        return bool(int(taken)), int(count)

    async def monthly_count(self, name: str, month: str) -> int:
        """How many ``name`` are counted in ``month``, every process together."""
        try:
            value = await self._redis.get(self._monthly_key(name, month))
        except (RedisError, OSError) as exc:
            raise BudgetUnavailable(f"the budget store cannot be reached: {exc}") from exc
        count = int(value or 0)
        self._monthly[name, month] = count
        return count

    def monthly_seen(self, name: str, month: str) -> int | None:
        """The count as this process last read or changed it."""
        return self._monthly.get((name, month))

    # -- grants for waiting processes -------------------------------------------------------

    def attach(self, owner: str, deliver: Callable[[Sequence[Grant]], None]) -> None:
        """Listen on ``owner``'s channel and pass the grants published there to ``deliver``."""
        if owner in self._listeners:
            return
        event = asyncio.Event()
        self._subscribed[owner] = event
        self._listeners[owner] = asyncio.get_running_loop().create_task(
            self._listen(owner, deliver, event)
        )

    async def _listen(
        self,
        owner: str,
        deliver: Callable[[Sequence[Grant]], None],
        event: asyncio.Event,
    ) -> None:
        channel = self.channel + owner
        task = asyncio.current_task()

        def stop_asked() -> bool:
            # Detached, or cancelled: true even if the Redis client swallowed the cancellation
            # under a read. A listener that went on would keep its event loop from closing.
            return self._listeners.get(owner) is not task or bool(task and task.cancelling())

        while not stop_asked():
            pubsub = self._redis.pubsub()
            live = False
            try:
                await pubsub.subscribe(channel)
                event.set()
                while not stop_asked():
                    if not live and owner in self._live:
                        # Tells a process that finds the budget gone that it was in use.
                        await pubsub.subscribe(self.live_channel + owner)
                        live = True
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    if message.get("channel") not in (channel, channel.encode()):
                        continue
                    parsed = _parse_message(message.get("data"))
                    if parsed is None:
                        continue  # not a message of this library: ignored
                    deliver(parsed[1])
                raise asyncio.CancelledError
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError):
                # Grants still reach the process with its next exchange; listen again soon.
                event.set()
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
        raise asyncio.CancelledError

    async def detach(self, owner: str) -> None:
        """Stop listening for ``owner``; close the connections when nobody listens."""
        task = self._listeners.pop(owner, None)
        self._subscribed.pop(owner, None)
        self._live.discard(owner)
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=CLOSE_WAIT)
        if not self._listeners:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (it reconnects if used again). Waits at most
        :data:`CLOSE_WAIT` seconds for the listening tasks and connections, then drops them;
        if cancelled meanwhile, the connections are still dropped."""
        tasks = list(self._listeners.values())
        self._listeners.clear()
        self._subscribed.clear()
        for task in tasks:
            task.cancel()
        closed = False
        try:
            if tasks:
                await asyncio.wait(tasks, timeout=CLOSE_WAIT)
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                async with asyncio.timeout(CLOSE_WAIT):
                    await self._redis.aclose()
                    closed = True
        finally:
            if not closed:
                _drop_connections(self._redis)


def _parse_grants(text: str) -> tuple[Grant, ...]:
    grants = []
    for item in text.split(","):
        if item:
            pool, local, entry = item.split(":")
            index = int(pool)
            if not 1 <= index <= len(_POOLS):
                raise ValueError(f"no pool {index}")
            grants.append(Grant(_POOLS[index - 1], int(local), int(entry)))
    return tuple(grants)


def _parse_message(data: object) -> tuple[float, tuple[Grant, ...]] | None:
    """A grant channel's message (``time|pool:local:entry,...``), or ``None`` if it is not one
    this library publishes."""
    try:
        text = data.decode() if isinstance(data, bytes) else str(data)
        stamp, bar, grants = text.partition("|")
        when = float(stamp)
        if not bar or not math.isfinite(when):
            return None
        return when, _parse_grants(grants)
    except (ValueError, UnicodeDecodeError):
        return None


def _drop_connections(client: Any) -> None:
    """Close every socket of ``client``'s pool at once, without waiting on the server."""
    pool = getattr(client, "connection_pool", None)
    connections = [
        *getattr(pool, "_available_connections", ()),
        *getattr(pool, "_in_use_connections", ()),
    ]
    for connection in connections:
        writer = getattr(connection, "_writer", None)
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.transport.abort()
