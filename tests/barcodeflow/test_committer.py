"""``Committer``: commits beside the loop, coalesced, and failures handed back to the loop."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaConnectionError

from barcodeflow.kafka import Committer
from tests.stream_app.fakes import GUARD_S, FakeConsumer

TOPIC = "t"


@pytest.fixture
def points() -> dict[int, int]:
    return {0: 1}


@pytest.fixture
def consumer() -> FakeConsumer:
    return FakeConsumer(TOPIC, partitions=(0, 1))


@pytest.fixture
def committer(consumer: FakeConsumer, points: dict[int, int]) -> Committer:
    return Committer(consumer, TOPIC, lambda: dict(points), what="test")  # type: ignore[arg-type]


def tp(p: int) -> TopicPartition:
    return TopicPartition(TOPIC, p)


async def hold_first_commit(consumer: FakeConsumer, committer: Committer) -> asyncio.Event:
    """Start a commit and keep it in flight (the coordinator's linger) until the returned event is set."""
    consumer.commit_gate = asyncio.Event()
    committer.request()
    await asyncio.sleep(0)
    assert consumer.commits_begun == 1
    return consumer.commit_gate


async def test_requests_during_a_commit_coalesce_into_one_more_with_the_latest_points(
    consumer: FakeConsumer, committer: Committer, points: dict[int, int]
) -> None:
    gate = await hold_first_commit(consumer, committer)
    for offset in (2, 3, 4):  # the loop goes on while the first commit waits for the coordinator
        points[0] = offset
        committer.request()
    gate.set()
    await asyncio.wait_for(committer.settled(), GUARD_S)
    assert consumer.commits == [{tp(0): 1}, {tp(0): 4}]


async def test_an_unchanged_point_is_not_committed_again(
    consumer: FakeConsumer, committer: Committer, points: dict[int, int]
) -> None:
    committer.request()
    await committer.settled()
    committer.request()
    await committer.settled()
    points[1] = 7
    committer.request()
    await committer.settled()
    assert consumer.commits == [{tp(0): 1}, {tp(1): 7}]
    committer.forget(0)  # a partition assigned back: its point is committed again
    await committer.commit()
    assert consumer.commits[-1] == {tp(0): 1}


async def test_commit_waits_for_the_one_in_flight_and_commits_only_the_partitions_asked(
    consumer: FakeConsumer, committer: Committer, points: dict[int, int]
) -> None:
    gate = await hold_first_commit(consumer, committer)
    points.update({0: 5, 1: 9})
    revoking = asyncio.create_task(committer.commit({1}))
    await asyncio.sleep(0)
    assert not revoking.done() and consumer.commits_begun == 1
    gate.set()
    await asyncio.wait_for(revoking, GUARD_S)
    assert consumer.commits == [{tp(0): 1}, {tp(1): 9}]


async def one_failed_commit(consumer: FakeConsumer, committer: Committer, error: Exception) -> None:
    consumer.commit_error = error
    committer.request()
    await asyncio.wait_for(committer.settled(), GUARD_S)


async def test_a_commit_lost_to_a_rebalance_is_skipped_and_the_next_request_retries_it(
    consumer: FakeConsumer, committer: Committer
) -> None:
    await one_failed_commit(consumer, committer, CommitFailedError("rebalanced"))
    committer.check()  # not the loop's failure: the partitions' new owner reads from the last commit
    assert consumer.commits == []
    committer.request()
    await committer.settled()
    assert consumer.commits == [{tp(0): 1}]


async def test_any_other_failure_is_raised_by_the_loops_next_check_once(
    consumer: FakeConsumer, committer: Committer
) -> None:
    await one_failed_commit(consumer, committer, KafkaConnectionError("coordinator gone"))
    with pytest.raises(KafkaConnectionError):
        committer.check()
    committer.check()


async def test_commits_wait_out_the_interval_and_commit_does_not(
    consumer: FakeConsumer, points: dict[int, int]
) -> None:
    committer = Committer(consumer, TOPIC, lambda: dict(points), what="test", min_interval_s=3600.0)  # type: ignore[arg-type]
    committer.request()
    await asyncio.sleep(0)
    assert consumer.commits == [{tp(0): 1}]  # the first one at once
    points[0] = 2
    committer.request()
    points[0] = 3
    committer.request()
    await asyncio.sleep(0)
    assert consumer.commits == [{tp(0): 1}]  # the next one waits out the interval ...
    await asyncio.wait_for(committer.commit(), GUARD_S)  # ... unless committed now (stop, revocation)
    assert consumer.commits == [{tp(0): 1}, {tp(0): 3}]
    await asyncio.wait_for(committer.settled(), GUARD_S)  # nothing left waiting
    assert len(consumer.commits) == 2


async def test_an_error_of_the_points_is_raised_by_the_loops_next_check(consumer: FakeConsumer) -> None:
    def broken() -> dict[int, int]:
        raise TypeError("points broke")

    committer = Committer(consumer, TOPIC, broken, what="test")  # type: ignore[arg-type]
    committer.request()
    await committer.settled()
    with pytest.raises(TypeError, match="points broke"):
        committer.check()
