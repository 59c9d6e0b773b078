"""``ResultListener``: follow ``barcode.results`` and hand each BatchResult to whoever waits for it.

It reads every partition without a consumer group, so every process (every facade replica, every
``submit`` run) sees every result; it starts at the end, so register with ``expect`` before sending.

Records are matched by their key (the ``batch_id`` as UTF-8 bytes, see the README's wire format), not
by their content: a record nobody waits for is never decoded, and a waiter gets the record's value as
it is (``bytes``; ``orjson.loads`` it where a dict is needed). A record without a key is the one case
in which the value is read, for its ``batch_id``; one whose ``batch_id`` cannot be read is skipped,
counted and logged. When key and value disagree, the key wins.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from barcodeflow.aio import cancel_and_wait
from barcodeflow.kafka import consumer_config, topic_partitions
from barcodeflow.settings import Settings
from producer.errors import KafkaUnavailable
from schemas.headers import owner_from
from schemas.validate import peek_batch_id

log = logging.getLogger(__name__)

ResultCallback = Callable[..., Awaitable[None] | None]
"""Called with ``(batch_id, value)`` for every result record, waited for or not; registered with
``with_headers=True``, with ``(batch_id, value, headers)``."""

_LOG_EVERY = 1000  # repeated bad records: the first one and then every 1000th are logged


class ResultRouter:
    """Hands result records to the waiters of their batch and to the callbacks, matched by record key.

    No Kafka here: ``ResultListener`` feeds it from the topic (and test doubles feed it directly).
    Counters: ``received`` records (deletion markers aside), ``delivered`` to at least one waiter,
    ``keyless`` records (their ``batch_id`` is read from the value), ``skipped`` records (no usable
    ``batch_id``).
    """

    def __init__(self) -> None:
        self._waiters: dict[bytes, list[tuple[asyncio.Future[bytes], str | None]]] = {}  # (future, owner)
        self._callbacks: list[tuple[ResultCallback, bool]] = []
        self.received = 0
        self.delivered = 0
        self.keyless = 0
        self.skipped = 0

    def expect(self, batch_id: str, owner: str | None = None) -> asyncio.Future[bytes]:
        """A future for the next result of ``batch_id``: the record's value, as bytes. With ``owner``, only
        a result whose ``x-owner`` header names that owner (``schemas.headers``): a result of the same id
        without it, or with another, is another publisher's batch."""
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(batch_id.encode(), []).append((fut, owner))
        return fut

    def forget(self, batch_id: str) -> None:
        for fut, _ in self._waiters.pop(batch_id.encode(), []):
            if not fut.done():
                fut.cancel()

    def add_callback(self, fn: ResultCallback, *, with_headers: bool = False) -> None:
        """Call ``fn(batch_id, value)`` for every result record (``fn(batch_id, value, headers)`` with
        ``with_headers``: the record's headers as ``(name, bytes)`` pairs)."""
        self._callbacks.append((fn, with_headers))

    @property
    def waiting(self) -> int:
        return sum(len(waiters) for waiters in self._waiters.values())

    def cancel_all(self) -> None:
        for waiters in self._waiters.values():
            for fut, _ in waiters:
                fut.cancel()
        self._waiters.clear()

    async def route(self, key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        """Deliver one record of ``barcode.results``. Never raises for a bad record."""
        if value is None:  # a deletion marker of the compacted topic: no result
            return
        self.received += 1
        if key is None:
            if not self._waiters and not self._callbacks:
                return  # nobody here could want it: not worth reading
            key = self._key_from_value(value)
            if key is None:
                return
        futs = self._take_waiters(key, headers)
        if futs:
            self.delivered += 1
            for fut in futs:
                if not fut.done():
                    fut.set_result(value)
        if not self._callbacks:
            return
        try:
            batch_id = key.decode()
        except UnicodeDecodeError:
            self._skip(f"whose key is not UTF-8: {key[:200]!r}")
            return
        for cb, with_headers in self._callbacks:
            try:
                res = cb(batch_id, value, headers) if with_headers else cb(batch_id, value)
                if asyncio.iscoroutine(res):
                    await res
            except Exception:  # a callback's bug must not stop result delivery to waiters
                log.exception("result callback failed for batch %s", batch_id)

    def _take_waiters(self, key: bytes, headers: Sequence[tuple[str, bytes]]) -> list[asyncio.Future[bytes]]:
        """The waiters of ``key`` this record is for, removed; a waiter for an owner the record does not
        name stays."""
        waiters = self._waiters.get(key)
        if not waiters:
            return []
        owner = owner_from(headers) if any(o is not None for _, o in waiters) else None
        mine: list[asyncio.Future[bytes]] = []
        rest: list[tuple[asyncio.Future[bytes], str | None]] = []
        for fut, wanted in waiters:
            if wanted is None or wanted == owner:
                mine.append(fut)
            else:
                rest.append((fut, wanted))
        if rest:
            self._waiters[key] = rest
        else:
            del self._waiters[key]
        return mine

    def _key_from_value(self, value: bytes) -> bytes | None:
        self.keyless += 1
        batch_id = peek_batch_id(value)
        if batch_id is None:
            self._skip(f"without a key and without a readable batch_id ({len(value)} bytes)")
            return None
        if self.keyless % _LOG_EVERY == 1:
            log.warning(
                "result record without a key (batch %s; %d such records so far): producers must key results "
                "by batch_id",
                batch_id,
                self.keyless,
            )
        return batch_id.encode()

    def _skip(self, what: str) -> None:
        self.skipped += 1
        if self.skipped % _LOG_EVERY == 1:
            log.warning("result listener: skipping a record %s (%d skipped so far)", what, self.skipped)


class ResultListener(ResultRouter):
    def __init__(self, settings: Settings, *, client_id: str = "barcodeflow-results", start_timeout: float = 15.0):
        super().__init__()
        self.settings = settings
        self.start_timeout = start_timeout
        self._consumer = AIOKafkaConsumer(**consumer_config(settings, client_id))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        topic = self.settings.topics.results
        try:
            await asyncio.wait_for(self._start(topic), self.start_timeout)
        except (TimeoutError, KafkaError, OSError) as exc:
            await self._consumer.stop()
            raise KafkaUnavailable(f"cannot follow {topic}: {exc!r}") from exc
        self._task = asyncio.create_task(self._run(), name="result-listener")

    async def _start(self, topic: str) -> None:
        await self._consumer.start()
        parts = await topic_partitions(self.settings, topic)
        while not parts:  # the topic is being created: wait for it (bounded by start_timeout)
            await asyncio.sleep(0.2)
            parts = await topic_partitions(self.settings, topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the positions now: results published after start() are seen
            await self._consumer.position(tp)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await self._consumer.stop()
        self.cancel_all()

    async def _run(self) -> None:
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=500)
            except KafkaError as exc:  # broker restarts: aiokafka reconnects by itself
                log.warning("result listener: %r; retrying", exc)
                await asyncio.sleep(0.5)
                continue
            for records in batches.values():
                for rec in records:
                    await self.route(rec.key, rec.value, rec.headers or ())
