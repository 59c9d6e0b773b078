"""``POST /v1/batches`` and ``GET /v1/batches/{batch_id}``.

POST: read the body (at most ``max_body_bytes``, counted while streaming: 413), decode JSON (400),
validate with ``parse_batch`` (422 ``invalid_batch`` listing every problem), claim ``bf:owner:{id}``,
``listener.expect(id, key id)``, publish with the key's id in the ``x-owner`` header (bounded by
``publish_timeout_s``: 503 ``kafka_unavailable``), then wait for the BatchResult up to ``?timeout=``
(default ``facade_wait_s``, at most 30 s) — the result carries the header back, and a result of the same
id carrying another key's is not this request's:

* result in time: 200 with the BatchResult exactly as the pipeline produced it (the bytes of its
  record on ``barcode.results``, not decoded here). This includes batches the pipeline itself rejected
  (``success: false`` with ``error``): the request was accepted and answered, the document says what
  happened, exactly as ``GET`` returns it later.
* every item already in the render cache: 200 with the BatchResult built from the cache, once Kafka
  acknowledged the request. That answer is this client's only; ``GET`` serves the sink's record of
  the batch (202 until it is there).
* no result yet (or ``?wait=false``): 202 ``{"batch_id", "status": "pending"}`` and
  ``Location: /v1/batches/{id}``.

GET: 200 with the stored result (the record's bytes), 202 while pending, 404 when unknown *or owned by
another key*.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Annotated, Any, Literal
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from barcodeflow.aio import cancel_and_wait
from facade.errors import ApiError, FacadeCode, doc_error
from facade.fastpath import cached_result
from facade.guard import Principal, guard
from producer.errors import KafkaUnavailable
from schemas.errors import BatchValidationError
from schemas.headers import owner_headers
from schemas.models import BatchRequest, BatchResult
from schemas.validate import parse_batch

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["batches"])


class PendingBatch(BaseModel):
    batch_id: str
    status: Literal["pending"] = "pending"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes whatever Content-Length claims."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def validate_batch(doc: Any, max_batch_size: int) -> BatchRequest:
    """``parse_batch``; its work and problem list are bounded for oversized batches."""
    return parse_batch(doc, max_batch_size=max_batch_size)


async def _publish(producer: Any, batch: BatchRequest, owner: str, timeout: float, metrics: Any) -> None:
    """Publish on behalf of ``owner`` (its ``x-owner`` header: the result comes back with it, and is
    stored for that key only) and wait for the broker's ack, or answer 503.

    The 503 cannot promise that nothing happens: a record that missed the deadline can still sit in
    the producer's buffer and be delivered when the broker is back. So the ownership claim is kept
    and the answer names the ``batch_id`` and its ``Location``: poll it, or retry with the same id.
    """
    try:
        await asyncio.wait_for(producer.send(batch, headers=owner_headers(owner)), timeout)
    except (KafkaUnavailable, TimeoutError) as exc:
        metrics.batches.labels("unavailable").inc()
        reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
        bid = str(batch.batch_id)
        raise ApiError(
            503,
            FacadeCode.KAFKA_UNAVAILABLE,
            f"Kafka did not acknowledge the batch ({reason}); it may still be processed: "
            "poll Location, or retry with the same batch_id",
            headers={"Retry-After": "5", "Location": _location(bid)},
            batch_id=bid,
        ) from None


EARLY_LOOKUP_MAX_ITEMS = 10


def _lookup(batch: BatchRequest, state: Any) -> asyncio.Future[dict[str, Any] | None]:
    return asyncio.ensure_future(cached_result(batch, state.images.cache))


async def _drop(task: asyncio.Future[Any] | None) -> None:
    """Forget the cache lookup of a request answered otherwise (its outcome, even a failure, is not needed)."""
    if task is None:
        return
    if not task.done():
        await cancel_and_wait(task)  # type: ignore[arg-type]
    elif not task.cancelled():
        task.exception()  # retrieved: a failed lookup only cost this request its fast path


def _too_large(limit: int) -> ApiError:
    return ApiError(413, FacadeCode.PAYLOAD_TOO_LARGE, f"request body larger than {limit} bytes")


def _location(batch_id: str) -> str:
    return f"/v1/batches/{quote(batch_id, safe='')}"


def _pending(batch_id: str) -> JSONResponse:
    return JSONResponse(
        {"batch_id": batch_id, "status": "pending"},
        status_code=202,
        headers={"Location": _location(batch_id)},
    )


def _unavailable(message: str) -> ApiError:
    return ApiError(503, FacadeCode.KAFKA_UNAVAILABLE, message, headers={"Retry-After": "5"})


_COMMON: dict[int | str, dict[str, Any]] = {
    401: doc_error("Missing or invalid API key."),
    422: doc_error("Invalid parameters or batch; `error.problems` lists every problem."),
    429: doc_error("Rate limit exceeded; see Retry-After."),
    503: doc_error(
        "Kafka, Redis or rate limiting unavailable; see Retry-After. When Kafka did not acknowledge a batch "
        "in time, the body carries its `batch_id` and `Location`: it may still be processed, so poll it or "
        "retry with the same batch_id."
    ),
}

_POST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": BatchResult, "description": "The batch's result (also when the pipeline rejected it)."},
    202: {
        "model": PendingBatch,
        "description": "Accepted; the result is not there yet. Poll the Location.",
        "headers": {"Location": {"schema": {"type": "string"}}},
    },
    400: doc_error("The body is not valid JSON."),
    409: doc_error("The client-chosen batch_id belongs to another API key."),
    413: doc_error("The body is larger than the configured limit."),
    **_COMMON,
}


@router.post(
    "/batches",
    responses=_POST_RESPONSES,
    summary="Submit a batch and (by default) wait for its result",
    operation_id="submit_batch",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchRequest"}}},
        }
    },
)
async def submit_batch(
    request: Request,
    principal: Annotated[Principal, Depends(guard)],
    wait: Annotated[bool, Query(description="Wait for the result (false: answer 202 at once).")] = True,
    timeout: Annotated[
        float | None,
        Query(ge=0, le=30, description="Seconds to wait for the result (default FACADE_WAIT_S, at most 30)."),
    ] = None,
) -> Response:
    state = request.app.state.facade
    settings = state.settings
    metrics = state.metrics
    max_wait = settings.facade_max_wait_s
    if timeout is not None and timeout > max_wait:
        raise ApiError(422, FacadeCode.INVALID_REQUEST, f"timeout must be at most {max_wait:g} s", field="timeout")
    wait_s = settings.facade_wait_s if timeout is None else timeout

    raw = await read_body(request, settings.max_body_bytes)
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, FacadeCode.INVALID_JSON, f"request body is not valid JSON: {exc}") from None
    try:
        if len(raw) > 64 * 1024:  # big documents validate off the event loop
            batch = await run_in_threadpool(validate_batch, doc, settings.max_batch_size)
        else:
            batch = validate_batch(doc, settings.max_batch_size)
    except BatchValidationError as exc:
        metrics.batches.labels("rejected").inc()
        problems = exc.problems  # parse_batch bounds the list
        field = problems[0].get("loc") if problems else None
        message = str(exc)
        if len(message) > 2000:
            message = message[:1997] + "..."
        raise ApiError(422, exc.code, message, field=field or None, problems=problems) from None
    batch_id = str(batch.batch_id)
    metrics.batch_size.observe(len(batch.barcodes))

    publisher, listener = state.publisher, state.listener
    if not (publisher.is_ready and listener.is_ready):
        metrics.batches.labels("unavailable").inc()
        raise _unavailable("Kafka is unavailable; the batch was not accepted")

    # Is every item cached? Its answer is used only once the claim and the publication succeeded. A small
    # batch's lookup runs alongside the claim; a big one's (~1.5 ms of CPU for 100 items) only once the
    # request is published, so that it runs while the pipeline works on the request, not before.
    ask_cache = wait and wait_s > 0
    fast_task = _lookup(batch, state) if ask_cache and len(batch.barcodes) <= EARLY_LOOKUP_MAX_ITEMS else None
    lst = listener.instance
    try:
        await state.results.claim(batch_id, principal.key_id)
    except ApiError:
        metrics.batches.labels("conflict").inc()
        await _drop(fast_task)
        raise
    future = lst.expect(batch_id, principal.key_id)  # not another key's batch under the same id
    started = time.perf_counter()
    try:
        # published (and acknowledged) before answering, even when the cache has the answer:
        # every batch answered is on the record in barcode.requests
        await _publish(publisher.instance, batch, principal.key_id, settings.facade_publish_timeout_s, metrics)
        if ask_cache and fast_task is None:
            fast_task = _lookup(batch, state)
        fast = await fast_task if fast_task is not None else None
        if fast is not None:
            # this answer goes to this client only: the sink's record of the batch is the one stored
            metrics.batches.labels("completed_from_cache").inc()
            return Response(content=orjson.dumps(fast), media_type="application/json")
        if not wait or wait_s <= 0:
            metrics.batches.labels("pending").inc()
            return _pending(batch_id)
        await asyncio.wait({future}, timeout=wait_s)
        if not future.done() or future.cancelled():
            metrics.batches.labels("pending").inc()
            return _pending(batch_id)
        result: bytes = future.result()  # the record's value, answered as it is
    finally:
        lst.forget(batch_id)
        await _drop(fast_task)
    metrics.batches.labels("completed").inc()
    metrics.batch_wait.observe(time.perf_counter() - started)
    metrics.count_item_errors(result)
    return Response(content=result, media_type="application/json")


_GET_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": BatchResult, "description": "The batch's result."},
    202: {"model": PendingBatch, "description": "Known, result not there yet."},
    404: doc_error("No such batch for this API key."),
    **_COMMON,
}


@router.get(
    "/batches/{batch_id:path}",  # client-chosen ids may contain '/'; Location percent-encodes them
    responses=_GET_RESPONSES,
    summary="Get a batch's result",
    operation_id="get_batch",
)
async def get_batch(
    request: Request,
    principal: Annotated[Principal, Depends(guard)],
    batch_id: Annotated[str, Path(description="The id returned by POST /v1/batches.")],
) -> Response:
    state = request.app.state.facade
    not_found = ApiError(404, FacadeCode.NOT_FOUND, "no such batch", field="batch_id")
    if not batch_id or len(batch_id) > 128:
        raise not_found
    found = await state.results.lookup(batch_id, principal.key_id)
    if found.state == "unknown":
        raise not_found
    if found.state == "pending":
        return JSONResponse({"batch_id": batch_id, "status": "pending"}, status_code=202)
    return Response(content=found.result, media_type="application/json")
