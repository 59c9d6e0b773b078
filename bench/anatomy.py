"""Where the time of one small batch goes: hop by hop, from the Kafka record timestamps.

Sends 2-code batches one at a time (the same two codes: after the first, every item is a cache hit),
then reads this run's private topics back from offsets noted before the first send and lines up, per
batch, the create timestamps (ms, set by each producer at ``send``) of its request,
``open`` and ``part`` records and BatchResult, plus the client's own send/receive clock:

    client send -> request ts -> open ts (intake: validate, plan, cache) -> last part ts (render) ->
    result ts (sink) -> client receive (result listener)

A batch whose items are all cached, or rendered within the worker's open grace (``WORKER_OPEN_GRACE_S``),
has one ``open`` record carrying every item and no ``part``: its ``request->open`` then includes the render.
"""

from __future__ import annotations

import time
from statistics import median
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from barcodeflow.settings import Settings


async def _offsets(settings: Settings, topics: list[str], end: bool) -> dict[TopicPartition, int]:
    c = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await c.start()
    try:
        if any(not c.partitions_for_topic(t) for t in topics):
            await c._client.force_metadata_update()  # noqa: SLF001 - no public metadata refresh
        tps = [TopicPartition(t, p) for t in topics for p in (c.partitions_for_topic(t) or ())]
        if not tps:
            return {}
        return dict(await (c.end_offsets(tps) if end else c.beginning_offsets(tps)))
    finally:
        await c.stop()


async def _read(settings: Settings, start: dict[TopicPartition, int], end: dict[TopicPartition, int]) -> list[Any]:
    c = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        max_partition_fetch_bytes=settings.max_message_bytes,
        fetch_max_bytes=max(settings.max_message_bytes * 2, 52_428_800),
    )
    await c.start()
    out: list[Any] = []
    try:
        todo = {tp for tp in end if end[tp] > start.get(tp, 0)}
        if not todo:
            return out
        c.assign(list(todo))
        for tp in todo:
            c.seek(tp, start.get(tp, 0))
        deadline = time.monotonic() + 30
        while todo and time.monotonic() < deadline:
            batches = await c.getmany(timeout_ms=500)
            for tp, recs in batches.items():
                for r in recs:
                    if r.offset < end[tp]:
                        out.append(r)
                if recs and recs[-1].offset + 1 >= end[tp]:
                    todo.discard(tp)
        return out
    finally:
        await c.stop()


async def hop_latency(driver: Any, settings: Settings, make_batch: Any, n: int, *, warm_first: bool) -> dict[str, Any]:
    """``n`` batches from ``make_batch()``, one at a time; with ``warm_first`` one more is sent first
    and not counted (it fills the cache when ``make_batch`` repeats its items)."""
    t = settings.topics
    topics = [t.requests, t.items, t.results]
    start = await _offsets(settings, topics, end=True)
    sent: dict[str, tuple[float, float]] = {}
    for i in range(n + (1 if warm_first else 0)):
        prepared = driver.prepare(make_batch())
        t0 = time.time()
        res = await driver.run("anatomy", [prepared], 1)
        if res.errors:
            raise RuntimeError(f"anatomy batch failed: {res.errors[0]}")
        if i or not warm_first:
            sent[prepared.batch_id] = (t0 * 1000, t0 * 1000 + res.latencies_ms[0])
    end = await _offsets(settings, topics, end=True)
    records = await _read(settings, start, end)
    by_batch: dict[str, dict[str, list[int]]] = {b: {} for b in sent}
    for r in records:
        bid = (r.key or b"").decode(errors="replace")
        if bid not in by_batch:
            continue
        kind = {t.requests: "request", t.results: "result"}.get(r.topic)
        if r.topic == t.items:
            kind = "open" if b'"kind":"open"' in r.value[:200] else "part"
        by_batch[bid].setdefault(kind or "?", []).append(r.timestamp)
    hops: dict[str, list[float]] = {k: [] for k in
                                    ("client->request", "request->open", "open->parts", "parts->result",
                                     "open->result (one record)", "result->client", "total")}  # fmt: skip
    per_batch: list[dict[str, float]] = []
    for bid, (c_send, c_recv) in sent.items():
        ts = by_batch[bid]
        if not all(k in ts for k in ("request", "open", "result")):
            continue
        req, opened, result = min(ts["request"]), min(ts["open"]), min(ts["result"])
        one = {"client->request": req - c_send, "request->open": opened - req}
        if "part" in ts:
            part = max(ts["part"])
            one |= {"open->parts": part - opened, "parts->result": result - part}
        else:  # the open record carries every item (cached, or rendered within the grace): it completes the batch
            one["open->result (one record)"] = result - opened
        one |= {"result->client": c_recv - result, "total": c_recv - c_send}
        per_batch.append(one)
        for k, v in one.items():
            hops[k].append(v)
    slowest = sorted(per_batch, key=lambda h: -h["total"])[:3]
    return {
        "batches": len(hops["total"]),
        "total_ms_sorted": sorted(round(x, 1) for x in hops["total"]),
        "median_ms": {k: round(median(v), 1) for k, v in hops.items() if v},
        "max_ms": {k: round(max(v), 1) for k, v in hops.items() if v},
        "slowest_batches_ms": [{k: round(v, 1) for k, v in h.items()} for h in slowest],
        "note": "Kafka create timestamps have 1 ms resolution; the clocks are the same machine's",
    }
