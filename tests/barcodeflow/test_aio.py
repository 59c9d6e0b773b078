"""``cancel_and_wait``: shutdown must not hang on a task whose first cancellation was swallowed."""

from __future__ import annotations

import asyncio
import logging

import pytest

from barcodeflow.aio import cancel_and_wait


def swallowing_task(swallow: int) -> tuple[asyncio.Task[None], list[int]]:
    """A loop that, like one around ``wait_for`` on Python 3.11, carries on after ``swallow`` cancellations
    (``seen[1]`` set to 1 makes the next cancellation end it)."""
    seen = [0, 0]

    async def loop() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                seen[0] += 1
                if seen[0] > swallow or seen[1]:
                    raise

    return asyncio.create_task(loop(), name="stubborn"), seen


async def test_a_swallowed_cancellation_is_repeated() -> None:
    task, seen = swallowing_task(swallow=2)
    await asyncio.sleep(0)
    await cancel_and_wait(task, timeout=5, poll=0.01)
    assert task.cancelled()
    assert seen[0] == 3


async def test_a_task_that_never_ends_gives_up_after_the_timeout(caplog: pytest.LogCaptureFixture) -> None:
    task, seen = swallowing_task(swallow=10**9)
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="barcodeflow.aio"):
        await cancel_and_wait(task, timeout=0.2, poll=0.02)
    assert not task.done()
    assert seen[0] >= 2
    assert "did not end" in caplog.text
    seen[1] = 1  # leave nothing pending: let it end for real
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    assert task.cancelled()


async def test_none_and_finished_tasks_are_fine(caplog: pytest.LogCaptureFixture) -> None:
    await cancel_and_wait(None)

    async def boom() -> None:
        raise RuntimeError("x")

    failing = asyncio.create_task(boom(), name="boom")
    await asyncio.wait({failing})
    await cancel_and_wait(failing)  # already done: nothing to wait for, exception left to its owner
    assert isinstance(failing.exception(), RuntimeError)

    async def ends_with_error_when_cancelled() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    t = asyncio.create_task(ends_with_error_when_cancelled(), name="bad-cleanup")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="barcodeflow.aio"):
        await cancel_and_wait(t)
    assert "cleanup failed" in caplog.text
