"""Fixtures of the facade tests.

Unit tests build the app with ``FakePublisher``/``FakeListener`` (no Kafka). They use the real Redis
when one answers at ``REDIS_URL`` (default 127.0.0.1:6379); otherwise the Redis client points at a
dead port and rate limiting uses ``facade.ratelimit.MemoryWindows``, which exercises the Redis-down paths.
Each harness gets a random client address and fresh API keys, so Redis-backed limits never leak
between tests.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.testclient import TestClient

from barcodeflow.settings import Settings
from facade.app import create_app
from facade.ratelimit import memory_storage
from tests.facade.fakes import FakeListener, FakePublisher

DEAD_REDIS = "redis://127.0.0.1:1/0"


def redis_url() -> str:
    return os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"


def redis_available(url: str | None = None) -> bool:
    if os.environ.get("FACADE_TEST_NO_REDIS") == "1":  # run the unit tests as if Redis were down
        return False
    hostport = (url or redis_url()).split("//", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or 6379)), timeout=0.5):
            return True
    except OSError:
        return False


requires_redis = pytest.mark.skipif(not redis_available(), reason="needs a Redis at REDIS_URL")


def random_ip() -> str:
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


async def ok_probe() -> None:
    return None


@dataclass
class Harness:
    client: TestClient
    app: Any
    publisher: FakePublisher
    listener: FakeListener
    settings: Settings
    keys: tuple[str, ...]
    ip: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.keys[0]

    def h(self, key: str | None = None, **headers: str) -> dict[str, str]:
        return {"X-API-Key": key or self.key, **headers}

    @property
    def state(self) -> Any:
        return self.app.state.facade


MakeHarness = Callable[..., Harness]


@pytest.fixture
def make_harness() -> Iterator[MakeHarness]:
    opened: list[TestClient] = []

    def make(
        *,
        mode: str = "answer",
        delay: float = 0.0,
        use_redis: bool | None = None,
        keys: tuple[str, ...] | None = None,
        client_ip: str | None = None,
        kafka_probe: Any = ok_probe,
        settings: dict[str, Any] | None = None,
        listener: FakeListener | None = None,
        publisher: FakePublisher | None = None,
        ratelimit_storage: Any = None,
    ) -> Harness:
        use_redis = redis_available() if use_redis is None else use_redis
        keys = keys if keys is not None else (f"key-a-{secrets.token_hex(8)}", f"key-b-{secrets.token_hex(8)}")
        base = Settings(
            redis_url=redis_url() if use_redis else DEAD_REDIS,
            api_keys=keys,
            rate_limit="10000/minute",
            facade_render_executor="thread",
            facade_kafka_startup_wait_s=2.0,
            facade_redis_timeout_s=0.3,
            facade_ratelimit_prefix=f"bf:rl:test:{secrets.token_hex(6)}",
        )
        s = base.with_(**(settings or {}))
        lis = listener or FakeListener()
        pub = publisher or FakePublisher(lis, mode=mode, delay=delay)
        if ratelimit_storage is None and not use_redis:
            ratelimit_storage = memory_storage()
        app = create_app(
            s,
            publisher=pub,
            listener=lis,
            kafka_probe=kafka_probe,
            ratelimit_storage=ratelimit_storage,
        )
        ip = client_ip or random_ip()
        client = TestClient(app, raise_server_exceptions=False, client=(ip, 40000))
        client.__enter__()
        opened.append(client)
        return Harness(client, app, pub, lis, s, keys, ip)

    yield make
    for c in opened:
        c.__exit__(None, None, None)


@pytest.fixture
def harness(make_harness: MakeHarness) -> Harness:
    return make_harness()


def batch(n: int = 1, **extra: Any) -> dict[str, Any]:
    """Fresh data every call: a batch already in the render cache would be answered by the facade
    itself (tests of the cache-answered path build their batches on purpose)."""
    tag = secrets.token_hex(6)
    return {
        "barcodes": [{"id": f"i{i}", "barcode_type": "qr", "data": f"hello {i} {tag}"} for i in range(n)],
        **extra,
    }
