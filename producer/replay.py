"""``barcodeflow replay``: republish past batch requests from ``barcode.requests``, marked as replays.

The requests topic is read without a consumer group (the workers' group offsets are untouched):
``offsets_for_times`` turns ``since`` (and ``until``) into an offset range per partition; the range
ends at the ``until`` offset or at the end offsets captured *before* anything is republished, so
the republished records, appended after that end, are never read again. Each selected record is
published again with the same key and ``batch_id`` plus a ``replay`` marker pointing at the
source record (and ``options.no_cache = true`` when asked).

Time range semantics: a record is selected when ``since <= timestamp < until`` (Kafka's
timestamp index; ``until`` defaults to "now", i.e. the end of each partition when replay starts).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from barcodeflow.kafka import consumer_config, topic_partitions
from barcodeflow.settings import Settings
from producer.client import BatchProducer
from producer.errors import KafkaUnavailable
from schemas.errors import BarcodeflowError
from schemas.headers import owner_from, owner_headers

# skip reasons (keys of ReplayReport.skipped)
NOT_JSON = "not_json"
NOT_AN_OBJECT = "not_an_object"
EMPTY = "empty_record"
OTHER_BATCH = "other_batch_id"

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)\s*(?:ago)?\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_MIN_EPOCH_MS = 100_000_000_000  # 1973-03-03 in ms; smaller integers are almost surely epoch *seconds*


class ReplayError(BarcodeflowError):
    """Replay cannot run as asked (e.g. the requests topic does not exist)."""


def parse_time(text: str, *, now: float | None = None) -> int:
    """A point in time as epoch milliseconds.

    Accepts ISO-8601 (``2026-11-30T20:00:00Z``, ``2026-11-30T21:00+01:00``, ``2026-11-30``; naive
    means UTC), a duration ago (``90s``, ``15m``, ``2h``, ``1d``, ``1w``, optionally followed by
    ``ago``), ``now``, or epoch milliseconds (``1764532800000``). Raises ``ValueError``.
    """
    raw = text.strip()
    now_s = time.time() if now is None else now
    if not raw:
        raise ValueError("empty time")
    if raw.lower() == "now":
        return int(now_s * 1000)
    m = _RELATIVE.match(raw)
    if m:
        return int((now_s - float(m.group(1)) * _UNIT_S[m.group(2).lower()]) * 1000)
    if raw.isdigit():
        ms = int(raw)
        if 0 < ms < _MIN_EPOCH_MS:
            raise ValueError(
                f"{raw} looks like epoch seconds; epoch times are in milliseconds (did you mean {raw}000?)"
            )
        return ms
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(
            f"cannot read {text!r} as a time: use ISO-8601 (2026-11-30T20:00:00Z), "
            "a duration ago (15m, 2h, 1d) or epoch milliseconds"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def format_ms(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class ReplayedRecord:
    partition: int
    offset: int
    timestamp_ms: int
    batch_id: str | None
    items: int | None
    was_replay: bool


@dataclass
class ReplayReport:
    topic: str
    since_ms: int
    until_ms: int | None
    batch_id: str | None = None
    no_cache: bool = False
    dry_run: bool = False
    # partition -> (first offset, end offset exclusive) that was read
    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)
    found: int = 0  # records read in the time range (before the batch-id filter)
    republished: int = 0  # (or, with dry_run, would have been)
    replays_of_replays: int = 0  # republished records that were themselves replays
    skipped: Counter[str] = field(default_factory=Counter)
    records: list[ReplayedRecord] = field(default_factory=list)

    def lines(self) -> list[str]:
        until = format_ms(self.until_ms) if self.until_ms is not None else "now"
        head = f"replay of {self.topic} from {format_ms(self.since_ms)} to {until}"
        if self.batch_id:
            head += f", batch id {self.batch_id}"
        if self.no_cache:
            head += ", no cache"
        if self.dry_run:
            head += " (dry run: nothing published)"
        verb = "would republish:" if self.dry_run else "republished:"
        again = f" ({self.replays_of_replays} of them replays themselves)" if self.replays_of_replays else ""
        out = [
            head,
            f"  {'found:':<18}{self.found} record(s) in the time range",
            f"  {verb:<18}{self.republished}{again}",
            f"  {'skipped:':<18}{sum(self.skipped.values())}",
        ]
        out += [f"    {reason + ':':<16}{n}" for reason, n in sorted(self.skipped.items())]
        for p, (start, end) in sorted(self.ranges.items()):
            span = f"offsets {start}..{end - 1}" if end > start else f"nothing (offset {start})"
            out.append(f"  partition {p}: {span}")
        return out


def _matches(batch_id: str, key: bytes | None, doc: Any) -> bool:
    if key is not None:
        with contextlib.suppress(UnicodeDecodeError):
            if key.decode() == batch_id:
                return True
    return isinstance(doc, dict) and doc.get("batch_id") == batch_id


def build_replay_value(
    doc: dict[str, Any], *, partition: int, offset: int, no_cache: bool, now: float | None = None
) -> dict[str, Any]:
    """The republished request: the original with a fresh ``replay`` marker (and ``no_cache``)."""
    out = dict(doc)
    out["replay"] = {
        "replayed_at": time.time() if now is None else now,
        "source_partition": partition,
        "source_offset": offset,
    }
    if no_cache:
        opts = out.get("options")
        if opts is None:
            out["options"] = {"no_cache": True}
        elif isinstance(opts, dict):
            out["options"] = {**opts, "no_cache": True}
        # any other value is invalid already; the pipeline rejects it again, unchanged
    return out


async def _partitions(consumer: AIOKafkaConsumer, settings: Settings, topic: str) -> set[int]:
    """The partitions of ``topic``; empty when the topic does not exist."""
    for _ in range(50):
        parts = await topic_partitions(settings, topic)
        if parts:
            return parts
        if topic not in await consumer.topics():
            return set()
        await asyncio.sleep(0.2)  # just created: leaders not elected yet
    return set()


async def _offsets(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], when_ms: int, ends: dict[TopicPartition, int]
) -> dict[TopicPartition, int]:
    found = await consumer.offsets_for_times({tp: when_ms for tp in tps})
    return {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in tps}


async def replay(
    settings: Settings,
    since_ms: int,
    until_ms: int | None = None,
    batch_id: str | None = None,
    no_cache: bool = False,
    dry_run: bool = False,
    *,
    timeout: float = 15.0,
    idle_timeout: float = 30.0,
) -> ReplayReport:
    """Republish the requests of ``settings.topics.requests`` with ``since_ms <= timestamp < until_ms``.

    Raises ``KafkaUnavailable`` when the broker cannot be reached, ``ReplayError`` when the topic
    does not exist or ``until_ms <= since_ms``.
    """
    topic = settings.topics.requests
    if until_ms is not None and until_ms <= since_ms:
        raise ReplayError(f"--until ({format_ms(until_ms)}) must be after --since ({format_ms(since_ms)})")
    report = ReplayReport(
        topic=topic,
        since_ms=since_ms,
        until_ms=until_ms,
        batch_id=batch_id,
        no_cache=no_cache,
        dry_run=dry_run,
    )
    consumer = AIOKafkaConsumer(**consumer_config(settings, "barcodeflow-replay"), auto_offset_reset="earliest")
    try:
        await asyncio.wait_for(consumer.start(), timeout)
    except (TimeoutError, KafkaError, OSError) as exc:
        await consumer.stop()
        raise KafkaUnavailable(f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {exc!r}") from exc
    producer: BatchProducer | None = None
    try:
        try:
            parts = await asyncio.wait_for(_partitions(consumer, settings, topic), timeout)
            if not parts:
                raise ReplayError(f"topic {topic} does not exist on {settings.kafka_bootstrap_servers}")
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            ends = await asyncio.wait_for(consumer.end_offsets(tps), timeout)
            starts = await asyncio.wait_for(_offsets(consumer, tps, since_ms, ends), timeout)
            stops = dict(ends)
            if until_ms is not None:
                stops = await asyncio.wait_for(_offsets(consumer, tps, until_ms, ends), timeout)
        except (TimeoutError, KafkaError, OSError) as exc:
            raise KafkaUnavailable(f"cannot read offsets of {topic}: {exc!r}") from exc
        for tp in tps:
            report.ranges[tp.partition] = (starts[tp], max(starts[tp], stops[tp]))
        todo = [tp for tp in tps if stops[tp] > starts[tp]]
        if not todo:
            return report
        if not dry_run:
            producer = BatchProducer(settings, client_id="barcodeflow-replay", send_timeout=timeout)
            await producer.start()
        consumer.assign(todo)
        for tp in todo:
            consumer.seek(tp, starts[tp])
        await _copy(consumer, producer, todo, stops, report, idle_timeout)
        return report
    finally:
        if producer is not None:
            await producer.stop()
        await consumer.stop()


async def _copy(
    consumer: AIOKafkaConsumer,
    producer: BatchProducer | None,
    todo: list[TopicPartition],
    stops: dict[TopicPartition, int],
    report: ReplayReport,
    idle_timeout: float,
) -> None:
    remaining = set(todo)
    last_progress = time.monotonic()
    while remaining:
        try:
            fetched = await consumer.getmany(*remaining, timeout_ms=500, max_records=500)
        except KafkaError as exc:
            raise KafkaUnavailable(f"reading {report.topic} failed: {exc!r}") from exc
        for tp, records in fetched.items():
            for rec in records:
                if rec.offset >= stops[tp]:
                    break
                last_progress = time.monotonic()
                await _one(producer, rec, report)
        for tp in list(remaining):
            if await consumer.position(tp) >= stops[tp]:
                remaining.discard(tp)
                consumer.pause(tp)
        if remaining and time.monotonic() - last_progress > idle_timeout:
            raise KafkaUnavailable(
                f"no progress reading {report.topic} for {idle_timeout:g} s "
                f"(partitions {sorted(tp.partition for tp in remaining)})"
            )


async def _one(producer: BatchProducer | None, rec: Any, report: ReplayReport) -> None:
    report.found += 1
    doc: Any = None
    decoded = False
    if rec.value is not None:
        try:
            doc = orjson.loads(rec.value)
            decoded = True
        except orjson.JSONDecodeError:
            pass
    if report.batch_id is not None and not _matches(report.batch_id, rec.key, doc if decoded else None):
        report.skipped[OTHER_BATCH] += 1
        return
    if rec.value is None:
        report.skipped[EMPTY] += 1
        return
    if not decoded:
        report.skipped[NOT_JSON] += 1
        return
    if not isinstance(doc, dict):
        report.skipped[NOT_AN_OBJECT] += 1
        return
    was_replay = doc.get("replay") is not None
    value = build_replay_value(doc, partition=rec.partition, offset=rec.offset, no_cache=report.no_cache)
    if producer is not None:
        # the owner (``x-owner``) stays the batch's: its result is stored for that key, not for a key that
        # claimed the same batch_id since
        headers = owner_headers(owner_from(getattr(rec, "headers", None)))
        await producer.send_raw(orjson.dumps(value), key=rec.key, topic=report.topic, headers=headers)
    report.republished += 1
    report.replays_of_replays += was_replay
    barcodes = doc.get("barcodes")
    bid = doc.get("batch_id")
    report.records.append(
        ReplayedRecord(
            partition=rec.partition,
            offset=rec.offset,
            timestamp_ms=rec.timestamp,
            batch_id=bid if isinstance(bid, str) else None,
            items=len(barcodes) if isinstance(barcodes, list) else None,
            was_replay=was_replay,
        )
    )
