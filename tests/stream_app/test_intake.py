"""The worker's intake (``stream_app.intake``): ``InFlight`` (pure) and ``Intake`` over fakes of the
aiokafka consumer and producer, rendering inline (unit tests only)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from barcodeflow.cache import TwoLevelCache
from barcodeflow.memory import HeapTrimmer
from barcodeflow.settings import Settings
from render.batch import plan_batch, render_task
from render.pool import InlinePool
from schemas.validate import parse_batch
from sink.aggregate import BatchAggregator
from stream_app.intake import InFlight, Intake, dlq_headers
from tests.render.helpers import decode, decodes_to, svg_modules, to_gray
from tests.stream_app.fakes import GUARD_S, FakeConsumer, FakeProducer, Record, records

# -- InFlight (pure) ------------------------------------------------------------------------------


def test_inflight_commits_the_lowest_offset_in_flight() -> None:
    f = InFlight()
    assert f.commit_points() == {}
    t5, t6, t7 = f.take(0, 5), f.take(0, 6), f.take(0, 7)
    assert len(f) == 3
    assert f.commit_points() == {0: 5}
    f.finish(t6)
    f.finish(t7)
    assert f.commit_points() == {0: 5}  # finished out of order: 5 still holds
    f.finish(t5)
    assert f.commit_points() == {0: 8} and len(f) == 0


def test_inflight_partitions_are_independent() -> None:
    f = InFlight()
    f.take(0, 10)
    t = f.take(1, 3)
    f.finish(t)
    assert f.commit_points() == {0: 10, 1: 4}


def test_inflight_finish_twice_is_harmless() -> None:
    f = InFlight()
    t = f.take(0, 1)
    f.take(0, 2)
    f.finish(t)
    f.finish(t)
    assert f.commit_points() == {0: 2}


def test_inflight_drop_forgets_the_partition() -> None:
    f = InFlight()
    f.take(0, 4)
    f.take(1, 4)
    f.drop(0)
    assert f.commit_points() == {1: 4}
    assert len(f) == 1


def test_inflight_a_request_of_an_older_reading_cannot_finish_the_newer_one() -> None:
    f = InFlight()
    old = f.take(0, 5)
    f.drop(0)  # revoked while offset 5 was in flight ...
    new = f.take(0, 5)  # ... assigned back and read again
    assert old != new
    f.finish(old)
    assert f.commit_points() == {0: 5}  # the old reading's finish does not commit the new one
    f.finish(new)
    assert f.commit_points() == {0: 6}


def test_inflight_finish_after_drop_without_rereading() -> None:
    f = InFlight()
    t = f.take(0, 5)
    f.drop(0)
    f.finish(t)
    assert f.commit_points() == {} and len(f) == 0


# -- Intake ----------------------------------------------------------------------------------------

SETTINGS = Settings(topic_partitions=1, batch_timeout_s=10.0)
TOPICS = SETTINGS.topics


def request(batch_id: str, *data: str, **options: Any) -> dict[str, Any]:
    return {"batch_id": batch_id, "barcodes": [{"barcode_type": "qr", "data": d} for d in data], "options": options}


class Renderer:
    """The render callable: renders inline (through ``render_task``), records every call; ``fail`` holds
    batch ids whose render raises, ``gates`` batch ids whose render waits for the test."""

    def __init__(self, cache: TwoLevelCache) -> None:
        self.cache = cache
        self.calls: list[list[dict[str, Any]]] = []
        self.running: list[asyncio.Task[Any] | None] = []  # the task of each call
        self.fail: set[str] = set()
        self.gates: dict[str, list[asyncio.Event]] = {}  # one event per call, in call order

    async def __call__(self, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.calls.append(tasks)
        self.running.append(asyncio.current_task())
        batch_id = tasks[0]["batch_id"]
        if batch_id in self.fail:
            raise RuntimeError(f"render of {batch_id} broke")
        if self.gates.get(batch_id):
            await self.gates[batch_id].pop(0).wait()
        return [await render_task(t, cache=self.cache, pool=InlinePool()) for t in tasks]  # type: ignore[arg-type]


class World:
    """An intake over fakes. ``grace`` is its WORKER_OPEN_GRACE_S; 0 (most tests): the ``open`` record is
    written at once and the items follow in a ``part`` record."""

    def __init__(
        self, *, auto_ack: bool = True, max_in_flight: int = 64, grace: float = 0.0, commit_interval_s: float = 0.0
    ) -> None:
        self.consumer = FakeConsumer(TOPICS.requests, partitions=(0, 1))
        self.producer = FakeProducer(auto_ack=auto_ack)
        self.cache = TwoLevelCache(None, max_size=100)
        self.renderer = Renderer(self.cache)
        self.intake = Intake(
            SETTINGS.with_(worker_open_grace_s=grace),
            consumer=self.consumer,
            producer=self.producer,
            cache=self.cache,
            render=self.renderer,
            max_in_flight=max_in_flight,
            commit_interval_s=commit_interval_s,
        )
        if not commit_interval_s:  # turn() waits for the commits (none waits for an interval)
            self.consumer.committer = self.intake.committer

    def items(self) -> list[dict[str, Any]]:
        return [s.json() for s in self.producer.on(TOPICS.items)]

    def dlq(self) -> list[Any]:
        return self.producer.on(TOPICS.dlq)

    async def feed(self, recs: Iterable[Record]) -> None:
        """Hand the loop these records and let it take them (one iteration, with its commit)."""
        self.consumer.push(recs)
        await self.consumer.turn()

    async def settled(self) -> None:
        """Every request taken so far has been handled (its task ended)."""
        if self.intake._tasks:
            await asyncio.wait(set(self.intake._tasks), timeout=GUARD_S)
            assert not self.intake._tasks, "requests still in flight"

    @asynccontextmanager
    async def running(self) -> AsyncIterator[World]:
        loop = asyncio.create_task(self.intake.run())
        try:
            await self.consumer.polled(1)
            yield self
        finally:
            self.producer.ack()
            loop.cancel()
            await asyncio.gather(loop, return_exceptions=True)
            for t in list(self.intake._tasks):
                t.cancel()
            await asyncio.gather(*self.intake._tasks, return_exceptions=True)


def rec(value: Any, *, partition: int = 0, offset: int = 0) -> Record:
    [r] = records(TOPICS.requests, partition, [value], start=offset)
    return r


def aggregate(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the sink makes of these items records (all on one partition)."""
    agg = BatchAggregator(timeout_s=10)
    return [e.result for off, r in enumerate(items) for e in agg.apply(0, off, r, 0)]


