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


def measure_limit(
    *,
    seconds_per_workload: float,
    rounds: int = 3,
    chunk_seconds: float = 0.04,
    processes: int | None = None,
    workloads: tuple[str, ...] = WORKLOADS,
    log: Any = print,
) -> dict[str, Any]:
    """codes/s per workload; chunks are sized to take ~``chunk_seconds`` each (5..100 items), so the
    pool's IPC is amortised and the tail after each slice's deadline stays short."""
    processes = processes or os.cpu_count() or 1
    source = DataSource()
    results = {w: LimitResult(w) for w in workloads}
    chunk_sizes: dict[str, int] = {}
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn"), initializer=_warm) as pool:
        # warm-up and calibration: every process started and every encoder touched; one chunk of 20
        # per process and workload gives the per-process rate that sizes the chunks
        for w in workloads:
            probe = _chunks(w, source, 20)
            t0 = time.perf_counter()
            list(pool.map(_render_count, [next(probe) for _ in range(processes)]))
            per_proc = 20 / max(1e-6, time.perf_counter() - t0)
            chunk_sizes[w] = max(5, min(100, round(per_proc * chunk_seconds)))
        gens = {w: _chunks(w, source, chunk_sizes[w]) for w in workloads}
        slice_s = seconds_per_workload / rounds
        for r in range(rounds):
            for w in workloads:
                # spec preparation stays outside the clock: pre-build what the slice should consume
                # (first round: from the calibration; then 1.5 x the previous round's rate)
                prev = results[w].rounds[-1] if results[w].rounds else chunk_sizes[w] / chunk_seconds * processes
                n_chunks = int(prev * slice_s * 1.5 / chunk_sizes[w]) + 4 * processes
                prepared = [next(gens[w]) for _ in range(n_chunks)]

                def feed(prepared: list[Any] = prepared, w: str = w) -> Any:
                    yield from prepared
                    while True:  # only if the estimate was short
                        yield next(gens[w])

                cpu0 = _pool_cpu(pool)
                ok, failed, secs = _run_slice(pool, feed(), slice_s, 2 * processes)
                res = results[w]
                res.cpu_s += _pool_cpu(pool) - cpu0
                res.codes += ok
                res.failed += failed
                res.seconds += secs
                res.rounds.append(ok / secs if secs else 0.0)
            log(f"limit: round {r + 1}/{rounds}: "
                + ", ".join(f"{w} {results[w].rounds[-1]:,.0f}/s" for w in workloads))  # fmt: skip
    out: dict[str, Any] = {
        "processes": processes,
        "chunk_items": chunk_sizes,
        "seconds_per_workload": seconds_per_workload,
        "rounds": rounds,
        "spec_preparation": "normalize_item in the parent, outside the clock",
        "workloads": {w: r.to_json() for w, r in results.items()},
    }
    qr = results.get("qr")
    if qr and qr.codes_per_s:
        out["time_for_100_qr_ms"] = round(100 / qr.codes_per_s * 1000, 2)
    return out
