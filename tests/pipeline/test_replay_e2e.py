"""Replay through the running pipeline: same batch ids, identical images, marked as replays."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest

from producer import ResultListener
from producer.replay import replay
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.integration


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
        stray = listener.expect(before["batch_id"])
        report = await replay(pipeline.settings, since_ms, until_ms, no_cache=True)
        raws = await asyncio.wait_for(asyncio.gather(*futs.values()), 60)
        replayed = {bid: orjson.loads(raw) for bid, raw in zip(futs, raws, strict=True)}
        await asyncio.sleep(1)
        assert not stray.done(), "a request outside the time range was replayed"
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
        other = listener.expect(f"{tag}-0")
        report = await replay(pipeline.settings, since_ms, batch_id=f"{tag}-1")
        result = orjson.loads(await asyncio.wait_for(fut, 60))
        await asyncio.sleep(1)
        assert not other.done()
    finally:
        await listener.stop()
    assert report.republished == 1
    assert result["replay"] and result["summary"]["cached"] == 1  # a replay without --no-cache hits the cache