async def test_valid_batch_becomes_open_then_one_part_keyed_by_batch_id() -> None:
    w = World()
    req = request("b1", "a", "b", "a", "", max_concurrent=2)  # a twice, an invalid empty item
    await w.intake.handle(rec(req, partition=1, offset=41))
    items = w.items()
    opened, *parts = items
    assert opened["kind"] == "open" and [p["kind"] for p in parts] == ["part"]  # two tasks, one record
    assert parts[0]["chunk"] == "0+1"
    assert opened["run"] == "1:41" and {p["run"] for p in parts} == {"1:41"}
    assert opened["total"] == 4 and opened["deadline"] == opened["received_at"] + 10_000
    [invalid] = opened["results"]
    assert invalid["index"] == 3 and invalid["error"]["code"] == "invalid_data"
    assert sorted(r["index"] for p in parts for r in p["results"]) == [0, 1, 2]
    assert {s.key for s in w.producer.on(TOPICS.items)} == {b"b1"}
    assert w.dlq() == []
    assert len(w.renderer.calls) == 1 and w.intake.stats["dispatched"] == 1
    [result] = aggregate(items)
    assert [(r["index"], r["success"]) for r in result["results"]] == [(0, True), (1, True), (2, True), (3, False)]
    assert result["results"][2]["cached"] is True  # a duplicate of item 0, served from its render


async def test_the_requests_owner_travels_in_its_open_record_to_the_results_header() -> None:
    w = World()
    owned = Record(TOPICS.requests, 0, 7, b"b1", orjson.dumps(request("b1", "a")), (("x-owner", b"key-a"),))
    await w.intake.handle(owned)
    opened, part = w.items()
    assert opened["owner"] == "key-a" and "owner" not in part  # the run's owner: on its open record
    agg = BatchAggregator(timeout_s=10)
    [emission] = [e for off, r in enumerate([opened, part]) for e in agg.apply(0, off, r, 0)]
    assert emission.owner == "key-a"
    await w.intake.handle(rec(request("b2", "a"), offset=8))  # published without the header
    assert "owner" not in w.items()[2]


