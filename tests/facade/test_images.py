"""GET /v1/barcodes/{type}.{svg|png}: rendering, ETag/304, caching and item errors."""

from __future__ import annotations

import io
import time
import uuid
from pathlib import Path

import defusedxml.ElementTree as DET
import pytest
import zxingcpp
from PIL import Image

from tests.facade.conftest import Harness, MakeHarness, batch, redis_available, redis_url


def _png_text(content: bytes) -> list[str]:
    img = Image.open(io.BytesIO(content))
    img.load()
    return [r.text for r in zxingcpp.read_barcodes(img.convert("L"))]


def test_qr_png_decodes_back(harness: Harness) -> None:
    data = f"hello {uuid.uuid4()}"
    r = harness.client.get("/v1/barcodes/qr.png", params={"data": data}, headers=harness.h())
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert _png_text(r.content) == [data]
    assert r.headers["cache-control"] == "public, max-age=86400, immutable"
    etag = r.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and len(etag) == 66


@pytest.mark.parametrize(
    ("btype", "data", "decoded"),
    [
        ("ean13", "400638133393", "4006381333931"),
        ("code128", "ABC-123", "ABC-123"),
        ("datamatrix", "dm!", "dm!"),
    ],
)
def test_other_types_decode_back(harness: Harness, btype: str, data: str, decoded: str) -> None:
    r = harness.client.get(f"/v1/barcodes/{btype}.png", params={"data": data, "width": 400}, headers=harness.h())
    assert r.status_code == 200, r.text
    assert _png_text(r.content) == [decoded]


