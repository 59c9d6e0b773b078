"""``/healthz`` (the process answers), ``/readyz`` (Kafka + Redis usable) and ``/metrics``. No auth."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


class Check(BaseModel):
    ok: bool
    error: str | None = None


class Readiness(BaseModel):
    status: str
    checks: dict[str, Check]


@router.get("/healthz", response_model=Health, summary="Liveness", operation_id="healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _check(fn: Any, timeout: float) -> dict[str, Any]:
    try:
        await asyncio.wait_for(fn(), timeout)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # any failure means "not ready"; report it
        return {"ok": False, "error": (repr(exc) if not str(exc) else str(exc))[:300]}
    return {"ok": True}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready; `checks` says what failed."}},
    summary="Readiness: Kafka metadata, Redis PING, producer and result listener running",
    operation_id="readyz",
)
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state.facade
    timeout = state.settings.facade_readiness_timeout_s

    async def redis_ping() -> None:
        if state.redis is None:
            raise RuntimeError("no redis client configured")
        if not await state.redis.ping():
            raise RuntimeError("PING failed")

    kafka, redis = await asyncio.gather(_check(state.kafka_probe, timeout), _check(redis_ping, timeout))
    checks: dict[str, dict[str, Any]] = {"kafka": kafka, "redis": redis}
    for comp in (state.publisher, state.listener):
        checks[comp.name] = {"ok": comp.is_ready}
        if not comp.is_ready:
            checks[comp.name]["error"] = comp.last_error or "starting"
    ok = all(c["ok"] for c in checks.values())
    return JSONResponse({"status": "ready" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text."}},
    summary="Prometheus metrics",
    operation_id="metrics",
)
async def metrics(request: Request) -> Response:
    m = request.app.state.facade.metrics
    return Response(content=m.render(), media_type=m.content_type)
