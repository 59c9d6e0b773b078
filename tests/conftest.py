"""Session fixtures: settings for the locally running services and a running pipeline.

Kafka and Redis are started by ``.ci/run`` (or ``barcodeflow up`` / ``python -m barcodeflow.stack
start``); where a Docker engine answers, set ``KAFKA_BOOTSTRAP_SERVERS``/``REDIS_URL`` to
testcontainers-started services instead. Integration tests fail, not skip, when they are missing.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from barcodeflow.settings import Settings, Topics
from tests.support.pipeline import Pipeline
from tests.support.topics import delete_recorded, private


def _reachable(hostport: str) -> bool:
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """This session's settings; at its end, every topic of its private pipelines is deleted."""
    base = Settings.from_env()
    first = base.kafka_bootstrap_servers.split(",")[0]
    if not _reachable(first):
        pytest.fail(f"Kafka is not reachable at {first}: start it with `python -m barcodeflow.stack start`")
    redis_hostport = base.redis_url.split("//", 1)[-1].split("/", 1)[0]
    if not _reachable(redis_hostport):
        pytest.fail(f"Redis is not reachable at {base.redis_url}")
    run = uuid.uuid4().hex[:8]
    settings = base.with_(
        # generous deadline: a slow CI machine or a killed worker must not turn items into timeouts
        # (deadline behaviour itself is tested with its own records)
        batch_timeout_s=120.0,
        topic_prefix=f"t{run}.",
        app_id=f"bf-test-{run}",
        data_dir=str(tmp_path_factory.mktemp("faust")),
    )
    yield private(settings)
    delete_recorded(settings.kafka_bootstrap_servers)


@asynccontextmanager
async def running_pipeline(
    settings: Settings, workdir: Path, *, static_members: bool = False
) -> AsyncIterator[Pipeline]:
    from stream_app.topics import ensure_topics

    await ensure_topics(settings)
    p = Pipeline(settings, workdir, static_members=static_members)
    p.add("worker", "worker")
    p.add("sink", "sink")
    try:
        await p.wait_ready()
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="session")
async def pipeline(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pipeline]:
    """The shared pipeline: worker and sink processes on this session's own topics."""
    async with running_pipeline(stack_settings, Path(tmp_path_factory.mktemp("pipeline"))) as p:
        yield p


@pytest.fixture
def isolated_settings(stack_settings: Settings) -> Settings:
    """Settings for a private pipeline (own topics and consumer groups) in tests that break things."""
    run = uuid.uuid4().hex[:8]
    return private(
        stack_settings.with_(topic_prefix=f"i{run}.", topics=Topics.with_prefix(f"i{run}."), app_id=f"bf-iso-{run}")
    )
