"""The render worker, wired by ``create_worker_app(settings)``: a Faust app whose ``render`` agent
renders tasks, fed by the intake loop (``stream_app.intake``) through an in-memory channel.

Kafka offsets are only ever committed by the intake, once a request's output is acknowledged, so the
agent can run with any concurrency: faust-streaming #606 (offsets committed past messages still in
flight with ``concurrency>1``) concerns topic-fed agents, and a channel has no offsets. Rendering is
CPU-bound and runs in a process pool (``RENDER_CONCURRENCY`` processes), never on the event loop;
the agent runs twice as many actors as the pool has processes, so every process always has a task.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from barcodeflow.aio import cancel_and_wait
from barcodeflow.cache import PoolStore, TwoLevelCache
from barcodeflow.kafka import consumer_config, group_config, membership_hint, producer_config
from barcodeflow.redis import redis_client
from barcodeflow.settings import Settings
from render.batch import failed_part, render_task
from render.pool import RenderPool
from schemas.errors import BarcodeflowError, RenderFailed
from stream_app.faust_config import faust_config
from stream_app.intake import Intake

log = logging.getLogger(__name__)

AGENT_TIMEOUT_MARGIN_S = 30.0
LOST_JOB_S = 1.0


class StartupStalled(BarcodeflowError):
    """The worker's intake did not start within ``WORKER_START_TIMEOUT_S`` of the app's start."""


@dataclass
class RenderJob:
    task: dict[str, Any]
    part: asyncio.Future[dict[str, Any]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    started: bool = False
    sent_at: float = 0.0

    def finish(self, part: dict[str, Any]) -> None:
        if not self.part.done():
            self.part.set_result(part)


class WorkerApp(faust.App):
    """The Faust app plus the resources its agent and the intake use; the lifecycle hooks own them."""

    bf_settings: Settings
    pool: RenderPool
    render_cache: TwoLevelCache
    jobs: Any
    intake: Intake
    intake_task: asyncio.Task[None] | None = None
    start_watch: asyncio.Task[None] | None = None
    actors: int = 1
    actors_busy: int = 0
    last_pickup: float = 0.0
    jobs_resent: int = 0

    async def on_start(self) -> None:
        await super().on_start()
        self.pool.start()
        s = self.bf_settings
        self.render_cache.redis = redis_client(s.image_cache_url, timeout_s=s.cache_timeout_ms / 1000)
        self.start_watch = asyncio.create_task(self._watch_start(s.worker_start_timeout_s), name="start-watch")

    async def _watch_start(self, timeout_s: float) -> None:
        """End the worker if its intake has not started ``timeout_s`` after the app: Faust's start-up waits
        for its consumer's first assignment without a bound, and a static member that the broker fenced (a
        second live process under its GROUP_INSTANCE_ID) never gets one; it would sit there, alive and idle."""
        await asyncio.sleep(timeout_s)
        if self.intake_task is None:
            exc = StartupStalled(f"the intake did not start within {timeout_s:g} s (WORKER_START_TIMEOUT_S)")
            log.critical("worker stopped: %s%s", exc, membership_hint(self.bf_settings))
            await self.crash(exc)

    async def start_intake(self) -> None:
        s = self.bf_settings
        consumer = AIOKafkaConsumer(
            **consumer_config(s, "barcodeflow-intake"), **group_config(s), group_id=f"{s.app_id}-intake"
        )
        producer = AIOKafkaProducer(**producer_config(s, "barcodeflow-worker"))
        self.intake = Intake(s, consumer=consumer, producer=producer, cache=self.render_cache, render=self.render)
        await producer.start()
        consumer.subscribe([s.topics.requests], listener=self.intake.rebalance)
        # joining the group happens in the task: a failure to join (a fenced static member) ends the worker
        # with the same log as a crash of the loop
        self.intake_task = asyncio.create_task(self._run_intake(consumer), name="intake")
        self.intake_task.add_done_callback(self._intake_ended)

    async def _run_intake(self, consumer: AIOKafkaConsumer) -> None:
        await consumer.start()
        await self.intake.run()

    def _intake_ended(self, task: asyncio.Task[None]) -> None:
        exc = None if task.cancelled() else task.exception()
        if exc is not None:
            log.critical("intake loop crashed: %r; stopping the worker%s", exc, membership_hint(self.bf_settings))
            asyncio.ensure_future(self.crash(exc))  # mode's Service.crash: the worker exits with status 1

    async def render(self, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Hand ``tasks`` to the render agent; their parts, in order.

        Faust clears the queues of its channels and streams when it resumes its flow after a rebalance of
        its own consumer group (``FlowControlQueue(clear_on_resume=True)`` in ``faust/channels.py``; the
        root cause of records acknowledged unseen, RELIABILITY.md D6): a job waiting in the channel then
        silently disappears. A job not picked up while an actor stood idle for ``LOST_JOB_S`` is therefore
        sent again (a job rendered twice costs CPU, never correctness: the first part wins). A task the agent
        has not answered by the batch deadline plus a margin fails visibly (``render_failed``)."""
        loop = asyncio.get_running_loop()
        jobs = [RenderJob(task) for task in tasks]
        for job in jobs:
            await self._send_job(job)
        give_up = loop.time() + self.bf_settings.batch_timeout_s + AGENT_TIMEOUT_MARGIN_S
        while waiting := [j.part for j in jobs if not j.part.done()]:
            await asyncio.wait(waiting, timeout=LOST_JOB_S)
            now = loop.time()
            if now >= give_up:
                for job in jobs:
                    if not job.part.done():
                        log.error("render agent gave no answer for %s/%s", job.task["batch_id"], job.task["chunk"])
                        job.finish(failed_part(job.task, RenderFailed("the render agent did not answer in time")))
                break
            if self.actors_busy < self.actors and now - self.last_pickup >= LOST_JOB_S:
                for job in jobs:
                    if not job.started and not job.part.done() and now - job.sent_at >= LOST_JOB_S:
                        self.jobs_resent += 1
                        log.warning("render job %s/%s was dropped by the channel; sending it again",
                                    job.task["batch_id"], job.task["chunk"])  # fmt: skip
                        await self._send_job(job)
        return [job.part.result() for job in jobs]

    async def _send_job(self, job: RenderJob) -> None:
        job.sent_at = asyncio.get_running_loop().time()
        await self.jobs.send(value=job)

    async def on_stop(self) -> None:
        if self.start_watch is not None:
            await cancel_and_wait(self.start_watch)
        if self.intake_task is not None:
            await cancel_and_wait(self.intake_task)
            await self.intake.drain()
            await self.intake.consumer.stop()
            await self.intake.producer.stop()
        self.pool.stop()
        if self.render_cache.redis is not None:
            await self.render_cache.redis.aclose()
        await super().on_stop()


