"""/healthz, /readyz, /metrics, the OpenAPI document and the error shape of non-/v1 failures."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from tests.facade.conftest import Harness, MakeHarness, batch, redis_available
from tests.facade.fakes import FakeListener, FakePublisher


def test_healthz(harness: Harness) -> None:
    r = harness.client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


@pytest.mark.skipif(not redis_available(), reason="needs Redis")
def test_readyz_ok(harness: Harness) -> None:
    r = harness.client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ready"
    assert set(r.json()["checks"]) == {"kafka", "redis", "publisher", "listener"}


def test_readyz_names_kafka_when_its_metadata_call_fails(make_harness: MakeHarness) -> None:
    async def broken() -> None:
        raise ConnectionError("no broker at 127.0.0.1:9092")

    hx = make_harness(kafka_probe=broken)
    r = hx.client.get("/readyz")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert checks["kafka"] == {"ok": False, "error": "no broker at 127.0.0.1:9092"}
    assert r.json()["status"] == "unavailable"


def test_readyz_kafka_probe_is_bounded(make_harness: MakeHarness) -> None:
    import asyncio
    import time

    async def hangs() -> None:
        await asyncio.sleep(60)

    hx = make_harness(kafka_probe=hangs, settings={"facade_readiness_timeout_s": 0.3})
    t0 = time.monotonic()
    assert hx.client.get("/readyz").status_code == 503
    assert time.monotonic() - t0 < 2


def test_readyz_names_redis_when_it_is_down(make_harness: MakeHarness) -> None:
    hx = make_harness(use_redis=False)
    r = hx.client.get("/readyz")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert checks["redis"]["ok"] is False
    assert checks["kafka"]["ok"] is True


def test_real_kafka_probe_fails_fast_without_a_broker() -> None:
    import asyncio
    import time

    from barcodeflow.settings import Settings
    from facade.kafka import KafkaProbe

    probe = KafkaProbe(Settings(kafka_bootstrap_servers="127.0.0.1:1"), timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - any failure: the check reports it
        asyncio.run(probe())
    assert time.monotonic() - t0 < 3


def test_metrics(harness: Harness) -> None:
    harness.client.post("/v1/batches", json=batch(7), headers=harness.h())
    harness.client.post("/v1/batches", json=batch(1), headers={"X-API-Key": "bad"})
    harness.client.get("/v1/barcodes/qr.svg?data=m", headers=harness.h())
    harness.client.get("/v1/barcodes/nope.svg?data=m", headers=harness.h())
    harness.client.get("/no/such/route")
    r = harness.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    for needle in (
        'barcodeflow_facade_http_requests_total{method="POST",route="/v1/batches",status="200"} 1.0',
        'barcodeflow_facade_http_requests_total{method="POST",route="/v1/batches",status="401"} 1.0',
        'route="/v1/barcodes/{barcode_type}.{fmt}",status="200"',
        'route="unmatched",status="404"',
        "barcodeflow_facade_http_request_duration_seconds_bucket",
        "barcodeflow_facade_batch_size_items_sum 7.0",
        'barcodeflow_facade_batches_total{outcome="completed"} 1.0',
        'barcodeflow_facade_item_errors_total{code="unsupported_type"} 1.0',
        "barcodeflow_facade_auth_failures_total 1.0",
        'barcodeflow_facade_kafka_component_ready{component="publisher"} 1.0',
        "barcodeflow_facade_image_cache_total",
    ):
        assert needle in text, needle


def _local_results_bytes(hx: Harness) -> float:
    for line in hx.client.get("/metrics").text.splitlines():
        if line.startswith("barcodeflow_facade_local_results_bytes "):
            return float(line.rpartition(" ")[2])
    raise AssertionError("barcodeflow_facade_local_results_bytes is not exported")


def test_local_results_gauge_counts_the_replicas_own_results_within_its_bound(make_harness: MakeHarness) -> None:
    hx = make_harness()
    assert _local_results_bytes(hx) == 0.0
    bodies = [hx.client.post("/v1/batches", json=batch(n), headers=hx.h()).content for n in (2, 3)]
    assert _local_results_bytes(hx) == float(sum(len(b) for b in bodies))  # the results' bytes as answered
    bound = len(bodies[1]) + 10  # room for one result: the older one goes
    small = make_harness(settings={"facade_local_results_max_bytes": bound})
    sizes = [len(small.client.post("/v1/batches", json=batch(n), headers=small.h()).content) for n in (3, 3)]
    assert 0 < _local_results_bytes(small) <= bound
    assert _local_results_bytes(small) == float(sizes[-1])


def test_each_app_has_its_own_registry(make_harness: MakeHarness) -> None:
    a, b = make_harness(), make_harness()
    a.client.post("/v1/batches", json=batch(1), headers=a.h())
    assert 'outcome="completed"} 1.0' in a.client.get("/metrics").text
    assert 'outcome="completed"} 1.0' not in b.client.get("/metrics").text


def test_unknown_route_and_method_are_json(harness: Harness) -> None:
    r = harness.client.get("/nope")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    r = harness.client.delete("/v1/batches", headers=harness.h())
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in r.headers["allow"]


def test_unexpected_errors_are_500_json(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    async def boom(*a, **k):
        raise RuntimeError("a real bug")

    monkeypatch.setattr(harness.state.results, "lookup", boom)
    r = harness.client.get("/v1/batches/x", headers=harness.h())
    assert r.status_code == 500
    assert r.json() == {"error": {"code": "internal_error", "message": "internal server error"}}


def test_openapi_documents_the_strict_request_and_the_key(harness: Harness) -> None:
    doc = harness.client.get("/openapi.json").json()
    post = doc["paths"]["/v1/batches"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/BatchRequest"}
    body = doc["components"]["schemas"]["BatchRequest"]
    assert body["properties"]["barcodes"]["maxItems"] == 100
    assert body["properties"]["barcodes"]["items"] == {"$ref": "#/components/schemas/BarcodeItem"}
    assert "enum" in str(doc["components"]["schemas"]["BarcodeItem"]["properties"]["barcode_type"])
    assert {"200", "202", "400", "401", "409", "413", "422", "429", "503"} <= set(post["responses"])
    assert doc["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key of this deployment.",
    }
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert bool(op.get("security")) == path.startswith("/v1"), path
    assert harness.client.get("/docs").status_code == 200


class HangingPublisher(FakePublisher):
    async def stop(self) -> None:
        await asyncio.Event().wait()  # a Kafka client that never finishes stopping


def test_shutdown_is_bounded_when_a_client_hangs(make_harness: MakeHarness, caplog: pytest.LogCaptureFixture) -> None:
    lis = FakeListener()
    hx = make_harness(listener=lis, publisher=HangingPublisher(lis), settings={"facade_shutdown_step_s": 0.3})
    assert hx.client.get("/healthz").status_code == 200
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="facade.app"):
        hx.client.__exit__(None, None, None)
    assert time.monotonic() - t0 < 5
    assert "stopping the Kafka producer took longer" in caplog.text
    assert not lis.started  # the steps after the hanging one still ran
