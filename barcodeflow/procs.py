"""Child processes of our own CLI (worker, sink, facade): started in their own process group with a
log file, stopped with SIGTERM then SIGKILL. Used by ``barcodeflow up``, the tests and the benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


class ChildProcess:
    def __init__(self, name: str, args: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.name = name
        self.args = list(args)
        self.env = dict(env)
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> ChildProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"===== {stamp} starting: barcodeflow {' '.join(self.args)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(  # noqa: S603 - our own entry point
                [sys.executable, "-m", "barcodeflow.cli", *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a render pool dies with its worker
            )
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def returncode(self) -> int | None:
        """The exit status once it has exited (negative: killed by that signal); None while running."""
        return self.popen.poll() if self.popen is not None else None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (the process and its pool children) and reap it."""
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
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
