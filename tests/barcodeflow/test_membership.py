"""Static group membership (``GROUP_INSTANCE_ID``) on the real broker: a member that comes back under its id
takes its partitions back without a rebalance of the others; with dynamic membership the same restart
moves partitions (the control that shows the test can tell the two apart). Two live sinks with one id
take the partitions from each other, and one of them stops with an error naming the id; so does one of two
live workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from barcodeflow.kafka import MembershipConflict, Rebalance, consumer_config, group_config, member_instance_id
from barcodeflow.settings import Settings
from sink.app import run_sink
from stream_app.topics import ensure_topics
from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.integration

PARTITIONS = 4


class Member:
    def __init__(self, settings: Settings, topic: str, group: str, name: str) -> None:
        self.events: list[tuple[str, frozenset[int]]] = []
        self.consumer = AIOKafkaConsumer(
            **consumer_config(settings, f"membership-{name}"), **group_config(settings), group_id=group
        )
        self.consumer.subscribe([topic], listener=Rebalance(self._revoked, self._assigned))
        self._poll: asyncio.Task[None] | None = None

    async def _revoked(self, tps: set[TopicPartition]) -> None:
        self.events.append(("revoked", frozenset(tp.partition for tp in tps)))

    async def _assigned(self, tps: set[TopicPartition]) -> None:
        self.events.append(("assigned", frozenset(tp.partition for tp in tps)))

    def partitions(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    async def start(self) -> None:
        await self.consumer.start()

        async def poll() -> None:
            while True:
                await self.consumer.getmany(timeout_ms=100)

        self._poll = asyncio.create_task(poll())

    async def stop(self) -> None:
        if self._poll is not None:
            self._poll.cancel()
            await asyncio.gather(self._poll, return_exceptions=True)
        await self.consumer.stop()


async def until(pred: object, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():  # type: ignore[operator]
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def topic(settings: Settings, name: str) -> AsyncIterator[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, PARTITIONS, 1)])
        yield name
    finally:
        await admin.delete_topics([name])
        await admin.close()


async def restart_one(settings: Settings, static: bool) -> tuple[set[int], set[int], list[tuple[str, frozenset[int]]]]:
    """Members a and b share a topic; a stops (no LeaveGroup when static: as after a SIGKILL) and starts
    again under the same name. Returns a's partitions before and after, and b's rebalance events after."""
    s = settings.with_(group_instance_id="")
    group = f"{settings.app_id}-membership-{'static' if static else 'dynamic'}"

    def settings_of(name: str) -> Settings:
        return s.with_(group_instance_id=member_instance_id("test", name)) if static else s

    async with topic(settings, f"{settings.topic_prefix}membership.{'s' if static else 'd'}") as t:
        a = Member(settings_of("a"), t, group, "a")
        b = Member(settings_of("b"), t, group, "b")
        await a.start()
        await until(lambda: len(a.partitions()) == PARTITIONS)
        await b.start()
        await until(lambda: b.partitions() and len(a.partitions() | b.partitions()) == PARTITIONS
                    and not a.partitions() & b.partitions())  # fmt: skip
        before = a.partitions()
        seen = len(b.events)
        await a.stop()
        a2 = Member(settings_of("a"), t, group, "a")
        await a2.start()
        await until(lambda: a2.partitions() and len(a2.partitions() | b.partitions()) == PARTITIONS
                    and not a2.partitions() & b.partitions())  # fmt: skip
        await asyncio.sleep(2.0)  # room for a rebalance that would follow the rejoin
        after, events = a2.partitions(), b.events[seen:]
        await a2.stop()
        await b.stop()
        return before, after, events


@pytest.mark.timeout(90)
async def test_a_static_member_restarts_without_a_rebalance(isolated_settings: Settings) -> None:
    before, after, b_events = await restart_one(isolated_settings, static=True)
    assert after == before
    assert b_events == [], f"the other member was rebalanced: {b_events}"


@pytest.mark.timeout(90)
async def test_a_dynamic_member_restart_rebalances_the_others(isolated_settings: Settings) -> None:
    _, _, b_events = await restart_one(isolated_settings, static=False)
    assert any(kind == "revoked" for kind, _ in b_events), b_events


@pytest.mark.timeout(120)
@pytest.mark.parametrize("second_after_s", [0.0, 3.0], ids=["together", "second-joins-a-running-group"])
async def test_two_live_sinks_with_one_id_stop_loudly(
    isolated_settings: Settings, caplog: pytest.LogCaptureFixture, second_after_s: float
) -> None:
    """A misconfiguration (one GROUP_INSTANCE_ID for two live processes) must not go unnoticed: the two take
    the partitions from each other every heartbeat (or the broker fences one); either way a sink's loop
    ends with an error and the log names the id."""
    s = isolated_settings.with_(group_instance_id="same-sink")
    async with topic(isolated_settings, s.topics.items):
        stops = [asyncio.Event(), asyncio.Event()]
        sinks = [asyncio.create_task(run_sink(s, stops[0]))]
        await asyncio.sleep(second_after_s)
        sinks.append(asyncio.create_task(run_sink(s, stops[1])))
        try:
            done, _ = await asyncio.wait(sinks, timeout=90, return_when=asyncio.FIRST_COMPLETED)
            assert done, "both sinks ran on under one GROUP_INSTANCE_ID"
            errors = [t.exception() for t in done]
        finally:
            for stop in stops:
                stop.set()
            await asyncio.gather(*sinks, return_exceptions=True)
    assert all(isinstance(e, MembershipConflict | KafkaError) for e in errors), errors
    assert "GROUP_INSTANCE_ID='same-sink'" in caplog.text


@pytest.mark.timeout(180)
@pytest.mark.parametrize("second_after_s", [0.0, 8.0], ids=["together", "second-joins-a-running-group"])
async def test_two_live_workers_with_one_id_stop_loudly(
    isolated_settings: Settings, tmp_path: Path, second_after_s: float
) -> None:
    """The intake's side of the same misconfiguration, with real worker processes: two workers under one
    GROUP_INSTANCE_ID take the request partitions from each other (or one is fenced); a worker ends with a
    non-zero exit and its log names the id."""
    s = isolated_settings.with_(group_instance_id="same-worker", worker_start_timeout_s=20.0)
    await ensure_topics(s)
    pipe = Pipeline(s, tmp_path)
    workers = [pipe.add("worker-a", "worker")]
    try:
        await asyncio.sleep(second_after_s)
        workers.append(pipe.add("worker-b", "worker"))
        deadline = time.monotonic() + 120
        while all(w.alive() for w in workers) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        ended = [w for w in workers if not w.alive()]
        assert ended, f"both workers ran on under one GROUP_INSTANCE_ID:\n{pipe.logs()}"
        for w in ended:
            assert w.returncode() != 0, w.tail()
            assert "GROUP_INSTANCE_ID='same-worker'" in w.tail(200), w.tail()
    finally:
        pipe.stop()
