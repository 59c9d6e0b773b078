"""Per-batch aggregation and the sink's commit points, in pure code: no Kafka, no clock of its own.

The sink loop (``sink/app.py``) feeds every record of the internal items topic to
``BatchAggregator.add`` with its partition and offset, asks ``due`` for runs past their deadline,
writes the BatchResults they return, tells ``emitted`` once the broker acknowledged them, and then
commits ``commit_points()``.

Records (JSON objects, key = ``batch_id``; ``run`` identifies one publication of a request, its
source partition and offset, so a redelivered request is the same run while a replay or a
re-submission with the same ``batch_id`` is a new one):

* ``{"kind": "open", "batch_id", "run", "total", "ids", "received_at", "deadline", "replay", "results"}``
  — ``results`` are the items answered at dispatch (invalid items, cache hits), or every item when the
  worker rendered the batch within its grace (``WORKER_OPEN_GRACE_S``): such a batch, like one answered
  in full from the cache, is complete with its ``open`` record alone.
* ``{"kind": "part", "batch_id", "run", "chunk", "deadline", "results": [item result, ...]}`` — a worker
  writes one per run (``chunk`` names its render tasks, ``0+1+2+3``); a run may have several (a
  request read again and planned otherwise): results merge by index, a chunk seen before is a duplicate.
* ``{"kind": "rejected", "batch_id", "run", "problems", "replay"}`` — a batch rejected as a whole.

An ``open`` or ``rejected`` record may also carry ``"owner"``, the request's ``x-owner`` header
(``schemas.headers``); the run's BatchResult is emitted with that header.

**Commit contract.** Per partition, the committed offset is the lowest offset of a record whose run is
not emitted yet (the next offset to read when there is none): every record below it is reflected in
results the broker acknowledged. Images live in memory only; a restarted sink rebuilds its runs by
reading again from the committed offset. The runs already emitted above that offset are listed in
the commit's metadata (the offsets of their first records), so a restart does not emit them again.

The metadata also names, per results partition, the offset after the last result the commit reflects
(``emitted(..., acks)``). A result acknowledged after that commit (the sink died before its next one) lies
at or above it: a restarted sink reads those results, their ``x-run`` headers name the runs they answer
(``assign(..., written)``), and those runs are not emitted again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.errors import ErrorCode
from schemas.headers import valid_owner
from schemas.results import assemble, rejected, timeout_item

METADATA_PREFIX = "done1:"
RESULTS_MARK = "|r:"  # then ``partition.offset`` (base 36) per results partition, comma-separated
METADATA_LIMIT = 4000  # the broker's offset.metadata.max.bytes defaults to 4096


class BadRecord(ValueError):
    """An items record the sink cannot read (not JSON, a field missing or of the wrong type)."""


@dataclass
class Run:
    batch_id: str
    partition: int
    first_offset: int
    deadline: int
    offsets: list[int] = field(default_factory=list)  # of every record of the run read here
    open: dict[str, Any] | None = None
    chunks: set[str] = field(default_factory=set)
    results: dict[int, Mapping[str, Any]] = field(default_factory=dict)
    pending: bool = False  # its result was handed out, the broker's ack is awaited
    done_at: int | None = None  # its result is acknowledged
    owner: str | None = None  # the request's x-owner, from its open or rejected record


@dataclass(frozen=True)
class Emission:
    run_key: str
    batch_id: str
    result: dict[str, Any]
    timed_out: bool
    owner: str | None = None  # the result record's x-owner header


def encode_done(
    low: int, offsets: Iterable[int], limit: int = METADATA_LIMIT, results: Mapping[int, int] | None = None
) -> tuple[str, int]:
    """Offsets (all >= ``low``) as base-36 deltas, then ``results`` (results partition -> offset); returns the
    text and how many offsets did not fit."""
    tail = RESULTS_MARK + ",".join(f"{p}.{_b36(o)}" for p, o in sorted(results.items())) if results else ""
    parts: list[str] = []
    size = len(METADATA_PREFIX) + len(tail)
    prev = low
    ordered = sorted(set(offsets))
    for i, off in enumerate(ordered):
        token = _b36(off - prev)
        if size + len(token) + 1 > limit:
            return METADATA_PREFIX + ",".join(parts) + tail, len(ordered) - i
        parts.append(token)
        size += len(token) + 1
        prev = off
    return METADATA_PREFIX + ",".join(parts) + tail, 0


def decode_done(low: int, metadata: str | None) -> set[int]:
    if not metadata or not metadata.startswith(METADATA_PREFIX):
        return set()
    body = metadata[len(METADATA_PREFIX) :].partition(RESULTS_MARK)[0]
    out: set[int] = set()
    prev = low
    try:
        for token in filter(None, body.split(",")):
            prev += int(token, 36)
            out.add(prev)
    except ValueError:
        return set()
    return out


def decode_results(metadata: str | None) -> dict[int, int]:
    """The results partitions and offsets ``encode_done`` put in ``metadata`` (none when unreadable)."""
    if not metadata or not metadata.startswith(METADATA_PREFIX):
        return {}
    try:
        pairs = (t.partition(".") for t in metadata.partition(RESULTS_MARK)[2].split(",") if t)
        return {int(p): int(o, 36) for p, _, o in pairs}
    except ValueError:
        return {}


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def _checked(record: Any, default_deadline: int) -> tuple[str, str, str, int, list[tuple[int, Mapping[str, Any]]]]:
    """(kind, batch_id, run key, deadline, [(index, item result)]); raises on anything malformed."""
    kind = record["kind"]
    batch_id = str(record["batch_id"])
    rkey = f"{batch_id}|{record['run']}"
    results: list[tuple[int, Mapping[str, Any]]] = []
    if kind == "open":
        deadline = int(record["deadline"])
        total, ids = int(record["total"]), list(record["ids"])
        if total != len(ids) or int(record["received_at"]) < 0:
            raise ValueError(f"open record with total {total} and {len(ids)} ids")
        items = record.get("results") or ()
    elif kind == "part":
        deadline = int(record.get("deadline") or default_deadline)
        str(record["chunk"])
        items = record["results"]
    elif kind == "rejected":
        deadline = default_deadline
        items = ()
        if not isinstance(record["problems"], list):
            raise TypeError("problems must be a list")
        ErrorCode(record.get("code") or ErrorCode.INVALID_BATCH.value)
    else:
        raise ValueError(f"unknown kind {kind!r}")
    for item in items:
        if not isinstance(item, Mapping):
            raise TypeError(f"item result {item!r} is not an object")
        results.append((int(item["index"]), item))
    return kind, batch_id, rkey, deadline, results


class BatchAggregator:
    def __init__(self, *, timeout_s: float, done_retention_ms: int | None = None) -> None:
        self.timeout_s = timeout_s
        # done runs are remembered to recognise late parts; a part arriving later still does no harm
        # (a part without its open record is dropped at its deadline)
        self.done_retention_ms = done_retention_ms or int(3 * timeout_s * 1000) + 60_000
        self.runs: dict[str, Run] = {}
        # the runs the watermark and the commit metadata depend on: not done, or done with a record at or
        # above their partition's watermark. The others are only kept to recognise late records, and their
        # number (every batch of the last ``done_retention_ms``) must not make each commit cost more.
        self._live: dict[str, Run] = {}
        self._retired: dict[str, None] = {}  # the other runs' keys, in the order they left ``_live``
        self.next_offset: dict[int, int] = {}
        self.skip: dict[int, set[int]] = {}
        self.written: dict[int, set[str]] = {}  # runs whose results were found written at assignment
        self.results_at: dict[int, dict[int, int]] = {}  # per partition read: results partition -> next offset
        self.stats: Counter[str] = Counter()

    # -- partitions -----------------------------------------------------------------------------
    def assign(
        self,
        partition: int,
        committed: int | None,
        metadata: str | None,
        written: Iterable[str] = (),
        results_end: int | None = None,
        *,
        start: int | None = None,
    ) -> None:
        """A partition this sink now reads, from ``committed`` with the commit's ``metadata``; ``start``: where
        reading starts (the commit names it until a record is read). ``written``: the run keys
        (``batch_id|run``) of the results found at or after the results offsets the metadata names; those runs
        are not emitted again. ``results_end``: the end offset of the results partition of the same number (a
        batch's result goes there), named when the metadata names none."""
        self.revoke(partition)
        if start is not None:
            self.next_offset[partition] = start
        self.skip[partition] = decode_done(committed, metadata) if committed is not None else set()
        named = decode_results(metadata) if committed is not None else {}
        self.results_at[partition] = named or ({partition: results_end} if results_end is not None else {})
        self.written[partition] = set(written)

    def revoke(self, partition: int) -> None:
        for key in [k for k, r in self.runs.items() if r.partition == partition]:
            self._forget(key)
        self.next_offset.pop(partition, None)
        self.skip.pop(partition, None)
        self.written.pop(partition, None)
        self.results_at.pop(partition, None)

    # -- add ------------------------------------------------------------------------------------
    def add(self, partition: int, offset: int, value: bytes | None, now_ms: int) -> list[Emission]:
        """Apply one record; returns the BatchResults that became complete (zero or one).

        Raises ``BadRecord`` for a record it cannot read (the offset counts as read all the same)."""
        self.next_offset[partition] = offset + 1
        try:
            record = orjson.loads(value or b"")
        except orjson.JSONDecodeError as exc:
            self.stats["bad_records"] += 1
            raise BadRecord(f"items record p{partition}@{offset}: {exc!r}") from None
        return self.apply(partition, offset, record, now_ms)

    def apply(self, partition: int, offset: int, record: Any, now_ms: int) -> list[Emission]:
        """``add`` for a record already decoded. A record is checked whole before anything changes."""
        self.next_offset[partition] = max(self.next_offset.get(partition, 0), offset + 1)
        try:
            rec = _checked(record, now_ms + int(self.timeout_s * 1000))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            self.stats["bad_records"] += 1
            raise BadRecord(f"items record p{partition}@{offset}: {exc!r}") from None
        kind, batch_id, rkey, deadline, results = rec
        run = self.runs.get(rkey)
        if run is None:
            run = self.runs[rkey] = Run(batch_id, partition, offset, deadline)
            written = self.written.get(partition, set())
            if offset in self.skip.get(partition, ()) or rkey in written:  # emitted before this sink (re)started
                run.done_at = now_ms
                written.discard(rkey)
        run.offsets.append(offset)
        if rkey not in self._live:  # new, or a late record of a run emitted earlier: above the watermark
            self._live[rkey] = run
            self._retired.pop(rkey, None)
        if run.done_at is not None or run.pending:
            self.stats["late"] += 1
            return []
        run.owner = run.owner or valid_owner(record.get("owner"))
        if kind == "rejected":
            result = rejected(batch_id, list(record["problems"]), replay=record.get("replay"), code=record.get("code"))
            return [self._emit(rkey, run, result, timed_out=False)]
        if kind == "open":
            if run.open is None:
                run.open = {k: record[k] for k in ("total", "ids", "received_at", "replay")}
                run.deadline = deadline
            else:  # the request read again after a worker crash: its first deadline stands
                self.stats["duplicates"] += 1
            # a redelivered request's open record can carry items the first one did not (rendered and
            # cached meanwhile): results are deterministic, so every copy is merged
            for index, item in results:
                run.results.setdefault(index, item)
        elif not self._take(run, str(record["chunk"]), results):
            return []
        if run.open is not None and len(run.results) >= int(run.open["total"]):
            return [self._flush(rkey, run, now_ms, timed_out=False)]
        return []

    def _take(self, run: Run, chunk: str, results: list[tuple[int, Mapping[str, Any]]]) -> bool:
        if chunk in run.chunks:
            self.stats["duplicates"] += 1
            return False
        run.chunks.add(chunk)
        for index, item in results:
            run.results.setdefault(index, item)
        return True

    # -- flush ----------------------------------------------------------------------------------
    def due(self, now_ms: int, caught_up: Callable[[int], bool]) -> list[Emission]:
        """Runs past their deadline, emitted with their missing items as ``timeout``.

        Only on partitions read up to their end (``caught_up``): a sink reading a backlog (after a
        restart) must not time out a run whose parts are still ahead of it. Parts whose ``open``
        record never came (late parts of a run emitted before a restart) are dropped at their
        deadline; done runs are forgotten after ``done_retention_ms``."""
        out: list[Emission] = []
        self._retire(self._low_watermarks())
        for rkey, run in list(self._live.items()):
            if run.done_at is not None or run.pending or now_ms < run.deadline or not caught_up(run.partition):
                continue
            if run.open is None:
                self.stats["orphans"] += 1
                self._forget(rkey)
                continue
            out.append(self._flush(rkey, run, now_ms, timed_out=True))
        for rkey in list(self._retired):  # oldest first; a run retired later is forgotten at a later call
            done_at = self.runs[rkey].done_at
            if done_at is not None and now_ms - done_at < self.done_retention_ms:
                break
            self._forget(rkey)
        return out

    def _retire(self, low: Mapping[int, int]) -> None:
        """Move the done runs with every record below their partition's watermark out of ``_live``."""
        for rkey, run in list(self._live.items()):
            if run.done_at is not None and max(run.offsets, default=-1) < low.get(run.partition, 0):
                del self._live[rkey]
                self._retired[rkey] = None

    def _forget(self, rkey: str) -> None:
        del self.runs[rkey]
        self._live.pop(rkey, None)
        self._retired.pop(rkey, None)

    def _flush(self, rkey: str, run: Run, now_ms: int, *, timed_out: bool) -> Emission:
        opened = run.open
        assert opened is not None  # noqa: S101 - callers check
        ids = opened["ids"]
        items = dict(run.results)
        for index in range(int(opened["total"])):
            if index not in items:
                items[index] = timeout_item(index, ids[index] if index < len(ids) else None, self.timeout_s)
        result = assemble(
            run.batch_id,
            items.values(),
            total_time_ms=max(0.0, float(now_ms - opened["received_at"])),
            replay=opened.get("replay"),
        )
        return self._emit(rkey, run, result, timed_out=timed_out)

    def _emit(self, rkey: str, run: Run, result: dict[str, Any], *, timed_out: bool) -> Emission:
        run.pending = True
        run.results = {}
        self.stats["timed_out" if timed_out else "completed"] += 1
        return Emission(rkey, run.batch_id, result, timed_out, run.owner)

    def emitted(
        self, emissions: Sequence[Emission], now_ms: int, acks: Sequence[tuple[int, int] | None] | None = None
    ) -> None:
        """The broker acknowledged these results: their runs are done. ``acks``: where each one was written
        (results partition, offset), when known."""
        for i, e in enumerate(emissions):
            run = self.runs.get(e.run_key)
            if run is not None:
                run.pending = False
                run.done_at = now_ms
                ack = acks[i] if acks is not None else None
                if ack is not None:
                    at = self.results_at.setdefault(run.partition, {})
                    at[ack[0]] = max(at.get(ack[0], 0), ack[1] + 1)

    # -- commit ---------------------------------------------------------------------------------
    def _low_watermarks(self) -> dict[int, int]:
        low = dict(self.next_offset)
        for run in self._live.values():
            if run.done_at is None and run.partition in low:
                low[run.partition] = min(low[run.partition], run.first_offset)
        return low

    def commit_points(self) -> dict[int, tuple[int, str]]:
        """Per partition read: (offset to commit, metadata listing the runs emitted above it).

        A done run is listed by the lowest offset of its records at or above the commit point: that is
        the first of its records a restarted sink reads (a part can precede its ``open``, and a request
        read again after a worker crash writes the run's records once more)."""
        low = self._low_watermarks()
        self._retire(low)
        done: dict[int, list[int]] = {p: [] for p in low}
        for run in self._live.values():
            if run.done_at is not None and run.partition in low:
                above = [o for o in run.offsets if o >= low[run.partition]]
                if above:
                    done[run.partition].append(min(above))
        out: dict[int, tuple[int, str]] = {}
        for p, offset in low.items():
            skip = self.skip.get(p)
            if skip:
                skip.difference_update([o for o in skip if o < offset])
            metadata, dropped = encode_done(offset, done[p] + list(skip or ()), results=self.results_at.get(p))
            self.stats["metadata_dropped"] += dropped
            out[p] = (offset, metadata)
        return out
