"""Cache entries that cannot hurt: sealed to their key, checked before use, dropped when bad.

Poisoned entries are written straight into the store (a real ``redis-server`` for
:class:`RedisCache`): whatever they hold, the query gets its own answer from the server, a
:class:`CacheUnavailable` warning says why, and the entry is replaced by a good one.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import AsyncIterator, Callable
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from localserver import RecordingServer
from redisserver import RedisServer

from amplitude_async import (
    AmplitudeClient,
    CachePolicy,
    CacheUnavailable,
    ConfigurationError,
    EventSegmentation,
    Limits,
    MemoryCache,
    RedisCache,
)
from amplitude_async.cache import (
    MAX_ENTRY_DEPTH,
    UNREADABLE,
    decode_entry,
    seal,
    too_deep,
    unseal,
)
from amplitude_async.testing.emulator import Emulator
from amplitude_async.testing.pytest_plugin import TEST_LIMITS

SECRET = b"https://amplitude.com\nBasic a2V5OnNlY3JldA=="
KEY = "a" * 64
OTHER_KEY = "b" * 64

# -- the envelope (pure) ----------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=200), data=st.data())
def test_an_entry_opens_only_unchanged_under_its_own_key(body: bytes, data: st.DataObject) -> None:
    entry = seal(KEY, body, SECRET)
    assert unseal(KEY, entry, SECRET) == body
    with pytest.raises(ValueError, match="another key"):
        unseal(OTHER_KEY, entry, SECRET)
    with pytest.raises(ValueError, match="other credentials"):
        unseal(KEY, entry, SECRET + b"x")
    cut = data.draw(st.integers(0, len(entry) - 1), label="cut")
    with pytest.raises(ValueError, match=r"empty|not an entry|damaged"):
        unseal(KEY, entry[:cut], SECRET)
    where = data.draw(st.integers(0, len(entry) - 1), label="where")
    flip = data.draw(st.integers(1, 255), label="flip")
    altered = bytearray(entry)
    altered[where] ^= flip
    with pytest.raises(ValueError, match=r"not an entry|another key|damaged"):
        unseal(KEY, bytes(altered), SECRET)


def test_decoding_an_entry_is_as_strict_as_the_wire() -> None:
    assert decode_entry(b'{"data": [1, 2.5]}') == {"data": [1, 2.5]}
    for bad, reason in [
        (b'{"a": NaN}', "not strict JSON"),
        (b'{"a": -Infinity}', "not strict JSON"),
        (b'{"a": 1e999}', "not strict JSON"),
        (b'{"a": ', "not strict JSON"),
        (b"\xff\xfe\xff", "not strict JSON"),
        (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
        (b"[" * (MAX_ENTRY_DEPTH + 1) + b"]" * (MAX_ENTRY_DEPTH + 1), "deeper than"),
    ]:
        with pytest.raises(ValueError, match=reason):
            decode_entry(bad)
    assert decode_entry(b"[" * MAX_ENTRY_DEPTH + b"]" * MAX_ENTRY_DEPTH) is not None
    assert not too_deep({"a": [{"b": []}]}, 4)
    assert too_deep({"a": [{"b": []}]}, 3)


# -- poisoned entries, through the client -----------------------------------------------------

QUERY = EventSegmentation(["A"], date(2026, 9, 1), date(2026, 9, 1))
OTHER = EventSegmentation(["B"], date(2026, 9, 1), date(2026, 9, 1))
BODY = {"data": {"series": [[5]], "seriesLabels": [0], "xValues": ["2026-09-01"]}}
OTHER_BODY = {"data": {"series": [[9]], "seriesLabels": [0], "xValues": ["2026-09-01"]}}
POLICY = CachePolicy(today=lambda: date(2026, 12, 1))


def raw(body: object) -> bytes:
    return json.dumps(body).encode()


Poison = Callable[[AmplitudeClient, str], bytes]

# What is written under QUERY's key, and the reason the warning must give.
POISONS: dict[str, tuple[Poison, str]] = {
    "50,000 nested [": (lambda c, k: b"[" * 50_000, "not an entry of this version"),
    "50,000 nested [, sealed": (
        lambda c, k: c.savers.seal(k, b"[" * 50_000),
        "nested too deeply",
    ),
    "nested too deep, sealed": (
        lambda c, k: c.savers.seal(k, b"[" * 100 + b"]" * 100),
        "deeper than",
    ),
    "another query's body": (lambda c, k: raw(OTHER_BODY), "not an entry of this version"),
    "another key's entry": (
        lambda c, k: c.savers.seal(c.savers.key(OTHER), raw(OTHER_BODY)),
        "another key",
    ),
    "NaN": (
        lambda c, k: c.savers.seal(k, raw(BODY).replace(b"[[5]]", b"[[NaN]]")),
        "not strict JSON",
    ),
    "Infinity": (
        lambda c, k: c.savers.seal(k, raw(BODY).replace(b"[[5]]", b"[[Infinity]]")),
        "not strict JSON",
    ),
    "truncated": (lambda c, k: c.savers.seal(k, raw(BODY))[:-7], "damaged"),
    "altered": (
        lambda c, k: c.savers.seal(k, raw(BODY)).replace(b"[[5]]", b"[[9]]"),
        "damaged",
    ),
    "other credentials": (lambda c, k: seal(k, raw(OTHER_BODY), b"someone else"), "damaged"),
    "another shape": (lambda c, k: c.savers.seal(k, b'{"data": "none"}'), "does not decode"),
    "a few bytes": (lambda c, k: b"aac", "not an entry of this version"),
}


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryCache()
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    cache = RedisCache(server.url, prefix="poison:")
    yield cache
    await cache.aclose()


async def write(store: Any, key: str, entry: bytes) -> None:
    """Put ``entry`` in the store behind the client's back."""
    if isinstance(store, MemoryCache):
        store.set_nowait(key, entry, 600)
        return
    await store._redis.set(store.prefix + key, entry)


