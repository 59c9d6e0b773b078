"""Faust agents in ``test_context()`` with the memory store: the logic around decode → render → emit.

Topic sends are captured by a fake (unit tests only); rendering runs inline instead of in the pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from unittest.mock import patch

import orjson
import pytest

from barcodeflow.settings import Settings
from sink.app import create_sink_app
from sink.offsets import is_mark_key, mark_key
from stream_app.app import create_worker_app
from stream_app.local import InlinePool


class Sent:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes, Any]] = []

    def by_topic(self, name: str) -> list[dict[str, Any]]:
        return [orjson.loads(v) for t, _, v, _ in self.records if t == name]

    def raw(self, name: str) -> list[tuple[bytes | None, bytes, Any]]:
        return [(k, v, h) for t, k, v, h in self.records if t == name]


def fake_seeking(app: Any, earliest: int = 0) -> list[tuple[int, int]]:
    """Replace what the sink's re-read uses of Faust's consumer (unit tests only); returns the seeks."""
    seeks: list[tuple[int, int]] = []

    async def seek_wait(partitions: dict[Any, int]) -> None:
        seeks.extend((tp.partition, offset) for tp, offset in partitions.items())

    async def earliest_offsets(*tps: Any) -> dict[Any, int]:
        return {tp: earliest for tp in tps}

    c = app.consumer
    c.seek_wait = seek_wait
    c.earliest_offsets = earliest_offsets
    c.stop_flow = c.resume_flow = lambda: None
    return seeks


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    return Settings(data_dir=str(tmp_path), topic_partitions=1)


@pytest.fixture
def sent() -> Iterator[Sent]:
    box = Sent()

    async def fake_send(self: Any, *, key: Any = None, value: Any = None, headers: Any = None, **_: Any) -> Any:
        box.records.append((self.get_topic_name(), key, value, headers))
        acked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        acked.set_result(None)  # like Faust's FutureMessage: awaiting it waits for the broker's ack
        return acked

    with patch("faust.topics.Topic.send", fake_send):
        yield box


async def test_dispatch_plans_a_valid_batch(settings: Settings, sent: Sent) -> None:
    app = create_worker_app(settings)
    app.finalize()
    batch = {"batch_id": "b1", "barcodes": [{"barcode_type": "qr", "data": "a"}, {"barcode_type": "x", "data": "b"},
                                             {"barcode_type": "qr", "data": "a"}]}  # fmt: skip
    async with app.agents["stream_app.app.dispatch"].test_context() as agent:
        await agent.put(orjson.dumps(batch), key=b"b1")
    items = sent.by_topic(settings.topics.items)
    assert items[0]["kind"] == "open" and items[0]["total"] == 3 and items[0]["batch_id"] == "b1"
    assert items[1]["kind"] == "part" and items[1]["results"][0]["error"]["code"] == "unsupported_type"
    [task] = sent.by_topic(settings.topics.tasks)
    assert [it["index"] for it in task["items"]] == [0, 2]  # identical items grouped into one task
    assert sent.by_topic(settings.topics.dlq) == []


async def test_dispatch_dead_letters_poison_and_keeps_going(settings: Settings, sent: Sent) -> None:
    app = create_worker_app(settings)
    app.finalize()
    async with app.agents["stream_app.app.dispatch"].test_context() as agent:
        await agent.put(b"\xff\xfe not json", key=b"k1")
        await agent.put(orjson.dumps({"batch_id": "b2", "barcodes": []}), key=b"b2")
        await agent.put(orjson.dumps({"batch_id": "b3", "barcodes": [{"barcode_type": "qr", "data": "ok"}]}))
    dlq = sent.raw(settings.topics.dlq)
    assert [v for _, v, _ in dlq] == [b"\xff\xfe not json", orjson.dumps({"batch_id": "b2", "barcodes": []})]
    headers = dict(dlq[0][2])
    assert headers["x-error-code"] == b"invalid_batch" and b"not valid JSON" in headers["x-error-reason"]
    [rejected] = sent.by_topic(settings.topics.results)  # b2 had a readable batch_id: its client is answered
    assert rejected["batch_id"] == "b2" and rejected["error"]["code"] == "invalid_batch"
    assert sent.by_topic(settings.topics.items)[0]["batch_id"] == "b3"  # the agent survived


async def test_render_agent_emits_one_part_per_task(settings: Settings, sent: Sent) -> None:
    app = create_worker_app(settings)
    app.pool = InlinePool()  # type: ignore[assignment]
    app.finalize()
    task = {"batch_id": "b1", "run": "0:0", "chunk": "0", "validate_only": False, "no_cache": False,
            "include_metadata": True, "items": []}  # fmt: skip
    from schemas.validate import parse_batch
    from stream_app.pipeline import plan_batch

    plan = plan_batch(parse_batch({"batch_id": "b1", "barcodes": [{"barcode_type": "ean8", "data": "9638507"}]}),
                      run="0:0", received_at_ms=0, timeout_s=10)  # fmt: skip
    task = plan.tasks[0]
    async with app.agents["stream_app.app.render"].test_context() as agent:
        await agent.put(orjson.dumps(task), key=b"b1:0")
        await agent.put(b"garbage", key=b"b1:1")
    [part] = sent.by_topic(settings.topics.items)
    assert part["kind"] == "part" and part["results"][0]["metadata"]["data"] == "96385074"
    assert sent.raw(settings.topics.dlq)[0][1] == b"garbage"


async def test_sink_agent_aggregates_into_one_result(settings: Settings, sent: Sent) -> None:
    app = create_sink_app(settings)
    app.finalize()
    opened = {"kind": "open", "batch_id": "b1", "run": "0:1", "total": 2, "ids": [None, "x"],
              "received_at": 0, "deadline": 10**15, "replay": None}  # fmt: skip

    def part(i: int) -> bytes:
        return orjson.dumps({"kind": "part", "batch_id": "b1", "run": "0:1", "chunk": str(i),
                             "results": [{"index": i, "id": [None, "x"][i], "success": True, "svg": "<svg/>"}]})

    async with app.agents["sink.app.aggregate"].test_context() as agent:
        await agent.put(orjson.dumps(opened), key=b"b1")
        await agent.put(part(1), key=b"b1")
        await agent.put(b"not json", key=b"b1")  # skipped, counted, the agent carries on
        await agent.put(part(1), key=b"b1")  # duplicate
        await agent.put(part(0), key=b"b1")
    [result] = sent.by_topic(settings.topics.results)
    assert [r["id"] for r in result["results"]] == [None, "x"]
    assert result["summary"]["successful"] == 2
    assert app.bf_stats["bad_records"] == 1  # type: ignore[attr-defined]
    done = {k: v for k, v in app.aggregator.store.items() if not k.count("|part|") and not is_mark_key(k)}
    assert [v["done"] for v in done.values()] == [True]  # finalized once the result was acknowledged
    assert not any("|part|" in k for k in app.aggregator.store)
    assert app.aggregator.store[mark_key(0)] == 5  # the next offset the sink expects on partition 0


async def test_sink_skips_redelivered_records_and_reads_a_gap_again(settings: Settings, sent: Sent) -> None:
    app = create_sink_app(settings)
    app.finalize()
    seeks = fake_seeking(app)
    opened = {"kind": "open", "batch_id": "b3", "run": "0:1", "total": 1, "ids": [None],
              "received_at": 0, "deadline": 10**15, "replay": None}  # fmt: skip
    part = {"kind": "part", "batch_id": "b3", "run": "0:1", "chunk": "0",
            "results": [{"index": 0, "id": None, "success": True, "svg": "<svg/>"}]}  # fmt: skip
    async with app.agents["sink.app.aggregate"].test_context() as agent:
        await agent.put(orjson.dumps(opened), key=b"b3")  # offset 0
        agent.sent_offset = 5  # offsets 1..4 were acknowledged by Faust but never reached the agent
        await agent.put(orjson.dumps(part), key=b"b3")
        for _ in range(100):  # the seek comes after a short pause of the flow
            if seeks:
                break
            await asyncio.sleep(0.01)
        assert seeks == [(0, 1)] and app.bf_stats["rereads"] == 1  # type: ignore[attr-defined]
        assert sent.by_topic(settings.topics.results) == []  # the part after the gap waits for the re-read
        agent.sent_offset = 0
        await agent.put(orjson.dumps(opened), key=b"b3")  # offset 0 again: a redelivery, skipped
        assert app.bf_stats["duplicates"] == 1  # type: ignore[attr-defined]
        agent.sent_offset = 1  # the re-read
        await agent.put(orjson.dumps(part), key=b"b3")
    [result] = sent.by_topic(settings.topics.results)
    assert result["batch_id"] == "b3" and result["summary"]["successful"] == 1


async def test_sink_goes_on_past_records_deleted_before_it_read_them(
    settings: Settings, sent: Sent, caplog: pytest.LogCaptureFixture
) -> None:
    """Retention deleted offsets 1..6 before the sink read them: no seek (nothing to read), an error logged."""
    app = create_sink_app(settings)
    app.finalize()
    seeks = fake_seeking(app, earliest=7)
    opened = {"kind": "open", "batch_id": "b4", "run": "0:9", "total": 0, "ids": [],
              "received_at": 0, "deadline": 10**15, "replay": None}  # fmt: skip
    async with app.agents["sink.app.aggregate"].test_context() as agent:
        await agent.put(orjson.dumps({**opened, "batch_id": "first"}), key=b"first")  # offset 0
        agent.sent_offset = 7
        await agent.put(orjson.dumps(opened), key=b"b4")
    assert seeks == []
    assert "offsets 1..6 were deleted" in caplog.text
    assert app.aggregator.store[mark_key(0)] == 8


async def test_sink_table_tracks_its_changelog_writes_until_acknowledged(settings: Settings, sent: Sent) -> None:
    app = create_sink_app(settings)
    app.finalize()
    opened = {"kind": "open", "batch_id": "b2", "run": "0:1", "total": 1, "ids": [None],
              "received_at": 0, "deadline": 10**15, "replay": None}  # fmt: skip
    async with app.agents["sink.app.aggregate"].test_context() as agent:
        await agent.put(orjson.dumps(opened), key=b"b2")
    # no producer runs in the test context: the write is still waiting for the broker
    writes = sorted(app.table.unacked, key=lambda w: w.message.key)
    # JSON-serialised table keys: the run and the partition's offset mark
    assert [w.message.key for w in writes] == [b'"__next_offset__|0"', b'"b2|0:1"']
    for w in writes:
        w.set_result(None)  # the broker's ack
    await asyncio.sleep(0)
    assert app.table.unacked == set()


async def test_sink_commit_waits_for_unacknowledged_changelog_writes(settings: Settings) -> None:
    """Faust awaits ``producer.flush()`` right before committing offsets (RELIABILITY.md D6)."""
    app = create_sink_app(settings)
    app.finalize()
    write: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    app.table.unacked.add(write)  # type: ignore[arg-type]
    flush = asyncio.ensure_future(app.producer.flush())
    await asyncio.sleep(0.3)
    assert not flush.done()
    write.set_result(None)
    await asyncio.wait_for(flush, 5)

    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    failed.set_exception(OSError("broker gone"))
    app.table.unacked.add(failed)  # type: ignore[arg-type]
    with pytest.raises(OSError, match="broker gone"):  # the commit does not happen
        await app.producer.flush()


async def test_dispatch_answers_a_fully_cached_batch_directly(settings: Settings, sent: Sent) -> None:
    app = create_worker_app(settings)
    app.pool = InlinePool()  # type: ignore[assignment]
    app.finalize()
    from schemas.validate import parse_batch
    from stream_app.pipeline import plan_batch, render_task

    batch = {"batch_id": "hot", "barcodes": [{"barcode_type": "qr", "data": "hot"}, {"barcode_type": "x", "data": ""}]}
    warm = plan_batch(parse_batch(batch), run="0:0", received_at_ms=0, timeout_s=10)
    await render_task(warm.tasks[0], cache=app.render_cache, pool=app.pool)  # fills the cache
    async with app.agents["stream_app.app.dispatch"].test_context() as agent:
        await agent.put(orjson.dumps(batch), key=b"hot")
    assert sent.by_topic(settings.topics.tasks) == [] and sent.by_topic(settings.topics.items) == []
    [result] = sent.by_topic(settings.topics.results)
    assert [(r["index"], r["cached"]) for r in result["results"]] == [(0, True), (1, False)]
    assert result["results"][1]["error"]["code"] == "unsupported_type"
