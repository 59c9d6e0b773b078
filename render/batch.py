"""A batch's logic, shared by the worker, the facade's fast path and the embedded path: plan a batch,
answer what the cache holds, render a task into the ``part`` record the sink aggregates.

``plan_batch`` and ``answer_from_cache`` are pure. ``render_task`` and ``cached_result`` await the image
cache and the renderer they are given (``ImageCache``, ``Renderer``); this module does no I/O itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from render.core import Outcome
from render.spec import fields_key, spec_fields
from schemas.errors import ItemError
from schemas.models import BatchRequest
from schemas.results import assemble, item_result


@dataclass(frozen=True, slots=True)
class CachedImage:
    """A rendered image as the cache keeps it (``encode``/``decode``: its stored bytes)."""

    image: bytes
    content_type: str
    metadata: dict[str, Any]

    def encode(self) -> bytes:
        head = orjson.dumps({"t": self.content_type, "m": self.metadata})
        return head + b"\n" + self.image

    @classmethod
    def of(cls, outcome: Outcome) -> CachedImage | None:
        """The image of a successful render, as the cache keeps it (None for a failure)."""
        if not outcome.success or outcome.image is None:
            return None
        return cls(image=outcome.image, content_type=outcome.content_type or "", metadata=outcome.metadata or {})

    @classmethod
    def decode(cls, raw: bytes) -> CachedImage:
        head, _, image = raw.partition(b"\n")
        doc = orjson.loads(head)
        return cls(image=image, content_type=doc["t"], metadata=doc["m"])


class ImageCache(Protocol):
    async def get_many(self, keys: Iterable[str]) -> dict[str, CachedImage]: ...

    async def put_many(self, entries: Mapping[str, CachedImage]) -> None: ...

    def remember(self, entries: Mapping[str, CachedImage]) -> None:
        """Keep ``entries`` in the process's own memory only (the shared cache has them already)."""


class Renderer(Protocol):
    async def run(self, specs: Sequence[dict[str, Any]], validate_only: bool = False) -> list[Outcome]: ...

    async def render_and_store(
        self, specs: Sequence[dict[str, Any]], keys: Sequence[str]
    ) -> tuple[list[Outcome], bool]: ...


@dataclass
class Plan:
    batch_id: str
    open: dict[str, Any]  # the "open" record; its "results" hold the items answered at dispatch
    tasks: list[dict[str, Any]] = field(default_factory=list)
    use_cache: bool = True

    def keys(self) -> set[str]:
        return {it["key"] for task in self.tasks for it in task["items"]}


def plan_batch(
    req: BatchRequest, *, run: str, received_at_ms: int, timeout_s: float, max_tasks: int | None = None
) -> Plan:
    """Validate each item, group identical items (they render once) and split them into tasks.

    A batch gets at most ``max_concurrent`` tasks (the request's bound) and at most ``max_tasks`` (what the
    renderer can run at once: more tasks than that only add a round trip, a record and a commit each)."""
    assert req.batch_id is not None  # noqa: S101 - parse_batch assigns one
    opts = req.options
    deadline = received_at_ms + int(timeout_s * 1000)
    failed: list[dict[str, Any]] = []
    groups: dict[str, list[dict[str, Any]]] = {}
    for index, item in enumerate(req.barcodes):
        try:
            spec = spec_fields(item.model_dump(), verify=opts.verify)
        except ItemError as exc:
            failed.append(item_result(index, item.id, error=exc.to_dict()))
            continue
        key = fields_key(spec)
        groups.setdefault(key, []).append({"index": index, "id": item.id, "key": key, "spec": spec})
    plan = Plan(
        batch_id=req.batch_id,
        open={
            "kind": "open",
            "batch_id": req.batch_id,
            "run": run,
            "total": len(req.barcodes),
            "ids": [it.id for it in req.barcodes],
            "received_at": received_at_ms,
            "deadline": deadline,
            "replay": req.replay.model_dump() if req.replay else None,
            "results": failed,
        },
        use_cache=not (opts.validate_only or opts.no_cache),
    )
    keys = list(groups)
    n_tasks = min(opts.max_concurrent, len(keys), max_tasks or opts.max_concurrent)
    for t in range(n_tasks):
        plan.tasks.append(
            {
                "batch_id": req.batch_id,
                "run": run,
                "chunk": str(t),
                "deadline": deadline,
                "validate_only": opts.validate_only,
                "no_cache": opts.no_cache,
                "include_metadata": opts.include_metadata,
                "items": [it for k in keys[t::n_tasks] for it in groups[k]],
            }
        )
    return plan