async def test_a_rejected_request_keeps_its_owner() -> None:
    w = World()
    bad = {"batch_id": "b9", "barcodes": "not a list"}
    await w.intake.handle(Record(TOPICS.requests, 0, 3, b"b9", orjson.dumps(bad), (("x-owner", b"key-a"),)))
    [rejected] = w.items()
    assert (rejected["kind"], rejected["owner"]) == ("rejected", "key-a")


async def test_a_batch_rendered_within_the_grace_is_one_open_record_with_every_item() -> None:
    w = World(grace=GUARD_S)
    req = request("b1", "a", "b", "a", "", max_concurrent=2)  # a twice, an invalid empty item
    await w.intake.handle(rec(req, partition=1, offset=41))
    [opened] = w.items()
    assert opened["kind"] == "open" and opened["run"] == "1:41" and opened["total"] == 4
    assert opened["deadline"] == opened["received_at"] + 10_000
    assert sorted(r["index"] for r in opened["results"]) == [0, 1, 2, 3]
    assert w.intake.stats["one_record"] == 1 and w.intake.stats["dispatched"] == 1
    [result] = aggregate([opened])  # complete on its own
    assert [(r["index"], r["success"]) for r in result["results"]] == [(0, True), (1, True), (2, True), (3, False)]
    assert result["results"][2]["cached"] is True
    for i, data in ((0, "a"), (1, "b"), (2, "a")):  # the images themselves came through
        modules = svg_modules(result["results"][i]["svg"].encode(), linear=False)
        assert decodes_to(decode(to_gray(modules, linear=False), "qr"), data)


async def test_a_batch_slower_than_the_grace_gets_its_open_record_at_the_grace_then_its_part() -> None:
    w = World(auto_ack=False, grace=0.05)
    gate = asyncio.Event()
    w.renderer.gates["slow"] = [gate]
    async with w.running():
        w.consumer.push([rec(request("slow", "a", "b"), offset=3)])
        await w.producer.wait_sent(1)  # the grace passed with the render still running
        [opened] = [s.json() for s in w.producer.sent]
        assert opened["kind"] == "open" and opened["results"] == []
        w.producer.ack()
        await w.consumer.turn()
        assert w.consumer.committed_offsets(0) == [3]  # its part is still to come
        gate.set()
        await w.producer.wait_sent(2)
        part = w.producer.sent[1].json()
        assert part["kind"] == "part" and sorted(r["index"] for r in part["results"]) == [0, 1]
        w.producer.ack()
        await w.settled()
        await w.consumer.turn()
        assert w.consumer.committed_offsets(0) == [3, 4]
    [result] = aggregate(w.items())
    assert result["summary"]["successful"] == 2


async def test_a_render_failing_within_the_grace_leaves_only_the_rejection() -> None:
    w = World(grace=GUARD_S)
    w.renderer.fail.add("boom")
    await w.intake._handle(rec(request("boom", "a"), offset=9), w.intake.in_flight.take(0, 9))
    [rejected] = w.items()  # no open record came before the failure
    assert rejected["kind"] == "rejected" and rejected["code"] == "internal_error" and rejected["run"] == "0:9"
    [dead] = w.dlq()
    assert dict(dead.headers or [])["x-error-code"] == b"internal_error"
    [result] = aggregate([rejected])
    assert result["error"]["code"] == "internal_error"


async def test_a_request_cancelled_in_its_grace_cancels_its_render() -> None:
    w = World(grace=GUARD_S)
    never = asyncio.Event()
    w.renderer.gates["stuck"] = [never]
    handling = asyncio.create_task(w.intake.handle(rec(request("stuck", "a"))))
    while not w.renderer.calls:
        await asyncio.sleep(0)
    handling.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handling
    [rendering] = w.renderer.running
    assert rendering is not None
    await asyncio.wait({rendering}, timeout=GUARD_S)
    assert rendering.cancelled()  # the render did not live on
    assert w.items() == []


async def test_a_batch_gets_no_more_tasks_than_the_pool_runs_at_once() -> None:
    w = World()
    await w.intake.handle(rec(request("big", *map(str, range(100)), max_concurrent=10)))
    opened, part = w.items()
    [tasks] = w.renderer.calls
    assert len(tasks) == SETTINGS.render_tasks_per_batch == 2 * SETTINGS.render_concurrency
    assert part["chunk"] == "+".join(t["chunk"] for t in tasks)
    assert sorted(r["index"] for r in part["results"]) == list(range(100))


