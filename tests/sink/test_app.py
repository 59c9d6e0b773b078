"""``Sink`` (``sink/app.py``): one loop iteration (``step``) and the rebalance hooks, over fakes of the
aiokafka consumer, producer and admin client (unit tests only)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaConnectionError
from aiokafka.structs import OffsetAndMetadata

from barcodeflow.memory import HeapTrimmer
from barcodeflow.settings import Settings
from sink import app as sink_app
from sink.aggregate import METADATA_PREFIX, decode_results, encode_done
from sink.app import Sink
from tests.stream_app.fakes import GUARD_S, FakeConsumer, FakeProducer, Record, batch, records

SETTINGS = Settings(topic_partitions=2, batch_timeout_s=10.0)
ITEMS = SETTINGS.topics.items
RESULTS = SETTINGS.topics.results
TP0 = TopicPartition(ITEMS, 0)


def open_rec(batch_id: str, *, total: int = 1, cached: int = 0, deadline: int = 11_000) -> dict[str, Any]:
    return {
        "kind": "open", "batch_id": batch_id, "run": f"0:{batch_id}", "total": total,
        "ids": [f"i{n}" for n in range(total)], "received_at": 1000, "deadline": deadline, "replay": None,
        "results": [{"index": i, "id": f"i{i}", "success": True, "cached": True} for i in range(cached)],
    }  # fmt: skip


def part_rec(batch_id: str, *indexes: int, chunk: str = "0") -> dict[str, Any]:
    return {
        "kind": "part", "batch_id": batch_id, "run": f"0:{batch_id}", "chunk": chunk, "deadline": 11_000,
        "results": [{"index": i, "id": f"i{i}", "success": True, "cached": False, "svg": "<svg/>"} for i in indexes],
    }  # fmt: skip


class FakeAdmin:
    def __init__(self, committed: dict[TopicPartition, OffsetAndMetadata] | None = None) -> None:
        self.committed = committed or {}
        self.error: BaseException | None = None
        self.gate: asyncio.Event | None = None  # when set by a test, answers wait for it
        self.asked = asyncio.Event()

    async def list_consumer_group_offsets(self, group_id: str, partitions: Any = None) -> Any:
        self.asked.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return {tp: om for tp, om in self.committed.items() if partitions is None or tp in partitions}


class FakeTail:
    """The sink's consumer of the results topic's tail, over what ``results`` (a ``FakeProducer`` with
    ``offsets=True``, every record in partition 0) has written."""

    def __init__(self, results: FakeProducer | None) -> None:
        self.results = results
        self.positions: dict[TopicPartition, int] = {}
        self.reads: list[dict[TopicPartition, int]] = []  # where each read started

    def log(self) -> list[Record]:
        sent = self.results.on(RESULTS) if self.results is not None else []
        return [Record(RESULTS, 0, i, s.key, s.value, tuple(s.headers or ())) for i, s in enumerate(sent)]

    def assign(self, tps: list[TopicPartition]) -> None:
        self.positions = dict.fromkeys(tps, 0)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.log()) if tp.partition == 0 else 0 for tp in tps}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def getmany(self, *tps: TopicPartition, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        self.reads.append({tp: self.positions[tp] for tp in tps})
        out = {}
        for tp in tps:
            recs = [r for r in self.log() if tp.partition == 0 and r.offset >= self.positions[tp]]
            if recs:
                out[tp] = recs
                self.positions[tp] = recs[-1].offset + 1
        return out

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    def unsubscribe(self) -> None:
        self.positions = {}


@pytest.fixture
def make_sink(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A ``Sink`` built by its own constructor, with fakes in place of the aiokafka clients. ``offsets``: acks
    say where each result went (and commits name where the results end); ``results``: the producer whose
    results the sink's tail consumer reads (a previous incarnation's)."""

    def make(
        *,
        auto_ack: bool = True,
        admin: FakeAdmin | None = None,
        partitions: tuple[int, ...] = (0,),
        offsets: bool = False,
        results: FakeProducer | None = None,
    ) -> Sink:
        consumer = FakeConsumer(ITEMS, partitions)
        producer = FakeProducer(auto_ack=auto_ack, offsets=offsets)
        made = iter([consumer, FakeTail(results)])
        monkeypatch.setattr(sink_app, "AIOKafkaConsumer", lambda **_: next(made))
        monkeypatch.setattr(sink_app, "AIOKafkaProducer", lambda **_: producer)
        monkeypatch.setattr(sink_app, "AIOKafkaAdminClient", lambda **_: admin or FakeAdmin())
        sink = Sink(SETTINGS, commit_interval_s=0.0)
        consumer.committer = sink.committer
        return sink

    return make


