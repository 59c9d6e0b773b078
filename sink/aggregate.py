"""Per-batch aggregation in pure code: no Kafka, no Faust, no clock of its own.

The sink agent feeds records from the internal items topic to ``BatchAggregator.add`` and writes
whatever it returns; a timer asks ``due`` which batches passed their deadline and feeds an
``expire`` record for each back through the same topic, so every state change happens inside
stream processing (Faust tables can only be changed there).

Records (JSON objects; ``run`` identifies one publication of a request: its source
partition and offset, so a redelivered request is the same run while a replay or re-submission
with the same ``batch_id`` is a new one):

* ``{"kind": "open", "batch_id", "run", "total", "ids", "received_at", "deadline", "replay"}``
* ``{"kind": "part", "batch_id", "run", "chunk", "results": [item result, ...]}``
* ``{"kind": "expire", "batch_id", "run"}``
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from schemas.errors import ErrorCode

SEP = "|"
DONE_RETENTION_MS = 3_600_000  # late or redelivered parts of a finished run are recognised this long
ORPHAN_TTL_MS = 600_000  # parts whose "open" never arrived are dropped after this long


def run_key(batch_id: str, run: str) -> str:
    return f"{batch_id}{SEP}{run}"


def part_key(rkey: str, chunk: str) -> str:
    return f"{rkey}{SEP}part{SEP}{chunk}"


def is_part_key(key: str) -> bool:
    return f"{SEP}part{SEP}" in key


def timeout_item(index: int, item_id: str | None, timeout_s: float) -> dict[str, Any]:
    return {
        "index": index,
        "id": item_id,
        "success": False,
        "cached": False,
        "generation_time_ms": 0.0,
        "error": {
            "code": ErrorCode.TIMEOUT.value,
            "message": f"item not rendered within the batch deadline of {timeout_s:g} s",
        },
    }


def summarize(results: Iterable[Mapping[str, Any]], total_time_ms: float) -> dict[str, Any]:
    rs = list(results)
    ok = sum(1 for r in rs if r.get("success"))
    total = len(rs)
    return {
        "total": total,
        "successful": ok,
        "failed": total - ok,
        "cached": sum(1 for r in rs if r.get("cached")),
        "total_time_ms": round(total_time_ms, 3),
        "average_time_ms": round(total_time_ms / total, 3) if total else 0.0,
    }


def assemble(
    batch_id: str,
    results: Iterable[Mapping[str, Any]],
    *,
    total_time_ms: float,
    replay: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    ordered = sorted(results, key=lambda r: r["index"])
    out: dict[str, Any] = {
        "batch_id": batch_id,
        "success": all(r.get("success") for r in ordered) and bool(ordered),
        "results": ordered,
        "summary": summarize(ordered, total_time_ms),
    }
    if replay:
        out["replay"] = dict(replay)
    return out


def rejected(
    batch_id: str, problems: list[dict[str, str]], *, replay: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The BatchResult for a batch rejected as a whole (so a waiting client gets an answer)."""
    out = assemble(batch_id, [], total_time_ms=0.0, replay=replay)
    out["success"] = False
    out["error"] = {
        "code": ErrorCode.INVALID_BATCH.value,
        "message": "; ".join(f"{p['loc']}: {p['message']}" if p.get("loc") else p["message"] for p in problems),
        "problems": problems,
    }
    return out


