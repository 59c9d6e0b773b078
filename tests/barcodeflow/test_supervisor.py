"""The restart policy and the supervision loop, on fake processes and a fake clock."""

from __future__ import annotations

import itertools
import signal

import pytest

from barcodeflow.supervisor import (
    Crashed,
    GiveUp,
    Restart,
    RestartPolicy,
    RestartTracker,
    StartFailed,
    Supervisor,
    describe_exit,
)

_pids = itertools.count(1000)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


class FakeUnit:
    """A process that runs until ``die()``; with ``crash_on_start`` it exits right after every start."""

    def __init__(self, name: str, *, crash_on_start: int | None = None, start_fails: int = 0) -> None:
        self.name = name
        self._pid: int | None = None
        self.running = False
        self.code: int | None = None
        self.crash_on_start = crash_on_start
        self.start_fails = start_fails
        self.starts = 0
        self.after_exits = 0
        self.stops = 0
        self.events: list[str] | None = None

    @property
    def pid(self) -> int | None:
        return self._pid

    def start(self) -> None:
        if self.start_fails:
            self.start_fails -= 1
            raise StartFailed("port taken")
        self.starts += 1
        self._pid = next(_pids)
        self.running = True
        if self.crash_on_start is not None:
            self.die(self.crash_on_start)

    def die(self, code: int) -> None:
        self.running = False
        self.code = code

    def alive(self) -> bool:
        return self.running

    def exit_code(self) -> int | None:
        return None if self.running else self.code

    def after_exit(self) -> None:
        self.after_exits += 1

    def stop(self) -> None:
        self.stops += 1
        if self.events is not None:
            self.events.append(self.name)
        self.running = False

    def log_hint(self) -> str:
        return f"{self.name}.log"


def supervisor(*units: FakeUnit, **policy: float) -> tuple[Supervisor, Clock, list[str]]:
    clock = Clock()
    lines: list[str] = []
    sup = Supervisor(list(units), RestartPolicy(**policy), clock=clock, say=lines.append)  # type: ignore[arg-type]
    for u in units:
        u.start()
        sup.started(u.name)
    return sup, clock, lines


# --------------------------------------------------------------------------- policy


