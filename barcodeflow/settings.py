"""One settings object per process, built in ``main()`` from an injectable environ and passed down."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar


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
                raise ValueError(f"{var}={raw!r} is not valid: {exc}") from None
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
    topic_partitions: int = 8
    render_concurrency: int = 2
    cache_max_size: int = 1000
    cache_default_ttl: int = 3600
    cache_timeout_ms: int = 100
    batch_timeout_s: float = 30.0
    max_batch_size: int = 100
    max_message_bytes: int = 16 * 1024 * 1024
    compression: str = "zstd"
    data_dir: str = ".stack/faust"
    app_id: str = "barcodeflow"
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
    topic_prefix: str = ""
    topics: Topics = field(default_factory=Topics)

    def __post_init__(self) -> None:
        if self.topic_prefix and self.topics == Topics():
            object.__setattr__(self, "topics", Topics.with_prefix(self.topic_prefix))

    _ENV: ClassVar[EnvTable] = {
        "KAFKA_BOOTSTRAP_SERVERS": ("kafka_bootstrap_servers", str),
        "REDIS_URL": ("redis_url", str),
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
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        kwargs = env_values(cls._ENV, environ)
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kwargs)

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

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
