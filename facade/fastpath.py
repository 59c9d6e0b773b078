"""Answer a batch from the render cache when every item is already rendered.

A waiting client whose batch is entirely in the cache (the common case for re-printed labels and
repeated catalogue exports) gets its BatchResult in a couple of milliseconds instead of four Kafka
hops. Renders are deterministic, so the answer is the one the pipeline would give. The request is
still published (and acknowledged by Kafka before the answer), so ``barcode.requests`` stays the
complete record (replay, audit) and its result appears on ``barcode.results`` like any other. The
answer made here goes to the waiting client only and is not stored: the sink is the one writer of
BatchResults, and ``GET`` serves its record.
"""

from __future__ import annotations

import time
from typing import Any

from render.batch import ImageCache, plan_batch
from render.batch import cached_result as pipeline_cached_result
from schemas.models import BatchRequest


async def cached_result(batch: BatchRequest, cache: ImageCache) -> dict[str, Any] | None:
    """The complete BatchResult if every valid item is cached; ``None`` means: ask the pipeline."""
    if batch.replay is not None:
        return None
    plan = plan_batch(batch, run="facade", received_at_ms=int(time.time() * 1000), timeout_s=0)
    return await pipeline_cached_result(batch, plan, cache)
