"""``barcodeflow`` command line: one sub-command per concept, each defined next to the code it runs.

Every sub-command module exposes ``register(subparsers)``, which adds its parser and sets
``func=callable(args) -> int`` as the handler. Settings are built here, once, from the environment.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from barcodeflow.settings import Settings

# module path -> it registers one or more sub-commands
COMMAND_MODULES = (
    "barcodeflow.commands.render",
    "barcodeflow.commands.up",
    "barcodeflow.commands.worker",
    "producer.cli",
    "facade.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="barcodeflow", description="Batch barcode generation over Kafka")
    parser.add_argument("--log-level", default=None, help="debug, info, warning, error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod_name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name and mod_name.startswith(exc.name):
                continue  # component not installed in this build
            raise
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"barcodeflow: {exc}", file=sys.stderr)
        return 2
    level = (args.log_level or settings.log_level).upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    args.settings = settings
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
