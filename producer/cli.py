"""``barcodeflow submit`` and ``barcodeflow replay``."""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson
from tqdm import tqdm

from barcodeflow.settings import Settings
from producer.client import BatchProducer, encode_request
from producer.errors import KafkaUnavailable
from producer.inputs import InputError, InputKind, Source, iter_batches_with_origin, source_name
from producer.outputs import image_files, safe_name
from producer.replay import ReplayError, format_ms, parse_time, replay
from producer.results import ResultListener
from schemas.errors import BatchValidationError
from schemas.models import BatchRequest
from schemas.validate import parse_batch

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID_INPUT = 2
EXIT_KAFKA = 3
EXIT_INTERRUPTED = 130

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_IN_FLIGHT = 8
MAX_REPORTED_ITEM_ERRORS = 20  # per run; the rest are only counted

SUBMIT_DESCRIPTION = """\
Publish barcode batches to Kafka, wait for their results and save the images.

FILE is a BatchRequest JSON object (or a JSON list of them), NDJSON (one BatchRequest per line),
or CSV (one barcode per row; with --type and --data-column). The kind is taken from the extension
(.json, .ndjson/.jsonl, .csv) or guessed from the content; --csv forces CSV. Use - for stdin.
CSV rows are grouped into batches of at most --batch-size (default and maximum: MAX_BATCH_SIZE,
100). JSON/NDJSON batches are sent as written.

Every batch is validated locally first: an invalid batch is reported on stderr with all of its
problems and counts as failed (for a single JSON object, the command exits with 2 instead).
"""

SUBMIT_EPILOG = """\
output:
  with --out DIR: each BatchResult is written to DIR/<batch_id>.json and each image to
    DIR/<batch_id>/<id or index>.svg|.png (PNG decoded from base64). File names are sanitised:
    characters other than A-Z a-z 0-9 . _ - become _, leading dots are dropped, and a name that
    had to be changed gets a short hash suffix so that distinct ids never share a file.
    Nothing is written to stdout.
  without --out: each BatchResult is printed to stdout as one JSON line (NDJSON), as received.
  stderr: progress bar (items; postfix: batches sent, batches completed, items failed), problems,
    and a final summary (batches, items, successful, failed, cached, wall time, codes/s).

exit codes:
  0  every item rendered successfully
  1  some items failed, some batches were invalid, some results did not arrive in --timeout,
     or some files could not be written
  2  the input is unreadable or (single JSON object) not a valid batch; nothing was sent
  3  Kafka is unavailable
"""

REPLAY_DESCRIPTION = """\
Republish past requests from the requests topic (barcode.requests) so the running workers render
them again. Records with since <= timestamp < until are read (without a consumer group) and each
is published again with the same key and batch_id plus a "replay" marker
{replayed_at, source_partition, source_offset}, which the pipeline copies onto the result.
Records that are not JSON objects are skipped and counted (they went to the DLQ originally);
records that are themselves replays are replayed again (and counted).

TIME: ISO-8601 (2026-11-30T20:00:00Z; naive = UTC; 2026-11-30 = midnight UTC), a duration ago
(90s, 15m, 2h, 1d, 1w), "now", or epoch milliseconds (1764532800000).
"""

REPLAY_EPILOG = """\
replay or reset the consumer group?
  replay (this command) is targeted and non-disruptive: the workers keep running, only the
    selected requests (time range, optionally one --batch-id) are published again, each new
    result carries the replay marker (so consumers can tell it from the original), and the new
    results are appended after the old ones on barcode.results. --no-cache forces a fresh render.
    Use it to re-run batches that failed or timed out, or to regenerate a few batches.
  kafka-consumer-groups.sh --group <app id> --reset-offsets --to-datetime ... --execute
    rewinds the workers' group itself: EVERYTHING after that point is reprocessed by all
    consumers of the group, the group must be stopped first (offsets of an active group cannot
    be reset), and the results carry no marker. Use it for disaster recovery (e.g. after a bug
    fix that invalidates every result since a deploy), not for individual batches.

exit codes: 0 success (also when nothing matched), 2 invalid arguments or missing topic,
  3 Kafka unavailable.
"""


# ---------------------------------------------------------------------------------------------
# submit


