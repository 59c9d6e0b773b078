"""Read input files into batch dicts (pure: no Kafka, no validation of item content).

Shared by ``barcodeflow submit`` and ``barcodeflow render --csv``. Three input kinds:

* ``json``   -- one BatchRequest object, or a JSON list of them;
* ``ndjson`` -- one BatchRequest object per line (blank lines are skipped);
* ``csv``    -- one barcode per row; ``data_column`` (and optionally ``id_column``) name the columns,
  ``csv_type`` is the barcode type of every row. Rows are grouped into batches of ``batch_size``.

Batches are yielded as plain dicts; validating them (``schemas.parse_batch``) is the caller's job,
so that one bad batch can be reported without stopping the others. Structural problems of the file
itself (not JSON, a bad NDJSON line, a missing CSV column) raise :class:`InputError` instead.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import orjson

from schemas.errors import BarcodeflowError
from schemas.models import DEFAULT_MAX_BATCH_SIZE

InputKind = Literal["json", "ndjson", "csv"]
Source = TextIO | str | os.PathLike[str]

KINDS: tuple[InputKind, ...] = ("json", "ndjson", "csv")
EXTENSIONS: dict[str, InputKind] = {
    ".json": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".jsonlines": "ndjson",
    ".csv": "csv",
}


class InputError(BarcodeflowError, ValueError):
    """The input file cannot be read as batches; the message says where and why."""


@dataclass(frozen=True)
class InputTotals:
    batches: int
    items: int


def source_name(source: Source) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    return str(getattr(source, "name", "<stream>"))


@contextmanager
def _open(source: Source) -> Iterator[TextIO]:
    if isinstance(source, str | os.PathLike):
        try:
            # utf-8-sig: spreadsheet exports often start with a BOM that would end up in the first header
            fh = open(source, encoding="utf-8-sig", newline="")
        except OSError as exc:
            raise InputError(f"cannot read {os.fspath(source)}: {exc.strerror or exc}") from None
        with fh:
            yield fh
    else:
        yield source


def _kind_from_name(name: str) -> InputKind | None:
    return EXTENSIONS.get(Path(name).suffix.lower())


def sniff_kind(text: str) -> InputKind:
    """Guess the kind from the content: JSON/NDJSON start with ``{`` or ``[``, anything else is CSV."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if not stripped:
        return "json"  # reported as "empty input" by the JSON reader
    if stripped[0] == "[":
        return "json"
    if stripped[0] != "{":
        return "csv"
    lines = [ln for ln in stripped.splitlines() if ln.strip()]
    if len(lines) < 2:
        return "json"
    try:
        first = orjson.loads(lines[0])
    except orjson.JSONDecodeError:
        return "json"  # a pretty-printed object spans several lines
    return "ndjson" if isinstance(first, dict) else "json"


def _resolve(source: Source, kind: InputKind | None) -> tuple[Source, InputKind]:
    """Decide the kind; a stream whose kind must be sniffed is buffered (and returned as a StringIO)."""
    if kind is not None:
        if kind not in KINDS:
            raise InputError(f"unknown input kind {kind!r}; expected one of {', '.join(KINDS)}")
        return source, kind
    by_name = _kind_from_name(source_name(source))
    if by_name is not None:
        return source, by_name
    if isinstance(source, str | os.PathLike):
        with _open(source) as fh:
            head = fh.read(64 * 1024)
        return source, sniff_kind(head)
    text = source.read()
    return io.StringIO(text), sniff_kind(text)


def _loads(text: str, where: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON: {exc}") from None


def _iter_json(fh: TextIO, name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    text = fh.read()
    if not text.strip():
        raise InputError(f"{name}: the input is empty")
    doc = _loads(text.lstrip("\ufeff"), name)
    if isinstance(doc, dict):
        yield "", doc
    elif isinstance(doc, list):
        for i, batch in enumerate(doc):
            if not isinstance(batch, dict):
                raise InputError(f"{name}: element [{i}] of the list is a {type(batch).__name__}, not a batch object")
            yield f"[{i}]", batch
    else:
        raise InputError(f"{name}: expected a batch object or a list of batch objects, got {type(doc).__name__}")


def _iter_ndjson(fh: TextIO, name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for lineno, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        doc = _loads(line.lstrip("\ufeff") if lineno == 1 else line, f"{name} line {lineno}")
        if not isinstance(doc, dict):
            raise InputError(f"{name} line {lineno}: expected a batch object, got {type(doc).__name__}")
        yield f"line {lineno}", doc


def _csv_reader(
    fh: TextIO, name: str, csv_type: str | None, data_column: str | None, id_column: str | None
) -> csv.DictReader[str]:
    if not csv_type:
        raise InputError(f"{name}: CSV input needs a barcode type (--type)")
    if not data_column:
        raise InputError(f"{name}: CSV input needs the name of the data column (--data-column)")
    reader = csv.DictReader(fh)
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        raise InputError(f"{name}: cannot read the CSV header: {exc}") from None
    if not header:
        raise InputError(f"{name}: the CSV file is empty (no header row)")
    if header[0].startswith("\ufeff"):  # a BOM read through a stream that was not opened as utf-8-sig
        header = reader.fieldnames = [header[0].lstrip("\ufeff"), *header[1:]]
    for flag, col in (("--data-column", data_column), ("--id-column", id_column)):
        if col is not None and col not in header:
            found = ", ".join(repr(h) for h in header)
            raise InputError(f"{name}: {flag} {col!r} is not a column of the CSV header; found: {found}")
    return reader


def _iter_csv(
    fh: TextIO,
    name: str,
    *,
    csv_type: str | None,
    data_column: str | None,
    id_column: str | None,
    format: str,
    options: Mapping[str, Any] | None,
    batch_size: int,
) -> Iterator[tuple[str, dict[str, Any]]]:
    reader = _csv_reader(fh, name, csv_type, data_column, id_column)
    items: list[dict[str, Any]] = []
    first_line = 2
    try:
        for row in reader:
            if not items:
                first_line = reader.line_num
            ident = row.get(id_column) if id_column else None
            items.append(
                {
                    "id": ident or None,  # an empty cell means "no id"
                    "barcode_type": csv_type,
                    "data": row.get(data_column) if data_column else None,
                    "format": format,
                    "options": dict(options) if options is not None else None,
                }
            )
            if len(items) >= batch_size:
                yield f"lines {first_line}-{reader.line_num}", {"barcodes": items}
                items = []
    except csv.Error as exc:
        raise InputError(f"{name} line {reader.line_num}: {exc}") from None
    if items:
        yield f"lines {first_line}-{reader.line_num}", {"barcodes": items}


def iter_batches_with_origin(
    source: Source,
    *,
    kind: InputKind | None = None,
    csv_type: str | None = None,
    data_column: str | None = None,
    id_column: str | None = None,
    format: str = "svg",
    options: Mapping[str, Any] | None = None,
    batch_size: int = DEFAULT_MAX_BATCH_SIZE,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Like :func:`iter_batches`, yielding ``(origin, batch)``; origin is e.g. ``"line 7"`` or ``"[2]"``."""
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    if format not in ("svg", "png"):
        raise InputError(f"format must be 'svg' or 'png', got {format!r}")
    source, kind = _resolve(source, kind)
    name = source_name(source)
    with _open(source) as fh:
        if kind == "json":
            yield from _iter_json(fh, name)
        elif kind == "ndjson":
            yield from _iter_ndjson(fh, name)
        else:
            yield from _iter_csv(
                fh,
                name,
                csv_type=csv_type,
                data_column=data_column,
                id_column=id_column,
                format=format,
                options=options,
                batch_size=batch_size,
            )


def iter_batches(
    source: Source,
    *,
    kind: InputKind | None = None,
    csv_type: str | None = None,
    data_column: str | None = None,
    id_column: str | None = None,
    format: str = "svg",
    options: Mapping[str, Any] | None = None,
    batch_size: int = DEFAULT_MAX_BATCH_SIZE,
) -> Iterator[dict[str, Any]]:
    """Yield the batches of ``source`` (a path or a text stream) as dicts.

    ``kind`` is guessed from the file extension (``.json``, ``.ndjson``/``.jsonl``, ``.csv``) or,
    failing that, from the content. JSON and NDJSON batches are yielded as written (never split;
    ``format``/``options``/``batch_size`` apply to CSV only). Raises :class:`InputError` for
    unreadable input; the error may come after some batches were yielded (use :func:`scan` first
    to reject a bad file before doing anything).
    """
    for _, batch in iter_batches_with_origin(
        source,
        kind=kind,
        csv_type=csv_type,
        data_column=data_column,
        id_column=id_column,
        format=format,
        options=options,
        batch_size=batch_size,
    ):
        yield batch


def scan(
    source: Source,
    *,
    kind: InputKind | None = None,
    csv_type: str | None = None,
    data_column: str | None = None,
    id_column: str | None = None,
    batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    **_ignored: Any,
) -> InputTotals:
    """Read the whole input once: count batches and items, raising :class:`InputError` if unreadable.

    A stream is rewound to where it was, so it must be seekable (buffer stdin in a StringIO first).
    Batches whose ``barcodes`` is not a list count as zero items (they fail validation later).
    """
    start: int | None = None
    if not isinstance(source, str | os.PathLike):
        if not source.seekable():
            raise InputError(f"{source_name(source)}: cannot count a non-seekable stream; buffer it first")
        start = source.tell()
    batches = items = 0
    try:
        for batch in iter_batches(
            source,
            kind=kind,
            csv_type=csv_type,
            data_column=data_column,
            id_column=id_column,
            batch_size=batch_size,
        ):
            batches += 1
            barcodes = batch.get("barcodes")
            items += len(barcodes) if isinstance(barcodes, list) else 0
    finally:
        if start is not None and not isinstance(source, str | os.PathLike):
            source.seek(start)
    return InputTotals(batches=batches, items=items)


def count_items(source: Source, **kwargs: Any) -> int:
    """Total number of items in ``source`` (same arguments as :func:`iter_batches`), for a progress bar."""
    return scan(source, **kwargs).items
