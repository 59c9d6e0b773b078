"""S1-S4: abuse of the HTTP facade (a real ``barcodeflow facade`` process on the session's pipeline).

* S1 schemathesis over every operation of /openapi.json, positive *and* negative data: no 5xx.
* S2 every /v1 route x missing / empty / wrong / other-case / truncated / extended key, key in the query or as
  a Bearer token: 401 with the JSON error and ``WWW-Authenticate``; header *name* case does not matter.
* S3 a spoofed ``X-Forwarded-For`` (and ``X-Real-IP`` / ``Forwarded``) from an untrusted peer does not escape
  the per-address limit; behind a trusted proxy the right-most untrusted hop is the client, so a spoofed
  left part does not escape either (positive control: distinct real clients get their own buckets).
* S4 oversized bodies (413, with and without Content-Length), 101 items (422), 100k-deep JSON (4xx, fast),
  huge width/height (item error ``invalid_option``), with the facade's and the worker's RSS bounded.
"""

from __future__ import annotations

import contextlib
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

from tests.faults.conftest import Api, Figures, Scale
from tests.faults.support import FacadeProc, RssSampler, tree_rss_mb

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ERROR_CODES_4XX = {
    "invalid_json", "invalid_request", "payload_too_large", "unauthorized", "rate_limited", "not_found",
    "method_not_allowed", "batch_id_conflict", "invalid_batch", "unsupported_type", "invalid_data",
    "invalid_check_digit", "data_too_long", "invalid_option", "invalid_item", "verify_failed",
}  # fmt: skip


# --------------------------------------------------------------------------- S1