@dataclass
class SubmitStats:
    batches: int = 0  # batches in the input
    sent: int = 0
    completed: int = 0  # results received
    invalid: int = 0  # failed local validation (never sent)
    timed_out: int = 0
    unreadable: int = 0  # results that are not a JSON object
    items: int = 0
    successful: int = 0
    failed: int = 0  # item failures, including items of invalid / timed-out batches
    cached: int = 0
    files: int = 0
    write_errors: int = 0  # images or result files that could not be written
    wall_s: float = 0.0
    item_errors_shown: int = 0

    def ok(self) -> bool:
        return (
            self.failed == 0
            and self.invalid == 0
            and self.timed_out == 0
            and self.unreadable == 0
            and self.write_errors == 0
            and self.successful == self.items
        )

    def lines(self) -> list[str]:
        rate = self.completed_items / self.wall_s if self.wall_s > 0 else 0.0
        return [
            f"batches:    {self.batches} (sent {self.sent}, completed {self.completed}, "
            f"invalid {self.invalid}, timed out {self.timed_out}"
            + (f", unreadable {self.unreadable})" if self.unreadable else ")"),
            f"items:      {self.items} (successful {self.successful}, failed {self.failed}, cached {self.cached})",
            f"wall time:  {self.wall_s:.2f} s ({rate:.1f} codes/s)",
        ]

    @property
    def completed_items(self) -> int:
        return self.successful + self.failed


@dataclass
class SubmitOptions:
    source: Source
    kind: InputKind | None = None
    csv_type: str | None = None
    data_column: str | None = None
    id_column: str | None = None
    format: str = "svg"
    batch_size: int = 100
    out: Path | None = None
    timeout: float = DEFAULT_TIMEOUT_S
    in_flight: int = DEFAULT_IN_FLIGHT
    no_cache: bool = False
    progress: bool = True

    def batches(self) -> Iterator[tuple[str, dict[str, Any]]]:
        return iter_batches_with_origin(
            self.source,
            kind=self.kind,
            csv_type=self.csv_type,
            data_column=self.data_column,
            id_column=self.id_column,
            format=self.format,
            batch_size=self.batch_size,
        )


def _describe(origin: str, name: str) -> str:
    return f"{name} {origin}".strip() if origin else name


def _problems_text(problems: list[dict[str, str]]) -> str:
    return "\n".join(f"  - {p['loc']}: {p['message']}" if p.get("loc") else f"  - {p['message']}" for p in problems)


def _prescan(opts: SubmitOptions, settings: Settings, err: TextIO) -> tuple[int, int] | None:
    """Read the input once: totals, or ``None`` (after printing why) when it is invalid input."""
    name = source_name(opts.source)
    batches = items = 0
    single: dict[str, Any] | None = None
    try:
        for origin, doc in opts.batches():
            batches += 1
            barcodes = doc.get("barcodes")
            items += len(barcodes) if isinstance(barcodes, list) else 0
            single = doc if origin == "" else None
    except InputError as exc:
        print(f"barcodeflow submit: invalid input: {exc}", file=err)
        return None
    if batches == 0:
        print(f"barcodeflow submit: invalid input: {name} contains no batches", file=err)
        return None
    if single is not None:  # a single JSON object: an invalid batch is invalid input
        try:
            parse_batch(single, max_batch_size=settings.max_batch_size)
        except BatchValidationError as exc:
            print(f"barcodeflow submit: invalid input: {name} is not a valid batch:", file=err)
            print(_problems_text(exc.problems), file=err)
            return None
    if not isinstance(opts.source, str | os.PathLike):
        opts.source.seek(0)
    return batches, items


