"""Explicit topic creation: partitions and configs are decided here, not by broker defaults."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from barcodeflow.settings import Settings

log = logging.getLogger(__name__)

WEEK_MS = 7 * 24 * 3600 * 1000


def topic_specs(settings: Settings) -> list[NewTopic]:
    t = settings.topics
    n = settings.topic_partitions
    big = {"max.message.bytes": str(settings.max_message_bytes)}
    return [
        # requests are history for replay: kept a week
        NewTopic(t.requests, n, 1, topic_configs={**big, "retention.ms": str(WEEK_MS)}),
        # one record per batch_id is enough: compacted, the latest result per batch wins
        NewTopic(t.results, n, 1, topic_configs={**big, "cleanup.policy": "compact"}),
        NewTopic(t.dlq, n, 1, topic_configs={**big, "retention.ms": str(4 * WEEK_MS)}),
        # keyed by batch_id: every record of a batch on one partition, in order (the sink's commit contract)
        NewTopic(t.items, n, 1, topic_configs=big),
    ]


async def ensure_topics(settings: Settings, *, timeout: float = 30.0) -> list[str]:
    """Create missing topics; returns the names created. Existing topics are left as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=10_000)
    await asyncio.wait_for(admin.start(), timeout)
    try:
        existing = set(await admin.list_topics())
        wanted = [s for s in topic_specs(settings) if s.name not in existing]
        if not wanted:
            return []
        try:
            await admin.create_topics(wanted)
        except TopicAlreadyExistsError:
            pass
        except KafkaError as exc:  # created concurrently by another process: fine if they exist now
            if not {s.name for s in wanted} <= set(await admin.list_topics()):
                raise
            log.debug("create_topics raced: %r", exc)
        # wait until metadata shows them, so consumers started next find their partitions
        deadline = asyncio.get_running_loop().time() + timeout
        while not {s.name for s in wanted} <= set(await admin.list_topics()):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("topics not visible after creation")
            await asyncio.sleep(0.2)
        log.info("created topics: %s", ", ".join(s.name for s in wanted))
        return [s.name for s in wanted]
    finally:
        await admin.close()
