"""``create_app``: the barcodeflow HTTP facade as a FastAPI application.

Everything the routes need lives on ``app.state.facade`` (a ``FacadeState``). The lifespan starts the
Kafka producer and result listener (in the background, retried: a facade with a dead broker still
starts and reports it on ``/readyz``), the Redis results writer, and closes them all on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from barcodeflow.redis import RedisGuard, redis_client
from barcodeflow.settings import Settings
from facade import batches, health, images
from facade.auth import Authenticator, load_api_keys
from facade.config import FacadeConfig
from facade.errors import install_error_handlers
from facade.images import ImageService
from facade.kafka import Component, KafkaProbe
from facade.metrics import Metrics, MetricsMiddleware
from facade.ratelimit import IPNetwork, RateLimiter, make_storage, parse_trusted
from facade.results_store import ResultsStore
from schemas.models import StrictBatchRequest

log = logging.getLogger(__name__)

DESCRIPTION = """\
HTTP facade of barcodeflow: submit batches of barcodes to the Kafka pipeline and fetch their results,
or render a single barcode directly.

All `/v1` routes need an API key in the `X-API-Key` header and are rate limited per key and per
client address (429 with `Retry-After`). Errors are JSON: `{"error": {"code", "message", "field"?,
"problems"?}}` with stable codes.
"""


@dataclass
class FacadeState:
    config: FacadeConfig
    auth: Authenticator
    limiter: RateLimiter
    results: ResultsStore
    images: ImageService
    metrics: Metrics
    redis: Any | None
    redis_guard: RedisGuard
    publisher: Component
    listener: Component
    kafka_probe: Callable[[], Awaitable[None]]
    trusted_proxies: tuple[IPNetwork, ...]
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` after the response; kept referenced until done, cancelled at shutdown."""
        task = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


async def _bounded(what: str, step: Awaitable[Any], timeout: float) -> None:
    try:
        await asyncio.wait_for(step, timeout)
    except TimeoutError:
        log.warning("shutdown: %s took longer than %.0f s; going on", what, timeout)
    except Exception as exc:  # shutting down anyway: log, do not mask the other steps
        log.warning("shutdown: %s: %r", what, exc)


def create_app(
    settings: Settings | None = None,
    *,
    config: FacadeConfig | None = None,
    publisher: Any | None = None,
    listener: Any | None = None,
    redis: Any | None = None,
    ratelimit_storage: Any | None = None,
    kafka_probe: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    """Build the app. ``publisher``/``listener``/``redis``/``ratelimit_storage``/``kafka_probe`` are
    injectable (tests); by default they are built from the settings. Raises ``ConfigError`` for a
    configuration the facade refuses (e.g. no API keys without the insecure no-auth flag)."""
    if config is None:
        config = FacadeConfig.from_settings(settings or Settings.from_env())
    elif settings is not None and settings is not config.settings:
        config = config.with_(settings=settings)
    cfg = config
    settings = cfg.settings

    auth = Authenticator(load_api_keys(settings), allow_no_auth=cfg.allow_no_auth)
    trusted = parse_trusted(settings.trusted_proxies)
    metrics = Metrics()
    owns_redis = redis is None
    if redis is None:
        redis = redis_client(settings.redis_url, timeout_s=cfg.redis_timeout_s, health_check_interval=30)
    rguard = RedisGuard(timeout=cfg.redis_timeout_s, cooldown=cfg.redis_cooldown_s)
    storage = (
        ratelimit_storage
        if ratelimit_storage is not None
        else make_storage(settings.redis_url, redis, prefix=cfg.ratelimit_prefix)
    )
    limiter = RateLimiter(
        settings.rate_limit,
        storage,
        fail_open=settings.rate_limit_fail_open,
        timeout=cfg.ratelimit_timeout_s,
        cooldown=cfg.redis_cooldown_s,
        metrics=metrics,
    )
    results = ResultsStore(
        redis,
        rguard,
        ttl_s=settings.result_ttl_s,
        metrics=metrics,
        local_max_bytes=cfg.local_results_max_bytes,
    )
    image_service = ImageService(cfg, redis, metrics)

    def make_publisher() -> Any:
        if publisher is not None:
            return publisher
        from producer.client import BatchProducer

        return BatchProducer(settings, client_id="barcodeflow-facade", send_timeout=cfg.publish_timeout_s)

    def make_listener() -> Any:
        if listener is not None:
            return listener
        from producer.results import ResultListener

        return ResultListener(settings, client_id="barcodeflow-facade-results")

    pub = Component(
        "publisher",
        make_publisher,
        start_timeout=cfg.kafka_start_timeout_s,
        retry_interval=cfg.kafka_retry_interval_s,
    )
    lis = Component(
        "listener",
        make_listener,
        start_timeout=cfg.kafka_start_timeout_s,
        retry_interval=cfg.kafka_retry_interval_s,
        on_create=lambda inst: inst.add_callback(results.on_result),
    )
    metrics.kafka_ready.labels("publisher").set_function(lambda: float(pub.is_ready))
    metrics.kafka_ready.labels("listener").set_function(lambda: float(lis.is_ready))

    state = FacadeState(
        config=cfg,
        auth=auth,
        limiter=limiter,
        results=results,
        images=image_service,
        metrics=metrics,
        redis=redis,
        redis_guard=rguard,
        publisher=pub,
        listener=lis,
        kafka_probe=kafka_probe or KafkaProbe(settings, cfg.readiness_timeout_s),
        trusted_proxies=trusted,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await results.start()
        # both start in the background; POST needs both (a batch is never published unless this
        # replica follows the results topic), so waiting here only shortens the not-ready window
        await asyncio.gather(lis.start(wait=cfg.kafka_startup_wait_s), pub.start(wait=cfg.kafka_startup_wait_s))
        if not (lis.is_ready and pub.is_ready):
            log.warning("facade started without Kafka (still retrying); POST /v1/batches answers 503 until then")
        try:
            yield
        finally:
            if state.background:  # cache-answered batches still being published: give them a moment
                await asyncio.wait(state.background, timeout=5)
            # every step bounded: a shutdown that hangs keeps a replica from being replaced
            await _bounded("stopping the Kafka producer", pub.stop(), cfg.shutdown_step_s)
            await _bounded("stopping the result listener", lis.stop(), cfg.shutdown_step_s)
            await _bounded("stopping the results writer", results.stop(), cfg.shutdown_step_s)
            image_service.close()
            if owns_redis:
                await _bounded("closing the Redis client", redis.aclose(), cfg.shutdown_step_s)

    app = FastAPI(
        title="barcodeflow",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.facade = state
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.include_router(batches.router)
    app.include_router(images.router)
    app.include_router(health.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        # Document the *strict* request shape (what a valid batch looks like) as the POST body,
        # while the server accepts the lenient one and reports bad items per item.
        strict = StrictBatchRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        defs = strict.pop("$defs", {})
        strict["properties"]["barcodes"]["maxItems"] = settings.max_batch_size
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in defs.items():
            components.setdefault(name, definition)
        components["BatchRequest"] = strict
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