async def step(sink: Sink, batches: dict[TopicPartition, list[Any]], now: int) -> None:
    """One iteration of the loop, and the commit it asked for."""
    await sink.step(batches, now)
    await sink.committer.settled()


def results_of(sink: Sink) -> list[dict[str, Any]]:
    return [s.json() for s in sink.producer.on(SETTINGS.topics.results)]


async def test_step_writes_the_result_and_commits_only_after_the_ack(make_sink: Any) -> None:
    sink = make_sink(auto_ack=False)
    producer: FakeProducer = sink.producer
    consumer: FakeConsumer = sink.consumer
    stepping = asyncio.create_task(
        step(sink, batch(records(ITEMS, 0, [open_rec("b1", total=2), part_rec("b1", 0, 1)])), 1000)
    )
    await producer.wait_sent(1)
    [written] = producer.sent
    assert (written.topic, written.key) == (SETTINGS.topics.results, b"b1")
    assert written.json()["summary"]["successful"] == 2
    assert not stepping.done() and consumer.commits == []  # waiting for the broker's ack
    producer.ack()
    await stepping
    assert consumer.commits == [{TP0: OffsetAndMetadata(2, METADATA_PREFIX)}]
    assert sink.emitted == 1


async def test_step_commits_the_low_watermark_with_the_runs_done_above_it(make_sink: Any) -> None:
    sink = make_sink()
    consumer: FakeConsumer = sink.consumer
    recs = records(ITEMS, 0, [open_rec("a"), open_rec("b"), part_rec("b", 0), part_rec("a", 0)])
    await step(sink, batch(recs[:3]), 1000)
    assert [r["batch_id"] for r in results_of(sink)] == ["b"]
    assert consumer.commits[-1] == {TP0: OffsetAndMetadata(0, encode_done(0, [1])[0])}
    await step(sink, batch(recs[3:]), 1100)
    assert [r["batch_id"] for r in results_of(sink)] == ["b", "a"]
    assert consumer.commits[-1] == {TP0: OffsetAndMetadata(4, METADATA_PREFIX)}


async def test_step_does_not_commit_an_unchanged_point_again(make_sink: Any) -> None:
    sink = make_sink()
    await step(sink, batch(records(ITEMS, 0, [open_rec("a")])), 1000)
    assert len(sink.consumer.commits) == 1
    await step(sink, {}, 1100)
    assert len(sink.consumer.commits) == 1


async def test_step_skips_bad_records_and_commits_past_them(make_sink: Any, caplog: pytest.LogCaptureFixture) -> None:
    sink = make_sink()
    await step(sink, batch(records(ITEMS, 0, [b"not json", open_rec("a", cached=1)])), 1000)
    assert "sink: skipping" in caplog.text and "p0@0" in caplog.text
    assert [r["batch_id"] for r in results_of(sink)] == ["a"]
    assert sink.consumer.commits[-1] == {TP0: OffsetAndMetadata(2, METADATA_PREFIX)}
    assert sink.aggregator.stats["bad_records"] == 1


