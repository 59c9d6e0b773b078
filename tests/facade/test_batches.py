"""POST /v1/batches and GET /v1/batches/{id} against fake Kafka clients."""

from __future__ import annotations

import time
import uuid

import orjson
import pytest

from facade.auth import key_id
from tests.facade.conftest import Harness, MakeHarness, batch, redis_available, requires_redis
from tests.facade.fakes import FakeListener, FakePublisher, result_for


def test_sync_submit_returns_the_result(harness: Harness) -> None:
    r = harness.client.post("/v1/batches", json=batch(3), headers=harness.h())
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["success"] is True
    assert doc["summary"]["total"] == 3
    assert doc["summary"]["successful"] == 3
    assert [it["id"] for it in doc["results"]] == ["i0", "i1", "i2"]
    assert set(doc["summary"]) == {
        "total",
        "successful",
        "failed",
        "cached",
        "total_time_ms",
        "average_time_ms",
    }
    # the published request carries the assigned batch_id
    assert harness.publisher.sent[0]["batch_id"] == doc["batch_id"]
    # the same replica answers GET at once (no GET-after-POST race)
    g = harness.client.get(f"/v1/batches/{doc['batch_id']}", headers=harness.h())
    assert g.status_code == 200
    assert g.json() == doc
    assert harness.listener.waiting == 0


def test_item_failures_are_a_200_with_per_item_errors(harness: Harness) -> None:
    tag = uuid.uuid4().hex  # uncached: the fake pipeline answers
    body = {"barcodes": [{"barcode_type": "qr", "data": f"ok {tag}"}, {"barcode_type": "qr", "data": "FAIL"}]}
    r = harness.client.post("/v1/batches", json=body, headers=harness.h())
    assert r.status_code == 200
    assert r.json()["summary"]["failed"] == 1
    assert r.json()["results"][1]["error"]["code"] == "invalid_data"
    assert 'barcodeflow_facade_item_errors_total{code="invalid_data"} 1.0' in harness.client.get("/metrics").text


