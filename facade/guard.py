"""The dependency every ``/v1`` route runs first: per-IP rate limit, API key check, per-key rate limit.

The per-IP limit comes before authentication so that guessing keys is rate limited too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Request, Security

from facade.auth import ANONYMOUS, API_KEY_HEADER, api_key_header
from facade.errors import ApiError, FacadeCode
from facade.ratelimit import client_ip


@dataclass(frozen=True)
class Principal:
    key_id: str
    ip: str


async def guard(request: Request, api_key: Annotated[str | None, Security(api_key_header)] = None) -> Principal:
    state = request.app.state.facade
    peer = request.scope.get("client")
    ip = client_ip(peer[0] if peer else None, request.headers.getlist("x-forwarded-for"), state.trusted_proxies)
    await state.limiter.check("ip", ip)
    kid = state.auth.identify(api_key)
    if kid is None:
        state.metrics.auth_failures.inc()
        raise ApiError(
            401,
            FacadeCode.UNAUTHORIZED,
            f"missing or invalid API key (send it in the {API_KEY_HEADER} header)",
            headers={"WWW-Authenticate": f'APIKey header="{API_KEY_HEADER}"'},
        )
    if kid != ANONYMOUS:
        await state.limiter.check("key", kid)
    return Principal(key_id=kid, ip=ip)
