"""The machine a run happened on, and how much of it other processes used while we measured."""

from __future__ import annotations

import os
import platform
import re
import time
from dataclasses import dataclass, field
from typing import Any

import psutil


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe(settings: Any) -> dict[str, Any]:
    try:
        from barcodeflow.stack import kafka_version

        kafka = kafka_version()
    except Exception as exc:  # noqa: BLE001 - a description, never a failure
        kafka = f"unknown ({type(exc).__name__})"
    return {
        "nproc": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kafka_version": kafka,
        "kafka": settings.kafka_bootstrap_servers,
        "redis": settings.redis_url,
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def process_cpu_s(p: psutil.Process) -> float:
    """User + system CPU seconds of ``p`` (0 once it is gone)."""
    try:
        t = p.cpu_times()
        return t.user + t.system
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0


def _busy(t: Any) -> float:
    return t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)


@dataclass
class CpuMeter:
    """CPU used during one section: ours (this process and its descendants), the services (Kafka,
    Redis: pids given), and everybody else (system busy time minus both)."""

    service_pids: list[int] = field(default_factory=list)
    _t0: float = 0.0
    _sys0: Any = None
    _ours0: dict[int, float] = field(default_factory=dict)
    _self0: float = 0.0
    _svc0: dict[int, float] = field(default_factory=dict)
    _load0: float = 0.0
    _names: dict[int, str] = field(default_factory=dict)

    def _ours(self) -> tuple[float, dict[int, float]]:
        me = psutil.Process()
        t = me.cpu_times()
        own = t.user + t.system + t.children_user + t.children_system  # reaped children included
        kids = {}
        for c in me.children(recursive=True):
            kids[c.pid] = process_cpu_s(c)
            if c.pid not in self._names:
                self._names[c.pid] = _role(c)
        return own, kids

    def start(self) -> CpuMeter:
        self._t0 = time.monotonic()
        self._sys0 = psutil.cpu_times()
        self._self0, self._ours0 = self._ours()
        self._svc0 = {pid: process_cpu_s(psutil.Process(pid)) for pid in self._alive(self.service_pids)}
        self._load0 = os.getloadavg()[0]
        return self

    @staticmethod
    def _alive(pids: list[int]) -> list[int]:
        return [p for p in pids if psutil.pid_exists(p)]

    def stop(self) -> dict[str, Any]:
        wall = time.monotonic() - self._t0
        sys1 = psutil.cpu_times()
        self1, ours1 = self._ours()
        ours = self1 - self._self0
        by_role: dict[str, float] = {"bench client": self1 - self._self0}
        for pid, cpu in ours1.items():
            d = cpu - self._ours0.get(pid, 0.0)
            ours += d
            role = self._names.get(pid, "other")
            by_role[role] = by_role.get(role, 0.0) + d
        svc = 0.0
        by_service: dict[str, float] = {}
        for pid in self._alive(list(self._svc0)):
            d = process_cpu_s(psutil.Process(pid)) - self._svc0[pid]
            svc += d
            name = _service_name(pid)
            by_service[name] = by_service.get(name, 0.0) + d
        busy = _busy(sys1) - _busy(self._sys0)
        cap = wall * (os.cpu_count() or 1)
        others = max(0.0, busy - ours - svc)
        by_role["kafka+redis"] = svc
        by_role["other processes"] = others
        return {
            "wall_s": round(wall, 2),
            "cpu_ours_pct": round(100 * ours / cap, 1) if cap else 0.0,
            "cpu_kafka_redis_pct": round(100 * svc / cap, 1) if cap else 0.0,
            "cpu_others_pct": round(100 * others / cap, 1) if cap else 0.0,
            "cpu_idle_pct": round(100 * max(0.0, cap - busy) / cap, 1) if cap else 0.0,
            "loadavg1": [round(self._load0, 2), round(os.getloadavg()[0], 2)],
            # CPU seconds per second of wall time (1.0 = one core busy), per process role
            "cores_by_role": {k: round(v / wall, 2) for k, v in sorted(by_role.items()) if wall and v > 0.005 * wall},
            # the "kafka+redis" role split by service
            "cores_by_service": {k: round(v / wall, 3) for k, v in sorted(by_service.items()) if wall},
        }


def _role(p: psutil.Process) -> str:
    try:
        cmd = " ".join(p.cmdline())
        parent = p.parent()
        pcmd = " ".join(parent.cmdline()) if parent else ""
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "other"
    for role in ("worker", "sink", "facade"):
        if re.search(rf"-m \S+ {role}\b", cmd):
            return role
        if "spawn_main" in cmd and re.search(rf"-m \S+ {role}\b", pcmd):
            return f"{role} pool"
    if "py-spy" in cmd:
        return "py-spy"
    return "other"


def _service_name(pid: int) -> str:
    try:
        cmd = " ".join(psutil.Process(pid).cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return "other"
    if "redis" in cmd:
        return "redis"
    if "kafka" in cmd.lower():
        return "kafka"
    return "other"


def service_pids(settings: Any) -> list[int]:
    """Pids of the processes listening on the Kafka and Redis ports (best effort)."""
    ports = set()
    for hp in [settings.kafka_bootstrap_servers.split(",")[0], settings.redis_url.split("//", 1)[-1].split("/")[0]]:
        try:
            ports.add(int(hp.rsplit(":", 1)[1]))
        except (IndexError, ValueError):
            pass
    pids = set()
    try:
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port in ports and c.pid:
                pids.add(c.pid)
    except (psutil.AccessDenied, OSError):
        pass
    return sorted(pids)
