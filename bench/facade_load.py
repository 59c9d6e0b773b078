"""Part 3: latency through the HTTP facade (``POST /v1/batches``, synchronous: it waits for the result).

A facade process runs against the same pipeline (its own topics), with one API key and a rate limit
far above what the benchmark sends (the limiter still runs: its Redis round trip is part of every
request). Clients are ``aiohttp.ClientSession``s with keep-alive, one connection per simulated client.
The client's own work is on every measured request's path and shares the 2 cores with the facade: an
``httpx.AsyncClient`` spent 1.8 CPU ms per 2-code request here, aiohttp 0.5-0.7 (BENCHMARKS.md). The
2-code cached batch at 1 client is also measured with httpx (``cached_2_httpx``), for comparison with
runs before the change (information, no target).

* ``cached_2``: a 2-code batch (a QR URL and an EAN-13, SVG) sent once before measuring, so every
  measured request is answered from the render cache: the facade answers once the request is
  published and acknowledged by Kafka (the pipeline's own record of it then goes through the sink).
* ``uncached_qr_100``: 100 QR codes with fresh data per request (the ``qr`` workload: 1 in 4 PNG).
  The first two such requests after the facade starts are reported apart (``first_100_qr_ms``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import orjson

from bench.e2e import percentile
from bench.workloads import DataSource, items, take

WARMUP_WINDOW = 300  # requests per p50 reported during the warm-up (as many as the measured 1-client run)
API_KEY = "bench-key-0123456789abcdef"  # noqa: S105 - a throwaway key for a private facade process


def facade_env() -> dict[str, str]:
    return {"API_KEYS": API_KEY, "RATE_LIMIT": "100000000/minute", "FACADE_WAIT_S": "30"}


@dataclass
class LatencyResult:
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    cached_items: int = 0
    items: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {
            "requests": self.requests,
            "ok": len(lat),
            "errors": len(self.errors),
            "error_samples": self.errors[:5],
            "p50_ms": round(percentile(lat, 50), 2),
            "p95_ms": round(percentile(lat, 95), 2),
            "p99_ms": round(percentile(lat, 99), 2),
            "max_ms": round(lat[-1], 2) if lat else 0.0,
            "requests_per_s": round(len(lat) / self.seconds, 1) if self.seconds else 0.0,
            "cached_share": round(self.cached_items / self.items, 4) if self.items else 0.0,
            "latencies_ms_in_order": [round(x, 1) for x in self.latencies_ms] if len(lat) <= 100 else None,
        }


async def wait_facade(base_url: str, timeout: float = 90.0, check: Any = None) -> float:
    t0 = time.monotonic()
    last = ""
    async with httpx.AsyncClient(base_url=base_url, timeout=5.0) as client:
        while time.monotonic() - t0 < timeout:
            if check is not None:
                check()
            try:
                r = await client.get("/readyz")
                if r.status_code == 200:
                    return time.monotonic() - t0
                last = r.text[:300]
            except httpx.HTTPError as exc:
                last = repr(exc)
            await asyncio.sleep(0.5)
    raise TimeoutError(f"facade not ready after {timeout:.0f} s: {last}")


async def _metrics_text(base_url: str) -> str:
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=5.0, headers={"X-API-Key": API_KEY}) as client:
            return (await client.get("/metrics")).text
    except httpx.HTTPError:
        return ""


async def local_results_mb(base_url: str) -> float | None:
    """The facade's in-process copy of its own batches' results, in MB (``..._local_results_bytes``)."""
    for line in (await _metrics_text(base_url)).splitlines():
        if line.startswith("barcodeflow_facade_local_results_bytes "):
            return round(float(line.rpartition(" ")[2]) / 2**20, 1)
    return None


async def facade_outcomes(base_url: str) -> dict[str, float]:
    """``barcodeflow_facade_batches_total`` by outcome, from the facade's /metrics."""
    out: dict[str, float] = {}
    for line in (await _metrics_text(base_url)).splitlines():
        if line.startswith("barcodeflow_facade_batches_total{"):
            labels, _, value = line.rpartition(" ")
            outcome = labels.split('outcome="', 1)[-1].split('"', 1)[0]
            out[outcome] = float(value)
    return out


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, int]:
    return {k: int(v - before.get(k, 0.0)) for k, v in after.items() if v - before.get(k, 0.0)}


Post = Callable[[bytes], Awaitable[tuple[int, bytes]]]
CLIENT_ERRORS = (httpx.HTTPError, aiohttp.ClientError, asyncio.TimeoutError)


@contextlib.asynccontextmanager
async def _client(kind: str, base_url: str, timeout: float) -> AsyncIterator[Post]:
    """One keep-alive connection; ``post(body)`` -> (status, body bytes) for ``POST /v1/batches``."""
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
    if kind == "httpx":
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits, headers=headers) as hc:

            async def post_httpx(body: bytes) -> tuple[int, bytes]:
                r = await hc.post("/v1/batches", content=body)
                return r.status_code, r.content

            yield post_httpx
        return
    conn = aiohttp.TCPConnector(limit=1)
    to = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(base_url, connector=conn, timeout=to, headers=headers) as ac:

        async def post_aiohttp(body: bytes) -> tuple[int, bytes]:
            async with ac.post("/v1/batches", data=body) as r:
                return r.status, await r.read()

        yield post_aiohttp


