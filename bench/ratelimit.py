"""The facade's rate limit check against the ``limits`` strategy it replaced, in one process.

``facade.ratelimit.RateLimiter`` hits every bucket of a request (its client address and its API key) with one
Lua script call; the baseline is ``limits``' ``MovingWindowRateLimiter`` on ``limits``' Redis storage, one
``hit`` per bucket, run concurrently (what the facade did before). Both check the same two buckets against
the local Redis, through an asyncio loop, in interleaved rounds; printed: wall and CPU µs per check for each,
the Redis server's CPU µs per check, and the ratios. The keys expire after a minute.

    .venv/bin/python -m bench.ratelimit [--checks 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import psutil
from limits import parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from barcodeflow.redis import redis_client
from barcodeflow.settings import Settings
from bench.machine import process_cpu_s
from facade.metrics import Metrics
from facade.ratelimit import RateLimiter, make_storage

LIMIT = "100000000/minute"  # never refused: every check takes the same path
Check = Callable[[], Awaitable[object]]


def redis_storage_uri(redis_url: str) -> str:
    """``limits``' name for a redis-py asyncio storage at ``redis_url``."""
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url[len("unix://") :]
    return "async+" + redis_url


def baseline(redis_url: str, redis: object, hits: list[tuple[str, str]], prefix: str) -> Check:
    """``limits``' moving window on its Redis storage (sharing ``redis``' connections), one hit per bucket."""
    pool = getattr(redis, "connection_pool", None)
    uri = redis_storage_uri(redis_url)
    storage = RedisStorage(uri, implementation="redispy", key_prefix=prefix, connection_pool=pool)
    strategy = MovingWindowRateLimiter(storage)
    [item] = parse_many(LIMIT)

    async def check() -> object:
        return await asyncio.gather(*(strategy.hit(item, scope, identity) for scope, identity in hits))

    return check


def ours(redis: object, hits: list[tuple[str, str]], prefix: str) -> Check:
    limiter = RateLimiter(
        LIMIT, make_storage(redis), fail_open=False, timeout=1.0, cooldown=1.0, metrics=Metrics(), prefix=prefix
    )

    async def check() -> object:
        await limiter.check(*hits)
        return None

    return check


async def measure(check: Check, n: int, server: psutil.Process | None) -> tuple[float, float, float]:
    """(wall, client CPU, server CPU) µs per check over ``n`` checks."""
    for _ in range(200):  # connect, load the script, warm up
        await check()
    s0 = process_cpu_s(server) if server else 0.0
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        await check()
    w, c = time.perf_counter() - w0, time.process_time() - c0
    s = (process_cpu_s(server) if server else 0.0) - s0
    return 1e6 * w / n, 1e6 * c / n, 1e6 * s / n


async def run(checks: int, rounds: int) -> None:
    settings = Settings.from_env()
    redis = redis_client(settings.redis_url, timeout_s=2.0)
    try:
        server: psutil.Process | None = psutil.Process(int((await redis.info("server"))["process_id"]))
    except (psutil.Error, KeyError, ValueError):
        server = None
    prefix = f"bf:rl:bench:{uuid.uuid4().hex[:8]}"
    hits = [("ip", "198.51.100.7"), ("key", uuid.uuid4().hex)]
    ways = {
        "limits": baseline(settings.redis_url, redis, hits, prefix + ":limits"),
        "one_script": ours(redis, hits, prefix + ":ours"),
    }
    totals = {name: [0.0, 0.0, 0.0] for name in ways}
    try:
        for r in range(1, rounds + 1):
            for name, check in ways.items():
                figures = await measure(check, checks, server)
                for i, v in enumerate(figures):
                    totals[name][i] += v / rounds
                w, c, s = figures
                print(f"round {r}: {name:<10} wall {w:6.1f} µs/check, CPU {c:6.1f}, redis server {s:5.1f}")
        (bw, bc, bs), (ow, oc, os_) = totals["limits"], totals["one_script"]
        print(f"mean: limits wall {bw:.1f}, CPU {bc:.1f}, server {bs:.1f} µs/check; "
              f"one_script wall {ow:.1f}, CPU {oc:.1f}, server {os_:.1f} µs/check")  # fmt: skip
        print(f"one_script / limits: wall {ow / bw:.2f}, client CPU {oc / bc:.2f}, server CPU "
              f"{os_ / bs if bs else float('nan'):.2f}")  # fmt: skip
    finally:
        keys = [k async for k in redis.scan_iter(f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checks", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    asyncio.run(run(args.checks, args.rounds))


if __name__ == "__main__":
    main()
