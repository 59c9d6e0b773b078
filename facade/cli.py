"""``barcodeflow facade``: serve the HTTP API with uvicorn (one process; scale with more replicas)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "facade",
        help="serve the HTTP API (POST /v1/batches, GET /v1/barcodes/...)",
        description=(
            "Serve the barcodeflow HTTP facade. One process per replica: run more replicas (each with its "
            "own port) behind a load balancer; they share rate limits and results through Redis."
        ),
    )
    p.add_argument("--host", default=None, help="bind address (default FACADE_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default FACADE_PORT, 8000)")
    p.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="start even with no API key configured (every caller is anonymous); or FACADE_ALLOW_NO_AUTH=1",
    )
    p.add_argument(
        "--render-executor",
        choices=("process", "thread"),
        default=None,
        help="where single images render: a small spawn process pool (default) or a thread pool",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from barcodeflow.memory import tune_gc
    from barcodeflow.settings import ConfigError
    from facade.app import create_app
    from facade.http import CoalescingHttpToolsProtocol

    settings = args.settings
    changes = {}
    if args.host is not None:
        changes["facade_host"] = args.host
    if args.port is not None:
        changes["facade_port"] = args.port
    if args.render_executor is not None:
        changes["facade_render_executor"] = args.render_executor
    if args.insecure_no_auth:
        changes["facade_allow_no_auth"] = True
    if changes:
        settings = settings.with_(**changes)
    try:
        app = create_app(settings)
    except ConfigError as exc:
        print(f"barcodeflow facade: {exc}", file=sys.stderr)
        return 2
    tune_gc()
    uvicorn.run(
        app,
        host=settings.facade_host,
        port=settings.facade_port,
        workers=None,
        http=CoalescingHttpToolsProtocol,  # httptools, each response in one send()
        # the facade resolves client addresses itself (trusted_proxies); uvicorn must not rewrite them
        proxy_headers=False,
        forwarded_allow_ips="",
        server_header=False,
        log_level=settings.log_level.lower(),
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    return 0
