"""Keep a set of processes running: restart one that exits, with exponential back-off, and give up
only when one of them crash-loops.

The policy (:class:`RestartPolicy`, :class:`RestartTracker`) and the loop (:class:`Supervisor`) know
nothing about how a process is started: they see :class:`Unit` objects (start, alive, exit code,
clean-up after an exit) and take their clock, their sleep and their output as arguments. ``barcodeflow
up`` supplies units for its worker, sink and facade processes and for the Kafka and Redis it started.

The loop never sleeps through a back-off: it polls every ``tick`` seconds, so a stop request (Ctrl-C,
SIGTERM) is seen within one tick even while a restart is pending.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class RestartPolicy:
    """Back-off ``initial_s * factor**(n-1)`` (capped at ``max_s``) before the n-th restart in a row.

    A process that ran ``healthy_after_s`` or longer before it exited starts a new row (its back-off
    is back at ``initial_s``). The ``max_restarts + 1``-th exit in a row is a crash loop: give up.
    """

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    healthy_after_s: float = 60.0
    max_restarts: int = 10

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.factor < 1 or self.max_s < self.initial_s:
            raise ValueError(f"invalid back-off {self.initial_s} x {self.factor} up to {self.max_s}")
        if self.healthy_after_s <= 0 or self.max_restarts < 0:
            raise ValueError(f"invalid limits: healthy after {self.healthy_after_s}, max {self.max_restarts}")

    def delay(self, in_a_row: int) -> float:
        """Seconds to wait before the ``in_a_row``-th restart in a row (1-based)."""
        if in_a_row < 1:
            raise ValueError(f"restart number must be >= 1, got {in_a_row}")
        # the exponent is capped so that a long row cannot overflow the float
        return min(self.max_s, self.initial_s * self.factor ** min(in_a_row - 1, 64))


@dataclass(frozen=True)
class Restart:
    """Restart after ``delay_s``; ``in_a_row`` exits without a healthy run, ``total`` restarts so far."""

    delay_s: float
    in_a_row: int
    total: int
    uptime_s: float


@dataclass(frozen=True)
class GiveUp:
    """Crash loop: ``in_a_row`` exits in a row, none after a healthy run of ``healthy_after_s``."""

    in_a_row: int
    total: int
    uptime_s: float


@dataclass
class RestartTracker:
    """The restart state of one process; time comes from the caller (any monotonic clock)."""

    policy: RestartPolicy
    started_at: float | None = None
    in_a_row: int = 0
    total: int = 0

    def started(self, now: float) -> None:
        self.started_at = now

    def exited(self, now: float) -> Restart | GiveUp:
        uptime = now - self.started_at if self.started_at is not None else 0.0
        self.started_at = None
        if uptime >= self.policy.healthy_after_s:
            self.in_a_row = 0
        self.in_a_row += 1
        if self.in_a_row > self.policy.max_restarts:
            return GiveUp(self.in_a_row, self.total, uptime)
        self.total += 1
        return Restart(self.policy.delay(self.in_a_row), self.in_a_row, self.total, uptime)


def describe_exit(code: int | None) -> str:
    """``exit status 1``, ``killed by SIGKILL``, ``exit status unknown``."""
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class StartFailed(Exception):
    """A unit could not be started (the supervisor counts it like an exit)."""


class Unit(Protocol):
    """A process the supervisor keeps running."""

    name: str

    @property
    def pid(self) -> int | None: ...

    def start(self) -> None:
        """Start the process without waiting for it to be ready; raise StartFailed when it cannot be."""

    def alive(self) -> bool: ...

    def exit_code(self) -> int | None:
        """Return code of the exited process (negative: killed by that signal), None if unknown."""

    def after_exit(self) -> None:
        """Clean up after an exit (e.g. leftover children of the process) before a restart."""

    def stop(self) -> None: ...

    def log_hint(self) -> str:
        """Where to look for the process's own output."""


