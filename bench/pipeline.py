"""The barcodeflow benchmark: the render core's limit and the pipeline against it, in one run.

    .venv/bin/python -m bench                 # full run (~3 min on 2 cores)
    .venv/bin/python -m bench --smoke         # tiny counts, < 60 s (CI: tests/bench/test_bench_smoke.py)
    .venv/bin/python -m bench --skip-facade   # parts 1, 2 and 4 only
    .venv/bin/python -m bench --update-md     # also rewrite the figures block of BENCHMARKS.md

Needs Kafka and Redis (``python -m barcodeflow.stack start``). Starts its own worker, sink and facade
processes on private topics (``TOPIC_PREFIX=bench<run>.``, app id ``bf-bench-<run>``), stops them and
deletes those topics at the end. Results: a table on stdout, JSON in ``bench/results/latest.json``.

1. limit: ``render.pool.render_specs`` on a process pool of ``os.cpu_count()`` processes, no
   Kafka/Redis, for qr, ean13, code128, datamatrix and mixed (see ``bench.workloads``).
2. end to end: BatchProducer -> barcode.requests -> worker -> sink -> barcode.results -> ResultListener,
   batches of 100 mixed codes with ``--inflight`` outstanding: all unique (every item a cache miss),
   then a hot set is rendered once (cache warm-up) and batches drawn from it (every item a hit).
3. facade: POST /v1/batches, 2-code cached and 100-QR uncached, at 1 and 16 clients.
4. memory: worker RSS (main process, render pool children) after warm-up and after
   ``--memory-codes`` codes have gone through the worker (phase 2 plus more unique batches).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from barcodeflow.settings import Settings
from bench import report
from bench.limit import LimitResult, RenderLimit, measure_limit
from bench.machine import CpuMeter, describe, service_pids
from bench.workloads import PNG_SHARE, TYPES, DataSource, items, take

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_JSON = ROOT / "bench" / "results" / "latest.json"

FULL: dict[str, Any] = {
    "limit_seconds": 6.0,
    "limit_rounds": 3,
    "inflight": 32,
    "miss_batches": 200,
    "hot_items": 5_000,
    "hit_batches": 300,
    "memory_codes": 100_000,
    "anatomy_batches": 50,
    "broker_warmup_batches": 10_000,
    "facade_warmup": 3_000,
    "facade_cached": {1: 300, 16: 25},
    "facade_qr": {1: 20, 16: 3},
}
SMOKE: dict[str, Any] = {
    "limit_seconds": 0.3,
    "limit_rounds": 1,
    "inflight": 4,
    "miss_batches": 4,
    "hot_items": 200,
    "hit_batches": 4,
    "memory_codes": 1_000,
    "anatomy_batches": 5,
    "broker_warmup_batches": 10,
    "facade_warmup": 20,
    "facade_cached": {1: 10, 16: 2},
    "facade_qr": {1: 2, 16: 1},
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--smoke", action="store_true", help="tiny counts (< 60 s): checks the harness works")
    p.add_argument("--skip-facade", action="store_true", help="do not start the facade (no part 3)")
    p.add_argument("--json", type=Path, default=None, help=f"where to write the results (default {DEFAULT_JSON})")
    p.add_argument("--update-md", action="store_true", help="rewrite the figures block of BENCHMARKS.md")
    p.add_argument("--inflight", type=int, default=None, help="batches in flight in part 2 (default 32)")
    p.add_argument("--memory-codes", type=int, default=None, help="codes through the worker for part 4")
    p.add_argument("--batches", type=int, default=None, help="batches in each of the all-miss and all-hit phases")
    p.add_argument("--limit-seconds", type=float, default=None, help="part 1's run time per workload")
    p.add_argument("--profile-phase", choices=("all_miss", "all_hit", "facade"), default="all_miss",
                   help="where --profile starts: an e2e phase (worker and sink are recorded) or the facade "
                        "measurements (worker, sink and facade); default all_miss")  # fmt: skip
    p.add_argument("--keep-topics", action="store_true", help="do not delete this run's topics at the end")
    p.add_argument("--profile", type=float, default=0.0, metavar="SECONDS",
                   help="py-spy record worker (with its pool) and sink for this long from the start of "
                        "--profile-phase, into <logs>/profile-*.txt (needs py-spy; samples holding the GIL "
                        "only: Python's CPU, not a wait for a core)")  # fmt: skip
    return p.parse_args(argv)


async def run_pipeline_parts(
    settings: Settings,
    cfg: dict[str, Any],
    args: argparse.Namespace,
    workdir: Path,
    doc: dict[str, Any],
    svc: list[int],
    limit: RenderLimit,
) -> None:
    from bench.e2e import Driver, repeated_batches, unique_batches
    from bench.procs import Pipeline, delete_topics, free_port, rss, topic_message_counts
    from stream_app.topics import ensure_topics

    await ensure_topics(settings)
    pipe = Pipeline(settings, workdir)
    e2e: dict[str, Any] = {"batch_size": 100, "inflight": cfg["inflight"], "workload": "mixed",
                           "render_concurrency": settings.render_concurrency,
                           "topic_partitions": settings.topic_partitions, "compression": settings.compression,
                           "cache_max_size": settings.cache_max_size, "hot_items": cfg["hot_items"]}  # fmt: skip
    doc["e2e"] = e2e
    driver: Driver | None = None
    profile = None
    try:
        worker = pipe.add("worker", "worker")
        pipe.add("sink", "sink")
        log(f"pipeline: worker pid {worker.pid}, sink pid {pipe.procs['sink'].pid}, topics {settings.topic_prefix}*")
        e2e["startup_s"] = round(await pipe.wait_ready(), 2)
        memory: dict[str, Any] = {"at_ready": rss(worker.pid)}
        doc["memory"] = memory
        driver = Driver(settings)
        await driver.start()
        source = DataSource()
        rng = random.Random(7)

        # warm-up: both pool processes busy, every code path taken once; then the memory baseline
        await driver.run("warmup", unique_batches(driver, source, "mixed", max(4, cfg["inflight"] // 4)),
                         cfg["inflight"])  # fmt: skip
        small = [
            {"barcode_type": "qr", "data": source.data("qr"), "format": "svg"},
            {"barcode_type": "ean13", "data": source.data("ean13"), "format": "svg"},
        ]
        e2e["broker_warmup"] = await warm_broker(driver, svc, small, cfg["broker_warmup_batches"], cfg["inflight"])
        await asyncio.sleep(1.0)
        memory["baseline"] = rss(worker.pid)
        memory["sink_baseline"] = rss(pipe.procs["sink"].pid)
        codes_since_baseline = 0

        async def phase(name: str, batches: list[Any]) -> dict[str, Any]:
            nonlocal codes_since_baseline
            pipe.check_alive()
            before = await topic_message_counts(settings)
            meter = CpuMeter(svc).start()
            res = await driver.run(name, batches, cfg["inflight"])
            cpu = doc["cpu"][f"e2e_{name}"] = meter.stop()
            if res.errors:
                raise RuntimeError(f"{name}: {len(res.errors)} batches failed, e.g. {res.errors[0]}")
            if res.failed:
                log(f"warning: {name}: {res.failed} items failed to render")
            if name == "all_hit" and res.cached < res.codes:
                log(f"warning: all_hit: {res.codes - res.cached} items were not cache hits (Redis timeouts?)")
            after = await topic_message_counts(settings)
            res.messages = {t.removeprefix(settings.topic_prefix): after[t] - before.get(t, 0) for t in after
                            if after[t] - before.get(t, 0)}  # fmt: skip
            codes_since_baseline += res.codes
            out = res.to_json()
            out["cpu_ms_per_code"] = cpu_per_code(cpu, res.codes)
            e2e[name] = out
            log(f"e2e {name}: {out['codes']:,} codes in {out['seconds']:.1f} s = {out['codes_per_s']:,.0f}/s, "
                f"p50 {out['latency_ms']['p50']:.0f} ms, p95 {out['latency_ms']['p95']:.0f} ms, "
                f"cached {out['cached_share']:.0%}, {len(res.errors)} errors")  # fmt: skip
            return out

        soaked = 0

        async def soak(target: int) -> None:
            """Unique batches, untimed, until ``target`` codes went through the worker since the baseline."""
            nonlocal codes_since_baseline, soaked
            while codes_since_baseline < target:
                n = min(100, max(1, (target - codes_since_baseline + 99) // 100))
                res = await driver.run("soak", unique_batches(driver, source, "mixed", n), cfg["inflight"])
                if not res.codes:
                    raise RuntimeError(f"memory soak made no progress: {res.errors[:3]}")
                codes_since_baseline += res.codes
                soaked += res.codes
                log(f"memory soak: {codes_since_baseline:,}/{cfg['memory_codes']:,} codes through the worker")

        # part 4's soak runs first: what part 2 measures is then a pipeline (and a broker: a JVM compiles its
        # hot paths over its first thousand or so batches) in its steady state, not one seconds after start
        measured = 2 * (cfg["anatomy_batches"] + 1) + 100 * (cfg["anatomy_batches"] // 2)
        measured += 100 * (cfg["miss_batches"] + cfg["hit_batches"]) + cfg["hot_items"]
        meter, before_soak = CpuMeter(svc).start(), soaked
        await soak(cfg["memory_codes"] - measured)
        cpu = doc["cpu"]["e2e_soak"] = meter.stop()
        if n := soaked - before_soak:  # for comparison with all_miss: the same work on a colder pipeline
            e2e["soak_before"] = {"codes": n, "cpu_ms_per_code": cpu_per_code(cpu, n)}

        # latency anatomy of a small cached batch, one at a time (hop by hop from record timestamps)
        from bench.anatomy import hop_latency

        anatomy = await hop_latency(driver, settings, lambda: small, cfg["anatomy_batches"], warm_first=True)
        e2e["anatomy_2_code_cached"] = anatomy
        log(f"anatomy, 2-code cached, 1 at a time (median ms): {anatomy['median_ms']}")
        qr_items = items("qr", source)
        anatomy = await hop_latency(driver, settings, lambda: take(qr_items, 100), cfg["anatomy_batches"] // 2,
                                    warm_first=False)  # fmt: skip
        e2e["anatomy_100_qr_uncached"] = anatomy
        codes_since_baseline += 2 * (cfg["anatomy_batches"] + 1) + 100 * (cfg["anatomy_batches"] // 2)
        log(f"anatomy, 100-QR uncached, 1 at a time (median ms): {anatomy['median_ms']}")

        def maybe_profile(name: str) -> None:
            nonlocal profile
            if args.profile and args.profile_phase == name:
                profile = [start_py_spy(r, pipe.procs[r].pid, args.profile, workdir) for r in ("worker", "sink")]

        async def limit_around(workload: str, part: Awaitable[Any]) -> tuple[LimitResult, dict[str, Any], Any]:
            """One round of the limit (part 1's pool) right before and one right after ``part`` (a coroutine;
            its result is returned last), so that a target compares figures taken under the same conditions
            of the machine."""
            around, idle = LimitResult(workload), []

            async def one_round() -> None:
                meter = CpuMeter(svc).start()
                await asyncio.to_thread(limit.round, workload, cfg["limit_seconds"] / cfg["limit_rounds"], around)
                roles = meter.stop()["cores_by_role"]  # the idle pipeline meanwhile (its consumers poll)
                idle.append(sum(roles.get(r, 0.0) for r in ("worker", "worker pool", "sink", "kafka+redis")))

            await one_round()
            result = await part
            await one_round()
            return around, {**around.to_json(), "idle_pipeline_cores": round(sum(idle) / len(idle), 3)}, result

        async def all_miss(batches: list[Any]) -> dict[str, Any]:
            maybe_profile("all_miss")
            return await phase("all_miss", batches)

        # (a) all unique: every item a miss, with the limit (mixed) measured around it
        miss = unique_batches(driver, source, "mixed", cfg["miss_batches"])
        around, e2e["limit_around_all_miss"], _ = await limit_around("mixed", all_miss(miss))
        # (b) a hot set rendered once, then batches drawn from it: every item a hit
        hot = take(items("mixed", source), cfg["hot_items"])
        await phase("cache_warmup", [driver.prepare(hot[i : i + 100]) for i in range(0, len(hot), 100)])
        hit = repeated_batches(driver, hot, cfg["hit_batches"], rng)
        maybe_profile("all_hit")
        await phase("all_hit", hit)
        part1 = doc.get("limit", {}).get("workloads", {}).get("mixed", {}).get("codes_per_s")
        if part1:
            e2e["ratio_to_part1_limit_mixed"] = round(e2e["all_miss"]["codes_per_s"] / part1, 3)
        if lim := around.codes_per_s:
            e2e["ratio_to_limit_mixed"] = round(e2e["all_miss"]["codes_per_s"] / lim, 3)
            e2e["hit_ratio_to_limit_mixed"] = round(e2e["all_hit"]["codes_per_s"] / lim, 3)
        lim_cpu = doc.get("limit", {}).get("workloads", {}).get("mixed", {}).get("pool_cpu_ms_per_code")
        miss_cpu = e2e["all_miss"].get("cpu_ms_per_code", {}).get("pipeline+kafka+redis")
        if lim_cpu and miss_cpu:
            # load-independent view: render CPU per code over the whole pipeline's CPU per code
            e2e["cpu_efficiency_mixed"] = round(lim_cpu / miss_cpu, 3)
            e2e["projected_idle_codes_per_s"] = round((os.cpu_count() or 1) * 1000 / miss_cpu, 1)

        # part 4: the codes the soak did not cover (runs with small counts) go through now
        await soak(cfg["memory_codes"])
        await asyncio.sleep(1.0)
        memory["after"] = rss(worker.pid)
        memory["sink_after"] = rss(pipe.procs["sink"].pid)  # informational: no target
        memory["codes"] = codes_since_baseline
        memory["soak_codes"] = soaked
        memory["growth_mb"] = {
            k: round(memory["after"][f"{k}_mb"] - memory["baseline"][f"{k}_mb"], 1)
            for k in ("main", "render_pool", "total")
        }
        log(f"memory: worker total RSS {memory['baseline']['total_mb']} -> {memory['after']['total_mb']} MB "
            f"over {codes_since_baseline:,} codes")  # fmt: skip
        if profile:
            doc["profile"] = [finish_py_spy(h) for h in profile if h is not None]

        # part 3: the facade against the same pipeline
        if args.skip_facade:
            doc["facade"] = {"skipped": True, "reason": "--skip-facade"}
        else:
            # the 100-QR target's limit, measured around this part (as for all_miss)
            facade = run_facade(pipe, cfg, svc, doc, free_port(), args, workdir)
            qr_around, qr_doc, doc["facade"] = await limit_around("qr", facade)
            if qr_around.codes_per_s and not doc["facade"].get("skipped"):
                doc["facade"]["limit_qr_around"] = {
                    **qr_doc,
                    "time_for_100_qr_ms": round(100 / qr_around.codes_per_s * 1000, 2),
                    "rounds_time_for_100_qr_ms": [round(100 / r * 1000, 2) for r in qr_around.rounds if r],
                }
    finally:
        if driver is not None:
            await driver.stop()
        pipe.stop()
        if not args.keep_topics:
            try:
                await delete_topics(settings)
            except Exception as exc:  # noqa: BLE001 - cleanup only
                log(f"could not delete the run's topics: {exc!r}")


async def run_facade(
    pipe: Any, cfg: dict[str, Any], svc: list[int], doc: dict[str, Any], port: int, args: Any, workdir: Path
) -> dict[str, Any]:
    from bench.facade_load import facade_env, local_results_mb, measure_facade, wait_facade
    from bench.procs import rss

    proc = pipe.add("facade", "facade", "--port", str(port), env=facade_env())
    base = f"http://127.0.0.1:{port}"
    try:
        ready = await wait_facade(base, check=pipe.check_alive)
    except Exception as exc:  # noqa: BLE001 - part 3 is reported as failed, parts 1, 2 and 4 stand
        log(f"facade did not start: {exc}\n{proc.tail()}")
        proc.stop()
        return {"skipped": True, "reason": f"facade did not start: {str(exc)[:300]}", "log_tail": proc.tail(15)}
    log(f"facade: ready on {base} in {ready:.1f} s")
    profile = None
    if args.profile and args.profile_phase == "facade":
        profile = [start_py_spy(r, pipe.procs[r].pid, args.profile, workdir) for r in ("worker", "sink", "facade")]
    meter = CpuMeter(svc).start()
    memory: dict[str, Any] = {"at_ready_mb": rss(proc.pid)["main_mb"]}
    try:
        out = await measure_facade(base, cached_requests=cfg["facade_cached"], qr_requests=cfg["facade_qr"],
                                   warmup_requests=cfg["facade_warmup"], log=log,
                                   on_warm=lambda: memory.update(baseline_mb=rss(proc.pid)["main_mb"]))  # fmt: skip
        await asyncio.sleep(1.0)  # as for the worker: RSS once the burst is over
        memory["after_mb"] = rss(proc.pid)["main_mb"]
        memory["local_results_mb"] = await local_results_mb(base)  # a bounded copy the facade keeps by design
    except Exception as exc:  # noqa: BLE001
        log(f"facade measurement failed: {exc!r}\n{proc.tail()}")
        return {"skipped": True, "reason": f"facade measurement failed: {exc!r}"[:400], "log_tail": proc.tail(15)}
    finally:
        doc["cpu"]["facade"] = meter.stop()
        if profile:
            doc["profile"] = [finish_py_spy(h) for h in profile if h is not None]
        proc.stop()
    out["startup_s"] = round(ready, 2)
    out["memory"] = memory  # informational: no target
    lim = doc.get("limit", {}).get("time_for_100_qr_ms")
    p50 = out["uncached_qr_100"].get("1", {}).get("p50_ms")
    if lim and p50:
        out["qr_100_p50_over_limit"] = round(p50 / lim, 3)
    return out


async def warm_broker(
    driver: Any, svc: list[int], small: list[dict[str, Any]], batches: int, inflight: int, slices: int = 5
) -> dict[str, Any]:
    """Small cached batches through the whole pipeline, untimed, before anything is measured: a broker started
    minutes before runs its per-request code (produce, fetch, commit) in the JVM's interpreter and C1 code for its
    first tens of thousands of requests. Part 2's big batches make few requests: a soak of 242,400 unique codes
    left a fresh broker at twice its warm CPU per code, and the first run after a broker restart had all_miss at
    43-48 % of the limit, later runs on the same broker 47-64 % (BENCHMARKS.md). Small batches make many. The
    broker's CPU per batch is kept slice by slice (it falls as its code is compiled)."""
    per = max(1, batches // slices)
    out: dict[str, Any] = {"batches": 0, "seconds": 0.0, "kafka_cpu_ms_per_batch_by_slice": []}
    for _ in range(slices):
        meter = CpuMeter(svc).start()
        res = await driver.run("broker_warmup", [driver.prepare(small) for _ in range(per)], inflight)
        cpu = meter.stop()
        if res.errors:
            raise RuntimeError(f"broker warm-up: {len(res.errors)} batches failed, e.g. {res.errors[0]}")
        out["batches"] += res.batches
        out["seconds"] = round(out["seconds"] + res.seconds, 2)
        kafka = cpu["cores_by_service"].get("kafka", 0.0) * cpu["wall_s"]
        out["kafka_cpu_ms_per_batch_by_slice"].append(round(1000 * kafka / max(1, res.batches), 3))
    log(f"broker warm-up: {out['batches']:,} 2-code batches in {out['seconds']:.1f} s, Kafka CPU ms per batch by "
        f"slice: {out['kafka_cpu_ms_per_batch_by_slice']}")  # fmt: skip
    return out


PIPELINE_ROLES = ("worker", "worker pool", "sink", "bench client")


def git_commit() -> str:
    """The commit the run measures (``+dirty`` when code in the work tree has uncommitted changes; documents,
    such as the BENCHMARKS.md a previous ``--update-md`` rewrote, do not count)."""
    root = Path(__file__).resolve().parents[1]
    git = shutil.which("git")
    if git is None:
        return "unknown"
    try:
        head = subprocess.run([git, "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,  # noqa: S603
                              check=True, timeout=10).stdout.strip()  # fmt: skip
        dirty = subprocess.run([git, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!*.md"], cwd=root,  # noqa: S603
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def cpu_per_code(cpu: dict[str, Any], codes: int) -> dict[str, float]:
    """CPU milliseconds per code, by role: what a phase costs whatever else shares the machine."""
    if not codes:
        return {}
    roles = cpu.get("cores_by_role", {})
    out = {r: round(1000 * roles.get(r, 0.0) * cpu["wall_s"] / codes, 4) for r in PIPELINE_ROLES}
    out["pipeline"] = round(sum(out.values()), 4)
    out["kafka+redis"] = round(1000 * roles.get("kafka+redis", 0.0) * cpu["wall_s"] / codes, 4)
    out["pipeline+kafka+redis"] = round(out["pipeline"] + out["kafka+redis"], 4)
    for name, cores in cpu.get("cores_by_service", {}).items():  # the kafka+redis figure, split
        out[f"service {name}"] = round(1000 * cores * cpu["wall_s"] / codes, 4)
    return out


def start_py_spy(name: str, pid: int, seconds: float, workdir: Path) -> Any:
    import shutil
    import subprocess

    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        log("py-spy not installed: no worker profile")
        return None
    out = workdir / f"profile-{name}.txt"
    # --gil: only samples of a thread holding the GIL, i.e. running Python. On two saturated cores a thread
    # that woke another process (a socket write, a pipe write) often waits for a CPU before it runs again;
    # sampled without --gil, that wait counts as time in the write (18 % of the worker's main process in
    # "socket writes", where `perf record -a` put 4.7 % of its CPU in the kernel, BENCHMARKS.md).
    cmd = [exe, "record", "--pid", str(pid), "--subprocesses", "--duration", str(int(seconds)),
           "--format", "raw", "--rate", "100", "--gil", "--nonblocking", "--output", str(out)]  # fmt: skip
    log(f"py-spy: {' '.join(cmd)}")
    return (subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), out)  # noqa: S603


def finish_py_spy(handle: Any) -> dict[str, Any]:
    popen, out = handle
    try:
        _, err = popen.communicate(timeout=120)
    except Exception:  # noqa: BLE001
        popen.kill()
        err = b""
    return {
        "py_spy_raw": str(out),
        "returncode": popen.returncode,
        "stderr": err.decode(errors="replace")[-300:],
        "top_self": top_functions(out),
    }


def top_functions(path: Path, n: int = 15) -> list[tuple[str, float]]:
    """Self time share per function from a py-spy ``raw`` (collapsed stacks) file."""
    from collections import Counter

    self_time: Counter[str] = Counter()
    total = 0
    try:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            leaf = stack.rsplit(";", 1)[-1]
            self_time[leaf] += int(count)
            total += int(count)
    except OSError:
        return []
    return [(f, round(100 * c / total, 1)) for f, c in self_time.most_common(n)] if total else []


def git_state() -> dict[str, Any]:
    """The commit measured and whether the tree had local changes (read-only git calls)."""
    import subprocess

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout  # noqa: S603, S607
        except (OSError, subprocess.SubprocessError):
            return ""

    mine = ("bench/", "tests/bench/", "BENCHMARKS.md")
    # entries "XY path": two status columns, the first often blank, so the output is not stripped
    entries = [ln[3:] for ln in git("status", "--porcelain").splitlines() if len(ln) > 3]
    changed = [path for path in entries if not path.startswith(mine)]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "changed_files_outside_bench": changed}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = dict(SMOKE if args.smoke else FULL)
    if args.inflight:
        cfg["inflight"] = args.inflight
    if args.batches:
        cfg["miss_batches"] = cfg["hit_batches"] = args.batches
    if args.limit_seconds:
        cfg["limit_seconds"] = args.limit_seconds
    if args.memory_codes:
        cfg["memory_codes"] = args.memory_codes
    base = Settings.from_env()
    from bench.procs import bench_settings

    workdir = Path(tempfile.mkdtemp(prefix="bf-bench-"))
    settings = bench_settings(base, workdir)
    svc = service_pids(base)
    t0 = time.monotonic()
    doc: dict[str, Any] = {
        "mode": "smoke" if args.smoke else "full",
        "command": " ".join([".venv/bin/python -m bench", *map(shlex.quote, sys.argv[1:] if argv is None else argv)]),
        "started_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "machine": describe(base),
        "workload": {
            "types": list(TYPES),
            "formats": PNG_SHARE,
            "data": "unique per item (URLs, in-store EAN-13, SKU labels, GS1-style strings) with a random run tag",
            "mixed": "the four types in turn",
        },
        "config": {k: (v if not isinstance(v, dict) else {str(a): b for a, b in v.items()}) for k, v in cfg.items()},
        "cpu": {},
        "git": git_state(),
        "logs": str(workdir),
    }
    log(f"machine: {doc['machine']['nproc']} cores, load {doc['machine']['loadavg_at_start']}; logs in {workdir}")

    limit = RenderLimit()
    rc = 0
    try:
        meter = CpuMeter(svc).start()
        doc["limit"] = measure_limit(limit, seconds_per_workload=cfg["limit_seconds"], rounds=cfg["limit_rounds"],
                                     log=log)  # fmt: skip
        doc["cpu"]["limit"] = meter.stop()
        asyncio.run(run_pipeline_parts(settings, cfg, args, workdir, doc, svc, limit))
    except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - report what was measured, then fail
        log(f"pipeline parts failed: {type(exc).__name__}: {exc}")
        doc["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        rc = 1
    finally:
        limit.close()
    doc["duration_s"] = round(time.monotonic() - t0, 1)
    doc["targets"] = report.targets(doc)
    out = args.json or DEFAULT_JSON
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(report.table(doc))
    print(f"\nJSON: {out}  ({doc['duration_s']:.0f} s)")
    if args.update_md and not args.smoke and rc == 0:
        md = ROOT / "BENCHMARKS.md"
        if report.update_markdown(md, doc):
            print(f"updated {md}")
        else:
            print(f"{md} has no {report.MD_START} block: not updated", file=sys.stderr)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
