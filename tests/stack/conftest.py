"""Fixtures for the local service stack (Kafka + Redis).

The integration fixtures use the services named by ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL``
(defaults 127.0.0.1:9092 and redis://127.0.0.1:6379/0). When nothing answers there and the address is
local, they start the service from ``barcodeflow.stack`` for the session (set
``BARCODEFLOW_NO_AUTOSTART=1`` to fail instead) and stop at the end only what they started.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from barcodeflow.stack import (
    ManagedProcess,
    find_root,
    kafka_healthy,
    redis_healthy,
    start_kafka,
    start_redis,
    stop,
)

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


@pytest.fixture(scope="session")
def stack_root() -> Path:
    return find_root(Path(__file__).parent)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def _autostart_allowed(host: str) -> bool:
    return host in LOCAL_HOSTS and os.environ.get("BARCODEFLOW_NO_AUTOSTART", "") not in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def kafka_service(stack_root: Path, kafka_bootstrap: str) -> Iterator[ManagedProcess | None]:
    """The local broker as a ManagedProcess (reused when already running; started otherwise)."""
    host, _, port = kafka_bootstrap.split(",")[0].rpartition(":")
    healthy = kafka_healthy(kafka_bootstrap, timeout=5.0)
    if host not in LOCAL_HOSTS and healthy:
        yield None  # a remote broker: usable, but not ours to kill or restart
        return
    if not healthy and not _autostart_allowed(host):
        pytest.fail(f"no Kafka at {kafka_bootstrap} (start it with `python -m barcodeflow.stack start`)")
    proc = start_kafka(stack_root, port=int(port))
    yield proc
    stop(proc)  # no-op when reused


@pytest.fixture(scope="session")
def redis_service(stack_root: Path, redis_url: str) -> Iterator[ManagedProcess | None]:
    u = urlparse(redis_url)
    healthy = redis_healthy(redis_url)
    if (u.hostname or "") not in LOCAL_HOSTS and healthy:
        yield None
        return
    if not healthy and not _autostart_allowed(u.hostname or ""):
        pytest.fail(f"no Redis at {redis_url} (start it with `python -m barcodeflow.stack start`)")
    proc = start_redis(stack_root, port=u.port or 6379)
    yield proc
    stop(proc)
