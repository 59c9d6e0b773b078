"""The local service stack: a real single-node Kafka (KRaft, from Maven Central jars) and Redis.

    from barcodeflow.stack import ensure_kafka_installed, start_kafka, start_redis, stop
    kafka = start_kafka(root)            # reuses a healthy broker already on 127.0.0.1:9092
    redis = start_redis(root)            # reuses a Redis already answering on 127.0.0.1:6379
    kafka.kill(signal.SIGKILL); kafka.restart()
    stop(kafka); stop(redis)             # no-op for reused services unless force=True

CLI: ``python -m barcodeflow.stack {install,start,stop,status}`` (state under ``<root>/.stack``).
"""

from barcodeflow.stack.kafka import (
    ensure_kafka_installed,
    format_storage,
    kafka_healthy,
    kafka_metadata,
    kafka_metadata_async,
    kafka_version,
    start_kafka,
    wait_kafka_ready,
)
from barcodeflow.stack.procs import ManagedProcess, ServiceError, StackPaths, find_root, stop
from barcodeflow.stack.redis import ensure_redis_installed, redis_healthy, start_redis, wait_redis_ready

__all__ = [
    "ManagedProcess",
    "ServiceError",
    "StackPaths",
    "ensure_kafka_installed",
    "ensure_redis_installed",
    "find_root",
    "format_storage",
    "kafka_healthy",
    "kafka_metadata",
    "kafka_metadata_async",
    "kafka_version",
    "redis_healthy",
    "start_kafka",
    "start_redis",
    "stop",
    "wait_kafka_ready",
    "wait_redis_ready",
]
