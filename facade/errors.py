"""One JSON error shape for every non-2xx answer: ``{"error": {"code", "message", "field"?, "problems"?}}``.

Codes are stable strings: the ``schemas.errors.ErrorCode`` values for item and batch problems, plus a
few facade-level ones (``FacadeCode``). A 500 is only ever produced for a real bug.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from schemas.models import Problem

log = logging.getLogger(__name__)


class FacadeCode(StrEnum):
    INVALID_JSON = "invalid_json"
    INVALID_REQUEST = "invalid_request"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNAUTHORIZED = "unauthorized"
    RATE_LIMITED = "rate_limited"
    RATE_LIMIT_UNAVAILABLE = "rate_limit_unavailable"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    BATCH_ID_CONFLICT = "batch_id_conflict"
    KAFKA_UNAVAILABLE = "kafka_unavailable"
    REDIS_UNAVAILABLE = "redis_unavailable"
    RENDER_UNAVAILABLE = "render_unavailable"
    INTERNAL = "internal_error"


class ErrorDetail(BaseModel):
    code: str = Field(..., description="Stable machine-readable error code.")
    message: str
    field: str | None = Field(None, description="The offending field or parameter, when there is one.")
    problems: list[Problem] | None = Field(None, description="Every problem found (batch validation).")


class ErrorResponse(BaseModel):
    error: ErrorDetail


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        problems: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        batch_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.batch_id = batch_id
        self.status = status
        self.code = str(code)
        self.message = message
        self.field = field
        self.problems = problems
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return error_response(
            self.status,
            self.code,
            self.message,
            field=self.field,
            problems=self.problems,
            headers=self.headers,
            batch_id=self.batch_id,
        )


def error_body(
    code: str,
    message: str,
    *,
    field: str | None = None,
    problems: list[dict[str, str]] | None = None,
    batch_id: str | None = None,
) -> dict[str, Any]:
    err: dict[str, Any] = {"code": str(code), "message": message}
    if field:
        err["field"] = field
    if problems is not None:
        err["problems"] = [{"loc": str(p.get("loc", "")), "message": str(p.get("message", ""))} for p in problems]
    body: dict[str, Any] = {"error": err}
    if batch_id is not None:
        body["batch_id"] = batch_id
    return body


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    field: str | None = None,
    problems: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    batch_id: str | None = None,
) -> JSONResponse:
    body = error_body(code, message, field=field, problems=problems, batch_id=batch_id)
    return JSONResponse(body, status_code=status, headers=headers)


_HTTP_CODES = {
    400: FacadeCode.INVALID_REQUEST,
    401: FacadeCode.UNAUTHORIZED,
    404: FacadeCode.NOT_FOUND,
    405: FacadeCode.METHOD_NOT_ALLOWED,
    413: FacadeCode.PAYLOAD_TOO_LARGE,
    422: FacadeCode.INVALID_REQUEST,
    429: FacadeCode.RATE_LIMITED,
}


def _loc(parts: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)  # noqa: S101 - registered for ApiError only
    return exc.response()


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101
    problems = []
    for err in exc.errors():
        loc = _loc(list(err.get("loc", ())))
        problems.append({"loc": loc, "message": str(err.get("msg", "invalid"))})
    first = problems[0] if problems else {"loc": "", "message": "invalid request"}
    field = first["loc"].split(".", 1)[1] if "." in first["loc"] else first["loc"] or None
    message = "; ".join(f"{p['loc']}: {p['message']}" for p in problems) or "invalid request"
    return error_response(422, FacadeCode.INVALID_REQUEST, message, field=field, problems=problems)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101
    code = _HTTP_CODES.get(exc.status_code, FacadeCode.INVALID_REQUEST if exc.status_code < 500 else "error")
    return error_response(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {}))


async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, FacadeCode.INTERNAL, "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unhandled)


def doc_error(description: str) -> dict[str, Any]:
    """An OpenAPI ``responses`` entry for the JSON error shape."""
    return {"model": ErrorResponse, "description": description}
