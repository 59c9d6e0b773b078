"""Run ``barcodeflow facade`` as a real uvicorn subprocess (CLI, proxy handling, replicas)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from barcodeflow.procs import ChildProcess
from tests.support.pipeline import free_port

__all__ = ["FacadeProcess", "free_port"]


class FacadeProcess(ChildProcess):
    def __init__(self, env: dict[str, str], log_path: Path, *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            "facade",
            ["facade", "--port", str(self.port), *args],
            {**os.environ, **env, "PYTHONUNBUFFERED": "1"},
            log_path,
        )

    def start(self, timeout: float = 30.0) -> FacadeProcess:
        super().start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.popen.returncode if self.popen else None
                raise RuntimeError(f"facade exited with {code}:\n{self.tail()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"facade on port {self.port} did not answer /healthz:\n{self.tail()}")

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = httpx.get(self.url + "/readyz", timeout=5)
            if last.status_code == 200:
                return
            time.sleep(0.2)
        raise TimeoutError(f"facade not ready: {last.text if last else None}\n{self.tail()}")

    def __enter__(self) -> FacadeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
