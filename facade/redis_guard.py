"""Bounded Redis calls with a small circuit breaker.

Every Redis call of the facade goes through ``RedisGuard.run``: it is bounded by a timeout, and after a
failure Redis is skipped for ``cooldown`` seconds, so a dead Redis costs each request nothing instead
of a connect timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class RedisUnavailable(Exception):
    pass


class RedisGuard:
    def __init__(self, *, timeout: float, cooldown: float) -> None:
        self.timeout = timeout
        self.cooldown = cooldown
        self._down_until = 0.0
        self._last_log = 0.0
        self.failures = 0

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def mark_down(self, exc: BaseException) -> None:
        self.failures += 1
        now = time.monotonic()
        self._down_until = now + self.cooldown
        if now - self._last_log > 10.0:
            self._last_log = now
            log.warning("redis unavailable (%r); skipping it for %.1f s", exc, self.cooldown)

    async def run(self, fn: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
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
