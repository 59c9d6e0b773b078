"""Planning, task rendering and the cache, with fakes for Redis (unit tests only)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from schemas.validate import parse_batch
from stream_app.cache import CachedImage, TwoLevelCache
from stream_app.local import InlinePool, run_batch
from stream_app.pipeline import plan_batch, render_task


def plan(items: list[dict[str, Any]], **opts: Any) -> Any:
    return plan_batch(parse_batch({"batch_id": "b", "barcodes": items, "options": opts}),
                      run="0:0", received_at_ms=1000, timeout_s=10)  # fmt: skip


@pytest.mark.parametrize("max_concurrent", [1, 3, 20])
def test_tasks_never_exceed_max_concurrent(max_concurrent: int) -> None:
    p = plan([{"barcode_type": "qr", "data": str(i)} for i in range(50)], max_concurrent=max_concurrent)
    assert len(p.tasks) == max_concurrent
    indexes = sorted(it["index"] for t in p.tasks for it in t["items"])
    assert indexes == list(range(50))


def test_fewer_distinct_items_than_max_concurrent() -> None:
    p = plan([{"barcode_type": "qr", "data": "same"}] * 8 + [{"barcode_type": "qr", "data": "other"}])
    assert len(p.tasks) == 2
    assert sorted(len(t["items"]) for t in p.tasks) == [1, 8]
    assert p.open["total"] == 9 and p.open["deadline"] == 11_000


def test_invalid_items_fail_at_planning_and_are_not_rendered() -> None:
    p = plan([{"barcode_type": "qr", "data": ""}, {"barcode_type": "qr", "data": "ok"}])
    assert p.rejected_items is not None
    [failed] = p.rejected_items["results"]
    assert failed["index"] == 0 and failed["error"]["code"] == "invalid_data"
    assert [it["index"] for t in p.tasks for it in t["items"]] == [1]


class SlowRedis:
    """Answers after ``delay`` seconds, or raises: stands in for a slow or dead Redis."""

    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.delay, self.fail, self.calls = delay, fail, 0
        self.data: dict[str, bytes] = {}

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise RedisConnectionError("connection refused")
        return [self.data.get(k) for k in keys]

    def pipeline(self, transaction: bool = False) -> Any:
        outer = self

        class Pipe:
            ops: list[tuple[str, bytes]] = []

            def set(self, key: str, val: bytes, ex: int) -> None:
                self.ops.append((key, val))

            async def execute(self) -> None:
                outer.calls += 1
                await asyncio.sleep(outer.delay)
                if outer.fail:
                    raise RedisConnectionError("connection refused")
                outer.data.update(self.ops)

        return Pipe()


async def test_slow_redis_costs_at_most_the_timeout() -> None:
    cache = TwoLevelCache(SlowRedis(delay=5), max_size=10, timeout_ms=50)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    assert await cache.get_many(["a", "b"]) == {}
    assert time.perf_counter() - t0 < 1.0
    assert cache.stats.redis_errors == 1
    # within the back-off, Redis is not even asked
    await cache.get_many(["c"])
    assert cache.stats.redis_skipped == 1


async def test_dead_redis_still_renders_and_memory_level_serves() -> None:
    redis = SlowRedis(fail=True)
    cache = TwoLevelCache(redis, max_size=10, timeout_ms=50, backoff_s=0)  # type: ignore[arg-type]
    p = plan([{"barcode_type": "ean8", "data": "9638507"}])
    first = await render_task(p.tasks[0], cache=cache, pool=InlinePool())  # type: ignore[arg-type]
    assert first["results"][0]["success"] and not first["results"][0]["cached"]
    second = await render_task(p.tasks[0], cache=cache, pool=InlinePool())  # type: ignore[arg-type]
    assert second["results"][0]["cached"] is True
    assert cache.stats.redis_errors >= 2 and cache.stats.memory_hits == 1


async def test_redis_level_is_shared_between_workers() -> None:
    redis = SlowRedis()
    a = TwoLevelCache(redis, max_size=10)  # type: ignore[arg-type]
    b = TwoLevelCache(redis, max_size=10)  # type: ignore[arg-type]
    p = plan([{"barcode_type": "qr", "data": "shared"}])
    await render_task(p.tasks[0], cache=a, pool=InlinePool())  # type: ignore[arg-type]
    hit = await render_task(p.tasks[0], cache=b, pool=InlinePool())  # type: ignore[arg-type]
    assert hit["results"][0]["cached"] and b.stats.redis_hits == 1


async def test_no_cache_renders_afresh_but_still_stores() -> None:
    cache = TwoLevelCache(None, max_size=10)
    req = parse_batch({"barcodes": [{"barcode_type": "qr", "data": "x"}], "options": {"no_cache": True}})
    await run_batch(req, cache=cache)
    again = await run_batch(req, cache=cache)
    assert again["summary"]["cached"] == 0 and len(cache.lru) == 1


def test_cached_image_round_trip() -> None:
    img = CachedImage(image=b"\x89PNG\n\x00", content_type="image/png", metadata={"v": 1, "s": "a\nb"})
    assert CachedImage.decode(img.encode()) == img


async def test_validate_only_returns_metadata_without_images() -> None:
    req = parse_batch({"barcodes": [{"barcode_type": "qr", "data": "hello"}], "options": {"validate_only": True}})
    result = await run_batch(req)
    [r] = result["results"]
    assert r["success"] and "svg" not in r and "png" not in r
    assert r["metadata"]["version"] == 1
