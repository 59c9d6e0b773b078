"""``BatchAggregator``: aggregation per run, deadlines, and the sink's commit points (pure, no Kafka)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sink.aggregate import (
    METADATA_LIMIT,
    METADATA_PREFIX,
    BadRecord,
    BatchAggregator,
    Emission,
    decode_done,
    decode_results,
    encode_done,
)

TIMEOUT_S = 10.0
DEADLINE = 11_000


def item(index: int, *, cached: bool = False, ok: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": index,
        "id": f"i{index}",
        "success": ok,
        "cached": cached,
        "generation_time_ms": 1.0,
    }
    if ok:
        out["svg"] = f"<svg>{index}</svg>"
    else:
        out["error"] = {"code": "invalid_data", "message": "bad"}
    return out


def open_rec(
    batch: str = "b1",
    run: str = "0:1",
    *,
    total: int = 3,
    results: Iterable[dict[str, Any]] = (),
    received: int = 1000,
    deadline: int = DEADLINE,
    replay: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "kind": "open", "batch_id": batch, "run": run, "total": total, "ids": [f"i{n}" for n in range(total)],
        "received_at": received, "deadline": deadline, "replay": replay, "results": list(results),
    }  # fmt: skip


def part(
    chunk: str, indexes: Sequence[int], batch: str = "b1", run: str = "0:1", *, deadline: int = DEADLINE
) -> dict[str, Any]:
    return {
        "kind": "part", "batch_id": batch, "run": run, "chunk": chunk, "deadline": deadline,
        "results": [item(i) for i in indexes],
    }  # fmt: skip


def rejected_rec(batch: str = "bad", run: str = "0:9") -> dict[str, Any]:
    return {
        "kind": "rejected", "batch_id": batch, "run": run, "replay": None,
        "problems": [{"loc": "barcodes", "message": "a batch needs at least one item"}],
    }  # fmt: skip


class Feeder:
    """Feeds records as the sink does (``add`` with bytes), one offset after the other per partition."""

    def __init__(self, agg: BatchAggregator, now: int = 1000) -> None:
        self.agg = agg
        self.now = now
        self.offset: Counter[int] = Counter()

    def __call__(self, record: Any, partition: int = 0) -> list[Emission]:
        offset = self.offset[partition]
        self.offset[partition] += 1
        value = record if isinstance(record, bytes) else orjson.dumps(record)
        return self.agg.add(partition, offset, value, self.now)


@pytest.fixture
def agg() -> BatchAggregator:
    return BatchAggregator(timeout_s=TIMEOUT_S)


@pytest.fixture
def feed(agg: BatchAggregator) -> Feeder:
    return Feeder(agg)


def always(_: int) -> bool:
    return True


def never(_: int) -> bool:
    return False


# -- aggregation ------------------------------------------------------------------------------------


def test_emits_once_complete_in_request_order(agg: BatchAggregator, feed: Feeder) -> None:
    assert feed(open_rec(total=3)) == []
    assert feed(part("1", [2])) == []
    feed.now = 1600
    [e] = feed(part("0", [1, 0]))
    assert (e.batch_id, e.run_key, e.timed_out) == ("b1", "b1|0:1", False)
    assert [r["index"] for r in e.result["results"]] == [0, 1, 2]
    assert e.result["success"] is True
    assert e.result["summary"] == {
        "total": 3, "successful": 3, "failed": 0, "cached": 0, "total_time_ms": 600.0, "average_time_ms": 200.0,
    }  # fmt: skip
    assert agg.stats["completed"] == 1


def test_results_carried_by_the_open_record_count(agg: BatchAggregator, feed: Feeder) -> None:
    """Invalid items and cache hits answered at dispatch come with ``open``; parts bring the rest."""
    feed(open_rec(total=3, results=[item(0, ok=False), item(2, cached=True)]))
    [e] = feed(part("0", [1]))
    s = e.result["summary"]
    assert (s["total"], s["successful"], s["failed"], s["cached"]) == (3, 2, 1, 1)
    assert e.result["success"] is False


def test_fully_cached_open_completes_the_run_by_itself(feed: Feeder) -> None:
    [e] = feed(open_rec(total=2, results=[item(1, cached=True), item(0, cached=True)], replay={"of": "x"}))
    assert [r["index"] for r in e.result["results"]] == [0, 1]
    assert e.result["summary"]["cached"] == 2
    assert e.result["replay"] == {"of": "x"}


def test_empty_batch_open_is_complete_and_not_successful(feed: Feeder) -> None:
    [e] = feed(open_rec(total=0))
    assert e.result["results"] == [] and e.result["success"] is False


def test_parts_before_open_are_kept(feed: Feeder) -> None:
    assert feed(part("0", [0, 1])) == []
    assert feed(part("1", [2])) == []
    [e] = feed(open_rec(total=3))
    assert e.result["summary"]["successful"] == 3


def test_duplicate_parts_and_opens_are_ignored(agg: BatchAggregator, feed: Feeder) -> None:
    feed(open_rec(total=2))
    feed(part("0", [0]))
    assert feed(part("0", [0])) == []  # the same chunk again (a redelivered request)
    assert feed(open_rec(total=2)) == []
    assert agg.stats["duplicates"] == 2
    [e] = feed(part("1", [1]))
    assert [r["index"] for r in e.result["results"]] == [0, 1]


def test_a_duplicate_chunk_does_not_overwrite_the_first_results(feed: Feeder) -> None:
    feed(open_rec(total=2))
    feed(part("0", [0]))
    dup = part("0", [0])
    dup["results"][0]["svg"] = "<svg>other</svg>"
    assert feed(dup) == []
    [e] = feed(part("1", [1]))
    assert e.result["results"][0]["svg"] == "<svg>0</svg>"


def test_late_records_of_a_pending_or_done_run_emit_nothing(agg: BatchAggregator, feed: Feeder) -> None:
    feed(open_rec(total=1))
    [e] = feed(part("0", [0]))
    assert feed(part("0", [0])) == []  # while the result awaits the broker's ack
    agg.emitted([e], 1000)
    assert feed(part("1", [0])) == []  # after
    assert feed(open_rec(total=1)) == []
    assert agg.stats["late"] == 3
    assert agg.due(10**9, always) == []


def test_a_new_run_of_the_same_batch_id_emits_again(feed: Feeder) -> None:
    feed(open_rec(total=1, run="0:1"))
    [first] = feed(part("0", [0], run="0:1"))
    feed(open_rec(total=1, run="0:7"))  # a replay or re-submission: a new run
    [second] = feed(part("0", [0], run="0:7"))
    assert (first.batch_id, second.batch_id) == ("b1", "b1")
    assert first.run_key != second.run_key


def test_rejected_record_emits_the_problems(agg: BatchAggregator, feed: Feeder) -> None:
    [e] = feed(rejected_rec())
    assert e.batch_id == "bad" and not e.timed_out
    assert e.result["success"] is False
    assert e.result["error"]["code"] == "invalid_batch"
    assert "at least one item" in e.result["error"]["message"]
    assert e.result["summary"]["total"] == 0
    agg.emitted([e], 1000)
    assert feed(rejected_rec()) == []  # redelivered: the same run, already answered


def test_the_runs_owner_comes_from_its_open_record_whatever_the_order(feed: Feeder) -> None:
    assert feed(part("0", [0, 1, 2])) == []  # the part first: it carries no owner
    [e] = feed({**open_rec(), "owner": "key-a"})
    assert e.owner == "key-a"
    [timed] = Feeder(BatchAggregator(timeout_s=TIMEOUT_S))({**open_rec(total=0), "owner": "key-b"})
    assert timed.owner == "key-b"


def test_a_rejected_runs_owner_and_a_run_without_one(feed: Feeder) -> None:
    [e] = feed({**rejected_rec(), "owner": "key-a"})
    assert e.owner == "key-a"
    [e] = feed(open_rec("b2", total=0))
    assert e.owner is None


@pytest.mark.parametrize("owner", [7, ["key-a"], "", "x" * 129, "line\nbreak"])
def test_an_owner_the_facade_would_not_write_is_ignored(feed: Feeder, owner: Any) -> None:
    [e] = feed({**open_rec(total=0), "owner": owner})
    assert e.owner is None


# -- deadlines --------------------------------------------------------------------------------------


def test_deadline_times_out_missing_items_only_when_caught_up(agg: BatchAggregator, feed: Feeder) -> None:
    feed(open_rec(total=3, deadline=5000))
    feed(part("0", [0]))
    assert agg.due(4999, always) == []
    assert agg.due(5000, never) == []  # reading a backlog: the missing parts may be ahead
    [e] = agg.due(5000, always)
    assert e.timed_out and agg.stats["timed_out"] == 1
    codes = [r.get("error", {}).get("code") for r in e.result["results"]]
    assert codes == [None, "timeout", "timeout"]
    assert [r["id"] for r in e.result["results"]] == ["i0", "i1", "i2"]
    assert "10 s" in e.result["results"][1]["error"]["message"]
    assert e.result["summary"]["failed"] == 2 and e.result["success"] is False
    assert agg.due(6000, always) == []  # pending: not again
    assert feed(part("1", [1, 2])) == []  # late parts of a timed-out run


def test_caught_up_is_asked_per_partition(agg: BatchAggregator, feed: Feeder) -> None:
    feed(open_rec("a", "0:1", total=1, deadline=5000), partition=0)
    feed(open_rec("b", "1:1", total=1, deadline=5000), partition=1)
    asked: list[int] = []

    def only_p1(p: int) -> bool:
        asked.append(p)
        return p == 1

    [e] = agg.due(5000, only_p1)
    assert e.batch_id == "b"
    assert sorted(asked) == [0, 1]


def test_deadline_of_the_open_record_wins_over_an_earlier_part(agg: BatchAggregator, feed: Feeder) -> None:
    feed(part("0", [0], deadline=2000))
    feed(open_rec(total=2, deadline=9000))
    assert agg.due(5000, always) == []
    assert len(agg.due(9000, always)) == 1


def test_orphan_parts_are_dropped_at_their_deadline(agg: BatchAggregator, feed: Feeder) -> None:
    feed(open_rec("a", "0:0", total=1))
    agg.emitted(feed(part("0", [0], "a", "0:0")), 1000)  # offsets 0, 1: "a" done
    feed(part("0", [0], run="9:9", deadline=3000))  # offset 2: a part whose open never comes
    assert agg.commit_points()[0][0] == 2  # the orphan holds the watermark until its deadline
    assert agg.due(2999, always) == []
    assert agg.due(3000, never) == [] and agg.commit_points()[0][0] == 2
    assert agg.due(3000, always) == []  # dropped, not emitted
    assert agg.stats["orphans"] == 1
    assert agg.commit_points()[0][0] == 3


def test_done_runs_are_forgotten_after_retention(feed: Feeder) -> None:
    agg = BatchAggregator(timeout_s=TIMEOUT_S, done_retention_ms=5000)
    feed.agg = agg
    feed(open_rec(total=1))
    [e] = feed(part("0", [0]))
    agg.emitted([e], 1000)
    agg.due(5999, always)
    assert "b1|0:1" in agg.runs
    agg.due(6000, always)
    assert "b1|0:1" not in agg.runs
    # a late part after that is an orphan: dropped at its deadline, never a second result
    assert feed(part("0", [0], deadline=7000)) == []
    assert agg.due(7000, always) == [] and agg.stats["orphans"] == 1


def test_a_late_record_of_a_retired_run_is_listed_in_the_commit_again(agg: BatchAggregator, feed: Feeder) -> None:
    feed(open_rec("a", "0:0", total=1))  # offset 0
    [e] = feed(part("0", [0], "a", "0:0"))  # offset 1
    agg.emitted([e], 1000)
    assert agg.commit_points()[0] == (2, METADATA_PREFIX)  # nothing above the watermark: "a" is retired
    feed(open_rec("b", "0:2", total=1))  # offset 2: "b" holds the watermark
    assert feed(open_rec("a", "0:0", total=1)) == []  # offset 3: "a"'s request read again, already emitted
    offset, metadata = agg.commit_points()[0]
    assert offset == 2 and decode_done(offset, metadata) == {3}  # a restart from 2 must not emit "a" again


def test_commit_points_look_only_at_runs_above_the_watermark(agg: BatchAggregator, feed: Feeder) -> None:
    for n in range(500):
        feed(open_rec(f"b{n}", f"0:{2 * n}", total=1))
        agg.emitted(feed(part("0", [0], f"b{n}", f"0:{2 * n}")), 1000)
        agg.commit_points()
    feed(open_rec("open", "0:1000", total=1))
    assert agg.commit_points()[0] == (1000, METADATA_PREFIX)
    assert len(agg.runs) == 501  # kept for late records until the retention ends
    assert list(agg._live) == ["open|0:1000"]  # what each commit iterates


def test_default_retention_outlives_the_timeout() -> None:
    agg = BatchAggregator(timeout_s=10)
    assert agg.done_retention_ms > 3 * 10_000


# -- bad records ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"\xff not json", id="not-json"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[1, 2]", id="not-an-object"),
        pytest.param(orjson.dumps({"batch_id": "b1", "run": "0:1"}), id="no-kind"),
        pytest.param(orjson.dumps({"kind": "part", "run": "0:1"}), id="no-batch-id"),
        pytest.param(orjson.dumps({"kind": "part", "batch_id": "b1"}), id="no-run"),
        pytest.param(orjson.dumps({**part("0", [0]), "deadline": "soon"}), id="bad-deadline"),
    ],
)
def test_unreadable_records_raise_and_the_offset_counts_as_read(agg: BatchAggregator, value: bytes) -> None:
    with pytest.raises(BadRecord, match="p2@7"):
        agg.add(2, 7, value, 1000)
    assert agg.stats["bad_records"] == 1
    assert agg.next_offset[2] == 8
    assert agg.commit_points()[2][0] == 8
    assert agg.runs == {}


def test_none_value_is_a_bad_record(agg: BatchAggregator) -> None:
    with pytest.raises(BadRecord):
        agg.add(0, 0, None, 1000)
    assert agg.commit_points()[0][0] == 1


@pytest.mark.parametrize(
    "record",
    [
        pytest.param({"kind": "bogus", "batch_id": "b1", "run": "0:1"}, id="unknown-kind"),
        pytest.param({k: v for k, v in part("0", [0]).items() if k != "results"}, id="part-without-results"),
        pytest.param({k: v for k, v in part("0", [0]).items() if k != "chunk"}, id="part-without-chunk"),
        pytest.param({k: v for k, v in open_rec().items() if k != "ids"}, id="open-without-ids"),
        pytest.param({k: v for k, v in rejected_rec().items() if k != "problems"}, id="rejected-without-problems"),
    ],
)
def test_malformed_records_of_a_known_shape_raise(agg: BatchAggregator, record: dict[str, Any]) -> None:
    with pytest.raises(BadRecord, match="p0@4"):
        agg.add(0, 4, orjson.dumps(record), 1000)
    assert agg.stats["bad_records"] == 1
    assert agg.next_offset[0] == 5


def test_a_bad_record_does_not_disturb_its_neighbours(feed: Feeder, agg: BatchAggregator) -> None:
    feed(open_rec(total=1))
    with pytest.raises(BadRecord):
        feed(b"garbage")
    [e] = feed(part("0", [0]))
    agg.emitted([e], 1000)
    assert agg.commit_points()[0][0] == 3


@pytest.mark.parametrize(
    "record",
    [
        pytest.param({"kind": "bogus", "batch_id": "b1", "run": "0:1"}, id="unknown-kind"),
        pytest.param({k: v for k, v in part("0", [0]).items() if k != "results"}, id="part-without-results"),
    ],
)
def test_a_malformed_record_does_not_hold_the_commit_point(agg: BatchAggregator, record: dict[str, Any]) -> None:
    with pytest.raises(BadRecord):
        agg.add(0, 4, orjson.dumps(record), 1000)
    assert agg.commit_points()[0][0] == 5


# -- commit points ----------------------------------------------------------------------------------


def complete(feed: Feeder, batch: str, run: str, partition: int = 0) -> list[Emission]:
    return feed(open_rec(batch, run, total=1, results=[item(0)]), partition)


def test_commit_point_is_the_low_watermark_of_interleaved_runs(agg: BatchAggregator, feed: Feeder) -> None:
    assert agg.commit_points() == {}  # nothing read: nothing to commit
    feed(open_rec("a", "0:0", total=1))  # 0
    feed(open_rec("b", "0:1", total=1))  # 1
    feed(open_rec("c", "0:2", total=1))  # 2
    [b] = feed(part("0", [0], "b", "0:1"))  # 3
    agg.emitted([b], 1000)
    off, meta = agg.commit_points()[0]
    assert off == 0 and decode_done(off, meta) == {1}
    [a] = feed(part("0", [0], "a", "0:0"))  # 4
    agg.emitted([a], 1000)
    off, meta = agg.commit_points()[0]
    # b's open (1) is below the watermark now; the parts of b (3) and a (4) above it are listed, so a
    # restarted sink reading from 2 knows them as done rather than as parts without an open record
    assert off == 2 and decode_done(off, meta) == {3, 4}
    [c] = feed(part("0", [0], "c", "0:2"))  # 5
    agg.emitted([c], 1000)
    assert agg.commit_points() == {0: (6, METADATA_PREFIX)}


def test_commit_points_are_per_partition(agg: BatchAggregator, feed: Feeder) -> None:
    feed(open_rec("a", "0:0", total=1), partition=0)
    agg.emitted(complete(feed, "b", "1:0", partition=1), 1000)
    agg.emitted(complete(feed, "c", "1:1", partition=1), 1000)
    feed(open_rec("d", "2:0", total=1), partition=2)
    agg.emitted(complete(feed, "e", "2:1", partition=2), 1000)
    points = agg.commit_points()
    assert {p: off for p, (off, _) in points.items()} == {0: 0, 1: 2, 2: 0}
    assert decode_done(0, points[2][1]) == {1}
    assert decode_done(0, points[0][1]) == set()


def test_a_pending_run_holds_the_watermark_until_emitted(agg: BatchAggregator, feed: Feeder) -> None:
    feed(open_rec("a", "0:0", total=1))
    [a] = feed(part("0", [0], "a", "0:0"))
    agg.emitted(complete(feed, "b", "0:2"), 1000)
    assert agg.commit_points()[0] == (0, encode_done(0, [2])[0])
    agg.emitted([a], 1000)
    assert agg.commit_points()[0] == (3, METADATA_PREFIX)


def test_a_timed_out_run_is_committed_only_once_emitted(agg: BatchAggregator, feed: Feeder) -> None:
    feed(open_rec(total=2, deadline=2000))
    [e] = agg.due(2000, always)
    assert agg.commit_points()[0][0] == 0
    agg.emitted([e], 2000)
    assert agg.commit_points()[0][0] == 1


def test_revoke_forgets_only_that_partition(agg: BatchAggregator, feed: Feeder) -> None:
    feed(open_rec("a", "0:0", total=1), partition=0)
    feed(open_rec("b", "1:0", total=1), partition=1)
    agg.revoke(0)
    assert set(agg.commit_points()) == {1}
    assert [r.batch_id for r in agg.runs.values()] == ["b"]


# -- metadata ---------------------------------------------------------------------------------------


def test_encode_decode_round_trip() -> None:
    offsets = {100, 101, 135, 135 + 36**2, 135 + 36**2 + 35}
    text, dropped = encode_done(100, offsets)
    assert dropped == 0
    assert text == METADATA_PREFIX + "0,1,y,100,z"  # base-36 deltas from the commit point
    assert decode_done(100, text) == offsets
    big = {7, 10**12}
    assert decode_done(7, encode_done(7, big)[0]) == big
    assert encode_done(5, []) == (METADATA_PREFIX, 0)
    assert encode_done(5, [9, 7, 9]) == (METADATA_PREFIX + "2,2", 0)


@pytest.mark.parametrize("metadata", [None, "", "done0:1,2", "something else", METADATA_PREFIX + "1,?"])
def test_unknown_or_corrupt_metadata_lists_nothing(metadata: str | None) -> None:
    assert decode_done(10, metadata) == set()


def test_results_positions_ride_after_the_offsets() -> None:
    text, dropped = encode_done(100, {101, 135}, results={3: 36, 0: 7})
    assert (text, dropped) == (METADATA_PREFIX + "1,y|r:0.7,3.10", 0)
    assert decode_done(100, text) == {101, 135}
    assert decode_results(text) == {0: 7, 3: 36}
    assert decode_results(encode_done(5, [], results={1: 0})[0]) == {1: 0}
    assert decode_results(encode_done(5, [6])[0]) == {}  # metadata of a sink that wrote no results yet


@pytest.mark.parametrize("metadata", [None, "", METADATA_PREFIX + "1,2", "other|r:0.7", METADATA_PREFIX + "|r:0.?"])
def test_metadata_without_readable_results_positions_names_none(metadata: str | None) -> None:
    assert decode_results(metadata) == {}


def test_truncation_keeps_the_results_positions() -> None:
    text, dropped = encode_done(0, range(1, 101), limit=40, results={0: 10**9})
    assert len(text) <= 40 and dropped > 0
    assert decode_results(text) == {0: 10**9}
    assert decode_done(0, text) == set(range(1, 101 - dropped))


def test_encode_truncates_at_the_limit_keeping_the_lowest() -> None:
    text, dropped = encode_done(0, range(1, 101), limit=40)
    assert len(text) <= 40
    kept = decode_done(0, text)
    assert dropped == 100 - len(kept) > 0
    assert kept == set(range(1, len(kept) + 1))


@given(st.integers(0, 10**12), st.sets(st.integers(0, 10**9), max_size=60))
def test_encode_decode_property(low: int, deltas: set[int]) -> None:
    offsets = {low + d for d in deltas}
    text, dropped = encode_done(low, offsets, limit=200)
    kept = decode_done(low, text)
    assert len(text) <= 200
    assert dropped == len(offsets) - len(kept)
    assert kept == set(sorted(offsets)[: len(kept)])


def test_commit_metadata_is_bounded_and_truncation_counted(agg: BatchAggregator, feed: Feeder) -> None:
    feed(open_rec("held", "0:0", total=1))  # holds the watermark at 0
    n = 2500
    for i in range(n):
        agg.emitted(complete(feed, f"c{i}", f"0:{i + 1}"), 1000)
    off, meta = agg.commit_points()[0]
    assert off == 0
    assert len(meta) <= METADATA_LIMIT
    listed = decode_done(off, meta)
    assert agg.stats["metadata_dropped"] == n - len(listed) > 0
    assert listed == set(range(1, len(listed) + 1))


# -- restarts ---------------------------------------------------------------------------------------


def records_one_partition() -> list[dict[str, Any]]:
    return [
        open_rec("a", "0:0", total=2),  # 0
        open_rec("b", "0:1", total=1),  # 1
        part("0", [0], "a", "0:0"),  # 2
        part("0", [0], "b", "0:1"),  # 3: b complete
        open_rec("c", "0:2", total=1, results=[item(0, cached=True)]),  # 4: c complete
        open_rec("d", "0:3", total=1),  # 5
        part("1", [1], "a", "0:0"),  # 6: a complete
        part("0", [0], "d", "0:3"),  # 7: d complete
    ]


def run_incarnation(agg: BatchAggregator, records: Sequence[dict[str, Any]], start: int, stop: int) -> list[Emission]:
    """The sink loop, one record per iteration: add, write, ``emitted``; returns what it wrote."""
    out: list[Emission] = []
    for offset in range(start, stop):
        emissions = agg.add(0, offset, orjson.dumps(records[offset]), 1000)
        agg.emitted(emissions, 1000)
        out += emissions
    return out


def test_restart_after_a_commit_emits_exactly_the_missing_runs() -> None:
    records = records_one_partition()
    first = BatchAggregator(timeout_s=TIMEOUT_S)
    before = run_incarnation(first, records, 0, 5)  # crash after offset 4
    assert [e.batch_id for e in before] == ["b", "c"]
    committed, meta = first.commit_points()[0]
    assert committed == 0  # "a" (offset 0) is still open
    assert decode_done(committed, meta) == {1, 4}

    second = BatchAggregator(timeout_s=TIMEOUT_S)
    second.assign(0, committed, meta)
    after = run_incarnation(second, records, committed, len(records))
    after += second.due(10**9, always)
    assert sorted(e.batch_id for e in after) == ["a", "d"]
    assert all(not e.timed_out for e in after)
    assert second.stats["late"] == 3  # b (listed) at offsets 1 and 3, c (listed) at 4
    assert second.commit_points()[0] == (8, METADATA_PREFIX)


def test_restart_lists_skipped_runs_again_until_passed() -> None:
    """A second crash before the re-read passed the runs emitted earlier still skips them."""
    records = records_one_partition()
    first = BatchAggregator(timeout_s=TIMEOUT_S)
    run_incarnation(first, records, 0, 5)
    committed, meta = first.commit_points()[0]

    second = BatchAggregator(timeout_s=TIMEOUT_S)
    second.assign(0, committed, meta)
    assert run_incarnation(second, records, committed, 1) == []
    off2, meta2 = second.commit_points()[0]
    assert off2 == 0 and decode_done(off2, meta2) == {1, 4}

    third = BatchAggregator(timeout_s=TIMEOUT_S)
    third.assign(0, off2, meta2)
    after = run_incarnation(third, records, off2, len(records))
    assert sorted(e.batch_id for e in after) == ["a", "d"]


def test_crash_between_ack_and_commit_emits_again() -> None:
    records = records_one_partition()
    first = BatchAggregator(timeout_s=TIMEOUT_S)
    run_incarnation(first, records, 0, 4)
    committed, meta = first.commit_points()[0]  # b emitted and committed (listed)
    assert [e.batch_id for e in run_incarnation(first, records, 4, 5)] == ["c"]  # commit lost
    second = BatchAggregator(timeout_s=TIMEOUT_S)
    second.assign(0, committed, meta)
    after = run_incarnation(second, records, committed, len(records))
    assert sorted(e.batch_id for e in after) == ["a", "c", "d"]  # c twice overall: at least once


def test_assign_without_a_commit_reads_from_the_start() -> None:
    records = records_one_partition()
    agg = BatchAggregator(timeout_s=TIMEOUT_S)
    agg.assign(0, None, METADATA_PREFIX + "1")  # metadata without an offset means nothing
    assert sorted(e.batch_id for e in run_incarnation(agg, records, 0, len(records))) == ["a", "b", "c", "d"]


def test_commits_name_the_results_positions_of_the_metadata_or_else_the_end_at_assignment() -> None:
    agg = BatchAggregator(timeout_s=TIMEOUT_S)
    agg.assign(0, 5, encode_done(5, [], results={0: 40})[0], results_end=90)
    agg.assign(1, 5, encode_done(5, [])[0], results_end=70)  # named none: the end at assignment
    agg.assign(2, None, None, results_end=10)  # no commit yet
    for p in (0, 1, 2):
        agg.apply(p, 5 if p < 2 else 0, open_rec(f"held{p}", f"{p}:0", total=1), 1000)
    assert {p: decode_results(m) for p, (_, m) in agg.commit_points().items()} == {0: {0: 40}, 1: {1: 70}, 2: {2: 10}}
    done = agg.apply(1, 6, open_rec("b", "1:1", total=1, results=[item(0)]), 1000)
    agg.emitted(done, 1000, [(1, 75)])
    assert decode_results(agg.commit_points()[1][1]) == {1: 76}


def test_a_run_whose_result_was_found_written_is_not_emitted_again() -> None:
    agg = BatchAggregator(timeout_s=TIMEOUT_S)
    agg.assign(0, 0, encode_done(0, [], results={0: 3})[0], written={"a|0:0", "elsewhere|3:9"})
    feed = Feeder(agg)
    feed(open_rec("held", "0:5", total=1))  # 0: holds the commit point
    assert feed(open_rec("a", "0:0", total=0)) == []  # 1: complete, but its result is on the topic already
    assert agg.runs["a|0:0"].done_at is not None and agg.written[0] == {"elsewhere|3:9"}
    assert [e.batch_id for e in feed(open_rec("a", "0:1", total=0))] == ["a"]  # 2: another run of the id
    assert decode_done(*agg.commit_points()[0]) == {1}  # listed like a run this sink emitted


def test_assign_replaces_what_was_there(agg: BatchAggregator, feed: Feeder) -> None:
    feed(open_rec("a", "0:0", total=1))
    agg.assign(0, 5, encode_done(5, [6])[0])
    assert agg.runs == {} and agg.commit_points() == {}
    assert agg.skip[0] == {6}


def test_restart_does_not_emit_a_run_whose_part_preceded_its_open() -> None:
    records = [
        part("0", [0], "b", "0:1"),  # 0: a part before its open (the open's send was retried)
        open_rec("a", "0:0", total=1),  # 1
        open_rec("b", "0:1", total=2, results=[item(1)]),  # 2: b complete
    ]
    first = BatchAggregator(timeout_s=TIMEOUT_S)
    assert [e.batch_id for e in run_incarnation(first, records, 0, 3)] == ["b"]
    committed, meta = first.commit_points()[0]
    assert committed == 1
    second = BatchAggregator(timeout_s=TIMEOUT_S)
    second.assign(0, committed, meta)
    after = run_incarnation(second, records, committed, 3) + second.due(10**9, always)
    assert [e.batch_id for e in after] == ["a"]


def test_restart_does_not_emit_a_redelivered_run_again() -> None:
    records = [
        open_rec("r", "0:5", total=1),  # 0: first delivery
        part("0", [0], "r", "0:5"),  # 1: r complete
        open_rec("s", "0:6", total=1),  # 2: s still in flight: holds the commit point
        open_rec("r", "0:5", total=1),  # 3: the intake crashed before its commit: r again, same run
        part("0", [0], "r", "0:5"),  # 4
        part("0", [0], "s", "0:6"),  # 5
    ]
    first = BatchAggregator(timeout_s=TIMEOUT_S)
    assert [e.batch_id for e in run_incarnation(first, records, 0, 5)] == ["r"]
    assert first.stats["late"] == 2
    committed, meta = first.commit_points()[0]
    assert committed == 2
    second = BatchAggregator(timeout_s=TIMEOUT_S)
    second.assign(0, committed, meta)
    after = run_incarnation(second, records, committed, len(records))
    assert [e.batch_id for e in after] == ["s"]


def test_done_runs_above_a_held_watermark_stay_listed() -> None:
    agg = BatchAggregator(timeout_s=TIMEOUT_S)
    feed = Feeder(agg)
    feed(open_rec("held", "0:0", total=1))  # its part is still ahead in a backlog
    agg.emitted(complete(feed, "b", "0:1"), 1000)
    assert decode_done(*agg.commit_points()[0]) == {1}
    agg.due(1000 + agg.done_retention_ms, never)  # still reading the backlog after the retention
    off, meta = agg.commit_points()[0]
    assert off == 0 and decode_done(off, meta) == {1}


# -- restart contract, property -----------------------------------------------------------------------


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[tuple[int, dict[str, Any]]], dict[str, tuple[int, set[int]]]]:
    """Several runs' records, interleaved, on 1-3 partitions; each run's ``open`` comes first.

    Returns the records in reading order as (partition, record) and, per run key, its item count and
    the indexes that no record carries (they time out)."""
    n_partitions = draw(st.integers(1, 3))
    runs: list[list[dict[str, Any]]] = []
    expect: dict[str, tuple[int, set[int]]] = {}
    partitions: list[int] = []
    for r in range(draw(st.integers(1, 6))):
        batch, run = f"b{r % 3}", f"run{r}"  # batch ids repeat: re-submissions are other runs
        total = draw(st.integers(0, 4))
        # each item: answered in the open (-1), by chunk 0..2, or never (3: its part is lost)
        where = draw(st.lists(st.integers(-1, 3), min_size=total, max_size=total))
        records = [open_rec(batch, run, total=total, results=[item(i) for i, w in enumerate(where) if w == -1])]
        for chunk in sorted({w for w in where if w >= 0}):
            rec = part(str(chunk), [i for i, w in enumerate(where) if w == chunk], batch, run)
            records.append(rec)
            if draw(st.booleans()):
                records.append(rec)  # a duplicate, e.g. a redelivered request's part
        expect[f"{batch}|{run}"] = (total, {i for i, w in enumerate(where) if w == 3})
        records = [r for r in records if not (r["kind"] == "part" and r["chunk"] == "3")]
        runs.append(records)
        partitions.append(draw(st.integers(0, n_partitions - 1)))
    order: list[tuple[int, dict[str, Any]]] = []
    cursors = [0] * len(runs)
    while True:
        live = [i for i, recs in enumerate(runs) if cursors[i] < len(recs)]
        if not live:
            return order, expect
        i = draw(st.sampled_from(live))
        order.append((partitions[i], runs[i][cursors[i]]))
        cursors[i] += 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=streams(), data=st.data())
def test_restart_contract(
    stream: tuple[list[tuple[int, dict[str, Any]]], dict[str, tuple[int, set[int]]]], data: st.DataObject
) -> None:
    """Crash after some iterations (add, write, ``emitted``, commit), restart from the commit, repeatedly.

    Crashes right after a commit: every run is emitted exactly once overall. A crash that loses the last
    commit (after ``emitted``): at least once; a run emitted in that last iteration is emitted twice only when
    the restarted sink does not read the results written since the commit before (``assign(..., written)``),
    or there was no commit before on its partition."""
    order, expect = stream
    offsets: list[int] = []
    seen: Counter[int] = Counter()
    for p, _ in order:
        offsets.append(seen[p])
        seen[p] += 1
    crashes = sorted(data.draw(st.lists(st.integers(0, len(order)), max_size=3), label="crash points"))
    lose_last_commit = data.draw(st.booleans(), label="crash between emitted and commit")
    read_tail = data.draw(st.booleans(), label="the restarted sink reads the results written since the commit")
    log: list[str] = []  # the results topic (one partition): each result's run key, as its x-run header names it

    written: Counter[str] = Counter()
    results: dict[str, list[dict[str, Any]]] = {}
    committed: dict[int, tuple[int, str]] = {}
    maybe_twice: set[str] = set()
    for crash in [*crashes, None]:  # None: the last incarnation reads to the end and is not killed
        agg = BatchAggregator(timeout_s=TIMEOUT_S)
        for p in range(3):
            off, meta = committed.get(p, (None, None))
            since = min(decode_results(meta).values(), default=len(log)) if off is not None else len(log)
            agg.assign(p, off, meta, log[since:] if read_tail else (), results_end=len(log))
        for pos, ((p, record), offset) in enumerate(zip(order, offsets, strict=True)):
            if crash is not None and pos >= crash:
                break
            if offset < (committed.get(p) or (0, ""))[0]:
                continue
            out = agg.apply(p, offset, record, 1000)
            acks = [(0, len(log) + i) for i in range(len(out))]
            log += [e.run_key for e in out]
            agg.emitted(out, 1000, acks)
            for e in out:
                written[e.run_key] += 1
                results.setdefault(e.run_key, []).append(e.result)
            last_committed = dict(committed)
            committed.update(agg.commit_points())
            if lose_last_commit and crash is not None and pos == crash - 1:
                if not (read_tail and p in last_committed):  # the commit before named where the results ended
                    maybe_twice |= {e.run_key for e in out}
                committed = last_committed  # the commit of this last iteration never reached the broker
        if crash is None:  # caught up everywhere, past every deadline
            out = agg.due(10**9, always)
            agg.emitted(out, 10**9)
            for e in out:
                written[e.run_key] += 1
                results.setdefault(e.run_key, []).append(e.result)

    assert set(written) == set(expect)
    if lose_last_commit:
        assert {k for k, n in written.items() if n > 1} <= maybe_twice
    else:
        assert all(n == 1 for n in written.values()), written
    for key, (total, lost) in expect.items():
        for result in results[key]:
            assert result["summary"]["total"] == total
            failed = {r["index"] for r in result["results"] if not r["success"]}
            assert failed == lost  # nothing read before a crash is lost by the restart
