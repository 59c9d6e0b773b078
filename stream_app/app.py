"""The render worker: a Faust app with two agents, wired by ``create_worker_app(settings)``.

* ``dispatch`` (``barcode.requests``): decode and validate a batch once, plan it into render tasks.
  A message that is not a valid batch goes to ``barcode.requests.dlq`` with its original bytes and
  the reason; when its ``batch_id`` can be read, a failed BatchResult is published too.
* ``render`` (``barcode.render.tasks``): cache lookup, render misses in the process pool, emit a part.

Both agents run with concurrency 1. faust-streaming #606: with ``concurrency>1`` an offset can be
committed past a message still in flight, losing it on a crash. Parallelism comes instead from
``stream.take_events`` (several tasks rendered at once, all acknowledged only after all are done)
over a process pool, and from more worker processes in the consumer group.

Every exception is caught per message (an exception escaping an agent still acknowledges it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
import orjson

from barcodeflow.settings import Settings
from schemas.errors import BatchValidationError, ErrorCode, RenderFailed
from schemas.validate import parse_batch, peek_batch_id
from sink.aggregate import rejected
from stream_app.cache import TwoLevelCache, redis_client
from stream_app.faust_config import faust_config
from stream_app.pipeline import cached_result, failed_part, plan_batch, render_task
from stream_app.pool import RenderPool
from stream_app.stall import watch_for_stalls

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


class WorkerApp(faust.App):
    """The Faust app plus the resources its agents use; the lifecycle hooks own them."""

    bf_settings: Settings
    pool: RenderPool
    render_cache: TwoLevelCache

    async def on_start(self) -> None:
        await super().on_start()
        self.pool.start()
        self.render_cache.redis = redis_client(self.bf_settings.redis_url, self.bf_settings.cache_timeout_ms)

    async def on_stop(self) -> None:
        self.pool.stop()
        if self.render_cache.redis is not None:
            await self.render_cache.redis.aclose()
        await super().on_stop()


def dlq_headers(code: str, reason: str, event: faust.EventT) -> list[tuple[str, bytes]]:
    msg = event.message
    return [
        ("x-error-code", code.encode()),
        ("x-error-reason", reason[:4000].encode("utf-8", "replace")),
        ("x-source-topic", str(msg.topic).encode()),
        ("x-source-partition", str(msg.partition).encode()),
        ("x-source-offset", str(msg.offset).encode()),
    ]


def create_worker_app(settings: Settings, **overrides: Any) -> WorkerApp:
    app = WorkerApp(**{**faust_config(settings, "worker"), **overrides})
    app.bf_settings = settings
    app.pool = RenderPool(settings.render_concurrency)
    app.render_cache = TwoLevelCache(
        None,
        max_size=settings.cache_max_size,
        ttl=settings.cache_default_ttl,
        timeout_ms=settings.cache_timeout_ms,
    )
    t = settings.topics
    requests = app.topic(t.requests, partitions=settings.topic_partitions)
    tasks = app.topic(t.tasks, partitions=settings.topic_partitions)
    items = app.topic(t.items, partitions=settings.topic_partitions)
    results = app.topic(t.results, partitions=settings.topic_partitions)
    dlq = app.topic(t.dlq, partitions=settings.topic_partitions)
    stall_watch = watch_for_stalls(app, [t.requests, t.tasks], after_s=settings.stall_reread_s)
    app.stall_watch = stall_watch  # type: ignore[attr-defined]
    stats = {"dispatched": 0, "answered_from_cache": 0, "dead_lettered": 0, "tasks": 0, "task_failures": 0}
    app.bf_stats = stats  # type: ignore[attr-defined]

    async def dead_letter(event: faust.EventT, code: str, reason: str) -> None:
        stats["dead_lettered"] += 1
        log.warning("DLQ %s p%s@%s: %s", code, event.message.partition, event.message.offset, reason[:200])
        await dlq.send(key=event.message.key, value=event.value, headers=dlq_headers(code, reason, event))

    async def handle_request(event: faust.EventT) -> None:
        raw = event.value if isinstance(event.value, bytes) else b""
        try:
            req = parse_batch(raw, max_batch_size=settings.max_batch_size)
        except BatchValidationError as exc:
            await dead_letter(event, exc.code.value, str(exc))
            batch_id = peek_batch_id(raw)
            if batch_id is not None:
                await results.send(key=batch_id.encode(), value=orjson.dumps(rejected(batch_id, exc.problems)))
            return
        msg = event.message
        plan = plan_batch(
            req, run=f"{msg.partition}:{msg.offset}", received_at_ms=now_ms(), timeout_s=settings.batch_timeout_s
        )
        key = plan.batch_id.encode()
        done = await cached_result(req, plan, app.render_cache)
        if done is not None:  # every item already rendered: answer now, no tasks, no aggregation
            stats["answered_from_cache"] += 1
            await results.send(key=key, value=orjson.dumps(done))
            return
        await items.send(key=key, value=orjson.dumps(plan.open))
        if plan.rejected_items:
            await items.send(key=key, value=orjson.dumps(plan.rejected_items))
        for task in plan.tasks:
            await tasks.send(key=f"{plan.batch_id}:{task['chunk']}".encode(), value=orjson.dumps(task))
        stats["dispatched"] += 1

    @app.agent(requests)
    async def dispatch(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            try:
                await handle_request(event)
            except Exception as exc:  # noqa: BLE001 - never let one message kill the agent; DLQ it
                log.exception("dispatch failed")
                await dead_letter(event, ErrorCode.INTERNAL.value, f"{type(exc).__name__}: {exc}")

    async def handle_task(event: faust.EventT) -> None:
        try:
            task = orjson.loads(event.value)
        except orjson.JSONDecodeError as exc:
            await dead_letter(event, ErrorCode.INTERNAL.value, f"unreadable render task: {exc}")
            return
        try:
            part = await render_task(task, cache=app.render_cache, pool=app.pool)
        except Exception as exc:  # noqa: BLE001 - the batch still completes: these items fail, visibly
            log.exception("render task %s/%s failed", task.get("batch_id"), task.get("chunk"))
            stats["task_failures"] += 1
            part = failed_part(task, RenderFailed(f"internal error while rendering: {type(exc).__name__}"))
        stats["tasks"] += 1
        await items.send(key=str(task["batch_id"]).encode(), value=orjson.dumps(part))

    @app.agent(tasks)
    async def render(stream: faust.StreamT[bytes]) -> None:
        assert isinstance(stream, faust.Stream)  # noqa: S101 - take_events is not on the StreamT protocol
        # a deep buffer keeps every pool process busy: all tasks taken are acknowledged together
        async for events in stream.take_events(max(4, settings.render_concurrency * 16), within=0.005):
            outcomes = await asyncio.gather(*(handle_task(e) for e in events), return_exceptions=True)
            for e, outcome in zip(events, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    log.error("task p%s@%s: %r", e.message.partition, e.message.offset, outcome)
                    await dead_letter(e, ErrorCode.INTERNAL.value, repr(outcome))

    return app