async def _load(
    base_url: str, bodies: list[list[bytes]], timeout: float, warmup: int = 0, client: str = "aiohttp"
) -> LatencyResult:
    """``bodies[c]`` is what client ``c`` sends, one request after another; each client's first
    ``warmup`` requests (connection set-up) are sent but not recorded. ``client``: aiohttp or httpx."""
    res = LatencyResult()

    async def client_loop(mine: list[bytes]) -> None:
        async with _client(client, base_url, timeout) as post:
            for i, body in enumerate(mine):
                if i < warmup:
                    with contextlib.suppress(*CLIENT_ERRORS):
                        await post(body)
                    continue
                res.requests += 1
                t0 = time.perf_counter()
                try:
                    status, content = await post(body)
                    elapsed = (time.perf_counter() - t0) * 1000
                    if status != 200:
                        res.errors.append(f"HTTP {status}: {content[:200]!r}")
                        continue
                    doc = orjson.loads(content)
                except (*CLIENT_ERRORS, orjson.JSONDecodeError) as exc:
                    res.errors.append(f"{type(exc).__name__}: {exc}"[:300])
                    continue
                s = doc.get("summary", {})
                if doc.get("success") is not True:
                    res.errors.append(f"batch failed: {str(doc)[:200]}")
                    continue
                res.latencies_ms.append(elapsed)
                res.items += int(s.get("total", 0))
                res.cached_items += int(s.get("cached", 0))

    t0 = time.perf_counter()
    await asyncio.gather(*(client_loop(b) for b in bodies))
    res.seconds = time.perf_counter() - t0
    return res


async def measure_facade(
    base_url: str,
    *,
    cached_requests: dict[int, int],
    qr_requests: dict[int, int],
    warmup_requests: int = 0,
    log: Any = print,
    on_warm: Any = None,
) -> dict[str, Any]:
    """``cached_requests``/``qr_requests``: concurrent clients -> requests per client. ``on_warm()`` is called
    once every kind of request has been through the facade (its memory baseline)."""
    source = DataSource()
    small = orjson.dumps({"barcodes": [
        {"barcode_type": "qr", "data": source.data("qr"), "format": "svg"},
        {"barcode_type": "ean13", "data": source.data("ean13"), "format": "svg"},
    ]})  # fmt: skip
    # send once (renders and caches it), then a few warm-up requests per connection count
    first = await _load(base_url, [[small]], 30.0)
    if first.errors:
        raise RuntimeError(f"facade: first 2-code batch failed: {first.errors[0]}")
    await _load(base_url, [[small] * 5], 30.0)
    out: dict[str, Any] = {"first_2_code_ms": round(first.latencies_ms[0], 1), "cached_2": {}, "uncached_qr_100": {}}
    if warmup_requests:
        # a broker started minutes ago handles its first tens of thousands of small requests in the JVM's
        # interpreter and C1 code: in the first run after a restart, the 1-client p50 fell by 17-44 % over these
        # requests (BENCHMARKS.md). The target is the steady state; the warm-up's own p50s, window by window, are
        # kept beside it.
        w = await _load(base_url, [[small] * warmup_requests], 30.0)
        lat = w.latencies_ms
        out["cached_2_warmup"] = {
            "requests": len(lat),
            "errors": len(w.errors),
            "window": WARMUP_WINDOW,
            "p50_ms_by_window": [
                round(percentile(sorted(lat[i : i + WARMUP_WINDOW]), 50), 2) for i in range(0, len(lat), WARMUP_WINDOW)
            ],
        }
        log(f"facade: warm-up, {len(lat)} 2-code requests, p50 per {WARMUP_WINDOW}: "
            f"{out['cached_2_warmup']['p50_ms_by_window']}")  # fmt: skip
    for clients, n in cached_requests.items():
        before = await facade_outcomes(base_url)
        r = await _load(base_url, [[small] * (n + 2) for _ in range(clients)], 30.0, warmup=2)
        out["cached_2"][str(clients)] = r.to_json()
        out["cached_2"][str(clients)]["facade_outcomes"] = _delta(await facade_outcomes(base_url), before)
        log(f"facade: 2-code cached, {clients} client(s): p50 {r.to_json()['p50_ms']} ms, "
            f"p99 {r.to_json()['p99_ms']} ms ({len(r.latencies_ms)} ok, {len(r.errors)} errors)")  # fmt: skip
        if clients == 1:  # the same requests from httpx, the client of runs before 2026-12-07 (information)
            r = await _load(base_url, [[small] * (n + 2)], 30.0, warmup=2, client="httpx")
            out["cached_2_httpx"] = {"1": r.to_json()}
            log(f"facade: 2-code cached, 1 client, httpx: p50 {r.to_json()['p50_ms']} ms")
    qr = items("qr", source)
    # the facade's first big batches are slow (seconds: start-up costs on that path); they are
    # reported apart, and each client sends 2 unmeasured requests first, as for the cached batch
    cold = await _load(base_url, [[orjson.dumps({"barcodes": take(qr, 100)}) for _ in range(2)]], 60.0)
    out["first_100_qr_ms"] = [round(x, 1) for x in cold.latencies_ms]
    if on_warm is not None:
        on_warm()
    for clients, n in qr_requests.items():
        bodies = [[orjson.dumps({"barcodes": take(qr, 100)}) for _ in range(n + 2)] for _ in range(clients)]
        before = await facade_outcomes(base_url)
        r = await _load(base_url, bodies, 60.0, warmup=2)
        out["uncached_qr_100"][str(clients)] = r.to_json()
        out["uncached_qr_100"][str(clients)]["facade_outcomes"] = _delta(await facade_outcomes(base_url), before)
        log(f"facade: 100-QR uncached, {clients} client(s): p50 {r.to_json()['p50_ms']} ms, "
            f"p95 {r.to_json()['p95_ms']} ms ({len(r.latencies_ms)} ok, {len(r.errors)} errors)")  # fmt: skip
    return out