async def test_step_ignores_records_of_partitions_no_longer_assigned(make_sink: Any) -> None:
    sink = make_sink(partitions=(0,))
    recs = records(ITEMS, 0, [open_rec("a", cached=1)]) + records(ITEMS, 1, [open_rec("b", cached=1)])
    await step(sink, batch(recs), 1000)
    assert [r["batch_id"] for r in results_of(sink)] == ["a"]
    assert [tp.partition for c in sink.consumer.commits for tp in c] == [0]


async def test_step_times_out_runs_only_on_caught_up_partitions(make_sink: Any) -> None:
    sink = make_sink()
    consumer: FakeConsumer = sink.consumer
    await step(sink, batch(records(ITEMS, 0, [open_rec("a", total=2, deadline=5000), part_rec("a", 0)])), 1000)
    consumer.highwaters[0] = 5  # more records ahead: the missing part may be among them
    await step(sink, {}, 6000)
    assert results_of(sink) == []
    consumer.highwaters[0] = 2
    await step(sink, {}, 6050)  # due is asked at most every 100 ms
    assert results_of(sink) == []
    await step(sink, {}, 6100)
    [result] = results_of(sink)
    assert [r.get("error", {}).get("code") for r in result["results"]] == [None, "timeout"]
    assert consumer.commits[-1] == {TP0: OffsetAndMetadata(2, METADATA_PREFIX)}


async def test_a_failed_commit_is_retried_at_the_next_step(make_sink: Any) -> None:
    sink = make_sink()
    consumer: FakeConsumer = sink.consumer
    consumer.commit_error = CommitFailedError("rebalanced")
    await step(sink, batch(records(ITEMS, 0, [open_rec("a", cached=1)])), 1000)
    assert consumer.commits == []
    await step(sink, {}, 1100)
    assert consumer.commits == [{TP0: OffsetAndMetadata(1, METADATA_PREFIX)}]


async def test_revoked_commits_then_forgets_the_partition(make_sink: Any) -> None:
    sink = make_sink(partitions=(0, 1))
    consumer: FakeConsumer = sink.consumer
    consumer.commit_error = CommitFailedError("once")  # the step's commit is lost ...
    recs = records(ITEMS, 0, [open_rec("a"), open_rec("b", cached=1)]) + records(ITEMS, 1, [open_rec("c")])
    await step(sink, batch(recs), 1000)
    await sink.revoked({TP0})  # ... the revocation commits partition 0
    assert consumer.commits == [{TP0: OffsetAndMetadata(0, encode_done(0, [1])[0])}]
    assert {r.partition for r in sink.aggregator.runs.values()} == {1}
    assert set(sink.aggregator.commit_points()) == {1}


async def test_restart_reads_from_the_commit_and_skips_what_was_emitted(make_sink: Any) -> None:
    recs = records(ITEMS, 0, [open_rec("a"), open_rec("b", cached=1), part_rec("a", 0)])
    first = make_sink()
    await step(first, batch(recs[:2]), 1000)
    assert [r["batch_id"] for r in results_of(first)] == ["b"]
    [(tp, committed)] = first.consumer.commits[-1].items()
    # the process dies; the next one is assigned partition 0 and reads from the commit
    second = make_sink(admin=FakeAdmin({tp: committed}))
    await second.assigned({TP0, TopicPartition("another.topic", 0)})
    assert second.aggregator.skip == {0: {1}}
    await step(second, batch(recs[committed.offset :]), 2000)
    assert [r["batch_id"] for r in results_of(second)] == ["a"]
    # the first sink's commit named no results position (its acks did not say): the second names the
    # results topic's end at its assignment
    assert second.consumer.commits[-1] == {TP0: OffsetAndMetadata(3, METADATA_PREFIX + "|r:0.0")}


