"""The sink: a plain aiokafka consumer loop that aggregates item results per run and emits one
BatchResult per run on ``barcode.results``.

One iteration: read records, apply them to the pure ``BatchAggregator``, write the results that
became complete (or passed their deadline), wait for the broker's acks, then have
``aggregator.commit_points()`` committed beside the loop (``barcodeflow.kafka.Committer``: the next
records are read meanwhile). Our code owns the commit, so a committed offset always means
"reflected in an acknowledged result" — Faust's acknowledgement of records its agent never saw
(faust-streaming #527, #596/#629; RELIABILITY.md D6) cannot happen here. A restarted sink reads again
from the committed offsets (the low watermark of the runs not yet emitted) and rebuilds those runs in
memory; nothing is kept in a changelog. Each result carries its run (``x-run``), and a commit names where the
results it reflects end: a restarted sink reads the results after that first (``read_results``), so one
acknowledged after the last commit is not written again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from barcodeflow.aio import cancel_and_wait
from barcodeflow.kafka import (
    Committer,
    Rebalance,
    consumer_config,
    group_config,
    membership_hint,
    producer_config,
    send_until_acked,
)
from barcodeflow.memory import HeapTrimmer
from barcodeflow.settings import Settings
from schemas.headers import RUN_HEADER, header, owner_headers
from sink.aggregate import BadRecord, BatchAggregator, Emission, decode_results

log = logging.getLogger(__name__)

DUE_EVERY_MS = 100
TAIL_READ_S = 2.0
"""At assignment, how long the sink reads the results written since the last commit at most (at ~40 results
per 0.1 s commit interval, a few dozen records); what it has not read by then may be written again."""
COMMIT_INTERVAL_S = 0.1
"""Commits follow one another at least this far apart (``Committer``): at 46 commits/s under load the broker's
share of CPU per code was ~0.02 ms higher (BENCHMARKS.md); a restart reads at most this much more again."""


def now_ms() -> int:
    return int(time.time() * 1000)


class Sink:
    def __init__(
        self, settings: Settings, *, client_id: str = "barcodeflow-sink", commit_interval_s: float = COMMIT_INTERVAL_S
    ) -> None:
        self.settings = settings
        self.topic = settings.topics.items
        self.group_id = f"{settings.app_id}-sink"
        self.consumer = AIOKafkaConsumer(
            **consumer_config(settings, client_id), **group_config(settings), group_id=self.group_id
        )
        self.producer = AIOKafkaProducer(**producer_config(settings, client_id))
        # no group: reads the results written since the last commit at assignment (``read_results``)
        self.tail = AIOKafkaConsumer(**consumer_config(settings, f"{client_id}-tail"))
        self.admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, client_id=client_id)
        self.aggregator = BatchAggregator(timeout_s=settings.batch_timeout_s)
        self.lock = asyncio.Lock()  # one iteration, or one rebalance step, at a time
        self.emitted = 0
        self.committer = Committer(
            self.consumer, self.topic, self.commit_points, what="sink", min_interval_s=commit_interval_s
        )
        self._due_at = 0
        self.rebalance = Rebalance(self.revoked, self.assigned, instance_id=settings.group_instance_id)
        self.heap = HeapTrimmer()

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.admin.start()
        await self.producer.start()
        await self.tail.start()
        self.consumer.subscribe([self.topic], listener=self.rebalance)
        await self.consumer.start()

    async def stop(self) -> None:
        try:
            async with self.lock:
                await self.committer.commit()
        except KafkaError as exc:
            log.warning("sink: final commit failed (%r); a restart reads those records again", exc)
        await self.consumer.stop()
        await self.tail.stop()
        await self.producer.stop()
        await self.admin.close()

    async def run(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=DUE_EVERY_MS, max_records=1000)
            self.rebalance.check()
            self.committer.check()
            async with self.lock:
                await self.step(batches, now_ms())
            if batches:
                self.heap.busy()
            else:  # the burst is over: its freed memory goes back to the OS
                self.heap.idle()

    # -- one iteration --------------------------------------------------------------------------
    async def step(self, batches: dict[TopicPartition, list[Any]], now: int) -> None:
        assigned = self.consumer.assignment()
        out: list[Emission] = []
        for tp, records in batches.items():
            if tp not in assigned:  # fetched before a revocation: the new owner reads them
                continue
            for rec in records:
                try:
                    out += self.aggregator.add(tp.partition, rec.offset, rec.value, now)
                except BadRecord as exc:
                    self.on_bad_record(exc)
        if now - self._due_at >= DUE_EVERY_MS:
            self._due_at = now
            out += self.aggregator.due(now, self.caught_up)
        if out:
            acks = await self.write(out)
            self.aggregator.emitted(out, now_ms(), acks)
        self.committer.request()

    def on_bad_record(self, exc: BadRecord) -> None:
        """Error policy for unreadable internal records: logged, counted, passed over (they cannot
        become readable by reading them again)."""
        log.error("sink: skipping %s", exc)

    def caught_up(self, partition: int) -> bool:
        hw = self.consumer.highwater(TopicPartition(self.topic, partition))
        return hw is not None and self.aggregator.next_offset.get(partition, 0) >= hw

    async def write(self, emissions: list[Emission]) -> list[tuple[int, int] | None]:
        """Write the results and wait for their acks; returns where each one was written."""
        acks = await asyncio.gather(
            *(
                send_until_acked(
                    self.producer,
                    self.settings.topics.results,
                    orjson.dumps(e.result),
                    key=e.batch_id.encode(),
                    headers=[*(owner_headers(e.owner) or ()), (RUN_HEADER, e.run_key.rpartition("|")[2].encode())],
                    what=f"result of {e.batch_id}",
                )
                for e in emissions
            )
        )
        self.emitted += len(emissions)
        return [(md.partition, md.offset) if md is not None else None for md in acks]

    async def read_results(self, since: dict[int, int], partitions: list[int]) -> tuple[set[str], dict[int, int]]:
        """The run keys (``batch_id|run``) of the results at or after ``since`` (results partition -> offset), and
        the end offsets of the results partitions numbered like ``partitions``. Reads for ``TAIL_READ_S`` at
        most; what it could not read is logged and missing (those results may be written again)."""
        tps = {TopicPartition(self.settings.topics.results, p) for p in [*since, *partitions]}
        found: set[str] = set()
        ends: dict[TopicPartition, int] = {}
        try:
            give_up = time.monotonic() + TAIL_READ_S
            ends = await asyncio.wait_for(self.tail.end_offsets(list(tps)), TAIL_READ_S) if tps else {}
            todo = {tp for tp in ends if tp.partition in since and ends[tp] > since[tp.partition]}
            self.tail.assign(list(todo))
            for tp in todo:
                self.tail.seek(tp, since[tp.partition])
            while todo and time.monotonic() < give_up:
                for recs in (await self.tail.getmany(*todo, timeout_ms=100, max_records=1000)).values():
                    runs = ((r.key, header(r.headers, RUN_HEADER)) for r in recs)
                    found.update(f"{key.decode('utf-8', 'replace')}|{run}" for key, run in runs if key and run)
                todo = {tp for tp in todo if await self.tail.position(tp) < ends[tp]}
            if todo:
                log.warning("sink: results since the last commit not read within %.1f s", TAIL_READ_S)
        except (KafkaError, TimeoutError) as exc:
            log.warning("sink: results since the last commit not readable (%r)", exc)
        finally:
            self.tail.unsubscribe()
        return found, {tp.partition: offset for tp, offset in ends.items()}

    def commit_points(self) -> dict[int, OffsetAndMetadata]:
        return {p: OffsetAndMetadata(offset, meta) for p, (offset, meta) in self.aggregator.commit_points().items()}

    # -- rebalance ------------------------------------------------------------------------------
    async def revoked(self, tps: set[TopicPartition]) -> None:
        mine = {tp.partition for tp in tps if tp.topic == self.topic}
        async with self.lock:
            try:
                await self.committer.commit(mine)
            except KafkaError as exc:
                log.warning("sink: commit at revocation failed (%r)", exc)
            for p in mine:
                self.aggregator.revoke(p)
                self.committer.forget(p)

    async def assigned(self, tps: set[TopicPartition]) -> None:
        """Rebuild what the partitions' commits say before any of their records is applied: aiokafka fetches
        new partitions while this listener runs (``_on_join_complete``), so it holds the loop's lock."""
        mine = sorted((tp for tp in tps if tp.topic == self.topic), key=lambda tp: tp.partition)
        async with self.lock:
            try:
                committed = await self.admin.list_consumer_group_offsets(self.group_id, partitions=mine)
            except KafkaError as exc:  # reading on without the list: runs emitted above it are emitted again
                log.warning("sink: committed offsets not readable (%r); results may be emitted again", exc)
                committed = {}
            commits = {tp.partition: (om.offset, om.metadata) for tp, om in committed.items() if om and om.offset >= 0}
            since: dict[int, int] = {}  # results partition -> the lowest offset a commit names
            for _, metadata in commits.values():
                for p, o in decode_results(metadata).items():
                    since[p] = min(o, since.get(p, o))
            written, ends = await self.read_results(since, [tp.partition for tp in mine])
            for tp in mine:
                offset, metadata = commits.get(tp.partition, (None, None))
                start = offset
                if start is None:  # never committed: the first commit comes at once, from where reading starts
                    try:
                        start = await asyncio.wait_for(self.consumer.position(tp), TAIL_READ_S)
                    except (KafkaError, TimeoutError) as exc:
                        log.warning("sink: start of %s not known (%r)", tp, exc)
                self.aggregator.assign(tp.partition, offset, metadata, written, ends.get(tp.partition), start=start)
        log.info("sink: assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in mine) or "nothing")


async def run_sink(settings: Settings, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set; the final commit covers every acknowledged result. A failure to join the
    group, or a crash of the loop, ends it with the exception (and a supervisor restarts the process)."""
    sink = Sink(settings)
    tasks: list[asyncio.Task[Any]] = []
    try:
        await sink.start()
        log.info("sink: reading %s, writing %s", sink.topic, settings.topics.results)
        loop_task = asyncio.create_task(sink.run(), name="sink-loop")
        tasks += [loop_task, asyncio.create_task(stop.wait(), name="sink-stop")]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if loop_task.done():
            loop_task.result()
    except Exception as exc:
        log.critical("sink stopped: %r%s", exc, membership_hint(settings))
        raise
    finally:
        for task in tasks:
            await cancel_and_wait(task)
        await sink.stop()
