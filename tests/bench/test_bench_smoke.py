"""The benchmark harness keeps working: ``python -m bench --smoke`` end to end, no timing assertions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from barcodeflow.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def _positive(doc: dict, *path: str) -> float:
    cur = doc
    for p in path:
        assert isinstance(cur, dict) and p in cur, f"missing {'.'.join(path)} (at {p!r})"
        cur = cur[p]
    assert isinstance(cur, int | float) and cur > 0, f"{'.'.join(path)} = {cur!r}, expected a positive number"
    return cur


@pytest.mark.timeout(240)
def test_bench_smoke_writes_every_section(stack_settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": stack_settings.kafka_bootstrap_servers,
        "REDIS_URL": stack_settings.redis_url,
        "PYTHONUNBUFFERED": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=220,
    )
    tail = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"bench --smoke failed ({proc.returncode}):\n{tail}"
    assert "targets:" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["mode"] == "smoke"
    assert "error" not in doc, doc.get("error")
    for key in ("nproc", "ram_gb"):
        _positive(doc, "machine", key)
    assert doc["machine"]["kafka_version"]

    # 1. the limit, every workload
    for w in ("qr", "ean13", "code128", "datamatrix", "mixed"):
        _positive(doc, "limit", "workloads", w, "codes_per_s")
        assert doc["limit"]["workloads"][w]["failed"] == 0
    _positive(doc, "limit", "time_for_100_qr_ms")

    # 2. end to end: all-miss and all-hit, with latencies, message counts and the ratio to the limit
    for phase in ("all_miss", "all_hit"):
        r = doc["e2e"][phase]
        assert r["errors"] == [], r["errors"]
        assert r["failed"] == 0
        _positive(doc, "e2e", phase, "codes_per_s")
        _positive(doc, "e2e", phase, "latency_ms", "p50")
        _positive(doc, "e2e", phase, "latency_ms", "p95")
        _positive(doc, "e2e", phase, "messages", "total")
    assert doc["e2e"]["all_miss"]["cached_share"] == 0.0
    assert doc["e2e"]["all_hit"]["cached_share"] == 1.0
    _positive(doc, "e2e", "ratio_to_limit_mixed")
    _positive(doc, "e2e", "ratio_to_part1_limit_mixed")
    around = doc["e2e"]["limit_around_all_miss"]  # the limit again, right before and right after all_miss
    assert len(around["rounds_codes_per_s"]) == 2 and all(r > 0 for r in around["rounds_codes_per_s"])
    assert around["failed"] == 0 and around["idle_pipeline_cores"] >= 0
    _positive(doc, "e2e", "anatomy_2_code_cached", "median_ms", "total")
    bw = doc["e2e"]["broker_warmup"]  # small batches before anything is measured, the broker's CPU slice by slice
    assert bw["batches"] == 10 and len(bw["kafka_cpu_ms_per_batch_by_slice"]) == 5, bw

    # 3. the facade: both batch kinds at 1 and 16 clients
    assert not doc["facade"].get("skipped"), doc["facade"]
    for kind in ("cached_2", "uncached_qr_100"):
        for clients in ("1", "16"):
            r = doc["facade"][kind][clients]
            assert r["errors"] == 0, r
            for p in ("p50_ms", "p95_ms", "p99_ms"):
                _positive(doc, "facade", kind, clients, p)
    _positive(doc, "facade", "limit_qr_around", "time_for_100_qr_ms")  # the 100-QR target's limit
    assert len(doc["facade"]["limit_qr_around"]["rounds_time_for_100_qr_ms"]) == 2
    assert doc["facade"]["cached_2_httpx"]["1"]["errors"] == 0  # the same batch from httpx, for comparison
    _positive(doc, "facade", "cached_2_httpx", "1", "p50_ms")
    warm = doc["facade"]["cached_2_warmup"]  # the untimed warm-up before the 2-code rows, window by window
    assert warm["requests"] == 20 and warm["errors"] == 0, warm
    assert len(warm["p50_ms_by_window"]) == 1 and warm["p50_ms_by_window"][0] > 0

    # 4. memory
    for when in ("baseline", "after"):
        for part in ("main_mb", "render_pool_mb", "total_mb"):
            _positive(doc, "memory", when, part)
    _positive(doc, "memory", "codes")

    assert {t["status"] for t in doc["targets"]} <= {"PASS", "MISS"}
    assert len(doc["targets"]) == 7


@pytest.mark.timeout(120)
def test_pool_ipc_compares_both_pools() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.pool_ipc", "--tasks", "8", "--items", "4", "--rounds", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "round 1  ProcessPoolExecutor" in proc.stdout and "round 1  RenderPool" in proc.stdout
    assert "best of 1: caller CPU per task" in proc.stdout


@pytest.mark.timeout(120)
def test_intake_cpu_prints_both_steps_against_the_render() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.intake_cpu", "--batches", "10", "--rounds", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "render of the same 100 items (baseline)" in proc.stdout
    for step in ("parse_batch", "plan_batch"):
        assert f"{step} " in proc.stdout and "% of the render" in proc.stdout


@pytest.mark.timeout(240)
def test_facade_cpu_reports_every_process(stack_settings: Settings) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": stack_settings.kafka_bootstrap_servers,
        "REDIS_URL": stack_settings.redis_url,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bench.facade_cpu", "--requests", "20", "--rounds", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=230, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("round 1: p50 ")]
    for role in ("facade", "worker", "sink", "bench client", "kafka", "redis"):
        assert f"{role} " in line, line


@pytest.mark.timeout(120)
def test_ratelimit_compares_both_limiters(stack_settings: Settings) -> None:
    env = {**os.environ, "REDIS_URL": stack_settings.redis_url}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.ratelimit", "--checks", "50", "--rounds", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "round 1: limits " in proc.stdout and "round 1: one_script " in proc.stdout
    assert "one_script / limits: wall " in proc.stdout