async def test_restart_without_readable_commits_emits_again(make_sink: Any) -> None:
    admin = FakeAdmin({TP0: OffsetAndMetadata(0, encode_done(0, [1])[0])})
    admin.error = KafkaConnectionError("admin unreachable")
    sink = make_sink(admin=admin)
    await sink.assigned({TP0})
    assert sink.aggregator.skip == {0: set()}
    await step(sink, batch(records(ITEMS, 0, [open_rec("a"), open_rec("b", cached=1)])), 1000)
    assert [r["batch_id"] for r in results_of(sink)] == ["b"]  # at least once


async def test_written_results_are_the_aggregators_json(make_sink: Any) -> None:
    sink = make_sink()
    await step(sink, batch(records(ITEMS, 0, [open_rec("x", total=2, cached=2)])), 1000)
    [sent] = sink.producer.sent
    assert orjson.loads(sent.value)["summary"]["cached"] == 2


async def test_a_result_carries_the_owner_of_its_request(make_sink: Any) -> None:
    sink = make_sink()
    recs = [{**open_rec("mine", total=1, cached=1), "owner": "key-a"}, open_rec("upstream", total=1, cached=1)]
    await step(sink, batch(records(ITEMS, 0, recs)), 1000)
    headers = {s.key: s.headers for s in sink.producer.on(SETTINGS.topics.results)}
    assert headers == {b"mine": [("x-owner", b"key-a"), ("x-run", b"0:mine")], b"upstream": [("x-run", b"0:upstream")]}


async def test_the_commit_names_where_the_acknowledged_results_end(make_sink: Any) -> None:
    sink = make_sink(offsets=True)
    await step(sink, batch(records(ITEMS, 0, [open_rec("a", cached=1), open_rec("b", cached=1)])), 1000)
    [(tp, committed)] = sink.consumer.commits[-1].items()
    assert committed.offset == 2 and decode_results(committed.metadata) == {0: 2}


async def test_restart_after_a_lost_commit_does_not_write_a_result_again(make_sink: Any) -> None:
    recs = records(ITEMS, 0, [open_rec("a"), open_rec("b", cached=1), open_rec("c", cached=1), part_rec("a", 0)])
    first = make_sink(offsets=True)
    await step(first, batch(recs[:2]), 1000)  # b written, committed: offset 0 (a is open), b listed
    [(tp, committed)] = first.consumer.commits[-1].items()
    assert decode_results(committed.metadata) == {0: 1}
    first.consumer.commit_error = CommitFailedError("the process dies before this commit lands")
    await step(first, batch(recs[2:3]), 1100)  # c written and acknowledged, its commit lost
    assert [r["batch_id"] for r in results_of(first)] == ["b", "c"]
    second = make_sink(admin=FakeAdmin({tp: committed}), offsets=True, results=first.producer)
    await second.assigned({TP0})
    assert second.tail.reads == [{TopicPartition(RESULTS, 0): 1}]  # only what followed the commit
    assert second.aggregator.written == {0: {"c|0:c"}}
    await step(second, batch(recs[committed.offset :]), 2000)
    assert [r["batch_id"] for r in results_of(second)] == ["a"]  # b skipped by the commit, c by its result


async def test_restart_with_an_unreadable_results_tail_writes_again(make_sink: Any) -> None:
    first = make_sink(offsets=True)
    await step(first, batch(records(ITEMS, 0, [open_rec("a"), open_rec("b", cached=1)])), 1000)
    [(tp, committed)] = first.consumer.commits[-1].items()
    second = make_sink(admin=FakeAdmin({tp: committed}), offsets=True, results=first.producer)

    async def refused(_: Any) -> Any:
        raise KafkaConnectionError("results topic unreachable")

    second.tail.end_offsets = refused
    await second.assigned({TP0})
    assert second.aggregator.written == {0: set()} and second.tail.positions == {}


