"""The process edge of ``up``'s supervision, without services: Kafka's restart guard and the stop signal."""

from __future__ import annotations

from pathlib import Path

import pytest

from barcodeflow.commands.up import ServiceUnit, StopSignal, kafka_storage_kept
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
