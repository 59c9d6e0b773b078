"""The sink's two ways to make "result written" and "input committed" agree, measured side by side.

* **manual** (what ``sink/app.py`` does): send the iteration's results, await their acks, then commit the
  input offsets with ``consumer.commit``. A crash between the two repeats the results of one iteration.
* **transactional**: ``begin_transaction``, send the results, ``send_offsets_to_transaction``,
  ``commit_transaction``. Atomic, but every iteration pays for the transaction markers, and only readers
  with ``isolation_level=read_committed`` are spared aborted results.

Both run the same loop over the same synthetic results (one BatchResult-sized record per batch) against
the local broker, on private topics, in interleaved rounds; printed: batches/s and process CPU ms per
batch, and the transactional/manual ratio.

    .venv/bin/python -m bench.commit_modes [--batches 2000] [--per-iteration 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

from barcodeflow.kafka import producer_config
from barcodeflow.settings import Settings


async def run_mode(settings: Settings, mode: str, n: int, per_iter: int, value: bytes) -> tuple[float, float]:
    run = uuid.uuid4().hex[:8]
    src, dst, group = f"cm{run}.in", f"cm{run}.out", f"cm{run}-group"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    await admin.create_topics([NewTopic(src, 1, 1), NewTopic(dst, 1, 1)])
    conf = producer_config(settings, f"cm-{mode}")
    if mode == "transactional":
        conf["transactional_id"] = f"cm{run}-tx"
    producer = AIOKafkaProducer(**conf)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group, enable_auto_commit=False
    )
    await producer.start()
    await consumer.start()
    tp = TopicPartition(src, 0)
    consumer.assign([tp])  # commits need an assignment; no group membership is needed to store offsets
    try:
        # a topic just created can refuse writes for a moment (NotEnoughReplicas): warm up outside the clock
        if mode == "manual":
            await (await producer.send(dst, b"warm-up"))
        else:
            async with producer.transaction():
                await producer.send(dst, b"warm-up")
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(0, n, per_iter):
            k = min(per_iter, n - i)
            offsets = {tp: OffsetAndMetadata(i + k, "done1:")}
            if mode == "manual":
                futs = [await producer.send(dst, value, key=f"b{i + j}".encode()) for j in range(k)]
                await asyncio.gather(*futs)
                await consumer.commit(offsets)
            else:
                async with producer.transaction():
                    for j in range(k):
                        await producer.send(dst, value, key=f"b{i + j}".encode())
                    await producer.send_offsets_to_transaction(offsets, group)
        return time.perf_counter() - t0, time.process_time() - c0
    finally:
        await consumer.stop()
        await producer.stop()
        await admin.delete_topics([src, dst])
        await admin.close()


async def main_async(args: argparse.Namespace) -> None:
    settings = Settings.from_env()
    value = os.urandom(args.value_bytes // 2).hex().encode()
    totals: dict[str, list[float]] = {"manual": [0.0, 0.0], "transactional": [0.0, 0.0]}
    for _ in range(args.rounds):
        for mode in ("manual", "transactional"):
            wall, cpu = await run_mode(settings, mode, args.batches, args.per_iteration, value)
            totals[mode][0] += wall
            totals[mode][1] += cpu
    n = args.batches * args.rounds
    print(f"commit modes: {n} results of {args.value_bytes} bytes per mode, {args.per_iteration} per iteration, "
          f"{args.rounds} interleaved rounds, broker {settings.kafka_bootstrap_servers}")  # fmt: skip
    for mode, (wall, cpu) in totals.items():
        print(f"  {mode:<14} {n / wall:>9,.0f} results/s   {cpu * 1000 / n:.3f} CPU ms/result (this process)")
    ratio = totals["transactional"][0] / totals["manual"][0]
    print(f"  transactional / manual wall time: {ratio:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", type=int, default=2000)
    p.add_argument("--per-iteration", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--value-bytes", type=int, default=20_000)
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
