"""Start and stop real barcodeflow processes (worker, sink) against the locally running Kafka/Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from barcodeflow.settings import Settings
from producer import BatchProducer, ResultListener


@dataclass
class Proc:
    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "barcodeflow.cli", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen is not None and self.popen.poll() is None:
            # the whole process group: a worker's render pool children die with it
            os.killpg(self.popen.pid, sig)
            self.popen.wait(timeout=30)

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class Pipeline:
    settings: Settings
    workdir: Path
    procs: dict[str, Proc] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.settings.as_env(), "PYTHONUNBUFFERED": "1"}

    def add(self, name: str, *args: str) -> Proc:
        proc = Proc(name, list(args), self.env(), self.workdir / f"{name}.log")
        self.procs[name] = proc
        proc.start()
        return proc

    def stop(self) -> None:
        for p in self.procs.values():
            p.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {n} ---\n{p.tail()}" for n, p in self.procs.items())

    async def submit(self, batch: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        listener = ResultListener(self.settings)
        await listener.start()
        try:
            async with BatchProducer(self.settings) as prod:
                return await prod.submit_and_wait(listener, batch, timeout)
        finally:
            await listener.stop()

    async def wait_ready(self, timeout: float = 120.0) -> None:
        """Ready = a probe batch makes the whole round trip (topics, group joins, render, sink)."""
        deadline = time.monotonic() + timeout
        probe = {"barcodes": [{"barcode_type": "qr", "data": f"probe-{time.time()}"}]}
        last: BaseException | None = None
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if not p.alive():
                    raise RuntimeError(f"{name} exited during start-up:\n{p.tail()}")
            try:
                await self.submit(probe, timeout=min(20.0, max(1.0, deadline - time.monotonic())))
                return
            except Exception as exc:  # noqa: BLE001 - retried until the deadline
                last = exc
                await asyncio.sleep(1)
        raise TimeoutError(f"pipeline not ready after {timeout}s ({last!r}):\n{self.logs()}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    """A private redis-server for tests that stop and start Redis under load."""

    port: int
    workdir: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.popen = subprocess.Popen(  # noqa: S603
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        import socket

        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"redis-server did not listen on {self.port}")

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)
