"""``StallWatch``: which partitions stopped moving (pure decision, no Kafka)."""

from __future__ import annotations

from stream_app.stall import StallWatch


def test_a_partition_with_records_waiting_and_no_progress_is_stuck_after_the_delay() -> None:
    w = StallWatch(after_s=10)
    assert w.check(0, {"p0": (12, 44, None)}) == []
    assert w.check(9.9, {"p0": (12, 44, None)}) == []
    assert w.check(10, {"p0": (12, 44, None)}) == ["p0"]
    assert w.stalls == 1
    # the re-read gets the same delay again before it counts as stuck once more
    assert w.check(15, {"p0": (12, 44, None)}) == []
    assert w.check(20, {"p0": (12, 44, None)}) == ["p0"]


def test_progress_of_the_commit_or_of_the_record_in_processing_resets_the_clock() -> None:
    w = StallWatch(after_s=10)
    w.check(0, {"moving": (1, 50, 1), "working": (5, 50, 5), "idle": (50, 50, None), "empty": (None, 0, None)})
    assert (
        w.check(9, {"moving": (2, 50, 2), "working": (5, 50, 6), "idle": (50, 50, None), "empty": (None, 0, None)})
        == []
    )
    assert (
        w.check(18, {"moving": (3, 50, 3), "working": (5, 50, 7), "idle": (50, 50, None), "empty": (None, 0, None)})
        == []
    )
    # nothing to read: never stuck, however long
    assert w.check(100, {"idle": (50, 50, None), "empty": (None, 0, None)}) == []


def test_a_record_taken_but_never_acknowledged_is_stuck_too() -> None:
    w = StallWatch(after_s=10)
    w.check(0, {"p": (11, 44, 11)})
    assert w.check(9, {"p": (11, 44, 11)}) == []
    assert w.check(10, {"p": (11, 44, 11)}) == ["p"]


def test_never_committed_partition_with_records_counts_from_zero() -> None:
    w = StallWatch(after_s=5)
    w.check(0, {"p": (None, 3, None)})
    assert w.check(5, {"p": (None, 3, None)}) == ["p"]


def test_unassigned_partitions_are_forgotten_and_reset_clears_all() -> None:
    w = StallWatch(after_s=5)
    w.check(0, {"a": (1, 9, None), "b": (1, 9, None)})
    w.check(3, {"a": (1, 9, None)})  # b revoked
    assert w.check(6, {"a": (1, 9, None), "b": (1, 9, None)}) == ["a"]  # b starts over
    w.reset()  # e.g. a rebalance
    assert w.check(20, {"a": (1, 9, None)}) == []
