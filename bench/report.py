"""Targets, the printed table and the Markdown block of BENCHMARKS.md, all from the results JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MD_START = "<!-- bench:latest:start -->"
MD_END = "<!-- bench:latest:end -->"


def _get(doc: dict[str, Any], *path: str) -> Any:
    cur: Any = doc
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return cur


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, op: str, bound: float | None, unit: str, shown: str = "") -> None:
        if value is None or bound is None:
            out.append({"target": name, "value": None, "bound": bound, "op": op, "unit": unit, "status": "n/a"})
            return
        ok = value >= bound if op == ">=" else value <= bound if op == "<=" else value < bound
        out.append({"target": name, "value": round(value, 3), "bound": round(bound, 3), "op": op, "unit": unit,
                    "status": "PASS" if ok else "MISS", "shown": shown})  # fmt: skip

    ratio = _get(doc, "e2e", "ratio_to_limit_mixed")
    add("all-miss e2e / limit (mixed)", None if ratio is None else ratio * 100, ">=", 60.0, "%",
        "(long-term goal 85 %; limit measured around the phase)")  # fmt: skip
    add("all-miss pipeline CPU per code", _get(doc, "e2e", "all_miss", "cpu_ms_per_code", "pipeline+kafka+redis"),
        "<=", 0.45, "ms")  # fmt: skip
    add("all-hit e2e throughput (via the sink)", _get(doc, "e2e", "all_hit", "codes_per_s"), ">=", 15_000.0, "codes/s")
    add("facade 2-code cached p50, 1 client", _get(doc, "facade", "cached_2", "1", "p50_ms"), "<=", 5.0, "ms")
    add("facade 2-code cached p99, 1 client", _get(doc, "facade", "cached_2", "1", "p99_ms"), "<=", 20.0, "ms")
    # the limit's time for 100 QR measured around part 3 (part 1's in runs without it)
    limit_100 = _get(doc, "facade", "limit_qr_around", "time_for_100_qr_ms") or _get(doc, "limit", "time_for_100_qr_ms")
    add(
        "facade 100-QR uncached p50, 1 client",
        _get(doc, "facade", "uncached_qr_100", "1", "p50_ms"),
        "<=",
        None if limit_100 is None else 2.0 * limit_100,
        "ms",
        "" if limit_100 is None else f"(2 x {limit_100:.0f} ms limit)",
    )
    add("worker RSS growth (main + pool)", _get(doc, "memory", "growth_mb", "total"), "<", 20.0, "MB",
        f"over {_get(doc, 'memory', 'codes') or 0:,} codes")  # fmt: skip
    return out


def _n(v: Any, digits: int = 0) -> str:
    if v is None:
        return "-"
    if isinstance(v, int | float):
        return f"{v:,.{digits}f}"
    return str(v)


def _row(*cols: tuple[Any, int]) -> str:
    """Right-aligned columns, the first left-aligned: ``(text, width)`` pairs."""
    first, rest = cols[0], cols[1:]
    return "   " + f"{first[0]!s:<{first[1]}}" + "".join(f"{c!s:>{w}}" for c, w in rest)


def _rss_row(label: str, before: Any, after: Any, growth: float) -> str:
    """A row of part 4: RSS before -> after, in MB, and the growth."""
    return _row((label, 14), (_n(before, 1), 8), ("->", 4), (_n(after, 1), 8), (f"({growth:+.1f})", 9))


def table(doc: dict[str, Any]) -> str:
    m = doc.get("machine", {})
    lines = [
        f"barcodeflow benchmark ({doc.get('mode')}) | {m.get('nproc')} cores, {m.get('ram_gb')} GB, "
        f"{m.get('cpu_model')} | Python {m.get('python')} | Kafka {m.get('kafka_version')} | "
        f"load {m.get('loadavg_at_start')}",
        "",
    ]
    lim = doc.get("limit") or {}
    fmt = (doc.get("workload") or {}).get("formats", "")
    lines.append(f"1. limit: render core on {lim.get('processes')} processes, no Kafka/Redis ({fmt})")
    lines.append(_row(("workload", 12), ("codes/s", 10), ("codes", 9), ("CPU ms/code", 13)))
    for w, r in (lim.get("workloads") or {}).items():
        lines.append(_row((w, 12), (_n(r["codes_per_s"]), 10), (_n(r["codes"]), 9),
                          (_n(r.get("pool_cpu_ms_per_code"), 3), 13)))  # fmt: skip
    lines.append(f"   time for 100 QR on all cores: {_n(lim.get('time_for_100_qr_ms'), 1)} ms")

    e2e = doc.get("e2e") or {}
    lines += ["", f"2. end to end through Kafka (mixed, batches of {e2e.get('batch_size')}, {e2e.get('inflight')} "
                  f"in flight, pipeline ready in {_n(e2e.get('startup_s'), 1)} s)"]  # fmt: skip
    lines.append(_row(("phase", 13), ("codes/s", 9), ("x limit", 9), ("codes", 8), ("cached", 8), ("p50 ms", 9),
                      ("p95 ms", 9), ("msgs/batch", 11), ("CPU ms/code", 13)))  # fmt: skip
    ratios = {"all_miss": e2e.get("ratio_to_limit_mixed"), "all_hit": e2e.get("hit_ratio_to_limit_mixed")}
    for name in ("all_miss", "cache_warmup", "all_hit"):
        r = e2e.get(name)
        if not r:
            continue
        cpu = (r.get("cpu_ms_per_code") or {}).get("pipeline+kafka+redis")
        lines.append(_row((name, 13), (_n(r["codes_per_s"]), 9), (_n(ratios.get(name), 2), 9), (_n(r["codes"]), 8),
                          (f"{r['cached_share'] * 100:.0f}%", 8), (_n(r["latency_ms"]["p50"]), 9),
                          (_n(r["latency_ms"]["p95"]), 9), (_n(r["messages"]["per_batch"], 1), 11),
                          (_n(cpu, 3), 13)))  # fmt: skip
    around = e2e.get("limit_around_all_miss") or {}
    if around:
        befaft = " / ".join(_n(x) for x in around.get("rounds_codes_per_s", []))
        lines.append(f"   x limit: against the limit (mixed) measured right before / after all_miss: {befaft} codes/s "
                     f"(pool {_n(around.get('pool_cpu_ms_per_code'), 3)} CPU ms/code; the idle pipeline used "
                     f"{_n(around.get('idle_pipeline_cores'), 2)} cores meanwhile); all_miss against part 1's "
                     f"limit: {_n(e2e.get('ratio_to_part1_limit_mixed'), 2)}")  # fmt: skip
    bw = e2e.get("broker_warmup") or {}
    if bw.get("batches"):
        slices = ", ".join(_n(x, 2) for x in bw["kafka_cpu_ms_per_batch_by_slice"])
        lines.append(f"   first of all, untimed: {_n(bw['batches'])} 2-code batches warm the broker "
                     f"({_n(bw['seconds'], 1)} s; Kafka CPU ms per batch, slice by slice: {slices})")  # fmt: skip
    soak = e2e.get("soak_before") or {}
    if soak:
        s_cpu, m_cpu = soak["cpu_ms_per_code"], _get(e2e, "all_miss", "cpu_ms_per_code") or {}
        lines.append(f"   before them, untimed: part 4's soak of {_n(soak['codes'])} unique codes, "
                     f"{_n(s_cpu.get('pipeline+kafka+redis'), 3)} CPU ms/code "
                     f"(Kafka {_n(s_cpu.get('service kafka'), 3)}; "
                     f"all_miss: {_n(m_cpu.get('service kafka'), 3)})")  # fmt: skip
    if e2e.get("cpu_efficiency_mixed") is not None:
        lines.append(f"   CPU per code, render core / whole pipeline (incl. Kafka, Redis, client): "
                     f"{e2e['cpu_efficiency_mixed']:.2f}; CPU-bound ceiling on {m.get('nproc')} idle cores: "
                     f"~{_n(e2e.get('projected_idle_codes_per_s'))} codes/s")  # fmt: skip

    fac = doc.get("facade") or {}
    lines.append("")
    if fac.get("skipped"):
        lines.append(f"3. facade: not measured ({fac.get('reason')})")
    else:
        lines.append("3. facade POST /v1/batches (synchronous; aiohttp clients, one keep-alive connection each)")
        lines.append(_row(("batch", 18), ("clients", 8), ("ok", 6), ("err", 5), ("p50 ms", 9), ("p95 ms", 9),
                          ("p99 ms", 9), ("req/s", 8)))  # fmt: skip
        rows = (("cached_2", "2-code cached"), ("cached_2_httpx", "(httpx, info)"),
                ("uncached_qr_100", "100-QR uncached"))  # fmt: skip
        for key, label in rows:
            for clients, r in (fac.get(key) or {}).items():
                lines.append(_row((label, 18), (clients, 8), (r["ok"], 6), (r["errors"], 5), (_n(r["p50_ms"], 1), 9),
                                  (_n(r["p95_ms"], 1), 9), (_n(r["p99_ms"], 1), 9),
                                  (_n(r["requests_per_s"], 1), 8)))  # fmt: skip
        wu = fac.get("cached_2_warmup") or {}
        if wu.get("p50_ms_by_window"):
            p50s = ", ".join(_n(x, 1) for x in wu["p50_ms_by_window"])
            lines.append(f"   before the 2-code rows, untimed: {_n(wu['requests'])} 2-code requests from 1 client "
                         f"(broker warm-up), p50 per {wu['window']}: {p50s} ms")  # fmt: skip
        qa = fac.get("limit_qr_around") or {}
        if qa:
            times = " / ".join(_n(t, 1) for t in qa.get("rounds_time_for_100_qr_ms", []))
            lines.append(f"   the limit's time for 100 QR right before / after this part: {times} ms "
                         f"(part 1: {_n(lim.get('time_for_100_qr_ms'), 1)} ms)")  # fmt: skip

    mem = doc.get("memory") or {}
    if mem.get("after"):
        b, a, g = mem["baseline"], mem["after"], mem.get("growth_mb", {})
        lines += ["", f"4. worker RSS in MB, after warm-up -> after {_n(mem.get('codes'))} codes "
                      f"(at ready: {_n(mem.get('at_ready', {}).get('total_mb'), 1)})"]  # fmt: skip
        for k, label in (("main", "main process"), ("render_pool", "render pool"), ("total", "total")):
            lines.append(_rss_row(label, b.get(f"{k}_mb"), a.get(f"{k}_mb"), g.get(k, 0)))
        sb, sa = mem.get("sink_baseline", {}).get("main_mb"), mem.get("sink_after", {}).get("main_mb")
        if sb is not None and sa is not None:
            lines.append(_rss_row("(sink, info)", sb, sa, sa - sb))
        fm = fac.get("memory") or {}
        fb, fa = fm.get("baseline_mb"), fm.get("after_mb")
        if fb is not None and fa is not None:  # after its first requests -> after part 3
            held = fm.get("local_results_mb")
            lines.append(
                _rss_row("(facade, info)", fb, fa, fa - fb)
                + ("" if held is None else f"   part 3 only; of it results kept for GET: {held:.1f}")
            )

    lines += ["", f"CPU per section in cores busy (of {m.get('nproc')}); 'other processes' = not this benchmark's:"]
    for name, c in (doc.get("cpu") or {}).items():
        split = ", ".join(f"{k} {v:.2f}" for k, v in sorted(c.get("cores_by_service", {}).items()))
        roles = ", ".join(f"{k} {v:.2f}" + (f" ({split})" if k == "kafka+redis" and split else "")
                          for k, v in sorted(c.get("cores_by_role", {}).items(), key=lambda kv: -kv[1]))  # fmt: skip
        lines.append(f"   {name:<17} {c['wall_s']:>6.1f} s, idle {c['cpu_idle_pct']:>4.1f}%: {roles}")

    lines += ["", "targets:"]
    for t in doc.get("targets", []):
        digits = 3 if t["bound"] is not None and t["bound"] < 1 else 1  # sub-millisecond figures keep 3 digits
        val = "-" if t["value"] is None else f"{t['value']:,.{digits}f} {t['unit']}"
        bound = "-" if t["bound"] is None else f"{t['bound']:,.{digits}f}"
        extra = f" {t['shown']}" if t.get("shown") else ""
        lines.append(f"   {t['status']:<5} {t['target']:<40} {val:>16}  (target {t['op']} {bound} {t['unit']}{extra})")
    if doc.get("mode") == "smoke":
        lines.append("   (smoke mode: tiny counts, the figures say nothing about performance)")
    return "\n".join(lines)


def markdown(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    lines = [
        MD_START,
        f"Run {doc['started_at']} ({doc['duration_s']:.0f} s) on commit `{doc.get('commit', 'unknown')}`, "
        f"`{doc['command']}`",
        "",
        f"Machine: {m['nproc']} cores ({m['cpu_model']}), {m['ram_gb']} GB RAM, {m['platform']}, Python {m['python']}, "
        f"Kafka {m['kafka_version']} (single-node KRaft from `barcodeflow.stack`), Redis at {m['redis']}. "
        f"Load average at start {m['loadavg_at_start']} (it lags: the CPU table below shows what other "
        "processes actually used during each section).",
        "",
        "```",
        table(doc),
        "```",
        MD_END,
    ]
    return "\n".join(lines)


def update_markdown(path: Path, doc: dict[str, Any]) -> bool:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if MD_START not in text or MD_END not in text:
        return False
    head, rest = text.split(MD_START, 1)
    _, tail = rest.split(MD_END, 1)
    path.write_text(head + markdown(doc) + tail, encoding="utf-8")
    return True
