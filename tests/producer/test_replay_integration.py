"""``replay`` against the real broker, on uniquely named 2-partition topics."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from barcodeflow.settings import Settings
from producer.replay import NOT_AN_OBJECT, NOT_JSON, OTHER_BATCH, replay
from schemas import parse_batch

pytestmark = pytest.mark.integration


@dataclass
class Sent:
    key: bytes | None
    value: bytes
    ts: int
    partition: int = -1
    offset: int = -1
    headers: tuple[tuple[str, bytes], ...] = ()


def _batch(batch_id: str | None, n: int = 1, **extra: Any) -> bytes:
    doc: dict[str, Any] = {
        "barcodes": [{"barcode_type": "qr", "data": f"{batch_id}-{i}"} for i in range(n)],
        **extra,
    }
    if batch_id is not None:
        doc["batch_id"] = batch_id
    return orjson.dumps(doc)


async def _publish(settings: Settings, records: list[Sent]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        for r in records:
            md = await producer.send_and_wait(
                settings.topics.requests, r.value, key=r.key, timestamp_ms=r.ts, headers=list(r.headers)
            )
            r.partition, r.offset = md.partition, md.offset
    finally:
        await producer.stop()


async def _ends(settings: Settings) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topics.requests, p) for p in (0, 1)]
        return {tp.partition: off for tp, off in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


async def _read_from(settings: Settings, starts: dict[int, int]) -> list[Any]:
    """Every record from ``starts`` to the current end of each partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topics.requests, p) for p in starts]
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, starts[tp.partition])
        out: list[Any] = []
        deadline = time.monotonic() + 20
        while any([await consumer.position(tp) < ends[tp] for tp in tps]) and time.monotonic() < deadline:
            for recs in (await consumer.getmany(timeout_ms=200)).values():
                out.extend(recs)
        return out
    finally:
        await consumer.stop()


@pytest.fixture
async def history(topic_settings: Settings) -> tuple[Settings, int, dict[str, Sent]]:
    """Requests an hour old, 10 s apart (timestamps set explicitly), spread over both partitions."""
    base = int(time.time() * 1000) - 3_600_000
    marker = {"replayed_at": 1.0, "source_partition": 0, "source_offset": 0}
    recs = {
        "a": Sent(b"a", _batch("a"), base),
        # submitted through a facade: its owner's header goes with the replay
        "b": Sent(b"b", _batch("b", 2, options={"verify": True}), base + 10_000, headers=(("x-owner", b"key-b"),)),
        "junk": Sent(b"junk", b"\x00not json", base + 12_000),
        "list": Sent(b"list", b"[1, 2]", base + 13_000),
        "b-nokey": Sent(None, _batch("b", 3), base + 14_000),  # matched by its JSON batch_id
        "c": Sent(b"c", _batch("c", replay=marker), base + 20_000),  # itself a replay
        "d": Sent(b"d", _batch("d"), base + 30_000),
    }
    await _publish(topic_settings, list(recs.values()))
    assert {r.partition for r in recs.values()} == {0, 1}  # the test covers both partitions
    return topic_settings, base, recs


async def test_replay_time_range_marker_and_no_cache(history: tuple[Settings, int, dict[str, Sent]]) -> None:
    settings, base, recs = history
    before = await _ends(settings)
    t0 = time.time()
    report = await replay(settings, base + 5_000, until_ms=base + 25_000, no_cache=True)
    assert report.found == 5  # b, junk, list, b-nokey, c
    assert report.republished == 3
    assert report.replays_of_replays == 1
    assert dict(report.skipped) == {NOT_JSON: 1, NOT_AN_OBJECT: 1}

    new = await _read_from(settings, before)
    assert len(new) == 3
    markers = [orjson.loads(r.value)["replay"] for r in new]
    by_source = {(m["source_partition"], m["source_offset"]): r for m, r in zip(markers, new, strict=True)}
    for name in ("b", "b-nokey", "c"):
        orig = recs[name]
        rec = by_source[(orig.partition, orig.offset)]
        assert rec.key == orig.key
        doc = orjson.loads(rec.value)
        src = orjson.loads(orig.value)
        assert doc["batch_id"] == src["batch_id"]
        assert doc["barcodes"] == src["barcodes"]
        assert doc["options"] == {**src.get("options", {}), "no_cache": True}
        assert t0 - 1 <= doc["replay"]["replayed_at"] <= time.time() + 1
        req = parse_batch(doc)  # still a valid wire request, with a ReplayMarker
        assert req.replay is not None and req.options.no_cache
        assert tuple(rec.headers) == orig.headers  # the owner's header, where there was one
    # "a" (before since) and "d" (at/after until) were not replayed
    assert {orjson.loads(r.value)["batch_id"] for r in new} == {"b", "c"}