def test_svg_is_well_formed(harness: Harness) -> None:
    r = harness.client.get(
        "/v1/barcodes/qr.svg",
        params={
            "data": "<script>alert(1)</script>",
            "foreground": "#123",
            "background": "transparent",
            "margin": 2,
        },
        headers=harness.h(),
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("image/svg+xml")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    root = DET.fromstring(r.content)
    assert root.tag.endswith("svg")
    assert b"<script" not in r.content


def test_if_none_match_gives_304_before_rendering(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    params = {"data": "etag me", "width": 200}
    r = harness.client.get("/v1/barcodes/qr.svg", params=params, headers=harness.h())
    etag = r.headers["etag"]

    async def no_render(item):
        raise AssertionError("must not render for a 304")

    monkeypatch.setattr(harness.state.images, "render", no_render)
    for inm in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        r2 = harness.client.get("/v1/barcodes/qr.svg", params=params, headers=harness.h(**{"If-None-Match": inm}))
        assert r2.status_code == 304, inm
        assert r2.content == b""
        assert r2.headers["etag"] == etag
        assert r2.headers["cache-control"] == "public, max-age=86400, immutable"


def test_etag_differs_by_format_and_options(harness: Harness) -> None:
    tags = {
        harness.client.get(url, headers=harness.h()).headers["etag"]
        for url in (
            "/v1/barcodes/qr.svg?data=a",
            "/v1/barcodes/qr.png?data=a",
            "/v1/barcodes/qr.svg?data=a&margin=1",
            "/v1/barcodes/qr.svg?data=b",
        )
    }
    assert len(tags) == 4
    # equal canonical specs share it (explicit default == omitted)
    a = harness.client.get("/v1/barcodes/qr.svg?data=a", headers=harness.h()).headers["etag"]
    b = harness.client.get("/v1/barcodes/qr.svg?data=a&error_correction=M", headers=harness.h()).headers["etag"]
    assert a == b


def test_stale_if_none_match_renders(harness: Harness) -> None:
    r = harness.client.get("/v1/barcodes/qr.svg?data=z", headers=harness.h(**{"If-None-Match": '"stale"'}))
    assert r.status_code == 200


@pytest.mark.skipif(not redis_available(), reason="needs Redis")
def test_second_request_is_a_cache_hit(harness: Harness) -> None:
    url = f"/v1/barcodes/qr.png?data={uuid.uuid4()}"
    first = harness.client.get(url, headers=harness.h())
    assert first.headers["x-cache"] == "miss"
    import time

    deadline = time.monotonic() + 3
    while (second := harness.client.get(url, headers=harness.h())).headers["x-cache"] != "hit":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert second.content == first.content
    assert second.headers["content-type"] == "image/png"
    metrics = harness.client.get("/metrics").text
    assert 'barcodeflow_facade_image_cache_total{result="hit"}' in metrics


def test_renders_without_redis(make_harness: MakeHarness) -> None:
    hx = make_harness(use_redis=False)
    for expected in ("miss", "hit"):  # the second comes from the in-process level of the cache
        r = hx.client.get("/v1/barcodes/qr.png?data=no-redis", headers=hx.h())
        assert r.status_code == 200
        assert r.headers["x-cache"] == expected
        assert _png_text(r.content) == ["no-redis"]


@pytest.mark.parametrize(
    ("url", "code", "field"),
    [
        ("/v1/barcodes/nope.svg?data=x", "unsupported_type", "barcode_type"),
        ("/v1/barcodes/ean13.svg?data=abc", "invalid_data", "data"),
        ("/v1/barcodes/ean13.svg?data=4006381333932", "invalid_check_digit", "data"),
        ("/v1/barcodes/qr.svg?data=x&show_text=true", "invalid_option", "options.show_text"),
        ("/v1/barcodes/qr.svg?data=x&foreground=red", "invalid_option", "options.foreground"),
        ("/v1/barcodes/qr.svg?data=x&foreground=%23000&background=%23000000", "invalid_option", None),
        ("/v1/barcodes/qr.svg?data=", "invalid_data", "data"),
    ],
)
def test_item_errors_are_422_with_stable_codes(harness: Harness, url: str, code: str, field: str | None) -> None:
    r = harness.client.get(url, headers=harness.h())
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == code
    assert err["message"]
    if field:
        assert err["field"] == field
    assert f'barcodeflow_facade_item_errors_total{{code="{code}"}}' in harness.client.get("/metrics").text


@pytest.mark.parametrize(
    "url",
    [
        "/v1/barcodes/qr.svg",  # data missing
        "/v1/barcodes/qr.gif?data=x",  # format
        "/v1/barcodes/qr.svg?data=x&width=0",
        "/v1/barcodes/qr.svg?data=x&width=99999",
        "/v1/barcodes/qr.svg?data=x&width=abc",
        "/v1/barcodes/qr.svg?data=x&error_correction=Z",
        "/v1/barcodes/qr.svg?data=x&show_text=maybe",
    ],
)
def test_bad_parameters_are_422(harness: Harness, url: str) -> None:
    r = harness.client.get(url, headers=harness.h())
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_request"
    assert r.json()["error"]["field"]


def test_unknown_image_route_is_404_json(harness: Harness) -> None:
    r = harness.client.get("/v1/barcodes/qr", headers=harness.h())
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_process_pool_executor(make_harness: MakeHarness) -> None:
    hx = make_harness(settings={"facade_render_executor": "process", "facade_render_workers": 1})
    r = hx.client.get("/v1/barcodes/qr.png?data=from-a-process", headers=hx.h())
    assert r.status_code == 200, r.text
    assert _png_text(r.content) == ["from-a-process"]
    r = hx.client.get("/v1/barcodes/ean13.png?data=4006381333932", headers=hx.h())
    assert r.status_code == 422


def test_render_backlog_is_bounded(harness: Harness) -> None:
    svc = harness.state.images
    svc.max_inflight = 0  # as if the queue were full
    r = harness.client.get(f"/v1/barcodes/qr.svg?data=busy-{uuid.uuid4()}", headers=harness.h())
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "render_unavailable"
    assert r.headers["retry-after"] == "1"


@pytest.mark.integration
def test_the_image_cache_can_have_a_redis_of_its_own(make_harness: MakeHarness, tmp_path: Path) -> None:
    """CACHE_REDIS_URL: rendered images are cached there; claims (and results, rate limits) stay in REDIS_URL."""
    import redis as redis_sync

    from barcodeflow.cache import KEY_PREFIX
    from facade.results_store import OWNER_KEY
    from tests.support.pipeline import RedisServer, free_port

    cache = RedisServer(free_port(), tmp_path / "cache")
    cache.start()
    try:
        hx = make_harness(use_redis=True, settings={"cache_redis_url": cache.url, "cache_timeout_ms": 1000})
        r = hx.client.get(f"/v1/barcodes/qr.svg?data=own-cache-{uuid.uuid4().hex}", headers=hx.h())
        assert r.status_code == 200
        cache_client, state_client = redis_sync.Redis.from_url(cache.url), redis_sync.Redis.from_url(redis_url())
        deadline = time.monotonic() + 5
        while not cache_client.keys(KEY_PREFIX + "*") and time.monotonic() < deadline:
            time.sleep(0.05)  # the image is stored after the answer
        assert len(cache_client.keys(KEY_PREFIX + "*")) == 1
        posted = hx.client.post("/v1/batches?wait=false", json=batch(1), headers=hx.h())
        batch_id = posted.json()["batch_id"]
        assert state_client.exists(OWNER_KEY.format(batch_id)) == 1
        assert cache_client.exists(OWNER_KEY.format(batch_id)) == 0
        cache_client.close()
        state_client.close()
    finally:
        cache.stop()
