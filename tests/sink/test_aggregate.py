from __future__ import annotations

from typing import Any

import pytest

from sink.aggregate import DONE_RETENTION_MS, ORPHAN_TTL_MS, BatchAggregator, rejected, summarize


def open_rec(total: int = 3, *, run: str = "0:1", received: int = 1000, deadline: int = 11_000) -> dict[str, Any]:
    return {
        "kind": "open", "batch_id": "b1", "run": run, "total": total, "ids": [f"i{n}" for n in range(total)],
        "received_at": received, "deadline": deadline, "replay": None,
    }  # fmt: skip


def part(chunk: str, indexes: list[int], *, run: str = "0:1", cached: bool = False) -> dict[str, Any]:
    return {
        "kind": "part", "batch_id": "b1", "run": run, "chunk": chunk,
        "results": [{"index": i, "id": f"i{i}", "success": True, "cached": cached, "svg": f"<svg>{i}</svg>"}
                    for i in indexes],
    }  # fmt: skip


class Sink(BatchAggregator):
    """The aggregator as the sink drives it: every emitted result is written, then finalized."""

    def add(self, record: dict[str, Any], now_ms: int) -> list[dict[str, Any]]:  # type: ignore[override]
        out = super().add(record, now_ms)
        self.finalize()
        return out


@pytest.fixture
def agg() -> BatchAggregator:
    return Sink({}, timeout_s=10)


def test_emits_once_complete_in_request_order(agg: BatchAggregator) -> None:
    assert agg.add(open_rec(), 1000) == []
    assert agg.add(part("1", [2]), 1500) == []
    [result] = agg.add(part("0", [1, 0]), 1600)
    assert [r["index"] for r in result["results"]] == [0, 1, 2]
    assert result["success"] is True
    assert result["summary"] == {
        "total": 3, "successful": 3, "failed": 0, "cached": 0, "total_time_ms": 600.0, "average_time_ms": 200.0,
    }  # fmt: skip


def test_parts_before_open_are_kept(agg: BatchAggregator) -> None:
    assert agg.add(part("0", [0, 1, 2]), 900) == []
    [result] = agg.add(open_rec(), 1000)
    assert result["summary"]["successful"] == 3


def test_duplicate_and_late_parts_are_ignored(agg: BatchAggregator) -> None:
    agg.add(open_rec(2), 1000)
    agg.add(part("0", [0]), 1100)
    assert agg.add(part("0", [0]), 1200) == []  # redelivered
    assert agg.ignored_duplicates == 1
    assert len(agg.add(part("1", [1]), 1300)) == 1
    assert agg.add(part("1", [1]), 1400) == []  # late, after emission
    assert agg.ignored_late == 1


def test_deadline_fails_missing_items_with_timeout(agg: BatchAggregator) -> None:
    agg.add(open_rec(3, deadline=5000), 1000)
    agg.add(part("0", [0]), 1100)
    assert agg.due(4999) == []
    assert agg.due(5000) == [("b1", "0:1")]
    assert agg.add({"kind": "expire", "batch_id": "b1", "run": "0:1"}, 4000) == []  # early expire: no-op
    [result] = agg.add({"kind": "expire", "batch_id": "b1", "run": "0:1"}, 5000)
    codes = [r.get("error", {}).get("code") for r in result["results"]]
    assert codes == [None, "timeout", "timeout"]
    assert result["results"][2]["id"] == "i2"
    assert result["success"] is False and result["summary"]["failed"] == 2
    assert agg.add(part("1", [1, 2]), 6000) == []  # late parts of an emitted batch


def test_runs_are_independent_and_done_markers_expire(agg: BatchAggregator) -> None:
    agg.add(open_rec(1, run="0:1"), 1000)
    assert agg.add(part("0", [0], run="0:1"), 1000)
    # a replay or re-submission of the same batch_id is a new run and emits again
    agg.add(open_rec(1, run="0:7"), 2000)
    assert agg.add(part("0", [0], run="0:7", cached=True), 2000)[0]["summary"]["cached"] == 1
    assert ("b1", "0:1") in agg.due(1000 + DONE_RETENTION_MS)
    agg.add({"kind": "expire", "batch_id": "b1", "run": "0:1"}, 1000 + DONE_RETENTION_MS)
    assert not any(k.endswith("0:1") for k in agg.store)


def test_orphan_parts_are_dropped(agg: BatchAggregator) -> None:
    agg.add(part("0", [0], run="9:9"), 0)
    assert agg.due(ORPHAN_TTL_MS) == [("b1", "9:9")]
    agg.add({"kind": "expire", "batch_id": "b1", "run": "9:9"}, ORPHAN_TTL_MS)
    assert agg.store == {}


def test_unknown_kind_is_an_error(agg: BatchAggregator) -> None:
    with pytest.raises(ValueError, match="unknown record kind"):
        agg.add({"kind": "bogus", "batch_id": "b1", "run": "r"}, 0)


def test_rejected_batch_lists_problems() -> None:
    res = rejected("b9", [{"loc": "barcodes", "message": "101 items exceed the maximum batch size of 100"}])
    assert res["success"] is False
    assert res["error"]["code"] == "invalid_batch"
    assert "101 items" in res["error"]["message"]
    assert res["summary"]["total"] == 0


def test_summary_of_empty() -> None:
    assert summarize([], 0)["average_time_ms"] == 0.0


def test_a_crash_before_the_result_is_written_emits_it_again() -> None:
    """``finalize`` only after the write: a redelivered last part re-emits the same result."""
    agg = BatchAggregator({}, timeout_s=10)
    agg.add(open_rec(2), 1000)
    agg.add(part("0", [0]), 1100)
    [first] = agg.add(part("1", [1]), 1200)
    # the sink died before the result was acknowledged: finalize() never ran, the record comes again
    agg = BatchAggregator(dict(agg.store), timeout_s=10)
    [again] = agg.add(part("1", [1]), 1300)
    assert again["results"] == first["results"]
    agg.finalize()
    assert agg.add(part("1", [1]), 1400) == [] and agg.ignored_late == 1
    assert not any("|part|" in k for k in agg.store)  # parts dropped once done