async def test_fully_cached_batch_is_a_single_open_record_and_no_render() -> None:
    w = World()
    req = request("hot", "x", "y", "")
    warm = plan_batch(parse_batch(req), run="warm", received_at_ms=0, timeout_s=10)
    for task in warm.tasks:
        await render_task(task, cache=w.cache, pool=InlinePool())  # type: ignore[arg-type]
    await w.intake.handle(rec(req))
    [opened] = w.items()
    assert opened["kind"] == "open"
    assert sorted((r["index"], r["cached"], r["success"]) for r in opened["results"]) == [
        (0, True, True), (1, True, True), (2, False, False),
    ]  # fmt: skip
    assert w.renderer.calls == []
    assert w.intake.stats["answered_from_cache"] == 1
    [result] = aggregate([opened])  # the open record alone completes the run
    assert result["summary"]["cached"] == 2 and result["summary"]["total"] == 3


async def test_partly_cached_batch_renders_only_the_misses() -> None:
    w = World()
    warm = plan_batch(parse_batch(request("w", "x")), run="warm", received_at_ms=0, timeout_s=10)
    await render_task(warm.tasks[0], cache=w.cache, pool=InlinePool())  # type: ignore[arg-type]
    await w.intake.handle(rec(request("b", "x", "y")))
    [tasks] = w.renderer.calls
    assert [it["index"] for t in tasks for it in t["items"]] == [1]
    opened, part = w.items()
    assert [(r["index"], r["cached"]) for r in opened["results"]] == [(0, True)]
    assert [(r["index"], r["cached"]) for r in part["results"]] == [(1, False)]


async def test_no_cache_renders_everything_even_when_cached() -> None:
    w = World()
    warm = plan_batch(parse_batch(request("w", "x")), run="warm", received_at_ms=0, timeout_s=10)
    await render_task(warm.tasks[0], cache=w.cache, pool=InlinePool())  # type: ignore[arg-type]
    await w.intake.handle(rec(request("b", "x", no_cache=True)))
    opened, part = w.items()
    assert opened["results"] == []
    assert [(r["index"], r["cached"]) for r in part["results"]] == [(0, False)]


async def test_poison_goes_to_the_dlq_with_its_bytes_and_headers() -> None:
    w = World()
    raw = b"\xff\xfe not json"
    r = Record(TOPICS.requests, 1, 17, b"k1", raw)
    await w.intake.handle(r)
    [dead] = w.dlq()
    assert (dead.key, dead.value) == (b"k1", raw)
    headers = dict(dead.headers or [])
    assert list(headers) == [
        "x-error-code",
        "x-error-reason",
        "x-source-topic",
        "x-source-partition",
        "x-source-offset",
    ]
    assert headers["x-error-code"] == b"invalid_batch"
    assert b"not valid JSON" in headers["x-error-reason"]
    assert headers["x-source-topic"] == TOPICS.requests.encode()
    assert (headers["x-source-partition"], headers["x-source-offset"]) == (b"1", b"17")
    assert w.items() == []  # no batch_id to answer
    assert w.intake.stats["dead_lettered"] == 1


async def test_invalid_batch_with_a_readable_id_is_rejected_for_the_sink() -> None:
    w = World()
    raw = orjson.dumps({"batch_id": "b2", "barcodes": []})
    await w.intake.handle(rec(raw, offset=3))
    [dead] = w.dlq()
    assert dead.value == raw and dict(dead.headers or [])["x-error-code"] == b"invalid_batch"
    [rejected] = w.items()
    assert rejected["kind"] == "rejected" and rejected["batch_id"] == "b2" and rejected["run"] == "0:3"
    assert rejected["problems"] == [{"loc": "barcodes", "message": "a batch needs at least one item"}]
    assert w.producer.on(TOPICS.items)[0].key == b"b2"
    [result] = aggregate([rejected])
    assert result["error"]["code"] == "invalid_batch" and "at least one item" in result["error"]["message"]


def test_dlq_reason_is_bounded() -> None:
    headers = dict(dlq_headers("internal_error", "x" * 10_000, "t", 0, 1))
    assert len(headers["x-error-reason"]) == 4000