async def first_answer(server: RecordingServer, store: Any) -> tuple[AmplitudeClient, Any]:
    client = AmplitudeClient(
        "api-key", "secret-key", base_url=server.url, limits=Limits().scaled(0.001),
        cache=store, cache_policy=POLICY,
    )  # fmt: skip
    server.reply(200, BODY)
    return client, await client.run(QUERY)


@pytest.mark.parametrize("poison", list(POISONS))
async def test_a_poisoned_entry_is_a_miss_a_warning_and_replaced(
    server: RecordingServer, store: Any, poison: str
) -> None:
    make, reason = POISONS[poison]
    client, expected = await first_answer(server, store)
    try:
        key = client.savers.key(QUERY)
        await write(store, key, make(client, key))
        server.reply(200, BODY)
        with pytest.warns(CacheUnavailable, match=reason) as caught:
            assert await client.run(QUERY) == expected
        assert "deleted it" in str(caught[0].message)
        assert len(server.requests) == 2  # asked again, and only its own query
        savings = client.statistics().savings
        assert (savings.cache_misses, savings.cache_errors, savings.cache_hits) == (2, 1, 0)
        with warnings.catch_warnings():
            warnings.simplefilter("error", CacheUnavailable)
            assert await client.run(QUERY) == expected  # the good entry replaced it
        assert len(server.requests) == 2
    finally:
        await client.aclose()


@pytest.mark.parametrize("poison", ["wrong type", "too large"])
async def test_redis_keys_of_another_type_or_size_are_never_read(
    server: RecordingServer, redis_server: RedisServer, poison: str
) -> None:
    from redis.asyncio import Redis

    cache = RedisCache(redis_server.url, prefix="poison:", max_entry_bytes=4096)
    client, expected = await first_answer(server, cache)
    redis = Redis.from_url(redis_server.url)
    try:
        name = cache.prefix + client.savers.key(QUERY)
        await redis.delete(name)
        if poison == "wrong type":
            await redis.rpush(name, b"[" * 100)
        else:
            await redis.set(name, client.savers.seal(client.savers.key(QUERY), b" " * 10_000))
        server.reply(200, BODY)
        with pytest.warns(CacheUnavailable, match="cannot be read"):
            assert await client.run(QUERY) == expected
        assert await redis.type(name) == b"string"
        assert await client.run(QUERY) == expected
        assert len(server.requests) == 2
        # A body over the limit is not stored at all: a plain miss every time, no warning.
        assert await cache.get("missing") is None
        await cache.set("big", b"x" * 4097, 60)
        assert await redis.exists(cache.prefix + "big") == 0
        with pytest.raises(ConfigurationError, match="max_entry_bytes"):
            RedisCache(redis_server.url, max_entry_bytes=0)
    finally:
        await redis.aclose()
        await client.aclose()


