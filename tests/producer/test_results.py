"""``ResultRouter`` (matching result records to waiters by key) and ``ResultListener`` on a real topic."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from barcodeflow.settings import Settings
from producer import BatchProducer, ResultListener
from producer.results import ResultRouter
from tests.producer.conftest import FakePipeline

LOGGER = "producer.results"


def result_doc(batch_id: str) -> dict[str, Any]:
    return {
        "batch_id": batch_id,
        "success": True,
        "results": [{"index": 0, "id": None, "success": True, "svg": "<svg/>", "cached": False}],
        "summary": {
            "total": 1,
            "successful": 1,
            "failed": 0,
            "cached": 0,
            "total_time_ms": 1.0,
            "average_time_ms": 1.0,
        },
    }


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


# -- ResultRouter --------------------------------------------------------------------------------


async def test_waiter_gets_the_records_bytes_matched_by_key() -> None:
    router = ResultRouter()
    fut = router.expect("b-1")
    other = router.expect("b-2")
    value = b'{"batch_id": "not-what-the-key-says",   "success": true}'
    await router.route(b"b-1", value)
    assert fut.done() and fut.result() == value  # as it is: the key decides, the value is not read
    assert not other.done()
    assert (router.received, router.delivered, router.waiting) == (1, 1, 1)


async def test_every_waiter_of_a_batch_gets_it() -> None:
    router = ResultRouter()
    futs = [router.expect("same"), router.expect("same")]
    await router.route(b"same", b"{}")
    assert [f.result() for f in futs] == [b"{}", b"{}"]
    assert router.waiting == 0


async def test_a_record_nobody_waits_for_is_not_read(caplog: pytest.LogCaptureFixture) -> None:
    """Not JSON, but nobody here waits for it: nothing to report, nothing skipped."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    router = ResultRouter()
    fut = router.expect("mine")
    await router.route(b"someone-elses", b"\xff\x00 not json at all")
    assert not fut.done()
    assert (router.received, router.delivered, router.skipped) == (1, 0, 0)
    assert warnings_of(caplog) == []


async def test_a_waited_record_is_handed_over_undecoded() -> None:
    """The waiter gets the bytes whatever they are; reading them is the waiter's business."""
    router = ResultRouter()
    fut = router.expect("mine")
    await router.route(b"mine", b"\xff not json")
    assert fut.result() == b"\xff not json"


async def test_callbacks_see_every_record_by_key_undecoded() -> None:
    router = ResultRouter()
    seen: list[tuple[str, bytes]] = []
    router.add_callback(lambda bid, raw: seen.append((bid, raw)))

    async def async_cb(bid: str, raw: bytes) -> None:
        seen.append((f"async:{bid}", raw))

    router.add_callback(async_cb)
    await router.route("ünï/1".encode(), b"\x00garbage")
    assert seen == [("ünï/1", b"\x00garbage"), ("async:ünï/1", b"\x00garbage")]


async def test_a_failing_callback_does_not_stop_delivery(caplog: pytest.LogCaptureFixture) -> None:
    router = ResultRouter()
    seen: list[str] = []

    def broken(bid: str, raw: bytes) -> None:
        raise RuntimeError("callback bug")

    router.add_callback(broken)
    router.add_callback(lambda bid, raw: seen.append(bid))
    fut = router.expect("b")
    await router.route(b"b", b"{}")
    assert fut.result() == b"{}"
    assert seen == ["b"]
    assert any("result callback failed for batch b" in r.getMessage() for r in caplog.records)


async def test_a_waiter_for_an_owner_is_not_handed_another_owners_result() -> None:
    router = ResultRouter()
    mine = router.expect("b", owner="key-b")
    anyone = router.expect("b")
    await router.route(b"b", b'{"of": "a"}', [("x-owner", b"key-a")])  # key-a's batch under the same id
    assert anyone.result() == b'{"of": "a"}'
    assert not mine.done() and router.waiting == 1
    await router.route(b"b", b'{"of": "b"}', [("x-owner", b"key-b")])
    assert mine.result() == b'{"of": "b"}' and router.waiting == 0
    waiting, anyone = router.expect("c", owner="key-b"), router.expect("c")
    await router.route(b"c", b"{}")  # without the header: another publisher's batch of the same id
    assert anyone.result() == b"{}"
    assert not waiting.done() and router.waiting == 1


async def test_callbacks_asking_for_headers_get_them() -> None:
    router = ResultRouter()
    seen: list[tuple[Any, ...]] = []
    router.add_callback(lambda bid, raw, headers: seen.append((bid, raw, headers)), with_headers=True)
    router.add_callback(lambda bid, raw: seen.append((bid, raw)))
    await router.route(b"b", b"{}", [("x-owner", b"key-a")])
    await router.route(b"c", b"{}")
    assert seen == [("b", b"{}", [("x-owner", b"key-a")]), ("b", b"{}"), ("c", b"{}", ()), ("c", b"{}")]


async def test_a_key_that_is_not_utf8_is_skipped_for_callbacks(caplog: pytest.LogCaptureFixture) -> None:
    router = ResultRouter()
    seen: list[str] = []
    router.add_callback(lambda bid, raw: seen.append(bid))
    await router.route(b"\xff\xfe", b"{}")
    await router.route(b"fine", b"{}")
    assert seen == ["fine"]
    assert router.skipped == 1
    assert len(warnings_of(caplog)) == 1 and "not UTF-8" in warnings_of(caplog)[0]


