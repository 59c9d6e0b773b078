"""Stand-ins for the Kafka side of the facade (unit tests only): a publisher and a result listener.

``FakeListener`` mirrors ``producer.results.ResultListener`` (expect/forget/add_callback; every result
goes to the waiters of its batch and to every callback). ``FakePublisher`` mirrors
``producer.client.BatchProducer.send`` and, in mode ``"answer"``, plays the pipeline: it delivers a
BatchResult to the listener after ``delay`` seconds.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from producer.errors import KafkaUnavailable
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


class FakeListener:
    def __init__(self) -> None:
        self._waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = defaultdict(list)
        self._callbacks: list[Callable[[str, bytes], Awaitable[None] | None]] = []
        self.started = False
        self.fail_start = False

    async def start(self) -> None:
        if self.fail_start:
            raise KafkaUnavailable("fake: no broker")
        self.started = True

    async def stop(self) -> None:
        self.started = False
        for futs in self._waiters.values():
            for f in futs:
                f.cancel()
        self._waiters.clear()

    def expect(self, batch_id: str) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[batch_id].append(fut)
        return fut

    def forget(self, batch_id: str) -> None:
        for f in self._waiters.pop(batch_id, []):
            if not f.done():
                f.cancel()

    def add_callback(self, fn: Callable[[str, bytes], Awaitable[None] | None]) -> None:
        self._callbacks.append(fn)

    @property
    def waiting(self) -> int:
        return sum(len(v) for v in self._waiters.values())

    async def deliver(self, doc: dict[str, Any]) -> None:
        raw = orjson.dumps(doc)
        batch_id = str(doc["batch_id"])
        for f in self._waiters.pop(batch_id, []):
            if not f.done():
                f.set_result(doc)
        for cb in self._callbacks:
            res = cb(batch_id, raw)
            if asyncio.iscoroutine(res):
                await res


class FakePublisher:
    """mode: "answer" (deliver a result after ``delay``), "drop" (never answered), "fail"
    (KafkaUnavailable), "hang" (send never returns)."""

    def __init__(self, listener: FakeListener, *, mode: str = "answer", delay: float = 0.0) -> None:
        self.listener = listener
        self.mode = mode
        self.delay = delay
        self.sent: list[dict[str, Any]] = []
        self.started = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False
        for t in list(self._tasks):
            t.cancel()

    async def send(self, batch: BatchRequest | dict[str, Any]) -> str:
        doc = batch.model_dump(mode="json") if isinstance(batch, BatchRequest) else dict(batch)
        if self.mode == "fail":
            raise KafkaUnavailable("fake: publishing failed")
        if self.mode == "hang":
            await asyncio.Event().wait()
        self.sent.append(doc)
        if self.mode == "answer":
            task = asyncio.create_task(self._answer(doc))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return str(doc["batch_id"])

    async def _answer(self, doc: dict[str, Any]) -> None:
        await asyncio.sleep(self.delay)
        await self.listener.deliver(result_for(doc))