def create_worker_app(settings: Settings, **overrides: Any) -> WorkerApp:
    app = WorkerApp(**{**faust_config(settings, "worker"), **overrides})
    app.bf_settings = settings
    store = PoolStore(settings.image_cache_url, ttl=settings.cache_default_ttl, timeout_ms=settings.cache_timeout_ms)
    app.pool = RenderPool(settings.render_concurrency, store=store)
    app.render_cache = TwoLevelCache(
        None, max_size=settings.cache_max_size, ttl=settings.cache_default_ttl, timeout_ms=settings.cache_timeout_ms
    )
    app.jobs = app.channel()
    app.actors = 2 * max(1, settings.render_concurrency)

    @app.agent(app.jobs, concurrency=app.actors)
    async def render(jobs: faust.StreamT[RenderJob]) -> None:
        async for job in jobs:
            if job.part.done():  # sent again after a channel drop, and the first copy won
                continue
            job.started, app.last_pickup = True, asyncio.get_running_loop().time()
            app.actors_busy += 1
            try:
                part = await render_task(job.task, cache=app.render_cache, pool=app.pool)
            except Exception as exc:  # noqa: BLE001 - error policy: the task's items fail, visibly
                log.exception("render task %s/%s failed", job.task["batch_id"], job.task["chunk"])
                part = failed_part(job.task, RenderFailed(f"internal error while rendering: {type(exc).__name__}"))
            finally:
                app.actors_busy -= 1
            job.finish(part)

    @app.task
    async def intake() -> None:
        await app.start_intake()

    return app
