"""``create_app``: the barcodeflow HTTP facade as a FastAPI application.

Everything the routes need lives on ``app.state.facade``, a ``FacadeState`` built from the settings by
``build_state``; ``create_app`` only wires it to FastAPI. The lifespan starts the Kafka producer and
result listener (in the background, retried: a facade with a dead broker still starts and reports it on
``/readyz``), the Redis results writer, and closes them all on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from barcodeflow.redis import RedisGuard, redis_client
from barcodeflow.settings import Settings
from facade import batches, health, images
from facade.auth import Authenticator, load_api_keys
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
    settings: Settings
    auth: Authenticator
    limiter: RateLimiter
    results: ResultsStore
    images: ImageService
    metrics: Metrics
    redis: Any | None
    owns_redis: bool
    publisher: Component
    listener: Component
    kafka_probe: Callable[[], Awaitable[None]]
    trusted_proxies: tuple[IPNetwork, ...]
    cache_redis: Any | None = None  # the render cache's own client (CACHE_REDIS_URL), closed with the app


async def _bounded(what: str, step: Awaitable[Any], timeout: float) -> None:
    try:
        await asyncio.wait_for(step, timeout)
    except TimeoutError:
        log.warning("shutdown: %s took longer than %.0f s; going on", what, timeout)
    except Exception as exc:  # shutting down anyway: log, do not mask the other steps
        log.warning("shutdown: %s: %r", what, exc)


def _kafka_components(
    s: Settings, results: ResultsStore, publisher: Any | None, listener: Any | None
) -> tuple[Component, Component]:
    def make_publisher() -> Any:
        if publisher is not None:
            return publisher
        from producer.client import BatchProducer

        return BatchProducer(s, client_id="barcodeflow-facade", send_timeout=s.facade_publish_timeout_s)

    def make_listener() -> Any:
        if listener is not None:
            return listener
        from producer.results import ResultListener

        return ResultListener(s, client_id="barcodeflow-facade-results")

    start, retry = s.facade_kafka_start_timeout_s, s.facade_kafka_retry_interval_s
    pub = Component("publisher", make_publisher, start_timeout=start, retry_interval=retry)
    lis = Component(
        "listener",
        make_listener,
        start_timeout=start,
        retry_interval=retry,
        on_create=lambda inst: inst.add_callback(results.on_result, with_headers=True),
    )
    return pub, lis


def build_state(
    s: Settings,
    *,
    publisher: Any | None = None,
    listener: Any | None = None,
    redis: Any | None = None,
    ratelimit_storage: Any | None = None,
    kafka_probe: Callable[[], Awaitable[None]] | None = None,
) -> FacadeState:
    """Everything the routes need, built from the settings; the arguments replace parts (tests)."""
    s.check_facade()
    metrics = Metrics()
    owns_redis = redis is None
    if redis is None:
        redis = redis_client(s.redis_url, timeout_s=s.facade_redis_timeout_s, health_check_interval=30)
    if ratelimit_storage is None:
        ratelimit_storage = make_storage(redis)
    limiter = RateLimiter(
        s.rate_limit,
        ratelimit_storage,
        fail_open=s.rate_limit_fail_open,
        timeout=s.facade_ratelimit_timeout_s,
        cooldown=s.facade_redis_cooldown_s,
        metrics=metrics,
        prefix=s.facade_ratelimit_prefix,
    )
    guard = RedisGuard(timeout=s.facade_redis_timeout_s, cooldown=s.facade_redis_cooldown_s, what="results store")
    results = ResultsStore(
        redis, guard, ttl_s=s.result_ttl_s, metrics=metrics, local_max_bytes=s.facade_local_results_max_bytes
    )
    pub, lis = _kafka_components(s, results, publisher, listener)
    cache_redis = None
    if s.image_cache_url != s.redis_url:  # the render cache has a Redis of its own
        cache_redis = redis_client(s.image_cache_url, timeout_s=s.facade_redis_timeout_s, health_check_interval=30)
    metrics.kafka_ready.labels("publisher").set_function(lambda: float(pub.is_ready))
    metrics.kafka_ready.labels("listener").set_function(lambda: float(lis.is_ready))
    return FacadeState(
        settings=s,
        auth=Authenticator(load_api_keys(s), allow_no_auth=s.facade_allow_no_auth),
        limiter=limiter,
        results=results,
        images=ImageService(s, cache_redis or redis, metrics),
        metrics=metrics,
        redis=redis,
        owns_redis=owns_redis,
        publisher=pub,
        listener=lis,
        kafka_probe=kafka_probe or KafkaProbe(s, s.facade_readiness_timeout_s),
        trusted_proxies=parse_trusted(s.trusted_proxies),
        cache_redis=cache_redis,
    )


@asynccontextmanager
async def run_state(state: FacadeState) -> AsyncIterator[None]:
    """The facade's lifetime: start the results writer and the Kafka clients, then stop them all."""
    s, pub, lis = state.settings, state.publisher, state.listener
    await state.results.start()
    # both start in the background; POST needs both (a batch is never published unless this
    # replica follows the results topic), so waiting here only shortens the not-ready window
    await asyncio.gather(lis.start(wait=s.facade_kafka_startup_wait_s), pub.start(wait=s.facade_kafka_startup_wait_s))
    if not (lis.is_ready and pub.is_ready):
        log.warning("facade started without Kafka (still retrying); POST /v1/batches answers 503 until then")
    try:
        yield
    finally:
        # every step bounded: a shutdown that hangs keeps a replica from being replaced
        step = s.facade_shutdown_step_s
        await _bounded("stopping the Kafka producer", pub.stop(), step)
        await _bounded("stopping the result listener", lis.stop(), step)
        await _bounded("stopping the results writer", state.results.stop(), step)
        state.images.close()
        if state.owns_redis and state.redis is not None:
            await _bounded("closing the Redis client", state.redis.aclose(), step)
        if state.cache_redis is not None:
            await _bounded("closing the render cache's Redis client", state.cache_redis.aclose(), step)


def openapi_schema(app: FastAPI, max_batch_size: int) -> dict[str, Any]:
    """The generated schema, with the *strict* request shape (what a valid batch looks like) as the POST
    body, while the server accepts the lenient one and reports bad items per item."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    strict = StrictBatchRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = strict.pop("$defs", {})
    strict["properties"]["barcodes"]["maxItems"] = max_batch_size
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, definition in defs.items():
        components.setdefault(name, definition)
    components["BatchRequest"] = strict
    app.openapi_schema = schema
    return schema


def create_app(
    settings: Settings | None = None,
    *,
    publisher: Any | None = None,
    listener: Any | None = None,
    redis: Any | None = None,
    ratelimit_storage: Any | None = None,
    kafka_probe: Callable[[], Awaitable[None]] | None = None,
) -> FastAPI:
    """Build the app. ``publisher``/``listener``/``redis``/``ratelimit_storage``/``kafka_probe`` are
    injectable (tests); by default they are built from the settings. Raises ``ConfigError`` for a
    configuration the facade refuses (e.g. no API keys without the insecure no-auth flag)."""
    settings = settings or Settings.from_env()
    state = build_state(
        settings,
        publisher=publisher,
        listener=listener,
        redis=redis,
        ratelimit_storage=ratelimit_storage,
        kafka_probe=kafka_probe,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with run_state(state):
            yield

    app = FastAPI(title="barcodeflow", version="1.0.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.facade = state
    install_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    app.include_router(batches.router)
    app.include_router(images.router)
    app.include_router(health.router)
    app.openapi = lambda: openapi_schema(app, settings.max_batch_size)  # type: ignore[method-assign]
    return app
