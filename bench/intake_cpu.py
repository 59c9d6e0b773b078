"""What the worker's intake spends on a 100-item request before any render, against the render itself.

For batches of the bench's *mixed* workload (unique items, 3 in 4 SVG): ``parse_batch`` (decode, depth
check, pydantic validation), ``plan_batch`` (every item normalised and keyed, tasks split), and, as the
baseline in the same process, ``render.pool.render_specs`` of the same items. Printed: ms per batch for
each (best of ``--rounds``) and each step's share of the render's time.

    .venv/bin/python -m bench.intake_cpu [--batches 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import orjson

from bench.workloads import DataSource, items, spec_dicts, take
from render.batch import plan_batch
from render.pool import render_specs
from schemas.validate import parse_batch


def best_ms(fn: Callable[[Any], object], inputs: list[Any], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for x in inputs:
            fn(x)
        best = min(best, (time.perf_counter() - t0) * 1000 / len(inputs))
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.intake_cpu", description=__doc__)
    p.add_argument("--batches", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    source = DataSource(7)
    docs = [{"batch_id": f"b{i}", "barcodes": take(items("mixed", source), 100)} for i in range(args.batches)]
    raws = [orjson.dumps(d) for d in docs]
    reqs = [parse_batch(r) for r in raws]
    specs = [spec_dicts(d["barcodes"]) for d in docs[: max(1, args.batches // 10)]]

    def plan(req: Any) -> object:
        return plan_batch(req, run="0:0", received_at_ms=0, timeout_s=30, max_tasks=4)

    render_ms = best_ms(render_specs, specs, max(1, args.rounds // 2))
    rows = [("parse_batch", best_ms(parse_batch, raws, args.rounds)), ("plan_batch", best_ms(plan, reqs, args.rounds))]
    print(f"render of the same 100 items (baseline): {render_ms:8.3f} ms per batch")
    for name, ms in rows:
        print(f"{name:40s} {ms:8.3f} ms per batch  ({100 * ms / render_ms:4.1f} % of the render)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
