"""Kafka-side components of the facade: started in the background and retried until they are up.

A facade whose broker is down still starts (``/healthz`` 200, ``/readyz`` 503) and answers
``POST /v1/batches`` with 503 until the producer *and* the result listener are running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from barcodeflow.aio import cancel_and_wait
from barcodeflow.settings import Settings

log = logging.getLogger(__name__)


class Component:
    """Owns one started-or-not Kafka client (``BatchProducer`` or ``ResultListener``)."""

    def __init__(
        self,
        name: str,
        factory: Callable[[], Any],
        *,
        start_timeout: float,
        retry_interval: float,
        on_create: Callable[[Any], None] | None = None,
    ) -> None:
        self.name = name
        self.factory = factory
        self.start_timeout = start_timeout
        self.retry_interval = retry_interval
        self.on_create = on_create
        self.instance: Any | None = None
        self.ready = asyncio.Event()
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._prepared: set[int] = set()

    @property
    def is_ready(self) -> bool:
        return self.ready.is_set()

    async def start(self, wait: float) -> None:
        """Begin starting in the background; wait up to ``wait`` seconds for it to be up."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"start-{self.name}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.ready.wait()), wait)

    async def _run(self) -> None:
        attempt = 0
        while True:
            attempt += 1
            inst = self.factory()
            if self.on_create is not None and id(inst) not in self._prepared:
                self.on_create(inst)
                self._prepared.add(id(inst))
            try:
                await asyncio.wait_for(inst.start(), self.start_timeout)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await inst.stop()
                raise
            except Exception as exc:  # KafkaUnavailable, timeouts, connection errors
                self.last_error = repr(exc)
                if attempt == 1 or attempt % 10 == 0:
                    log.warning("%s not started (attempt %d): %r; retrying", self.name, attempt, exc)
                with contextlib.suppress(Exception):
                    await inst.stop()
                await asyncio.sleep(self.retry_interval)
                continue
            self.instance = inst
            self.last_error = None
            self.ready.set()
            if attempt > 1:
                log.info("%s started after %d attempts", self.name, attempt)
            return

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self.instance is not None:
            try:
                await self.instance.stop()
            except Exception as exc:  # shutting down: log, do not mask other shutdown steps
                log.warning("stopping %s: %r", self.name, exc)
            self.instance = None
        self.ready.clear()


class KafkaProbe:
    """Readiness check: a metadata request to the cluster, plus the two topics the facade uses."""

    def __init__(self, settings: Settings, timeout: float) -> None:
        self.settings = settings
        self.timeout = timeout

    async def __call__(self) -> None:
        from aiokafka import AIOKafkaClient

        client = AIOKafkaClient(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            client_id="barcodeflow-facade-probe",
            request_timeout_ms=int(self.timeout * 1000),
        )
        try:
            await asyncio.wait_for(client.bootstrap(), self.timeout)
            metadata = await asyncio.wait_for(client.fetch_all_metadata(), self.timeout)
            topics = metadata.topics()
            missing = [t for t in (self.settings.topics.requests, self.settings.topics.results) if t not in topics]
            if missing:
                raise RuntimeError(f"topics missing: {', '.join(missing)}")
        finally:
            with contextlib.suppress(Exception):
                await client.close()
