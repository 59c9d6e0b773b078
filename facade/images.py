"""``GET /v1/barcodes/{barcode_type}.{svg|png}``: one barcode rendered in-process, cached in Redis.

* The query parameters become one item (``barcode_type``, ``data``, ``format`` and ``options``) and go
  through the render core's ``normalize_item``, so errors carry the same stable codes as batch items.
  Every item error, including ``unsupported_type``, is 422 ``{"error": {"code", "message", "field"}}``.
* ``ETag`` is ``"<spec.cache_key()>"``; a matching ``If-None-Match`` answers 304 before any cache
  lookup or rendering. Responses are ``Cache-Control: public, max-age=86400, immutable``.
* Rendering runs in the render core's ``RenderPool``, never on the event loop: spawned processes
  (default; ``FACADE_RENDER_WORKERS`` of them) or threads.
* The shared two-level cache (in-process LRU + Redis ``bf:img:{cache_key}``, TTL
  ``cache_default_ttl``): every Redis call is bounded by ``cache_timeout_ms``, and a Redis outage
  only means rendering every time.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures.process import BrokenProcessPool
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from barcodeflow.cache import CachedImage, TwoLevelCache
from barcodeflow.settings import Settings
from facade.errors import ApiError, FacadeCode, doc_error
from facade.guard import Principal, guard
from facade.metrics import Metrics
from render import SUPPORTED_TYPES, Outcome, RenderSpec, normalize_item
from render.pool import RenderPool
from schemas.errors import ItemError

log = logging.getLogger(__name__)

_COLOUR = r"^(#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6})$"  # documented only; the render core validates
_BACKGROUND = r"^(#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}|transparent)$"
_SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'; sandbox"


class ImageService:
    """Renders single images with the pipeline's machinery: ``RenderPool`` and ``TwoLevelCache``
    (same Redis keys and value format as the pipeline, so either side's renders serve the other)."""

    def __init__(self, settings: Settings, redis: Any | None, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        s = settings
        self.cache = TwoLevelCache(
            redis, max_size=s.cache_max_size, ttl=s.cache_default_ttl, timeout_ms=s.cache_timeout_ms
        )
        self.pool = RenderPool(s.facade_render_processes, kind=s.facade_render_executor)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._inflight = 0
        self.max_inflight = s.facade_render_processes * 16

    def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        self.pool.stop(wait=False)

    async def lookup(self, key: str) -> CachedImage | None:
        errors = self.cache.stats.redis_errors
        found = (await self.cache.get_many([key])).get(key)
        if self.cache.stats.redis_errors != errors:
            self.metrics.cache.labels("error").inc()
        self.metrics.cache.labels("hit" if found is not None else "miss").inc()
        return found

    async def render(self, spec: RenderSpec) -> Outcome:
        # bounded queue in front of the pool: overload is a fast 503, not an ever-growing backlog
        if self._inflight >= self.max_inflight:
            raise ApiError(503, FacadeCode.RENDER_UNAVAILABLE, "renderer busy; try again", headers={"Retry-After": "1"})
        self._inflight += 1
        try:
            [outcome] = await asyncio.wait_for(self.pool.run([spec.to_dict()]), self.settings.facade_render_timeout_s)
        except TimeoutError:
            raise ApiError(
                503,
                FacadeCode.RENDER_UNAVAILABLE,
                f"rendering took longer than {self.settings.facade_render_timeout_s:g} s",
                headers={"Retry-After": "1"},
            ) from None
        except BrokenProcessPool:
            raise ApiError(
                503, FacadeCode.RENDER_UNAVAILABLE, "renderer restarting; try again", headers={"Retry-After": "1"}
            ) from None
        finally:
            self._inflight -= 1
        return outcome

    def store(self, key: str, image: CachedImage) -> None:
        """Cache in the background: the response does not wait for Redis."""
        task = asyncio.create_task(self.cache.put_many({key: image}))
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
        "Cache-Control": f"public, max-age={service.settings.facade_image_max_age_s}, immutable",
        "X-Content-Type-Options": "nosniff",
    }
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)

    cached = await service.lookup(key)
    if cached is not None:
        headers["X-Cache"] = "hit"
    else:
        outcome = await service.render(spec)
        if not outcome.success or outcome.image is None or outcome.content_type is None:
            raise _item_error(outcome.error or {}, metrics)
        metrics.renders.observe(outcome.elapsed_ms / 1000)
        cached = CachedImage(image=outcome.image, content_type=outcome.content_type, metadata=outcome.metadata or {})
        service.store(key, cached)
        headers["X-Cache"] = "miss"
    content_type, image = cached.content_type, cached.image
    if content_type.startswith("image/svg"):
        headers["Content-Security-Policy"] = _SVG_CSP
    return Response(content=image, media_type=content_type, headers=headers)
