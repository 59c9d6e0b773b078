"""End to end through the real broker, Redis, worker and sink processes."""

from __future__ import annotations

import asyncio
import base64
import io
import time
import uuid
from typing import Any

import orjson
import pytest
import zxingcpp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from PIL import Image

from producer import BatchProducer, ResultListener
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.integration


def decode_png(b64: str) -> str:
    [found] = zxingcpp.read_barcodes(Image.open(io.BytesIO(base64.b64decode(b64))))
    return found.text


MIXED = [
    {"id": "q", "barcode_type": "qr", "data": "https://example.com/p/1", "format": "png"},
    {"id": "e", "barcode_type": "ean13", "data": "590123412345", "format": "png"},
    {"id": "c", "barcode_type": "code128", "data": "ABC-123", "format": "svg"},
    {"id": "d", "barcode_type": "datamatrix", "data": "asset 0042", "format": "png"},
    {"id": "p", "barcode_type": "pdf417", "data": "ticket 7", "format": "svg"},
]


async def test_mixed_batch_end_to_end(pipeline: Pipeline) -> None:
    tag = uuid.uuid4().hex[:6]
    items = [dict(it, data=it["data"] if it["id"] == "e" else f"{it['data']}-{tag}") for it in MIXED]
    result = await pipeline.submit({"barcodes": items})
    assert result["success"] is True
    assert [r["id"] for r in result["results"]] == ["q", "e", "c", "d", "p"]
    assert [r["index"] for r in result["results"]] == list(range(5))
    s = result["summary"]
    assert (s["total"], s["successful"], s["failed"]) == (5, 5, 0)
    assert s["total_time_ms"] > 0 and s["average_time_ms"] == pytest.approx(s["total_time_ms"] / 5, rel=1e-3)
    by_id = {r["id"]: r for r in result["results"]}
    assert decode_png(by_id["q"]["png"]) == items[0]["data"]
    assert decode_png(by_id["e"]["png"]) == "5901234123457"
    assert by_id["e"]["metadata"]["data"] == "5901234123457"
    assert decode_png(by_id["d"]["png"]) == items[3]["data"]
    assert by_id["c"]["svg"].startswith("<svg") or by_id["c"]["svg"].startswith("<?xml")


async def test_partial_failure_keeps_the_rest(pipeline: Pipeline) -> None:
    tag = uuid.uuid4().hex
    items: list[dict[str, Any]] = [{"barcode_type": "qr", "data": f"{tag}-{n}", "format": "svg"} for n in range(97)]
    items.insert(10, {"barcode_type": "nope", "data": "x"})
    items.insert(50, {"barcode_type": "ean13", "data": "5901234123458"})  # wrong check digit
    items.insert(70, {"barcode_type": "qr", "data": "x", "options": {"width": -5}})
    result = await pipeline.submit({"barcodes": items})
    codes = {r["index"]: r["error"]["code"] for r in result["results"] if not r["success"]}
    assert codes == {10: "unsupported_type", 50: "invalid_check_digit", 70: "invalid_option"}
    assert result["summary"]["successful"] == 97
    assert result["success"] is False


async def test_resubmission_is_served_from_cache(pipeline: Pipeline) -> None:
    tag = uuid.uuid4().hex
    batch = {"barcodes": [{"barcode_type": "code128", "data": f"{tag}{n}"} for n in range(20)]}
    first = await pipeline.submit(batch)
    assert first["summary"]["cached"] == 0
    second = await pipeline.submit(batch)
    assert second["summary"]["cached"] == second["summary"]["total"] == 20
    assert [r["svg"] for r in first["results"]] == [r["svg"] for r in second["results"]]


async def test_identical_items_render_once(pipeline: Pipeline) -> None:
    data = f"same-{uuid.uuid4().hex}"
    result = await pipeline.submit({"barcodes": [{"barcode_type": "qr", "data": data}] * 5})
    assert result["summary"]["successful"] == 5
    assert result["summary"]["cached"] == 4  # rendered once, served four times


async def test_rejected_batch_gets_a_failed_result(pipeline: Pipeline) -> None:
    """A batch that fails validation as a whole still answers a waiting client (via its batch_id)."""
    bid = f"bad-{uuid.uuid4().hex}"
    listener = ResultListener(pipeline.settings)
    await listener.start()
    try:
        fut = listener.expect(bid)
        async with BatchProducer(pipeline.settings) as prod:
            bad = {"batch_id": bid, "barcodes": [{"barcode_type": "qr", "data": "x"}] * 101,
                   "options": {"max_concurrent": 0}}  # fmt: skip
            await prod.send_raw(orjson.dumps(bad), key=bid.encode())
        result = orjson.loads(await asyncio.wait_for(fut, 60))
    finally:
        await listener.stop()
    assert result["success"] is False
    assert result["error"]["code"] == "invalid_batch"
    locs = {p["loc"] for p in result["error"]["problems"]}
    assert {"barcodes", "options.max_concurrent"} <= locs


