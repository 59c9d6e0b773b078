"""Rendering off the event loop: a process pool shared by one worker's agents.

CPU-bound rendering would block Faust's event loop (heartbeats, fetches, commits), so every render
runs in a render process (``RenderPool``). A chunk of specs is shipped as plain dicts and comes back as
``Outcome``s (bytes, not base64), which keeps the IPC cheap. ``InlinePool`` has the same interface and
renders in the calling thread.

A pool may be given a ``Store``: then ``render_and_store`` also writes each new image to the shared
cache from the pool process itself, in parallel with the other processes, instead of the caller's event
loop sending every image a second time (the store's I/O is the caller's code, injected: this package
does none). A process settles its store's earlier writes (``Store.flush``) only when no call is waiting
for it, so it never stands idle waiting for the cache while there is rendering to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import multiprocessing
import pickle
import signal
import struct
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from typing import Any, Protocol, TypeVar, cast

from render.core import Outcome

log = logging.getLogger(__name__)

PIPE_BYTES = 1024 * 1024
"""Capacity asked for a reply pipe (Linux's default limit for an unprivileged process; the default capacity
is 64 KiB). A task's reply (~75 KB for 50 mixed items) then fits whole: a render process writes it and goes
on to its next call, where with 64 KiB it waited for the parent's event loop to read the rest (5 % of its
time under load, BENCHMARKS.md)."""


class Store(Protocol):
    """Where a pool process puts the images it renders (``barcodeflow.cache.PoolStore``)."""

    def __call__(self, entries: Mapping[str, bytes]) -> bool:
        """Write ``{cache key: CachedImage.encode()}``; True once they are on their way (False: the caller
        stores them)."""

    def flush(self) -> None:
        """Settle what earlier calls wrote; the process calls it when it has nothing else to do."""


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
    """Render processes fed over pipes by the caller's event loop; ``kind="thread"`` runs the same code in
    threads (tests, and hosts where spawning is unwelcome).

    Each process has a pipe for calls and one for replies, read by the event loop itself: no executor
    manager thread, queue feeder thread or wake-up pipe between a reply and its caller (a
    ``ProcessPoolExecutor`` cost the worker's main process twice the CPU per call, BENCHMARKS.md). A
    process takes up to ``depth`` calls, so its next call is waiting in its pipe when it finishes one; a
    call goes to the process with the fewest. A process that dies fails its calls with
    ``BrokenProcessPool`` and is replaced before the next call goes out; each call is tried once more. A
    caller that stops waiting (cancelled, timed out) leaves its call to finish; its reply is read and
    dropped, so replies never go to the wrong call.
    """

    def __init__(self, processes: int, *, kind: str = "process", store: Store | None = None, depth: int = 2) -> None:
        if kind not in ("process", "thread"):
            raise ValueError(f"kind must be 'process' or 'thread', not {kind!r}")
        self.processes = max(1, processes)
        self.kind = kind
        self.store = store if kind == "process" else None  # threads share the module state: no per-process store
        self.depth = max(1, depth)
        self._ctx = multiprocessing.get_context("spawn")
        self._threads: ThreadPoolExecutor | None = None
        self._children: list[_Child] = []
        self._room = asyncio.Event()  # set whenever a call finishes or a process ends

    def start(self) -> None:
        if self.kind == "thread":
            if self._threads is None:
                self._threads = ThreadPoolExecutor(self.processes, thread_name_prefix="render")
        elif not self._children:
            self._children = [_Child(self._ctx, self.store, self._room) for _ in range(self.processes)]

    def stop(self, wait: bool = True) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=wait, cancel_futures=True)
            self._threads = None
        children, self._children = self._children, []
        for child in children:
            child.close()
        self._room.set()  # callers waiting for room find the pool stopped
        if wait:
            for child in children:
                child.join()

    def pids(self) -> list[int]:
        """The render processes' pids (none for threads, or before ``start``)."""
        return [c.process.pid for c in self._children if c.process.pid is not None]

    async def run(self, specs: Sequence[dict[str, Any]], validate_only: bool = False) -> list[Outcome]:
        return await self.call(render_specs, list(specs), validate_only)

    async def render_and_store(
        self, specs: Sequence[dict[str, Any]], keys: Sequence[str]
    ) -> tuple[list[Outcome], bool]:
        if self.store is None:
            return await self.run(specs), False
        return await self.call(render_and_store, list(specs), list(keys))

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a render process (``fn`` and its arguments must pickle)."""
        self.start()
        if self._threads is not None:
            return await asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)
        payload = pickle.dumps((fn, args), pickle.HIGHEST_PROTOCOL)
        for attempt in (1, 2):
            child = await self._pick()
            try:
                return cast(T, await child.call(payload))
            except BrokenProcessPool:
                log.error("a render process died (pid %s); replaced (attempt %d)", child.process.pid, attempt)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _pick(self) -> _Child:
        """The live process with the fewest calls, once one has fewer than ``depth``."""
        while True:
            if not self._children:
                raise BrokenProcessPool("the render pool is stopped")
            self._replace_dead()
            child = min(self._children, key=lambda c: len(c.pending))
            if not child.connected:  # a new process: wire its pipes, then choose again
                await child.connect()
                continue
            if len(child.pending) < self.depth:
                return child
            self._room.clear()
            await self._room.wait()

    def _replace_dead(self) -> None:
        for i, child in enumerate(self._children):
            if child.dead:
                child.close()
                self._children[i] = _Child(self._ctx, self.store, self._room)


def _serve(calls: Connection, replies: Connection, store: Store | None) -> None:
    """A render process: run each call from ``calls``, send ``(ok, value)`` back on ``replies``."""
    _warm(store)
    while True:
        try:
            if store is not None and not calls.poll():  # nothing to render now: settle the cache writes
                store.flush()
            fn, args = pickle.loads(calls.recv_bytes())  # noqa: S301 - a pipe only our own parent writes to
        except (EOFError, OSError):  # the parent is gone or closed the pipe
            return
        try:
            reply = pickle.dumps((True, fn(*args)), pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - the caller gets the exception, as from an executor
            try:
                reply = pickle.dumps((False, exc))
            except Exception:  # noqa: BLE001 - an exception that does not pickle arrives as its text
                reply = pickle.dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}")))
        try:
            replies.send_bytes(reply)
        except OSError:
            return


def _settle(fut: asyncio.Future[Any], reply: bytes) -> None:
    try:
        ok, value = pickle.loads(reply)  # noqa: S301 - a pipe only our own child writes to
    except Exception as exc:  # noqa: BLE001 - a reply that does not unpickle fails its call, not the reader
        ok, value = False, RuntimeError(f"unreadable reply from a render process: {exc!r}")
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


def _widen(pipe: Connection) -> None:
    """Ask for ``PIPE_BYTES`` of capacity; where that is refused (a lower limit, not Linux) the pipe keeps its
    default and replies only wait for the reader more often."""
    with contextlib.suppress(OSError, AttributeError):  # F_SETPIPE_SZ is Linux-only
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


class _Child:
    """One render process, its two pipes and the futures of its calls in order."""

    def __init__(self, ctx: Any, store: Store | None, room: asyncio.Event) -> None:
        child_calls, self._calls = ctx.Pipe(duplex=False)
        self._replies, child_replies = ctx.Pipe(duplex=False)
        _widen(child_replies)
        self.process = ctx.Process(
            target=_serve, args=(child_calls, child_replies, store), daemon=True, name="barcodeflow-render"
        )
        self.process.start()
        child_calls.close()  # only the child holds these ends: its death is EOF on ``replies``
        child_replies.close()
        self.pending: deque[asyncio.Future[Any]] = deque()
        self.room = room
        self.dead = False
        self._writer: asyncio.WriteTransport | None = None
        self._read_end: asyncio.ReadTransport | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connecting: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def connect(self) -> None:
        """Wire the pipes to the running loop (once, however many callers wait for it)."""
        if self._connecting is None:
            self._connecting = asyncio.create_task(self._connect())
        await asyncio.shield(self._connecting)

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        stream = asyncio.StreamReader(limit=2**31, loop=loop)
        self._read_end, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stream, loop=loop), self._replies
        )
        self._reader = asyncio.create_task(self._read(stream), name="render-replies")
        self._writer, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, self._calls)

    def call(self, payload: bytes) -> asyncio.Future[Any]:
        assert self._writer is not None  # noqa: S101 - connect() came first
        fut = asyncio.get_running_loop().create_future()
        self.pending.append(fut)
        self._writer.write(struct.pack("!i", len(payload)) + payload)  # ``Connection.recv_bytes``'s framing
        return fut

    async def _read(self, stream: asyncio.StreamReader) -> None:
        try:
            while True:
                (size,) = struct.unpack("!i", await stream.readexactly(4))
                if size == -1:  # ``Connection.send_bytes`` of 2 GiB or more
                    (size,) = struct.unpack("!Q", await stream.readexactly(8))
                data = await stream.readexactly(size)
                fut = self.pending.popleft()
                if not fut.done():  # its caller may have stopped waiting: then the reply is dropped
                    _settle(fut, data)
                self.room.set()
        except (asyncio.IncompleteReadError, OSError):
            pass
        self._fail_pending(f"render process {self.process.pid} died")

    def _fail_pending(self, why: str) -> None:
        self.dead = True
        for fut in self.pending:
            if not fut.done():
                fut.set_exception(BrokenProcessPool(why))
        self.pending.clear()
        self.room.set()

    def close(self) -> None:
        self._fail_pending("the render pool is stopped")  # its reader is cancelled: no reply would come
        if self._reader is not None:
            self._reader.cancel()
        if self._connecting is not None:
            self._connecting.cancel()
        for transport, pipe in ((self._writer, self._calls), (self._read_end, self._replies)):
            if transport is not None:  # the transport owns the pipe end now
                transport.close()
            else:
                pipe.close()
        if self.process.is_alive():
            self.process.terminate()

    def join(self, timeout_s: float = 5.0) -> None:
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout_s)


class InlinePool:
    """``RenderPool``'s interface, rendering in the calling thread."""

    async def run(self, specs: Sequence[dict[str, Any]], validate_only: bool = False) -> list[Outcome]:
        return render_specs(specs, validate_only)

    async def render_and_store(
        self, specs: Sequence[dict[str, Any]], keys: Sequence[str]
    ) -> tuple[list[Outcome], bool]:
        return await self.run(specs), False
