"""The render pool stores the images it renders in Redis itself (``PoolStore``), against the real Redis."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import redis

from barcodeflow.cache import KEY_PREFIX, PoolStore, TwoLevelCache
from barcodeflow.settings import Settings
from render.batch import CachedImage, plan_batch, render_task
from render.core import Outcome
from render.pool import InlinePool, RenderPool
from render.spec import normalize_item
from schemas.validate import parse_batch

pytestmark = pytest.mark.integration


def specs(*data: str) -> list[dict[str, Any]]:
    return [normalize_item({"barcode_type": "qr", "data": d}).to_dict() for d in data]


@pytest.fixture
def blocking_redis(stack_settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(stack_settings.redis_url)
    yield client
    client.close()


def dead_redis_url() -> str:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{s.getsockname()[1]}/0"


async def test_pool_processes_store_what_they_render(stack_settings: Settings, blocking_redis: redis.Redis) -> None:
    tag = uuid.uuid4().hex
    keys = [f"test-{tag}-{i}" for i in range(3)]
    pool = RenderPool(2, store=PoolStore(stack_settings.redis_url, ttl=60))
    try:
        outcomes, stored = await pool.render_and_store(specs(f"{tag}-a", f"{tag}-b", "x" * 3000), keys)
    finally:
        pool.stop()
    assert stored is True
    assert [o.success for o in outcomes] == [True, True, False]  # too long for any QR version
    # the process read the write's replies once it had nothing else to do; Redis has the images by then
    deadline = time.monotonic() + 5
    while blocking_redis.exists(*(KEY_PREFIX + k for k in keys[:2])) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    for key, o in zip(keys[:2], outcomes, strict=False):
        raw = blocking_redis.get(KEY_PREFIX + key)
        assert isinstance(raw, bytes)
        assert CachedImage.decode(raw) == CachedImage(o.image or b"", o.content_type or "", o.metadata or {})
        assert 0 < blocking_redis.ttl(KEY_PREFIX + key) <= 60
    assert blocking_redis.exists(KEY_PREFIX + keys[2]) == 0  # a failed item is never cached


def test_a_dead_redis_is_reported_and_then_skipped_for_the_back_off() -> None:
    store = PoolStore(dead_redis_url(), ttl=60, timeout_ms=200, backoff_s=60)
    assert store({"k": b"v"}) is False
    assert store({"k": b"v"}) is False
    assert store._guard is not None and store._guard.failures == 1  # the second call did not try


def test_a_write_is_settled_at_the_next_write_and_an_error_reply_fails_that_one(
    stack_settings: Settings, blocking_redis: redis.Redis
) -> None:
    tag = uuid.uuid4().hex
    entries = {f"test-{tag}-{i}": f"v{i}".encode() for i in range(5)}
    store = PoolStore(stack_settings.redis_url, ttl=60, backoff_s=0)
    assert store(entries) is True
    store.ttl = 0  # "ERR invalid expire time": every SET of the next write is refused
    assert store(entries) is True  # sent; its replies are read at the next write
    store.ttl = 60
    fresh = {key: b"new-" + value for key, value in entries.items()}
    assert store(fresh) is False  # the refused write is found first: this one is not sent, its caller stores it
    assert store._guard is not None and store._guard.failures == 1
    assert blocking_redis.mget([KEY_PREFIX + k for k in fresh]) == list(entries.values())
    assert store(fresh) is True  # on a connection with no reply left unread
    store.flush()
    assert store._guard.failures == 1
    assert blocking_redis.mget([KEY_PREFIX + k for k in fresh]) == list(fresh.values())


def test_flush_reads_the_replies_and_reports_an_error(stack_settings: Settings, blocking_redis: redis.Redis) -> None:
    tag = uuid.uuid4().hex
    store = PoolStore(stack_settings.redis_url, ttl=0, backoff_s=60)
    assert store({f"test-{tag}": b"v"}) is True
    store.flush()
    assert store._guard is not None and store._guard.failures == 1
    assert store({f"test-{tag}": b"v"}) is False  # skipped for the back-off
    assert blocking_redis.exists(KEY_PREFIX + f"test-{tag}") == 0


class StoringPool(InlinePool):
    """An inline pool that says its processes stored the images."""

    async def render_and_store(
        self, specs: Sequence[dict[str, Any]], keys: Sequence[str]
    ) -> tuple[list[Outcome], bool]:
        return await self.run(specs), True


class CountingRedis:
    def __init__(self) -> None:
        self.sets = 0

    def pipeline(self, transaction: bool = False) -> Any:
        outer = self

        class Pipe:
            def set(self, key: str, val: bytes, ex: int) -> None:
                outer.sets += 1

            async def execute(self) -> None:
                return None

        return Pipe()


@pytest.mark.parametrize(("pool", "sets_from_the_caller"), [(StoringPool(), 0), (InlinePool(), 1)])
async def test_the_caller_stores_only_what_the_pool_did_not(pool: InlinePool, sets_from_the_caller: int) -> None:
    client = CountingRedis()
    cache = TwoLevelCache(client, max_size=10)  # type: ignore[arg-type]
    plan = plan_batch(parse_batch({"barcodes": [{"barcode_type": "qr", "data": "x"}]}), run="r",
                      received_at_ms=0, timeout_s=10)  # fmt: skip
    part = await render_task(plan.tasks[0], cache=cache, pool=pool)
    assert part["results"][0]["success"]
    assert client.sets == sets_from_the_caller
    assert set(await cache.get_many(plan.keys())) == plan.keys()  # the process's own memory has it either way
