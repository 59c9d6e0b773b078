"""Faust settings shared by the worker and the sink apps, derived from one ``Settings`` object."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from barcodeflow.settings import Settings


def broker_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{h.strip()}" for h in bootstrap.split(",") if h.strip())


def faust_config(settings: Settings, role: str) -> dict[str, Any]:
    return {
        "id": f"{settings.app_id}-{role}",
        "broker": broker_url(settings.kafka_bootstrap_servers),
        "store": "memory://",
        "key_serializer": "raw",
        "value_serializer": "raw",
        "topic_partitions": settings.topic_partitions,
        "topic_replication_factor": 1,
        "datadir": str(Path(settings.data_dir) / role),
        "web_enabled": False,
        "consumer_auto_offset_reset": "earliest",
        # Faust's defaults cap produce requests at 1,000,000 bytes: a 100-item result of large SVGs
        # is several MB, so both ends (and the topics, see stream_app.topics) are raised and compressed
        # (KAFKA_COMPRESSION, snappy by default).
        "producer_max_request_size": settings.max_message_bytes,
        "producer_compression_type": settings.compression if settings.compression != "none" else None,
        "producer_linger": 0.002,
        # Faust's 16 KB default sends each part and result alone, one request in flight per broker
        "producer_max_batch_size": 1024 * 1024,
        "consumer_max_fetch_size": settings.max_message_bytes,
        # a killed worker's partitions move to a survivor (or its restart) after ~6 s, not a minute;
        # BATCH_TIMEOUT_S must exceed that failover time plus rendering
        "broker_session_timeout": 6.0,  # the broker default group.min.session.timeout.ms
        "broker_heartbeat_interval": 1.0,
        # static membership of the app's own group too: a restart does not rebalance it (and so does not
        # clear the render channel, see ``WorkerApp.render``)
        "consumer_group_instance_id": settings.group_instance_id or None,
        "broker_commit_interval": 0.5,
        "stream_wait_empty": False,
        "table_standby_replicas": 0,
    }
