"""Reusable checker for fault scenarios: read ``barcode.results`` (or any topic) from the beginning and count.

Every request item of a scenario carries a unique ``(batch_id, index)``. ``expect_batch(batch)`` computes
the oracle for a batch in-process with the pure render core (deterministic output): per item either the
exact image bytes (SHA-256) or the item error code. ``ResultsChecker`` follows the results topic with
its own consumer (no group, from offset 0) and ``analyse(expected)`` counts, per the consumer rule of the
README (per ``batch_id`` the *last* record on ``barcode.results`` wins; replays carry ``replay``):

* **lost** – an expected (accepted) batch with no non-replay result record at all;
* **raw duplicates** – non-replay result records beyond the first, per batch (``sum(n - 1)``): what a
  consumer that does not de-duplicate would see twice;
* **visible duplicates** – per batch, the number of *distinct contents* among its non-replay records,
  minus one. Content = ``fingerprint(doc)``: batch ``success`` and ``error.code`` plus, per item in
  order, ``(index, id, success, error.code, SHA-256 of the image, metadata)``. Timing fields
  (``generation_time_ms``, ``summary.*_time_ms``) and ``cached`` are excluded: they legitimately differ
  between two emissions of the same result. A duplicate with identical content is invisible under the
  last-wins rule; one whose content differs means a consumer may have acted on a different answer;
* **incomplete** – the record that wins (the last one) is not the full, correct answer: wrong total,
  items missing or out of order, wrong ids, an item whose success/error code or image differs from the
  oracle;
* **replay records** are counted separately (``replay_records``) and compared with the original
  (``replay_mismatches``: replayed content differs from the original run's).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from barcodeflow.kafka import consumer_config
from barcodeflow.settings import Settings

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- oracle


@dataclass(frozen=True)
class ExpectedItem:
    index: int
    id: str | None
    success: bool
    code: str | None = None  # error code when not success
    image_sha: str | None = None  # SHA-256 of the exact image bytes when success


@dataclass(frozen=True)
class ExpectedBatch:
    batch_id: str
    items: tuple[ExpectedItem, ...]
    rejected: bool = False  # the whole batch is rejected (error.code = invalid_batch)

    @property
    def total(self) -> int:
        return len(self.items)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def expect_batch(batch: Mapping[str, Any], *, images: bool = True) -> ExpectedBatch:
    """The oracle for a valid batch: render every item in-process (pure, deterministic render core)."""
    from schemas.errors import ItemError
    from stream_app.render import normalize_item, render

    opts = batch.get("options") or {}
    validate_only = bool(opts.get("validate_only"))
    verify = bool(opts.get("verify"))
    out = []
    cache: dict[str, str] = {}
    for index, item in enumerate(batch["barcodes"]):
        iid = item.get("id") if isinstance(item, Mapping) else None
        try:
            spec = normalize_item(item, verify=verify)
            if validate_only or not images:
                out.append(ExpectedItem(index, iid, True))
                continue
            key = spec.cache_key()
            if key not in cache:
                cache[key] = sha(render(spec).image)
            out.append(ExpectedItem(index, iid, True, image_sha=cache[key]))
        except ItemError as exc:
            out.append(ExpectedItem(index, iid, False, code=str(exc.to_dict()["code"])))
    return ExpectedBatch(str(batch["batch_id"]), tuple(out))


def item_image_sha(item: Mapping[str, Any]) -> str | None:
    if item.get("svg") is not None:
        return sha(str(item["svg"]).encode("utf-8"))
    if item.get("png") is not None:
        return sha(base64.b64decode(item["png"]))
    return None


def fingerprint(doc: Mapping[str, Any]) -> str:
    """Content of a BatchResult without timing fields and ``cached`` (see the module docstring)."""
    items = []
    for r in doc.get("results") or ():
        err = r.get("error") or {}
        items.append(
            [r.get("index"), r.get("id"), bool(r.get("success")), err.get("code"), item_image_sha(r),
             r.get("metadata")]
        )  # fmt: skip
    key = {
        "batch_id": doc.get("batch_id"),
        "success": doc.get("success"),
        "error": (doc.get("error") or {}).get("code"),
        "items": items,
    }
    return sha(orjson.dumps(key, option=orjson.OPT_SORT_KEYS))[:24]


def completeness_problem(doc: Mapping[str, Any], exp: ExpectedBatch) -> str | None:
    """Why ``doc`` is not the full, correct answer for ``exp`` (None when it is)."""
    if exp.rejected:
        err = doc.get("error") or {}
        return None if err.get("code") == "invalid_batch" and doc.get("success") is False else "not rejected"
    results = doc.get("results") or []
    summary = doc.get("summary") or {}
    if summary.get("total") != exp.total or len(results) != exp.total:
        return f"total {summary.get('total')}/{len(results)} != {exp.total}"
    if [r.get("index") for r in results] != list(range(exp.total)):
        return "items missing or out of order"
    for r, e in zip(results, exp.items, strict=True):
        if r.get("id") != e.id:
            return f"item {e.index}: id {r.get('id')!r} != {e.id!r}"
        if bool(r.get("success")) != e.success:
            err = (r.get("error") or {}).get("code")
            return f"item {e.index}: success={r.get('success')} ({err}) expected {e.success} ({e.code})"
        if not e.success and (r.get("error") or {}).get("code") != e.code:
            return f"item {e.index}: error {(r.get('error') or {}).get('code')} != {e.code}"
        if e.success and e.image_sha is not None and item_image_sha(r) != e.image_sha:
            return f"item {e.index}: image differs from the in-process render"
    ok = sum(1 for e in exp.items if e.success)
    if summary.get("successful") != ok:
        return f"summary.successful {summary.get('successful')} != {ok}"
    return None


# --------------------------------------------------------------------------- topic follower


@dataclass
class Record:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    arrived: float  # time.monotonic() when this reader received it


class TopicFollower:
    """Reads every partition of one topic from offset 0 in the background (no consumer group)."""

    def __init__(self, settings: Settings, topic: str, *, keep_values: bool = True, client_id: str = "faults-check"):
        self.settings = settings
        self.topic = topic
        self.keep_values = keep_values
        self.client_id = client_id
        self.records: list[Record] = []
        self.errors = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def start(self, timeout: float = 60.0) -> None:
        cfg = consumer_config(self.settings, self.client_id)
        self._consumer = AIOKafkaConsumer(**cfg, auto_offset_reset="earliest")
        await asyncio.wait_for(self._consumer.start(), timeout)
        deadline = time.monotonic() + timeout
        parts = None
        while not parts:
            await self._consumer._client.force_metadata_update()  # noqa: SLF001 - no public refresh
            parts = self._consumer.partitions_for_topic(self.topic)
            if not parts:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"topic {self.topic} has no partitions")
                await asyncio.sleep(0.2)
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run(), name=f"follow-{self.topic}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            self._consumer = None

    async def __aenter__(self) -> TopicFollower:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        assert self._consumer is not None  # noqa: S101
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=100, max_records=1000)
            except KafkaError as exc:  # broker restart: aiokafka reconnects by itself
                self.errors += 1
                log.debug("follower %s: %r", self.topic, exc)
                await asyncio.sleep(0.2)
                continue
            now = time.monotonic()
            for records in batches.values():
                for r in records:
                    rec = Record(
                        r.partition, r.offset, r.timestamp, r.key, r.value if self.keep_values else None,
                        tuple((k, bytes(v or b"")) for k, v in (r.headers or ())), now,
                    )  # fmt: skip
                    self.records.append(rec)
                    self.on_record(rec, r.value)
            if batches:
                self._changed.set()

    def on_record(self, rec: Record, value: bytes | None) -> None:
        """Hook for subclasses (called for every record, with its value even when not kept)."""

    async def wait_until(self, pred: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, 0.5))
        return True

    async def drain(self, quiet_s: float = 2.0, timeout: float = 30.0) -> None:
        """Wait until nothing new arrived for ``quiet_s`` (late duplicates are caught)."""
        deadline = time.monotonic() + timeout
        last = len(self.records)
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            if len(self.records) != last:
                last = len(self.records)
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                return


# --------------------------------------------------------------------------- results checker


@dataclass
class ResultRecord:
    batch_id: str
    partition: int
    offset: int
    timestamp_ms: int
    arrived: float
    replay: dict[str, Any] | None
    fingerprint: str
    doc: dict[str, Any] | None  # kept only with keep_docs


@dataclass
class Report:
    expected: int
    answered: int
    lost: list[str]
    raw_records: int
    raw_duplicates: int
    visible_duplicates: int
    visible_duplicate_batches: list[str]
    incomplete: list[tuple[str, str]]
    replay_records: int
    replay_mismatches: list[str]
    unreadable: int
    dup_batches: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "answered": self.answered,
            "lost": len(self.lost),
            "raw_records": self.raw_records,
            "raw_duplicates": self.raw_duplicates,
            "visible_duplicates": self.visible_duplicates,
            "incomplete": len(self.incomplete),
            "replay_records": self.replay_records,
            "replay_mismatches": len(self.replay_mismatches),
            "unreadable": self.unreadable,
        }

    def explain(self) -> str:
        parts = [str(self.summary())]
        if self.lost:
            parts.append(f"lost: {self.lost[:10]}")
        if self.incomplete:
            parts.append(f"incomplete: {self.incomplete[:10]}")
        if self.visible_duplicate_batches:
            parts.append(f"visible duplicates: {self.visible_duplicate_batches[:10]}")
        if self.replay_mismatches:
            parts.append(f"replay mismatches: {self.replay_mismatches[:10]}")
        return "\n".join(parts)


SWEEP_MARGIN_S = 2.0  # the sink sweeps every 0.1 s; the margin covers a loaded machine


class ResultsChecker(TopicFollower):
    """Follows ``barcode.results`` from the beginning and analyses it against the expected batches."""

    def __init__(self, settings: Settings, *, keep_docs: bool = True, topic: str | None = None):
        super().__init__(settings, topic or settings.topics.results, keep_values=False, client_id="faults-results")
        self.keep_docs = keep_docs
        self.by_batch: dict[str, list[ResultRecord]] = defaultdict(list)
        self.unreadable = 0

    def on_record(self, rec: Record, value: bytes | None) -> None:
        if value is None:
            return
        try:
            doc = orjson.loads(value)
            bid = str(doc["batch_id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.unreadable += 1
            return
        self.by_batch[bid].append(
            ResultRecord(
                bid,
                rec.partition,
                rec.offset,
                rec.timestamp_ms,
                rec.arrived,
                doc.get("replay"),
                fingerprint(doc),
                doc if self.keep_docs else None,
            )  # fmt: skip
        )

    # -- queries --------------------------------------------------------------------------------
    def originals(self, batch_id: str) -> list[ResultRecord]:
        return [r for r in self.by_batch.get(batch_id, ()) if not r.replay]

    def replays(self, batch_id: str) -> list[ResultRecord]:
        return [r for r in self.by_batch.get(batch_id, ()) if r.replay]

    def answered(self, ids: Iterable[str], *, replay: bool = False, at_least: int = 1) -> int:
        get = self.replays if replay else self.originals
        return sum(1 for b in ids if len(get(b)) >= at_least)

    async def wait_for(self, ids: Iterable[str], timeout: float, *, replay: bool = False, at_least: int = 1) -> bool:
        wanted = list(ids)
        return await self.wait_until(
            lambda: self.answered(wanted, replay=replay, at_least=at_least) == len(wanted), timeout
        )

    def first_arrival(self, batch_id: str) -> float | None:
        recs = self.originals(batch_id)
        return min(r.arrived for r in recs) if recs else None

    async def drain(self, quiet_s: float = 2.0, timeout: float = 30.0) -> None:
        """Keep reading until the sink's deadline sweep could have fired for every batch answered so
        far (a batch is received before its first result, so its deadline is at most that arrival plus
        ``BATCH_TIMEOUT_S``), plus a margin; then until nothing new arrived for ``quiet_s``. A late,
        different result (a ``timeout`` version after a complete one) is seen this way."""
        firsts = [min(r.arrived for r in recs) for recs in self.by_batch.values() if recs]
        if firsts:
            until = max(firsts) + self.settings.batch_timeout_s + SWEEP_MARGIN_S
            while (left := until - time.monotonic()) > 0:
                await asyncio.sleep(min(left, 0.5))
        await super().drain(quiet_s, timeout)

    # -- analysis -------------------------------------------------------------------------------
    def analyse(self, expected: Mapping[str, ExpectedBatch]) -> Report:
        lost: list[str] = []
        incomplete: list[tuple[str, str]] = []
        vis_batches: list[str] = []
        dup_batches: list[str] = []
        raw_records = raw_dups = visible = replay_records = 0
        replay_mismatch: list[str] = []
        for bid, exp in expected.items():
            recs = sorted(self.originals(bid), key=lambda r: r.offset)
            reps = sorted(self.replays(bid), key=lambda r: r.offset)
            replay_records += len(reps)
            if not recs:
                lost.append(bid)
                continue
            raw_records += len(recs)
            raw_dups += len(recs) - 1
            if len(recs) > 1:
                dup_batches.append(bid)
            distinct = {r.fingerprint for r in recs}
            if len(distinct) > 1:
                visible += len(distinct) - 1
                vis_batches.append(bid)
            winner = reps[-1] if reps and reps[-1].offset > recs[-1].offset else recs[-1]
            if winner.doc is not None:
                why = completeness_problem(winner.doc, exp)
                if why is not None:
                    incomplete.append((bid, why))
            for r in reps:
                if r.fingerprint != recs[-1].fingerprint:
                    replay_mismatch.append(bid)
                    break
        return Report(
            expected=len(expected),
            answered=len(expected) - len(lost),
            lost=lost,
            raw_records=raw_records,
            raw_duplicates=raw_dups,
            visible_duplicates=visible,
            visible_duplicate_batches=vis_batches,
            incomplete=incomplete,
            replay_records=replay_records,
            replay_mismatches=replay_mismatch,
            unreadable=self.unreadable,
            dup_batches=dup_batches,
        )


def header(rec: Record, name: str) -> str | None:
    for k, v in rec.headers:
        if k == name:
            return v.decode("utf-8", "replace")
    return None
