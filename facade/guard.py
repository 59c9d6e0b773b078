"""The dependency every ``/v1`` route runs first: the rate limits (per client IP, and per API key when the
key is known), then the API key check.

The per-IP limit is checked whatever the key, and before a 401, so that guessing keys is rate limited too.
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
    kid = state.auth.identify(api_key)
    # the address is always counted (guessing keys is rate limited too), a known key's own bucket with it
    hits = [("ip", ip)] if kid is None or kid == ANONYMOUS else [("ip", ip), ("key", kid)]
    await state.limiter.check(*hits)
    if kid is None:
        state.metrics.auth_failures.inc()
        raise ApiError(
            401,
            FacadeCode.UNAUTHORIZED,
            f"missing or invalid API key (send it in the {API_KEY_HEADER} header)",
            headers={"WWW-Authenticate": f'APIKey header="{API_KEY_HEADER}"'},
        )
    return Principal(key_id=kid, ip=ip)
