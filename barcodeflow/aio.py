"""Small asyncio helpers shared by the services."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[Any] | None, *, timeout: float = 10.0, poll: float = 0.5) -> None:
    """Cancel ``task`` and wait until it has ended, at most ``timeout`` seconds.

    The cancellation is repeated until the task is done: on Python 3.11 ``asyncio.wait_for`` swallows a
    cancellation that arrives just as its inner awaitable completes (CPython gh-86296, fixed in 3.12), so
    a loop around such a call carries on as if nothing happened and a single ``cancel(); await task``
    waits forever. Exceptions of the task are logged, not raised: this is for shutdown paths.
    """
    if task is None or task.done():
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done():
        task.cancel()
        remaining = deadline - loop.time()
        if remaining <= 0:
            log.warning("task %s did not end within %.1f s of being cancelled", task.get_name(), timeout)
            return
        await asyncio.wait({task}, timeout=min(poll, remaining))
    if not task.cancelled() and task.exception() is not None:
        log.warning("task %s ended with %r", task.get_name(), task.exception())
