"""The worker's logic, kept out of the Faust agents: plan a batch, render a task.

``plan_batch`` is pure. ``render_task`` is the only coroutine: cache lookup, render the misses in the
process pool, cache the new images, and return the ``part`` record the sink aggregates.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from schemas.errors import ItemError
from schemas.models import BatchRequest
from sink.aggregate import assemble
from stream_app.cache import CachedImage, TwoLevelCache
from stream_app.pool import Outcome, RenderPool
from stream_app.render import normalize_item


def item_result(
    index: int,
    item_id: str | None,
    *,
    image: bytes | None = None,
    content_type: str | None = None,
    metadata: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    cached: bool = False,
    elapsed_ms: float = 0.0,
    include_metadata: bool = True,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": index,
        "id": item_id,
        "success": error is None,
        "cached": cached,
        "generation_time_ms": round(elapsed_ms, 3),
    }
    if error is not None:
        out["error"] = error
        return out
    if image is not None:
        if content_type == "image/svg+xml":
            out["svg"] = image.decode("utf-8")
        else:
            out["png"] = base64.b64encode(image).decode("ascii")
    if include_metadata and metadata is not None:
        out["metadata"] = metadata
    return out


@dataclass
class Plan:
    batch_id: str
    open: dict[str, Any]
    tasks: list[dict[str, Any]] = field(default_factory=list)
    rejected_items: dict[str, Any] | None = None  # a "part" record for items that failed validation


def plan_batch(req: BatchRequest, *, run: str, received_at_ms: int, timeout_s: float) -> Plan:
    """Validate each item, group identical items (they render once) and split into ≤max_concurrent tasks."""
    assert req.batch_id is not None  # noqa: S101 - parse_batch assigns one
    opts = req.options
    ids = [it.id for it in req.barcodes]
    plan = Plan(
        batch_id=req.batch_id,
        open={
            "kind": "open",
            "batch_id": req.batch_id,
            "run": run,
            "total": len(req.barcodes),
            "ids": ids,
            "received_at": received_at_ms,
            "deadline": received_at_ms + int(timeout_s * 1000),
            "replay": req.replay.model_dump() if req.replay else None,
        },
    )
    failed: list[dict[str, Any]] = []
    groups: dict[str, list[dict[str, Any]]] = {}
    for index, item in enumerate(req.barcodes):
        try:
            spec = normalize_item(item.model_dump(), verify=opts.verify)
        except ItemError as exc:
            failed.append(item_result(index, item.id, error=exc.to_dict()))
            continue
        key = spec.cache_key()
        groups.setdefault(key, []).append(
            {"index": index, "id": item.id, "key": key, "spec": spec.to_dict()}
        )
    if failed:
        plan.rejected_items = {
            "kind": "part", "batch_id": req.batch_id, "run": run, "chunk": "invalid", "results": failed,
        }  # fmt: skip
    keys = list(groups)
    n_tasks = min(opts.max_concurrent, len(keys))
    for t in range(n_tasks):
        chunk_keys = keys[t::n_tasks]
        plan.tasks.append(
            {
                "batch_id": req.batch_id,
                "run": run,
                "chunk": str(t),
                "validate_only": opts.validate_only,
                "no_cache": opts.no_cache,
                "include_metadata": opts.include_metadata,
                "items": [it for k in chunk_keys for it in groups[k]],
            }
        )
    return plan


async def render_task(task: Mapping[str, Any], *, cache: TwoLevelCache, pool: RenderPool) -> dict[str, Any]:
    """Render one task; returns the ``part`` record with one item result per item, in any order."""
    items = task["items"]
    include_metadata = bool(task.get("include_metadata", True))
    validate_only = bool(task.get("validate_only"))
    unique: dict[str, dict[str, Any]] = {}
    for it in items:
        unique.setdefault(it["key"], it["spec"])
    t0 = time.perf_counter()
    hits: dict[str, CachedImage] = {}
    if not validate_only and not task.get("no_cache"):
        hits = await cache.get_many(unique)
    lookup_ms = (time.perf_counter() - t0) * 1000
    misses = [k for k in unique if k not in hits]
    rendered: dict[str, Outcome] = {}
    if misses:
        outcomes = await pool.run([unique[k] for k in misses], validate_only)
        rendered = dict(zip(misses, outcomes, strict=True))
        if not validate_only:
            await cache.put_many(
                {
                    k: CachedImage(image=o[1], content_type=o[2] or "", metadata=o[3] or {})
                    for k, o in rendered.items()
                    if o[0] and o[1] is not None
                }
            )
    results = []
    seen: set[str] = set()
    for it in items:
        key = it["key"]
        first = key not in seen
        seen.add(key)
        if key in hits:
            h = hits[key]
            results.append(
                item_result(
                    it["index"], it["id"], image=h.image, content_type=h.content_type, metadata=h.metadata,
                    cached=True, elapsed_ms=lookup_ms / max(1, len(items)), include_metadata=include_metadata,
                )  # fmt: skip
            )
            continue
        ok, image, ctype, meta, err, ms = rendered[key]
        results.append(
            item_result(
                it["index"], it["id"], image=image, content_type=ctype, metadata=meta, error=err,
                # a duplicate of an item rendered earlier in this batch is served from that render
                cached=not first and ok, elapsed_ms=ms if first else 0.0, include_metadata=include_metadata,
            )  # fmt: skip
        )
    return {"kind": "part", "batch_id": task["batch_id"], "run": task["run"], "chunk": task["chunk"],
            "results": results}  # fmt: skip


async def cached_result(req: BatchRequest, plan: Plan, cache: TwoLevelCache) -> dict[str, Any] | None:
    """The complete BatchResult when every valid item of the batch is already rendered, else ``None``.

    Renders are deterministic, so a batch made only of cached items needs no render task and no
    aggregation: the worker's dispatch (and the facade) answer it in one step.
    """
    opts = req.options
    if opts.validate_only or opts.no_cache:
        return None
    t0 = time.perf_counter()
    items = [it for task in plan.tasks for it in task["items"]]
    keys = {it["key"] for it in items}
    hits = await cache.get_many(keys)
    if len(hits) < len(keys):
        return None
    results = list(plan.rejected_items["results"]) if plan.rejected_items else []
    per_item_ms = (time.perf_counter() - t0) * 1000 / max(1, len(items))
    for it in items:
        h = hits[it["key"]]
        results.append(
            item_result(
                it["index"], it["id"], image=h.image, content_type=h.content_type, metadata=h.metadata,
                cached=True, elapsed_ms=per_item_ms, include_metadata=opts.include_metadata,
            )  # fmt: skip
        )
    return assemble(
        plan.batch_id,
        results,
        total_time_ms=time.time() * 1000 - plan.open["received_at"],
        replay=plan.open["replay"],
    )


def failed_part(task: Mapping[str, Any], error: ItemError) -> dict[str, Any]:
    """A ``part`` in which every item of the task failed with ``error`` (infrastructure failure)."""
    return {
        "kind": "part",
        "batch_id": task["batch_id"],
        "run": task["run"],
        "chunk": task["chunk"],
        "results": [item_result(it["index"], it["id"], error=error.to_dict()) for it in task["items"]],
    }
