"""``barcodeflow up`` keeps serving when one of its processes dies.

One ``up`` for the module, on a private Kafka and Redis that ``up`` itself starts (free ports, its own
project root under tmp with the project's Kafka jars symlinked), so killing things never touches the
shared broker. The scenarios, in order:

* ``submit`` of 60 batches; the worker is SIGKILLed once results flow, the sink later: every batch is
  answered, none twice with different content, and ``up``'s pid, the broker's and Redis's are unchanged;
* Redis and Kafka are SIGKILLed: ``up`` starts them again on their data (results written before are
  still on the topic) and batches go through again;
* SIGTERM: ``up`` stops everything it started.

The batch deadline is the users' default (``BATCH_TIMEOUT_S`` 10 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson
import psutil
import pytest

from barcodeflow.settings import Settings
from barcodeflow.stack import find_root, kafka_healthy, redis_healthy
from barcodeflow.stack.procs import read_pid_file
from tests.faults.checker import ExpectedBatch, ResultsChecker, expect_batch
from tests.faults.support import PrivateKafka, keep_logs, qr_batch
from tests.support.pipeline import RedisServer, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

START_TIMEOUT_S = 300.0


def _free_port_pair() -> int:
    """A free port whose successor is free too (Kafka's controller listens on port + 1)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two adjacent free ports")


@dataclass
class Up:
    """A running ``barcodeflow up`` with its own root, ports and output file."""

    root: Path
    env: dict[str, str]
    settings: Settings
    out_path: Path
    popen: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def service_pid(self, name: str) -> int | None:
        rec = read_pid_file(self.root / ".stack" / f"{name}.pid")
        return rec.pid if rec is not None and rec.process() is not None else None

    def child_pid(self, command: str) -> int | None:
        """Pid of the live ``barcodeflow <command>`` child of ``up``."""
        for c in psutil.Process(self.pid).children():
            with contextlib.suppress(psutil.Error):
                cmd = c.cmdline()
                if "barcodeflow.cli" in cmd and cmd[cmd.index("barcodeflow.cli") + 1 :][:1] == [command]:
                    if c.status() != psutil.STATUS_ZOMBIE:
                        return c.pid
        return None

    def leftovers(self) -> list[psutil.Process]:
        """Every process started under this root: ``up``'s children inherit its environment, Kafka names the
        root in its command line, Redis (which overwrites its environment with its title) its port."""
        redis = f"127.0.0.1:{urlparse(self.settings.redis_url).port}"
        out = []
        for p in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if p.pid == self.pid or p.status() == psutil.STATUS_ZOMBIE:
                    continue
                cmd = " ".join(p.cmdline())
                if (
                    p.environ().get("BARCODEFLOW_ROOT") == str(self.root)
                    or str(self.root) in cmd
                    or (cmd.startswith(("redis-server", "/usr/bin/redis-server")) and redis in cmd)
                ):
                    out.append(p)
        return out

    def terminate(self, timeout: float = 90.0) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        return self.popen.returncode

    def kill_leftovers(self) -> None:
        for p in self.leftovers():
            with contextlib.suppress(psutil.Error):
                p.kill()


def wait_for(pred: Callable[[], object], timeout: float, what: str, up: Up) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if up.popen.poll() is not None:
            raise AssertionError(f"up exited ({up.popen.returncode}) while waiting for {what}:\n{up.output()[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:g} s:\n{up.output()[-4000:]}")
        time.sleep(0.2)


async def await_for(pred: Callable[[], object], timeout: float, what: str, up: Up) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if up.popen.poll() is not None:
            raise AssertionError(f"up exited ({up.popen.returncode}) while waiting for {what}:\n{up.output()[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:g} s:\n{up.output()[-4000:]}")
        await asyncio.sleep(0.2)


def up_env(work: Path, kafka_port: int, redis_port: int) -> dict[str, str]:
    """Environment of an ``up`` with its own project root under ``work`` (the project's Kafka jars linked)."""
    root = work / "root"
    lib = find_root(Path(__file__).parent) / ".stack" / "kafka" / "lib"
    if not lib.is_dir():
        pytest.fail(f"no Kafka jars in {lib}: run scripts/setup first")
    (root / ".stack" / "kafka").mkdir(parents=True)
    (root / ".stack" / "kafka" / "lib").symlink_to(lib, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if k not in Settings._ENV}  # the users' defaults, private ports
    env.update(
        BARCODEFLOW_ROOT=str(root),
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{kafka_port}",
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        FACADE_PORT=str(free_port()),
        API_KEYS=f"k-{uuid.uuid4().hex}",
        BARCODEFLOW_DATA_DIR=str(work / "faust"),
        PYTHONUNBUFFERED="1",
    )
    return env


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    work = tmp_path_factory.mktemp("up-supervision")
    env = up_env(work, _free_port_pair(), free_port())
    root = Path(env["BARCODEFLOW_ROOT"])
    settings = Settings.from_env(env)
    assert settings.batch_timeout_s == Settings().batch_timeout_s  # the default deadline, not a test one
    out_path = work / "up.out"
    with out_path.open("wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "barcodeflow.cli", "up"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=work, start_new_session=True,
        )  # fmt: skip
    u = Up(root, env, settings, out_path, popen)
    try:
        wait_for(lambda: "up: running:" in u.output(), START_TIMEOUT_S, "'up: running' line", u)
        yield u
    finally:
        rc = u.terminate()
        u.kill_leftovers()
        if rc not in (0, None):
            print(f"logs of the up supervision scenarios kept in {keep_logs(root / '.stack' / 'logs', 'up')}")


def _submit(u: Up, path: Path, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "barcodeflow.cli", "submit", str(path), "--out", str(out), "--no-progress"],
        env=u.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _write_batches(path: Path, batches: list[dict[str, Any]]) -> None:
    path.write_bytes(b"".join(orjson.dumps(b) + b"\n" for b in batches))


def _timeout_batches(results: ResultsChecker) -> list[str]:
    """Batches with a record that reports an item as ``timeout`` (any record: a consumer may act on it)."""
    return sorted(
        bid
        for bid, recs in results.by_batch.items()
        if any((x.get("error") or {}).get("code") == "timeout" for r in recs for x in (r.doc or {}).get("results", []))
    )


def _group_members(pgid: int) -> list[int]:
    out = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if p.status() != psutil.STATUS_ZOMBIE and os.getpgid(p.pid) == pgid:
                out.append(p.pid)
    return out


@dataclass
class Kill:
    old: int
    new: int
    answered_at_kill: int


async def _kill_child(u: Up, command: str, results: ResultsChecker, ids: list[str], at: int) -> Kill:
    """SIGKILL ``up``'s ``command`` child (that process only, like ``kill -9 <pid>``) once ``at`` batches are
    answered; wait until ``up`` has started a new one."""
    await await_for(lambda: results.answered(ids) >= at, 180, f"{at} answered batches", u)
    old = u.child_pid(command)
    assert old is not None, u.output()
    answered = results.answered(ids)
    os.kill(old, signal.SIGKILL)
    await await_for(
        lambda: re.search(rf"{command} restarted \(pid (\d+)", u.output()[u.output().find(f"(pid {old}) exited"):]),
        60, f"restart of {command}", u,
    )  # fmt: skip
    new = u.child_pid(command)
    assert new is not None and new != old, u.output()
    # what was left of it (its render pool) went with it
    await await_for(lambda: not _group_members(old), 10, f"the end of {command}'s process group", u)
    return Kill(old, new, answered)


@pytest.mark.timeout(600)
async def test_worker_and_sink_sigkill_mid_flow_every_batch_completes(up: Up, tmp_path: Path) -> None:
    u = up
    tag = "sup" + uuid.uuid4().hex[:6]
    batches = [qr_batch(tag, n, 10) for n in range(60)]
    expected: dict[str, ExpectedBatch] = await asyncio.to_thread(
        lambda: {b["batch_id"]: expect_batch(b) for b in batches}
    )
    ids = list(expected)
    path = tmp_path / "batches.ndjson"
    _write_batches(path, batches)
    pids = {"up": u.pid, "kafka": u.service_pid("kafka"), "redis": u.service_pid("redis")}
    assert None not in pids.values(), pids
    results = ResultsChecker(u.settings)
    await results.start()
    t0 = time.monotonic()
    submit = _submit(u, path, tmp_path / "out")
    try:
        worker = await _kill_child(u, "worker", results, ids, 10)
        sink = await _kill_child(u, "sink", results, ids, 30)
        await await_for(lambda: submit.poll() is not None, 300, "end of submit", u)
        elapsed = time.monotonic() - t0
        assert await results.wait_for(ids, 60), f"{results.answered(ids)}/60 answered:\n{u.output()[-3000:]}"
        await results.drain(quiet_s=3.0)
    finally:
        await results.stop()
        if submit.poll() is None:
            submit.kill()
        submit_out = submit.communicate(timeout=30)[0].decode(errors="replace")
    report = results.analyse(expected)
    timed_out = _timeout_batches(results)
    print(
        f"\nup supervision: 60 batches x 10 QR in {elapsed:.1f} s; worker {worker.old} -> {worker.new} killed "
        f"with {worker.answered_at_kill} batches answered, sink {sink.old} -> {sink.new} with "
        f"{sink.answered_at_kill}; {report.summary()}; batches with timeout items: {timed_out}\n{submit_out[-600:]}"
    )
    assert worker.answered_at_kill < 60 and sink.answered_at_kill < 60, "a kill came after the flow"
    assert not report.lost, report.explain()
    assert report.visible_duplicates == 0, report.explain()
    assert not report.incomplete, f"{report.explain()}\nbatches with timeout items: {timed_out}"
    assert submit.returncode == 0, submit_out
    assert "completed 60, invalid 0, timed out 0" in submit_out, submit_out
    # up and the services it started are the same processes; only the killed ones were replaced
    assert u.popen.poll() is None
    assert {"up": u.pid, "kafka": u.service_pid("kafka"), "redis": u.service_pid("redis")} == pids
    out = u.output()
    assert f"worker (pid {worker.old}) exited: killed by SIGKILL" in out
    assert f"sink (pid {sink.old}) exited: killed by SIGKILL" in out
    assert f"worker restarted (pid {worker.new}, restart #1)" in out
    assert f"sink restarted (pid {sink.new}, restart #1)" in out
    assert "up: stopping" not in out and "keeps crashing" not in out


@pytest.mark.timeout(600)
async def test_redis_and_kafka_are_restarted_on_their_data(up: Up, tmp_path: Path) -> None:
    u = up
    tag = "svc" + uuid.uuid4().hex[:6]
    before = [qr_batch(tag, n, 3) for n in range(5)]
    after = [qr_batch(tag, n, 3) for n in range(5, 10)]
    expected = await asyncio.to_thread(lambda: {b["batch_id"]: expect_batch(b) for b in before + after})
    _write_batches(tmp_path / "before.ndjson", before)
    _write_batches(tmp_path / "after.ndjson", after)
    first = _submit(u, tmp_path / "before.ndjson", tmp_path / "out-before")
    out_before = first.communicate(timeout=120)[0].decode(errors="replace")
    assert first.returncode == 0, out_before

    up_pid = u.pid
    for name in ("redis", "kafka"):
        old = u.service_pid(name)
        assert old is not None
        os.kill(old, signal.SIGKILL)
        wait_for(lambda n=name, o=old: f"{n} (pid {o}) exited: killed by SIGKILL" in u.output(), 30, f"{name} exit", u)
        new = wait_for(lambda n=name, o=old: (p := u.service_pid(n)) not in (None, o) and p, 120, f"new {name}", u)
        assert re.search(rf"{name} restarted \(pid {new}, restart #1\)", u.output()), u.output()
    assert wait_for(lambda: redis_healthy(u.settings.redis_url), 30, "Redis answering", u)
    # up does not wait for a restarted broker to be ready; submit exits with 3 when it finds none
    bootstrap = u.settings.kafka_bootstrap_servers
    assert await asyncio.to_thread(wait_for, lambda: kafka_healthy(bootstrap), 120, "Kafka answering", u)

    second = _submit(u, tmp_path / "after.ndjson", tmp_path / "out-after")
    out_after = await asyncio.to_thread(lambda: second.communicate(timeout=240)[0].decode(errors="replace"))
    assert second.returncode == 0, f"{out_after}\n{u.output()[-3000:]}"
    results = ResultsChecker(u.settings)  # from offset 0: the records written before Kafka's restart are kept
    await results.start()
    try:
        assert await results.wait_for(list(expected), 60), results.answered(list(expected))
        await results.drain(quiet_s=2.0)
    finally:
        await results.stop()
    report = results.analyse(expected)
    assert not report.lost and not report.incomplete and report.visible_duplicates == 0, report.explain()
    assert u.popen.poll() is None and u.pid == up_pid


@pytest.mark.timeout(180)
def test_sigterm_stops_everything_up_started(up: Up) -> None:
    u = up
    started = [p.pid for p in u.leftovers()]
    assert {u.service_pid("kafka"), u.service_pid("redis"), u.child_pid("worker"), u.child_pid("sink"),
            u.child_pid("facade")} <= set(started), (started, u.output())  # fmt: skip
    assert u.terminate(timeout=120) == 0, u.output()
    assert "up: stopping" in u.output()
    assert [p.cmdline() for p in u.leftovers()] == []
    assert u.service_pid("kafka") is None and u.service_pid("redis") is None


@pytest.mark.timeout(420)
def test_a_crash_loop_stops_what_up_started_and_leaves_what_it_reused(tmp_path: Path) -> None:
    """The facade cannot bind its port (uvicorn exits with 3): ``up --max-restarts 2`` gives up on its third
    exit in a row, names it, exits 1 and stops the worker and sink; the Kafka and Redis it found running
    (reused, not started by it) are left alone."""
    kafka = PrivateKafka(tmp_path / "kafka")
    redis = RedisServer(free_port(), tmp_path / "redis")
    blocker = socket.socket()
    try:
        kafka.start()
        redis.start()
        assert kafka.proc is not None and redis.popen is not None
        kafka_pid = kafka.proc.pid
        env = up_env(tmp_path / "up", kafka.port, redis.port)
        blocker.bind(("127.0.0.1", int(env["FACADE_PORT"])))
        blocker.listen()
        t0 = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "barcodeflow.cli", "up", "--max-restarts", "2"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        out = run.stdout + run.stderr
        print(f"\ncrash loop: up gave up after {time.monotonic() - t0:.1f} s")
        assert run.returncode == 1, out
        assert "(reused" in out and "started," not in out, out  # it started no service of its own
        exits = re.findall(r"facade \(pid \d+\) exited: exit status (\d+) after [\d.]+ s; (.*)", out)
        assert [(code != "0", then) for code, then in exits] == [
            (True, "restart #1 in 0.5 s (1 in a row, limit 2)"),
            (True, "restart #2 in 1 s (2 in a row, limit 2)"),
            (True, "crash loop, no more restarts"),
        ], out
        assert "up: facade keeps crashing: it exited 3 times in a row" in out, out
        assert re.search(r"\(last: exit status [1-9]\d*; 2 restarts in all\); giving up", out), out
        assert "worker (pid" not in out and "sink (pid" not in out, out  # only the facade was restarted
        root = env["BARCODEFLOW_ROOT"]
        left = []
        for p in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if p.environ().get("BARCODEFLOW_ROOT") == root and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(p.cmdline())
        assert left == []
        assert kafka.proc.alive() and kafka.proc.pid == kafka_pid
        assert kafka_healthy(kafka.bootstrap)
        assert redis.popen.poll() is None and redis_healthy(redis.url)
    finally:
        blocker.close()
        redis.stop()
        kafka.stop()
