"""``tests.support.topics``: the session's topics are deleted by prefix, nobody else's."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from barcodeflow.settings import Settings
from tests.support.topics import delete_prefixed, private, recorded

pytestmark = pytest.mark.integration


def test_private_records_the_topic_prefix_and_the_faust_app_id(stack_settings: Settings) -> None:
    run = uuid.uuid4().hex[:8]
    private(stack_settings.with_(topic_prefix=f"rec{run}.", app_id=f"bf-rec-{run}"))
    assert {f"rec{run}.", f"bf-rec-{run}-"} <= recorded()
    assert stack_settings.topic_prefix in recorded()  # the session's own


async def test_delete_prefixed_deletes_only_matching_topics(stack_settings: Settings) -> None:
    bootstrap = stack_settings.kafka_bootstrap_servers
    mine, other = f"del{uuid.uuid4().hex[:8]}.", f"keep{uuid.uuid4().hex[:8]}."
    names = [f"{mine}a", f"{mine}b", f"{other}{mine}c"]  # the third contains the prefix, does not start with it
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, num_partitions=1, replication_factor=1) for n in names])
        assert await delete_prefixed(bootstrap, [mine]) == names[:2]
        left = set(await admin.list_topics())
        for _ in range(75):  # the broker's metadata follows the controller within moments
            if not {names[0], names[1]} & left:
                break
            await asyncio.sleep(0.2)
            left = set(await admin.list_topics())
        assert names[2] in left
        assert not {names[0], names[1]} & left
    finally:
        await admin.delete_topics([names[2]])
        await admin.close()
