"""``GET /v1/barcodes/{barcode_type}.{svg|png}``: one barcode rendered in-process, cached in Redis.

* The query parameters become one item (``barcode_type``, ``data``, ``format`` and ``options``) and go
  through the render core's ``normalize_item``, so errors carry the same stable codes as batch items.
  Every item error, including ``unsupported_type``, is 422 ``{"error": {"code", "message", "field"}}``.
* ``ETag`` is ``"<spec.cache_key()>"``; a matching ``If-None-Match`` answers 304 before any cache
  lookup or rendering. Responses are ``Cache-Control: public, max-age=86400, immutable``.
* Rendering runs in a small executor, never on the event loop: a spawn ``ProcessPoolExecutor``
  (default; ``render_workers`` processes) or a thread pool.
* Redis caches images under ``bf:img:{cache_key}`` (TTL ``cache_default_ttl``); every cache call is
  bounded by ``cache_timeout_ms`` and a Redis outage only means rendering every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from facade.config import FacadeConfig
from facade.errors import ApiError, FacadeCode, doc_error
from facade.guard import Principal, guard
from facade.metrics import Metrics
from facade.redis_guard import RedisGuard, RedisUnavailable
from facade.render_job import init_worker, render_job
from schemas.errors import ItemError
from stream_app.render.registry import SUPPORTED_TYPES

log = logging.getLogger(__name__)

IMAGE_KEY = "bf:img:{}"
_COLOUR = r"^(#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6})$"  # documented only; the render core validates
_BACKGROUND = r"^(#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}|transparent)$"
_SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


class ImageService:
    def __init__(self, config: FacadeConfig, redis: Any | None, guard_: RedisGuard, metrics: Metrics) -> None:
        self.config = config
        self.redis = redis
        self.guard = guard_
        self.metrics = metrics
        self._executor: Executor | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._inflight = 0
        self.max_inflight = max(1, config.render_workers) * 16

    def _make_executor(self) -> Executor:
        n = max(1, self.config.render_workers)
        if self.config.render_executor == "process":
            return ProcessPoolExecutor(
                max_workers=n, mp_context=multiprocessing.get_context("spawn"), initializer=init_worker
            )
        return ThreadPoolExecutor(max_workers=n, thread_name_prefix="render")

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = self._make_executor()
        return self._executor

    def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def render(self, item: dict[str, Any]) -> tuple[str, Any, Any, float]:
        # bounded queue in front of the executor: overload is a fast 503, not an ever-growing backlog
        if self._inflight >= self.max_inflight:
            raise ApiError(503, FacadeCode.RENDER_UNAVAILABLE, "renderer busy; try again", headers={"Retry-After": "1"})
        self._inflight += 1
        try:
            return await self._render(item)
        finally:
            self._inflight -= 1

    async def _render(self, item: dict[str, Any]) -> tuple[str, Any, Any, float]:
        loop = asyncio.get_running_loop()
        try:
            fut = loop.run_in_executor(self.executor, render_job, item)
            return await asyncio.wait_for(fut, self.config.render_timeout_s)
        except BrokenProcessPool:
            log.error("render worker pool broke; starting a new one")
            broken, self._executor = self._executor, None
            if broken is not None:
                broken.shutdown(wait=False, cancel_futures=True)
            raise ApiError(
                503,
                FacadeCode.RENDER_UNAVAILABLE,
                "renderer restarting; try again",
                headers={"Retry-After": "1"},
            ) from None
        except TimeoutError:
            raise ApiError(
                503,
                FacadeCode.RENDER_UNAVAILABLE,
                f"rendering took longer than {self.config.render_timeout_s:g} s",
                headers={"Retry-After": "1"},
            ) from None

    async def cache_get(self, key: str) -> tuple[str, bytes] | None:
        redis = self.redis
        if redis is None:
            return None
        try:
            raw = await self.guard.run(lambda: redis.get(IMAGE_KEY.format(key)), self.config.cache_timeout_s)
        except RedisUnavailable:
            self.metrics.cache.labels("error").inc()
            return None
        if raw is None:
            self.metrics.cache.labels("miss").inc()
            return None
        ct, sep, image = bytes(raw).partition(b"\n")
        if not sep:
            self.metrics.cache.labels("error").inc()
            return None
        self.metrics.cache.labels("hit").inc()
        return ct.decode("ascii", "replace"), image

    def cache_set(self, key: str, content_type: str, image: bytes) -> None:
        redis = self.redis
        if redis is None or not self.guard.available:
            return
        value = content_type.encode("ascii", "replace") + b"\n" + image
        ttl = max(1, int(self.config.settings.cache_default_ttl))

        async def write() -> None:
            with contextlib.suppress(RedisUnavailable):
                await self.guard.run(
                    lambda: redis.set(IMAGE_KEY.format(key), value, ex=ttl), self.config.cache_timeout_s
                )

        task = asyncio.create_task(write())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        c = candidate.strip()
        if c == "*":
            return True
        if c.startswith("W/"):
            c = c[2:]
        if c == etag:
            return True
    return False


def _item_error(exc: ItemError | dict[str, Any], metrics: Metrics) -> ApiError:
    err = exc.to_dict() if isinstance(exc, ItemError) else exc
    code = str(err.get("code") or "invalid_item")
    metrics.item_errors.labels(code[:64]).inc()
    return ApiError(422, code, str(err.get("message") or "invalid item"), field=err.get("field"))


router = APIRouter(prefix="/v1", tags=["barcodes"])

_IMAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The rendered barcode.",
        "content": {
            "image/svg+xml": {"schema": {"type": "string"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
        },
        "headers": {
            "ETag": {"description": '"<cache key>"', "schema": {"type": "string"}},
            "Cache-Control": {"schema": {"type": "string"}},
        },
    },
    304: {"description": "Not modified (If-None-Match matched the ETag)."},
    401: doc_error("Missing or invalid API key."),
    404: doc_error("No such route (e.g. a barcode type containing '/')."),
    422: doc_error("Invalid parameter or item error; `code` is the stable item error code."),
    429: doc_error("Rate limit exceeded; see Retry-After."),
    503: doc_error("Rate limiting or the renderer is unavailable; see Retry-After."),
}


@router.get(
    "/barcodes/{barcode_type}.{fmt}",
    response_class=Response,
    responses=_IMAGE_RESPONSES,
    summary="Render one barcode as SVG or PNG",
    operation_id="get_barcode",
)
async def get_barcode(
    request: Request,
    principal: Annotated[Principal, Depends(guard)],
    barcode_type: Annotated[
        str,
        Path(
            max_length=64,
            description="Barcode type; an unknown one is a 422 `unsupported_type`.",
            json_schema_extra={"enum": list(SUPPORTED_TYPES)},
        ),
    ],
    fmt: Annotated[Literal["svg", "png"], Path(description="Output format.")],
    data: Annotated[str, Query(max_length=8192, description="The content to encode.")],
    width: Annotated[int | None, Query(ge=1, le=4096)] = None,
    height: Annotated[int | None, Query(ge=1, le=4096)] = None,
    margin: Annotated[int | None, Query(ge=0, le=64)] = None,
    module_size: Annotated[int | None, Query(ge=1, le=64)] = None,
    error_correction: Annotated[Literal["L", "M", "Q", "H"] | None, Query()] = None,
    foreground: Annotated[
        str | None,
        Query(max_length=32, description="#rgb or #rrggbb", json_schema_extra={"pattern": _COLOUR}),
    ] = None,
    background: Annotated[
        str | None,
        Query(
            max_length=32,
            description="#rgb, #rrggbb or transparent",
            json_schema_extra={"pattern": _BACKGROUND},
        ),
    ] = None,
    show_text: Annotated[bool | None, Query()] = None,
) -> Response:
    from stream_app.render import normalize_item

    state = request.app.state.facade
    service: ImageService = state.images
    metrics: Metrics = state.metrics
    options = {
        "width": width,
        "height": height,
        "margin": margin,
        "module_size": module_size,
        "error_correction": error_correction,
        "foreground": foreground,
        "background": background,
        "show_text": show_text,
    }
    item: dict[str, Any] = {"barcode_type": barcode_type, "data": data, "format": fmt}
    opts = {k: v for k, v in options.items() if v is not None}
    if opts:
        item["options"] = opts
    try:
        spec = normalize_item(item)
    except ItemError as exc:
        raise _item_error(exc, metrics) from None
    key = spec.cache_key()
    etag = f'"{key}"'
    headers = {
        "ETag": etag,
        "Cache-Control": f"public, max-age={service.config.image_max_age_s}, immutable",
        "X-Content-Type-Options": "nosniff",
    }
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)

    cached = await service.cache_get(key)
    if cached is not None:
        content_type, image = cached
        headers["X-Cache"] = "hit"
    else:
        status, payload, content_type, seconds = await service.render(item)
        if status != "ok":
            raise _item_error(payload, metrics)
        metrics.renders.observe(seconds)
        image = payload
        service.cache_set(key, content_type, image)
        headers["X-Cache"] = "miss"
    if content_type.startswith("image/svg"):
        headers["Content-Security-Policy"] = _SVG_CSP
    return Response(content=image, media_type=content_type, headers=headers)
