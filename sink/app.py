"""The sink: a Faust app that aggregates item results per batch and emits one BatchResult.

State lives in a Faust table (changelog-backed, so a restarted sink resumes where it stopped);
the logic is ``sink.aggregate.BatchAggregator``. A timer finds runs past their deadline and sends an
``expire`` record through the items topic, so every table change happens in stream context and on
the batch's own partition.

Offsets of the items topic are committed only once the broker acknowledged every changelog write
made before (``SinkApp``). Faust flushes its producer before committing, but that flush can return
early: ``ProducerBuffer.flush_atmost`` gives up after 0.1 s without a send, and a message already
taken off its queue but not yet handed to aiokafka is not counted at all. A SIGKILL then left an
offset committed whose table change never reached the changelog (D6 in RELIABILITY.md: a recovered
run missing a part, its items reported as ``timeout``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
import orjson
from faust.types import FutureMessage

from barcodeflow.settings import Settings
from sink.aggregate import BatchAggregator
from sink.offsets import OffsetMarks
from stream_app.faust_config import faust_config
from stream_app.stall import seek_back, watch_for_stalls

log = logging.getLogger(__name__)

EXPIRE_RESEND_MS = 5_000
REREAD_REPEAT_S = 2.0  # records fetched before a seek back keep arriving for a moment: one seek per gap
CHANGELOG_ACK_TIMEOUT_S = 60.0  # no broker ack for a table write this long: the commit fails, nothing moves on


def now_ms() -> int:
    return int(time.time() * 1000)


class SinkApp(faust.App):
    """The sink's Faust app: its producer's ``flush`` (what Faust awaits right before committing offsets)
    also waits until the broker acknowledged every changelog write of the table made so far."""

    aggregator: BatchAggregator
    offsets: OffsetMarks
    table: TrackedTable

    def _new_producer(self) -> Any:
        producer = super()._new_producer()
        faust_flush = producer.flush

        async def flush() -> None:
            await faust_flush()
            if getattr(self, "table", None) is not None:
                await self.table.settle(CHANGELOG_ACK_TIMEOUT_S)

        producer.flush = flush  # type: ignore[method-assign]
        return producer


class TrackedTable(faust.Table):
    """A Faust table that knows which of its changelog writes the broker has not acknowledged yet."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unacked: set[FutureMessage] = set()

    def send_changelog(self, *args: Any, **kwargs: Any) -> FutureMessage:
        fut = super().send_changelog(*args, **kwargs)
        self.unacked.add(fut)
        fut.add_done_callback(self.unacked.discard)
        return fut

    async def settle(self, timeout: float) -> None:
        """Wait for every write made so far; raises (so no offset is committed) if one failed or hangs."""
        pending = list(self.unacked)
        if pending:
            await asyncio.wait_for(asyncio.gather(*pending), timeout)