async def test_replay_by_batch_id_up_to_now(history: tuple[Settings, int, dict[str, Sent]]) -> None:
    settings, base, recs = history
    before = await _ends(settings)
    report = await replay(settings, base + 5_000, batch_id="b")
    # without --until: everything from since to the end offsets captured at the start; the two
    # republished records (appended to the same partitions) are not read again
    assert report.found == 6
    assert report.republished == 2
    assert report.skipped[OTHER_BATCH] == 4
    new = await _read_from(settings, before)
    assert sorted((len(orjson.loads(r.value)["barcodes"]), r.key) for r in new) == [(2, b"b"), (3, None)]
    for r in new:
        doc = orjson.loads(r.value)
        assert doc["batch_id"] == "b"
        assert "no_cache" not in doc.get("options", {})  # only with --no-cache
        assert {"replayed_at", "source_partition", "source_offset"} == set(doc["replay"])
    # a second replay over the same range now also finds the first replays (and counts them)
    again = await replay(settings, base + 5_000, batch_id="b", dry_run=True)
    assert again.republished == 2 + 2
    assert again.replays_of_replays == 2


async def test_until_bounds_the_range(history: tuple[Settings, int, dict[str, Sent]]) -> None:
    settings, base, _ = history
    report = await replay(settings, base, until_ms=base + 10_000, dry_run=True)
    assert (report.found, report.republished) == (1, 1)  # only "a": until is exclusive
    assert [r.batch_id for r in report.records] == ["a"]
    report = await replay(settings, base, until_ms=base + 10_001, dry_run=True)
    assert sorted(r.batch_id for r in report.records if r.batch_id) == ["a", "b"]
    nothing = await replay(settings, base - 60_000, until_ms=base - 1, dry_run=True)
    assert (nothing.found, nothing.republished) == (0, 0)
    future = await replay(settings, int(time.time() * 1000) + 60_000, dry_run=True)
    assert future.found == 0


async def test_dry_run_publishes_nothing(history: tuple[Settings, int, dict[str, Sent]]) -> None:
    settings, base, _ = history
    before = await _ends(settings)
    report = await replay(settings, base, dry_run=True)
    assert report.found == 7 and report.republished == 5
    assert await _ends(settings) == before


async def test_missing_topic(kafka_settings: Settings) -> None:
    from producer.replay import ReplayError

    settings = kafka_settings.with_(topic_prefix="does-not-exist-7f3a.")
    with pytest.raises(ReplayError, match="does not exist"):
        await replay(settings, 0)


async def test_replay_command(history: tuple[Settings, int, dict[str, Sent]]) -> None:
    settings, base, _ = history
    env = {**settings.as_env(), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "barcodeflow.cli", "replay", "--since", str(base + 5_000),
           "--until", str(base + 25_000), "--dry-run"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(line["batch_id"] for line in lines) == ["b", "b", "c"]
    assert "would republish:  3" in proc.stderr
    assert "not_json:       1" in proc.stderr and "not_an_object:  1" in proc.stderr
    before = await _ends(settings)
    cmd = [c for c in cmd if c != "--dry-run"] + ["--batch-id", "c", "--no-cache"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    (rec,) = await _read_from(settings, before)
    doc = orjson.loads(rec.value)
    assert doc["batch_id"] == "c" and doc["options"]["no_cache"] is True
