"""Rate limits per API key and per client IP, shared by every replica through Redis.

* Strategy: a moving window per bucket: a request is allowed when fewer than N requests of the bucket
  were allowed in the last window (a list of their timestamps, newest first, trimmed to N). The limit
  string is ``settings.rate_limit`` (``"600/minute"``, several separated by ``;``, parsed by ``limits``),
  applied separately to each client IP and each API key. Over the limit: 429 with an integer
  ``Retry-After`` >= 1, the seconds until the oldest counted request leaves the window.
* One round trip per request: one Lua script hits every bucket of the request (its address, its key,
  each limit) and answers the wait of each refused one (``RedisWindows``). ``MemoryWindows`` does the
  same in this process's memory, for the unit tests.
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

import ipaddress
import math
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from limits import RateLimitItem, parse_many

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


# One bucket: (key, the most requests allowed, the window in seconds).
Bucket = tuple[str, int, int]


class Windows(Protocol):
    async def hit(self, buckets: Sequence[Bucket], now: float) -> list[float | None]:
        """Count one request in every bucket that has room; per bucket ``None`` (counted) or the seconds
        until it has room again (refused, not counted)."""
        ...


# KEYS: one list per bucket, newest timestamp first. ARGV: now, then each bucket's limit and window.
_HIT = """
local now = tonumber(ARGV[1])
local waits = {}
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
  local oldest = redis.call('LINDEX', key, limit - 1)
  if oldest and tonumber(oldest) > now - window then
    waits[i] = tostring(tonumber(oldest) + window - now)
  else
    redis.call('LPUSH', key, ARGV[1])
    redis.call('LTRIM', key, 0, limit - 1)
    redis.call('EXPIRE', key, window)
    waits[i] = ''
  end
end
return waits
"""


class RedisWindows:
    """Every bucket of a request in one script call (one round trip, whatever the number of buckets)."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._script = redis.register_script(_HIT)

    async def hit(self, buckets: Sequence[Bucket], now: float) -> list[float | None]:
        args: list[float | int] = [now]
        for _, limit, window in buckets:
            args += (limit, window)
        replies = await self._script(keys=[key for key, _, _ in buckets], args=args)
        return [float(r) if r else None for r in replies]


class MemoryWindows:
    """``RedisWindows`` in this process's memory, for the unit tests: one replica's limits, and a bucket
    is never forgotten (no expiry)."""

    def __init__(self) -> None:
        self._lists: dict[str, deque[float]] = {}

    async def hit(self, buckets: Sequence[Bucket], now: float) -> list[float | None]:
        waits: list[float | None] = []
        for key, limit, window in buckets:
            times = self._lists.setdefault(key, deque(maxlen=limit))
            if len(times) == limit and times[0] > now - window:  # the oldest of the last `limit` is recent
                waits.append(times[0] + window - now)
            else:
                times.append(now)  # maxlen drops the oldest
                waits.append(None)
        return waits


def make_storage(redis: Any) -> Windows:
    """``RedisWindows`` on the client ``redis`` (the facade's own, which the facade closes)."""
    return RedisWindows(redis)


def memory_storage() -> Windows:
    return MemoryWindows()


class RateLimiter:
    def __init__(
        self,
        spec: str,
        storage: Windows,
        *,
        fail_open: bool,
        timeout: float,
        cooldown: float,
        metrics: Metrics,
        prefix: str = "bf:rl",
    ) -> None:
        try:
            self.items: list[RateLimitItem] = list(parse_many(spec)) if spec.strip() else []
        except ValueError as exc:
            raise ConfigError(f"RATE_LIMIT={spec!r} is not a valid rate limit: {exc}") from None
        self.storage = storage
        self.prefix = prefix
        self.fail_open = fail_open
        self.guard = RedisGuard(timeout=timeout, cooldown=cooldown, what="rate-limit storage")
        self.metrics = metrics

    @property
    def enabled(self) -> bool:
        return bool(self.items)

    async def check(self, *hits: tuple[str, str]) -> None:
        """Count one request against each ``(scope, identity)`` bucket; raise ``ApiError`` 429 for the
        first bucket (in the order given) that is over its limit, or 503 when failing closed.

        Every bucket is hit in one storage call, so a request refused for one bucket still counts against
        the others."""
        if not self.items or not hits:
            return
        checks = [(item, scope, identity) for scope, identity in hits for item in self.items]
        buckets = [
            (f"{self.prefix}:{item.key_for(scope, identity)}", item.amount, item.get_expiry())
            for item, scope, identity in checks
        ]
        try:
            waits = await self.guard.run(lambda: self.storage.hit(buckets, time.time()))
        except RedisUnavailable:  # storage errors of any kind, timeouts, the cooldown
            self._storage_failed()
            return
        for (item, scope, _), wait in zip(checks, waits, strict=True):
            if wait is not None:
                self.metrics.rate_limited.labels(scope).inc()
                raise ApiError(
                    429,
                    FacadeCode.RATE_LIMITED,
                    f"rate limit {item} per {'client address' if scope == 'ip' else 'API key'} exceeded",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )

    def _storage_failed(self) -> None:
        self.metrics.ratelimit_errors.inc()
        if not self.fail_open:
            raise ApiError(
                503,
                FacadeCode.RATE_LIMIT_UNAVAILABLE,
                "rate limiting is unavailable; try again shortly",
                headers={"Retry-After": str(max(1, math.ceil(self.guard.cooldown)))},
            )
