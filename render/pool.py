"""Rendering off the event loop: a process pool shared by one worker's agents.

CPU-bound rendering would block Faust's event loop (heartbeats, fetches, commits), so every render
runs in a ``ProcessPoolExecutor``. A chunk of specs is shipped as plain dicts and comes back as
``Outcome``s (bytes, not base64), which keeps the IPC cheap. ``InlinePool`` has the same interface and
renders in the calling thread.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import time
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from render.core import Outcome

log = logging.getLogger(__name__)


def render_specs(specs: Sequence[dict[str, Any]], validate_only: bool = False) -> list[Outcome]:
    """Runs in a pool process: render (or describe) each spec, one failure never affecting the next."""
    from render import RenderSpec, describe, render
    from schemas.errors import ItemError, RenderFailed

    out: list[Outcome] = []
    for raw in specs:
        t0 = time.perf_counter()
        try:
            spec = RenderSpec(**raw)
            if validate_only:
                out.append(Outcome(True, None, None, describe(spec), None, (time.perf_counter() - t0) * 1000))
            else:
                r = render(spec)
                out.append(Outcome(True, r.image, r.content_type, r.metadata, None, (time.perf_counter() - t0) * 1000))
        except ItemError as exc:
            out.append(Outcome(False, None, None, None, exc, (time.perf_counter() - t0) * 1000))
        except Exception as exc:  # noqa: BLE001 - an encoder bug fails this item only, with its class name
            err = RenderFailed(f"rendering failed: {type(exc).__name__}: {exc}")
            out.append(Outcome(False, None, None, None, err, (time.perf_counter() - t0) * 1000))
    return out


def _warm() -> None:
    # Ctrl-C goes to the whole process group: the parent shuts the pool down, children must not trace
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import render  # noqa: F401 - import once per process, not per task


class RenderPool:
    """A process pool that replaces itself if a child dies (``BrokenProcessPool``) and retries once.

    ``kind="thread"`` runs the same code in threads (tests, and hosts where spawning is unwelcome).
    """

    def __init__(self, processes: int, *, kind: str = "process") -> None:
        if kind not in ("process", "thread"):
            raise ValueError(f"kind must be 'process' or 'thread', not {kind!r}")
        self.processes = max(1, processes)
        self.kind = kind
        self._ctx = multiprocessing.get_context("spawn")
        self._executor: Executor | None = None

    def start(self) -> None:
        if self._executor is None:
            if self.kind == "thread":
                self._executor = ThreadPoolExecutor(self.processes, thread_name_prefix="render")
            else:
                self._executor = ProcessPoolExecutor(self.processes, mp_context=self._ctx, initializer=_warm)

    def stop(self, wait: bool = True) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=wait, cancel_futures=True)
            self._executor = None

    async def run(self, specs: Sequence[dict[str, Any]], validate_only: bool = False) -> list[Outcome]:
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            self.start()
            assert self._executor is not None  # noqa: S101
            try:
                return await loop.run_in_executor(self._executor, render_specs, list(specs), validate_only)
            except BrokenProcessPool:
                log.error("render pool broke (a child died); restarting it (attempt %d)", attempt)
                broken, self._executor = self._executor, None
                broken.shutdown(wait=False, cancel_futures=True)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


class InlinePool:
    """``RenderPool``'s interface, rendering in the calling thread."""

    async def run(self, specs: Sequence[dict[str, Any]], validate_only: bool = False) -> list[Outcome]:
        return render_specs(specs, validate_only)
