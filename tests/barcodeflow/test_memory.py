"""barcodeflow.memory: the collector's schedule, the heap trimmer's (fake trim and clock) and glibc's malloc_trim."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

import pytest

from barcodeflow.memory import GC_THRESHOLDS, HeapTrimmer, libc_malloc_trim, tune_gc


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def make_trimmer():
    def make(min_interval_s: float = 1.0) -> tuple[HeapTrimmer, list[int], Clock]:
        calls: list[int] = []
        clock = Clock()

        def trim() -> int:
            calls.append(1)
            return 1

        return HeapTrimmer(trim, min_interval_s=min_interval_s, clock=clock), calls, clock

    return make


def test_idle_without_work_does_not_trim(make_trimmer):
    heap, calls, _ = make_trimmer()
    assert heap.idle() is False
    assert calls == []


def test_trims_once_after_work(make_trimmer):
    heap, calls, clock = make_trimmer()
    heap.busy()
    assert heap.idle() is True
    clock.t += 10
    assert heap.idle() is False  # nothing freed since: no second trim while idle
    assert len(calls) == 1 and heap.trims == 1


def test_rate_limited_then_deferred_to_the_next_idle_poll(make_trimmer):
    heap, calls, clock = make_trimmer(min_interval_s=2.0)
    heap.busy()
    assert heap.idle() is True
    clock.t += 0.5
    heap.busy()
    assert heap.idle() is False  # within the interval
    clock.t += 1.6
    assert heap.idle() is True  # the deferred trim happens once the interval has passed
    assert len(calls) == 2


def test_no_malloc_trim_means_no_op():
    heap = HeapTrimmer(None)
    heap.trim = None  # a C library without malloc_trim
    heap.busy()
    assert heap.idle() is False


@pytest.mark.skipif(libc_malloc_trim() is None, reason="the C library has no malloc_trim (not glibc)")
def test_malloc_trim_returns_freed_heap_to_the_os():
    # A fresh interpreter: big buffers freed while small ones interleaved with them stay alive keep their
    # pages resident until malloc_trim hands them back.
    script = textwrap.dedent(
        """
        import psutil
        from barcodeflow.memory import libc_malloc_trim
        rss = lambda: psutil.Process().memory_info().rss
        x = bytearray(1_000_000); del x  # freeing an mmapped chunk raises glibc's mmap threshold
        big, keep = [], []
        for _ in range(100):
            big.append(bytearray(230_000))
            keep.append(bytearray(3_000))
        del big
        before = rss()
        libc_malloc_trim()()
        print(before - rss())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    released_mb = int(out.stdout.strip()) / 2**20
    assert released_mb > 10, f"malloc_trim released only {released_mb:.1f} MB of ~22 MB freed"


def test_tune_gc_freezes_start_up_objects_and_raises_the_thresholds() -> None:
    before = gc.get_threshold()
    try:
        tune_gc((12_345, 7, 3))
        assert gc.get_threshold() == (12_345, 7, 3)
        assert gc.get_freeze_count() > 0  # what the process built so far is out of the collector's way
        assert GC_THRESHOLDS[0] > 10 * before[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