class BatchAggregator:
    """Accumulates item results per run in ``store`` (a Faust table in production, a dict in tests)."""

    def __init__(self, store: MutableMapping[str, Any], *, timeout_s: float) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self.ignored_late = 0
        self.ignored_duplicates = 0
        self._emitted: list[tuple[str, list[str], int, bool]] = []

    # -- add ------------------------------------------------------------------------------------
    def add(self, record: Mapping[str, Any], now_ms: int) -> list[dict[str, Any]]:
        """Apply one record; return the BatchResults that became complete (zero or one)."""
        kind = record.get("kind")
        rkey = run_key(str(record["batch_id"]), str(record["run"]))
        stored = self.store.get(rkey)
        if stored is None:
            meta: dict[str, Any] = {"open": None, "chunks": {}, "first_seen": now_ms, "done": False}
        else:  # a copy: the store changes only by assignment (a Faust table writes its changelog then)
            chunks = stored.get("chunks") or {}
            meta = {**stored, "chunks": dict(chunks) if isinstance(chunks, Mapping) else list(chunks)}
        if meta.get("done"):
            if kind == "expire":
                if now_ms - meta.get("done_at", 0) >= DONE_RETENTION_MS:
                    self._drop(rkey, meta)
            else:
                self.ignored_late += 1
            return []
        if kind == "open":
            if meta["open"] is not None:
                self.ignored_duplicates += 1
                return []
            meta["open"] = {k: record[k] for k in ("total", "ids", "received_at", "deadline", "replay")}
        elif kind == "part":
            chunk = str(record["chunk"])
            if chunk in meta["chunks"]:
                self.ignored_duplicates += 1
                return []
            self.store[part_key(rkey, chunk)] = list(record["results"])
            meta["chunks"][chunk] = len(record["results"])
        elif kind == "expire":
            if meta["open"] is None:
                if now_ms - meta["first_seen"] >= ORPHAN_TTL_MS:
                    self._drop(rkey, meta)
                return []
            if now_ms < meta["open"]["deadline"]:
                return []
            return [self._flush(rkey, meta, now_ms, timed_out=True)]
        else:
            raise ValueError(f"unknown record kind {kind!r}")
        if meta["open"] is not None and sum(meta["chunks"].values()) >= meta["open"]["total"]:
            return [self._flush(rkey, meta, now_ms, timed_out=False)]
        self.store[rkey] = meta
        return []

    # -- flush ----------------------------------------------------------------------------------
    def _flush(self, rkey: str, meta: dict[str, Any], now_ms: int, *, timed_out: bool) -> dict[str, Any]:
        """Build the BatchResult; the run is only marked done by ``finalize``, once it was written."""
        opened = meta["open"]
        by_index: dict[int, dict[str, Any]] = {}
        for chunk in meta["chunks"]:
            for item in self.store.get(part_key(rkey, chunk)) or ():
                by_index.setdefault(int(item["index"]), item)
        ids = opened["ids"]
        for index in range(opened["total"]):
            if index not in by_index:
                by_index[index] = timeout_item(index, ids[index] if index < len(ids) else None, self.timeout_s)
        batch_id = rkey.split(SEP, 1)[0]
        result = assemble(
            batch_id,
            by_index.values(),
            total_time_ms=max(0.0, float(now_ms - opened["received_at"])),
            replay=opened.get("replay"),
        )
        self._emitted.append((rkey, list(meta["chunks"]), now_ms, timed_out))
        return result

    def finalize(self) -> None:
        """Mark the runs whose results ``add`` returned as done and drop their parts.

        Call it only after those results are safely written (the sink awaits the broker's ack): a
        crash before that leaves the parts in place, so the redelivered record emits the same result
        again (an identical duplicate) instead of the run being done with no result out.
        The done marker is written before the parts are dropped: a crash in between leaves parts
        behind (listed in the marker, dropped when it is purged), never a half-emptied open run.
        """
        for rkey, chunks, now_ms, timed_out in self._emitted:
            self.store[rkey] = {"done": True, "done_at": now_ms, "timed_out": timed_out, "chunks": chunks}
            for chunk in chunks:
                self.store.pop(part_key(rkey, chunk), None)
        self._emitted.clear()

    def _drop(self, rkey: str, meta: Mapping[str, Any]) -> None:
        for chunk in meta.get("chunks") or ():
            self.store.pop(part_key(rkey, chunk), None)
        self.store.pop(rkey, None)

    # -- due ------------------------------------------------------------------------------------
    def due(self, now_ms: int) -> list[tuple[str, str]]:
        """(batch_id, run) of runs whose deadline passed, orphans to drop, and done markers to purge."""
        out = []
        for key, meta in list(self.store.items()):
            if is_part_key(key) or not isinstance(meta, Mapping):
                continue
            if meta.get("done"):
                expired = now_ms - meta.get("done_at", 0) >= DONE_RETENTION_MS
            elif meta.get("open") is None:
                expired = now_ms - meta.get("first_seen", now_ms) >= ORPHAN_TTL_MS
            else:
                expired = now_ms >= meta["open"]["deadline"]
            if expired:
                batch_id, run = key.split(SEP, 1)
                out.append((batch_id, run))
        return out
