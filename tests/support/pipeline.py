"""Start and stop real barcodeflow processes (worker, sink) against the locally running Kafka/Redis."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from barcodeflow.commands.up import child_env
from barcodeflow.procs import ChildProcess
from barcodeflow.settings import Settings
from producer import BatchProducer, ResultListener


@dataclass
class Pipeline:
    settings: Settings
    workdir: Path
    procs: dict[str, ChildProcess] = field(default_factory=dict)
    static_members: bool = False
    """Give each worker and sink a GROUP_INSTANCE_ID from its name, as ``barcodeflow up`` does: a process
    started again under the same name takes its partitions back without a rebalance."""

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.settings.as_env(), "PYTHONUNBUFFERED": "1"}

    def add(self, name: str, *args: str) -> ChildProcess:
        env = child_env(self.env(), self.settings, name, args[0]) if self.static_members and args else self.env()
        proc = ChildProcess(name, args, env, self.workdir / f"{name}.log").start()
        self.procs[name] = proc
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
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir)]
        args += ["--save", "", "--appendonly", "no", "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"]
        self.popen = subprocess.Popen(  # noqa: S603
            args,
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
