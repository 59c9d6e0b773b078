"""Topic creation: every partition led before the callers' consumers start."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer

from barcodeflow.settings import Settings
from stream_app.topics import _all_led, ensure_topics


def described(topic: str, leaders: list[int], *, error: int = 0) -> dict[str, Any]:
    partitions = [{"error_code": 0, "partition": i, "leader": lead} for i, lead in enumerate(leaders)]
    return {"error_code": error, "topic": topic, "partitions": partitions}


def test_all_led_wants_a_leader_for_every_partition_of_every_topic() -> None:
    assert _all_led([described("a", [1, 1]), described("b", [1])], ["a", "b"])
    assert not _all_led([described("a", [1, -1]), described("b", [1])], ["a", "b"])  # a partition without one
    assert not _all_led([described("a", [1, 1])], ["a", "b"])  # a topic not in the answer yet
    assert not _all_led([described("a", [1]), described("b", [], error=3)], ["a", "b"])  # unknown topic
    assert not _all_led([described("a", [])], ["a"])  # no partitions yet


@pytest.mark.integration
async def test_a_consumer_started_right_after_creation_logs_no_error(
    isolated_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    s = isolated_settings
    created = await ensure_topics(s)
    assert set(created) == {s.topics.requests, s.topics.results, s.topics.dlq, s.topics.items}
    caplog.set_level(logging.INFO)
    consumer = AIOKafkaConsumer(s.topics.results, bootstrap_servers=s.kafka_bootstrap_servers)
    await consumer.start()
    try:
        assert await consumer.getmany(timeout_ms=500) == {}
    finally:
        await consumer.stop()
    # without the wait for leaders its first ListOffsets got NOT_LEADER_OR_FOLLOWER, logged as an ERROR
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert await ensure_topics(s) == []  # existing topics are left as they are
