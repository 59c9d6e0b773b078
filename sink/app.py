"""The sink: a Faust app that aggregates item results per batch and emits one BatchResult.

State lives in a Faust table (changelog-backed, so a restarted sink resumes where it stopped);
the logic is ``sink.aggregate.BatchAggregator``. A timer finds runs past their deadline and sends an
``expire`` record through the items topic, so every table change happens in stream context and on
the batch's own partition.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import faust
import orjson

from barcodeflow.settings import Settings
from sink.aggregate import BatchAggregator
from stream_app.faust_config import faust_config

log = logging.getLogger(__name__)

EXPIRE_RESEND_MS = 5_000


def now_ms() -> int:
    return int(time.time() * 1000)


class SinkApp(faust.App):
    aggregator: BatchAggregator


def create_sink_app(settings: Settings, **overrides: Any) -> SinkApp:
    # the table (and its changelog) stores JSON; the topics carry our own raw JSON bytes
    conf = {**faust_config(settings, "sink"), "key_serializer": "json", "value_serializer": "json"}
    app = SinkApp(**{**conf, **overrides})
    t = settings.topics
    items = app.topic(t.items, partitions=settings.topic_partitions, key_serializer="raw", value_serializer="raw")
    results = app.topic(t.results, partitions=settings.topic_partitions, key_serializer="raw", value_serializer="raw")
    table = app.Table("batches", default=None, partitions=settings.topic_partitions)
    app.aggregator = BatchAggregator(table, timeout_s=settings.batch_timeout_s)
    expire_sent: dict[tuple[str, str], int] = {}
    stats = {"emitted": 0, "bad_records": 0}
    app.bf_stats = stats  # type: ignore[attr-defined]

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
            stats["emitted"] += 1
            # wait for the broker's ack before the run is marked done in the table: a crash in
            # between redelivers this record and emits the same result again, never none
            delivered = await results.send(key=result["batch_id"].encode(), value=orjson.dumps(result))
            await delivered
        app.aggregator.finalize()

    @app.agent(items)
    async def aggregate(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            try:
                await handle(event)
            except Exception:  # noqa: BLE001 - a bad record never stops the sink
                log.exception("sink: record p%s@%s failed", event.message.partition, event.message.offset)

    @app.timer(0.5)
    async def expire() -> None:
        now = now_ms()
        for batch_id, run in app.aggregator.due(now):
            if now - expire_sent.get((batch_id, run), 0) < EXPIRE_RESEND_MS:
                continue
            expire_sent[(batch_id, run)] = now
            record = {"kind": "expire", "batch_id": batch_id, "run": run}
            await items.send(key=batch_id.encode(), value=orjson.dumps(record))

    return app
