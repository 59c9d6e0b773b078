"""Replay through the running pipeline: same batch ids, identical images, marked as replays.

What was *not* replayed is read from ``barcode.requests`` itself: every record the replay appended (between
the end offsets before it and after it) is listed, so a stray one is seen, not waited for."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from barcodeflow.kafka import consumer_config
from barcodeflow.settings import Settings
from producer import ResultListener
from producer.replay import replay
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.integration

GUARD_S = 30.0  # a broken test fails after this instead of hanging


async def request_offsets(settings: Settings) -> dict[TopicPartition, int]:
    c = AIOKafkaConsumer(**consumer_config(settings, "replay-e2e-offsets"))
    await c.start()
    try:
        tps = [TopicPartition(settings.topics.requests, p) for p in range(settings.topic_partitions)]
        return dict(await c.end_offsets(tps))
    finally:
        await c.stop()


async def batch_ids_appended_since(settings: Settings, before: dict[TopicPartition, int]) -> list[str]:
    """The keys of every record appended to ``barcode.requests`` after the offsets ``before``."""
    c = AIOKafkaConsumer(**consumer_config(settings, "replay-e2e-read"))
    await c.start()
    try:
        tps = list(before)
        c.assign(tps)
        after = await c.end_offsets(tps)
        for tp in tps:
            c.seek(tp, before[tp])
        keys: list[str] = []
        async with asyncio.timeout(GUARD_S):
            while [tp for tp in tps if await c.position(tp) < after[tp]]:
                for records in (await c.getmany(*tps, timeout_ms=500)).values():
                    keys += [r.key.decode() for r in records if r.offset < after[TopicPartition(r.topic, r.partition)]]
        return keys
    finally:
        await c.stop()


async def test_replay_reprocesses_a_time_range(pipeline: Pipeline) -> None:
    tag = uuid.uuid4().hex[:8]
    before = {"batch_id": f"{tag}-before", "barcodes": [{"barcode_type": "qr", "data": f"{tag}-0"}]}
    inside = [
        {"batch_id": f"{tag}-in{n}", "barcodes": [{"barcode_type": "code128", "data": f"{tag}-{n}-{i}"}
                                                   for i in range(3)]}
        for n in range(3)
    ]  # fmt: skip
    await pipeline.submit(before)
    await asyncio.sleep(0.05)
    since_ms = int(time.time() * 1000)
    originals = {b["batch_id"]: await pipeline.submit(b) for b in inside}
    until_ms = int(time.time() * 1000) + 1

    listener = ResultListener(pipeline.settings)
    await listener.start()
    try:
        futs = {bid: listener.expect(bid) for bid in originals}
        offsets = await request_offsets(pipeline.settings)
        report = await replay(pipeline.settings, since_ms, until_ms, no_cache=True)
        appended = await batch_ids_appended_since(pipeline.settings, offsets)
        assert sorted(appended) == sorted(originals), "replay republished exactly the requests of the range"
        raws = await asyncio.wait_for(asyncio.gather(*futs.values()), 60)
        replayed = {bid: orjson.loads(raw) for bid, raw in zip(futs, raws, strict=True)}
    finally:
        await listener.stop()
    assert report.republished == 3
    for bid, result in replayed.items():
        assert result["replay"]["source_offset"] >= 0
        assert result["summary"]["cached"] == 0  # --no-cache: rendered afresh
        assert [r["svg"] for r in result["results"]] == [r["svg"] for r in originals[bid]["results"]]


async def test_replay_of_one_batch_id(pipeline: Pipeline) -> None:
    tag = uuid.uuid4().hex[:8]
    since_ms = int(time.time() * 1000)
    for n in range(2):
        await pipeline.submit({"batch_id": f"{tag}-{n}", "barcodes": [{"barcode_type": "qr", "data": tag}]})
    listener = ResultListener(pipeline.settings)
    await listener.start()
    try:
        fut = listener.expect(f"{tag}-1")
        offsets = await request_offsets(pipeline.settings)
        report = await replay(pipeline.settings, since_ms, batch_id=f"{tag}-1")
        assert await batch_ids_appended_since(pipeline.settings, offsets) == [f"{tag}-1"]
        result = orjson.loads(await asyncio.wait_for(fut, 60))
    finally:
        await listener.stop()
    assert report.republished == 1
    assert result["replay"] and result["summary"]["cached"] == 1  # a replay without --no-cache hits the cache
