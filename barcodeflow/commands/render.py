"""``barcodeflow render``: render batches in-process (no broker) and print the BatchResult JSON."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm

from barcodeflow.cache import TwoLevelCache
from producer.outputs import image_files
from schemas.errors import BarcodeflowError, BatchValidationError
from schemas.validate import parse_batch

EXIT_OK, EXIT_ITEMS_FAILED, EXIT_INVALID = 0, 1, 2


def write_images(result: dict[str, Any], out: Path, *, first_index: int = 0) -> int:
    """Write every image of ``result`` under ``out``, named after its id or index; returns the count."""
    out.mkdir(parents=True, exist_ok=True)
    files, problems = image_files(result, index_offset=first_index)
    for name, content in files:
        (out / name).write_bytes(content)
    for p in problems:
        print(f"barcodeflow render: {p}", file=sys.stderr)
    return len(files)


def _input_batches(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    from producer.inputs import iter_batches

    src = sys.stdin if args.file in (None, "-") else args.file
    if args.csv or args.type or args.data_column:
        if not (args.type and args.data_column):
            raise BatchValidationError([{"loc": "", "message": "--csv needs --type and --data-column"}])
        yield from iter_batches(
            src, kind="csv", csv_type=args.type, data_column=args.data_column, id_column=args.id_column,
            format=args.format, batch_size=args.settings.max_batch_size,
        )  # fmt: skip
    else:
        yield from iter_batches(src, kind=None, batch_size=args.settings.max_batch_size)


def run(args: argparse.Namespace) -> int:
    try:
        batches = list(_input_batches(args))
        reqs = [parse_batch(b, max_batch_size=args.settings.max_batch_size) for b in batches]
    except BatchValidationError as exc:
        print(f"barcodeflow render: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except (BarcodeflowError, OSError, UnicodeDecodeError) as exc:
        print(f"barcodeflow render: cannot read input: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if not reqs:
        print("barcodeflow render: the input holds no batch", file=sys.stderr)
        return EXIT_INVALID
    from barcodeflow.local import run_batch

    cache = TwoLevelCache(None, max_size=args.settings.cache_max_size)
    failed = 0
    offset = 0
    multi = len(reqs) > 1
    bar = tqdm(total=sum(len(r.barcodes) for r in reqs), unit="code", file=sys.stderr, disable=not multi)
    out = Path(args.out) if args.out else None
    for req in reqs:
        result = asyncio.run(run_batch(req, cache=cache))
        failed += result["summary"]["failed"]
        if out is not None:
            write_images(result, out, first_index=offset if multi else 0)
        offset += len(req.barcodes)
        sys.stdout.buffer.write(orjson.dumps(result, option=0 if multi else orjson.OPT_INDENT_2) + b"\n")
        bar.update(len(req.barcodes))
    bar.close()
    sys.stdout.flush()
    return EXIT_ITEMS_FAILED if failed else EXIT_OK


def add_input_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", action="store_true", help="FILE is CSV: one item per row")
    p.add_argument("--type", help="barcode type of every CSV row (e.g. ean13)")
    p.add_argument("--data-column", help="CSV column holding the data")
    p.add_argument("--id-column", help="CSV column holding the item id")
    p.add_argument("--format", choices=("svg", "png"), default="svg", help="output format of CSV items")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "render",
        help="render batches in-process, without Kafka",
        description="Render a BatchRequest (JSON), NDJSON or CSV in-process and print BatchResult JSON. "
        "Exit 0: every item succeeded; 1: some items failed (results still printed); "
        "2: the input is not a valid batch (message on stderr, nothing on stdout).",
    )
    p.add_argument("file", nargs="?", default="-", help="input file, or - for stdin (default)")
    p.add_argument("--out", help="also write each image to this directory, named after its id or index")
    add_input_arguments(p)
    p.set_defaults(func=run)
