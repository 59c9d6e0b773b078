"""Part 2 (end to end through Kafka) and part 4 (worker memory), against a pipeline the harness runs.

The client is the project's own: ``BatchProducer`` publishes to ``barcode.requests`` and a
``ResultListener`` follows ``barcode.results``. Batches are validated and encoded before the clock
starts (``BatchProducer.prepare`` + ``encode_request``), then published with ``send_raw`` after
``listener.expect``, exactly what ``submit_and_wait`` does minus the per-call validation, so the
client spends the machine's 2 cores on as little as possible. ``inflight`` batches are kept
outstanding at all times; a batch's latency is publish → its BatchResult seen by the listener.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from barcodeflow.settings import Settings
from bench.workloads import DataSource, items, take
from producer import BatchProducer, ResultListener, encode_request

BATCH_SIZE = 100


@dataclass
class Prepared:
    batch_id: str
    key: bytes
    value: bytes
    size: int


@dataclass
class PhaseResult:
    name: str
    batches: int = 0
    codes: int = 0
    successful: int = 0
    failed: int = 0
    cached: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    result_bytes: int = 0
    request_bytes: int = 0
    errors: list[str] = field(default_factory=list)
    messages: dict[str, int] = field(default_factory=dict)

    @property
    def codes_per_s(self) -> float:
        return self.codes / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        total_msgs = sum(self.messages.values())
        return {
            "batches": self.batches,
            "codes": self.codes,
            "successful": self.successful,
            "failed": self.failed,
            "cached": self.cached,
            "cached_share": round(self.cached / self.codes, 4) if self.codes else 0.0,
            "seconds": round(self.seconds, 3),
            "codes_per_s": round(self.codes_per_s, 1),
            "batches_per_s": round(self.batches / self.seconds, 2) if self.seconds else 0.0,
            "latency_ms": {
                "p50": round(percentile(lat, 50), 1),
                "p95": round(percentile(lat, 95), 1),
                "p99": round(percentile(lat, 99), 1),
                "max": round(lat[-1], 1) if lat else 0.0,
            },
            "avg_request_bytes": round(self.request_bytes / self.batches) if self.batches else 0,
            "avg_result_bytes": round(self.result_bytes / self.batches) if self.batches else 0,
            "messages": {
                "total": total_msgs,
                "per_batch": round(total_msgs / self.batches, 1) if self.batches else 0,
                "by_topic": self.messages,
            },  # fmt: skip
            "errors": self.errors[:10],
        }


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


class Driver:
    """One producer and one result listener for the whole run."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.listener = ResultListener(settings, client_id="bench-results")
        self.producer = BatchProducer(settings, client_id="bench-producer", send_timeout=30.0)

    async def start(self) -> None:
        await self.listener.start()
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()
        await self.listener.stop()

    def prepare(self, barcodes: list[dict[str, Any]]) -> Prepared:
        req = self.producer.prepare({"barcodes": barcodes})
        assert req.batch_id is not None
        return Prepared(req.batch_id, req.batch_id.encode(), encode_request(req), len(barcodes))

    async def run(
        self, name: str, batches: list[Prepared], inflight: int, timeout: float = 60.0, max_errors: int = 3
    ) -> PhaseResult:
        """Send ``batches`` keeping ``inflight`` outstanding. After ``max_errors`` failed batches (a
        timeout, a publish error) no new batch is started: a broken pipeline fails the phase quickly."""
        res = PhaseResult(name)
        queue = list(reversed(batches))

        async def one(b: Prepared) -> None:
            fut = self.listener.expect(b.batch_id)
            t0 = time.perf_counter()
            try:
                await self.producer.send_raw(b.value, key=b.key)
                raw = await asyncio.wait_for(asyncio.shield(fut), timeout)
            except Exception as exc:  # noqa: BLE001 - recorded; the run goes on
                res.errors.append(f"{b.batch_id}: {type(exc).__name__}: {exc}"[:300])
                return
            finally:
                self.listener.forget(b.batch_id)
            res.latencies_ms.append((time.perf_counter() - t0) * 1000)
            s = orjson.loads(raw).get("summary", {})
            res.batches += 1
            res.codes += int(s.get("total", 0))
            res.successful += int(s.get("successful", 0))
            res.failed += int(s.get("failed", 0))
            res.cached += int(s.get("cached", 0))
            res.request_bytes += len(b.value)
            res.result_bytes += len(raw)

        async def lane() -> None:
            while queue and len(res.errors) < max_errors:
                await one(queue.pop())

        t0 = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(max(1, min(inflight, len(batches))))))
        res.seconds = time.perf_counter() - t0
        return res


def unique_batches(driver: Driver, source: DataSource, workload: str, n: int) -> list[Prepared]:
    it = items(workload, source)
    return [driver.prepare(take(it, BATCH_SIZE)) for _ in range(n)]


def repeated_batches(driver: Driver, hot: list[dict[str, Any]], n: int, rng: random.Random) -> list[Prepared]:
    return [driver.prepare(rng.sample(hot, BATCH_SIZE)) for _ in range(n)]
