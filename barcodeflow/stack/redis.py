"""Local Redis from Debian's ``redis-server``: no persistence, 256 MB, allkeys-lru, on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from barcodeflow.stack.procs import (
    ManagedProcess,
    ServiceError,
    StackPaths,
    describe_pid,
    listening_pid,
    live_pid_record,
    port_open,
    read_pid_file,
    terminate_pid,
    wait_port_free,
    wait_until,
)

log = logging.getLogger(__name__)

NAME = "redis"
DEFAULT_PORT = 6379
MAXMEMORY = "256mb"
POLICY = "allkeys-lru"


def redis_server_bin() -> str | None:
    return shutil.which("redis-server") or ("/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None)


def ensure_redis_installed(*, allow_apt: bool = True) -> str:
    """Path of ``redis-server``; installs Debian's package with apt-get when it is missing (needs root)."""
    found = redis_server_bin()
    if found:
        return found
    if not allow_apt or shutil.which("apt-get") is None or os.geteuid() != 0:
        raise ServiceError("redis-server not found: run `apt-get update && apt-get install -y redis-server` as root")
    env = {
        **os.environ,
        "DEBIAN_FRONTEND": "noninteractive",
        "RUNLEVEL": "1",
    }  # RUNLEVEL=1: don't start the service
    for cmd in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "redis-server"],
    ):
        log.info("running %s", " ".join(cmd))
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)  # noqa: S603
        if res.returncode != 0:
            raise ServiceError(
                f"{' '.join(cmd)} failed (rc={res.returncode}):\n{res.stdout[-2000:]}{res.stderr[-2000:]}"
            )
    found = redis_server_bin()
    if not found:
        raise ServiceError("apt-get installed redis-server but it is not on PATH")
    return found


def _url_host_port(url: str) -> tuple[str, int]:
    from urllib.parse import urlparse

    u = urlparse(url)
    return u.hostname or "127.0.0.1", u.port or DEFAULT_PORT


def redis_ping(url: str, timeout: float = 2.0) -> dict[str, Any]:
    """PING + a few INFO fields; raises when Redis does not answer."""
    import redis as redis_py

    client = redis_py.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        if not client.ping():
            raise ServiceError("PING did not answer PONG")
        info = client.info("server")
        mem = client.info("memory")
        return {
            "version": info.get("redis_version"),
            "pid": info.get("process_id"),
            "maxmemory": mem.get("maxmemory"),
            "maxmemory_policy": mem.get("maxmemory_policy"),
        }
    finally:
        client.close()


def redis_healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        redis_ping(url, timeout)
        return True
    except Exception:  # noqa: BLE001
        return False


def wait_redis_ready(url: str, timeout: float = 30.0, *, proc: ManagedProcess | None = None) -> dict[str, Any]:
    """Block until Redis at ``url`` answers PING."""
    return wait_until(lambda: redis_ping(url), timeout, what=f"Redis at {url}", proc=proc, interval=0.1)  # type: ignore[return-value]


def redis_argv(root: Path, port: int) -> list[str]:
    binary = redis_server_bin() or "redis-server"
    return [
        binary,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--protected-mode", "yes",
        "--daemonize", "no",
        "--dir", str(StackPaths(root).redis),
        "--save", "",
        "--appendonly", "no",
        "--maxmemory", MAXMEMORY,
        "--maxmemory-policy", POLICY,
        "--logfile", "",
        "--loglevel", "notice",
    ]  # fmt: skip


def start_redis(
    root: Path, *, port: int = DEFAULT_PORT, timeout: float = 30.0, allow_apt: bool = True
) -> ManagedProcess:
    """Start (or reuse) Redis on 127.0.0.1:``port``; a healthy Redis already on the port is reused."""
    root = Path(root).resolve()
    paths = StackPaths(root)
    ensure_redis_installed(allow_apt=allow_apt)
    url = f"redis://127.0.0.1:{port}/0"

    def ready(p: ManagedProcess, t: float) -> None:
        info = wait_redis_ready(url, t, proc=p)
        p.info.update({k: str(v) for k, v in info.items()})

    def prepare(p: ManagedProcess) -> None:
        paths.redis.mkdir(parents=True, exist_ok=True)
        if not wait_port_free("127.0.0.1", port, timeout=10):
            raise ServiceError(f"Redis port {port} is taken by {describe_pid(listening_pid(port))}")

    proc = ManagedProcess(
        name=NAME,
        argv=redis_argv(root, port),
        cwd=paths.redis,
        address=f"127.0.0.1:{port}",
        log_path=paths.log_file(NAME),
        pid_path=paths.pid_file(NAME),
        ready=ready,
        prepare=prepare,
    )
    paths.redis.mkdir(parents=True, exist_ok=True)
    rec = live_pid_record(paths.pid_file(NAME))
    if port_open("127.0.0.1", port):
        if redis_healthy(url):
            info = redis_ping(url)
            pid = rec.pid if rec else (int(info["pid"]) if info.get("pid") else listening_pid(port))
            proc.adopt(pid)
            proc.info.update({k: str(v) for k, v in info.items()})
            if info.get("maxmemory_policy") != POLICY:
                log.warning(
                    "reusing Redis on %s (%s) configured with maxmemory=%s policy=%s, not %s/%s",
                    url, describe_pid(pid), info.get("maxmemory"), info.get("maxmemory_policy"),
                    MAXMEMORY, POLICY,
                )  # fmt: skip
            return proc
        raise ServiceError(f"port {port} is taken by {describe_pid(listening_pid(port))}, which does not answer PING")
    if rec is not None:
        log.warning("Redis %s is alive but not listening on %s: replacing it", describe_pid(rec.pid), port)
        terminate_pid(rec.pid, timeout=10)

    proc.owned = True
    proc.spawn()
    try:
        proc.wait_ready(timeout)
    except (ServiceError, TimeoutError):
        proc.terminate(5)
        raise
    return proc


def redis_status(root: Path, port: int = DEFAULT_PORT) -> dict[str, Any]:
    paths = StackPaths(root)
    rec = read_pid_file(paths.pid_file(NAME))
    live = rec is not None and rec.process() is not None
    url = f"redis://127.0.0.1:{port}/0"
    out: dict[str, Any] = {
        "service": NAME,
        "address": f"127.0.0.1:{port}",
        "url": url,
        "installed": redis_server_bin() is not None,
        "pid": rec.pid if live and rec else listening_pid(port),
        "started_by_stack": live,
        "healthy": False,
    }
    try:
        info = redis_ping(url) if port_open("127.0.0.1", port) else None
        if info:
            out.update(healthy=True, **{k: v for k, v in info.items() if k != "pid"})
    except Exception as exc:  # noqa: BLE001
        out["error"] = repr(exc)
    return out
