"""``barcodeflow up``: the whole stack on this machine — Kafka, Redis, worker, sink, facade — until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from barcodeflow.kafka import member_instance_id
from barcodeflow.procs import ChildProcess
from barcodeflow.settings import Settings
from barcodeflow.stack import ManagedProcess, ServiceError
from barcodeflow.stack import stop as stop_service
from barcodeflow.supervisor import RestartPolicy, StartFailed, Supervisor, Unit

DEMO_FILE = Path(__file__).resolve().parents[2] / "examples" / "demo_batch.json"


def child_env(env: dict[str, str], settings: Settings, name: str, role: str) -> dict[str, str]:
    """A child's environment: a worker or sink gets its own static group member id, kept across the
    supervisor's restarts of it (a restarted child takes its partitions back without a rebalance)."""
    if role not in ("worker", "sink"):
        return env
    base = settings.group_instance_id or socket.gethostname()
    return {**env, "GROUP_INSTANCE_ID": member_instance_id(base, name)}


def _port(hostport: str, default: int) -> int:
    try:
        return int(hostport.rsplit(":", 1)[1].split("/", 1)[0])
    except (IndexError, ValueError):
        return default


class ChildUnit:
    """A ``barcodeflow <command>`` child process (worker, sink, facade) for the supervisor."""

    def __init__(self, name: str, args: tuple[str, ...], env: dict[str, str], logdir: Path) -> None:
        self.name = name
        self.proc = ChildProcess(name, args, env, logdir / f"{name}.log")

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def start(self) -> None:
        try:
            self.proc.start()
        except OSError as exc:
            raise StartFailed(str(exc)) from exc

    def alive(self) -> bool:
        return self.proc.alive()

    def exit_code(self) -> int | None:
        return self.proc.returncode()

    def after_exit(self) -> None:
        # its own process group: what is left of it (a render pool whose parent was killed) goes too
        if self.proc.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        self.proc.stop()

    def log_hint(self) -> str:
        return str(self.proc.log_path)


class ServiceUnit:
    """Kafka or Redis that ``up`` started itself: restarted in place (same config and data dir).

    ``before_start`` runs before every restart and raises StartFailed when the restart would lose data."""

    def __init__(self, proc: ManagedProcess, before_start: Callable[[], None] | None = None) -> None:
        self.name = proc.name
        self.proc = proc
        self.before_start = before_start

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def start(self) -> None:
        if self.before_start is not None:
            self.before_start()
        try:
            self.proc.spawn()  # prepare() waits for the old ports to be free
        except (ServiceError, OSError) as exc:
            raise StartFailed(str(exc)) from exc

    def alive(self) -> bool:
        return self.proc.alive()

    def exit_code(self) -> int | None:
        return self.proc.returncode()

    def after_exit(self) -> None:
        """Nothing: a service is a single process (its pid file is rewritten by the restart)."""

    def stop(self) -> None:
        stop_service(self.proc)

    def log_hint(self) -> str:
        return str(self.proc.log_path)


def kafka_storage_kept(root: Path) -> Callable[[], None]:
    """Before a restart of Kafka: its storage must be intact (the broker's start would reformat a damaged one)."""
    from barcodeflow.stack import StackPaths
    from barcodeflow.stack.kafka import storage_ok

    def check() -> None:
        data = StackPaths(root).kafka_data
        if not storage_ok(data):
            raise StartFailed(
                f"the Kafka storage {data} is missing or damaged; a restart does not reformat it "
                "(a new `barcodeflow up` does, and its records are lost)"
            )

    return check


class StopSignal:
    """SIGINT/SIGTERM handler: always records the request; raises KeyboardInterrupt only while ``up`` is
    in a blocking phase (start-up, demo). The supervision loop polls ``requested`` instead, so a signal
    never lands in the middle of a restart."""

    def __init__(self) -> None:
        self.requested = False
        self.interrupt = True

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True
        if self.interrupt:
            raise KeyboardInterrupt

    def install(self) -> None:
        signal.signal(signal.SIGINT, self)
        signal.signal(signal.SIGTERM, self)


async def _round_trip(settings: Settings, batch: dict[str, Any], timeout: float) -> dict[str, Any]:
    from producer import BatchProducer, ResultListener

    listener = ResultListener(settings)
    await listener.start()
    try:
        async with BatchProducer(settings) as prod:
            return await prod.submit_and_wait(listener, batch, timeout)
    finally:
        await listener.stop()


