"""``StallWatch``: which partitions stopped moving (pure decision, no Kafka)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any, NamedTuple

from stream_app.stall import StallWatch, watch_for_stalls


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


def test_an_idle_app_with_records_waiting_is_stuck_sooner() -> None:
    """A restarted consumer that delivers nothing: no record in processing, no commit anywhere."""
    w: StallWatch[str] = StallWatch(after_s=20, idle_after_s=5)
    w.check(0, {"a": (10, 55, None), "b": (10, 44, None), "done": (7, 7, None)})
    assert w.check(4, {"a": (10, 55, None), "b": (10, 44, None), "done": (7, 7, None)}) == []
    assert w.check(5, {"a": (10, 55, None), "b": (10, 44, None), "done": (7, 7, None)}) == ["a", "b"]


def test_a_busy_app_gets_the_long_delay() -> None:
    w: StallWatch[str] = StallWatch(after_s=20, idle_after_s=5)
    w.check(0, {"gap": (10, 55, None), "busy": (3, 90, 3), "moving": (1, 90, None)})
    for t in range(1, 20):  # another partition's record in processing, another's commit moving
        assert w.check(t, {"gap": (10, 55, None), "busy": (3, 90, 3 + t), "moving": (1 + t, 90, None)}) == []
    assert w.check(20, {"gap": (10, 55, None), "busy": (3, 90, 23), "moving": (21, 90, None)}) == ["gap"]


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


class FakeTP(NamedTuple):
    topic: str
    partition: int


class FakeMessage(NamedTuple):
    tp: FakeTP
    offset: int


class FakeConsumer:
    """What ``watch_for_stalls`` reads of Faust's consumer (unit test only)."""

    def __init__(self) -> None:
        self.flow_active = True
        self.tps = [FakeTP("items", 0), FakeTP("items", 1), FakeTP("other", 0)]
        self.ends = {tp: 40 for tp in self.tps}
        self._committed_offset = {tp: 10 for tp in self.tps}
        self.unacked: set[Any] = set()
        self.seeks = 0
        self.sought: list[dict[FakeTP, int]] = []
        self._read_offset: dict[FakeTP, int] = {}
        self.resumed: list[FakeTP] = []
        self.fail: Exception | None = None

    def assignment(self) -> list[FakeTP]:
        return self.tps

    async def highwaters(self, *tps: FakeTP) -> dict[FakeTP, int]:
        if self.fail:
            raise self.fail
        return {tp: self.ends[tp] for tp in tps}

    async def seek_wait(self, offsets: dict[FakeTP, int]) -> None:
        assert not self.flow_active  # the flow is paused around the seek
        self.seeks += 1
        self.sought.append(offsets)

    async def earliest_offsets(self, *tps: FakeTP) -> dict[FakeTP, int]:
        return dict.fromkeys(tps, 0)

    def stop_flow(self) -> None:
        self.flow_active = False

    def resume_flow(self) -> None:
        self.flow_active = True

    def resume_partitions(self, tps: list[FakeTP]) -> None:
        self.resumed.extend(tps)


class FakeApp:
    def __init__(self) -> None:
        self.consumer = FakeConsumer()
        self.rebalancing = False
        self.in_recovery = False
        self.conf = SimpleNamespace(id="bf-test")
        self.timers: list[Callable[[], Awaitable[None]]] = []

    def timer(self, interval: float, name: str) -> Callable[[Any], Any]:
        def register(fn: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
            self.timers.append(fn)
            return fn

        return register


async def test_the_timer_seeks_back_once_a_watched_partition_stalls() -> None:
    app = FakeApp()
    clock = [0.0]
    watch = watch_for_stalls(app, ["items"], after_s=10, clock=lambda: clock[0])
    [tick] = app.timers
    c = app.consumer
    items1 = FakeTP("items", 1)
    c.unacked = {FakeMessage(items1, 10)}  # taken, never acknowledged
    for t in (0, 5, 9.9):
        clock[0] = t
        await tick()
    assert c.seeks == 0
    clock[0] = 10
    await tick()
    assert c.seeks == 1 and watch.stalls == 2  # both items partitions; "other" is not watched
    assert sorted(c.resumed) == [FakeTP("items", 0), items1]

    # a rebalance resets the clocks; a failing broker call is logged, never raised (it would crash the app)
    app.rebalancing = True
    clock[0] = 30
    await tick()
    app.rebalancing = False
    c.fail = OSError("broker gone")
    await tick()
    c.fail = None
    clock[0] = 35
    await tick()
    assert c.seeks == 1
    clock[0] = 45
    await tick()
    assert c.seeks == 2
