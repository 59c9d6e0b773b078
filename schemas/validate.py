"""Batch-level validation: decode once at the boundary and report every problem, not just the first."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ValidationError

from schemas.errors import BatchValidationError
from schemas.models import DEFAULT_MAX_BATCH_SIZE, BatchRequest, new_batch_id

MAX_PROBLEMS = 100
MAX_JSON_DEPTH = 32  # a batch needs 4 levels (batch, barcodes, item, options); deeper is abuse


_SCALARS = (str, int, float, type(None))  # JSON's leaves (bool is an int)


def _too_deep(doc: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``doc`` nests containers deeper than ``limit`` (iterative: no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        # JSON's scalars are passed over first: an ABC check (``Mapping``) of every leaf cost as much as the
        # rest of the validation of a 100-item batch
        children = node.values() if isinstance(node, Mapping) else node
        stack.extend((v, depth + 1) for v in children if not isinstance(v, _SCALARS) and isinstance(v, Mapping | list))
    return False


def _capped(problems: list[dict[str, str]]) -> list[dict[str, str]]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    more = len(problems) - MAX_PROBLEMS
    return [*problems[:MAX_PROBLEMS], {"loc": "", "message": f"... and {more} more problems"}]


def _loc(parts: tuple[Any, ...]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def decode_json(raw: bytes | bytearray | memoryview | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BatchValidationError([{"loc": "", "message": f"not valid JSON: {exc}"}]) from None


def parse_batch(
    raw: bytes | bytearray | memoryview | str | Mapping[str, Any],
    *,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    assign_id: bool = True,
) -> BatchRequest:
    """Turn wire input into a ``BatchRequest`` or raise ``BatchValidationError`` listing all problems."""
    doc = raw if isinstance(raw, Mapping) else decode_json(raw)
    if not isinstance(doc, Mapping):
        raise BatchValidationError([{"loc": "", "message": f"a batch must be a JSON object, got {type(doc).__name__}"}])
    if _too_deep(doc):
        # pydantic and orjson refuse to serialise ~255 levels; such a batch could be accepted but
        # never re-published (facade, producer) — reject it here, before anything else
        raise BatchValidationError([{"loc": "", "message": f"JSON nested deeper than {MAX_JSON_DEPTH} levels"}])
    problems: list[dict[str, str]] = []
    barcodes = doc.get("barcodes")
    if isinstance(barcodes, list):
        ids = [it.get("id") for it in barcodes if isinstance(it, Mapping) and it.get("id") is not None]
        dupes = sorted(str(k) for k, n in Counter(map(str, ids)).items() if n > 1)
        if dupes:
            shown = ", ".join(dupes[:20]) + (f" and {len(dupes) - 20} more" if len(dupes) > 20 else "")
            problems.append({"loc": "barcodes", "message": f"duplicate item ids: {shown}"})
    if isinstance(barcodes, list) and len(barcodes) > max_batch_size:
        # bounded work: only the first ``max_batch_size`` items are examined further, so a 1 MiB
        # message of 500,000 tiny items costs no more than a full batch (and not 500,000 problems)
        problems.append(
            {"loc": "barcodes", "message": f"{len(barcodes)} items exceed the maximum batch size of {max_batch_size}"}
        )
        barcodes = barcodes[:max_batch_size]
        doc = {**doc, "barcodes": barcodes}
    if "barcodes" not in doc:
        problems.append({"loc": "barcodes", "message": "field required"})
    elif isinstance(barcodes, list):
        if not barcodes:
            problems.append({"loc": "barcodes", "message": "a batch needs at least one item"})
    try:
        req = BatchRequest.model_validate(doc)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = _loc(tuple(err["loc"]))
            value = err.get("input")
            shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
            if len(shown) > 60:
                shown = shown[:57] + "..."
            problems.append({"loc": loc, "message": f"{err['msg']} (got {shown})"})
        raise BatchValidationError(_capped(problems)) from None
    if problems:
        raise BatchValidationError(problems)
    if req.batch_id is None and assign_id:
        req.batch_id = new_batch_id()
    return req


def peek_batch_id(raw: bytes | bytearray | memoryview | str | Mapping[str, Any]) -> str | None:
    """Best effort: the ``batch_id`` of an otherwise invalid message, so a waiting client can be answered."""
    try:
        doc = raw if isinstance(raw, Mapping) else orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        return None
    if isinstance(doc, Mapping):
        bid = doc.get("batch_id")
        if isinstance(bid, str) and 0 < len(bid) <= 128:
            return bid
    return None