async def test_commit_waits_for_the_acks_of_open_and_parts() -> None:
    w = World(auto_ack=False)
    req = request("b1", "a", "b", max_concurrent=2)
    async with w.running():
        w.consumer.push([rec(req, offset=7)])
        await w.producer.wait_sent(2)  # open + the part of both tasks, none acknowledged
        await w.consumer.turn()  # a full iteration of the loop while they wait
        assert w.consumer.committed_offsets(0) == [7]  # the request itself: read again after a crash
        assert len(w.producer.unacked()) == 2
        w.producer.ack()
        await w.settled()
        await w.consumer.turn()
        assert w.consumer.committed_offsets(0) == [7, 8]
    assert [TopicPartition(TOPICS.requests, 0)] == list(w.consumer.commits[-1])


async def test_commit_waits_for_the_dead_letter_ack() -> None:
    w = World(auto_ack=False)
    async with w.running():
        w.consumer.push([rec(b"junk", offset=0)])
        await w.producer.wait_sent(1)
        await w.consumer.turn()
        assert w.consumer.committed_offsets(0) == [0]
        w.producer.ack()
        await w.settled()
        await w.consumer.turn()
        assert w.consumer.committed_offsets(0) == [0, 1]


async def test_an_early_request_in_flight_holds_the_commit_of_later_ones() -> None:
    w = World()
    slow = asyncio.Event()
    w.renderer.gates["slow"] = [slow]
    async with w.running():
        await w.feed(records(TOPICS.requests, 0, [request("slow", "a"), request("fast", "b")], start=10))
        await w.producer.wait_sent(3)  # slow's open, fast's open and part
        await w.consumer.turn()
        assert [r["batch_id"] for r in w.items() if r["kind"] == "part"] == ["fast"]
        assert w.consumer.committed_offsets(0) == [10]
        slow.set()
        await w.settled()
        await w.consumer.turn()
        assert w.consumer.committed_offsets(0) == [10, 12]


async def test_one_failing_request_goes_to_the_dlq_and_the_next_is_handled() -> None:
    w = World()
    w.renderer.fail.add("boom")
    async with w.running():
        await w.feed(records(TOPICS.requests, 0, [b"\x00poison", request("boom", "a"), request("fine", "b")]))
        await w.settled()
        await w.consumer.turn()
        assert w.consumer.committed() == 3
    codes = [dict(d.headers or [])["x-error-code"] for d in w.dlq()]
    assert sorted(codes) == [b"internal_error", b"invalid_batch"]
    [internal] = [d for d in w.dlq() if dict(d.headers or [])["x-error-code"] == b"internal_error"]
    assert internal.value == orjson.dumps(request("boom", "a"))
    assert b"RuntimeError: render of boom broke" in dict(internal.headers or [])["x-error-reason"]
    assert dict(internal.headers or [])["x-source-offset"] == b"1"
    fine = [r for r in w.items() if r["batch_id"] == "fine"]
    assert [r["kind"] for r in fine] == ["open", "part"]
    assert w.intake.stats["dead_lettered"] == 2


async def test_a_failed_request_is_not_committed_before_its_open_record_is_acknowledged() -> None:
    w = World(auto_ack=False)
    w.renderer.fail.add("boom")
    async with w.running():
        w.consumer.push([rec(request("boom", "a"), offset=0)])
        await w.producer.wait_sent(1)  # the open record; the render fails meanwhile
        await w.consumer.turn()
        assert [s.json()["kind"] for s in w.producer.sent] == ["open"]  # nothing else before its ack
        assert w.consumer.committed_offsets(0) in ([], [0])
        w.producer.sent[0].ack.set_result(None)
        await w.producer.wait_sent(2)  # then the dead letter ...
        assert w.producer.sent[1].topic == TOPICS.dlq
        await w.consumer.turn()
        assert w.consumer.committed_offsets(0) in ([], [0])  # ... whose ack is awaited too
        w.producer.sent[1].ack.set_result(None)
        await w.producer.wait_sent(3)  # ... and the internal-error answer for a waiting client
        rejected = w.producer.sent[2].json()
        assert w.producer.sent[2].topic == TOPICS.items and rejected["kind"] == "rejected"
        assert rejected["code"] == "internal_error" and rejected["run"] == "0:0" and rejected["batch_id"] == "boom"
        await w.consumer.turn()
        assert w.consumer.committed_offsets(0) in ([], [0])
        w.producer.sent[2].ack.set_result(None)
        await w.settled()
        await w.consumer.turn()
        assert w.consumer.committed_offsets(0)[-1] == 1


