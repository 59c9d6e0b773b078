"""Facade-local configuration: the shared ``Settings`` plus the knobs only the HTTP facade needs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

from barcodeflow.settings import EnvTable, Settings, env_bool, env_values


class ConfigError(Exception):
    """The facade refuses to start with this configuration."""


@dataclass(frozen=True)
class FacadeConfig:
    settings: Settings
    # No API key configured at all is refused unless this is set (``--insecure-no-auth`` /
    # ``FACADE_ALLOW_NO_AUTH=1``); then every /v1 caller is the same anonymous principal.
    allow_no_auth: bool = False
    # Upper bound of ``?timeout=`` on POST /v1/batches.
    max_wait_s: float = 30.0
    # Bound on publishing one batch (broker ack); past it the caller gets 503, never a hang.
    publish_timeout_s: float = 5.0
    # Kafka clients start in the background and are retried; startup waits at most this long for them.
    kafka_startup_wait_s: float = 10.0
    kafka_start_timeout_s: float = 20.0
    kafka_retry_interval_s: float = 2.0
    # Shutdown: each step (producer, listener, results writer, Redis client) is given at most this long.
    shutdown_step_s: float = 10.0
    # Redis: every call is bounded; after a failure Redis is skipped for ``redis_cooldown_s``.
    redis_timeout_s: float = 0.5
    redis_cooldown_s: float = 2.0
    ratelimit_timeout_s: float = 0.25
    # Redis key prefix of the rate-limit windows (replicas that must share limits use the same one).
    ratelimit_prefix: str = "bf:rl"
    # Readiness probes (Kafka metadata + Redis PING).
    readiness_timeout_s: float = 2.0
    # Single-image rendering: "process" (ProcessPoolExecutor, spawn) or "thread" (threadpool).
    render_executor: Literal["process", "thread"] = "process"
    render_workers: int = 2
    render_timeout_s: float = 10.0
    image_max_age_s: int = 86400
    # In-process fallback for results of batches submitted to this replica (used when Redis is down).
    local_results_max_bytes: int = 64 * 1024 * 1024

    _ENV: ClassVar[EnvTable] = {
        "FACADE_ALLOW_NO_AUTH": ("allow_no_auth", env_bool),
        "FACADE_MAX_WAIT_S": ("max_wait_s", float),
        "FACADE_PUBLISH_TIMEOUT_S": ("publish_timeout_s", float),
        "FACADE_KAFKA_STARTUP_WAIT_S": ("kafka_startup_wait_s", float),
        "FACADE_REDIS_TIMEOUT_S": ("redis_timeout_s", float),
        "FACADE_RENDER_EXECUTOR": ("render_executor", str),
        "FACADE_RENDER_WORKERS": ("render_workers", int),
        "FACADE_RATELIMIT_PREFIX": ("ratelimit_prefix", str),
    }

    @classmethod
    def from_settings(
        cls, settings: Settings, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> FacadeConfig:
        kwargs: dict[str, Any] = {"render_workers": max(1, settings.render_concurrency)}
        try:
            kwargs.update(env_values(cls._ENV, environ))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        cfg = cls(settings=settings, **kwargs)
        cfg.check()
        return cfg

    def with_(self, **changes: Any) -> FacadeConfig:
        return replace(self, **changes)

    def check(self) -> None:
        if self.render_executor not in ("process", "thread"):
            raise ConfigError(f"render_executor must be 'process' or 'thread', not {self.render_executor!r}")
        if self.max_wait_s <= 0 or self.publish_timeout_s <= 0:
            raise ConfigError("max_wait_s and publish_timeout_s must be positive")
        if self.settings.facade_wait_s < 0 or self.settings.facade_wait_s > self.max_wait_s:
            raise ConfigError(f"FACADE_WAIT_S must be between 0 and {self.max_wait_s:g}")

    @property
    def cache_timeout_s(self) -> float:
        return max(self.settings.cache_timeout_ms, 1) / 1000.0