async def test_a_store_returns_unreadable_for_what_it_cannot_read(
    redis_server: RedisServer,
) -> None:
    from redis.asyncio import Redis

    cache = RedisCache(redis_server.url, prefix="t:", max_entry_bytes=10)
    redis = Redis.from_url(redis_server.url)
    try:
        await redis.hset("t:hash", "f", "v")
        await redis.set("t:big", b"x" * 11)
        await redis.set("t:fits", b"x" * 10)
        await redis.set("t:empty", b"")
        got = await cache.get_many(["hash", "big", "fits", "none", "empty"])
        # An empty string reads as missing: a plain miss, overwritten by the next answer.
        assert got == [UNREADABLE, UNREADABLE, b"x" * 10, None, None]
        assert await cache.get("hash") == UNREADABLE  # one key: not a failure of the store
        await cache.delete("hash")
        assert await redis.exists("t:hash") == 0
        assert await cache.get("fits") == b"x" * 10  # and the store was not marked down
    finally:
        await redis.aclose()
        await cache.aclose()


async def test_entries_are_sealed_in_redis(
    server: RecordingServer, redis_server: RedisServer
) -> None:
    from redis.asyncio import Redis

    cache = RedisCache(redis_server.url, prefix="sealed:")
    client, _ = await first_answer(server, cache)
    redis = Redis.from_url(redis_server.url)
    try:
        key = client.savers.key(QUERY)
        entry = await redis.get(cache.prefix + key)
        assert entry == client.savers.seal(key, raw(BODY))
        assert not entry.startswith(b"{")
    finally:
        await redis.aclose()
        await client.aclose()


async def test_an_answer_too_deep_to_read_back_is_not_stored(server: RecordingServer) -> None:
    cache = MemoryCache()
    deep: Any = [[5]]
    for _ in range(MAX_ENTRY_DEPTH):
        deep = [deep]
    body = {"data": {"series": [[5]], "seriesLabels": [0], "xValues": ["2026-09-01"], "x": deep}}
    client = AmplitudeClient(
        "k", "s", base_url=server.url, limits=Limits().scaled(0.001), cache=cache,
        cache_policy=POLICY,
    )  # fmt: skip
    async with client:
        server.reply(200, body)
        await client.run(QUERY)
    assert len(cache) == 0


@pytest.mark.amplitude_emulator(days=60, start=date(2026, 8, 1))
async def test_a_poisoned_chunk_of_an_incremental_refresh_is_asked_again(
    amplitude_emulator: Emulator,
) -> None:
    cache = MemoryCache()
    policy = CachePolicy(today=lambda: date(2026, 9, 30))
    query = EventSegmentation(["View Item"], date(2026, 9, 1), date(2026, 9, 14), metric="totals")
    kwargs: dict[str, Any] = {"base_url": amplitude_emulator.url, "limits": TEST_LIMITS}
    keys = (amplitude_emulator.api_key, amplitude_emulator.secret_key)
    async with AmplitudeClient(*keys, cache=cache, cache_policy=policy, **kwargs) as client:
        expected = await client.run(query, split=True)
        chunk = query.with_range(date(2026, 9, 5), date(2026, 9, 5))
        cache.set_nowait(client.savers.key(chunk), b"[" * 50_000, 600)
        sent = len(amplitude_emulator.requests)
        with pytest.warns(CacheUnavailable, match="not an entry"):
            assert await client.run(query, split=True) == expected
        assert len(amplitude_emulator.requests) == sent + 1
    async with AmplitudeClient(*keys, **kwargs) as fresh:
        assert await fresh.run(query) == expected


async def test_a_redis_client_that_decodes_replies_reads_entries_too(
    server: RecordingServer, redis_server: RedisServer
) -> None:
    from redis.asyncio import Redis

    text_client = Redis.from_url(redis_server.url, decode_responses=True)
    try:
        cache = RedisCache(client=text_client, prefix="text:")
        client, expected = await first_answer(server, cache)
        async with client:
            with warnings.catch_warnings():
                warnings.simplefilter("error", CacheUnavailable)
                assert await client.run(QUERY) == expected
            assert client.statistics().savings.cache_hits == 1
        assert len(server.requests) == 1
    finally:
        await text_client.aclose()
