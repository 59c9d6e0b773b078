"""The pipeline under test: worker, sink (and facade) subprocesses on private topics, started and
stopped by the harness; RSS of a process and its children."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from barcodeflow.settings import Settings, Topics


def bench_settings(base: Settings, workdir: Path) -> Settings:
    """Private topics and consumer groups for this run (unique TOPIC_PREFIX and app id)."""
    run = uuid.uuid4().hex[:8]
    prefix = f"bench{run}."
    return base.with_(
        topic_prefix=prefix,
        topics=Topics.with_prefix(prefix),
        app_id=f"bf-bench-{run}",
        data_dir=str(workdir / "faust"),
        # throughput phases keep many batches in flight: no item may turn into a deadline timeout
        batch_timeout_s=max(base.batch_timeout_s, 120.0),
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    args: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(  # noqa: S603 - our own entry point
                # BENCH_CHILD_MODULE: run the children through a wrapper module instead (experiments that
                # patch a setting before trying it in the project, see BENCHMARKS.md)
                [sys.executable, "-m", os.environ.get("BENCH_CHILD_MODULE", "barcodeflow.cli"), *self.args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)  # the group: a worker's render pool goes with it
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)
        except ProcessLookupError:
            pass

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class Pipeline:
    settings: Settings
    workdir: Path
    procs: dict[str, Proc] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **self.settings.as_env(), "PYTHONUNBUFFERED": "1", **extra}

    def add(self, name: str, *args: str, env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, list(args), self.env(**(env or {})), self.workdir / f"{name}.log")
        self.procs[name] = proc
        proc.start()
        return proc

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if not p.alive():
                raise RuntimeError(f"{name} exited (code {p.popen.returncode if p.popen else '?'}):\n{p.tail()}")

    def stop(self) -> None:
        for p in reversed(list(self.procs.values())):
            p.stop()

    async def wait_ready(self, timeout: float = 180.0) -> float:
        """A probe batch makes the whole round trip (topics, group joins, render, sink); returns seconds."""
        from producer import BatchProducer, ResultListener

        t0 = time.monotonic()
        deadline = t0 + timeout
        last: BaseException | None = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                listener = ResultListener(self.settings)
                await listener.start()
                try:
                    async with BatchProducer(self.settings) as prod:
                        probe = {"barcodes": [{"barcode_type": "qr", "data": f"bench-probe-{uuid.uuid4()}"}]}
                        doc = await prod.submit_and_wait(
                            listener, probe, min(20.0, max(1.0, deadline - time.monotonic()))
                        )
                    if not doc.get("success"):  # a pipeline that answers with failures is not ready
                        raise RuntimeError(f"probe batch failed: {str(doc.get('results') or doc)[:300]}")
                    return time.monotonic() - t0
                finally:
                    await listener.stop()
            except Exception as exc:  # noqa: BLE001 - retried until the deadline
                last = exc
                await asyncio.sleep(1)
        raise TimeoutError(f"pipeline not ready after {timeout:.0f} s ({last!r})")


def rss(pid: int) -> dict[str, Any]:
    """RSS (MB) of ``pid`` and of each of its descendants, plus their sum."""
    p = psutil.Process(pid)
    main = p.memory_info().rss
    children = []
    for c in p.children(recursive=True):
        try:
            cmd = " ".join(c.cmdline())
            kind = ("resource_tracker" if "resource_tracker" in cmd
                    else "render_pool" if "multiprocessing" in cmd else c.name())  # fmt: skip
            children.append({"pid": c.pid, "kind": kind, "rss_mb": round(c.memory_info().rss / 2**20, 1)})
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    total = main / 2**20 + sum(c["rss_mb"] for c in children)
    return {
        "main_mb": round(main / 2**20, 1),
        "children": children,
        "render_pool_mb": round(sum(c["rss_mb"] for c in children if c["kind"] == "render_pool"), 1),
        "total_mb": round(total, 1),
    }


async def delete_topics(settings: Settings) -> list[str]:
    """Remove this run's topics (ours and the Faust apps' internal ones)."""
    from stream_app.topics import delete_prefixed

    return await delete_prefixed(settings.kafka_bootstrap_servers, (settings.topic_prefix, f"{settings.app_id}-"))


async def topic_message_counts(settings: Settings) -> dict[str, int]:
    """Messages written to each of this run's topics (sum of end offsets; the topics are private)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=10_000)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics()
                 if t.startswith(settings.topic_prefix) or t.startswith(settings.app_id + "-")]  # fmt: skip
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        out: dict[str, int] = {}
        for name in sorted(names):
            parts = consumer.partitions_for_topic(name)
            if not parts:
                await consumer._client.force_metadata_update()  # noqa: SLF001
                parts = consumer.partitions_for_topic(name) or set()
            tps = [TopicPartition(name, p) for p in parts]
            ends = await consumer.end_offsets(tps) if tps else {}
            out[name] = int(sum(ends.values()))
        return out
    finally:
        await consumer.stop()