async def test_the_loop_trims_the_heap_once_a_burst_is_over(make_sink: Any) -> None:
    sink = make_sink()
    consumer: FakeConsumer = sink.consumer
    trims: list[int] = []
    sink.heap = HeapTrimmer(lambda: trims.append(1) or 1, min_interval_s=0)
    loop = asyncio.create_task(sink.run())
    try:
        await consumer.polled(1)
        await consumer.turn()  # idle before any work: nothing to hand back
        assert trims == []
        consumer.push(records(ITEMS, 0, [open_rec("b1", total=1), part_rec("b1", 0)]))
        await consumer.turn()  # the burst, then an empty poll
        assert results_of(sink) and trims == [1]
        await consumer.turn()  # still idle, nothing freed since: no second trim
        assert trims == [1]
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def test_a_commit_in_flight_does_not_hold_the_next_result(make_sink: Any) -> None:
    sink = make_sink()
    consumer: FakeConsumer = sink.consumer
    producer: FakeProducer = sink.producer
    consumer.commit_gate = asyncio.Event()  # the group coordinator holds the commit (its append linger)
    loop = asyncio.create_task(sink.run())
    try:
        consumer.push(records(ITEMS, 0, [open_rec("a", cached=1)]))
        await producer.wait_sent(1)
        consumer.push(records(ITEMS, 0, [open_rec("b", cached=1)], start=1))
        await producer.wait_sent(2)  # written while the first commit is still in flight
        assert consumer.commits == [] and consumer.commits_begun == 1
        consumer.commit_gate.set()
        await consumer.turn()
        assert consumer.commits == [
            {TP0: OffsetAndMetadata(1, METADATA_PREFIX)},
            {TP0: OffsetAndMetadata(2, METADATA_PREFIX)},
        ]
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)


async def test_a_commit_failing_beside_the_loop_ends_the_loop(make_sink: Any) -> None:
    sink = make_sink()
    consumer: FakeConsumer = sink.consumer
    consumer.commit_error = KafkaConnectionError("coordinator gone")
    loop = asyncio.create_task(sink.run())
    consumer.push(records(ITEMS, 0, [open_rec("a", cached=1)]))
    await sink.producer.wait_sent(1)
    await asyncio.wait_for(sink.committer.settled(), GUARD_S)  # the commit failed meanwhile ...
    consumer.push()  # ... and the next iteration (at the latest after getmany's timeout) ends with it
    with pytest.raises(KafkaConnectionError):
        await asyncio.wait_for(loop, GUARD_S)


async def test_a_partition_without_a_commit_is_committed_at_once_naming_where_its_results_begin(
    make_sink: Any,
) -> None:
    sink = make_sink(offsets=True)
    sink.consumer.starts = {0: 4}  # the log starts at 4 (older records deleted)
    await sink.assigned({TP0})
    await step(sink, {}, 1000)
    assert sink.consumer.commits == [{TP0: OffsetAndMetadata(4, METADATA_PREFIX + "|r:0.0")}]


async def test_records_read_while_an_assignment_is_rebuilt_are_applied_after_it(make_sink: Any) -> None:
    """aiokafka fetches a new partition while the assignment listener still runs: the loop's iteration waits for
    the rebuilt state instead of applying records that the rebuild would then wipe."""
    admin = FakeAdmin()
    admin.gate = asyncio.Event()
    sink = make_sink(admin=admin)
    assigning = asyncio.create_task(sink.assigned({TP0}))
    await asyncio.wait_for(admin.asked.wait(), GUARD_S)

    async def iteration() -> None:  # what the loop does with a batch it read
        async with sink.lock:
            await sink.step(batch(records(ITEMS, 0, [open_rec("a", total=2), part_rec("a", 0)])), 1000)

    stepping = asyncio.create_task(iteration())
    await asyncio.sleep(0)
    assert not stepping.done() and sink.aggregator.runs == {}  # held while the commits are read
    admin.gate.set()
    await asyncio.wait_for(asyncio.gather(assigning, stepping), GUARD_S)
    run = sink.aggregator.runs["a|0:a"]  # the open record and the part survive the rebuild
    assert run.open is not None and set(run.results) == {0}