async def test_a_record_without_key_is_matched_by_its_batch_id(caplog: pytest.LogCaptureFixture) -> None:
    router = ResultRouter()
    fut = router.expect("k-1")
    value = orjson.dumps(result_doc("k-1"))
    await router.route(None, value)
    assert fut.result() == value
    assert (router.keyless, router.skipped) == (1, 0)
    assert len(warnings_of(caplog)) == 1 and "without a key" in warnings_of(caplog)[0]


@pytest.mark.parametrize(
    "value",
    [b"not json", b"[1, 2]", b'{"batch_id": 5}', b'{"batch_id": ""}', b'{"no": "id"}', b"\xff"],
)
async def test_a_record_without_key_or_readable_batch_id_is_skipped(
    value: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    router = ResultRouter()
    seen: list[str] = []
    router.add_callback(lambda bid, raw: seen.append(bid))
    fut = router.expect("waiting")
    await router.route(None, value)
    await router.route(b"waiting", b"{}")  # and the next record is delivered as usual
    assert fut.result() == b"{}"
    assert seen == ["waiting"]
    assert (router.received, router.keyless, router.skipped) == (2, 1, 1)
    (warning,) = warnings_of(caplog)
    assert "without a key and without a readable batch_id" in warning


async def test_a_record_without_key_is_not_read_when_nobody_listens(caplog: pytest.LogCaptureFixture) -> None:
    router = ResultRouter()
    await router.route(None, b"not json")
    assert (router.received, router.keyless, router.skipped) == (1, 0, 0)
    assert warnings_of(caplog) == []


async def test_bad_records_are_logged_sparingly(caplog: pytest.LogCaptureFixture) -> None:
    router = ResultRouter()
    router.expect("someone")
    for _ in range(2500):
        await router.route(None, b"junk")
    assert router.skipped == 2500
    logged = warnings_of(caplog)
    counts = [m.rsplit("(", 1)[-1] for m in logged]
    assert counts == ["1 skipped so far)", "1001 skipped so far)", "2001 skipped so far)"]


async def test_deletion_markers_are_no_results() -> None:
    router = ResultRouter()
    fut = router.expect("gone")
    await router.route(b"gone", None)
    assert not fut.done()
    assert router.received == 0


async def test_forget_and_cancel_all_cancel_the_waiters() -> None:
    router = ResultRouter()
    a, b = router.expect("a"), router.expect("b")
    router.forget("a")
    assert a.cancelled() and not b.done()
    await router.route(b"a", b"{}")  # nobody waits any more
    assert router.delivered == 0
    router.cancel_all()
    assert b.cancelled() and router.waiting == 0


# -- ResultListener on the broker ----------------------------------------------------------------


@pytest.mark.integration
async def test_listener_hands_over_the_records_bytes(
    topic_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    s = topic_settings
    listener = ResultListener(s, client_id=f"test-results-{uuid.uuid4().hex[:6]}")
    await listener.start()
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap_servers)
    await producer.start()
    try:
        keyed = orjson.dumps(result_doc("keyed"), option=orjson.OPT_INDENT_2)
        keyless = orjson.dumps(result_doc("keyless"))
        waiters = {"keyed": listener.expect("keyed"), "keyless": listener.expect("keyless")}
        # one partition, so the records arrive in this order and the last one marks the end
        for key, value in ((b"unwaited", b"\x00 not json"), (None, keyless), (b"keyed", keyed)):
            await producer.send_and_wait(s.topics.results, value, key=key, partition=0)
        got = dict(zip(waiters, await asyncio.wait_for(asyncio.gather(*waiters.values()), 30), strict=True))
    finally:
        await producer.stop()
        await listener.stop()
    assert got == {"keyed": keyed, "keyless": keyless}
    assert (listener.received, listener.delivered, listener.keyless, listener.skipped) == (3, 2, 1, 0)
    (warning,) = warnings_of(caplog)  # the keyless record, not the unreadable one nobody waited for
    assert "without a key (batch keyless" in warning


@pytest.mark.integration
async def test_listener_hands_callbacks_the_records_headers(topic_settings: Settings) -> None:
    s = topic_settings
    listener = ResultListener(s, client_id=f"test-results-{uuid.uuid4().hex[:6]}")
    seen: dict[str, Any] = {}
    listener.add_callback(lambda bid, raw, headers: seen.setdefault(bid, list(headers)), with_headers=True)
    await listener.start()
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap_servers)
    await producer.start()
    try:
        mine = listener.expect("owned", owner="key-a")
        value = orjson.dumps(result_doc("owned"))
        await producer.send_and_wait(s.topics.results, value, key=b"owned", headers=[("x-owner", b"key-a")])
        assert await asyncio.wait_for(mine, 30) == value
    finally:
        await producer.stop()
        await listener.stop()
    assert seen == {"owned": [("x-owner", b"key-a")]}


@pytest.mark.integration
async def test_submit_and_wait_returns_the_decoded_result(fake_pipeline: FakePipeline) -> None:
    s = fake_pipeline.settings
    listener = ResultListener(s, client_id=f"test-results-{uuid.uuid4().hex[:6]}")
    await listener.start()
    try:
        async with BatchProducer(s) as prod:
            doc = await prod.submit_and_wait(listener, {"barcodes": [{"barcode_type": "qr", "data": "x"}]}, 30)
    finally:
        await listener.stop()
    (req,) = fake_pipeline.requests
    assert doc["batch_id"] == req["batch_id"]
    assert doc["summary"]["total"] == 1
    assert doc["results"][0]["svg"] == "<svg><!-- x --></svg>"
