"""``barcodeflow facade``: the sub-command, and a real uvicorn process (no Kafka needed)."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from barcodeflow.cli import build_parser
from tests.facade.conftest import DEAD_REDIS, redis_available, redis_url
from tests.facade.server import FacadeProcess


def test_subcommand_is_registered() -> None:
    args = build_parser().parse_args(["facade", "--host", "0.0.0.0", "--port", "9", "--insecure-no-auth"])  # noqa: S104
    assert (args.command, args.host, args.port, args.insecure_no_auth) == ("facade", "0.0.0.0", 9, True)  # noqa: S104
    assert callable(args.func)


def test_refuses_to_start_without_keys() -> None:
    env = {"PATH": "/usr/bin:/bin", "API_KEYS": "", "HOME": "/tmp"}
    p = subprocess.run(
        [sys.executable, "-m", "barcodeflow", "facade", "--port", "1"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert p.returncode == 2
    assert b"--insecure-no-auth" in p.stderr


def _env(**extra: str) -> dict[str, str]:
    return {
        "API_KEYS": "cli-key",
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",  # no broker: the facade must still start
        "FACADE_KAFKA_STARTUP_WAIT_S": "0.2",
        "REDIS_URL": redis_url() if redis_available() else DEAD_REDIS,
        "FACADE_RATELIMIT_PREFIX": f"bf:rl:cli:{secrets.token_hex(6)}",
        **extra,
    }


def test_server_without_kafka(tmp_path: Path) -> None:
    with FacadeProcess(_env(RATE_LIMIT="1000/minute"), tmp_path / "facade.log") as fp:
        h = {"X-API-Key": "cli-key"}
        assert httpx.get(fp.url + "/healthz").status_code == 200
        ready = httpx.get(fp.url + "/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["checks"]["kafka"]["ok"] is False
        t0 = time.monotonic()
        r = httpx.post(fp.url + "/v1/batches", json={"barcodes": [{"barcode_type": "qr", "data": "x"}]}, headers=h)
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "kafka_unavailable"
        assert time.monotonic() - t0 < 2
        # oversized bodies: refused by declared length and, chunked, while streaming
        big = b"[" + b" " * (1024 * 1024 + 10) + b"]"
        r = httpx.post(fp.url + "/v1/batches", content=big, headers=h)
        assert r.status_code == 413
        r = httpx.post(
            fp.url + "/v1/batches",
            content=iter([big[i : i + 65536] for i in range(0, len(big), 65536)]),
            headers=h,
        )
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "payload_too_large"
        # single images need no Kafka: rendered in the (spawned) process pool
        img = httpx.get(fp.url + "/v1/barcodes/qr.png", params={"data": "cli"}, headers=h, timeout=30)
        assert img.status_code == 200, img.text
        assert img.headers["content-type"] == "image/png"
        assert "server" not in img.headers
        assert httpx.get(fp.url + "/v1/barcodes/qr.png", params={"data": "cli"}).status_code == 401
    # uvicorn re-raises the SIGTERM it handled after a clean shutdown
    assert fp.popen is not None and fp.popen.returncode in (0, -15), fp.tail()
    assert "Application shutdown complete" in fp.tail()


@pytest.mark.skipif(not redis_available(), reason="needs Redis (rate-limit storage)")
def test_uvicorn_does_not_trust_forwarded_for_from_loopback(tmp_path: Path) -> None:
    """uvicorn would trust 127.0.0.1 by default; the facade runs it with proxy_headers=False."""
    with FacadeProcess(_env(RATE_LIMIT="3/minute"), tmp_path / "facade.log", "--render-executor", "thread") as fp:
        statuses = [
            httpx.get(
                fp.url + "/v1/batches/x",
                headers={
                    "X-API-Key": "cli-key",
                    "X-Forwarded-For": f"198.51.100.{i}",
                    "X-Real-IP": f"10.0.0.{i}",
                },
            ).status_code
            for i in range(5)
        ]
        assert statuses[:3] == [404, 404, 404]
        assert statuses[3:] == [429, 429]
