"""Part 1, the limit: the render core in-process, no Kafka, no Redis, on every core.

A ``ProcessPoolExecutor`` of ``os.cpu_count()`` spawn processes calls ``render.pool.render_specs``
on chunks of pre-normalised specs (normalisation happens in the parent, outside the clock, as the
worker's dispatch agent does it before a task reaches the pool). ``2 × processes`` chunks are kept in
flight so no process ever waits for work. Workloads are measured in interleaved rounds so that every
workload sees the same share of whatever else the machine is doing.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import psutil

from bench.workloads import WORKLOADS, DataSource, items, spec_dicts, take
from render.pool import _warm, render_specs


def _render_count(specs: list[dict[str, Any]]) -> tuple[int, int]:
    out = render_specs(specs)
    ok = sum(1 for o in out if o.success)
    return ok, len(out) - ok


@dataclass
class LimitResult:
    workload: str
    codes: int = 0
    failed: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0  # CPU time of the pool processes (render + IPC on their side)
    rounds: list[float] = field(default_factory=list)

    @property
    def codes_per_s(self) -> float:
        return self.codes / self.seconds if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "codes": self.codes,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
            "codes_per_s": round(self.codes_per_s, 1),
            "rounds_codes_per_s": [round(r, 1) for r in self.rounds],
            "pool_cpu_ms_per_code": round(1000 * self.cpu_s / self.codes, 4) if self.codes else 0.0,
        }


def _pool_cpu(pool: ProcessPoolExecutor) -> float:
    total = 0.0
    for proc in list(getattr(pool, "_processes", {}).values()):  # no public accessor for the pids
        try:
            t = psutil.Process(proc.pid).cpu_times()
            total += t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def _run_slice(pool: ProcessPoolExecutor, chunks: Any, seconds: float, inflight: int) -> tuple[int, int, float]:
    ok = failed = 0
    pending: set[Future[tuple[int, int]]] = set()
    start = time.perf_counter()
    deadline = start + seconds
    for _ in range(inflight):
        pending.add(pool.submit(_render_count, next(chunks)))
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for f in done:
            a, b = f.result()
            ok += a
            failed += b
            if time.perf_counter() < deadline:
                pending.add(pool.submit(_render_count, next(chunks)))
    return ok, failed, time.perf_counter() - start


def _chunks(workload: str, source: DataSource, chunk: int) -> Any:
    it = items(workload, source)
    while True:
        yield spec_dicts(take(it, chunk))


class RenderLimit:
    """The limit's process pool, open until ``close()``: part 1 measures every workload with it; part 2
    measures the mixed workload again right before and right after its all-miss phase, so that the ratio
    compares two figures taken under the same machine conditions (on a shared machine the speed of the
    same code moved by up to 40 % within a minute, BENCHMARKS.md)."""

    def __init__(self, processes: int | None = None, chunk_seconds: float = 0.04) -> None:
        self.processes = processes or os.cpu_count() or 1
        self.chunk_seconds = chunk_seconds
        self.source = DataSource()
        self.chunk_sizes: dict[str, int] = {}
        self._gens: dict[str, Any] = {}
        self._rates: dict[str, float] = {}
        self.pool = ProcessPoolExecutor(self.processes, mp_context=get_context("spawn"), initializer=_warm)

    def close(self) -> None:
        self.pool.shutdown()

    def calibrate(self, workloads: tuple[str, ...]) -> None:
        """Every process started and every encoder touched; one chunk of 20 per process and workload gives
        the per-process rate that sizes the chunks (5..100 items, ~``chunk_seconds`` each)."""
        for w in workloads:
            probe = _chunks(w, self.source, 20)
            t0 = time.perf_counter()
            list(self.pool.map(_render_count, [next(probe) for _ in range(self.processes)]))
            per_proc = 20 / max(1e-6, time.perf_counter() - t0)
            self.chunk_sizes[w] = max(5, min(100, round(per_proc * self.chunk_seconds)))
            self._gens[w] = _chunks(w, self.source, self.chunk_sizes[w])
            self._rates[w] = self.chunk_sizes[w] / self.chunk_seconds * self.processes

    def round(self, w: str, seconds: float, into: LimitResult) -> None:
        """One timed slice of workload ``w``, added to ``into``."""
        if w not in self.chunk_sizes:
            self.calibrate((w,))
        # spec preparation stays outside the clock: pre-build what the slice should consume
        # (1.5 x the last known rate; the generator takes over only if that was short)
        n_chunks = int(self._rates[w] * seconds * 1.5 / self.chunk_sizes[w]) + 4 * self.processes
        prepared = [next(self._gens[w]) for _ in range(n_chunks)]

        def feed() -> Any:
            yield from prepared
            while True:
                yield next(self._gens[w])

        cpu0 = _pool_cpu(self.pool)
        ok, failed, secs = _run_slice(self.pool, feed(), seconds, 2 * self.processes)
        into.cpu_s += _pool_cpu(self.pool) - cpu0
        into.codes += ok
        into.failed += failed
        into.seconds += secs
        into.rounds.append(ok / secs if secs else 0.0)
        self._rates[w] = into.rounds[-1] or self._rates[w]


def measure_limit(
    limit: RenderLimit,
    *,
    seconds_per_workload: float,
    rounds: int = 3,
    workloads: tuple[str, ...] = WORKLOADS,
    log: Any = print,
) -> dict[str, Any]:
    """codes/s per workload, in ``rounds`` interleaved rounds."""
    results = {w: LimitResult(w) for w in workloads}
    limit.calibrate(workloads)
    slice_s = seconds_per_workload / rounds
    for r in range(rounds):
        for w in workloads:
            limit.round(w, slice_s, results[w])
        log(f"limit: round {r + 1}/{rounds}: "
            + ", ".join(f"{w} {results[w].rounds[-1]:,.0f}/s" for w in workloads))  # fmt: skip
    out: dict[str, Any] = {
        "processes": limit.processes,
        "chunk_items": dict(limit.chunk_sizes),
        "seconds_per_workload": seconds_per_workload,
        "rounds": rounds,
        "spec_preparation": "normalize_item in the parent, outside the clock",
        "workloads": {w: r.to_json() for w, r in results.items()},
    }
    qr = results.get("qr")
    if qr and qr.codes_per_s:
        out["time_for_100_qr_ms"] = round(100 / qr.codes_per_s * 1000, 2)
    return out
