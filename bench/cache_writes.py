"""The render pool's cache writes, against a redis-py pipeline doing the same, in one process.

``PoolStore`` (what a render process calls after each task) packs every ``SET key value EX ttl`` with
hiredis and sends them in one write; the baseline is a redis-py ``pipeline(transaction=False)`` with the
same commands. Both write the same entries (``--images`` per call, ``--size`` bytes each) to the local
Redis in interleaved rounds; printed: client CPU µs per image for each, the Redis server's CPU µs per image
for each, and the ratios. The keys expire after 60 s.

    .venv/bin/python -m bench.cache_writes [--calls 2000] [--images 25] [--size 2300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable, Mapping

import psutil
import redis

from barcodeflow.cache import KEY_PREFIX, PoolStore
from barcodeflow.settings import Settings
from bench.machine import process_cpu_s


def redis_server_process(client: redis.Redis) -> psutil.Process | None:
    """The local Redis server's process (None when Redis is not on this machine)."""
    try:
        return psutil.Process(int(client.info("server")["process_id"]))
    except (psutil.Error, KeyError, ValueError):
        return None


def pipeline_store(client: redis.Redis, ttl: int) -> Callable[[Mapping[str, bytes]], object]:
    def store(entries: Mapping[str, bytes]) -> object:
        pipe = client.pipeline(transaction=False)
        for key, value in entries.items():
            pipe.set(KEY_PREFIX + key, value, ex=ttl)
        return pipe.execute()

    return store


def measure(store: Callable[[Mapping[str, bytes]], object], entries: Mapping[str, bytes], calls: int,
            server: psutil.Process | None) -> tuple[float, float]:  # fmt: skip
    """(client, server) CPU µs per image over ``calls`` calls."""
    for _ in range(50):  # connect, warm up
        store(entries)
    c0, s0 = time.process_time(), (process_cpu_s(server) if server else 0.0)
    for _ in range(calls):
        store(entries)
    images = calls * len(entries)
    s1 = process_cpu_s(server) if server else 0.0
    return 1e6 * (time.process_time() - c0) / images, 1e6 * (s1 - s0) / images


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--images", type=int, default=25, help="images per call (a task of a 100-item batch: 25)")
    p.add_argument("--size", type=int, default=2300, help="bytes per image (the mixed workload's mean)")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    settings = Settings.from_env()
    client = redis.Redis.from_url(settings.image_cache_url)
    server = redis_server_process(client)
    tag = uuid.uuid4().hex[:8]
    entries = {f"bench-{tag}-{i}": os.urandom(args.size) for i in range(args.images)}
    ways = {"pipeline": pipeline_store(client, 60), "pool_store": PoolStore(settings.image_cache_url, ttl=60)}
    totals = {name: [0.0, 0.0] for name in ways}
    for r in range(1, args.rounds + 1):
        for name, store in ways.items():
            c, s = measure(store, entries, args.calls, server)
            totals[name][0] += c / args.rounds
            totals[name][1] += s / args.rounds
            print(f"round {r}: {name:<10} client {c:6.1f} µs/image, redis server {s:5.1f} µs/image")
    (bc, bs), (pc, ps) = totals["pipeline"], totals["pool_store"]
    print(f"mean: pipeline client {bc:.1f} + server {bs:.1f} µs/image; pool_store client {pc:.1f} + server "
          f"{ps:.1f} µs/image")  # fmt: skip
    print(f"pool_store / pipeline: client {pc / bc:.2f}, client + server {(pc + ps) / (bc + bs):.2f}")
    client.delete(*(KEY_PREFIX + k for k in entries))
    client.close()


if __name__ == "__main__":
    main()
