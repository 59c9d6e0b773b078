"""The worker's intake: a plain aiokafka consumer of ``barcode.requests`` whose commits our code owns.

Each request is decoded and validated once, planned, answered from the cache where it can be, and its
misses handed to the render agent (``stream_app.app``). A batch rendered within ``WORKER_OPEN_GRACE_S``
of its planning goes to the sink as one ``open`` record carrying every item result; a slower one gets its
``open`` record then and its ``part`` record when rendered. A request's offset is committed only once
its records are acknowledged by the broker (``InFlight``): a crash re-reads every request whose output
was not complete, and the sink recognises what it already has (same ``run``). A batch whose worker dies
within the grace has no record yet; its next reader's ``open`` record starts its deadline.
This replaces Faust's per-event acknowledgement for the intake (faust-streaming #606: offsets
committed past messages in flight with ``concurrency>1``; #527/#596/#629: records acknowledged unseen
around rebalances, RELIABILITY.md D6).

Poison: a request that is not valid JSON or not a valid batch goes to the DLQ with its original bytes
and the reason, and a ``rejected`` record lets the sink answer a readable ``batch_id``. Any other
exception while handling one request is that request's failure alone (DLQ, ``internal_error``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from barcodeflow.cache import TwoLevelCache
from barcodeflow.kafka import Committer, Rebalance, send_until_acked
from barcodeflow.memory import HeapTrimmer
from barcodeflow.settings import Settings
from render.batch import Plan, answer_from_cache, complete_open, merge_parts, plan_batch
from schemas.errors import BatchValidationError, ErrorCode
from schemas.headers import owner_from
from schemas.validate import parse_batch, peek_batch_id

log = logging.getLogger(__name__)

COMMIT_INTERVAL_S = 0.2
"""The intake's commits follow one another at least this far apart (``Committer``, beside the loop): every
commit is a request to the group coordinator and a write to ``__consumer_offsets``; a crash re-reads at most
this much more, which the sink recognises as the same runs."""

RenderTasks = Callable[[list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]]


def now_ms() -> int:
    return int(time.time() * 1000)


class InFlight:
    """Per partition, the requests taken and not yet finished; what may be committed (pure).

    ``take`` returns a ticket for ``finish``: a request still running when its partition was revoked
    (and perhaps assigned back and read again) cannot finish the newer reading of the same offset."""

    def __init__(self) -> None:
        self.pending: dict[int, set[int]] = {}
        self.next_offset: dict[int, int] = {}
        self.generation: dict[int, int] = {}

    def __len__(self) -> int:
        return sum(len(s) for s in self.pending.values())

    def take(self, partition: int, offset: int) -> tuple[int, int, int]:
        self.pending.setdefault(partition, set()).add(offset)
        self.next_offset[partition] = max(self.next_offset.get(partition, 0), offset + 1)
        return partition, self.generation.get(partition, 0), offset

    def finish(self, ticket: tuple[int, int, int]) -> None:
        partition, generation, offset = ticket
        if self.generation.get(partition, 0) == generation and partition in self.pending:
            self.pending[partition].discard(offset)

    def drop(self, partition: int) -> None:
        self.pending.pop(partition, None)
        self.next_offset.pop(partition, None)
        self.generation[partition] = self.generation.get(partition, 0) + 1

    def commit_points(self) -> dict[int, int]:
        """Per partition: the lowest offset in flight, or the next one to read when none is."""
        return {p: min(self.pending.get(p) or {nxt}) for p, nxt in self.next_offset.items()}


def dlq_headers(code: str, reason: str, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    return [
        ("x-error-code", code.encode()),
        ("x-error-reason", reason[:4000].encode("utf-8", "replace")),
        ("x-source-topic", topic.encode()),
        ("x-source-partition", str(partition).encode()),
        ("x-source-offset", str(offset).encode()),
    ]


def with_owner(record: dict[str, Any], rec: Any) -> dict[str, Any]:
    """``record`` (an ``open`` or ``rejected`` record) with the request's owner (its ``x-owner`` header), which
    the sink sets on the batch's result."""
    owner = owner_from(rec.headers)
    if owner is not None:
        record["owner"] = owner
    return record