def answer_from_cache(plan: Plan, hits: Mapping[str, CachedImage], *, include_metadata: bool, lookup_ms: float) -> None:
    """Move every item whose image is in ``hits`` from the plan's tasks into its ``open`` record."""
    if not hits:
        return
    n_items = sum(len(t["items"]) for t in plan.tasks)
    per_item_ms = lookup_ms / max(1, n_items)
    answered = plan.open["results"]
    remaining = []
    for task in plan.tasks:
        misses = []
        for it in task["items"]:
            h = hits.get(it["key"])
            if h is None:
                misses.append(it)
                continue
            answered.append(
                item_result(
                    it["index"],
                    it["id"],
                    image=h.image,
                    content_type=h.content_type,
                    metadata=h.metadata,
                    cached=True,
                    elapsed_ms=per_item_ms,
                    include_metadata=include_metadata,
                )  # fmt: skip
            )
        if misses:
            remaining.append({**task, "items": misses})
    plan.tasks = remaining


async def render_task(task: Mapping[str, Any], *, cache: ImageCache, pool: Renderer) -> dict[str, Any]:
    """Render one task; returns the ``part`` record with one item result per item, in any order."""
    items = task["items"]
    include_metadata = bool(task.get("include_metadata", True))
    validate_only = bool(task.get("validate_only"))
    unique: dict[str, dict[str, Any]] = {}
    for it in items:
        unique.setdefault(it["key"], it["spec"])
    if validate_only:
        outcomes = await pool.run(list(unique.values()), validate_only=True)
    else:  # the pool stores the new images in the shared cache itself when it can
        outcomes, stored = await pool.render_and_store(list(unique.values()), list(unique))
    rendered: dict[str, Outcome] = dict(zip(unique, outcomes, strict=True))
    if not validate_only:
        fresh = {k: img for k, o in rendered.items() if (img := CachedImage.of(o)) is not None}
        if stored:
            cache.remember(fresh)
        else:
            await cache.put_many(fresh)
    results = []
    seen: set[str] = set()
    for it in items:
        key = it["key"]
        first = key not in seen
        seen.add(key)
        o = rendered[key]
        results.append(
            item_result(
                it["index"],
                it["id"],
                image=o.image,
                content_type=o.content_type,
                metadata=o.metadata,
                error=o.error.to_dict() if o.error is not None else None,
                # a duplicate of an item rendered earlier in this batch is served from that render
                cached=not first and o.success,
                elapsed_ms=o.elapsed_ms if first else 0.0,
                include_metadata=include_metadata,
            )  # fmt: skip
        )
    return part_record(task, results)


def part_record(task: Mapping[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "kind": "part",
        "batch_id": task["batch_id"],
        "run": task["run"],
        "chunk": task["chunk"],
        "deadline": task.get("deadline"),
        "results": results,
    }


def merge_parts(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``part`` records of one batch's tasks as one record (chunk ids joined with ``+``).

    A worker emits a batch's parts only once all of its tasks are rendered (the sink cannot answer before
    the last one anyway), so one record per batch costs one produce request, one fetch and one decode
    instead of one per task. A batch read again after a crash is planned the same way and gives the same
    chunk id, which the sink recognises; the sink merges item results by index in any case."""
    if len(parts) == 1:
        return dict(parts[0])
    return {
        **parts[0],
        "chunk": "+".join(str(p["chunk"]) for p in parts),
        "results": [r for p in parts for r in p["results"]],
    }


def complete_open(open_record: Mapping[str, Any], parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A batch's ``open`` record carrying the item results of its ``parts`` as well: with every item in it,
    the one record completes the run in the sink (as for a batch answered in full from the cache).

    A worker sends this when the renders finish soon after planning: one record instead of two costs one
    produce request, one fetch and one decode less per batch. A request read again after a crash may
    give the same run an ``open`` and a ``part`` instead, or another such record; the sink merges item
    results by index in any case, and a run already emitted ignores what comes later."""
    return {**open_record, "results": [*open_record["results"], *(r for p in parts for r in p["results"])]}


def failed_part(task: Mapping[str, Any], error: ItemError) -> dict[str, Any]:
    """A ``part`` in which every item of the task failed with ``error`` (infrastructure failure)."""
    return part_record(task, [item_result(it["index"], it["id"], error=error.to_dict()) for it in task["items"]])


async def cached_result(req: BatchRequest, plan: Plan, cache: ImageCache) -> dict[str, Any] | None:
    """The complete BatchResult when every valid item of the batch is already rendered, else ``None``.

    Renders are deterministic, so this is the answer the pipeline gives (the facade answers a waiting
    client with it; the pipeline's own record comes from the sink)."""
    if not plan.use_cache:
        return None
    t0 = time.perf_counter()
    hits = await cache.get_many(plan.keys())
    if len(hits) < len(plan.keys()):
        return None
    answer_from_cache(
        plan, hits, include_metadata=req.options.include_metadata, lookup_ms=(time.perf_counter() - t0) * 1000
    )
    return assemble(
        plan.batch_id,
        plan.open["results"],
        total_time_ms=time.time() * 1000 - plan.open["received_at"],
        replay=plan.open["replay"],
    )
