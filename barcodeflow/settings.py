"""One settings object per process, built in ``main()`` from an injectable environ and passed down.

``Settings`` holds every knob of every process (worker, sink, facade, producer CLIs); the ``facade_*``
ones are read only by the HTTP facade, which checks them (``check_facade``) before it starts."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar


class ConfigError(ValueError):
    """A process refuses to start with this configuration."""


def env_bool(v: str) -> bool:
    return v.strip().lower() in {"1", "true", "yes", "on"}


EnvTable = Mapping[str, tuple[str, Callable[[str], Any]]]


def env_values(table: EnvTable, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``{field: converted value}`` for every variable of ``table`` set (non-empty) in ``environ``."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for var, (name, conv) in table.items():
        raw = env.get(var)
        if raw is not None and raw != "":
            try:
                out[name] = conv(raw)
            except ValueError as exc:
                raise ConfigError(f"{var}={raw!r} is not valid: {exc}") from None
    return out


@dataclass(frozen=True)
class Topics:
    requests: str = "barcode.requests"
    results: str = "barcode.results"
    dlq: str = "barcode.requests.dlq"
    items: str = "barcode.render.items"

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        """All topic names behind a prefix (isolated test runs, several stacks on one cluster)."""
        return cls(**{f.name: prefix + f.default for f in fields(cls)})  # type: ignore[operator]


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # The render cache's own Redis (CACHE_REDIS_URL); empty: the cache shares REDIS_URL with ownership claims,
    # results and rate limits, and its LRU turnover then evicts those too (README, "Redis memory").
    cache_redis_url: str = ""
    topic_partitions: int = 8
    render_concurrency: int = 2
    cache_max_size: int = 1000
    cache_default_ttl: int = 3600
    cache_timeout_ms: int = 100
    batch_timeout_s: float = 30.0
    max_batch_size: int = 100
    max_message_bytes: int = 16 * 1024 * 1024
    # snappy: ~60 % of zstd's CPU for a 154 KB result (0.15 against 0.26 ms to compress, 0.07 against 0.11 to
    # decompress) for 1.9 times its bytes (44 against 23 KB); CPU is what this pipeline runs out of first
    # (BENCHMARKS.md). zstd where bytes on the wire or on disk cost more.
    compression: str = "snappy"
    data_dir: str = ".stack/faust"
    app_id: str = "barcodeflow"
    # Static group membership (KIP-345) for the worker's and the sink's consumer groups: a process that
    # restarts with the same id gets its partitions back at once, without a rebalance, instead of after the
    # session timeout. Unique per live process of a role; empty: dynamic membership. ``up`` sets one per child.
    group_instance_id: str = ""
    # A worker whose intake has not started this long after the app started ends (non-zero exit, and a
    # supervisor starts it again): Faust's start-up waits for its consumer's assignment without a bound,
    # and a fenced static member never gets one.
    worker_start_timeout_s: float = 60.0
    # A batch whose renders finish within this time of its planning reaches the sink as one record (its
    # ``open`` record carrying every item result); a slower one gets its ``open`` record at this point and
    # its ``part`` when rendered. At most half of ``batch_timeout_s`` is used; 0: the ``open`` record at once.
    worker_open_grace_s: float = 1.0
    log_level: str = "info"
    facade_host: str = "127.0.0.1"
    facade_port: int = 8000
    api_keys: tuple[str, ...] = ()
    api_keys_file: str | None = None
    rate_limit: str = "600/minute"
    rate_limit_fail_open: bool = True
    trusted_proxies: tuple[str, ...] = ()
    max_body_bytes: int = 1024 * 1024
    result_ttl_s: int = 3600
    facade_wait_s: float = 10.0
    # No API key configured at all is refused unless this is set (``--insecure-no-auth`` /
    # ``FACADE_ALLOW_NO_AUTH=1``); then every /v1 caller is the same anonymous principal.
    facade_allow_no_auth: bool = False
    # Upper bound of ``?timeout=`` on POST /v1/batches.
    facade_max_wait_s: float = 30.0
    # Bound on publishing one batch (broker ack); past it the caller gets 503, never a hang.
    facade_publish_timeout_s: float = 5.0
    # Kafka clients start in the background and are retried; startup waits at most this long for them.
    facade_kafka_startup_wait_s: float = 10.0
    facade_kafka_start_timeout_s: float = 20.0
    facade_kafka_retry_interval_s: float = 2.0
    # Shutdown: each step (producer, listener, results writer, Redis client) is given at most this long.
    facade_shutdown_step_s: float = 10.0
    # Redis: every call is bounded; after a failure Redis is skipped for ``facade_redis_cooldown_s``.
    facade_redis_timeout_s: float = 0.5
    facade_redis_cooldown_s: float = 2.0
    facade_ratelimit_timeout_s: float = 0.25
    # Redis key prefix of the rate-limit windows (replicas that must share limits use the same one).
    facade_ratelimit_prefix: str = "bf:rl"
    # Readiness probes (Kafka metadata + Redis PING).
    facade_readiness_timeout_s: float = 2.0
    # Single-image rendering: "process" (ProcessPoolExecutor, spawn) or "thread" (threadpool), with
    # ``facade_render_workers`` of them (0: as many as ``render_concurrency``).
    facade_render_executor: str = "process"
    facade_render_workers: int = 0
    facade_render_timeout_s: float = 10.0
    facade_image_max_age_s: int = 86400
    # In-process copy of the results of batches submitted to this replica (answers GET when Redis is down);
    # the oldest go first beyond this many bytes (gauge barcodeflow_facade_local_results_bytes).
    facade_local_results_max_bytes: int = 64 * 1024 * 1024
    topic_prefix: str = ""
    topics: Topics = field(default_factory=Topics)

    def __post_init__(self) -> None:
        if self.topic_prefix and self.topics == Topics():
            object.__setattr__(self, "topics", Topics.with_prefix(self.topic_prefix))

    _ENV: ClassVar[EnvTable] = {
        "KAFKA_BOOTSTRAP_SERVERS": ("kafka_bootstrap_servers", str),
        "REDIS_URL": ("redis_url", str),
        "CACHE_REDIS_URL": ("cache_redis_url", str),
        "TOPIC_PARTITIONS": ("topic_partitions", int),
        "TOPIC_PREFIX": ("topic_prefix", str),
        "RENDER_CONCURRENCY": ("render_concurrency", int),
        "CACHE_MAX_SIZE": ("cache_max_size", int),
        "CACHE_DEFAULT_TTL": ("cache_default_ttl", int),
        "CACHE_TIMEOUT_MS": ("cache_timeout_ms", int),
        "BATCH_TIMEOUT_S": ("batch_timeout_s", float),
        "MAX_BATCH_SIZE": ("max_batch_size", int),
        "MAX_MESSAGE_BYTES": ("max_message_bytes", int),
        "KAFKA_COMPRESSION": ("compression", str),
        "BARCODEFLOW_DATA_DIR": ("data_dir", str),
        "BARCODEFLOW_APP_ID": ("app_id", str),
        "GROUP_INSTANCE_ID": ("group_instance_id", str),
        "WORKER_START_TIMEOUT_S": ("worker_start_timeout_s", float),
        "WORKER_OPEN_GRACE_S": ("worker_open_grace_s", float),
        "LOG_LEVEL": ("log_level", str),
        "FACADE_HOST": ("facade_host", str),
        "FACADE_PORT": ("facade_port", int),
        "API_KEYS": ("api_keys", lambda v: tuple(k.strip() for k in v.split(",") if k.strip())),
        "API_KEYS_FILE": ("api_keys_file", str),
        "RATE_LIMIT": ("rate_limit", str),
        "RATE_LIMIT_FAIL_OPEN": ("rate_limit_fail_open", env_bool),
        "TRUSTED_PROXIES": ("trusted_proxies", lambda v: tuple(k.strip() for k in v.split(",") if k.strip())),
        "MAX_BODY_BYTES": ("max_body_bytes", int),
        "RESULT_TTL_S": ("result_ttl_s", int),
        "FACADE_WAIT_S": ("facade_wait_s", float),
        "FACADE_ALLOW_NO_AUTH": ("facade_allow_no_auth", env_bool),
        "FACADE_MAX_WAIT_S": ("facade_max_wait_s", float),
        "FACADE_PUBLISH_TIMEOUT_S": ("facade_publish_timeout_s", float),
        "FACADE_KAFKA_STARTUP_WAIT_S": ("facade_kafka_startup_wait_s", float),
        "FACADE_REDIS_TIMEOUT_S": ("facade_redis_timeout_s", float),
        "FACADE_RENDER_EXECUTOR": ("facade_render_executor", str),
        "FACADE_RENDER_WORKERS": ("facade_render_workers", int),
        "FACADE_RATELIMIT_PREFIX": ("facade_ratelimit_prefix", str),
        "FACADE_LOCAL_RESULTS_MAX_BYTES": ("facade_local_results_max_bytes", int),
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        kwargs = env_values(cls._ENV, environ)
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kwargs)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @property
    def image_cache_url(self) -> str:
        """The Redis of the render cache: ``CACHE_REDIS_URL``, else ``REDIS_URL``."""
        return self.cache_redis_url or self.redis_url

    @property
    def render_tasks_per_batch(self) -> int:
        """The most render tasks a worker splits one batch into: two per pool process keeps every process
        busy while the other task of its pair is in transit; more would only add overhead per task."""
        return 2 * max(1, self.render_concurrency)

    @property
    def open_grace_s(self) -> float:
        """``worker_open_grace_s``, bounded by half the batch deadline (the sink must learn of a batch in
        time to answer it at its deadline)."""
        return max(0.0, min(self.worker_open_grace_s, self.batch_timeout_s / 2))

    @property
    def facade_render_processes(self) -> int:
        return self.facade_render_workers if self.facade_render_workers > 0 else max(1, self.render_concurrency)

    def check_facade(self) -> None:
        """Raise ``ConfigError`` for facade settings the facade refuses to start with."""
        if self.facade_render_executor not in ("process", "thread"):
            raise ConfigError(f"render_executor must be 'process' or 'thread', not {self.facade_render_executor!r}")
        if self.facade_max_wait_s <= 0 or self.facade_publish_timeout_s <= 0:
            raise ConfigError("max_wait_s and publish_timeout_s must be positive")
        if self.facade_wait_s < 0 or self.facade_wait_s > self.facade_max_wait_s:
            raise ConfigError(f"FACADE_WAIT_S must be between 0 and {self.facade_max_wait_s:g}")

    def as_env(self) -> dict[str, str]:
        """The environment a child process needs to rebuild these settings."""
        inverse = {name: var for var, (name, _) in self._ENV.items()}
        out: dict[str, str] = {}
        for f in fields(self):
            var = inverse.get(f.name)
            val = getattr(self, f.name)
            if var is None or val is None:
                continue
            out[var] = ",".join(val) if isinstance(val, tuple) else str(val)
        return out
