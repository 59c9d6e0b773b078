"""Where the CPU of one facade request goes: 2-code cached batches, one client, one request after another.

Starts a worker, a sink and a facade on private topics (as ``python -m bench`` does), warms the cache with
the batch, then sends ``--requests`` requests ``--rounds`` times and prints, per round, the p50 latency and
the CPU milliseconds per request of each process (facade, bench client, worker with its pool, sink, the
Kafka broker, Redis) with each one's share of the total.

    .venv/bin/python -m bench.facade_cpu [--requests 300] [--rounds 3] [ENV=VALUE ...]

``ENV=VALUE`` arguments go to the facade's environment (e.g. ``RATE_LIMIT=...``).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import orjson
import psutil

from barcodeflow.settings import Settings
from bench.facade_load import _load, facade_env, wait_facade
from bench.machine import process_cpu_s, service_pids
from bench.procs import Pipeline, bench_settings, delete_topics, free_port
from bench.workloads import DataSource


def tree_cpu_s(p: psutil.Process) -> float:
    """CPU seconds of ``p`` and its live children (a worker's render processes)."""
    try:
        kids = p.children(recursive=True)
    except psutil.Error:
        kids = []
    return process_cpu_s(p) + sum(process_cpu_s(c) for c in kids)


async def run(requests: int, rounds: int, extra_env: dict[str, str]) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="bf-facade-cpu-"))
    settings = bench_settings(Settings.from_env(), workdir)
    pipe = Pipeline(settings, workdir)
    pipe.add("worker", "worker")
    pipe.add("sink", "sink")
    try:
        await pipe.wait_ready()
        port = free_port()
        pipe.add("facade", "facade", "--port", str(port), env={**facade_env(), **extra_env})
        base = f"http://127.0.0.1:{port}"
        await wait_facade(base, check=pipe.check_alive)
        source = DataSource()
        body = orjson.dumps(
            {
                "barcodes": [
                    {"barcode_type": "qr", "data": source.data("qr"), "format": "svg"},
                    {"barcode_type": "ean13", "data": source.data("ean13"), "format": "svg"},
                ]
            }
        )
        await _load(base, [[body] * 10], 30.0)  # the items are cached from here on
        procs = {name: psutil.Process(p.pid) for name, p in pipe.procs.items()}
        for pid in service_pids(settings):
            svc = psutil.Process(pid)
            procs["redis" if "redis" in " ".join(svc.cmdline()) else "kafka"] = svc
        me = psutil.Process()

        def cpu() -> dict[str, float]:
            out = {name: tree_cpu_s(p) for name, p in procs.items()}
            out["bench client"] = process_cpu_s(me)
            return out

        for r in range(rounds):
            before = cpu()
            result = await _load(base, [[body] * requests], 30.0, warmup=2)
            after = cpu()
            per = {k: 1000 * (after[k] - before[k]) / requests for k in before}
            total = sum(per.values())
            ranked = sorted(per.items(), key=lambda kv: -kv[1])
            shares = ", ".join(f"{k} {v:.2f} ({100 * v / total:.0f} %)" for k, v in ranked)
            lat = result.to_json()
            head = f"round {r + 1}: p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms"
            print(f"{head}; CPU ms per request {total:.2f}: {shares}")
    finally:
        pipe.stop()
        await delete_topics(settings)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.facade_cpu", description=__doc__)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("env", nargs="*", metavar="ENV=VALUE")
    args = p.parse_args(argv)
    extra = dict(a.split("=", 1) for a in args.env)
    asyncio.run(run(args.requests, args.rounds, extra))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
