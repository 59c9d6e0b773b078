"""The real local Redis: PING, SET/GET with TTL, and the stack's memory settings."""

from __future__ import annotations

import uuid

import pytest
import redis

from barcodeflow.stack import ManagedProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def client(redis_service: ManagedProcess | None, redis_url: str):
    c = redis.Redis.from_url(redis_url, socket_timeout=5)
    yield c
    c.close()


def test_ping(client: redis.Redis) -> None:
    assert client.ping() is True


def test_set_get_with_ttl(client: redis.Redis) -> None:
    key = f"test:stack:{uuid.uuid4().hex}"
    assert client.set(key, b"\x00value\xff", ex=30)
    assert client.get(key) == b"\x00value\xff"
    assert 0 < client.ttl(key) <= 30
    assert client.delete(key) == 1
    assert client.get(key) is None


def test_memory_policy(redis_service: ManagedProcess | None, client: redis.Redis) -> None:
    if redis_service is None or (
        redis_service.reused and not redis_service.owned and not _stack_started(redis_service)
    ):
        pytest.skip("Redis on this port was not started by barcodeflow.stack; its settings are its own")
    cfg = client.config_get("maxmemory*")
    assert cfg["maxmemory-policy"] == "allkeys-lru"
    assert int(cfg["maxmemory"]) == 256 * 1024 * 1024
    assert client.config_get("appendonly")["appendonly"] == "no"
    assert client.config_get("save")["save"] == ""


def _stack_started(proc: ManagedProcess) -> bool:
    from barcodeflow.stack.procs import read_pid_file

    rec = read_pid_file(proc.pid_path)
    return rec is not None and rec.pid == proc.pid and rec.process() is not None
