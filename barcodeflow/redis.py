"""The one way to Redis: ``redis_client`` builds the client, ``RedisGuard`` bounds every call.

Redis is shared state we can live without for a moment (render cache, facade results, rate limits), so
every call goes through a ``RedisGuard``: it is bounded by a timeout, and after a failure Redis is skipped
for ``cooldown`` seconds, so a dead Redis costs each caller nothing instead of a timeout per call. What a
caller does without Redis (render anyway, answer from its local copy, fail open or closed) is its own
decision, taken where it catches ``RedisUnavailable``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis
from redis.asyncio import Redis

log = logging.getLogger(__name__)

T = TypeVar("T")


def redis_client(url: str, *, timeout_s: float, health_check_interval: int = 0) -> Redis:
    """A client whose socket operations and connects give up after ``timeout_s`` (never retried)."""
    return Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry_on_timeout=False,
        health_check_interval=health_check_interval,
    )


def blocking_redis_client(url: str, *, timeout_s: float) -> redis.Redis:
    """``redis_client`` for code outside an event loop (the render pool's processes)."""
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False)


class RedisUnavailable(Exception):
    pass


class RedisGuard:
    """Timeout and back-off around calls of one user of Redis (``what`` names it in the log)."""

    def __init__(self, *, timeout: float, cooldown: float, what: str = "redis", log_every_s: float = 10.0) -> None:
        self.timeout = timeout
        self.cooldown = cooldown
        self.what = what
        self.log_every_s = log_every_s
        self.failures = 0
        self._down_until = 0.0
        self._last_log = 0.0

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def mark_down(self, exc: BaseException) -> None:
        self.failures += 1
        now = time.monotonic()
        self._down_until = now + self.cooldown
        if now - self._last_log > self.log_every_s:
            self._last_log = now
            log.warning("%s: redis unavailable (%r); skipping it for %.1f s", self.what, exc, self.cooldown)

    async def run(self, fn: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        """``await fn()`` within the timeout; ``RedisUnavailable`` while marked down or when it fails."""
        if not self.available:
            raise RedisUnavailable("redis marked down")
        try:
            result = await asyncio.wait_for(fn(), timeout or self.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # redis errors, OSError, TimeoutError: all mean "not usable now"
            self.mark_down(exc)
            raise RedisUnavailable(repr(exc)) from exc
        self._down_until = 0.0
        return result

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` with a blocking client, whose socket timeout bounds it; otherwise as ``run``."""
        if not self.available:
            raise RedisUnavailable("redis marked down")
        try:
            result = fn()
        except Exception as exc:  # redis errors, OSError, TimeoutError: all mean "not usable now"
            self.mark_down(exc)
            raise RedisUnavailable(repr(exc)) from exc
        self._down_until = 0.0
        return result