@pytest.mark.timeout(300)
def test_s1_schemathesis_whole_api_no_5xx(api: Api, scale: Scale, figures: Figures) -> None:
    schema = schemathesis.openapi.from_url(api.url + "/openapi.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 6, [op.label for op in operations]
    statuses: Counter[int] = Counter()
    server_errors: list[str] = []
    calls = 0
    unsatisfiable: list[str] = []
    t0 = time.monotonic()
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(
                max_examples=scale.s1_examples,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
                phases=[Phase.explicit, Phase.generate],
            )
            def check(case: schemathesis.Case) -> None:
                nonlocal calls
                headers = {**(case.headers or {}), "X-API-Key": api.key}
                resp = case.call(headers=headers, timeout=30)
                calls += 1
                statuses[resp.status_code] += 1
                if resp.status_code >= 500:
                    # called right away, inside this iteration: the loop variables are the current ones
                    server_errors.append(f"{op.label} [{mode}] -> {resp.status_code}: {resp.text[:300]}")  # noqa: B023

            try:
                check()
            except Unsatisfiable:  # no negative variant exists (e.g. /healthz has no parameters)
                unsatisfiable.append(f"{op.label} [{mode}]")
    elapsed = time.monotonic() - t0
    figures.record(
        "S1 schemathesis",
        load=f"{len(operations)} operations x (positive + negative) x {scale.s1_examples} examples: {calls} calls",
        faults="generated requests",
        outcome="pass" if not server_errors else "FAIL",
        extra={
            "status_codes": dict(sorted(statuses.items())),
            "elapsed_s": round(elapsed, 1),
            "no_negative_variant": unsatisfiable,
        },
    )
    assert calls > 0
    assert not server_errors, "\n".join(server_errors[:10])
    assert "Traceback" not in api.facade.tail(2000), api.facade.tail(80)


# --------------------------------------------------------------------------- S2


def _routes(batch_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    body = {"barcodes": [{"barcode_type": "qr", "data": "s2"}]}
    return [
        ("POST", "/v1/batches", {"json": body}),
        ("POST", "/v1/batches?wait=false", {"json": body}),
        ("GET", f"/v1/batches/{batch_id}", {}),
        ("GET", f"/v1/batches/{uuid.uuid4()}", {}),
        ("GET", "/v1/barcodes/qr.svg?data=s2", {}),
        ("GET", "/v1/barcodes/ean13.png?data=400638133393", {}),
        ("GET", "/v1/barcodes/nosuchtype.svg?data=x", {}),
    ]


def test_s2_every_route_rejects_bad_keys(api: Api, figures: Figures) -> None:
    with httpx.Client(base_url=api.url, timeout=30) as c:
        owned = c.post("/v1/batches", json={"barcodes": [{"barcode_type": "qr", "data": "s2 owned"}]},
                       headers={"X-API-Key": api.key}).json()["batch_id"]  # fmt: skip
        k = api.key
        bad_variants: dict[str, dict[str, Any]] = {
            "missing": {"headers": {}},
            "empty": {"headers": {"X-API-Key": ""}},
            "wrong": {"headers": {"X-API-Key": "FaultKey-" + secrets.token_hex(8)}},
            "other case": {"headers": {"X-API-Key": k.swapcase()}},
            "upper case": {"headers": {"X-API-Key": k.upper()}},
            "truncated": {"headers": {"X-API-Key": k[:-1]}},
            "extended": {"headers": {"X-API-Key": k + "x"}},
            "in query": {"headers": {}, "params": {"api_key": k, "X-API-Key": k}},
            "bearer": {"headers": {"Authorization": f"Bearer {k}"}},
            "cookie": {"headers": {"Cookie": f"X-API-Key={k}"}},
            "other header": {"headers": {"X-Api-Token": k}},
        }
        good_variants = {
            "exact": {"X-API-Key": k},
            "header name lower case": {"x-api-key": k},
            "header name upper case": {"X-API-KEY": k},
        }
        failures: list[str] = []
        checked = 0
        for method, path, kw in _routes(owned):
            for name, v in bad_variants.items():
                r = c.request(method, path, headers=v["headers"], params=v.get("params"), **kw)
                checked += 1
                body: dict[str, Any] = {}
                with contextlib.suppress(Exception):
                    body = r.json()
                if (r.status_code != 401 or body.get("error", {}).get("code") != "unauthorized"
                        or "www-authenticate" not in r.headers):  # fmt: skip
                    failures.append(f"{method} {path} [{name}] -> {r.status_code} {r.text[:120]}")
            for name, h in good_variants.items():
                r = c.request(method, path, headers=h, **kw)
                checked += 1
                if r.status_code in (401, 403) or r.status_code >= 500:
                    failures.append(f"{method} {path} [{name}] (valid key) -> {r.status_code}")
        # the other (valid) key is a different principal: it cannot read this key's batch
        r = c.get(f"/v1/batches/{owned}", headers={"X-API-Key": api.other_key})
        if r.status_code != 404:
            failures.append(f"other key reads the batch: {r.status_code}")
    figures.record(
        "S2 auth matrix",
        load=f"{len(_routes(owned))} route variants x {len(bad_variants)} bad + {len(good_variants)} good keys: "
        f"{checked} requests",
        faults="missing / wrong / other-case keys",
        outcome="pass" if not failures else "FAIL",
    )
    assert not failures, "\n".join(failures[:20])


# --------------------------------------------------------------------------- S3

LIMIT = 8


@pytest.fixture
def limited(pipeline: Any, tmp_path: Path) -> Iterator[tuple[FacadeProc, FacadeProc, list[str]]]:
    """Two facades with a tight limit: one without trusted proxies, one trusting 127.0.0.1."""
    keys = [f"s3-{i}-{secrets.token_hex(6)}" for i in range(3 * LIMIT)]
    base = {**pipeline.settings.as_env(), "API_KEYS": ",".join(keys), "RATE_LIMIT": f"{LIMIT}/minute"}
    a = FacadeProc({**base, "FACADE_RATELIMIT_PREFIX": f"bf:rl:s3a:{secrets.token_hex(6)}"}, tmp_path / "a.log")
    b = FacadeProc({**base, "FACADE_RATELIMIT_PREFIX": f"bf:rl:s3b:{secrets.token_hex(6)}",
                    "TRUSTED_PROXIES": "127.0.0.1"}, tmp_path / "b.log")  # fmt: skip
    try:
        a.start()
        b.start()
        yield a, b, keys
    finally:
        a.stop()
        b.stop()


def _spoof_headers(i: int) -> dict[str, str]:
    ip = f"198.18.{i // 250}.{i % 250 + 1}"
    return {"X-Forwarded-For": ip, "X-Real-IP": ip, "Forwarded": f"for={ip}", "True-Client-IP": ip,
            "CF-Connecting-IP": ip}  # fmt: skip


def test_s3_spoofed_forwarded_for_does_not_escape_the_limit(
    limited: tuple[FacadeProc, FacadeProc, list[str]], figures: Figures
) -> None:
    a, b, keys = limited
    path = "/v1/barcodes/qr.svg"
    out: dict[str, list[int]] = {}
    with httpx.Client(timeout=30) as c:
        # untrusted peer, a fresh key and a fresh spoofed address every time: the peer's bucket still fills
        out["untrusted, spoofed XFF, new key each"] = [
            c.get(a.url + path, params={"data": f"s3-{i}"}, headers={"X-API-Key": keys[i], **_spoof_headers(i)})
            .status_code for i in range(2 * LIMIT)
        ]  # fmt: skip
        # unauthenticated guessing with spoofed addresses is limited too (429 instead of 401)
        out["untrusted, spoofed XFF, no key"] = [
            c.get(a.url + path, params={"data": "s3"}, headers=_spoof_headers(1000 + i)).status_code for i in range(2)
        ]
        # trusted proxy: the right-most untrusted hop is the client; a spoofed left part changes nothing
        out["trusted proxy, spoofed left part"] = [
            c.get(b.url + path, params={"data": f"s3-{i}"},
                  headers={"X-API-Key": keys[i], "X-Forwarded-For": f"10.9.{i}.1, 203.0.113.77"}).status_code
            for i in range(2 * LIMIT)
        ]  # fmt: skip
        # positive control: distinct clients behind the trusted proxy have their own buckets
        out["trusted proxy, distinct clients"] = [
            c.get(b.url + path, params={"data": f"s3-{i}"},
                  headers={"X-API-Key": keys[LIMIT * 2 + i % LIMIT], "X-Forwarded-For": f"203.0.113.{100 + i}"})
            .status_code for i in range(LIMIT)
        ]  # fmt: skip
    figures.record(
        "S3 X-Forwarded-For spoofing",
        load=f"RATE_LIMIT={LIMIT}/minute, {sum(len(v) for v in out.values())} requests",
        faults="spoofed XFF / X-Real-IP / Forwarded, fresh API key per request",
        outcome="pass",
        extra={k: dict(Counter(v)) for k, v in out.items()},
    )
    first = out["untrusted, spoofed XFF, new key each"]
    assert first[:LIMIT] == [200] * LIMIT, first
    assert set(first[LIMIT:]) == {429}, first
    assert out["untrusted, spoofed XFF, no key"] == [429, 429]
    spoofed = out["trusted proxy, spoofed left part"]
    assert spoofed[:LIMIT] == [200] * LIMIT and set(spoofed[LIMIT:]) == {429}, spoofed
    assert set(out["trusted proxy, distinct clients"]) == {200}, out["trusted proxy, distinct clients"]


# --------------------------------------------------------------------------- S4

FACADE_RSS_GROWTH_BOUND_MB = 250
WORKER_RSS_GROWTH_BOUND_MB = 250


def _raw_post(url: str, path: str, body: bytes, headers: dict[str, str], timeout: float = 10.0) -> int:
    """POST with headers sent exactly as given (httpx refuses a lying Content-Length); returns the status."""
    import socket

    host, port = url.removeprefix("http://").split(":")
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head.encode() + body)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else -1


def _nested(depth: int, open_: bytes = b"[", close: bytes = b"]") -> bytes:
    return open_ * depth + close * depth


def test_s4_oversized_and_hostile_bodies(api: Api, figures: Figures) -> None:
    facade_before = tree_rss_mb(api.facade.pid)
    worker_before = tree_rss_mb(api.worker_pid)
    checks: list[tuple[str, int, float]] = []
    problems: list[str] = []

    def expect(name: str, r: httpx.Response, allowed: set[int], t0: float, max_s: float = 5.0) -> None:
        dt = time.monotonic() - t0
        checks.append((name, r.status_code, round(dt, 2)))
        if r.status_code not in allowed:
            problems.append(f"{name}: {r.status_code} not in {sorted(allowed)}: {r.text[:200]}")
        if dt > max_s:
            problems.append(f"{name}: took {dt:.1f} s")

    h = {"X-API-Key": api.key, "Content-Type": "application/json"}
    with RssSampler({"facade": api.facade.pid, "worker": api.worker_pid}) as rss, \
            httpx.Client(base_url=api.url, timeout=60) as c:  # fmt: skip
        limit = 1024 * 1024
        item = b'{"barcode_type":"qr","data":"' + b"x" * 100 + b'"}'
        big = b'{"barcodes":[' + b",".join([item] * (limit // len(item) + 10)) + b"]}"
        t0 = time.monotonic()
        expect("body > 1 MiB with Content-Length", c.post("/v1/batches", content=big, headers=h), {413}, t0)

        def chunks() -> Iterator[bytes]:
            yield b'{"barcodes":['
            for _ in range(40):
                yield b'{"barcode_type":"qr","data":"' + b"y" * 65536 + b'"},'
            yield b'{"barcode_type":"qr","data":"z"}]}'

        t0 = time.monotonic()
        expect("chunked body > 1 MiB (no Content-Length)", c.post("/v1/batches", content=chunks(), headers=h),
               {413}, t0)  # fmt: skip
        t0 = time.monotonic()
        status = _raw_post(api.url, "/v1/batches", b"{}", {"X-API-Key": api.key, "Content-Length": str(10**10)})
        expect("Content-Length claims 10 GB", httpx.Response(status), {400, 413}, t0)
        t0 = time.monotonic()
        r = c.post("/v1/batches", json={"barcodes": [{"barcode_type": "qr", "data": f"{i}"} for i in range(101)]},
                   headers={"X-API-Key": api.key})  # fmt: skip
        expect("101 items", r, {422}, t0)
        if r.status_code == 422 and r.json()["error"]["code"] != "invalid_batch":
            problems.append(f"101 items: code {r.json()['error']['code']}")
        t0 = time.monotonic()
        r = c.post("/v1/batches", json={"barcodes": [{"barcode_type": "qr", "data": "x"}] * 500_00},
                   headers={"X-API-Key": api.key})  # fmt: skip
        expect("50 000 items (1.6 MiB)", r, {413, 422}, t0)
        for name, body in {
            "100k nested arrays": _nested(100_000),
            "100k nested objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
            "100k nested arrays inside barcodes": b'{"barcodes":' + _nested(100_000) + b"}",
            "100k unclosed arrays": b"[" * 100_000,
        }.items():
            t0 = time.monotonic()
            expect(name, c.post("/v1/batches", content=body, headers=h), {400, 413, 422}, t0)
        # huge sizes: the single-image route refuses them as parameters, batches fail the item only
        for w, hh in ((10**9, 10**9), (4097, 100), (100, 10**6), (2**63, 1), (-1, 100), (0, 0)):
            t0 = time.monotonic()
            expect(f"GET qr.png width={w} height={hh}",
                   c.get("/v1/barcodes/qr.png", params={"data": "s4", "width": w, "height": hh},
                         headers={"X-API-Key": api.key}), {422}, t0)  # fmt: skip
        t0 = time.monotonic()
        expect("GET qr.png 4096x4096 (largest valid)",
               c.get("/v1/barcodes/qr.png", params={"data": f"s4 {uuid.uuid4()}", "width": 4096, "height": 4096},
                     headers={"X-API-Key": api.key}), {200}, t0)  # fmt: skip
        sizes = [10**9, 10**12, 4097, 1e9, -1, 0, 2**53 + 1, "4096", 4096.5]
        items = [{"id": f"w{i}", "barcode_type": "qr", "data": f"s4-{i}", "format": "png",
                  "options": {"width": v, "height": v}} for i, v in enumerate(sizes)]  # fmt: skip
        items.append({"id": "max", "barcode_type": "qr", "data": f"s4 max {uuid.uuid4()}", "format": "png",
                      "options": {"width": 4096, "height": 4096}})  # fmt: skip
        t0 = time.monotonic()
        r = c.post("/v1/batches", json={"barcodes": items}, headers={"X-API-Key": api.key})
        expect("batch with huge width/height", r, {200}, t0, max_s=30)
        if r.status_code == 200:
            res = {x["id"]: x for x in r.json()["results"]}
            for i in range(len(sizes)):
                err = res[f"w{i}"].get("error") or {}
                if res[f"w{i}"]["success"] or err.get("code") != "invalid_option":
                    problems.append(f"width/height {sizes[i]!r}: {res[f'w{i}'].get('error')}")
            if not res["max"]["success"]:
                problems.append(f"4096x4096 failed: {res['max'].get('error')}")
    facade_growth = rss.peak.get("facade", 0) - facade_before
    worker_growth = rss.peak.get("worker", 0) - worker_before
    ok = not problems and facade_growth < FACADE_RSS_GROWTH_BOUND_MB and worker_growth < WORKER_RSS_GROWTH_BOUND_MB
    figures.record(
        "S4 oversized / hostile bodies",
        load=f"{len(checks)} hostile requests",
        faults="2+ MiB bodies, 10 GB Content-Length, 101 / 50 000 items, 100k-deep JSON, width/height up to 2^63",
        outcome="pass" if ok else "FAIL",
        extra={"facade_rss_mb": [round(facade_before), round(rss.peak.get("facade", 0))],
               "worker_rss_mb": [round(worker_before), round(rss.peak.get("worker", 0))],
               "slowest_s": max(t for _, _, t in checks), "answers": checks},
    )  # fmt: skip
    assert not problems, "\n".join(problems)
    assert facade_growth < FACADE_RSS_GROWTH_BOUND_MB, (facade_before, rss.peak)
    assert worker_growth < WORKER_RSS_GROWTH_BOUND_MB, (worker_before, rss.peak)
    assert "Traceback" not in api.facade.tail(2000), api.facade.tail(80)


def test_s4_moderately_nested_json_is_a_422(api: Api) -> None:
    """Nesting below the parser's limit (1024) but beyond what can be re-serialised (~255) used to pass
    validation and then fail in ``BatchProducer.send``: a 500, or, when the items were cached, a 200 whose
    request never reached ``barcode.requests``. Found by this suite; fixed in 5f884ec (batches nested deeper
    than 32 levels are rejected)."""
    h = {"X-API-Key": api.key, "Content-Type": "application/json"}
    with httpx.Client(base_url=api.url, timeout=30) as c:
        for depth in (40, 260, 600, 1000):
            for data in (f"s4 nested {uuid.uuid4()}", "s4 cached"):  # not cached / cached
                if data == "s4 cached":
                    c.post("/v1/batches", json={"barcodes": [{"barcode_type": "qr", "data": data}]}, headers=h)
                body = b'{"barcodes":[{"barcode_type":"qr","data":"' + data.encode() + b'","extra":'
                r = c.post("/v1/batches", content=body + _nested(depth) + b"}]}", headers=h)
                assert r.status_code == 422, f"depth {depth}: {r.status_code} {r.text[:200]}"
                assert r.json()["error"]["code"] == "invalid_batch"


async def test_s4_cache_answered_batch_is_on_the_record(api: Api, pipeline: Any) -> None:
    """A batch answered from the render cache (200 in milliseconds) is still published to barcode.requests
    (replay, audit). It used to be published in the background with any failure swallowed; found by this
    suite, fixed in 5f884ec (acknowledged by Kafka before any answer)."""
    from tests.faults.checker import TopicFollower

    h = {"X-API-Key": api.key}
    data = f"s4 record {uuid.uuid4()}"
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as c:
        warm = await c.post("/v1/batches", json={"barcodes": [{"barcode_type": "qr", "data": data}]}, headers=h)
        assert warm.status_code == 200, warm.text
        bid = f"s4-record-{uuid.uuid4().hex}"
        r = await c.post("/v1/batches", json={"batch_id": bid, "barcodes": [{"barcode_type": "qr", "data": data}]},
                         headers=h)  # fmt: skip
    assert r.status_code == 200, r.text[:200]
    assert r.json()["summary"]["cached"] == 1
    requests = TopicFollower(pipeline.settings, pipeline.settings.topics.requests, client_id="faults-requests")
    await requests.start()
    try:
        found = await requests.wait_until(lambda: any(x.key == bid.encode() for x in requests.records), 10)
    finally:
        await requests.stop()
    assert found, "answered 200 from the cache, but the request was never published"
