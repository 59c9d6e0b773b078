"""``BatchProducer.send``: a mapping is validated, a ``BatchRequest`` is published as it is."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from barcodeflow.settings import Settings
from producer import BatchProducer, encode_request
from schemas.errors import BatchValidationError
from schemas.models import BatchRequest
from schemas.validate import parse_batch

pytestmark = pytest.mark.integration


def items(n: int) -> list[dict[str, str]]:
    return [{"id": f"i{i}", "barcode_type": "qr", "data": f"d{i}"} for i in range(n)]


async def read_requests(settings: Settings, want: int, timeout: float = 20) -> list[ConsumerRecord]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        topic = settings.topics.requests
        await consumer._client.force_metadata_update()  # noqa: SLF001 - no public metadata refresh
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout
        while len(got) < want and time.monotonic() < deadline:
            for recs in (await consumer.getmany(timeout_ms=200)).values():
                got.extend(recs)
        return got
    finally:
        await consumer.stop()


async def test_a_request_model_is_published_as_it_is(topic_settings: Settings) -> None:
    """A BatchRequest is taken as validated: not checked again, encoded once. The producer's own
    limit (2 items) would refuse this 3-item batch if it were validated again."""
    s = topic_settings.with_(max_batch_size=2)
    bid = f"model-{uuid.uuid4().hex}"
    req = parse_batch({"batch_id": bid, "barcodes": items(3)}, max_batch_size=3)
    async with BatchProducer(s) as prod:
        assert await prod.send(req) == bid
        with pytest.raises(BatchValidationError, match="maximum batch size of 2"):
            await prod.send({"barcodes": items(3)})  # a mapping is validated
    (rec,) = await read_requests(s, 1)
    assert rec.key == bid.encode()
    assert rec.value == encode_request(req)
    assert [it["id"] for it in orjson.loads(rec.value)["barcodes"]] == ["i0", "i1", "i2"]


async def test_a_request_model_without_batch_id_gets_one_on_a_copy(topic_settings: Settings) -> None:
    req = BatchRequest.model_validate({"barcodes": items(1)})
    async with BatchProducer(topic_settings) as prod:
        sent = await asyncio.gather(prod.send(req), prod.send(req))
    assert req.batch_id is None  # the caller's object is left as it is
    assert len(set(sent)) == 2  # each send is a batch of its own
    recs = await read_requests(topic_settings, 2)
    assert sorted(r.key for r in recs) == sorted(b.encode() for b in sent)
    assert sorted(orjson.loads(r.value)["batch_id"] for r in recs) == sorted(sent)
