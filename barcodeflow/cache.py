"""Two-level render cache: an in-process LRU in front of Redis (used by the worker, the facade and the
embedded path; the value format is ``render.batch.CachedImage``).

Redis is an accelerator, never a dependency: every Redis call goes through a ``RedisGuard`` (short
timeout); on error or timeout the caller renders anyway, and the failure is logged (rate-limited) and
counted. While Redis is failing, calls are skipped for a short back-off so a dead Redis does not add its
timeout to every batch.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
from hiredis import pack_command
from redis.asyncio import Redis

from barcodeflow.redis import RedisGuard, RedisUnavailable, blocking_redis_client
from render.batch import CachedImage

KEY_PREFIX = "bf:img:"

__all__ = ["KEY_PREFIX", "CacheStats", "CachedImage", "PoolStore", "TwoLevelCache"]


@dataclass
class CacheStats:
    memory_hits: int = 0
    redis_hits: int = 0
    misses: int = 0
    redis_errors: int = 0
    redis_skipped: int = 0


class LRU:
    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._data: OrderedDict[str, CachedImage] = OrderedDict()

    def get(self, key: str) -> CachedImage | None:
        val = self._data.get(key)
        if val is not None:
            self._data.move_to_end(key)
        return val

    def put(self, key: str, val: CachedImage) -> None:
        if self.max_size <= 0:
            return
        self._data[key] = val
        self._data.move_to_end(key)
        while len(self._data) > self.max_size:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class TwoLevelCache:
    def __init__(
        self,
        redis: Redis | None,
        *,
        max_size: int = 1000,
        ttl: int = 3600,
        timeout_ms: int = 100,
        backoff_s: float = 1.0,
    ) -> None:
        self.redis = redis
        self.lru = LRU(max_size)
        self.ttl = ttl
        self.guard = RedisGuard(timeout=timeout_ms / 1000, cooldown=backoff_s, what="render cache", log_every_s=5.0)
        self.stats = CacheStats()

    def _redis_usable(self) -> bool:
        if self.redis is None:
            return False
        if not self.guard.available:
            self.stats.redis_skipped += 1
            return False
        return True

    async def get_many(self, keys: Iterable[str]) -> dict[str, CachedImage]:
        found: dict[str, CachedImage] = {}
        missing: list[str] = []
        for key in dict.fromkeys(keys):
            val = self.lru.get(key)
            if val is not None:
                found[key] = val
                self.stats.memory_hits += 1
            else:
                missing.append(key)
        if missing and self._redis_usable():
            redis = self.redis
            assert redis is not None  # noqa: S101 - checked by _redis_usable
            try:
                raws = await self.guard.run(lambda: redis.mget([KEY_PREFIX + k for k in missing]))
            except RedisUnavailable:
                self.stats.redis_errors += 1
                raws = [None] * len(missing)
            for key, raw in zip(missing, raws, strict=True):
                if not isinstance(raw, bytes):
                    continue
                try:
                    val = CachedImage.decode(raw)
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue  # a corrupt entry is a miss; it is overwritten after rendering
                found[key] = val
                self.lru.put(key, val)
                self.stats.redis_hits += 1
        self.stats.misses += sum(1 for k in missing if k not in found)
        return found

    def remember(self, entries: Mapping[str, CachedImage]) -> None:
        for key, val in entries.items():
            self.lru.put(key, val)

    async def put_many(self, entries: Mapping[str, CachedImage]) -> None:
        self.remember(entries)
        if not entries or not self._redis_usable():
            return
        assert self.redis is not None  # noqa: S101 - checked by _redis_usable
        pipe = self.redis.pipeline(transaction=False)
        for key, val in entries.items():
            pipe.set(KEY_PREFIX + key, val.encode(), ex=self.ttl)
        try:
            await self.guard.run(pipe.execute)
        except RedisUnavailable:
            self.stats.redis_errors += 1


@dataclass
class PoolStore:
    """The render pool's ``render.pool.Store``: a pool process writes the images it rendered to Redis
    itself (one write per task), under the same policy as ``TwoLevelCache`` (short timeout, skipped for
    a back-off after a failure). It is pickled into each process, which connects on first use.

    A write's replies are read at the next write, or by ``flush``, which the process calls when no task
    is waiting for it: a render process goes on rendering instead of waiting for Redis to take its turn
    on the CPU (14 % of a render process's time under load went to that wait, BENCHMARKS.md). A write
    that cannot be sent returns False and the caller stores those images the usual way. An error reply,
    or no reply within the timeout, is found when the replies are read: it is logged, Redis is skipped for
    the back-off, and the write being made then is not sent (False); the images of the write that failed
    are missing from the shared cache (a later miss renders them again, RELIABILITY.md R3), never from a
    result."""

    url: str
    ttl: int
    timeout_ms: int = 100
    backoff_s: float = 1.0
    _client: Any = field(default=None, init=False, repr=False)
    _guard: RedisGuard | None = field(default=None, init=False, repr=False)
    _conn: Any = field(default=None, init=False, repr=False)
    _unread: int = field(default=0, init=False, repr=False)  # replies of the last write not read yet

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "ttl": self.ttl, "timeout_ms": self.timeout_ms, "backoff_s": self.backoff_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    def __call__(self, entries: Mapping[str, bytes]) -> bool:
        try:
            self._guarded().call(lambda: self._set_all(entries))
        except RedisUnavailable:
            return False
        return True

    def flush(self) -> None:
        """Read the replies of the last write (an error is logged, and Redis skipped for the back-off)."""
        if self._unread:
            with contextlib.suppress(RedisUnavailable):
                self._guarded().call(lambda: self._read_replies(self._connection()))

    def _guarded(self) -> RedisGuard:
        if self._guard is None:
            self._guard = RedisGuard(timeout=self.timeout_ms / 1000, cooldown=self.backoff_s, what="render pool cache")
            self._client = blocking_redis_client(self.url, timeout_s=self.timeout_ms / 1000)
        return self._guard

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self._client.connection_pool.get_connection()
        return self._conn

    def _set_all(self, entries: Mapping[str, bytes]) -> None:
        """The last write's replies, then every ``SET key value EX ttl`` of this one in one write.

        Packed by hiredis and sent on the store's own connection: a redis-py pipeline object costs about three
        times the client CPU for the same commands (~16 against ~5 µs per image, ``python -m
        bench.cache_writes``), paid in the render processes."""
        ttl = str(self.ttl).encode()
        commands = [(b"SET", (KEY_PREFIX + k).encode(), v, b"EX", ttl) for k, v in entries.items()]
        packed = b"".join([pack_command(c) for c in commands])  # type: ignore[arg-type] # its stub says 1-tuple
        conn = self._connection()
        self._read_replies(conn)
        try:
            conn.send_packed_command([packed], check_health=False)
        except BaseException:
            self._drop()
            raise
        self._unread = len(commands)

    def _read_replies(self, conn: Any) -> None:
        """Read every reply of the last write; the first error reply is raised once they are all read."""
        error: redis.ResponseError | None = None
        try:
            while self._unread:
                self._unread -= 1
                try:
                    conn.read_response()
                except redis.ResponseError as exc:
                    error = error or exc
        except BaseException:
            self._drop()  # replies may be left unread: this connection is not used again
            raise
        if error is not None:
            raise error

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.disconnect()
            self._conn = None
        self._unread = 0
