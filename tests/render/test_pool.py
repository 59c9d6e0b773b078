"""``RenderPool``: real spawned render processes, their pipes, deaths and callers that stop waiting."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import psutil
import pytest

from render.pool import InlinePool, RenderPool
from tests.render.helpers import decode_png

ROOT = Path(__file__).resolve().parents[2]
GUARD_S = 30.0  # a broken test fails after this instead of hanging; never reached by a passing test


# called in the render processes (by reference: this module is importable there)
def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def echo(value: str) -> str:
    return value


def refuse(value: str) -> None:
    raise ValueError(f"refused {value!r}")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def qr_specs(*texts: str, fmt: str = "png") -> list[dict[str, object]]:
    from render import normalize_item

    return [normalize_item({"barcode_type": "qr", "data": t, "format": fmt}).to_dict() for t in texts]


class LogStore:
    """A store that notes its writes and its flushes in a file (it runs in the render process)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, entries: dict[str, bytes]) -> bool:
        with self.path.open("a") as f:
            f.write(f"write {len(entries)}\n")
        return True

    def flush(self) -> None:
        with self.path.open("a") as f:
            f.write("flush\n")


@pytest.fixture
def make_pool():
    """A factory of pools, each stopped after the test."""
    pools: list[RenderPool] = []

    def make(processes: int = 2, **kwargs: int) -> RenderPool:
        pools.append(RenderPool(processes, **kwargs))
        return pools[-1]

    yield make
    for p in pools:
        p.stop()


@pytest.fixture
def pool(make_pool):
    return make_pool()


async def test_concurrent_calls_each_get_their_own_images(pool: RenderPool) -> None:
    batches = [qr_specs(*(f"call {c} item {i}" for i in range(5))) for c in range(8)]
    answers = await asyncio.wait_for(asyncio.gather(*(pool.run(b) for b in batches)), GUARD_S)
    for c, (batch, outcomes) in enumerate(zip(batches, answers, strict=True)):
        assert [o.image for o in outcomes] == [o.image for o in await InlinePool().run(batch)]
        for i, o in enumerate(outcomes):
            [decoded] = decode_png(o.image or b"", "qr")
            assert decoded.text == f"call {c} item {i}"
    assert len(set(pool.pids())) == 2 and os.getpid() not in pool.pids()


async def test_an_exception_in_the_process_reaches_the_caller(pool: RenderPool) -> None:
    with pytest.raises(ValueError, match="refused 'x'"):
        await asyncio.wait_for(pool.call(refuse, "x"), GUARD_S)
    assert await asyncio.wait_for(pool.call(echo, "next"), GUARD_S) == "next"  # the process lives on


async def test_a_caller_that_stopped_waiting_never_gets_its_reply_to_the_next_call(make_pool) -> None:
    pool = make_pool(1, depth=2)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(pool.call(pid_after, 0.5), 0.1)
    assert await asyncio.wait_for(pool.call(echo, "second"), GUARD_S) == "second"
    assert await asyncio.wait_for(pool.call(echo, "third"), GUARD_S) == "third"


async def test_a_killed_process_is_replaced_and_its_call_tried_once_more(make_pool) -> None:
    pool = make_pool(1)
    await asyncio.wait_for(pool.call(echo, "warm"), GUARD_S)
    [victim] = pool.pids()
    call = asyncio.ensure_future(pool.call(pid_after, 0.5))
    await asyncio.sleep(0.2)  # the call is in the victim's hands
    os.kill(victim, signal.SIGKILL)
    answered_by = await asyncio.wait_for(call, GUARD_S)
    assert answered_by != victim and pool.pids() == [answered_by]


async def test_a_call_that_kills_every_process_it_meets_fails_after_two_tries(make_pool) -> None:
    pool = make_pool(1)
    await asyncio.wait_for(pool.call(echo, "warm"), GUARD_S)
    first = pool.pids()
    with pytest.raises(BrokenProcessPool):
        await asyncio.wait_for(pool.call(die), GUARD_S)
    assert await asyncio.wait_for(pool.call(echo, "after"), GUARD_S) == "after"  # a third process serves
    assert pool.pids() != first


async def test_a_process_settles_its_store_only_when_no_call_waits_for_it(tmp_path: Path) -> None:
    log = tmp_path / "store.log"
    pool = RenderPool(1, store=LogStore(log), depth=2)
    try:
        first, second = qr_specs(*(f"a{i}" for i in range(20))), qr_specs("b0", "b1")
        calls = [pool.render_and_store(specs, [f"k{i}" for i in range(len(specs))]) for specs in (first, second)]
        answers = await asyncio.wait_for(asyncio.gather(*calls), GUARD_S)
        assert [stored for _, stored in answers] == [True, True]
        deadline = time.monotonic() + GUARD_S
        while log.read_text().splitlines()[-1:] != ["flush"] and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    finally:
        pool.stop()
    # flushed while idle before the calls came, not between the two (the second was waiting), then once idle
    assert log.read_text().splitlines()[-3:] == ["write 20", "write 2", "flush"]


async def test_stop_ends_the_processes(pool: RenderPool) -> None:
    await asyncio.wait_for(pool.call(echo, "warm"), GUARD_S)
    pids = pool.pids()
    pool.stop()
    assert pool.pids() == []
    for pid in pids:
        with pytest.raises(ProcessLookupError):  # ended and reaped
            os.kill(pid, 0)


async def test_the_processes_end_when_their_parent_is_killed() -> None:
    script = (
        "import asyncio, sys\n"
        "from render.pool import RenderPool\n"
        "from tests.render.test_pool import echo\n"
        "async def main():\n"
        "    pool = RenderPool(2)\n"
        "    await pool.call(echo, 'warm')\n"
        "    print(*pool.pids(), flush=True)\n"
        "    await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=ROOT, stdout=asyncio.subprocess.PIPE, start_new_session=True
    )
    try:
        assert parent.stdout is not None
        line = await asyncio.wait_for(parent.stdout.readline(), GUARD_S)
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2
        parent.kill()  # SIGKILL: no clean-up code runs in the parent
        await parent.wait()
        deadline = time.monotonic() + 10
        while (alive := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert alive == []  # each saw its call pipe close and exited
    finally:
        if parent.returncode is None:
            parent.kill()


def _alive(pid: int) -> bool:
    try:  # an exited child not yet reaped by init is a zombie: gone
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Unreadable(Exception):
    """Pickles, but cannot be rebuilt from its pickle (two required arguments, one given)."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(a)


def refuse_unreadably() -> None:
    raise Unreadable("a", "b")


async def test_a_reply_that_does_not_unpickle_fails_its_call_only(make_pool) -> None:
    pool = make_pool(1)
    with pytest.raises(RuntimeError, match="unreadable reply from a render process"):
        await asyncio.wait_for(pool.call(refuse_unreadably), GUARD_S)
    assert await asyncio.wait_for(pool.call(echo, "next"), GUARD_S) == "next"


async def test_a_call_in_flight_when_the_pool_stops_fails_instead_of_waiting_forever(make_pool) -> None:
    pool = make_pool(1)
    await asyncio.wait_for(pool.call(echo, "warm"), GUARD_S)
    call = asyncio.ensure_future(pool.call(pid_after, 2.0))
    await asyncio.sleep(0.2)
    pool.stop(wait=False)
    with pytest.raises(BrokenProcessPool, match="stopped"):
        await asyncio.wait_for(call, GUARD_S)
