"""``ResultsStore`` against the real Redis: ownership of a batch_id and its stored result end together."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from barcodeflow.redis import RedisGuard
from facade.metrics import Metrics
from facade.results_store import OWNER_KEY, RESULT_KEY, Lookup, ResultsStore
from schemas.headers import owner_headers
from tests.facade.conftest import redis_url, requires_redis

pytestmark = requires_redis

MakeStore = Callable[[], ResultsStore]


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url())
    yield client
    await client.aclose()


@pytest.fixture
async def make_store(redis: aioredis.Redis) -> AsyncIterator[MakeStore]:
    """Each store is one facade replica sharing the Redis."""
    stores: list[ResultsStore] = []

    def make() -> ResultsStore:
        guard = RedisGuard(timeout=2.0, cooldown=0.5, what="test results store")
        store = ResultsStore(redis, guard, ttl_s=3600, metrics=Metrics())
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.stop()


async def stored(redis: aioredis.Redis, batch_id: str, store: ResultsStore, raw: bytes, owner: str = "key-a") -> None:
    """Hand ``raw`` (with ``owner`` in its x-owner header, as the sink writes a facade batch's result) to
    ``store`` as its listener would and wait until its writer has put it in Redis."""
    await store.start()
    store.on_result(batch_id, raw, owner_headers(owner) or ())
    for _ in range(200):
        if await redis.get(RESULT_KEY.format(batch_id)) == raw:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the result of {batch_id} was not stored")


async def claimed_and_answered(redis: aioredis.Redis, make_store: MakeStore, raw: bytes) -> tuple[ResultsStore, str]:
    """A batch claimed by key-a through one replica, its result stored; another replica and the batch_id."""
    replica_a, replica_b = make_store(), make_store()
    batch_id = f"order-{secrets.token_hex(6)}"
    await replica_a.claim(batch_id, "key-a")
    await stored(redis, batch_id, replica_a, raw)
    return replica_b, batch_id


async def test_a_lapsed_claim_does_not_hand_its_result_to_the_next_owner(
    redis: aioredis.Redis, make_store: MakeStore
) -> None:
    replica_b, batch_id = await claimed_and_answered(redis, make_store, b'{"batch_id": "...", "owner": "a"}')
    # the owner key ends (its TTL, or Redis's LRU evicting it) while the result key is still there
    await redis.delete(OWNER_KEY.format(batch_id))
    await replica_b.claim(batch_id, "key-b")  # the id is free again: another key may take it
    found = await replica_b.lookup(batch_id, "key-b")
    assert (found.state, found.result) == ("pending", None)  # not key-a's result
    assert await redis.get(RESULT_KEY.format(batch_id)) is None


async def test_a_stored_result_and_its_owner_expire_together(redis: aioredis.Redis, make_store: MakeStore) -> None:
    store = make_store()
    batch_id = f"order-{secrets.token_hex(6)}"
    await store.claim(batch_id, "key-a")
    await asyncio.sleep(0.3)  # the pipeline's time between the claim and the result
    await stored(redis, batch_id, store, b'{"batch_id": "..."}')
    owner_ms = await redis.pttl(OWNER_KEY.format(batch_id))
    result_ms = await redis.pttl(RESULT_KEY.format(batch_id))
    assert 0 < result_ms <= 3600 * 1000
    assert owner_ms >= result_ms - 50  # the owner does not lapse before its result (it did by the 0.3 s)
    found = await store.lookup(batch_id, "key-a")
    assert found.state == "done"


async def test_the_same_key_claiming_again_keeps_its_stored_result(
    redis: aioredis.Redis, make_store: MakeStore
) -> None:
    replica_b, batch_id = await claimed_and_answered(redis, make_store, b'{"n": 1}')
    await replica_b.claim(batch_id, "key-a")  # a retry of the same batch through another replica
    assert (await replica_b.lookup(batch_id, "key-a")).result == b'{"n": 1}'
    assert (await replica_b.lookup(batch_id, "key-b")).state == "unknown"


async def script_exists_calls(redis: aioredis.Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_script|exists", {}).get("calls", 0))


async def test_storing_results_asks_redis_nothing_but_the_store_script(
    redis: aioredis.Redis, make_store: MakeStore
) -> None:
    store = make_store()
    ids = [f"order-{secrets.token_hex(6)}" for _ in range(3)]
    for batch_id in ids:
        await store.claim(batch_id, "key-a")
    before = await script_exists_calls(redis)
    for n, batch_id in enumerate(ids):
        await stored(redis, batch_id, store, b'{"n": %d}' % n)
    assert await script_exists_calls(redis) == before  # no SCRIPT EXISTS round trip before each write


async def test_a_result_is_stored_after_redis_lost_its_scripts(redis: aioredis.Redis, make_store: MakeStore) -> None:
    store = make_store()
    first, second = f"order-{secrets.token_hex(6)}", f"order-{secrets.token_hex(6)}"
    await store.claim(first, "key-a")
    await store.claim(second, "key-a")
    await stored(redis, first, store, b'{"n": 1}')
    await redis.script_flush()  # as after a restart of Redis
    await stored(redis, second, store, b'{"n": 2}')
    assert store.guard.failures == 0  # loaded again, not taken for an outage


async def not_stored(redis: aioredis.Redis, batch_id: str, store: ResultsStore, raw: bytes, owner: str) -> None:
    """Hand ``raw`` to ``store`` with ``owner`` in its header, and a marker result after it (ids are written in
    order): once the marker is in Redis, ``raw``'s write has been decided."""
    marker = f"marker-{secrets.token_hex(6)}"
    await store.claim(marker, "key-z")
    store.on_result(batch_id, raw, owner_headers(owner) or ())
    await stored(redis, marker, store, b'{"marker": 1}', owner="key-z")


async def test_a_result_is_stored_for_its_owner_when_the_claim_was_lost_in_flight(
    redis: aioredis.Redis, make_store: MakeStore
) -> None:
    store = make_store()
    batch_id = f"order-{secrets.token_hex(6)}"
    await store.claim(batch_id, "key-a")
    await redis.delete(OWNER_KEY.format(batch_id))  # evicted (LRU) while the batch is in the pipeline
    await stored(redis, batch_id, store, b'{"n": 1}', owner="key-a")
    assert await redis.get(OWNER_KEY.format(batch_id)) == b"key-a"  # the claim is back, with the result's TTL
    assert 0 < await redis.pttl(OWNER_KEY.format(batch_id)) <= 3600 * 1000
    other = make_store()  # a replica that never saw the claim
    assert (await other.lookup(batch_id, "key-a")).result == b'{"n": 1}'
    assert (await other.lookup(batch_id, "key-b")).state == "unknown"


async def test_a_result_never_lands_under_another_keys_claim_of_its_id(
    redis: aioredis.Redis, make_store: MakeStore
) -> None:
    replica_a, replica_b = make_store(), make_store()
    batch_id = f"order-{secrets.token_hex(6)}"
    await replica_a.claim(batch_id, "key-a")
    await redis.delete(OWNER_KEY.format(batch_id))  # key-a's claim lost while its batch is in the pipeline
    await replica_b.claim(batch_id, "key-b")  # the id is free: key-b takes it
    await not_stored(redis, batch_id, replica_b, b'{"secret": "of key-a"}', owner="key-a")
    assert await redis.get(RESULT_KEY.format(batch_id)) is None
    assert await redis.get(OWNER_KEY.format(batch_id)) == b"key-b"
    assert (await replica_b.lookup(batch_id, "key-b")).state == "pending"  # not key-a's result
    # key-b's own batch under that id comes back with its own header and is stored for key-b
    await stored(redis, batch_id, replica_b, b'{"mine": "key-b"}', owner="key-b")
    assert (await replica_b.lookup(batch_id, "key-b")).result == b'{"mine": "key-b"}'


async def test_a_replicas_own_copy_is_kept_only_for_the_results_owner() -> None:
    # without Redis, a replica answers from its own copy: what it keeps is what it would show
    guard = RedisGuard(timeout=2.0, cooldown=0.5, what="test results store")
    store = ResultsStore(None, guard, ttl_s=3600, metrics=Metrics())
    batch_id = f"order-{secrets.token_hex(6)}"
    await store.claim(batch_id, "key-b")
    store.on_result(batch_id, b'{"of": "key-a"}', owner_headers("key-a") or ())
    assert (await store.lookup(batch_id, "key-b")) == Lookup("pending")
    store.on_result(batch_id, b'{"of": "key-b"}', owner_headers("key-b") or ())
    assert (await store.lookup(batch_id, "key-b")) == Lookup("done", b'{"of": "key-b"}')


async def test_a_result_without_an_owner_header_is_never_a_facade_batchs(
    redis: aioredis.Redis, make_store: MakeStore
) -> None:
    store = make_store()
    claimed, unclaimed = f"order-{secrets.token_hex(6)}", f"order-{secrets.token_hex(6)}"
    await store.claim(claimed, "key-a")
    # an upstream system's batches, one of them under an id a facade client claimed: neither is stored
    store.on_result(claimed, b'{"from": "another producer"}')
    store.on_result(unclaimed, b'{"from": "another producer"}')
    assert (await store.lookup(claimed, "key-a")) == Lookup("pending")  # nor kept in the replica's own copy
    await stored(redis, claimed, store, b'{"n": 1}', owner="key-a")  # the facade batch's own result
    assert await redis.get(RESULT_KEY.format(claimed)) == b'{"n": 1}'
    assert await redis.get(RESULT_KEY.format(unclaimed)) is None
    assert await redis.get(OWNER_KEY.format(unclaimed)) is None
