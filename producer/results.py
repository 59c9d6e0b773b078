"""``ResultListener``: follow ``barcode.results`` and hand each BatchResult to whoever waits for it.

It reads every partition without a consumer group, so every process (every facade replica, every
``submit`` run) sees every result; it starts at the end, so register with ``expect`` before sending.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from barcodeflow.aio import cancel_and_wait
from barcodeflow.settings import Settings
from producer.errors import KafkaUnavailable
from producer.kafka_config import consumer_config

log = logging.getLogger(__name__)

ResultCallback = Callable[[str, bytes], Awaitable[None] | None]


class ResultListener:
    def __init__(self, settings: Settings, *, client_id: str = "barcodeflow-results", start_timeout: float = 15.0):
        self.settings = settings
        self.start_timeout = start_timeout
        self._consumer = AIOKafkaConsumer(**consumer_config(settings, client_id))
        self._waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = defaultdict(list)
        self._callbacks: list[ResultCallback] = []
        self._task: asyncio.Task[None] | None = None
        self.received = 0

    async def start(self) -> None:
        topic = self.settings.topics.results
        try:
            await asyncio.wait_for(self._start(topic), self.start_timeout)
        except (TimeoutError, KafkaError, OSError) as exc:
            await self._consumer.stop()
            raise KafkaUnavailable(f"cannot follow {topic}: {exc!r}") from exc
        self._task = asyncio.create_task(self._run(), name="result-listener")

    async def _start(self, topic: str) -> None:
        await self._consumer.start()
        parts = self._consumer.partitions_for_topic(topic)
        while not parts:
            await self._consumer._client.force_metadata_update()  # noqa: SLF001 - no public metadata refresh
            parts = self._consumer.partitions_for_topic(topic)
            if not parts:
                await asyncio.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the positions now: results published after start() are seen
            await self._consumer.position(tp)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await self._consumer.stop()
        for futs in self._waiters.values():
            for fut in futs:
                fut.cancel()
        self._waiters.clear()

    def expect(self, batch_id: str) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[batch_id].append(fut)
        return fut

    def forget(self, batch_id: str) -> None:
        for fut in self._waiters.pop(batch_id, []):
            if not fut.done():
                fut.cancel()

    def add_callback(self, fn: ResultCallback) -> None:
        self._callbacks.append(fn)

    async def _run(self) -> None:
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=500)
            except KafkaError as exc:  # broker restarts: aiokafka reconnects by itself
                log.warning("result listener: %r; retrying", exc)
                await asyncio.sleep(0.5)
                continue
            for records in batches.values():
                for rec in records:
                    await self._deliver(rec.key, rec.value)

    async def _deliver(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:
            return
        self.received += 1
        try:
            doc = orjson.loads(value)
            batch_id = str(doc["batch_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("result listener: skipping unreadable record with key %r", key)
            return
        for fut in self._waiters.pop(batch_id, []):
            if not fut.done():
                fut.set_result(doc)
        for cb in self._callbacks:
            try:
                res = cb(batch_id, value)
                if asyncio.iscoroutine(res):
                    await res
            except Exception:  # a callback's bug must not stop result delivery to waiters
                log.exception("result callback failed for batch %s", batch_id)
