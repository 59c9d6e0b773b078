"""R3: a private Redis frozen (SIGSTOP) and then killed under continuous load.

The pipeline uses a private ``redis-server`` with the in-process LRU disabled (``CACHE_MAX_SIZE=0``), so every
render task reads (MGET) and writes (SET) Redis: the worst exposure to an outage. A sender publishes a
batch every ``INTERVAL_S`` (6 unique QR items + 4 items from a small pool, i.e. Redis hits in normal
operation). Phases: baseline, Redis frozen with SIGSTOP (connections accepted, no answer: every call runs
into ``CACHE_TIMEOUT_MS``), resumed (SIGCONT), killed (connection refused), restarted (empty).

Checked: no failed item in any phase; every image byte-identical to the in-process render (a Redis
connection left mid-response after a timeout must never hand one key's image to another); per-batch latency
(result arrival - publish ack) in each phase, and the added latency bounded by the cache timeout.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from barcodeflow.settings import Settings
from producer import BatchProducer
from tests.conftest import running_pipeline
from tests.faults.checker import ResultsChecker, expect_batch
from tests.faults.conftest import Figures, Scale
from tests.faults.support import keep_logs, percentile
from tests.support.pipeline import RedisServer, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INTERVAL_S = 0.25
WARMUP_BATCHES = 8  # the first 2 s (fresh pool processes, first group fetches) are not the baseline
CACHE_TIMEOUT_MS = 100
# Bound on the added per-batch latency while Redis is frozen, from the design: a render task makes at most
# one MGET and one SET, each bounded by CACHE_TIMEOUT_MS, and after a failure Redis is skipped for 1 s; a
# 10-item batch is 10 tasks taken in at most 2 rounds of take_events -> at most 4 timeouts in a row.
ADDED_P50_BOUND_MS = 4 * CACHE_TIMEOUT_MS
ADDED_P95_BOUND_MS = 4 * CACHE_TIMEOUT_MS + 400  # + scheduling noise of a shared 2-core machine


def batch(tag: str, n: int) -> dict[str, Any]:
    items = [{"id": f"{n}-{i}", "barcode_type": "qr", "data": f"{tag}/{n}/{i}"} for i in range(6)]
    items += [{"id": f"{n}-{6 + i}", "barcode_type": "code128", "data": f"{tag}-pool-{(n + i) % 12}"} for i in range(4)]
    return {"batch_id": f"{tag}-{n:05d}", "barcodes": items}


@pytest.mark.timeout(240)
async def test_r3_redis_frozen_then_killed_under_load(
    fault_settings: Settings, tmp_path: Path, scale: Scale, figures: Figures
) -> None:
    redis = RedisServer(free_port(), tmp_path / "redis")
    redis.start()
    s = fault_settings.with_(redis_url=redis.url, cache_max_size=0, cache_timeout_ms=CACHE_TIMEOUT_MS)
    tag = "r3" + uuid.uuid4().hex[:6]
    sent: dict[str, tuple[float, str]] = {}  # batch_id -> (publish acked at, phase)
    bodies: dict[str, dict[str, Any]] = {}
    phase = "baseline"
    stop = asyncio.Event()
    frozen = False
    try:
        async with running_pipeline(s, tmp_path) as pipe:
            results = ResultsChecker(s)
            await results.start()

            async def sender(prod: BatchProducer) -> None:
                n = 0
                while not stop.is_set():
                    b = batch(tag, n)
                    n += 1
                    bodies[b["batch_id"]] = b
                    ph = phase
                    await prod.send(b)
                    sent[b["batch_id"]] = (time.monotonic(), ph)
                    await asyncio.sleep(INTERVAL_S)

            try:
                async with BatchProducer(s) as prod:
                    task = asyncio.create_task(sender(prod))
                    try:
                        await asyncio.sleep(scale.r3_baseline_s)
                        phase = "frozen"
                        os.kill(redis.popen.pid, signal.SIGSTOP)  # type: ignore[union-attr]
                        frozen = True
                        await asyncio.sleep(scale.r3_frozen_s)
                        phase = "resumed"
                        os.kill(redis.popen.pid, signal.SIGCONT)  # type: ignore[union-attr]
                        frozen = False
                        await asyncio.sleep(scale.r3_after_s)
                        phase = "killed"
                        redis.stop()
                        await asyncio.sleep(scale.r3_killed_s)
                        phase = "restarted"
                        redis.start()
                        await asyncio.sleep(scale.r3_after_s)
                    finally:
                        stop.set()
                        await task
                ids = list(sent)
                complete = await results.wait_for(ids, 120)
                await results.drain(quiet_s=2.0)
            finally:
                await results.stop()
            worker_log = pipe.procs["worker"].tail(400)
    finally:
        if frozen and redis.popen is not None:
            os.kill(redis.popen.pid, signal.SIGCONT)
        redis.stop()

    expected = await asyncio.to_thread(lambda: {b: expect_batch(bodies[b]) for b in ids})
    report = results.analyse(expected)
    failed_items = 0
    cached_by_phase: dict[str, int] = {}
    lat: dict[str, list[float]] = {}
    for k, (bid, (t_sent, ph)) in enumerate(sent.items()):
        if k < WARMUP_BATCHES:
            continue
        recs = results.originals(bid)
        if not recs or recs[-1].doc is None:
            continue
        doc = recs[-1].doc
        failed_items += doc["summary"]["failed"]
        cached_by_phase[ph] = cached_by_phase.get(ph, 0) + doc["summary"]["cached"]
        lat.setdefault(ph, []).append((min(r.arrived for r in recs) - t_sent) * 1000)
    stats = {
        ph: {"batches": len(v), "p50_ms": round(percentile(v, 50)), "p95_ms": round(percentile(v, 95)),
             "max_ms": round(max(v))}
        for ph, v in lat.items()
    }  # fmt: skip
    base = stats["baseline"]
    added = {ph: (st["p50_ms"] - base["p50_ms"], st["p95_ms"] - base["p95_ms"]) for ph, st in stats.items()}
    bounded = all(
        a50 <= ADDED_P50_BOUND_MS and a95 <= ADDED_P95_BOUND_MS for ph, (a50, a95) in added.items() if ph != "baseline"
    )
    ok = complete and not report.lost and not report.incomplete and failed_items == 0 and bounded
    if not ok:
        print(f"logs of the failed R3 run kept in {keep_logs(tmp_path, 'r3')}")
    figures.record(
        "R3 Redis outage",
        load=f"1 batch / {INTERVAL_S:g} s (10 items, 4 from a pool), {len(ids)} batches; LRU off",
        faults=f"SIGSTOP Redis {scale.r3_frozen_s:g} s, then SIGKILL {scale.r3_killed_s:g} s + restart",
        lost=len(report.lost),
        visible_duplicates=report.visible_duplicates,
        raw_duplicates=report.raw_duplicates,
        recover_s="no stall; added p50/p95 ms: "
        + ", ".join(f"{ph} {a[0]}/{a[1]}" for ph, a in added.items() if ph != "baseline"),  # fmt: skip
        outcome="pass" if ok else "FAIL",
        extra={**report.summary(), "failed_items": failed_items, "latency": stats, "cached_items": cached_by_phase},
    )
    assert complete, report.explain()
    assert not report.lost, report.explain()
    assert failed_items == 0
    assert not report.incomplete, report.explain()
    assert stats.get("frozen", {}).get("batches", 0) >= 5, stats
    assert bounded, f"added latency over the bound ({ADDED_P50_BOUND_MS}/{ADDED_P95_BOUND_MS} ms): {stats}"
    assert cached_by_phase.get("baseline", 0) > 0, "no Redis hit in the baseline: the scenario tests nothing"
    assert "redis" in worker_log.lower(), "the worker did not log the Redis failure"