def create_sink_app(settings: Settings, **overrides: Any) -> SinkApp:
    # the table (and its changelog) stores JSON; the topics carry our own raw JSON bytes
    conf = {**faust_config(settings, "sink"), "key_serializer": "json", "value_serializer": "json"}
    app = SinkApp(**{**conf, **overrides})
    t = settings.topics
    items = app.topic(t.items, partitions=settings.topic_partitions, key_serializer="raw", value_serializer="raw")
    results = app.topic(t.results, partitions=settings.topic_partitions, key_serializer="raw", value_serializer="raw")
    table = TrackedTable(
        app, name="batches", default=None, beacon=app.tables.beacon, partitions=settings.topic_partitions
    )
    app.tables.add(table)
    app.table = table
    app.aggregator = BatchAggregator(table, timeout_s=settings.batch_timeout_s)
    stall_watch = watch_for_stalls(app, [t.items], after_s=settings.stall_reread_s)
    app.stall_watch = stall_watch  # type: ignore[attr-defined]
    expire_sent: dict[tuple[str, str], int] = {}
    app.offsets = OffsetMarks(table)
    stats = {"emitted": 0, "bad_records": 0, "duplicates": 0, "rereads": 0}
    app.bf_stats = stats  # type: ignore[attr-defined]

    async def write_result(result: dict[str, Any]) -> None:
        """Send and wait for the broker's ack; retried until it comes (never move past an unwritten result)."""
        value = orjson.dumps(result)
        backoff = 0.5
        while True:
            try:
                await (await results.send(key=result["batch_id"].encode(), value=value))
                return
            except Exception as exc:  # noqa: BLE001 - KafkaError, timeouts: the broker, not the record
                log.warning("sink: result of %s not written (%r); retrying in %.1f s", result["batch_id"], exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def handle(event: faust.EventT) -> None:
        try:
            record = orjson.loads(event.value)
            done = app.aggregator.add(record, now_ms())
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            stats["bad_records"] += 1
            log.error("sink: skipping unreadable record p%s@%s: %r",
                      event.message.partition, event.message.offset, exc)  # fmt: skip
            return
        if record.get("kind") == "expire":
            expire_sent.pop((str(record["batch_id"]), str(record["run"])), None)
        for result in done:
            # the broker's ack comes before the run is marked done in the table: a crash in between
            # redelivers this record and emits the same result again, never none
            await write_result(result)
            stats["emitted"] += 1
        app.aggregator.finalize()

    last_reread: dict[Any, tuple[int, float]] = {}

    async def read_again(event: faust.EventT, expected: int) -> bool:
        """Records ``expected``..offset-1 were never processed here: seek back to them (once per gap and
        ``REREAD_REPEAT_S``; records fetched before the seek keep arriving meanwhile and are passed over).
        Returns True when this record is the next readable one after all: the records before it were
        deleted (retention) before the sink read them, which is logged as an error."""
        tp, offset = event.message.tp, event.message.offset
        consumer: Any = app.consumer
        earliest = (await consumer.earliest_offsets(tp)).get(tp)
        start = max(expected, earliest or 0)
        if start > expected:
            log.error("sink: %s[%s] offsets %s..%s were deleted before the sink read them",
                      tp.topic, tp.partition, expected, start - 1)  # fmt: skip
        if start >= offset:
            return True
        target, at = last_reread.get(tp, (-1, 0.0))
        if target == start and time.monotonic() - at < REREAD_REPEAT_S:
            return False
        last_reread[tp] = (start, time.monotonic())
        stats["rereads"] += 1
        log.warning("sink: %s[%s] delivered offset %s but %s..%s were never processed here; reading again from %s",
                    tp.topic, tp.partition, offset, start, offset - 1, start)  # fmt: skip
        await seek_back(consumer, {tp: start})
        return False

    @app.agent(items)
    async def aggregate(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            msg = event.message
            admission = app.offsets.admit(msg.partition, msg.offset)
            if admission.verdict == "duplicate":
                stats["duplicates"] += 1
                continue
            if admission.verdict == "gap":
                assert admission.expected is not None  # noqa: S101
                if not await read_again(event, admission.expected):
                    continue
            try:
                await handle(event)
            except Exception:  # noqa: BLE001 - a bad record never stops the sink
                log.exception("sink: record p%s@%s failed", msg.partition, msg.offset)
            app.offsets.processed(msg.partition, msg.offset)

    async def send_expiries(now: int) -> None:
        for batch_id, run in app.aggregator.due(now):
            if now - expire_sent.get((batch_id, run), 0) < EXPIRE_RESEND_MS:
                continue
            record = {"kind": "expire", "batch_id": batch_id, "run": run}
            await items.send(key=batch_id.encode(), value=orjson.dumps(record))
            expire_sent[(batch_id, run)] = now

    @app.timer(0.5)
    async def expire() -> None:
        try:
            await send_expiries(now_ms())
        except Exception:  # noqa: BLE001 - an exception escaping a Faust timer crashes the app; next round retries
            log.exception("sink: sending expire records failed; retrying")

    return app
