"""The embedded path: run a batch in-process through the same planning, render and aggregation code
as the pipeline, with no broker (used by ``barcodeflow render``, the benchmarks and tests). It sits
above the worker's and the sink's code: it composes ``render.batch`` and the sink's pure aggregator."""

from __future__ import annotations

import time
from typing import Any

from barcodeflow.cache import TwoLevelCache
from render.batch import answer_from_cache, plan_batch, render_task
from render.pool import InlinePool
from schemas.models import BatchRequest
from sink.aggregate import BatchAggregator


async def run_batch(
    req: BatchRequest,
    *,
    cache: TwoLevelCache | None = None,
    pool: Any = None,
    timeout_s: float = 3600.0,
) -> dict[str, Any]:
    cache = cache or TwoLevelCache(None, max_size=0)
    pool = pool or InlinePool()
    received = int(time.time() * 1000)
    t0 = time.perf_counter()
    plan = plan_batch(req, run="local", received_at_ms=received, timeout_s=timeout_s)
    if plan.use_cache and plan.tasks:
        hits = await cache.get_many(plan.keys())
        answer_from_cache(plan, hits, include_metadata=req.options.include_metadata, lookup_ms=0.0)
    agg = BatchAggregator(timeout_s=timeout_s)
    records = [plan.open] + [await render_task(task, cache=cache, pool=pool) for task in plan.tasks]
    done = [e for offset, record in enumerate(records) for e in agg.apply(0, offset, record, received)]
    if not done:  # cannot happen for a well-formed plan; keeps the contract "always a result"
        raise RuntimeError(f"batch {plan.batch_id} did not complete")
    result = done[0].result
    elapsed = (time.perf_counter() - t0) * 1000
    total = result["summary"]["total"]
    result["summary"]["total_time_ms"] = round(elapsed, 3)
    result["summary"]["average_time_ms"] = round(elapsed / total, 3) if total else 0.0
    return result
