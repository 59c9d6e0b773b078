"""Rate limits per API key and per client IP, shared by every replica through Redis (``limits``).

* Strategy: moving window (``limits.aio.strategies.MovingWindowRateLimiter``); the limit string is
  ``settings.rate_limit`` (``"600/minute"``, several separated by ``;``), applied separately to each
  client IP and each API key. Over the limit: 429 with an integer ``Retry-After`` >= 1.
* Storage down (or slower than ``ratelimit_timeout_s``): ``settings.rate_limit_fail_open`` decides.
  Open (the default) lets the request through and counts ``ratelimit_storage_errors``; closed answers
  503 ``rate_limit_unavailable`` with ``Retry-After``. Storage calls go through a ``RedisGuard``: after a
  failure the storage is skipped for a short cooldown so a dead Redis does not add a timeout to every
  request.
* Client IP: the socket peer. ``X-Forwarded-For`` is honoured only when the peer is one of
  ``settings.trusted_proxies`` (addresses or CIDR networks); then the right-most address that is not
  a trusted proxy is the client. uvicorn must run with ``proxy_headers=False`` (``facade.cli`` does),
  otherwise it would rewrite the peer from the header itself.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections.abc import Iterable, Sequence
from functools import partial

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from barcodeflow.redis import RedisGuard, RedisUnavailable
from barcodeflow.settings import ConfigError
from facade.errors import ApiError, FacadeCode
from facade.metrics import Metrics

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_trusted(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    nets = []
    for e in entries:
        e = e.strip()
        if not e:
            continue
        try:
            nets.append(ipaddress.ip_network(e, strict=False))
        except ValueError:
            raise ConfigError(f"TRUSTED_PROXIES: {e!r} is not an IP address or network") from None
    return tuple(nets)


def _ip(value: str | None) -> IPAddress | None:
    if not value:
        return None
    v = value.strip().strip('"')
    if v.startswith("[") and "]" in v:  # [v6]:port
        v = v[1 : v.index("]")]
    elif v.count(":") == 1:  # v4:port
        v = v.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(v)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(ip: IPAddress, trusted: Sequence[IPNetwork]) -> bool:
    return any(ip.version == net.version and ip in net for net in trusted)


def client_ip(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]) -> str:
    """The address to rate-limit: the peer, or (behind a trusted proxy) the right-most untrusted XFF hop."""
    peer_ip = _ip(peer)
    if peer_ip is None:
        return (peer or "unknown")[:64]
    if not trusted or not _trusted(peer_ip, trusted):
        return str(peer_ip)
    hops = [h.strip() for header in forwarded_for for h in header.split(",") if h.strip()]
    current = peer_ip
    for hop in reversed(hops):
        ip = _ip(hop)
        if ip is None:  # garbage reported by a trusted proxy: stop at the proxy that reported it
            return str(current)
        if not _trusted(ip, trusted):
            return str(ip)
        current = ip
    return str(current)


def redis_storage_uri(redis_url: str) -> str:
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url[len("unix://") :]
    return "async+" + redis_url


def make_storage(redis_url: str, redis_client: object | None = None, *, prefix: str = "bf:rl") -> Storage:
    """A ``limits`` Redis storage, sharing ``redis_client``'s connection pool when one is given."""
    options: dict[str, object] = {}
    pool = getattr(redis_client, "connection_pool", None)
    if pool is not None:
        options["connection_pool"] = pool
    return RedisStorage(
        redis_storage_uri(redis_url),
        implementation="redispy",
        key_prefix=prefix,
        **options,  # type: ignore[arg-type]
    )


def memory_storage() -> Storage:
    return MemoryStorage()


class RateLimiter:
    def __init__(
        self,
        spec: str,
        storage: Storage,
        *,
        fail_open: bool,
        timeout: float,
        cooldown: float,
        metrics: Metrics,
    ) -> None:
        try:
            self.items: list[RateLimitItem] = list(parse_many(spec)) if spec.strip() else []
        except ValueError as exc:
            raise ConfigError(f"RATE_LIMIT={spec!r} is not a valid rate limit: {exc}") from None
        self.storage = storage
        self.strategy = MovingWindowRateLimiter(storage)
        self.fail_open = fail_open
        self.guard = RedisGuard(timeout=timeout, cooldown=cooldown, what="rate-limit storage")
        self.metrics = metrics

    @property
    def enabled(self) -> bool:
        return bool(self.items)

    async def check(self, *hits: tuple[str, str]) -> None:
        """Count one request against each ``(scope, identity)`` bucket; raise ``ApiError`` 429 for the
        first bucket (in the order given) that is over its limit, or 503 when failing closed.

        The buckets are hit concurrently (one Redis round trip of latency, not one per bucket), so a request
        refused for one bucket still counts against the others."""
        if not self.items or not hits:
            return
        checks = [(item, scope, identity) for scope, identity in hits for item in self.items]
        outcomes = await asyncio.gather(*(self._hit(*c) for c in checks))
        if any(allowed is None for allowed in outcomes):  # storage errors of any kind, timeouts, the cooldown
            self._storage_failed()
            return
        for (item, scope, identity), allowed in zip(checks, outcomes, strict=True):
            if not allowed:
                retry_after = await self._retry_after(item, scope, identity)
                self.metrics.rate_limited.labels(scope).inc()
                raise ApiError(
                    429,
                    FacadeCode.RATE_LIMITED,
                    f"rate limit {item} per {'client address' if scope == 'ip' else 'API key'} exceeded",
                    headers={"Retry-After": str(retry_after)},
                )

    async def _hit(self, item: RateLimitItem, scope: str, identity: str) -> bool | None:
        """Whether the hit was allowed; None when the storage failed."""
        try:
            return await self.guard.run(partial(self.strategy.hit, item, scope, identity))
        except RedisUnavailable:
            return None

    async def _retry_after(self, item: RateLimitItem, scope: str, identity: str) -> int:
        try:
            stats = await asyncio.wait_for(self.strategy.get_window_stats(item, scope, identity), self.guard.timeout)
            wait = stats.reset_time - time.time()
        except Exception:  # the 429 stands; only the hint is approximate
            wait = item.get_expiry()
        return max(1, math.ceil(wait))

    def _storage_failed(self) -> None:
        self.metrics.ratelimit_errors.inc()
        if not self.fail_open:
            raise ApiError(
                503,
                FacadeCode.RATE_LIMIT_UNAVAILABLE,
                "rate limiting is unavailable; try again shortly",
                headers={"Retry-After": str(max(1, math.ceil(self.guard.cooldown)))},
            )
