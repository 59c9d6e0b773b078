"""aiokafka client settings shared by every Kafka client of barcodeflow, the one way to write a record
whose acknowledgement gates a commit, and the one way to commit what those acknowledgements allow."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import OffsetAndMetadata

from barcodeflow.aio import cancel_and_wait
from barcodeflow.settings import Settings
from schemas.errors import BarcodeflowError

log = logging.getLogger(__name__)


def producer_config(settings: Settings, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": client_id,
        "enable_idempotence": True,
        "acks": "all",
        "compression_type": settings.compression if settings.compression != "none" else None,
        "max_request_size": settings.max_message_bytes,
        # no added wait: a record goes out at once when the connection is idle, and records produced while a
        # request is in flight are batched into the next one anyway (every hop of a batch pays the linger)
        "linger_ms": 0,
        "max_batch_size": 1024 * 1024,
        "request_timeout_ms": 10_000,
    }


def consumer_config(settings: Settings, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": client_id,
        "enable_auto_commit": False,
        "max_partition_fetch_bytes": settings.max_message_bytes,
        "fetch_max_bytes": max(settings.max_message_bytes * 2, 52_428_800),
        # the broker answers a fetch as soon as one byte is there (fetch.min.bytes=1): this bounds only an
        # idle wait, and at 50 ms an idle worker and sink spent 0.03 and 0.02 cores on empty fetches
        "fetch_max_wait_ms": 500,
        "request_timeout_ms": 10_000,
    }


def group_config(settings: Settings) -> dict[str, Any]:
    """A consumer in a group whose offsets our own code commits (worker intake, sink)."""
    return {
        "auto_offset_reset": "earliest",
        # a killed member's partitions move after ~6 s (the broker's group.min.session.timeout.ms);
        # BATCH_TIMEOUT_S must exceed that failover time plus rendering. A static member (GROUP_INSTANCE_ID)
        # that restarts within that time gets its partitions back as soon as it joins, with no rebalance;
        # it sends no LeaveGroup when it stops, so a member stopped for good hands over after the same ~6 s.
        "group_instance_id": settings.group_instance_id or None,
        "session_timeout_ms": 6_000,
        "heartbeat_interval_ms": 1_000,
        "max_poll_interval_ms": 300_000,
    }


def member_instance_id(base: str, name: str) -> str:
    """The GROUP_INSTANCE_ID of the child ``name`` (``worker-2``, ``sink``) of a launcher whose own id, or
    host name, is ``base``: stable across restarts of that child, distinct between children."""
    return f"{base}-{name}" if base else name


def membership_hint(settings: Settings) -> str:
    """What to check when a group member's loop fails: static members take the partitions from each other
    when two live processes share an id (see ``MembershipConflict``)."""
    if not settings.group_instance_id:
        return ""
    return (
        f" (GROUP_INSTANCE_ID={settings.group_instance_id!r}: if another live process of this role uses the same"
        " id, the two take the partitions from each other; give each process its own)"
    )


class MembershipConflict(BarcodeflowError):
    """Another live process is using this static member's GROUP_INSTANCE_ID.

    The broker then hands the id to whichever process joined last. aiokafka's heartbeat does not send the
    instance id, so the other one is told UNKNOWN_MEMBER_ID, rejoins, and takes the id back: the two ping-pong
    the partitions every heartbeat, and only a rare race in SyncGroup ends one of them with FENCED_INSTANCE_ID
    (reported as ``UnknownError``). That churn is what gives the conflict away."""


# A static member is assigned partitions again only when the group changes (a member joins, leaves or is
# fenced). Two processes under one id do it about once per heartbeat (1 s); even a launcher starting
# eight processes at once stays well below ten assignments in thirty seconds.
CHURN_LIMIT = 10
CHURN_WINDOW_S = 30.0


async def send_until_acked(
    producer: AIOKafkaProducer,
    topic: str,
    value: bytes,
    *,
    key: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
    what: str = "record",
    max_backoff_s: float = 5.0,
) -> Any:
    """Send and wait for the broker's ack, retrying until it comes: callers commit their input only
    after this returns, so an unavailable broker delays work and never drops it. Returns the ack (the
    record's ``RecordMetadata``: partition, offset)."""
    backoff = 0.25
    while True:
        try:
            fut = await producer.send(topic, value, key=key, headers=headers)
            return await fut
        except KafkaError as exc:
            log.warning("%s to %s not acknowledged (%r); retrying in %.2f s", what, topic, exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)


class Committer:
    """Commits a consumer's offsets beside the loop that reads, never in its way.

    The group coordinator holds every offset commit before it writes it (``group.coordinator.append.linger.ms``,
    5 ms in Kafka 4.1; ~7 ms per commit measured here), and a loop that awaited its commit held every record that
    arrived meanwhile for that long: a sink that committed after each result added ~3 ms to each result of a
    client sending batches back to back. So the loop calls ``request()``, which starts a commit of ``points()``
    in a task of its own, or, while one is in flight (or waiting for ``min_interval_s`` since the last one),
    has one follow with the points of the moment it is sent: requests coalesce, and what is committed is
    always what ``points()`` allowed when the commit was sent (offsets whose output the broker acknowledged).

    A commit that fails because a rebalance took the partitions is skipped (the new owner reads from the last
    commit; the next request retries what is still ours). Any other failure of a commit in the background (a
    Kafka error, or an error of ``points()``) is raised by the loop's next ``check()``, as an awaited commit's
    would have been. ``commit()`` commits now,
    after the one in flight (stop, revocation)."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topic: str,
        points: Callable[[], Mapping[int, int | OffsetAndMetadata]],
        *,
        what: str,
        min_interval_s: float = 0.0,
    ) -> None:
        self.consumer = consumer
        self.topic = topic
        self.points = points
        self.what = what
        self.min_interval_s = min_interval_s
        self.sent: dict[int, int | OffsetAndMetadata] = {}  # per partition, the last point the broker accepted
        self.failure: Exception | None = None
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._pausing = False  # the task waits out min_interval_s: no commit in flight
        self._last_at = -math.inf

    def request(self) -> None:
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._background(), name=f"{self.what}-commit")

    def check(self) -> None:
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure

    async def settled(self) -> None:
        """Wait until no commit is in flight or asked for."""
        while self._task is not None and not self._task.done():
            await asyncio.wait({self._task})

    async def commit(self, partitions: Collection[int] | None = None) -> None:
        """Commit now: after the commit in flight, instead of one waiting for its interval."""
        if self._task is not None and self._pausing:
            await cancel_and_wait(self._task)
        await self.settled()
        await self._commit(partitions)

    def forget(self, partition: int) -> None:
        self.sent.pop(partition, None)

    async def _background(self) -> None:
        try:
            while True:
                pause = self._last_at + self.min_interval_s - time.monotonic()
                if pause > 0:
                    self._pausing = True
                    try:
                        await asyncio.sleep(pause)
                    finally:
                        self._pausing = False
                self._again = False
                self._last_at = time.monotonic()
                await self._commit(None)
                if not self._again:
                    return
        except Exception as exc:  # noqa: BLE001 - not dropped: the loop's next check() raises it
            self.failure = exc

    async def _commit(self, partitions: Collection[int] | None) -> None:
        todo = {
            TopicPartition(self.topic, p): point
            for p, point in self.points().items()
            if self.sent.get(p) != point and (partitions is None or p in partitions)
        }
        if not todo:
            return
        try:
            await self.consumer.commit(todo)
        except (CommitFailedError, IllegalStateError) as exc:
            log.info("%s: commit skipped (%r); the partitions' new owner reads from the last commit", self.what, exc)
            return
        self.sent.update({tp.partition: point for tp, point in todo.items()})


class Rebalance(ConsumerRebalanceListener):
    """A rebalance listener that hands both events to the loop owning the consumer (the intake, the sink).

    For a static member (``instance_id`` set) it also watches for assignment churn: the loop calls
    ``check()`` every iteration, and it raises ``MembershipConflict`` once ``CHURN_LIMIT`` assignments fell
    within ``CHURN_WINDOW_S``."""

    def __init__(
        self,
        on_revoked: Callable[[set[TopicPartition]], Awaitable[None]],
        on_assigned: Callable[[set[TopicPartition]], Awaitable[None]],
        *,
        instance_id: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._revoked = on_revoked
        self._assigned = on_assigned
        self._instance_id = instance_id
        self._clock = clock
        self._assignments: deque[float] = deque(maxlen=CHURN_LIMIT)
        self.conflict: MembershipConflict | None = None

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.note_assignment()
        await self._assigned(assigned)

    def note_assignment(self) -> None:
        if not self._instance_id or self.conflict is not None:
            return
        now = self._clock()
        self._assignments.append(now)
        if len(self._assignments) == CHURN_LIMIT and now - self._assignments[0] <= CHURN_WINDOW_S:
            self.conflict = MembershipConflict(
                f"GROUP_INSTANCE_ID {self._instance_id!r}: {CHURN_LIMIT} assignments within"
                f" {now - self._assignments[0]:.1f} s; another live process uses this id"
            )
            log.error("%s", self.conflict)

    def check(self) -> None:
        """Raise ``MembershipConflict`` if one was seen (the loop's crash then names the id)."""
        if self.conflict is not None:
            raise self.conflict


async def topic_partitions(settings: Settings, topic: str) -> set[int]:
    """The partitions of ``topic`` that have a leader, from the cluster's metadata; empty while the topic
    does not exist (or was just created). A consumer without a subscription has no public way to ask."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=10_000)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    for t in described:
        if t.get("topic") == topic and not t.get("error_code"):
            return {int(p["partition"]) for p in t.get("partitions", ()) if int(p.get("leader", -1)) >= 0}
    return set()
