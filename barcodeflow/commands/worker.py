"""``barcodeflow worker`` (render agents) and ``barcodeflow sink`` (aggregation) processes."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from barcodeflow.settings import Settings

if TYPE_CHECKING:
    import faust

log = logging.getLogger(__name__)


def run_faust_app(app: faust.App, settings: Settings, loglevel: str) -> int:
    import faust  # noqa: F811 - imported late: the other sub-commands do not pay for it

    from barcodeflow.kafka import membership_hint
    from stream_app.topics import ensure_topics

    asyncio.run(ensure_topics(settings))
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    asyncio.set_event_loop(asyncio.new_event_loop())
    worker = faust.Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()  # ends with SystemExit: 0 when stopped, 1 after a crash
    except SystemExit as exc:
        if exc.code not in (0, None):
            # whichever part crashed (the intake, or Faust's own consumer fenced by the broker: its crash
            # bypasses ours), the last line names the static member id when there is one
            log.critical("worker exited with status %s%s", exc.code, membership_hint(settings))
        raise
    return 0


def _level(args: argparse.Namespace) -> str:
    return (args.log_level or args.settings.log_level).lower()


def run_worker(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    if args.concurrency:
        settings = settings.with_(render_concurrency=args.concurrency)
    if args.processes > 1:
        return supervise(args.processes, settings)
    from barcodeflow.memory import tune_gc
    from stream_app.app import create_worker_app

    app = create_worker_app(settings)
    tune_gc()
    return run_faust_app(app, settings, _level(args))


def supervise(n: int, settings: Settings) -> int:
    """Run ``n`` worker processes in one consumer group; stop them all on SIGINT/SIGTERM. With a
    GROUP_INSTANCE_ID, child ``i`` is the static member ``<id>-<i>``."""
    from barcodeflow.kafka import member_instance_id

    env = {**os.environ, **settings.as_env()}
    base = settings.group_instance_id

    def child(i: int) -> dict[str, str]:
        return {**env, "GROUP_INSTANCE_ID": member_instance_id(base, str(i))} if base else env

    cmd = [sys.executable, "-m", "barcodeflow.cli", "worker", "--processes", "1"]
    children = [subprocess.Popen(cmd, env=child(i)) for i in range(1, n + 1)]  # noqa: S603 - our own entry point

    def stop(*_: object) -> None:
        for c in children:
            if c.poll() is None:
                c.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    codes = [c.wait() for c in children]
    return max(codes, default=0)


def run_sink(args: argparse.Namespace) -> int:
    from barcodeflow.memory import tune_gc
    from sink.app import run_sink as sink_main
    from stream_app.topics import ensure_topics

    settings: Settings = args.settings
    logging.basicConfig(
        level=_level(args).upper(), format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
    )

    async def main() -> None:
        await ensure_topics(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await sink_main(settings, stop)

    tune_gc()
    asyncio.run(main())
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    w = sub.add_parser("worker", help="run the render worker (intake loop + Faust render agent)")
    w.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="render processes per worker (default RENDER_CONCURRENCY, 2)",
    )
    w.add_argument(
        "--processes",
        type=int,
        default=1,
        help="worker processes to run in the consumer group (each with its own render pool)",
    )
    w.set_defaults(func=run_worker)
    s = sub.add_parser("sink", help="run the sink (aggregates item results into BatchResults; an aiokafka loop)")
    s.set_defaults(func=run_sink)
