"""``BatchProducer``: publish batch requests to ``barcode.requests`` (idempotent aiokafka producer)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from barcodeflow.kafka import producer_config
from barcodeflow.settings import Settings
from producer.errors import KafkaUnavailable, ResultTimeout
from producer.results import ResultListener
from schemas.models import BatchRequest, new_batch_id
from schemas.validate import parse_batch


def encode_request(batch: BatchRequest) -> bytes:
    return orjson.dumps(batch.model_dump(mode="json", exclude_none=True))


class BatchProducer:
    def __init__(
        self,
        settings: Settings,
        *,
        client_id: str = "barcodeflow-producer",
        send_timeout: float = 10.0,
    ) -> None:
        self.settings = settings
        self.send_timeout = send_timeout
        self._producer = AIOKafkaProducer(**producer_config(settings, client_id))
        self._started = False

    async def start(self) -> None:
        try:
            await asyncio.wait_for(self._producer.start(), self.send_timeout)
        except (TimeoutError, KafkaError, OSError) as exc:
            await self._producer.stop()
            raise KafkaUnavailable(f"cannot reach Kafka at {self.settings.kafka_bootstrap_servers}: {exc!r}") from exc
        self._started = True

    async def stop(self) -> None:
        await self._producer.stop()
        self._started = False

    async def __aenter__(self) -> BatchProducer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def prepare(self, batch: BatchRequest | Mapping[str, Any]) -> BatchRequest:
        """The request to publish, with a ``batch_id``.

        A mapping is validated (``parse_batch``: raises ``BatchValidationError`` listing every problem).
        A ``BatchRequest`` is taken as validated (``parse_batch`` made it, or pydantic when it was
        built): it is not checked again; it only gets a ``batch_id`` when it has none (a copy, the
        caller's object is left as it is). The worker validates every batch it receives either way.
        """
        if isinstance(batch, BatchRequest):
            if batch.batch_id is None:
                return batch.model_copy(update={"batch_id": new_batch_id()})
            return batch
        return parse_batch(batch, max_batch_size=self.settings.max_batch_size)

    async def send(
        self, batch: BatchRequest | Mapping[str, Any], *, headers: list[tuple[str, bytes]] | None = None
    ) -> str:
        """Publish one batch (see ``prepare``), encoded once; returns its ``batch_id``. ``headers`` go on
        the record as they are (the facade's ``x-owner``, ``schemas.headers``)."""
        req = self.prepare(batch)
        assert req.batch_id is not None  # noqa: S101 - prepare assigns one
        await self.send_raw(encode_request(req), key=req.batch_id.encode(), headers=headers)
        return req.batch_id

    async def send_raw(
        self,
        value: bytes,
        *,
        key: bytes | None = None,
        topic: str | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        """Publish bytes as they are (used by replay, tests and non-validating tools)."""
        try:
            await asyncio.wait_for(
                self._producer.send_and_wait(topic or self.settings.topics.requests, value, key=key, headers=headers),
                self.send_timeout,
            )
        except (TimeoutError, KafkaError, OSError) as exc:
            raise KafkaUnavailable(f"publishing to Kafka failed: {exc!r}") from exc

    async def submit_and_wait(
        self, listener: ResultListener, batch: BatchRequest | Mapping[str, Any], timeout: float
    ) -> dict[str, Any]:
        """Send a batch and wait for its BatchResult, decoded (``listener`` must be started)."""
        req = self.prepare(batch)
        assert req.batch_id is not None  # noqa: S101
        fut = listener.expect(req.batch_id)
        try:
            await self.send_raw(encode_request(req), key=req.batch_id.encode())
            raw = await asyncio.wait_for(asyncio.shield(fut), timeout)
        except TimeoutError:
            raise ResultTimeout(req.batch_id, timeout) from None
        finally:
            listener.forget(req.batch_id)
        doc: dict[str, Any] = orjson.loads(raw)
        return doc
