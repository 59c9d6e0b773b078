"""aiokafka client settings shared by every non-Faust Kafka client of barcodeflow."""

from __future__ import annotations

from typing import Any

from barcodeflow.settings import Settings


def producer_config(settings: Settings, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": client_id,
        "enable_idempotence": True,
        "acks": "all",
        "compression_type": settings.compression if settings.compression != "none" else None,
        "max_request_size": settings.max_message_bytes,
        "linger_ms": 2,
        "max_batch_size": 1024 * 1024,
        "request_timeout_ms": 10_000,
    }


def consumer_config(settings: Settings, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "client_id": client_id,
        "enable_auto_commit": False,
        "max_partition_fetch_bytes": settings.max_message_bytes,
        "fetch_max_bytes": max(settings.max_message_bytes * 2, 52_428_800),
        "fetch_max_wait_ms": 50,
        "request_timeout_ms": 10_000,
    }
