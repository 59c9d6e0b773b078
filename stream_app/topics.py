"""Explicit topic creation: partitions and configs are decided here, not by broker defaults. Also the
deletion of private topics by name prefix (the benchmark's runs, the test sessions)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from barcodeflow.settings import Settings

log = logging.getLogger(__name__)

WEEK_MS = 7 * 24 * 3600 * 1000
LEADERSHIP_SETTLE_S = 0.25


def _all_led(described: list[dict[str, Any]], names: list[str]) -> bool:
    """``describe_topics``' answer shows every topic of ``names`` with a leader for each of its partitions."""
    led = {
        t["topic"]
        for t in described
        if t.get("error_code") == 0
        and t.get("partitions")
        and all(p.get("error_code") == 0 and p.get("leader", -1) >= 0 for p in t["partitions"])
    }
    return set(names) <= led


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
        # wait until metadata names a leader for every partition, so consumers started next find them
        names = [s.name for s in wanted]
        deadline = asyncio.get_running_loop().time() + timeout
        while not _all_led(await admin.describe_topics(names), names):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("topics have no leader for every partition after creation")
            await asyncio.sleep(0.1)
        # the broker takes up the leadership a moment after its metadata names it: a ListOffsets sent at
        # once is answered NOT_LEADER_OR_FOLLOWER, which aiokafka's fetcher logs as an ERROR before retrying
        await asyncio.sleep(LEADERSHIP_SETTLE_S)
        log.info("created topics: %s", ", ".join(names))
        return [s.name for s in wanted]
    finally:
        await admin.close()


async def delete_prefixed(bootstrap: str, prefixes: Iterable[str], timeout: float = 30.0) -> list[str]:
    """Delete every topic whose name starts with one of ``prefixes``; returns the names deleted."""
    wanted = tuple(p for p in prefixes if p)
    if not wanted:
        return []
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    await asyncio.wait_for(admin.start(), timeout)
    try:
        names = sorted(t for t in await admin.list_topics() if t.startswith(wanted))
        if names:
            await asyncio.wait_for(admin.delete_topics(names, timeout_ms=int(timeout * 1000)), timeout)
        return names
    finally:
        await admin.close()
