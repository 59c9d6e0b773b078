"""Stand-ins for the Kafka side of the facade (unit tests only): a publisher and a result listener.

``FakeListener`` is ``producer.results.ResultRouter`` (the listener's matching by record key, waiters
get the record's bytes, every record goes to every callback) fed directly instead of from Kafka.
``FakePublisher`` mirrors ``producer.client.BatchProducer.send`` and, in mode ``"answer"``, plays the
pipeline: it delivers a BatchResult record (``encode``d, by default with ``orjson.dumps``) to the
listener after ``delay`` seconds; ``answers`` keeps the bytes of each, by batch_id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from producer.errors import KafkaUnavailable
from producer.results import ResultRouter
from schemas.models import BatchRequest


def result_for(req: dict[str, Any]) -> dict[str, Any]:
    results = []
    for i, item in enumerate(req["barcodes"]):
        data = str(item.get("data"))
        out: dict[str, Any] = {"index": i, "id": item.get("id"), "generation_time_ms": 1.0, "cached": False}
        if data.startswith("FAIL"):
            out |= {"success": False, "error": {"code": "invalid_data", "message": f"cannot encode {data!r}"}}
        else:
            out |= {"success": True, "svg": f"<svg><!-- {data} --></svg>"}
        results.append(out)
    ok = sum(r["success"] for r in results)
    return {
        "batch_id": req["batch_id"],
        "success": ok == len(results),
        "results": results,
        "summary": {
            "total": len(results),
            "successful": ok,
            "failed": len(results) - ok,
            "cached": 0,
            "total_time_ms": float(len(results)),
            "average_time_ms": 1.0,
        },
    }


class FakeListener(ResultRouter):
    def __init__(self) -> None:
        super().__init__()
        self.started = False
        self.fail_start = False

    async def start(self) -> None:
        if self.fail_start:
            raise KafkaUnavailable("fake: no broker")
        self.started = True

    async def stop(self) -> None:
        self.started = False
        self.cancel_all()

    async def deliver(self, doc: dict[str, Any], headers: Sequence[tuple[str, bytes]] = ()) -> bytes:
        """A result record keyed by ``doc["batch_id"]``, as the sink writes it; returns its bytes."""
        raw = orjson.dumps(doc)
        await self.route(str(doc["batch_id"]).encode(), raw, headers)
        return raw

    async def deliver_raw(self, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        await self.route(key, value, headers)


class FakePublisher:
    """mode: "answer" (deliver a result after ``delay``), "drop" (never answered), "fail"
    (KafkaUnavailable), "hang" (send never returns)."""

    def __init__(
        self,
        listener: FakeListener,
        *,
        mode: str = "answer",
        delay: float = 0.0,
        encode: Callable[[dict[str, Any]], bytes] = orjson.dumps,
    ) -> None:
        self.listener = listener
        self.mode = mode
        self.delay = delay
        self.encode = encode
        self.sent: list[dict[str, Any]] = []
        self.headers: list[list[tuple[str, bytes]] | None] = []  # of each send, in order
        self.answers: dict[str, bytes] = {}
        self.started = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False
        for t in list(self._tasks):
            t.cancel()

    async def send(
        self, batch: BatchRequest | dict[str, Any], *, headers: list[tuple[str, bytes]] | None = None
    ) -> str:
        doc = batch.model_dump(mode="json") if isinstance(batch, BatchRequest) else dict(batch)
        if self.mode == "fail":
            raise KafkaUnavailable("fake: publishing failed")
        if self.mode == "hang":
            await asyncio.Event().wait()
        self.sent.append(doc)
        self.headers.append(headers)
        if self.mode == "answer":  # the sink's result carries the request's x-owner header back
            task = asyncio.create_task(self._answer(doc, headers or ()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return str(doc["batch_id"])

    async def _answer(self, doc: dict[str, Any], headers: Sequence[tuple[str, bytes]]) -> None:
        await asyncio.sleep(self.delay)
        raw = self.encode(result_for(doc))
        self.answers[str(doc["batch_id"])] = raw
        await self.listener.deliver_raw(str(doc["batch_id"]).encode(), raw, headers)
