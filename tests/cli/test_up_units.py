"""The process edge of ``up``'s supervision, without services: Kafka's restart guard, the stop signal and
the children's static group member ids."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from barcodeflow.commands.up import ServiceUnit, StopSignal, kafka_storage_kept
from barcodeflow.settings import Settings
from barcodeflow.stack import ManagedProcess, StackPaths
from barcodeflow.supervisor import StartFailed


def _service(tmp_path: Path, spawned: list[str]) -> ManagedProcess:
    def prepare(p: ManagedProcess) -> None:
        spawned.append(p.name)
        raise AssertionError("stop before a process is started")

    return ManagedProcess(
        name="kafka", argv=["true"], cwd=tmp_path, address="127.0.0.1:1", log_path=tmp_path / "k.log",
        pid_path=tmp_path / "k.pid", ready=lambda p, t: None, prepare=prepare,
    )  # fmt: skip


def test_kafka_is_not_restarted_on_missing_or_damaged_storage(tmp_path: Path) -> None:
    spawned: list[str] = []
    unit = ServiceUnit(_service(tmp_path, spawned), kafka_storage_kept(tmp_path))
    with pytest.raises(StartFailed, match="missing or damaged; a restart does not reformat it"):
        unit.start()
    data = StackPaths(tmp_path).kafka_data
    data.mkdir(parents=True)
    (data / "meta.properties").write_text("version=1\nnode.id=1\ncluster.id=abc\n")
    with pytest.raises(StartFailed):
        unit.start()  # no metadata log: the broker's start would format the dir
    assert spawned == []
    (data / "bootstrap.checkpoint").write_text("x")
    with pytest.raises(AssertionError, match="stop before a process is started"):
        unit.start()  # storage intact: on to the spawn
    assert spawned == ["kafka"]


def test_service_start_errors_become_start_failed(tmp_path: Path) -> None:
    proc = _service(tmp_path, [])
    proc.prepare = None
    proc.argv = [str(tmp_path / "no-such-binary")]
    with pytest.raises(StartFailed, match="no-such-binary"):
        ServiceUnit(proc).start()


def test_stop_signal_interrupts_blocking_phases_only() -> None:
    stop = StopSignal()
    with pytest.raises(KeyboardInterrupt):
        stop(2, None)
    assert stop.requested
    quiet = StopSignal()
    quiet.interrupt = False
    quiet(15, None)  # in the supervision loop: only the flag
    assert quiet.requested


def test_up_gives_each_worker_and_the_sink_its_own_static_member_id() -> None:
    from barcodeflow.commands.up import child_env

    base = {"PATH": "/bin"}
    s = Settings(group_instance_id="rack7")
    children = (("worker-1", "worker"), ("worker-2", "worker"), ("sink", "sink"), ("facade", "facade"))
    ids = {n: child_env(base, s, n, role).get("GROUP_INSTANCE_ID") for n, role in children}
    assert ids == {"worker-1": "rack7-worker-1", "worker-2": "rack7-worker-2", "sink": "rack7-sink", "facade": None}
    assert child_env(base, s, "sink", "sink") == child_env(base, s, "sink", "sink")  # the same id after a restart
    assert base == {"PATH": "/bin"}
    host = child_env(base, Settings(), "sink", "sink")["GROUP_INSTANCE_ID"]
    assert host == f"{socket.gethostname()}-sink"


def test_worker_processes_get_distinct_ids_only_when_an_id_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    from barcodeflow.commands import worker

    started: list[str | None] = []

    class FakePopen:
        def __init__(self, cmd: list[str], env: dict[str, str]) -> None:
            started.append(env.get("GROUP_INSTANCE_ID") or None)

        def wait(self) -> int:
            return 0

        def poll(self) -> int:
            return 0

    monkeypatch.setattr(worker.subprocess, "Popen", FakePopen)
    monkeypatch.setattr(worker.signal, "signal", lambda *a: None)
    monkeypatch.delenv("GROUP_INSTANCE_ID", raising=False)
    assert worker.supervise(3, Settings(group_instance_id="w")) == 0
    assert started == ["w-1", "w-2", "w-3"]
    started.clear()
    assert worker.supervise(2, Settings()) == 0
    assert started == [None, None]
