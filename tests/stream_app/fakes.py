"""Small fakes of the aiokafka consumer and producer for unit tests of the intake and the sink loop.

Only what ``Intake`` and ``Sink`` use is faked. Nothing here waits on a clock: a test waits for an
event it can name (a record sent, a loop iteration finished), with a guard against hanging forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from barcodeflow.kafka import Committer

GUARD_S = 10.0  # a broken test fails after this instead of hanging; never reached by a passing test


async def until(predicate: Callable[[], bool], changed: asyncio.Condition, what: str) -> None:
    async def wait() -> None:
        async with changed:
            await changed.wait_for(predicate)

    try:
        await asyncio.wait_for(wait(), GUARD_S)
    except TimeoutError:
        raise AssertionError(f"gave up waiting for {what}") from None


@dataclass
class Record:
    """What the code under test reads of an aiokafka ``ConsumerRecord``."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def records(topic: str, partition: int, values: Iterable[Any], *, start: int = 0) -> list[Record]:
    """Records at consecutive offsets; dict values are JSON-encoded, their ``batch_id`` is the key."""
    out = []
    for i, v in enumerate(values):
        raw = v if isinstance(v, bytes) else orjson.dumps(v)
        key = v.get("batch_id", "").encode() if isinstance(v, dict) else None
        out.append(Record(topic, partition, start + i, key, raw))
    return out


def batch(recs: Iterable[Record]) -> dict[TopicPartition, list[Record]]:
    out: dict[TopicPartition, list[Record]] = {}
    for r in recs:
        out.setdefault(TopicPartition(r.topic, r.partition), []).append(r)
    return out


class FakeConsumer:
    """``getmany`` hands out what the test ``push``es, one push per call, and otherwise waits for one;
    ``commit`` records what it is given (or raises ``commit_error`` once), after ``commit_gate`` is set
    if there is one. ``committer``: the loop's ``Committer``, whose commits in flight ``turn`` waits for."""

    def __init__(self, topic: str, partitions: Iterable[int] = (0,)) -> None:
        self.topic = topic
        self.assigned = {TopicPartition(topic, p) for p in partitions}
        self.highwaters: dict[int, int] = {}
        self.starts: dict[int, int] = {}
        self.commits: list[dict[TopicPartition, Any]] = []
        self.commit_error: BaseException | None = None
        self.commit_gate: asyncio.Event | None = None
        self.commits_begun = 0
        self.polls = 0
        self.max_records: list[int | None] = []
        self._queue: asyncio.Queue[tuple[int, dict[TopicPartition, list[Record]]]] = asyncio.Queue()
        self._pushed = 0  # sequence number of the last push
        self._served = 0  # ... of the last batch getmany returned
        self._came_back = 0  # ... of the last batch served when getmany was called again
        self.changed = asyncio.Condition()
        self.committer: Committer | None = None

    def push(self, recs: Iterable[Record] = ()) -> None:
        self._pushed += 1
        self._queue.put_nowait((self._pushed, batch(recs)))

    async def getmany(self, *_: Any, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        async with self.changed:
            self.polls += 1
            self._came_back = self._served
            self.changed.notify_all()
        self.max_records.append(max_records)
        self._served, out = await self._queue.get()
        return out

    async def turn(self) -> None:
        """Let the loop finish every batch pushed so far plus one empty iteration (the one that commits
        what finished meanwhile), come back to ``getmany``, and its commits land."""
        self.push()
        seq = self._pushed
        await until(lambda: self._came_back >= seq, self.changed, "the loop to come back to getmany")
        if self.committer is not None:
            await asyncio.wait_for(self.committer.settled(), GUARD_S)

    async def polled(self, n: int) -> None:
        await until(lambda: self.polls >= n, self.changed, f"getmany call #{n}")

    async def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits_begun += 1
        if self.commit_gate is not None:
            await self.commit_gate.wait()
        if self.commit_error is not None:
            exc, self.commit_error = self.commit_error, None
            raise exc
        self.commits.append(dict(offsets))

    def committed(self, partition: int = 0) -> Any:
        """The last offset (or ``OffsetAndMetadata``) committed for ``partition``, or None."""
        for c in reversed(self.commits):
            for tp, off in c.items():
                if tp.partition == partition:
                    return off
        return None

    def committed_offsets(self, partition: int = 0) -> list[int]:
        out = []
        for c in self.commits:
            for tp, off in c.items():
                if tp.partition == partition:
                    out.append(off.offset if isinstance(off, OffsetAndMetadata) else off)
        return out

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters.get(tp.partition)

    async def position(self, tp: TopicPartition) -> int:
        """Where reading starts in a partition without a commit: ``starts``, else 0."""
        return self.starts.get(tp.partition, 0)


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None
    ack: asyncio.Future[Any] = field(repr=False)
    result: Ack | None = None  # what ``ack`` resolves to

    def json(self) -> Any:
        return orjson.loads(self.value)


@dataclass(frozen=True)
class Ack:
    """What the code under test reads of an aiokafka ``RecordMetadata``."""

    partition: int
    offset: int


class FakeProducer:
    """``send`` records the record and returns its delivery future: acknowledged at once, or, with
    ``auto_ack=False``, only when the test calls ``ack``. With ``offsets=True`` an ack says where the
    record went (partition 0, its offset among the records sent to its topic); otherwise it is None."""

    def __init__(self, *, auto_ack: bool = True, offsets: bool = False) -> None:
        self.auto_ack = auto_ack
        self.offsets = offsets
        self.sent: list[Sent] = []
        self.changed = asyncio.Condition()

    async def send(
        self, topic: str, value: bytes, key: bytes | None = None, headers: list[tuple[str, bytes]] | None = None
    ) -> asyncio.Future[Any]:
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        result = Ack(0, len(self.on(topic))) if self.offsets else None
        async with self.changed:
            self.sent.append(Sent(topic, key, value, headers, ack, result))
            self.changed.notify_all()
        if self.auto_ack:
            ack.set_result(result)
        return ack

    async def wait_sent(self, n: int) -> None:
        await until(lambda: len(self.sent) >= n, self.changed, f"{n} records sent")

    def ack(self) -> int:
        """Acknowledge every record sent so far; returns how many were waiting."""
        n = 0
        for s in self.sent:
            if not s.ack.done():
                s.ack.set_result(s.result)
                n += 1
        return n

    def on(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]

    def unacked(self) -> list[Sent]:
        return [s for s in self.sent if not s.ack.done()]