async def read_dlq(pipeline: Pipeline, want: int, timeout: float = 60) -> list[Any]:
    consumer = AIOKafkaConsumer(
        pipeline.settings.topics.dlq,
        bootstrap_servers=pipeline.settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        group_id=None,
        max_partition_fetch_bytes=pipeline.settings.max_message_bytes,
        fetch_max_bytes=pipeline.settings.max_message_bytes * 2,
    )
    await consumer.start()
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < want and time.monotonic() < deadline:
            for recs in (await consumer.getmany(timeout_ms=500)).values():
                out.extend(recs)
    finally:
        await consumer.stop()
    return out


async def test_malformed_messages_go_to_the_dlq(pipeline: Pipeline) -> None:
    junk = b"\x00\xff" * (1024 * 1024)  # 2 MB, not UTF-8, not JSON
    tag = uuid.uuid4().hex.encode()
    bad = [b"{not json " + tag, orjson.dumps({"barcodes": "nope", "tag": tag.decode()}), junk]
    producer = AIOKafkaProducer(
        bootstrap_servers=pipeline.settings.kafka_bootstrap_servers,
        max_request_size=pipeline.settings.max_message_bytes,
        compression_type="gzip",
    )
    await producer.start()
    try:
        for value in bad:
            await producer.send_and_wait(pipeline.settings.topics.requests, value, key=b"junk-" + tag)
    finally:
        await producer.stop()
    # the worker keeps serving good batches
    ok = await pipeline.submit({"barcodes": [{"barcode_type": "qr", "data": f"after-junk-{tag.decode()}"}]})
    assert ok["success"] is True
    records = [r for r in await read_dlq(pipeline, 3) if r.key == b"junk-" + tag]
    assert len(records) == 3
    assert {r.value for r in records} == set(bad)  # original bytes preserved
    for r in records:
        headers = dict(r.headers)
        assert headers["x-error-code"] == b"invalid_batch"
        assert headers["x-error-reason"]
        assert int(headers["x-source-offset"]) >= 0
        assert headers["x-source-topic"] == pipeline.settings.topics.requests.encode()
    reasons = sorted(dict(r.headers)["x-error-reason"].decode() for r in records)
    assert any("not valid JSON" in x for x in reasons)
    assert any("barcodes" in x and "list" in x for x in reasons)


async def test_deadline_emits_timeout_items(pipeline: Pipeline) -> None:
    """An opened batch whose items never all arrive is emitted at its deadline with ``timeout`` items."""
    bid = f"deadline-{uuid.uuid4().hex}"
    now = int(time.time() * 1000)
    opened = {"kind": "open", "batch_id": bid, "run": "test:1", "total": 3, "ids": ["a", "b", "c"],
              "received_at": now, "deadline": now + 1500, "replay": None}  # fmt: skip
    part = {"kind": "part", "batch_id": bid, "run": "test:1", "chunk": "0",
            "results": [{"index": 1, "id": "b", "success": True, "cached": False, "svg": "<svg/>"}]}  # fmt: skip
    listener = ResultListener(pipeline.settings)
    await listener.start()
    try:
        fut = listener.expect(bid)
        async with BatchProducer(pipeline.settings) as prod:
            for rec in (opened, part):
                await prod.send_raw(orjson.dumps(rec), key=bid.encode(), topic=pipeline.settings.topics.items)
        result = orjson.loads(await asyncio.wait_for(fut, 30))
    finally:
        await listener.stop()
    assert [r.get("error", {}).get("code") for r in result["results"]] == ["timeout", None, "timeout"]
    assert result["summary"]["failed"] == 2
    assert result["summary"]["total_time_ms"] >= 1500


async def test_large_result_arrives_whole(pipeline: Pipeline) -> None:
    """100 QR codes of version 40 as SVG: several MB of result, above Faust's 1 MB default."""
    tag = uuid.uuid4().hex
    items = [
        {"barcode_type": "qr", "data": (f"{n:03d}{tag}" * 100)[:2900], "format": "svg",
         "options": {"error_correction": "L"}}
        for n in range(100)
    ]  # fmt: skip
    result = await pipeline.submit({"barcodes": items}, timeout=180)
    assert result["summary"]["successful"] == 100, result["results"][0]
    assert all(r["metadata"]["version"] == 40 for r in result["results"])
    assert len(orjson.dumps(result)) > 1_000_000