class _Submitter:
    def __init__(self, settings: Settings, opts: SubmitOptions, out: TextIO, err: TextIO, items: int) -> None:
        self.settings = settings
        self.opts = opts
        self.out = out
        self.err = err
        self.total_items = items
        self.stats = SubmitStats()
        self.bar: tqdm[Any] | None = None  # created once Kafka answered

    def _open_bar(self) -> None:
        self.bar = tqdm(
            total=self.total_items,
            unit="code",
            desc="submit",
            file=self.err,
            disable=not self.opts.progress,
            dynamic_ncols=True,
            leave=True,
        )
        self._postfix()

    def _postfix(self) -> None:
        if self.bar is not None:
            s = self.stats
            self.bar.set_postfix(sent=s.sent, completed=s.completed, failed=s.failed, refresh=False)

    def say(self, msg: str) -> None:
        if self.bar is None or self.bar.disable:
            print(msg, file=self.err)
        else:
            self.bar.write(msg, file=self.err)

    def _advance(self, n: int) -> None:
        self._postfix()
        if self.bar is not None:
            self.bar.update(n)

    async def run(self) -> int:
        listener = ResultListener(self.settings, client_id="barcodeflow-submit-results")
        try:
            await listener.start()  # before anything is sent: it starts at the end of the topic
        except KafkaUnavailable as exc:
            self.say(f"barcodeflow submit: Kafka unavailable: {exc}")
            return EXIT_KAFKA
        try:
            producer = BatchProducer(self.settings, client_id="barcodeflow-submit")
            try:
                await producer.start()
            except KafkaUnavailable as exc:
                self.say(f"barcodeflow submit: Kafka unavailable: {exc}")
                return EXIT_KAFKA
            try:
                return await self._run(listener, producer)
            finally:
                await producer.stop()
        finally:
            if self.bar is not None:
                self.bar.close()
            await listener.stop()

    async def _run(self, listener: ResultListener, producer: BatchProducer) -> int:
        self._open_bar()
        started = time.perf_counter()
        code = EXIT_OK
        try:
            await self._send_all(listener, producer)
        except* KafkaUnavailable as group:
            self.say(f"barcodeflow submit: Kafka unavailable: {group.exceptions[0]}")
            code = EXIT_KAFKA
        except* InputError as group:  # the file changed between the two reads
            self.say(f"barcodeflow submit: invalid input: {group.exceptions[0]}")
            code = EXIT_INVALID_INPUT
        self.stats.wall_s = time.perf_counter() - started
        if code == EXIT_OK and not self.stats.ok():
            code = EXIT_FAILED
        return code

    async def _send_all(self, listener: ResultListener, producer: BatchProducer) -> None:
        sem = asyncio.Semaphore(max(1, self.opts.in_flight))
        seen: dict[str, str] = {}
        name = source_name(self.opts.source)
        async with asyncio.TaskGroup() as tg:
            for origin, doc in self.opts.batches():
                where = _describe(origin, name)
                self.stats.batches += 1
                barcodes = doc.get("barcodes")
                n_items = len(barcodes) if isinstance(barcodes, list) else 0
                self.stats.items += n_items
                if self.opts.no_cache:
                    doc = _with_no_cache(doc)
                try:
                    req = parse_batch(doc, max_batch_size=self.settings.max_batch_size)
                except BatchValidationError as exc:
                    self._invalid(where, n_items, exc.problems)
                    continue
                assert req.batch_id is not None  # noqa: S101 - parse_batch assigns one
                if req.batch_id in seen:
                    msg = f"duplicate batch_id {req.batch_id!r} (also used by {seen[req.batch_id]})"
                    self._invalid(where, n_items, [{"loc": "batch_id", "message": msg}])
                    continue
                seen[req.batch_id] = where
                await sem.acquire()
                fut = listener.expect(req.batch_id)
                tg.create_task(self._one(producer, listener, req, fut, where, sem))

    def _invalid(self, where: str, n_items: int, problems: list[dict[str, str]]) -> None:
        self.stats.invalid += 1
        self.stats.failed += n_items
        self.say(f"{where}: invalid batch, not sent:\n{_problems_text(problems)}")
        self._advance(n_items)

    async def _one(
        self,
        producer: BatchProducer,
        listener: ResultListener,
        req: BatchRequest,
        fut: asyncio.Future[bytes],
        where: str,
        sem: asyncio.Semaphore,
    ) -> None:
        batch_id = req.batch_id
        assert batch_id is not None  # noqa: S101
        n_items = len(req.barcodes)
        try:
            await producer.send_raw(encode_request(req), key=batch_id.encode())
            self.stats.sent += 1
            self._postfix()
            try:
                raw = await asyncio.wait_for(asyncio.shield(fut), self.opts.timeout)
            except TimeoutError:
                self.stats.timed_out += 1
                self.stats.failed += n_items
                self.say(f"{where}: batch {batch_id}: no result within {self.opts.timeout:g} s")
                self._advance(n_items)
                return
        finally:
            listener.forget(batch_id)
            sem.release()
        self.stats.completed += 1
        try:
            result = orjson.loads(raw)
            problem = None if isinstance(result, dict) else f"a JSON {type(result).__name__}, not an object"
        except orjson.JSONDecodeError as exc:
            problem = f"not valid JSON: {exc}"
        if problem is not None:
            self.stats.unreadable += 1
            self.stats.failed += n_items
            self.say(f"{where}: batch {batch_id}: unreadable result ({problem}); skipped")
            self._advance(n_items)
            return
        await self._handle_result(result, raw, where, n_items)

    async def _handle_result(self, result: dict[str, Any], raw: bytes, where: str, n_items: int) -> None:
        batch_id = str(result.get("batch_id"))
        items = [it for it in result.get("results") or [] if isinstance(it, dict)]
        ok = sum(1 for it in items if it.get("success"))
        cached = sum(1 for it in items if it.get("success") and it.get("cached"))
        failed = max(n_items - ok, 0)
        self.stats.successful += ok
        self.stats.failed += failed
        self.stats.cached += cached
        err = result.get("error")
        if isinstance(err, dict):
            problems = err.get("problems") or []
            detail = f"\n{_problems_text(problems)}" if problems else ""
            self.say(f"{where}: batch {batch_id} rejected: {err.get('code')}: {err.get('message')}{detail}")
        elif failed:
            self._report_item_errors(where, batch_id, items, failed, n_items)
        if self.opts.out is not None:
            try:
                written, problems = await asyncio.to_thread(self._write, result)
            except OSError as exc:
                written, problems = 0, [f"cannot write the results: {exc}"]
            self.stats.files += written
            self.stats.write_errors += len(problems)
            for p in problems:
                self.say(f"{where}: batch {batch_id}: {p}")
        else:  # one line per result: the record as received, unless it spans lines
            line = raw if b"\n" not in raw and b"\r" not in raw else orjson.dumps(result)
            self.out.write(line.decode() + "\n")
            self.out.flush()
        self._advance(n_items)

    def _report_item_errors(
        self, where: str, batch_id: str, items: list[dict[str, Any]], failed: int, n_items: int
    ) -> None:
        self.say(f"{where}: batch {batch_id}: {failed} of {n_items} item(s) failed")
        for it in items:
            if it.get("success"):
                continue
            if self.stats.item_errors_shown >= MAX_REPORTED_ITEM_ERRORS:
                if self.stats.item_errors_shown == MAX_REPORTED_ITEM_ERRORS:
                    self.say("  (further item errors are not shown; see the results)")
                    self.stats.item_errors_shown += 1
                return
            self.stats.item_errors_shown += 1
            e = it.get("error") or {}
            ident = f" id {it.get('id')!r}" if it.get("id") is not None else ""
            self.say(f"  - item [{it.get('index')}]{ident}: {e.get('code')}: {e.get('message')}")

    def _write(self, result: dict[str, Any]) -> tuple[int, list[str]]:
        """Runs in a worker thread: ``{out}/{batch_id}.json`` and ``{out}/{batch_id}/<image files>``."""
        assert self.opts.out is not None  # noqa: S101
        stem = safe_name(str(result.get("batch_id")))
        self.opts.out.mkdir(parents=True, exist_ok=True)
        (self.opts.out / f"{stem}.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
        files, problems = image_files(result)
        if files:
            folder = self.opts.out / stem
            folder.mkdir(exist_ok=True)
            for fname, content in files:
                (folder / fname).write_bytes(content)
        return len(files), problems


def _with_no_cache(doc: dict[str, Any]) -> dict[str, Any]:
    opts = doc.get("options")
    if opts is None:
        return {**doc, "options": {"no_cache": True}}
    if isinstance(opts, dict):
        return {**doc, "options": {**opts, "no_cache": True}}
    return doc  # invalid already; validation reports it


def run_submit(settings: Settings, opts: SubmitOptions, *, out: TextIO, err: TextIO) -> tuple[int, SubmitStats]:
    totals = _prescan(opts, settings, err)
    if totals is None:
        return EXIT_INVALID_INPUT, SubmitStats()
    submitter = _Submitter(settings, opts, out, err, totals[1])
    code = asyncio.run(submitter.run())
    if code not in (EXIT_KAFKA, EXIT_INVALID_INPUT) or submitter.stats.sent:
        for line in submitter.stats.lines():
            print(line, file=err)
        if opts.out is not None:
            print(f"output:     {opts.out} ({submitter.stats.files} image file(s))", file=err)
    return code, submitter.stats


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _quiet_kafka_client() -> None:
    """aiokafka's INFO chatter (subscriptions, group state) would interleave with the progress bar."""
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("aiokafka").setLevel(logging.WARNING)


def _submit_cmd(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    _quiet_kafka_client()
    if args.batch_size is not None and args.batch_size > settings.max_batch_size:
        print(
            f"barcodeflow submit: --batch-size {args.batch_size} exceeds MAX_BATCH_SIZE ({settings.max_batch_size})",
            file=sys.stderr,
        )
        return EXIT_INVALID_INPUT
    source: Source
    if args.file == "-":
        buffered = io.StringIO(sys.stdin.read())  # read twice: counted first, then sent
        buffered.name = "<stdin>"
        source = buffered
    else:
        source = Path(args.file)
    kind: InputKind | None = "csv" if args.csv else None
    if args.out:
        try:
            Path(args.out).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"barcodeflow submit: cannot create --out directory {args.out}: {exc}", file=sys.stderr)
            return EXIT_INVALID_INPUT
    opts = SubmitOptions(
        source=source,
        kind=kind,
        csv_type=args.type,
        data_column=args.data_column,
        id_column=args.id_column,
        format=args.format,
        batch_size=args.batch_size or settings.max_batch_size,
        out=Path(args.out) if args.out else None,
        timeout=args.timeout,
        in_flight=args.in_flight,
        no_cache=args.no_cache,
        progress=not args.no_progress,
    )
    try:
        code, _ = run_submit(settings, opts, out=sys.stdout, err=sys.stderr)
    except KeyboardInterrupt:
        print("barcodeflow submit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


# ---------------------------------------------------------------------------------------------
# replay


def _time_arg(text: str) -> int:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _replay_cmd(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    _quiet_kafka_client()
    try:
        report = asyncio.run(
            replay(
                settings,
                args.since,
                until_ms=args.until,
                batch_id=args.batch_id,
                no_cache=args.no_cache,
                dry_run=args.dry_run,
            )
        )
    except ReplayError as exc:
        print(f"barcodeflow replay: {exc}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except KafkaUnavailable as exc:
        print(f"barcodeflow replay: Kafka unavailable: {exc}", file=sys.stderr)
        return EXIT_KAFKA
    except KeyboardInterrupt:
        print("barcodeflow replay: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.dry_run:
        for r in report.records:
            row = {
                "partition": r.partition,
                "offset": r.offset,
                "timestamp": format_ms(r.timestamp_ms),
                "batch_id": r.batch_id,
                "items": r.items,
                "was_replay": r.was_replay,
            }
            sys.stdout.write(orjson.dumps(row).decode() + "\n")
    for line in report.lines():
        print(line, file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "submit",
        help="publish batches from a JSON/NDJSON/CSV file and save the results",
        description=SUBMIT_DESCRIPTION,
        epilog=SUBMIT_EPILOG,
        formatter_class=fmt,
    )
    p.add_argument("file", metavar="FILE", help="input file (.json, .ndjson/.jsonl, .csv) or - for stdin")
    p.add_argument("--out", metavar="DIR", help="write results and images under DIR (else: results on stdout)")
    p.add_argument("--csv", action="store_true", help="read FILE as CSV whatever its name")
    p.add_argument("--type", metavar="T", help="CSV: barcode type of every row (qr, ean13, code128, ...)")
    p.add_argument("--data-column", metavar="C", help="CSV: column holding the data to encode")
    p.add_argument("--id-column", metavar="I", help="CSV: column holding the item id (optional)")
    p.add_argument("--format", choices=("svg", "png"), default="svg", help="CSV: output format (default: svg)")
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        metavar="N",
        help="CSV: rows per batch (default: 100)",
    )
    p.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"seconds to wait for each batch's result after publishing it (default: {DEFAULT_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--in-flight",
        type=_positive_int,
        default=DEFAULT_IN_FLIGHT,
        metavar="N",
        help=f"batches published but not yet answered, at most (default: {DEFAULT_IN_FLIGHT})",
    )
    p.add_argument("--no-cache", action="store_true", help="render afresh (sets options.no_cache on every batch)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_submit_cmd)

    r = subparsers.add_parser(
        "replay",
        help="republish past requests from barcode.requests (marked as replays)",
        description=REPLAY_DESCRIPTION,
        epilog=REPLAY_EPILOG,
        formatter_class=fmt,
    )
    r.add_argument("--since", required=True, type=_time_arg, metavar="TIME", help="first timestamp (inclusive)")
    r.add_argument("--until", type=_time_arg, metavar="TIME", help="end timestamp (exclusive; default: now)")
    r.add_argument("--batch-id", metavar="ID", help="only this batch (matched on the record key or batch_id)")
    r.add_argument("--no-cache", action="store_true", help="set options.no_cache=true on the replayed requests")
    r.add_argument(
        "--dry-run",
        action="store_true",
        help="publish nothing; list what would be replayed on stdout (one JSON line per record)",
    )
    r.set_defaults(func=_replay_cmd)