def wait_pipeline(settings: Settings, sup: Supervisor, timeout: float = 120.0) -> None:
    """Until a probe batch makes the round trip; processes that exit meanwhile are restarted."""
    deadline = time.monotonic() + timeout
    probe = {"barcodes": [{"barcode_type": "qr", "data": "ready?"}]}
    while True:
        if (crashed := sup.check()) is not None:
            raise RuntimeError(crashed.message(sup.policy))
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
    from barcodeflow.stack import ensure_kafka_installed, find_root, start_kafka, start_redis
    from stream_app.topics import ensure_topics

    settings: Settings = args.settings
    if not settings.api_keys and not settings.api_keys_file:
        settings = settings.with_(api_keys=(f"demo-{secrets.token_urlsafe(12)}",))
    policy = RestartPolicy(max_restarts=args.max_restarts)
    root = find_root()
    kafka_port = _port(settings.kafka_bootstrap_servers.split(",")[0], 9092)
    redis_port = _port(settings.redis_url.split("//", 1)[-1], 6379)
    stop_signal = StopSignal()
    stop_signal.install()
    services: list[ManagedProcess] = []
    sup: Supervisor | None = None
    rc = 0
    try:
        print(f"up: Kafka jars in {ensure_kafka_installed(root)}")
        kafka = start_kafka(root, port=kafka_port)
        services.append(kafka)
        redis = start_redis(root, port=redis_port)
        services.append(redis)
        print(f"up: Kafka  {settings.kafka_bootstrap_servers} ({kafka.describe()})")
        print(f"up: Redis  {settings.redis_url} ({redis.describe()})")
        asyncio.run(ensure_topics(settings))
        env = {**os.environ, **settings.as_env(), "PYTHONUNBUFFERED": "1"}
        logdir = root / ".stack" / "logs"
        workers = [("worker", "worker", "--processes", "1")] if args.workers == 1 else [
            (f"worker-{i}", "worker", "--processes", "1") for i in range(1, args.workers + 1)
        ]  # fmt: skip
        apps = [*workers, ("sink", "sink")] + ([] if args.no_facade else [("facade", "facade")])
        units: list[Unit] = [
            ServiceUnit(p, kafka_storage_kept(root) if p is kafka else None) for p in services if p.owned
        ]
        units += [ChildUnit(name, tuple(cmd), child_env(env, settings, name, cmd[0]), logdir) for name, *cmd in apps]
        sup = Supervisor(units, policy, say=lambda line: print(f"up: {line}", file=sys.stderr, flush=True))
        for u in units:
            if isinstance(u, ChildUnit):
                u.start()
            sup.started(u.name)
        wait_pipeline(settings, sup)
        print(f"up: worker x{args.workers} (render pool {settings.render_concurrency}), sink"
              + ("" if args.no_facade else f", facade http://{settings.facade_host}:{settings.facade_port}"
                 f"  (X-API-Key: {settings.api_keys[0] if settings.api_keys else 'from API_KEYS_FILE'})"))  # fmt: skip
        print(f"up: logs in {logdir}/; topics: {settings.topics.requests} -> {settings.topics.results}")
        if args.demo:
            rc = run_demo(settings, Path(args.out))
        if args.exit_after_demo:
            return rc
        reused = [p.name for p in services if not p.owned]
        print(f"up: running: {sup.status()}" + (f"; reused, not supervised: {', '.join(reused)}" if reused else "")
              + "; Ctrl-C stops everything", flush=True)  # fmt: skip
        stop_signal.interrupt = False  # from here on a signal only sets the flag the loop polls
        if stop_signal.requested:
            raise KeyboardInterrupt
        crashed = sup.run(lambda: stop_signal.requested)
        if crashed is not None:
            print(f"up: {crashed.message(policy)}; stopping everything", file=sys.stderr)
            return 1
        print("\nup: stopping")
    except KeyboardInterrupt:
        print("\nup: stopping")
    except Exception as exc:  # noqa: BLE001 - report and tear down what we started
        print(f"up: {exc}", file=sys.stderr)
        rc = 1
    finally:
        stop_signal.interrupt = False  # the tear-down itself is not interrupted
        if sup is not None:
            sup.stop_all()
        else:
            for p in reversed(services):
                stop_service(p)  # a no-op for a reused service
    return rc


def _restarts(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("up", help="run Kafka, Redis, worker, sink and facade locally until Ctrl-C")
    p.add_argument("--demo", action="store_true", help="send a demo batch once everything is up")
    p.add_argument("--out", default="out/demo", help="where the demo writes its images (default out/demo)")
    p.add_argument("--workers", type=int, default=1, help="worker processes in the consumer group")
    p.add_argument("--no-facade", action="store_true", help="do not start the HTTP facade")
    p.add_argument("--exit-after-demo", action="store_true", help="stop everything after the demo (smoke test)")
    p.add_argument(
        "--max-restarts",
        type=_restarts,
        default=RestartPolicy.max_restarts,
        metavar="N",
        help="restarts of one process in a row (none after a healthy minute) before up gives up (default 10)",
    )
    p.set_defaults(func=run)
