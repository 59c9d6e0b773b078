"""``OffsetMarks``: the sink's own record of the next items offset it expects per partition."""

from __future__ import annotations

from sink.offsets import Admission, OffsetMarks, is_mark_key, mark_key


def test_first_record_of_a_partition_is_processed_then_the_mark_follows() -> None:
    store: dict[str, object] = {}
    marks = OffsetMarks(store)
    assert marks.admit(3, 40) == Admission("process", None)  # no mark yet: a new consumer group
    marks.processed(3, 40)
    assert store == {mark_key(3): 41} and is_mark_key(mark_key(3)) and not is_mark_key("b1|0:1")
    assert marks.admit(3, 41) == Admission("process", 41)
    assert marks.admit(0, 7) == Admission("process", None)  # partitions are independent


def test_redelivered_records_are_duplicates_and_skipped_ones_a_gap() -> None:
    marks = OffsetMarks({mark_key(1): 10})
    assert marks.admit(1, 9) == Admission("duplicate", 10)
    assert marks.admit(1, 14) == Admission("gap", 10)  # 10..13 never processed: read again from 10
    assert marks.admit(1, 10) == Admission("process", 10)
