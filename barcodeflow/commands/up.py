"""``barcodeflow up``: the whole stack on this machine — Kafka, Redis, worker, sink, facade — until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from barcodeflow.procs import ChildProcess
from barcodeflow.settings import Settings

DEMO_FILE = Path(__file__).resolve().parents[2] / "examples" / "demo_batch.json"


def _port(hostport: str, default: int) -> int:
    try:
        return int(hostport.rsplit(":", 1)[1].split("/", 1)[0])
    except (IndexError, ValueError):
        return default


class Children:
    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = env
        self.logdir = logdir
        self.procs: dict[str, ChildProcess] = {}

    def start(self, name: str, *args: str) -> None:
        self.procs[name] = ChildProcess(name, args, self.env, self.logdir / f"{name}.log").start()

    def dead(self) -> list[str]:
        return [n for n, p in self.procs.items() if not p.alive()]

    def stop(self) -> None:
        for p in self.procs.values():
            p.stop()


async def _round_trip(settings: Settings, batch: dict[str, Any], timeout: float) -> dict[str, Any]:
    from producer import BatchProducer, ResultListener

    listener = ResultListener(settings)
    await listener.start()
    try:
        async with BatchProducer(settings) as prod:
            return await prod.submit_and_wait(listener, batch, timeout)
    finally:
        await listener.stop()


def wait_pipeline(settings: Settings, children: Children, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    probe = {"barcodes": [{"barcode_type": "qr", "data": "ready?"}]}
    while True:
        if dead := children.dead():
            raise RuntimeError(f"{', '.join(dead)} exited; see {children.logdir}")
        try:
            asyncio.run(_round_trip(settings, probe, 10))
            return
        except Exception:  # noqa: BLE001 - retried until the deadline; the last error is raised
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def run_demo(settings: Settings, out: Path) -> int:
    from barcodeflow.commands.render import write_images

    batch = orjson.loads(DEMO_FILE.read_bytes())
    t0 = time.perf_counter()
    result = asyncio.run(_round_trip(settings, batch, 60))
    ms = (time.perf_counter() - t0) * 1000
    written = write_images(result, out)
    s = result["summary"]
    print(f"demo: batch {result['batch_id']}: {s['successful']}/{s['total']} rendered, {s['failed']} failed "
          f"(by design: a wrong EAN-13 check digit), {s['cached']} cached, round trip {ms:.0f} ms")  # fmt: skip
    for r in result["results"]:
        status = "ok" if r["success"] else f"{r['error']['code']}: {r['error']['message']}"
        print(f"  {r['index']:>2} {r.get('id') or '':<9} {status}")
    print(f"demo: {written} images written to {out}/")
    return 0


def run(args: argparse.Namespace) -> int:
    from barcodeflow.stack import ensure_kafka_installed, find_root, start_kafka, start_redis, stop
    from stream_app.topics import ensure_topics

    settings: Settings = args.settings
    if not settings.api_keys and not settings.api_keys_file:
        settings = settings.with_(api_keys=(f"demo-{secrets.token_urlsafe(12)}",))
    root = find_root()
    kafka_port = _port(settings.kafka_bootstrap_servers.split(",")[0], 9092)
    redis_port = _port(settings.redis_url.split("//", 1)[-1], 6379)
    print(f"up: Kafka jars in {ensure_kafka_installed(root)}")
    kafka = start_kafka(root, port=kafka_port)
    redis = start_redis(root, port=redis_port)
    print(f"up: Kafka  {settings.kafka_bootstrap_servers} ({kafka.describe()})")
    print(f"up: Redis  {settings.redis_url} ({redis.describe()})")
    asyncio.run(ensure_topics(settings))
    env = {**os.environ, **settings.as_env(), "PYTHONUNBUFFERED": "1"}
    children = Children(env, root / ".stack" / "logs")
    stopping = False

    def on_signal(*_: object) -> None:
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    rc = 0
    try:
        children.start("worker", "worker", "--processes", str(args.workers))
        children.start("sink", "sink")
        if not args.no_facade:
            children.start("facade", "facade")
        wait_pipeline(settings, children)
        print(f"up: worker x{args.workers} (render pool {settings.render_concurrency}), sink"
              + ("" if args.no_facade else f", facade http://{settings.facade_host}:{settings.facade_port}"
                 f"  (X-API-Key: {settings.api_keys[0] if settings.api_keys else 'from API_KEYS_FILE'})"))  # fmt: skip
        print(f"up: logs in {children.logdir}/; topics: {settings.topics.requests} -> {settings.topics.results}")
        if args.demo:
            rc = run_demo(settings, Path(args.out))
        if args.exit_after_demo:
            return rc
        print("up: running; Ctrl-C stops everything")
        while not stopping:
            if dead := children.dead():
                print(f"up: {', '.join(dead)} exited; stopping (see {children.logdir})", file=sys.stderr)
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nup: stopping")
    except Exception as exc:  # noqa: BLE001 - report and tear down what we started
        print(f"up: {exc}", file=sys.stderr)
        rc = 1
    finally:
        children.stop()
        stop(redis)
        stop(kafka)
    return rc


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("up", help="run Kafka, Redis, worker, sink and facade locally until Ctrl-C")
    p.add_argument("--demo", action="store_true", help="send a demo batch once everything is up")
    p.add_argument("--out", default="out/demo", help="where the demo writes its images (default out/demo)")
    p.add_argument("--workers", type=int, default=1, help="worker processes in the consumer group")
    p.add_argument("--no-facade", action="store_true", help="do not start the HTTP facade")
    p.add_argument("--exit-after-demo", action="store_true", help="stop everything after the demo (smoke test)")
    p.set_defaults(func=run)
