"""The worker app's ``render`` agent over its in-memory channel, in Faust's ``test_context()``, rendering
inline instead of in the process pool (unit tests only)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from barcodeflow.settings import Settings
from render.batch import plan_batch
from render.core import Outcome
from render.pool import InlinePool
from schemas.validate import parse_batch
from stream_app import app as worker_module
from stream_app.app import RenderJob, WorkerApp, create_worker_app

GUARD_S = 10.0  # a broken test fails after this instead of hanging; never reached by a passing test
AGENT = "stream_app.app.render"


class BrokenPool:
    async def run(self, specs: Sequence[dict[str, Any]], validate_only: bool = False) -> list[Outcome]:
        raise RuntimeError("pool exploded")

    async def render_and_store(
        self, specs: Sequence[dict[str, Any]], keys: Sequence[str]
    ) -> tuple[list[Outcome], bool]:
        raise RuntimeError("pool exploded")


@pytest.fixture
def app(tmp_path: Path) -> WorkerApp:
    a = create_worker_app(Settings(data_dir=str(tmp_path), topic_partitions=1, batch_timeout_s=10.0))
    a.pool = InlinePool()  # type: ignore[assignment]
    a.finalize()
    return a


def tasks(n: int = 2) -> list[dict[str, Any]]:
    req = parse_batch({
        "batch_id": "b1",
        "barcodes": [{"barcode_type": "ean8", "data": "9638507"}, {"barcode_type": "qr", "data": "x"}],
        "options": {"max_concurrent": n},
    })  # fmt: skip
    return plan_batch(req, run="0:0", received_at_ms=0, timeout_s=10).tasks


async def test_render_agent_answers_a_job_with_its_part(app: WorkerApp) -> None:
    task = tasks(1)[0]
    job = RenderJob(task)
    async with app.agents[AGENT].test_context() as agent:
        await agent.put(job)
        part = await asyncio.wait_for(job.part, GUARD_S)
    assert part["kind"] == "part" and (part["batch_id"], part["run"], part["chunk"]) == ("b1", "0:0", "0")
    assert [(r["index"], r["success"]) for r in sorted(part["results"], key=lambda r: r["index"])] == [
        (0, True), (1, True),
    ]  # fmt: skip
    assert part["results"][0]["metadata"]["data"] == "96385074"


async def test_render_agent_fails_the_task_visibly_when_rendering_raises(app: WorkerApp) -> None:
    app.pool = BrokenPool()  # type: ignore[assignment]
    job = RenderJob(tasks(1)[0])
    async with app.agents[AGENT].test_context() as agent:
        await agent.put(job)
        part = await asyncio.wait_for(job.part, GUARD_S)
        second = RenderJob(tasks(1)[0])  # the agent is still there
        await agent.put(second)
        await asyncio.wait_for(second.part, GUARD_S)
    assert {r["error"]["code"] for r in part["results"]} == {"render_failed"}
    assert "RuntimeError" in part["results"][0]["error"]["message"]


async def test_render_hands_tasks_to_the_agent_and_returns_parts_in_order(app: WorkerApp) -> None:
    ts = tasks(2)
    async with app.agents[AGENT].test_context() as agent:
        app.jobs = agent
        parts = await asyncio.wait_for(app.render(ts), GUARD_S)
    assert [p["chunk"] for p in parts] == ["0", "1"]
    assert [[r["index"] for r in p["results"]] for p in parts] == [[it["index"] for it in t["items"]] for t in ts]


async def test_render_fails_a_task_the_agent_never_answers(app: WorkerApp, monkeypatch: pytest.MonkeyPatch) -> None:
    class Drop:
        async def send(self, value: Any) -> None:
            pass  # lost: nobody will finish this job

    app.jobs = Drop()
    monkeypatch.setattr(worker_module, "AGENT_TIMEOUT_MARGIN_S", 0.05 - app.bf_settings.batch_timeout_s)
    [part] = await asyncio.wait_for(app.render(tasks(1)), GUARD_S)
    assert {r["error"]["code"] for r in part["results"]} == {"render_failed"}
    assert "did not answer" in part["results"][0]["error"]["message"]


async def test_render_sends_again_a_job_the_channel_dropped(app: WorkerApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """Faust clears its channel queues when it resumes after a rebalance: a job waiting there vanishes.
    ``render`` notices a job not picked up while actors stood idle and sends it again."""
    monkeypatch.setattr(worker_module, "LOST_JOB_S", 0.05)
    sends: list[str] = []
    async with app.agents[AGENT].test_context() as agent:

        class DropFirst:
            async def send(self, value: RenderJob) -> None:
                chunk = value.task["chunk"]
                sends.append(chunk)
                if sends.count(chunk) > 1:  # the first copy of every job is lost, like a cleared queue
                    await agent.put(value)

        app.jobs = DropFirst()
        ts = tasks(2)
        parts = await asyncio.wait_for(app.render(ts), GUARD_S)
    assert [p["chunk"] for p in parts] == ["0", "1"]
    assert all(r["success"] for p in parts for r in p["results"])  # rendered, not failed as unanswered
    assert sorted(sends) == ["0", "0", "1", "1"] and app.jobs_resent == 2
