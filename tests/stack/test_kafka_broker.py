"""The real local Kafka broker: metadata, topic admin, 5 MB gzip messages, no auto-create, SIGKILL restart."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaTimeoutError, UnknownTopicOrPartitionError

from barcodeflow.stack import ManagedProcess, StackPaths, kafka_metadata
from barcodeflow.stack.procs import read_pid_file
from tests.faults.support import PrivateKafka

pytestmark = pytest.mark.integration

MIB = 1024 * 1024


def _topic(prefix: str) -> str:
    return f"test.stack.{prefix}.{uuid.uuid4().hex[:10]}"


async def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    return admin


async def _wait_topics(admin: AIOKafkaAdminClient, topic: str, *, present: bool, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (topic in await admin.list_topics()) != present:
        if loop.time() > deadline:
            raise AssertionError(f"topic {topic} {'never appeared' if present else 'still listed'}")
        await asyncio.sleep(0.2)


def test_metadata(kafka_service: ManagedProcess | None, kafka_bootstrap: str) -> None:
    md = kafka_metadata(kafka_bootstrap, timeout=10)
    assert md["brokers"], md
    assert md["controller"] is not None


async def test_create_and_delete_topic(kafka_service: ManagedProcess | None, kafka_bootstrap: str) -> None:
    admin = await _admin(kafka_bootstrap)
    topic = _topic("admin")
    try:
        resp = await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        assert [e[1] for e in resp.topic_errors] == [0], resp
        await _wait_topics(admin, topic, present=True)
        desc = await admin.describe_topics([topic])
        assert len(desc[0]["partitions"]) == 3
        resp = await admin.delete_topics([topic])
        assert [e[1] for e in resp.topic_error_codes] == [0], resp
        await _wait_topics(admin, topic, present=False)
    finally:
        await admin.close()


async def test_large_gzip_message_roundtrip(kafka_service: ManagedProcess | None, kafka_bootstrap: str) -> None:
    """A 5 MB value through a consumer group.

    Incompressible, so the gzip batch stays ~5 MB: above Kafka's 1 MB default message size.
    """
    topic = _topic("big")
    admin = await _admin(kafka_bootstrap)
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, compression_type="gzip", max_request_size=16 * MIB, acks="all"
    )
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"test-stack-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_bytes=32 * MIB,
        max_partition_fetch_bytes=16 * MIB,
    )
    try:
        resp = await admin.create_topics(
            [
                NewTopic(
                    topic,
                    num_partitions=2,
                    replication_factor=1,
                    topic_configs={"max.message.bytes": str(16 * MIB)},
                )
            ]
        )
        assert [e[1] for e in resp.topic_errors] == [0], resp
        await _wait_topics(admin, topic, present=True)
        payload = os.urandom(5 * MIB)
        await producer.start()
        meta = await producer.send_and_wait(topic, payload, key=b"big", headers=[("kind", b"test")])
        assert meta.offset >= 0
        await consumer.start()
        msg = await asyncio.wait_for(consumer.getone(), timeout=60)
        assert msg.key == b"big"
        assert len(msg.value) == len(payload)
        assert msg.value == payload
        tp = TopicPartition(topic, msg.partition)
        await consumer.commit({tp: msg.offset + 1})
        assert await consumer.committed(tp) == msg.offset + 1
    finally:
        await consumer.stop()
        await producer.stop()
        await admin.delete_topics([topic])
        await admin.close()


async def test_topics_are_not_auto_created(kafka_service: ManagedProcess | None, kafka_bootstrap: str) -> None:
    topic = _topic("nocreate")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, request_timeout_ms=2000)
    await producer.start()
    try:
        with pytest.raises((UnknownTopicOrPartitionError, KafkaTimeoutError)):
            await producer.send_and_wait(topic, b"x")
    finally:
        await producer.stop()
    admin = await _admin(kafka_bootstrap)
    try:
        assert topic not in await admin.list_topics()
    finally:
        await admin.close()


@pytest.mark.slow
async def test_broker_survives_sigkill(tmp_path: Path) -> None:
    """SIGKILL a broker, restart it on the same data dir, and read back what was written before.

    A private broker (own ports and data dir, the stack's jars): killing the shared one would pull the
    rug from under every other test using it."""
    broker = await asyncio.to_thread(PrivateKafka(tmp_path).start)
    try:
        await _written_before_sigkill_survives(broker)
    finally:
        await asyncio.to_thread(broker.stop)


async def _written_before_sigkill_survives(broker: PrivateKafka) -> None:
    kafka_bootstrap = broker.bootstrap
    kafka_service = broker.proc
    assert kafka_service is not None and kafka_service.pid is not None
    topic = _topic("sigkill")
    admin = await _admin(kafka_bootstrap)
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        await _wait_topics(admin, topic, present=True)
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"m{i}".encode())
    finally:
        await producer.stop()

    old_pid = kafka_service.pid
    await asyncio.to_thread(kafka_service.kill, signal.SIGKILL)
    assert not kafka_service.alive()
    await asyncio.to_thread(kafka_service.restart, 120.0)
    assert kafka_service.alive() and kafka_service.pid != old_pid
    rec = read_pid_file(StackPaths(broker.root).pid_file("kafka"))
    assert rec is not None and rec.pid == kafka_service.pid  # `python -m barcodeflow.stack stop` finds it

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        got = []
        while len(got) < 10:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), timeout=60)
            got += [m.value.decode() for msgs in batch.values() for m in msgs]
        assert got == [f"m{i}" for i in range(10)]
    finally:
        await consumer.stop()
        admin = await _admin(kafka_bootstrap)
        await admin.delete_topics([topic])
        await admin.close()
