"""The render pool's cost to its caller, against a ``ProcessPoolExecutor`` doing the same, in one process.

Both run ``render.pool.render_specs`` on the same tasks (``--items`` unique mixed items each, the worker's
task size) in 2 spawned processes with ``--inflight`` calls outstanding, in interleaved rounds. Printed
per task: the calling process's CPU (its event loop and, for the executor, its manager and queue feeder
threads: what the worker's main process pays per render task) and the wall time, and the ratio of the
caller's CPU. The render processes' own CPU is the same in both and not counted.

    .venv/bin/python -m bench.pool_ipc [--tasks 400] [--items 25] [--inflight 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from bench import workloads
from render.pool import RenderPool, render_specs

Call = Callable[[list[dict[str, Any]]], Awaitable[Any]]


async def drive(call: Call, tasks: list[list[dict[str, Any]]], inflight: int) -> tuple[float, float]:
    """Caller CPU seconds and wall seconds to run every task with ``inflight`` outstanding."""
    sem = asyncio.Semaphore(inflight)

    async def one(task: list[dict[str, Any]]) -> None:
        async with sem:
            await call(task)

    c0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(t) for t in tasks))
    return time.process_time() - c0, time.perf_counter() - t0


async def main(args: argparse.Namespace) -> None:
    items = workloads.items("mixed", workloads.DataSource())
    tasks = [workloads.spec_dicts(workloads.take(items, args.items)) for _ in range(args.tasks)]
    loop = asyncio.get_running_loop()
    executor = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    pool = RenderPool(2)

    async def via_executor(task: list[dict[str, Any]]) -> Any:
        return await loop.run_in_executor(executor, render_specs, task)

    calls: dict[str, Call] = {"ProcessPoolExecutor": via_executor, "RenderPool": pool.run}
    try:
        for call in calls.values():  # spawn and warm both before timing
            await drive(call, tasks[:20], args.inflight)
        cpu: dict[str, list[float]] = {name: [] for name in calls}
        print(f"{args.tasks} tasks of {args.items} mixed items, {args.inflight} in flight, 2 render processes")
        for rnd in range(1, args.rounds + 1):
            for name, call in calls.items():
                caller_s, wall_s = await drive(call, tasks, args.inflight)
                cpu[name].append(caller_s / args.tasks)
                print(f"  round {rnd}  {name:20s} caller CPU {1000 * caller_s / args.tasks:6.3f} ms/task"
                      f"  wall {1000 * wall_s / args.tasks:6.3f} ms/task")  # fmt: skip
        base, ours = min(cpu["ProcessPoolExecutor"]), min(cpu["RenderPool"])
        per_item = f"{1000 * base / args.items:.4f} -> {1000 * ours / args.items:.4f} ms"
        print(f"best of {args.rounds}: caller CPU per task {1000 * base:.3f} -> {1000 * ours:.3f} ms "
              f"({ours / base:.2f} x); per item {per_item}")  # fmt: skip
    finally:
        executor.shutdown()
        pool.stop()


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=400)
    p.add_argument("--items", type=int, default=25, help="items per task (the worker: 100 / 4 tasks)")
    p.add_argument("--inflight", type=int, default=4, help="calls outstanding (the worker: 4 actors)")
    p.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(p.parse_args()))


if __name__ == "__main__":
    cli()
