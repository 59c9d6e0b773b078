"""Rendering off the event loop: a process pool shared by one worker's agents.

CPU-bound rendering would block Faust's event loop (heartbeats, fetches, commits), so every render
runs in a ``ProcessPoolExecutor``. A chunk of specs is shipped as plain dicts and comes back as
``Outcome``s (bytes, not base64), which keeps the IPC cheap. ``InlinePool`` has the same interface and
renders in the calling thread.

A pool may be given a ``Store``: then ``render_and_store`` also writes each new image to the shared
cache from the pool process itself, in parallel with the other processes, instead of the caller's event
loop sending every image a second time (the store's I/O is the caller's code, injected: this package
does none).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from render.core import Outcome

log = logging.getLogger(__name__)

Store = Callable[[Mapping[str, bytes]], bool]
"""Called in a pool process with ``{cache key: CachedImage.encode()}``; True once the entries are stored."""

T = TypeVar("T")

_store: Store | None = None  # this pool process's store, set by ``_warm``


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


def render_and_store(specs: Sequence[dict[str, Any]], keys: Sequence[str]) -> tuple[list[Outcome], bool]:
    """Runs in a pool process: ``render_specs``, then the successful images go to this process's store
    under ``keys`` (one per spec). The flag says whether they were stored (False: no store, or it failed)."""
    from render.batch import CachedImage

    outcomes = render_specs(specs)
    if _store is None:
        return outcomes, False
    entries = {key: img.encode() for key, o in zip(keys, outcomes, strict=True) if (img := CachedImage.of(o))}
    return outcomes, (not entries or _store(entries))


def _warm(store: Store | None = None) -> None:
    global _store
    # Ctrl-C goes to the whole process group: the parent shuts the pool down, children must not trace
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _store = store
    import render  # noqa: F401 - import once per process, not per task


class RenderPool:
    """A process pool that replaces itself if a child dies (``BrokenProcessPool``) and retries once.

    ``kind="thread"`` runs the same code in threads (tests, and hosts where spawning is unwelcome).
    """

    def __init__(self, processes: int, *, kind: str = "process", store: Store | None = None) -> None:
        if kind not in ("process", "thread"):
            raise ValueError(f"kind must be 'process' or 'thread', not {kind!r}")
        self.processes = max(1, processes)
        self.kind = kind
        self.store = store if kind == "process" else None  # threads share the module state: no per-process store
        self._ctx = multiprocessing.get_context("spawn")
        self._executor: Executor | None = None

    def start(self) -> None:
        if self._executor is None:
            if self.kind == "thread":
                self._executor = ThreadPoolExecutor(self.processes, thread_name_prefix="render")
            else:
                self._executor = ProcessPoolExecutor(
                    self.processes, mp_context=self._ctx, initializer=_warm, initargs=(self.store,)
                )

    def stop(self, wait: bool = True) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=wait, cancel_futures=True)
            self._executor = None

    async def run(self, specs: Sequence[dict[str, Any]], validate_only: bool = False) -> list[Outcome]:
        return await self._call(render_specs, list(specs), validate_only)

    async def render_and_store(
        self, specs: Sequence[dict[str, Any]], keys: Sequence[str]
    ) -> tuple[list[Outcome], bool]:
        if self.store is None:
            return await self.run(specs), False
        return await self._call(render_and_store, list(specs), list(keys))

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            self.start()
            assert self._executor is not None  # noqa: S101
            try:
                return await loop.run_in_executor(self._executor, fn, *args)
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

    async def render_and_store(
        self, specs: Sequence[dict[str, Any]], keys: Sequence[str]
    ) -> tuple[list[Outcome], bool]:
        return await self.run(specs), False