def test_answers_are_the_records_bytes(make_harness: MakeHarness) -> None:
    """POST and GET answer with the result record's value as it is: not decoded and encoded again."""
    lis = FakeListener()
    pub = FakePublisher(lis, encode=lambda doc: orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    hx = make_harness(listener=lis, publisher=pub)
    r = hx.client.post("/v1/batches", json=batch(2), headers=hx.h())
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    bid = r.json()["batch_id"]
    record = pub.answers[bid]
    assert b"\n  " in record  # a form a re-encoding would not keep
    assert r.content == record
    g = hx.client.get(f"/v1/batches/{bid}", headers=hx.h())
    assert g.status_code == 200
    assert g.content == record
    # later records of the batch (a replay, a duplicate after a crash): GET serves the last one
    again = orjson.dumps({**orjson.loads(record), "replay": {"source_offset": 7}})
    hx.client.portal.call(lis.deliver_raw, bid.encode(), again, pub.headers[0])  # with the request's x-owner
    assert hx.client.get(f"/v1/batches/{bid}", headers=hx.h()).content == again


def test_wait_false_answers_202_then_get_200(harness: Harness) -> None:
    r = harness.client.post("/v1/batches?wait=false", json=batch(2), headers=harness.h())
    assert r.status_code == 202
    bid = r.json()["batch_id"]
    assert r.json() == {"batch_id": bid, "status": "pending"}
    assert r.headers["location"] == f"/v1/batches/{bid}"
    deadline = time.monotonic() + 5
    while True:
        g = harness.client.get(r.headers["location"], headers=harness.h())
        if g.status_code == 200 or time.monotonic() > deadline:
            break
        assert g.status_code == 202
        time.sleep(0.05)
    assert g.status_code == 200
    assert g.json()["batch_id"] == bid


def test_timeout_gives_202_and_the_result_comes_later(make_harness: MakeHarness) -> None:
    hx = make_harness(mode="drop")
    t0 = time.monotonic()
    r = hx.client.post("/v1/batches?timeout=0.3", json=batch(1), headers=hx.h())
    assert r.status_code == 202
    assert 0.25 < time.monotonic() - t0 < 3
    bid = r.json()["batch_id"]
    assert hx.client.get(f"/v1/batches/{bid}", headers=hx.h()).status_code == 202
    doc = result_for(hx.publisher.sent[0])
    hx.client.portal.call(hx.listener.deliver, doc, hx.publisher.headers[0])  # the pipeline answers late
    deadline = time.monotonic() + 5
    while (g := hx.client.get(f"/v1/batches/{bid}", headers=hx.h())).status_code == 202:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert g.status_code == 200
    assert g.json() == doc


def test_a_batch_is_published_with_its_owner_and_its_result_comes_back_with_it(harness: Harness) -> None:
    r = harness.client.post("/v1/batches", json=batch(1), headers=harness.h())
    assert r.status_code == 200, r.text
    assert harness.publisher.headers == [[("x-owner", key_id(harness.key).encode())]]  # the key's id, not the key


def test_a_waiting_post_is_not_answered_with_another_keys_result_of_its_id(make_harness: MakeHarness) -> None:
    hx = make_harness(mode="drop")
    bid = f"order-{uuid.uuid4().hex[:8]}"
    others = orjson.dumps({**result_for({"batch_id": bid, "barcodes": [{"id": "x"}]}), "leak": True})
    mine = orjson.dumps(result_for({"batch_id": bid, "barcodes": [{"id": "i0"}]}))

    async def answer() -> None:
        import asyncio

        while not hx.publisher.sent:
            await asyncio.sleep(0.01)
        # a result of the same id for another key (whose claim lapsed before this one) comes first
        await hx.listener.deliver_raw(bid.encode(), others, [("x-owner", key_id(hx.keys[1]).encode())])
        await hx.listener.deliver_raw(bid.encode(), mine, [("x-owner", key_id(hx.key).encode())])

    fut = hx.client.portal.start_task_soon(answer)
    r = hx.client.post("/v1/batches?timeout=5", json=batch(1, batch_id=bid), headers=hx.h())
    fut.result(5)
    assert r.status_code == 200, r.text
    assert r.content == mine


def test_pipeline_rejected_batch_is_returned_with_200(make_harness: MakeHarness) -> None:
    hx = make_harness(mode="drop")
    bid = str(uuid.uuid4())

    async def answer_rejected() -> None:
        import asyncio

        while not hx.publisher.sent:
            await asyncio.sleep(0.01)
        await hx.listener.deliver(
            {
                "batch_id": bid,
                "success": False,
                "results": [],
                "summary": {
                    "total": 0,
                    "successful": 0,
                    "failed": 0,
                    "cached": 0,
                    "total_time_ms": 0.0,
                    "average_time_ms": 0.0,
                },
                "error": {"code": "invalid_batch", "message": "rejected by the worker", "problems": []},
            },
            hx.publisher.headers[0],  # the request's x-owner, as the sink sets it on a rejection too
        )

    fut = hx.client.portal.start_task_soon(answer_rejected)
    r = hx.client.post("/v1/batches", json=batch(1, batch_id=bid), headers=hx.h())
    fut.result(5)
    assert r.status_code == 200
    assert r.json()["success"] is False
    assert r.json()["error"]["code"] == "invalid_batch"


@pytest.mark.parametrize("timeout", ["31", "-1", "100", "abc", "inf", "nan"])
def test_timeout_out_of_range_is_422(harness: Harness, timeout: str) -> None:
    r = harness.client.post(f"/v1/batches?timeout={timeout}", json=batch(1), headers=harness.h())
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_request"
    assert err["field"] == "timeout"
    assert harness.publisher.sent == []


def test_timeout_zero_and_thirty_are_accepted(harness: Harness) -> None:
    assert harness.client.post("/v1/batches?timeout=0", json=batch(1), headers=harness.h()).status_code == 202
    assert harness.client.post("/v1/batches?timeout=30", json=batch(1), headers=harness.h()).status_code == 200


@requires_redis
def test_unknown_batch_is_404(harness: Harness) -> None:
    for bid in (str(uuid.uuid4()), "x" * 129, "nope"):
        r = harness.client.get(f"/v1/batches/{bid}", headers=harness.h())
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"


def test_another_keys_batch_is_404(harness: Harness) -> None:
    key_a, key_b = harness.keys
    bid = harness.client.post("/v1/batches", json=batch(1), headers=harness.h(key_a)).json()["batch_id"]
    assert harness.client.get(f"/v1/batches/{bid}", headers=harness.h(key_a)).status_code == 200
    r = harness.client.get(f"/v1/batches/{bid}", headers=harness.h(key_b))
    assert r.status_code == 404
    if redis_available():  # indistinguishable from an id that does not exist
        assert r.json() == harness.client.get(f"/v1/batches/{uuid.uuid4()}", headers=harness.h(key_b)).json()


def test_client_chosen_batch_id_of_another_key_is_409(harness: Harness) -> None:
    key_a, key_b = harness.keys
    bid = f"mine-{uuid.uuid4()}"
    assert harness.client.post("/v1/batches", json=batch(1, batch_id=bid), headers=harness.h(key_a)).status_code == 200
    r = harness.client.post("/v1/batches", json=batch(1, batch_id=bid), headers=harness.h(key_b))
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "batch_id_conflict"
    # the owner may resubmit its own id
    assert harness.client.post("/v1/batches", json=batch(1, batch_id=bid), headers=harness.h(key_a)).status_code == 200
    assert len(harness.publisher.sent) == 2


# -- input validation ----------------------------------------------------------------------------


def test_invalid_json_is_400(harness: Harness) -> None:
    for body in (b"{", b"not json", b"\xff\xfe", b""):
        r = harness.client.post("/v1/batches", content=body, headers=harness.h(**{"Content-Type": "application/json"}))
        assert r.status_code == 400, body
        assert r.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("body", ["[]", "1", '"x"', "null", "{}"])
def test_non_batch_json_is_422(harness: Harness, body: str) -> None:
    r = harness.client.post("/v1/batches", content=body, headers=harness.h())
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_batch"
    assert r.json()["error"]["problems"]


def test_101_items_is_422_naming_the_limit(harness: Harness) -> None:
    r = harness.client.post("/v1/batches", json=batch(101), headers=harness.h())
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "invalid_batch"
    assert any(p["loc"] == "barcodes" and "maximum batch size of 100" in p["message"] for p in err["problems"])
    assert "101" in err["message"]
    assert harness.publisher.sent == []


def test_100_items_is_fine(harness: Harness) -> None:
    r = harness.client.post("/v1/batches", json=batch(100), headers=harness.h())
    assert r.status_code == 200
    assert r.json()["summary"]["total"] == 100


def test_duplicate_ids_and_every_problem_are_listed(harness: Harness) -> None:
    body = {
        "barcodes": [
            {"id": "a", "barcode_type": "qr", "data": "1"},
            {"id": "a", "barcode_type": "qr", "data": "2"},
        ],
        "options": {"max_concurrent": 0, "surprise": True},
        "extra": 1,
    }
    r = harness.client.post("/v1/batches", json=body, headers=harness.h())
    assert r.status_code == 422
    problems = r.json()["error"]["problems"]
    locs = {p["loc"] for p in problems}
    assert {"barcodes", "options.max_concurrent", "options.surprise", "extra"} <= locs
    assert any("duplicate item ids: a" in p["message"] for p in problems)


def test_empty_batch_is_422(harness: Harness) -> None:
    r = harness.client.post("/v1/batches", json={"barcodes": []}, headers=harness.h())
    assert r.status_code == 422
    assert "at least one item" in r.json()["error"]["message"]


def test_body_over_limit_is_413_by_content_length(make_harness: MakeHarness) -> None:
    hx = make_harness(settings={"max_body_bytes": 1000})
    r = hx.client.post("/v1/batches", content=b" " * 1001, headers=hx.h(**{"Content-Type": "application/json"}))
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_body_over_limit_is_413_when_streamed_without_length(make_harness: MakeHarness) -> None:
    hx = make_harness(settings={"max_body_bytes": 1000})

    def chunks():  # no Content-Length: chunked transfer
        for _ in range(20):
            yield b" " * 100

    r = hx.client.post("/v1/batches", content=chunks(), headers=hx.h(**{"Content-Type": "application/json"}))
    assert r.status_code == 413


def test_body_lying_content_length_is_413(make_harness: MakeHarness) -> None:
    """A small declared length does not let a larger body through (the stream is counted)."""
    hx = make_harness(settings={"max_body_bytes": 1000})

    async def app_call() -> int:
        from facade.batches import read_body
        from facade.errors import ApiError

        class Req:
            headers = {"content-length": "10"}

            async def stream(self):
                for _ in range(20):
                    yield b"x" * 100

        try:
            await read_body(Req(), 1000)  # type: ignore[arg-type]
        except ApiError as exc:
            return exc.status
        return 200

    assert hx.client.portal.call(app_call) == 413


def test_default_limit_is_one_mebibyte(harness: Harness) -> None:
    big = {"barcodes": [{"barcode_type": "qr", "data": "x" * (1024 * 1024)}]}
    r = harness.client.post("/v1/batches", json=big, headers=harness.h())
    assert r.status_code == 413


# -- Kafka failures ------------------------------------------------------------------------------


def test_kafka_publish_failure_is_503_fast(make_harness: MakeHarness) -> None:
    hx = make_harness(mode="fail")
    t0 = time.monotonic()
    r = hx.client.post("/v1/batches", json=batch(1, batch_id="will-fail-" + uuid.uuid4().hex), headers=hx.h())
    assert r.status_code == 503
    assert time.monotonic() - t0 < 2
    assert r.json()["error"]["code"] == "kafka_unavailable"
    assert int(r.headers["retry-after"]) >= 1
    assert hx.listener.waiting == 0


def test_kafka_publish_hang_is_bounded(make_harness: MakeHarness) -> None:
    hx = make_harness(mode="hang", settings={"facade_publish_timeout_s": 0.5})
    t0 = time.monotonic()
    r = hx.client.post("/v1/batches", json=batch(1), headers=hx.h())
    elapsed = time.monotonic() - t0
    assert r.status_code == 503
    assert 0.4 < elapsed < 3
    assert hx.listener.waiting == 0


@requires_redis
def test_failed_publish_keeps_the_batch_id_for_a_retry(make_harness: MakeHarness) -> None:
    """A publish that fails or times out may still be delivered later (the producer's buffer): the
    503 names the batch, its owner keeps it, and a retry with the same batch_id is the way out."""
    hx = make_harness(mode="fail")
    bid = "unacked-" + uuid.uuid4().hex
    r = hx.client.post("/v1/batches", json=batch(1, batch_id=bid), headers=hx.h())
    assert r.status_code == 503
    assert r.json()["batch_id"] == bid and r.json()["error"]["code"] == "kafka_unavailable"
    assert r.headers["location"] == f"/v1/batches/{bid}" and r.headers["retry-after"]
    assert hx.client.get(f"/v1/batches/{bid}", headers=hx.h()).status_code == 202  # outcome unknown yet
    assert hx.client.post("/v1/batches", json=batch(1, batch_id=bid), headers=hx.h(hx.keys[1])).status_code == 409
    hx.publisher.mode = "answer"
    assert hx.client.post("/v1/batches", json=batch(1, batch_id=bid), headers=hx.h()).status_code == 200


def test_kafka_not_started_is_503(make_harness: MakeHarness) -> None:
    from tests.facade.fakes import FakeListener

    lis = FakeListener()
    lis.fail_start = True
    hx = make_harness(listener=lis, settings={"facade_kafka_startup_wait_s": 0.2, "facade_kafka_retry_interval_s": 0.1})
    t0 = time.monotonic()
    r = hx.client.post("/v1/batches", json=batch(1), headers=hx.h())
    assert r.status_code == 503
    assert time.monotonic() - t0 < 1
    assert hx.publisher.sent == []
    ready = hx.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["listener"]["ok"] is False
    # the listener comes up on a later retry: the facade recovers by itself
    lis.fail_start = False
    deadline = time.monotonic() + 5
    while not hx.client.get("/readyz").json()["checks"]["listener"]["ok"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert hx.client.post("/v1/batches", json=batch(1), headers=hx.h()).status_code == 200


# -- Redis down ----------------------------------------------------------------------------------


def test_without_redis_results_still_reach_the_caller(make_harness: MakeHarness) -> None:
    hx = make_harness(use_redis=False)
    r = hx.client.post("/v1/batches", json=batch(2), headers=hx.h())
    assert r.status_code == 200
    assert r.json()["summary"]["total"] == 2
    # this replica remembers its own batches: polling still works
    r2 = hx.client.post("/v1/batches?wait=false", json=batch(1), headers=hx.h())
    assert r2.status_code == 202
    bid = r2.json()["batch_id"]
    deadline = time.monotonic() + 5
    while (g := hx.client.get(f"/v1/batches/{bid}", headers=hx.h())).status_code == 202:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert g.status_code == 200
    assert hx.client.get(f"/v1/batches/{bid}", headers=hx.h(hx.keys[1])).status_code == 404
    # an id this replica never saw cannot be answered without Redis: 503, not a false 404
    g2 = hx.client.get(f"/v1/batches/{uuid.uuid4()}", headers=hx.h())
    assert g2.status_code == 503
    assert g2.json()["error"]["code"] == "redis_unavailable"


@requires_redis
def test_results_are_stored_in_redis_for_other_replicas(harness: Harness) -> None:
    import redis as redis_sync

    from tests.facade.conftest import redis_url

    r = harness.client.post("/v1/batches", json=batch(1), headers=harness.h())
    bid = r.json()["batch_id"]
    rc = redis_sync.Redis.from_url(redis_url())
    deadline = time.monotonic() + 5
    while rc.get(f"bf:result:{bid}") is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    import hashlib

    assert rc.get(f"bf:owner:{bid}").decode() == hashlib.sha256(harness.key.encode()).hexdigest()
    assert 0 < rc.ttl(f"bf:result:{bid}") <= harness.settings.result_ttl_s
    assert rc.get(f"bf:result:{bid}") == harness.publisher.answers[bid]  # the record's bytes
    # results of batches nobody owns are not stored: the writer stores in arrival order, so once a
    # result that arrived after the foreign one is stored, the foreign one was handled
    foreign = result_for({"batch_id": "foreign-" + uuid.uuid4().hex, "barcodes": [{"data": "x"}]})
    harness.client.portal.call(harness.listener.deliver, foreign)
    later = harness.client.post("/v1/batches?wait=false", json=batch(1), headers=harness.h()).json()["batch_id"]
    deadline = time.monotonic() + 5
    while rc.get(f"bf:result:{later}") is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert rc.get(f"bf:result:{foreign['batch_id']}") is None
    assert rc.get(f"bf:owner:{foreign['batch_id']}") is None


def test_huge_item_list_is_rejected_cheaply(harness: Harness) -> None:
    """~1 MiB of tiny items: one size problem (with the real count) plus the first items' problems."""
    t0 = time.monotonic()
    r = harness.client.post(
        "/v1/batches", content=b'{"barcodes": [' + b",".join([b"1"] * 300_000) + b"]}", headers=harness.h()
    )
    assert time.monotonic() - t0 < 2
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["problems"][0] == {
        "loc": "barcodes",
        "message": "300000 items exceed the maximum batch size of 100",
    }
    assert len(err["problems"]) <= 101
    assert len(r.content) < 64 * 1024


def test_problem_list_is_capped(harness: Harness) -> None:
    body = {"barcodes": [{"barcode_type": "qr", "data": "x"}], **{f"extra{i}": 0 for i in range(5000)}}
    r = harness.client.post("/v1/batches", json=body, headers=harness.h())
    assert r.status_code == 422
    err = r.json()["error"]
    assert len(err["problems"]) == 101
    assert err["problems"][-1]["message"] == "... and 4900 more problems"
    assert len(err["message"]) <= 2000


# ("%2F" itself is checked against real uvicorn in test_integration: TestClient decodes paths twice)
@pytest.mark.parametrize("bid", ["with/slash", "sp ace", "ünï", "q?x=1#f"])
def test_odd_client_batch_ids_round_trip(harness: Harness, bid: str) -> None:
    bid = f"{bid}-{uuid.uuid4().hex[:8]}"
    r = harness.client.post("/v1/batches?wait=false", json=batch(1, batch_id=bid), headers=harness.h())
    assert r.status_code == 202
    assert r.json()["batch_id"] == bid
    loc = r.headers["location"]
    assert loc.isascii()
    deadline = time.monotonic() + 5
    while (g := harness.client.get(loc, headers=harness.h())).status_code == 202:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert g.status_code == 200, g.text
    assert g.json()["batch_id"] == bid


def test_fully_cached_batch_is_answered_from_the_cache(make_harness: MakeHarness) -> None:
    """Every item already rendered: the answer comes from the cache, the request is still published."""
    hx = make_harness(mode="drop")  # the pipeline never answers in this test
    tag = uuid.uuid4().hex
    body = {"barcodes": [{"id": "a", "barcode_type": "qr", "data": tag},
                         {"id": "b", "barcode_type": "ean8", "data": "9638507", "format": "png"},
                         {"id": "c", "barcode_type": "nope", "data": "x"}]}  # fmt: skip
    for it in body["barcodes"][:2]:  # the single-image route fills the shared render cache
        url = f"/v1/barcodes/{it['barcode_type']}.{it.get('format', 'svg')}?data={it['data']}"
        assert hx.client.get(url, headers=hx.h()).status_code == 200
    r = hx.client.post("/v1/batches?timeout=2", json=body, headers=hx.h())
    assert r.status_code == 200, r.text
    doc = r.json()
    assert [x["cached"] for x in doc["results"]] == [True, True, False]
    assert doc["results"][2]["error"]["code"] == "unsupported_type"
    assert doc["summary"]["cached"] == 2 and doc["summary"]["failed"] == 1
    assert doc["results"][1]["metadata"]["data"] == "96385074"
    bid = doc["batch_id"]
    assert [sent["batch_id"] for sent in hx.publisher.sent] == [bid]  # published before the answer
    # the facade's own answer is not stored anywhere: GET serves the sink's record, once it is there
    g = hx.client.get(f"/v1/batches/{bid}", headers=hx.h())
    assert g.status_code == 202, g.text
    sink_record = orjson.dumps({**doc, "summary": {**doc["summary"], "total_time_ms": 123.5}})
    hx.client.portal.call(hx.listener.deliver_raw, bid.encode(), sink_record, hx.publisher.headers[0])
    g = hx.client.get(f"/v1/batches/{bid}", headers=hx.h())
    assert g.status_code == 200 and g.content == sink_record
    if redis_available():
        import redis as redis_sync

        from tests.facade.conftest import redis_url

        rc = redis_sync.Redis.from_url(redis_url())
        deadline = time.monotonic() + 5
        while (stored := rc.get(f"bf:result:{bid}")) is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert stored == sink_record


def test_big_fully_cached_batch_is_answered_from_the_cache_after_publishing(make_harness: MakeHarness) -> None:
    """A batch above ``EARLY_LOOKUP_MAX_ITEMS`` asks the cache once it is published: same answer."""
    from facade.batches import EARLY_LOOKUP_MAX_ITEMS

    hx = make_harness(mode="drop")  # the pipeline never answers in this test
    tag = uuid.uuid4().hex
    assert hx.client.get(f"/v1/barcodes/qr.svg?data={tag}", headers=hx.h()).status_code == 200
    n = EARLY_LOOKUP_MAX_ITEMS + 5
    body = {"barcodes": [{"id": f"i{i}", "barcode_type": "qr", "data": tag} for i in range(n)]}
    r = hx.client.post("/v1/batches?timeout=2", json=body, headers=hx.h())
    assert r.status_code == 200, r.text
    doc = r.json()
    assert [x["id"] for x in doc["results"]] == [f"i{i}" for i in range(n)]
    assert doc["summary"]["cached"] == n and doc["success"] is True
    assert [sent["batch_id"] for sent in hx.publisher.sent] == [doc["batch_id"]]


def test_partly_cached_batch_goes_through_the_pipeline(make_harness: MakeHarness) -> None:
    hx = make_harness(mode="drop")
    tag = uuid.uuid4().hex
    assert hx.client.get(f"/v1/barcodes/qr.svg?data={tag}", headers=hx.h()).status_code == 200
    body = {"barcodes": [{"barcode_type": "qr", "data": tag}, {"barcode_type": "qr", "data": tag + "-new"}]}
    r = hx.client.post("/v1/batches?timeout=0.5", json=body, headers=hx.h())
    assert r.status_code == 202