async def test_getmany_asks_only_for_the_room_left() -> None:
    w = World(max_in_flight=2)
    a, b = asyncio.Event(), asyncio.Event()
    w.renderer.gates.update({"a": [a], "b": [b]})
    async with w.running():
        assert w.consumer.max_records == [2]
        w.consumer.push(records(TOPICS.requests, 0, [request("a", "1"), request("b", "2")]))
        await w.producer.wait_sent(2)  # both opens: both requests taken
        a.set()
        await w.consumer.polled(2)  # the loop reads again once there is room ...
        assert w.consumer.max_records == [2, 1]  # ... for one request
        b.set()


async def test_commit_failure_is_skipped_and_retried() -> None:
    from aiokafka.errors import CommitFailedError

    w = World()
    gate = asyncio.Event()
    w.renderer.gates["b"] = [gate]
    w.consumer.commit_error = CommitFailedError("rebalanced")
    async with w.running():
        await w.feed([rec(request("b", "x"), offset=0)])  # its commit failed ...
        assert w.consumer.committed_offsets(0) == []
        await w.consumer.turn()  # ... and the next iteration's commit has it
        assert w.consumer.committed_offsets(0) == [0]
        gate.set()
        await w.settled()
        await w.consumer.turn()
        assert w.consumer.committed_offsets(0) == [0, 1]


async def test_a_request_finishing_after_revocation_does_not_commit_the_new_reading() -> None:
    w = World()
    old_reading, new_reading = asyncio.Event(), asyncio.Event()
    w.renderer.gates["a"] = [old_reading, new_reading]
    async with w.running():
        await w.feed([rec(request("a", "1"), offset=5)])
        assert w.consumer.committed_offsets(0) == [5]
        old = set(w.intake._tasks)
        await w.intake.revoked({TopicPartition(TOPICS.requests, 0)})
        assert w.intake.in_flight.commit_points() == {}
        # assigned back, read again from the commit while the old reading still runs
        await w.feed([rec(request("a", "1"), offset=5)])
        assert w.consumer.committed_offsets(0) == [5, 5]
        old_reading.set()
        await asyncio.wait(old, timeout=GUARD_S)
        await w.consumer.turn()
        assert w.consumer.committed_offsets(0) == [5, 5]  # the new reading of offset 5 is still in flight
        new_reading.set()
        await w.settled()
        await w.consumer.turn()
        assert w.consumer.committed_offsets(0) == [5, 5, 6]
    assert [r["kind"] for r in w.items()] == ["open", "open", "part", "part"]  # the sink dedups by run
    assert len({r["chunk"] for r in w.items() if r["kind"] == "part"}) == 1  # the same chunk id: a duplicate


async def test_commits_wait_for_the_interval_and_the_final_one_does_not() -> None:
    w = World(commit_interval_s=3600.0)
    async with w.running():
        await w.feed([rec(request("a", "1"), offset=0)])  # the first iteration commits (no commit yet)
        await asyncio.sleep(0)
        assert w.consumer.committed_offsets(0) == [0]
        for off in (1, 2, 3):  # iterations within the interval: no commit
            w.consumer.push([rec(request(f"b{off}", "1"), offset=off)])
            await w.consumer.polled(off + 2)
        await w.settled()
        await w.consumer.turn()
        assert w.consumer.committed_offsets(0) == [0]
        await asyncio.wait_for(w.intake.drain(), GUARD_S)  # shutdown commits at once what finished
        assert w.consumer.committed_offsets(0) == [0, 4]


async def test_the_loop_trims_the_heap_once_nothing_is_in_flight() -> None:
    w = World()
    trims: list[int] = []
    w.intake.heap = HeapTrimmer(lambda: trims.append(1) or 1, min_interval_s=0)
    gate = asyncio.Event()
    w.renderer.gates["g1"] = [gate]
    async with w.running():
        await w.feed([rec(request("g1", "a", "b"))])
        await w.consumer.turn()  # an empty poll, but the request is still rendering
        assert trims == []
        gate.set()
        await w.settled()
        await w.consumer.turn()  # empty poll, nothing in flight: the burst's memory goes back
        assert trims == [1]
        await w.consumer.turn()
        assert trims == [1]  # nothing since: no second trim
