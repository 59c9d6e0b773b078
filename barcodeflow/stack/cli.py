"""``python -m barcodeflow.stack {install,start,stop,status}``: the local Kafka + Redis in the background."""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from barcodeflow.stack import kafka as kafka_mod
from barcodeflow.stack import redis as redis_mod
from barcodeflow.stack.procs import ServiceError, StackPaths, find_root, live_pid_record, terminate_pid

SERVICES = ("kafka", "redis")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m barcodeflow.stack", description=__doc__)
    p.add_argument("--root", type=Path, default=None, help="project root (default: nearest dir with pyproject.toml)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)

    i = sub.add_parser("install", help="fetch the Kafka jars (mvn) and install redis-server (apt) if missing")
    i.add_argument("--no-apt", action="store_true", help="never run apt-get")

    s = sub.add_parser("start", help="start Kafka and Redis in the background and wait until they answer")
    s.add_argument("--only", choices=SERVICES, action="append", help="start only this service (repeatable)")
    s.add_argument("--kafka-port", type=int, default=kafka_mod.DEFAULT_PORT)
    s.add_argument("--redis-port", type=int, default=redis_mod.DEFAULT_PORT)
    s.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for each service")
    s.add_argument("--no-apt", action="store_true")

    t = sub.add_parser("stop", help="stop the services that `start` started (SIGTERM, then SIGKILL)")
    t.add_argument("--only", choices=SERVICES, action="append")
    t.add_argument("--timeout", type=float, default=30.0, help="seconds between SIGTERM and SIGKILL")

    st = sub.add_parser("status", help="health of both services (exit 1 unless both are healthy)")
    st.add_argument("--kafka-port", type=int, default=kafka_mod.DEFAULT_PORT)
    st.add_argument("--redis-port", type=int, default=redis_mod.DEFAULT_PORT)
    st.add_argument("--json", action="store_true")
    return p


def _install(root: Path, args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    lib = kafka_mod.ensure_kafka_installed(root)
    print(
        f"kafka  {kafka_mod.kafka_version()}: {len(list(lib.glob('*.jar')))} jars in {lib} "
        f"({time.monotonic() - t0:.1f}s)"
    )
    java = kafka_mod.java_bin()
    print(f"java   {kafka_mod.java_major(java)} at {java}")
    print(f"redis  {redis_mod.ensure_redis_installed(allow_apt=not args.no_apt)}")
    return 0


def _start(root: Path, args: argparse.Namespace) -> int:
    only = args.only or list(SERVICES)
    env = []
    if "redis" in only:
        t0 = time.monotonic()
        r = redis_mod.start_redis(root, port=args.redis_port, timeout=args.timeout, allow_apt=not args.no_apt)
        how = "reused" if r.reused else "started"
        print(
            f"redis  redis://{r.address}/0  {how} pid {r.pid}  (Redis {r.info.get('version', '?')}, "
            f"ready in {time.monotonic() - t0:.1f}s)  log {r.log_path}"
        )
        env.append(f"REDIS_URL=redis://{r.address}/0")
    if "kafka" in only:
        t0 = time.monotonic()
        k = kafka_mod.start_kafka(root, port=args.kafka_port, timeout=args.timeout)
        how = "reused" if k.reused else "started"
        print(
            f"kafka  {k.address}  {how} pid {k.pid}  (Kafka {kafka_mod.kafka_version()} KRaft, "
            f"ready in {time.monotonic() - t0:.1f}s)  log {k.log_path}"
        )
        env.insert(0, f"KAFKA_BOOTSTRAP_SERVERS={k.address}")
    print("export " + " ".join(env))
    return 0


def _stop(root: Path, args: argparse.Namespace) -> int:
    paths = StackPaths(root)
    rc = 0
    for name in args.only or list(SERVICES):
        rec = live_pid_record(paths.pid_file(name))
        if rec is None:
            print(f"{name}: not running from this stack (no live pid file)")
            continue
        t0 = time.monotonic()
        gone = terminate_pid(rec.pid, timeout=args.timeout)
        if gone:
            paths.pid_file(name).unlink(missing_ok=True)
            print(f"{name}: stopped pid {rec.pid} ({time.monotonic() - t0:.1f}s)")
        else:
            print(f"{name}: pid {rec.pid} did not exit")
            rc = 1
    return rc


def _status(root: Path, args: argparse.Namespace) -> int:
    rows = [kafka_mod.kafka_status(root, args.kafka_port), redis_mod.redis_status(root, args.redis_port)]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        for r in rows:
            state = "healthy" if r["healthy"] else "DOWN"
            owner = "started by stack" if r["started_by_stack"] else ("external" if r["pid"] else "-")
            extra = {
                k: v for k, v in r.items() if k not in {"service", "address", "healthy", "pid", "started_by_stack"}
            }
            print(f"{r['service']:<6} {r['address']:<16} {state:<8} pid={r['pid']} ({owner})  {extra}")
    return 0 if all(r["healthy"] for r in rows) else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    root = (args.root or find_root()).resolve()
    try:
        return {"install": _install, "start": _start, "stop": _stop, "status": _status}[args.cmd](root, args)
    except (ServiceError, TimeoutError) as exc:
        print(f"error: {exc}")
        return 1
