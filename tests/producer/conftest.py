"""Fixtures of the producer tests: isolated topics on the real broker and a fake pipeline.

Like the session fixtures of ``tests/conftest.py``, integration fixtures fail (not skip) when the
broker is missing. ``fake_pipeline`` stands in for worker + sink: it answers every request on its
own topics with a BatchResult, so ``submit`` can be tested without the render stack.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from barcodeflow.settings import Settings
from stream_app.topics import delete_prefixed

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _reachable(hostport: str) -> bool:
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def kafka_settings() -> Settings:
    settings = Settings.from_env()
    first = settings.kafka_bootstrap_servers.split(",")[0]
    if not _reachable(first):
        pytest.fail(f"Kafka is not reachable at {first}: start it with `python -m barcodeflow.stack start`")
    return settings


async def create_topics(settings: Settings, names: list[str], partitions: int = 2) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()
    # wait until the metadata shows every partition with a leader
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            await consumer._client.force_metadata_update()  # noqa: SLF001
            if all(len(consumer.partitions_for_topic(n) or ()) == partitions for n in names):
                return
            await asyncio.sleep(0.2)
        raise TimeoutError(f"topics {names} not ready")
    finally:
        await consumer.stop()


@pytest.fixture
async def topic_settings(kafka_settings: Settings) -> AsyncIterator[Settings]:
    """Settings whose requests/results topics are fresh, uniquely named, 2 partitions each."""
    settings = kafka_settings.with_(topic_prefix=f"tp{uuid.uuid4().hex[:10]}.")
    assert settings.topics.requests.startswith(settings.topic_prefix)
    names = [settings.topics.requests, settings.topics.results]
    await create_topics(settings, names)
    yield settings
    with contextlib.suppress(Exception):  # clean-up only: a broker gone at the end fails no test
        await delete_prefixed(settings.kafka_bootstrap_servers, [settings.topic_prefix])


# ---------------------------------------------------------------------------------------------


@dataclass
class FakePipeline:
    """Answers requests on ``settings.topics.requests`` with results on ``settings.topics.results``.

    Item data ``FAIL...`` fails with ``invalid_data``; a batch holding an item ``DROP`` is never
    answered; items already seen (same type, data and format) come back ``cached`` unless the batch
    sets ``options.no_cache``. ``delay`` holds each answer back (to observe in-flight limits).
    """

    settings: Settings
    delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    max_outstanding: int = 0
    _outstanding: int = 0
    _seen: set[tuple[Any, ...]] = field(default_factory=set)
    _ready: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _error: BaseException | None = None

    def result_for(self, req: dict[str, Any]) -> dict[str, Any]:
        results = []
        no_cache = bool((req.get("options") or {}).get("no_cache"))
        for i, item in enumerate(req["barcodes"]):
            data = str(item.get("data"))
            key = (item.get("barcode_type"), data, item.get("format", "svg"))
            out: dict[str, Any] = {"index": i, "id": item.get("id"), "generation_time_ms": 1.0}
            if data.startswith("FAIL"):
                out |= {
                    "success": False,
                    "error": {"code": "invalid_data", "message": f"cannot encode {data!r}"},
                }
            else:
                out |= {"success": True, "cached": key in self._seen and not no_cache}
                self._seen.add(key)
                if item.get("format") == "png":
                    out["png"] = base64.b64encode(PNG_MAGIC + data.encode()).decode()
                else:
                    out["svg"] = f"<svg><!-- {data} --></svg>"
            results.append(out)
        ok = sum(r["success"] for r in results)
        doc = {
            "batch_id": req["batch_id"],
            "success": ok == len(results),
            "results": results,
            "summary": {
                "total": len(results),
                "successful": ok,
                "failed": len(results) - ok,
                "cached": sum(bool(r.get("cached")) for r in results),
                "total_time_ms": 1.0,
                "average_time_ms": 1.0,
            },
        }
        if req.get("replay"):
            doc["replay"] = req["replay"]
        return doc

    async def _run(self) -> None:
        bs = self.settings.kafka_bootstrap_servers
        consumer = AIOKafkaConsumer(bootstrap_servers=bs, enable_auto_commit=False)
        producer = AIOKafkaProducer(bootstrap_servers=bs)
        await consumer.start()
        await producer.start()
        try:
            topic = self.settings.topics.requests
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
            if not tps:
                await consumer._client.force_metadata_update()  # noqa: SLF001
                tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            for tp in tps:
                await consumer.position(tp)
            self._ready.set()
            pending: list[asyncio.Task[None]] = []
            while not self._stop.is_set():
                fetched = await consumer.getmany(timeout_ms=100)
                for records in fetched.values():
                    for rec in records:
                        req = orjson.loads(rec.value)
                        self.requests.append(req)
                        if any(it.get("data") == "DROP" for it in req["barcodes"]):
                            continue
                        self._outstanding += 1
                        self.max_outstanding = max(self.max_outstanding, self._outstanding)
                        pending.append(asyncio.create_task(self._answer(producer, req)))
            for t in pending:
                t.cancel()
        finally:
            await producer.stop()
            await consumer.stop()

    async def _answer(self, producer: AIOKafkaProducer, req: dict[str, Any]) -> None:
        await asyncio.sleep(self.delay)
        self._outstanding -= 1
        value = orjson.dumps(self.result_for(req))
        await producer.send_and_wait(self.settings.topics.results, value, key=req["batch_id"].encode())

    def _thread(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # surfaced by start()/stop()
            self._error = exc
            self._ready.set()

    def start(self) -> None:
        self._th = threading.Thread(target=self._thread, name="fake-pipeline", daemon=True)
        self._th.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"fake pipeline did not start: {self._error!r}")

    def stop(self) -> None:
        self._stop.set()
        self._th.join(30)
        if self._error is not None:
            raise self._error


@pytest.fixture
def fake_pipeline(topic_settings: Settings) -> Iterator[FakePipeline]:
    fp = FakePipeline(topic_settings)
    fp.start()
    try:
        yield fp
    finally:
        fp.stop()
