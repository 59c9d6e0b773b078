"""Memory of the long-running service processes: the garbage collector's schedule (``tune_gc``) and
handing a burst's freed heap back to the operating system (``HeapTrimmer``).

A burst of large records leaves a process's RSS at the burst's peak: a worker with 32 all-hit batches in
flight holds each batch's ~230 KB of images several times over (Redis reply, open record, its JSON, the
compressed produce batch), ~20 MB in all, and glibc keeps what is freed inside its heaps for reuse. Without
help that memory stays resident for the life of the process, and a real leak cannot be told from it.
``malloc_trim(0)`` returns the free pages of every heap. The stream loops call ``HeapTrimmer.idle()`` when a
poll comes back empty: after work, at most once per ``min_interval_s``, it trims (a few milliseconds, on an
idle loop). Where the C library has no ``malloc_trim`` (not glibc) it does nothing.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 1.0

GC_THRESHOLDS = (50_000, 20, 20)
"""The collector's thresholds in a service process (CPython's defaults: 700, 10, 10)."""


def tune_gc(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """Called by the worker, sink and facade commands once their modules are imported and their app built.

    The worker allocates tens of thousands of dicts and strings per 100-item batch (specs, item results,
    records), nearly none of them in a reference cycle: reference counting frees them. CPython's collector
    still scans the young objects every 700 net allocations of containers, and every few seconds it runs a
    full collection that traverses every object of the process (Faust, aiokafka, pydantic, the modules),
    35-50 ms each: 4.8 % of the worker's main process CPU and 2.7 % of the sink's in ten seconds of
    all-miss load, 10 % of the worker's over a whole benchmark run with its start-up (BENCHMARKS.md, "The
    collector's schedule"). ``gc.freeze()`` takes what start-up built out of every later collection, and the
    thresholds make young collections ~70 times rarer. Cycles are still collected, later; the benchmark
    measures the worker's RSS over 100,000 codes. Not for the render processes (their collections cost ~1 %
    of a render) or a library's caller (the process is theirs)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


def libc_malloc_trim() -> Callable[[], int] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none."""
    try:
        fn = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return lambda: int(fn(0))


class HeapTrimmer:
    """``busy()`` after work; ``idle()`` on an empty poll trims once the work is over (rate-limited)."""

    def __init__(
        self,
        trim: Callable[[], int] | None = None,
        *,
        min_interval_s: float = MIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.trim = trim if trim is not None else libc_malloc_trim()
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.trims = 0
        self._dirty = False
        self._last = float("-inf")

    def busy(self) -> None:
        self._dirty = True

    def idle(self) -> bool:
        """Trim if there was work since the last trim and the last one is ``min_interval_s`` old."""
        if not self._dirty or self.trim is None:
            return False
        now = self.clock()
        if now - self._last < self.min_interval_s:
            return False
        t0 = time.perf_counter()
        released = self.trim()
        self._last, self._dirty = now, False
        self.trims += 1
        log.debug("heap trimmed (%s) in %.1f ms", "released" if released else "nothing to release",
                  (time.perf_counter() - t0) * 1000)  # fmt: skip
        return True