def test_backoff_doubles_from_half_a_second_up_to_thirty() -> None:
    p = RestartPolicy()
    assert [p.delay(n) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    assert p.delay(10_000) == 30


@pytest.mark.parametrize(
    "kw", [{"initial_s": 0}, {"factor": 0.5}, {"max_s": 0.1}, {"healthy_after_s": 0}, {"max_restarts": -1}]
)
def test_policy_rejects_nonsense(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(**kw)  # type: ignore[arg-type]


def test_tracker_gives_up_on_the_exit_after_max_restarts_in_a_row() -> None:
    t = RestartTracker(RestartPolicy(max_restarts=3))
    verdicts = []
    now = 0.0
    for _ in range(4):
        t.started(now)
        now += 5.0  # each run lasts 5 s: never healthy
        verdicts.append(t.exited(now))
    assert [type(v) for v in verdicts] == [Restart, Restart, Restart, GiveUp]
    assert [v.delay_s for v in verdicts[:3]] == [0.5, 1.0, 2.0]  # type: ignore[union-attr]
    assert verdicts[-1] == GiveUp(in_a_row=4, total=3, uptime_s=5.0)


def test_tracker_starts_a_new_row_after_a_healthy_minute() -> None:
    t = RestartTracker(RestartPolicy(max_restarts=3))
    t.started(0.0)
    assert t.exited(1.0) == Restart(0.5, 1, 1, 1.0)
    t.started(2.0)
    assert t.exited(3.0) == Restart(1.0, 2, 2, 1.0)
    t.started(4.0)
    assert t.exited(64.0) == Restart(0.5, 1, 3, 60.0)  # ran 60 s: healthy, the row starts again
    t.started(65.0)
    assert t.exited(66.0) == Restart(1.0, 2, 4, 1.0)


def test_exit_descriptions_name_the_signal() -> None:
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert describe_exit(-200) == "killed by signal 200"
    assert describe_exit(0) == "exit status 0"
    assert describe_exit(3) == "exit status 3"
    assert describe_exit(None) == "exit status unknown"


# --------------------------------------------------------------------------- the loop


def test_a_dead_process_is_restarted_after_its_backoff_and_the_others_are_left_alone() -> None:
    worker, sink = FakeUnit("worker"), FakeUnit("sink")
    sup, clock, lines = supervisor(worker, sink)
    sink_pid, old_pid = sink.pid, worker.pid
    clock.now = 10.0
    worker.die(-signal.SIGKILL)
    assert sup.check() is None
    assert worker.after_exits == 1
    assert lines == [
        f"worker (pid {old_pid}) exited: killed by SIGKILL after 10.0 s; restart #1 in 0.5 s (1 in a row, limit 10)"
    ]
    assert sup.pending() == ["worker"]
    assert "worker restarting" in sup.status()
    clock.now = 10.4
    sup.check()
    assert worker.starts == 1  # not before its back-off
    clock.now = 10.5
    sup.check()
    assert worker.starts == 2 and worker.alive() and worker.pid != old_pid
    assert sup.pending() == []
    assert lines[-1].startswith(f"worker restarted (pid {worker.pid}, restart #1); now: ")
    assert sup.status() == f"worker pid {worker.pid} (1 restart), sink pid {sink_pid}"
    assert (sink.starts, sink.after_exits, sink.pid) == (1, 0, sink_pid)
    assert sup.restarts("worker") == 1 and sup.restarts("sink") == 0


def test_a_crash_loop_stops_supervision_and_names_the_process() -> None:
    bad, good = FakeUnit("facade", crash_on_start=2), FakeUnit("sink")
    sup, clock, lines = supervisor(bad, good, max_restarts=4)
    crashed = sup.run(lambda: False, tick=0.1, sleep=clock.sleep)
    assert isinstance(crashed, Crashed)
    assert crashed.unit == "facade" and crashed.status == "exit status 2"
    assert (crashed.verdict.in_a_row, crashed.verdict.total) == (5, 4)
    assert crashed.verdict.uptime_s == pytest.approx(0.1)  # noticed on the tick after its start
    assert bad.starts == 5  # the first start and 4 restarts
    delays = [float(ln.split(" in ")[1].split(" s ")[0]) for ln in lines if "restart #" in ln and " in " in ln]
    assert delays == [0.5, 1.0, 2.0, 4.0]
    assert lines[-1].endswith("crash loop, no more restarts")
    msg = crashed.message(sup.policy)
    assert msg.startswith("facade keeps crashing: it exited 5 times in a row")
    assert "exit status 2" in msg and "facade.log" in msg
    assert good.starts == 1 and good.stops == 0  # stopping everything is the caller's decision


def test_a_stop_request_during_the_backoff_is_seen_at_once_and_nothing_is_restarted() -> None:
    worker = FakeUnit("worker")
    sup, clock, _ = supervisor(worker, initial_s=30.0)
    worker.die(1)
    sup.check()
    ticks = 0

    def stop_requested() -> bool:
        nonlocal ticks
        ticks += 1
        return ticks > 2  # Ctrl-C arrives during the second tick of a 30 s back-off

    assert sup.run(stop_requested, tick=0.2, sleep=clock.sleep) is None
    assert clock.now == pytest.approx(0.4)
    assert worker.starts == 1 and sup.pending() == ["worker"]
    sup.stop_all()
    assert sup.pending() == []


def test_a_failed_start_counts_as_an_exit() -> None:
    kafka = FakeUnit("kafka")
    sup, clock, lines = supervisor(kafka)
    kafka.start_fails = 2
    kafka.die(-signal.SIGKILL)
    for _ in range(40):
        sup.check()
        clock.sleep(0.25)
    assert kafka.alive() and kafka.starts == 2
    assert sup.restarts("kafka") == 3
    failed = [ln for ln in lines if "could not be started (port taken)" in ln]
    assert len(failed) == 2
    assert "restart #3 in 2 s (3 in a row" in failed[-1]


def test_the_row_restarts_after_a_healthy_minute() -> None:
    sink = FakeUnit("sink")
    sup, clock, lines = supervisor(sink)
    for uptime in (5.0, 5.0, 61.0):
        clock.now += uptime
        sink.die(1)
        sup.check()
        clock.now += 60.0  # well past any back-off
        sup.check()
        assert sink.alive()
    assert [ln.split("; ")[1] for ln in lines if "exited" in ln] == [
        "restart #1 in 0.5 s (1 in a row, limit 10)",
        "restart #2 in 1 s (2 in a row, limit 10)",
        "restart #3 in 0.5 s (1 in a row, limit 10)",
    ]


def test_stop_all_stops_the_last_started_first() -> None:
    units = [FakeUnit(n) for n in ("kafka", "redis", "worker", "sink", "facade")]
    order: list[str] = []
    for u in units:
        u.events = order
    sup, _, _ = supervisor(*units)
    sup.stop_all()
    assert order == ["facade", "sink", "worker", "redis", "kafka"]


def test_unit_names_are_unique() -> None:
    with pytest.raises(ValueError, match="two units named 'worker'"):
        Supervisor([FakeUnit("worker"), FakeUnit("worker")])  # type: ignore[list-item]