@dataclass(frozen=True)
class Crashed:
    """The supervisor gave up: ``unit`` crash-looped."""

    unit: str
    status: str
    verdict: GiveUp
    log_hint: str

    def message(self, policy: RestartPolicy) -> str:
        return (
            f"{self.unit} keeps crashing: it exited {self.verdict.in_a_row} times in a row, each time within "
            f"{policy.healthy_after_s:g} s of its start (last: {self.status}; {self.verdict.total} restarts "
            f"in all); giving up (see {self.log_hint})"
        )


@dataclass
class _Slot:
    unit: Unit
    tracker: RestartTracker
    restart_at: float | None = None  # a restart is pending at this time
    last_status: str = ""


@dataclass
class Supervisor:
    """Watch units; restart the one that exits after its back-off; :class:`Crashed` on a crash loop."""

    units: list[Unit]
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    clock: Callable[[], float] = time.monotonic
    say: Callable[[str], None] = print
    _slots: dict[str, _Slot] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        for u in self.units:
            if u.name in self._slots:
                raise ValueError(f"two units named {u.name!r}")
            self._slots[u.name] = _Slot(u, RestartTracker(self.policy))

    def started(self, name: str) -> None:
        """The caller started ``name`` itself (its first start)."""
        self._slots[name].tracker.started(self.clock())

    def restarts(self, name: str) -> int:
        return self._slots[name].tracker.total

    def pending(self) -> list[str]:
        """Units waiting for their restart."""
        return [n for n, s in self._slots.items() if s.restart_at is not None]

    def status(self) -> str:
        parts = []
        for name, s in self._slots.items():
            state = "restarting" if s.restart_at is not None else f"pid {s.unit.pid}"
            n = s.tracker.total
            parts.append(f"{name} {state}" + (f" ({n} restart{'s' if n != 1 else ''})" if n else ""))
        return ", ".join(parts)

    def check(self) -> Crashed | None:
        """One round: notice exits, schedule their restarts, run the restarts that are due."""
        for s in self._slots.values():
            now = self.clock()
            if s.restart_at is None:
                if s.unit.alive():
                    continue
                code = s.unit.exit_code()
                pid = s.unit.pid
                s.unit.after_exit()
                crashed = self._exited(s, f"(pid {pid}) exited: {describe_exit(code)}", describe_exit(code), now)
                if crashed is not None:
                    return crashed
            elif now >= s.restart_at:
                crashed = self._restart(s)
                if crashed is not None:
                    return crashed
        return None

    def _exited(self, s: _Slot, what: str, status: str, now: float) -> Crashed | None:
        verdict = s.tracker.exited(now)
        s.last_status = status
        if isinstance(verdict, GiveUp):
            s.restart_at = None
            self.say(f"{s.unit.name} {what} after {verdict.uptime_s:.1f} s; crash loop, no more restarts")
            return Crashed(s.unit.name, status, verdict, s.unit.log_hint())
        s.restart_at = now + verdict.delay_s
        self.say(
            f"{s.unit.name} {what} after {verdict.uptime_s:.1f} s; restart #{verdict.total} in "
            f"{verdict.delay_s:g} s ({verdict.in_a_row} in a row, limit {self.policy.max_restarts})"
        )
        return None

    def _restart(self, s: _Slot) -> Crashed | None:
        s.restart_at = None
        try:
            s.unit.start()
        except StartFailed as exc:
            return self._exited(s, f"could not be started ({exc})", f"start failed: {exc}", self.clock())
        s.tracker.started(self.clock())
        self.say(f"{s.unit.name} restarted (pid {s.unit.pid}, restart #{s.tracker.total}); now: {self.status()}")
        return None

    def run(
        self,
        stop_requested: Callable[[], bool],
        *,
        tick: float = 0.2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Crashed | None:
        """Supervise until ``stop_requested()`` (returns None) or a crash loop (returns it)."""
        while not stop_requested():
            crashed = self.check()
            if crashed is not None:
                return crashed
            sleep(tick)
        return None

    def stop_all(self) -> None:
        """Stop every unit, last started first."""
        for s in reversed(self._slots.values()):
            s.restart_at = None
            s.unit.stop()
