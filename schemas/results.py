"""Building the result documents of the wire format, in pure code (no I/O, no clock of its own).

Shared by the worker (item results, answers from the cache), the sink (one BatchResult per run) and
the embedded path (``barcodeflow render``): one definition of an item result and of a BatchResult.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

from schemas.errors import ErrorCode


def item_result(
    index: int,
    item_id: str | None,
    *,
    image: bytes | None = None,
    content_type: str | None = None,
    metadata: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    cached: bool = False,
    elapsed_ms: float = 0.0,
    include_metadata: bool = True,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": index,
        "id": item_id,
        "success": error is None,
        "cached": cached,
        "generation_time_ms": round(elapsed_ms, 3),
    }
    if error is not None:
        out["error"] = error
        return out
    if image is not None:
        if content_type == "image/svg+xml":
            out["svg"] = image.decode("utf-8")
        else:
            out["png"] = base64.b64encode(image).decode("ascii")
    if include_metadata and metadata is not None:
        out["metadata"] = metadata
    return out


def timeout_item(index: int, item_id: str | None, timeout_s: float) -> dict[str, Any]:
    return item_result(
        index,
        item_id,
        error={
            "code": ErrorCode.TIMEOUT.value,
            "message": f"item not rendered within the batch deadline of {timeout_s:g} s",
        },
    )


def summarize(results: Iterable[Mapping[str, Any]], total_time_ms: float) -> dict[str, Any]:
    rs = list(results)
    ok = sum(1 for r in rs if r.get("success"))
    total = len(rs)
    return {
        "total": total,
        "successful": ok,
        "failed": total - ok,
        "cached": sum(1 for r in rs if r.get("cached")),
        "total_time_ms": round(total_time_ms, 3),
        "average_time_ms": round(total_time_ms / total, 3) if total else 0.0,
    }


def assemble(
    batch_id: str,
    results: Iterable[Mapping[str, Any]],
    *,
    total_time_ms: float,
    replay: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A BatchResult: items in request order, with the summary."""
    ordered = sorted(results, key=lambda r: r["index"])
    out: dict[str, Any] = {
        "batch_id": batch_id,
        "success": all(r.get("success") for r in ordered) and bool(ordered),
        "results": ordered,
        "summary": summarize(ordered, total_time_ms),
    }
    if replay:
        out["replay"] = dict(replay)
    return out


def rejected(
    batch_id: str,
    problems: list[dict[str, str]],
    *,
    replay: Mapping[str, Any] | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """The BatchResult for a batch rejected as a whole (so a waiting client gets an answer): by
    default ``invalid_batch``; ``internal_error`` when the worker failed on a valid batch."""
    out = assemble(batch_id, [], total_time_ms=0.0, replay=replay)
    out["success"] = False
    out["error"] = {
        "code": ErrorCode(code).value if code else ErrorCode.INVALID_BATCH.value,
        "message": "; ".join(f"{p['loc']}: {p['message']}" if p.get("loc") else p["message"] for p in problems),
        "problems": problems,
    }
    return out
