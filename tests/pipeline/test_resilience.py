"""A worker killed mid-batch and a Redis outage: every batch still gets its full result."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from barcodeflow.cache import KEY_PREFIX
from barcodeflow.settings import Settings
from producer import BatchProducer, ResultListener
from tests.conftest import running_pipeline
from tests.support.pipeline import RedisServer, free_port

pytestmark = pytest.mark.integration


def qr_batch(tag: str, n: int, size: int = 20) -> dict:
    return {"batch_id": f"{tag}-{n}", "barcodes": [{"barcode_type": "qr", "data": f"{tag}/{n}/{i}"}
                                                   for i in range(size)]}  # fmt: skip


async def kill_mid_flow(role: str, settings: Settings, workdir: Path, n_batches: int) -> tuple[int, list[dict]]:
    """Send ``n_batches`` of 20 QR codes, SIGKILL ``role`` once a few results are out, restart it one
    second later; returns how many results were out before the kill and all the results."""
    tag = uuid.uuid4().hex[:8]
    async with running_pipeline(settings, workdir) as pipe:
        listener = ResultListener(pipe.settings)
        await listener.start()
        try:
            futs = {f"{tag}-{n}": listener.expect(f"{tag}-{n}") for n in range(n_batches)}
            async with BatchProducer(pipe.settings) as prod:
                for n in range(n_batches):
                    await prod.send(qr_batch(tag, n))
                deadline = time.monotonic() + 60
                while sum(f.done() for f in futs.values()) < 3 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                done_before_kill = sum(f.done() for f in futs.values())
                pipe.procs[role].kill()
                await asyncio.sleep(1)
                pipe.add(role, role)
            results = await asyncio.wait_for(asyncio.gather(*futs.values()), 240)
        finally:
            await listener.stop()
    assert done_before_kill < n_batches, "the kill came too late to test anything"
    return done_before_kill, [orjson.loads(raw) for raw in results]


def assert_all_complete(results: list[dict], n_batches: int) -> None:
    assert len(results) == n_batches
    for r in results:
        assert r["summary"]["total"] == 20
        assert r["summary"]["successful"] == 20, [x.get("error") for x in r["results"] if not x["success"]]


async def test_worker_killed_mid_batch_loses_nothing(isolated_settings: Settings, tmp_path: Path) -> None:
    """SIGKILL (worker and its render pool) while batches flow, restart: every batch completes.

    The intake commits a request only after its open record and parts are acknowledged, so the killed
    worker's unfinished requests are read again by the restarted one; the sink ignores any part it
    already has and merges items the repeated open record answers from the cache.
    """
    _, results = await kill_mid_flow("worker", isolated_settings, tmp_path, 40)
    assert_all_complete(results, 40)


async def test_redis_outage_does_not_fail_or_stall_batches(isolated_settings: Settings, tmp_path: Path) -> None:
    redis = RedisServer(free_port(), tmp_path / "redis")
    redis.start()
    # a generous Redis timeout: on a loaded CI machine 100 ms can pass before Redis answers, which
    # would (correctly) skip the cache and make the "cached in Redis" checks below flaky
    settings = isolated_settings.with_(redis_url=redis.url, cache_timeout_ms=1000)
    tag = uuid.uuid4().hex[:8]
    client = Redis.from_url(redis.url)
    try:
        async with running_pipeline(settings, tmp_path) as pipe:
            first = await pipe.submit(qr_batch(tag, 0))
            assert first["summary"]["successful"] == 20
            assert len(await client.keys(KEY_PREFIX + "*")) >= 20  # cached in Redis

            redis.stop()
            t0 = time.monotonic()
            during = [await pipe.submit(qr_batch(tag, n), timeout=60) for n in (1, 2, 3)]
            outage_s = time.monotonic() - t0
            for r in during:
                assert r["summary"]["successful"] == 20, r["results"][0]
            # the in-process level still serves what this worker rendered before
            again = await pipe.submit(qr_batch(tag, 0) | {"batch_id": f"{tag}-0b"})
            assert again["summary"]["cached"] == 20

            redis.start()
            await client.aclose()
            client = Redis.from_url(redis.url)  # the old connection died with the server
            # the first calls after the restart may still fail (stale pooled connections, then the
            # cache's one-second back-off); with traffic flowing, caching resumes within seconds
            deadline = time.monotonic() + 30
            n = 4
            keys: list[bytes] = []
            while time.monotonic() < deadline:
                after = await pipe.submit(qr_batch(tag, n))
                assert after["summary"]["successful"] == 20
                keys = await client.keys(KEY_PREFIX + "*")
                if len(keys) >= 20:
                    break
                n += 1
                await asyncio.sleep(0.5)
            assert len(keys) >= 20, "caching in Redis did not resume"
    finally:
        await client.aclose()
        redis.stop()
    # three batches during the outage took seconds, not a timeout per item
    assert outage_s < 45


async def test_sink_killed_mid_batch_rebuilds_its_runs(isolated_settings: Settings, tmp_path: Path) -> None:
    """SIGKILL the sink while parts are arriving, restart it: it reads again from its committed offsets
    (the low watermark of the runs not yet emitted) and every batch is emitted once complete (parts seen
    before the kill are not lost).

    Regression test of D6 (RELIABILITY.md): with the Faust sink, records acknowledged unseen after a
    restart ended as ``timeout`` items or no result."""
    _, results = await kill_mid_flow("sink", isolated_settings, tmp_path, 30)
    assert_all_complete(results, 30)


async def test_the_render_cache_can_have_a_redis_of_its_own(isolated_settings: Settings, tmp_path: Path) -> None:
    """CACHE_REDIS_URL: the worker's images go there, none to REDIS_URL (ownership and results stay apart
    from the cache's LRU turnover)."""
    state, cache = RedisServer(free_port(), tmp_path / "state"), RedisServer(free_port(), tmp_path / "cache")
    state.start()
    cache.start()
    settings = isolated_settings.with_(redis_url=state.url, cache_redis_url=cache.url, cache_timeout_ms=1000)
    tag = uuid.uuid4().hex[:8]
    state_client, cache_client = Redis.from_url(state.url), Redis.from_url(cache.url)
    try:
        async with running_pipeline(settings, tmp_path) as pipe:
            first = await pipe.submit(qr_batch(tag, 0))
            assert first["summary"]["successful"] == 20
            assert len(await cache_client.keys(KEY_PREFIX + "*")) >= 20  # (and the readiness probe's)
            assert await state_client.keys("*") == []
            again = await pipe.submit(qr_batch(tag, 0) | {"batch_id": f"{tag}-0b"})
            assert again["summary"]["cached"] == 20
    finally:
        await state_client.aclose()
        await cache_client.aclose()
        state.stop()
        cache.stop()