class Intake:
    def __init__(
        self,
        settings: Settings,
        *,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        cache: TwoLevelCache,
        render: RenderTasks,
        max_in_flight: int = 16,  # requests: enough to keep the pool busy, and bounds the memory they hold
        commit_interval_s: float = COMMIT_INTERVAL_S,
    ) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.consumer = consumer
        self.producer = producer
        self.cache = cache
        self.render = render
        self.max_in_flight = max_in_flight
        self.in_flight = InFlight()
        self.stats: Counter[str] = Counter()
        self._room = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.committer = Committer(
            consumer,
            self.topics.requests,
            self.in_flight.commit_points,
            what="intake",
            min_interval_s=commit_interval_s,
        )
        self.rebalance = Rebalance(self.revoked, self.assigned, instance_id=settings.group_instance_id)
        self.heap = HeapTrimmer()

    # -- the loop -------------------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            room = self.max_in_flight - len(self.in_flight)
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            batches = await self.consumer.getmany(timeout_ms=200, max_records=room)
            self.rebalance.check()
            self.committer.check()
            if batches:
                self.heap.busy()
            elif not self.in_flight:  # the burst is over: its freed memory goes back to the OS
                self.heap.idle()
            for tp, records in batches.items():
                for rec in records:
                    ticket = self.in_flight.take(tp.partition, rec.offset)
                    task = asyncio.create_task(self._handle(rec, ticket))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            self.committer.request()

    async def _handle(self, rec: Any, ticket: tuple[int, int, int]) -> None:
        try:
            await self.handle(rec)
        except Exception as exc:  # noqa: BLE001 - error policy: this request fails alone, into the DLQ
            log.exception("request p%s@%s failed", rec.partition, rec.offset)
            reason = f"{type(exc).__name__}: {exc}"
            await self.dead_letter(rec, ErrorCode.INTERNAL.value, reason)
            batch_id = peek_batch_id(rec.value if isinstance(rec.value, bytes) else b"")
            if batch_id is not None:  # a waiting client gets an answer now, not at the deadline
                problems = [{"loc": "", "message": f"internal error while processing the batch: {reason}"}]
                record = {"kind": "rejected", "batch_id": batch_id, "run": f"{rec.partition}:{rec.offset}",
                          "problems": problems, "code": ErrorCode.INTERNAL.value}  # fmt: skip
                await self.emit(batch_id, with_owner(record, rec))
        self.in_flight.finish(ticket)
        self._room.set()

    # -- one request ----------------------------------------------------------------------------
    async def handle(self, rec: Any) -> None:
        raw = rec.value if isinstance(rec.value, bytes) else b""
        run = f"{rec.partition}:{rec.offset}"
        try:
            req = parse_batch(raw, max_batch_size=self.settings.max_batch_size)
        except BatchValidationError as exc:
            await self.dead_letter(rec, exc.code.value, str(exc))
            batch_id = peek_batch_id(raw)
            if batch_id is not None:
                record = {"kind": "rejected", "batch_id": batch_id, "run": run, "problems": exc.problems}
                await self.emit(batch_id, with_owner(record, rec))
            return
        s = self.settings
        plan = plan_batch(
            req, run=run, received_at_ms=now_ms(), timeout_s=s.batch_timeout_s, max_tasks=s.render_tasks_per_batch
        )
        with_owner(plan.open, rec)
        await self.lookup(plan, include_metadata=req.options.include_metadata)
        if not plan.tasks:
            await self.emit(plan.batch_id, plan.open)
            self.stats["answered_from_cache"] += 1
            return
        self.stats["dispatched"] += 1
        rendering = asyncio.ensure_future(self.render(plan.tasks))
        try:
            if self.settings.open_grace_s > 0:
                await asyncio.wait({rendering}, timeout=self.settings.open_grace_s)
            if rendering.done():  # one record: the open record with every item result completes the run
                await self.emit(plan.batch_id, complete_open(plan.open, rendering.result()))
                self.stats["one_record"] += 1
                return
            # the sink learns of the batch now (its deadline runs from the open record), the items later
            sent = asyncio.ensure_future(self.emit(plan.batch_id, plan.open))
            try:
                parts = await rendering
            except BaseException:
                await sent  # never finish (and so commit) a request before its open record is acknowledged
                raise
            await asyncio.gather(sent, self.emit(plan.batch_id, merge_parts(parts)))
        except BaseException:
            rendering.cancel()
            raise

    async def lookup(self, plan: Plan, *, include_metadata: bool) -> None:
        if not plan.use_cache or not plan.tasks:
            return
        t0 = time.perf_counter()
        hits = await self.cache.get_many(plan.keys())
        answer_from_cache(plan, hits, include_metadata=include_metadata, lookup_ms=(time.perf_counter() - t0) * 1000)

    async def emit(self, batch_id: str, record: dict[str, Any]) -> None:
        await send_until_acked(
            self.producer, self.topics.items, orjson.dumps(record), key=batch_id.encode(), what=record["kind"]
        )

    async def dead_letter(self, rec: Any, code: str, reason: str) -> None:
        self.stats["dead_lettered"] += 1
        log.warning("DLQ %s p%s@%s: %s", code, rec.partition, rec.offset, reason[:200])
        headers = dlq_headers(code, reason, rec.topic, rec.partition, rec.offset)
        await send_until_acked(
            self.producer, self.topics.dlq, rec.value or b"", key=rec.key, headers=headers, what="dead letter"
        )

    async def drain(self) -> None:
        """Let the requests in flight finish (shutdown), then commit them."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=30)
        await self.committer.commit()

    # -- rebalance ------------------------------------------------------------------------------
    async def assigned(self, tps: set[TopicPartition]) -> None:
        log.info("intake: assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in tps) or "nothing")

    async def revoked(self, tps: set[TopicPartition]) -> None:
        mine = {tp.partition for tp in tps if tp.topic == self.topics.requests}
        try:
            await self.committer.commit(mine)
        except KafkaError as exc:
            log.warning("intake: commit at revocation failed (%r)", exc)
        for p in mine:  # requests still in flight finish and emit; the new owner re-reads them
            self.in_flight.drop(p)
            self.committer.forget(p)
        self._room.set()
