"""Batch ownership and results, shared by every facade replica through Redis.

* ``bf:owner:{batch_id}`` = key id (SHA-256 of the submitting API key), TTL ``result_ttl_s``; claimed
  (one Lua script) before the batch is published. A client-chosen ``batch_id`` already owned by another
  key is refused (409), so nobody can read or shadow another key's batch. The same key claiming again
  renews the TTL; a new claim also deletes a result left behind by a claim that lapsed.
* ``bf:result:{batch_id}`` = the BatchResult record of ``barcode.results`` (the sink's), its value
  bytes as they are, TTL ``result_ttl_s``. Every replica's ``ResultListener`` sees every result; its
  callback, named by the record key, enqueues the bytes (no replica decodes them) and a writer task
  stores them for the key that submitted the batch, renewing the owner's TTL with it, so that the two
  end together (one Lua script: idempotent, so N replicas writing the same result is harmless). The
  facade publishes each batch with an ``x-owner`` header (``schemas.headers``) that the pipeline copies
  onto its result: a result is stored only if the owner key names that owner, or is gone (lost to
  Redis's LRU or its TTL while the batch was in the pipeline: it is set again); when another key has
  claimed the id meanwhile, the result is not stored. A result without the header is no facade batch's
  (an upstream system that published the same ``batch_id``): it is never stored. Nothing else writes
  results: an answer the facade made itself (from the render cache) is not stored; ``GET`` serves the
  sink's record once it is there.
* A small byte-bounded in-process copy of this replica's own batches (owner + result) answers when
  Redis is down, so a caller of this replica can still poll a batch it submitted here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redis.exceptions import NoScriptError

from barcodeflow.aio import cancel_and_wait
from barcodeflow.redis import RedisGuard, RedisUnavailable
from facade.errors import ApiError, FacadeCode
from facade.metrics import Metrics
from schemas.headers import owner_from

log = logging.getLogger(__name__)

OWNER_KEY = "bf:owner:{}"
RESULT_KEY = "bf:result:{}"

# the owner key is renewed with the result: the two end together, never the owner first. ARGV[3] is the
# result's x-owner: the owner key must name it, or be gone and is set to it again
_STORE_IF_OWNED = """
local current = redis.call('GET', KEYS[1])
if current ~= false and current ~= ARGV[3] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[2])
return 1
"""

# a new claim removes a result left by a claim that lapsed (TTL or eviction of the owner key alone): an id
# taken again by another key must not show it the earlier owner's result
_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current == false then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  redis.call('DEL', KEYS[2])
  return 1
end
if current == ARGV[1] then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class Lookup:
    state: Literal["unknown", "pending", "done"]
    result: bytes | None = None


class _LocalCache:
    """Bounded (count and bytes) TTL map; oldest entries go first."""

    def __init__(self, *, ttl_s: float, max_items: int, max_bytes: int) -> None:
        self.ttl_s = ttl_s
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._data: OrderedDict[str, tuple[float, Any, int]] = OrderedDict()
        self._bytes = 0

    def put(self, key: str, value: Any, size: int = 0) -> None:
        self.pop(key)
        if size > self.max_bytes:
            return
        self._data[key] = (time.monotonic() + self.ttl_s, value, size)
        self._bytes += size
        while self._data and (len(self._data) > self.max_items or self._bytes > self.max_bytes):
            _, (_, _, sz) = self._data.popitem(last=False)
            self._bytes -= sz

    def get(self, key: str) -> Any | None:
        entry = self._data.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            self.pop(key)
            return None
        return entry[1]

    def pop(self, key: str) -> None:
        entry = self._data.pop(key, None)
        if entry is not None:
            self._bytes -= entry[2]

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    @property
    def bytes(self) -> int:
        return self._bytes


class ResultsStore:
    def __init__(
        self,
        redis: Any | None,
        guard: RedisGuard,
        *,
        ttl_s: int,
        metrics: Metrics,
        local_max_bytes: int = 64 * 1024 * 1024,
        queue_size: int = 10_000,
    ) -> None:
        self.redis = redis
        self.guard = guard
        self.ttl_s = max(1, int(ttl_s))
        self.metrics = metrics
        self._owners = _LocalCache(ttl_s=self.ttl_s, max_items=100_000, max_bytes=1 << 62)
        self._results = _LocalCache(ttl_s=self.ttl_s, max_items=100_000, max_bytes=local_max_bytes)
        self._queue: asyncio.Queue[tuple[str, bytes, str]] = asyncio.Queue(maxsize=queue_size)
        self._writer: asyncio.Task[None] | None = None
        self._store_script = redis.register_script(_STORE_IF_OWNED) if redis is not None else None
        self._claim_script = redis.register_script(_CLAIM) if redis is not None else None
        metrics.local_results_bytes.set_function(lambda: float(self._results.bytes))

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._writer is None and self.redis is not None:
            self._writer = asyncio.create_task(self._write_loop(), name="results-writer")

    async def stop(self) -> None:
        await cancel_and_wait(self._writer)
        self._writer = None

    # -- ownership -------------------------------------------------------------------------------
    async def claim(self, batch_id: str, owner: str) -> None:
        """Record ``owner`` for ``batch_id``; 409 when another key owns it. Redis down: local only."""
        local = self._owners.get(batch_id)
        if local is not None and local != owner:
            raise self._conflict(batch_id)
        script = self._claim_script
        if script is not None:
            keys = [OWNER_KEY.format(batch_id), RESULT_KEY.format(batch_id)]
            try:
                if not await self.guard.run(lambda: script(keys=keys, args=[owner, self.ttl_s])):
                    raise self._conflict(batch_id)
            except RedisUnavailable:
                log.debug("claim of %s recorded locally only (redis unavailable)", batch_id)
        self._owners.put(batch_id, owner)

    @staticmethod
    def _conflict(batch_id: str) -> ApiError:
        return ApiError(409, FacadeCode.BATCH_ID_CONFLICT, f"batch_id {batch_id!r} is already in use", field="batch_id")

    # -- results ---------------------------------------------------------------------------------
    async def lookup(self, batch_id: str, owner: str) -> Lookup:
        """Unknown (or owned by another key), pending, or done with the result JSON."""
        local_owner = self._owners.get(batch_id)
        if local_owner is not None:
            if local_owner != owner:
                return Lookup("unknown")
            local = self._results.get(batch_id)
            if local is not None:
                return Lookup("done", local)
        if self.redis is None:
            return Lookup("pending") if local_owner is not None else Lookup("unknown")
        try:
            stored_owner, result = await self.guard.run(self._fetch(batch_id))
        except RedisUnavailable:
            if local_owner is not None:
                return Lookup("pending")
            raise ApiError(
                503,
                FacadeCode.REDIS_UNAVAILABLE,
                "result storage is unavailable; try again shortly",
                headers={"Retry-After": "2"},
            ) from None
        if stored_owner is None and local_owner is None:
            return Lookup("unknown")
        if stored_owner is not None and _text(stored_owner) != owner:
            return Lookup("unknown")
        if result is None:
            return Lookup("pending")
        return Lookup("done", bytes(result))

    def _fetch(self, batch_id: str) -> Any:
        async def run() -> tuple[Any, Any]:
            assert self.redis is not None  # noqa: S101
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.get(OWNER_KEY.format(batch_id))
                pipe.get(RESULT_KEY.format(batch_id))
                owner, result = await pipe.execute()
            return owner, result

        return run

    def on_result(self, batch_id: str, raw: bytes, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        """``ResultListener`` callback: called for every result seen on ``barcode.results``, keyed by
        the record key, with the record's value and headers. The listener calls it before a waiting POST
        resumes, so this replica's copy of its own batch is there when that POST answers (GET right after)."""
        owner = owner_from(headers)
        if owner is None:  # not a batch a facade published: nobody's here
            return
        if self._owners.get(batch_id) == owner:
            self._results.put(batch_id, raw, len(raw))
        if self.redis is None:
            return
        try:
            self._queue.put_nowait((batch_id, raw, owner))
        except asyncio.QueueFull:
            self.metrics.results_dropped.inc()

    async def _write_loop(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < 100:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            await self._write(batch)

    async def _write(self, batch: list[tuple[str, bytes, str]]) -> None:
        script, redis = self._store_script, self.redis
        assert redis is not None and script is not None  # noqa: S101

        # EVALSHA in a plain pipeline: a redis-py pipeline holding a Script object first asks SCRIPT EXISTS
        # in a round trip of its own, at every execution
        async def write() -> list[Any]:
            async with redis.pipeline(transaction=False) as pipe:
                for batch_id, raw, owner in batch:
                    keys = (OWNER_KEY.format(batch_id), RESULT_KEY.format(batch_id))
                    pipe.evalsha(script.sha, 2, *keys, raw, self.ttl_s, owner)
                return list(await pipe.execute())

        async def run() -> list[Any]:
            try:
                return await write()
            except NoScriptError:  # Redis lost its scripts (restarted, SCRIPT FLUSH): load it, write again
                await redis.script_load(_STORE_IF_OWNED)
                return await write()

        try:
            stored = await self.guard.run(run, timeout=max(self.guard.timeout, 2.0))
        except RedisUnavailable:
            self.metrics.results_dropped.inc(len(batch))
            return
        self.metrics.results_stored.inc(sum(1 for s in stored if s == 1))


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes | bytearray) else str(v)
