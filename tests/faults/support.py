"""Helpers of the fault scenarios: a private broker, a facade process, batches, logs, RSS."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from barcodeflow.stack import ManagedProcess, find_root, start_kafka
from barcodeflow.stack import stop as stop_service
from tests.support.pipeline import free_port

# --------------------------------------------------------------------------- private broker


class PrivateKafka:
    """A single-node KRaft broker of its own (free ports, own data dir under ``workdir``).

    It reuses the jars of the project's stack (``<project>/.stack/kafka/lib``, symlinked: nothing is
    downloaded again) and never touches the shared broker on 9092.
    """

    def __init__(self, workdir: Path) -> None:
        self.root = workdir / "kafka-root"
        self.port = free_port()
        self.controller_port = free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self.proc: ManagedProcess | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / ".stack" / "logs" / "kafka.log"

    def start(self, timeout: float = 120.0) -> PrivateKafka:
        lib = find_root(Path(__file__).parent) / ".stack" / "kafka" / "lib"
        if not lib.is_dir():
            raise RuntimeError(f"no Kafka jars in {lib}: run `python -m barcodeflow.stack install` first")
        kdir = self.root / ".stack" / "kafka"
        kdir.mkdir(parents=True, exist_ok=True)
        link = kdir / "lib"
        if not link.exists():
            link.symlink_to(lib, target_is_directory=True)
        self.proc = start_kafka(self.root, port=self.port, controller_port=self.controller_port, timeout=timeout)
        if self.proc.reused:  # a free port answering as Kafka would be a bug of free_port(); never adopt it
            raise RuntimeError(f"port {self.port} unexpectedly answered as Kafka")
        return self

    def kill(self) -> None:
        assert self.proc is not None  # noqa: S101
        self.proc.kill(signal.SIGKILL, wait=15)

    def restart(self, timeout: float = 120.0) -> None:
        assert self.proc is not None  # noqa: S101
        self.proc.restart(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(Exception):
                stop_service(self.proc, timeout=15, force=True)


# --------------------------------------------------------------------------- facade process


class FacadeProc:
    """``barcodeflow facade`` as a subprocess on a free port (own session, log file)."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.args = list(args)
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None  # noqa: S101
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self, timeout: float = 60.0) -> FacadeProc:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(  # noqa: S603
                [sys.executable, "-m", "barcodeflow.cli", "facade", "--port", str(self.port), *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"facade exited with {self.popen.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"facade did not answer /healthz:\n{self.tail()}")

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last: httpx.Response | None = None
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                last = httpx.get(self.url + "/readyz", timeout=5)
                if last.status_code == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"facade not ready: {last.text if last else None}\n{self.tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


# --------------------------------------------------------------------------- batches


def qr_batch(tag: str, n: int, size: int, *, fmt: str = "svg") -> dict[str, Any]:
    """``size`` QR items with unique data: every (batch_id, index) is unique, nothing is a cache hit."""
    return {
        "batch_id": f"{tag}-{n:05d}",
        "barcodes": [
            {"id": f"{n}-{i}", "barcode_type": "qr", "data": f"{tag}/{n}/{i}", "format": fmt} for i in range(size)
        ],
    }


def ean13_data(k: int) -> str:
    return f"{k % 10**12:012d}"


MIXED_KINDS = ("qr", "code128", "ean13", "datamatrix", "pdf417", "aztec", "code39", "micro_qr")


def mixed_batch(tag: str, n: int, size: int, *, with_errors: bool = True) -> dict[str, Any]:
    """Several symbologies, SVG and PNG, options, and (``with_errors``) one invalid item per batch."""
    items: list[dict[str, Any]] = []
    for i in range(size):
        kind = MIXED_KINDS[(n + i) % len(MIXED_KINDS)]
        fmt = "png" if (n + i) % 3 == 0 else "svg"
        data = {
            "qr": f"{tag}/{n}/{i}",
            "code128": f"{tag[:6]}-{n}-{i}",
            "ean13": ean13_data(n * 1000 + i),
            "datamatrix": f"DM {tag} {n} {i}",
            "pdf417": f"PDF {tag} {n} {i}",
            "aztec": f"AZ {tag} {n} {i}",
            "code39": f"C39-{n}-{i}",
            "micro_qr": f"{n % 100}{i % 100}",
        }[kind]
        item: dict[str, Any] = {"id": f"{n}-{i}", "barcode_type": kind, "data": data, "format": fmt}
        if i % 4 == 1:
            item["options"] = {"margin": 2, "foreground": "#003366"}
        items.append(item)
    if with_errors and size >= 3:
        items[-1] = {"id": f"{n}-{size - 1}", "barcode_type": "ean13", "data": "4006381333932"}  # wrong check digit
    return {"batch_id": f"{tag}-{n:05d}", "barcodes": items}


# --------------------------------------------------------------------------- logs and processes

CRASH = re.compile(r"Traceback|crashed|Crashed|CRITICAL|Restarting (dead|crashed)|Agent .* stopped|Segmentation")


class LogWatch:
    """Lines a log file gained since ``mark()`` (e.g. a worker's log during one scenario)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def new_text(self) -> str:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def crash_lines(self) -> list[str]:
        return [ln for ln in self.new_text().splitlines() if CRASH.search(ln)]


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and all its descendants, in MiB."""
    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0
    for q in procs:
        with contextlib.suppress(psutil.Error):
            total += q.memory_info().rss
    return total / (1024 * 1024)


@dataclass
class RssSampler:
    """Samples the peak tree RSS of a few processes in a background thread."""

    pids: dict[str, int]
    interval: float = 0.05
    peak: dict[str, float] = field(default_factory=dict)
    _stop: bool = False

    def __post_init__(self) -> None:
        import threading

        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop:
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak.get(name, 0.0), tree_rss_mb(pid))
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join(timeout=5)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def keep_logs(src: Path, name: str) -> Path:
    """Copy the ``*.log`` files of a failed scenario to ``<project>/.stack/faults/logs/<name>-<time>/``
    (pytest deletes old tmp dirs; the evidence of an intermittent failure must survive)."""
    import shutil

    dest = find_root(Path(__file__).parent) / ".stack" / "faults" / "logs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.rglob("*.log"):
        with contextlib.suppress(OSError):
            shutil.copy2(f, dest / f"{f.parent.name}-{f.name}" if f.parent != src else dest / f.name)
    return dest
