"""Background service processes of the local stack: spawn, adopt, probe, stop, kill, restart.

A service is started detached (its own session, stdout/stderr appended to ``.stack/logs/<name>.log``)
so it outlives the Python process that started it; a JSON pid file under ``.stack/`` records it
(pid + process create time, so a recycled pid is never mistaken for ours).

Ownership: ``ManagedProcess.owned`` is True only for a process that *this* object spawned.
A service found already running (``reused=True``) is left alone by :func:`stop` unless ``force=True``;
``restart()`` keeps the original owner, so a test that SIGKILLs and restarts a broker started by
``python -m barcodeflow.stack start`` leaves the new broker to that command's ``stop``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

LOG_ROTATE_BYTES = 50 * 1024 * 1024


class ServiceError(RuntimeError):
    """A service could not be installed, started or reached."""


# --------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class StackPaths:
    """Everything the local stack writes lives under ``<root>/.stack`` (gitignored)."""

    root: Path

    @property
    def stack(self) -> Path:
        return self.root / ".stack"

    @property
    def logs(self) -> Path:
        return self.stack / "logs"

    @property
    def kafka(self) -> Path:
        return self.stack / "kafka"

    @property
    def kafka_lib(self) -> Path:
        return self.kafka / "lib"

    @property
    def kafka_data(self) -> Path:
        return self.kafka / "data"

    @property
    def kafka_config(self) -> Path:
        return self.kafka / "server.properties"

    @property
    def kafka_log4j(self) -> Path:
        return self.kafka / "log4j2.properties"

    @property
    def redis(self) -> Path:
        return self.stack / "redis"

    def pid_file(self, name: str) -> Path:
        return self.stack / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.logs / f"{name}.log"


def find_root(start: Path | None = None) -> Path:
    """The project root: ``$BARCODEFLOW_ROOT``, else the nearest parent with pyproject.toml + barcodeflow/."""
    env = os.environ.get("BARCODEFLOW_ROOT")
    if env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "pyproject.toml").is_file() and (d / "barcodeflow").is_dir():
            return d
    return here


# --------------------------------------------------------------------------- small probes


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port_free(host: str, port: int, timeout: float = 20.0) -> bool:
    """Wait until nothing accepts connections on host:port (a SIGKILLed JVM can hold its sockets for a
    moment after its main thread already shows as a zombie). True when free."""
    deadline = time.monotonic() + timeout
    while port_open(host, port, timeout=0.2):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def listening_pid(port: int) -> int | None:
    """Pid of the process listening on a local TCP port, if it can be seen."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            return int(c.pid)
    return None


def describe_pid(pid: int | None) -> str:
    if pid is None:
        return "unknown process"
    try:
        p = psutil.Process(pid)
        return f"pid {pid} ({' '.join(p.cmdline())[:160]})"
    except psutil.Error:
        return f"pid {pid}"


def tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


# --------------------------------------------------------------------------- pid files


@dataclass(frozen=True)
class PidRecord:
    pid: int
    create_time: float
    argv: tuple[str, ...] = ()
    address: str = ""

    def process(self) -> psutil.Process | None:
        """The live process this record names, or None (gone, zombie, or pid recycled)."""
        try:
            p = psutil.Process(self.pid)
            if abs(p.create_time() - self.create_time) > 1.0:
                return None
            if p.status() == psutil.STATUS_ZOMBIE:
                return None
            return p
        except psutil.Error:
            return None


def read_pid_file(path: Path) -> PidRecord | None:
    try:
        raw = json.loads(path.read_text())
        return PidRecord(
            pid=int(raw["pid"]),
            create_time=float(raw["create_time"]),
            argv=tuple(raw.get("argv", ())),
            address=str(raw.get("address", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_pid_file(path: Path, pid: int, argv: Sequence[str], address: str) -> None:
    try:
        ctime = psutil.Process(pid).create_time()
    except psutil.Error:
        ctime = time.time()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(json.dumps({"pid": pid, "create_time": ctime, "argv": list(argv), "address": address}))
    tmp.replace(path)


def live_pid_record(path: Path) -> PidRecord | None:
    """The pid file's record if its process is still alive; a stale pid file is removed."""
    rec = read_pid_file(path)
    if rec is not None and rec.process() is not None:
        return rec
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return None


def terminate_pid(pid: int, timeout: float = 30.0) -> bool:
    """SIGTERM, wait up to ``timeout``, then SIGKILL. True if the process is gone."""
    try:
        p = psutil.Process(pid)
        p.send_signal(signal.SIGTERM)
    except psutil.NoSuchProcess:
        return True
    try:
        p.wait(timeout=timeout)
        return True
    except psutil.TimeoutExpired:
        pass
    with contextlib.suppress(psutil.NoSuchProcess):
        p.kill()
    try:
        p.wait(timeout=10)
    except psutil.TimeoutExpired:
        return False
    return True


# --------------------------------------------------------------------------- the process handle


ReadyCheck = Callable[["ManagedProcess", float], None]


@dataclass(eq=False)
class ManagedProcess:
    """A local service process (Kafka or Redis) with its log, pid file and readiness probe.

    ``ready(proc, timeout)`` raises (TimeoutError / ServiceError) until the service answers;
    ``prepare(proc)`` runs before every spawn (config, storage format, stale lock removal).
    """

    name: str
    argv: list[str]
    cwd: Path
    address: str
    log_path: Path
    pid_path: Path
    ready: ReadyCheck
    prepare: Callable[[ManagedProcess], None] | None = None
    env: dict[str, str] | None = None
    owned: bool = False
    reused: bool = False
    pid: int | None = None
    info: dict[str, str] = field(default_factory=dict)
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _create_time: float | None = field(default=None, repr=False)

    # -- state ---------------------------------------------------------------

    @property
    def host(self) -> str:
        return self.address.rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def alive(self) -> bool:
        if self._popen is not None:
            return self._popen.poll() is None
        if self.pid is None:
            return False
        try:
            p = psutil.Process(self.pid)
            if self._create_time is not None and abs(p.create_time() - self._create_time) > 1.0:
                return False
            if p.status() != psutil.STATUS_ZOMBIE:
                return True
            # Not our child: a zombie leader whose other threads are still exiting still holds its sockets.
            return len(os.listdir(f"/proc/{self.pid}/task")) > 1
        except (psutil.Error, OSError):
            return False

    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def adopt(self, pid: int | None) -> None:
        """Attach to an already-running process (not started by us)."""
        self._popen = None
        self.pid = pid
        self.reused = True
        self.owned = False
        self._create_time = None
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                self._create_time = psutil.Process(pid).create_time()

    # -- lifecycle -----------------------------------------------------------

    def spawn(self) -> None:
        """Start the process in the background (own session), logging to ``log_path``."""
        if self.prepare is not None:
            self.prepare(self)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.log_path.exists() and self.log_path.stat().st_size > LOG_ROTATE_BYTES:
            self.log_path.replace(self.log_path.with_suffix(self.log_path.suffix + ".1"))
        env = {**os.environ, **(self.env or {})}
        with self.log_path.open("ab") as log:
            log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(self.argv)}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(  # noqa: S603 - argv is built by this package
                self.argv,
                cwd=self.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self.pid = self._popen.pid
        with contextlib.suppress(psutil.Error):
            self._create_time = psutil.Process(self.pid).create_time()
        write_pid_file(self.pid_path, self.pid, self.argv, self.address)

    def wait_ready(self, timeout: float) -> None:
        self.ready(self, timeout)

    def send_signal(self, sig: int) -> None:
        if self.pid is None:
            raise ServiceError(f"{self.name}: no pid known")
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def kill(self, sig: int = signal.SIGKILL, *, wait: float = 10.0) -> None:
        """Send ``sig`` (default SIGKILL); for SIGKILL/SIGTERM wait until the process has exited."""
        self.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            self.wait_exit(wait)

    def wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        if self._popen is not None:
            try:
                self._popen.wait(timeout=timeout)
                return True
            except subprocess.TimeoutExpired:
                return False
        while time.monotonic() < deadline:
            if not self.alive():
                return True
            time.sleep(0.05)
        return not self.alive()

    def terminate(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; removes our pid file."""
        if self.alive() and self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            if not self.wait_exit(timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.wait_exit(10)
        rec = read_pid_file(self.pid_path)
        if rec is None or rec.pid == self.pid or rec.process() is None:
            with contextlib.suppress(FileNotFoundError):
                self.pid_path.unlink()

    def restart(self, timeout: float = 120.0, stop_timeout: float = 30.0) -> None:
        """Stop (if still running) and start again with the same argv/data; waits until ready.

        Ownership is kept: a reused service stays "not ours" for :func:`stop`.
        """
        if self.alive():
            self.terminate(stop_timeout)
        was_owned, was_reused = self.owned, self.reused
        self.spawn()
        self.owned, self.reused = was_owned, was_reused
        self.wait_ready(timeout)

    def describe(self) -> str:
        how = "reused" if self.reused else "started"
        return f"{self.name}: {self.address} ({how}, {describe_pid(self.pid) if self.pid else 'pid unknown'})"


def stop(proc: ManagedProcess, *, timeout: float = 30.0, force: bool = False) -> None:
    """Stop a service we started (SIGTERM, then SIGKILL after ``timeout``).

    A reused service (found already running) is left alone unless ``force=True``.
    """
    if proc.reused and not proc.owned and not force:
        return
    proc.terminate(timeout)


def wait_until(
    probe: Callable[[], object],
    timeout: float,
    *,
    what: str,
    interval: float = 0.25,
    proc: ManagedProcess | None = None,
) -> object:
    """Call ``probe`` until it returns without raising; TimeoutError after ``timeout`` seconds.

    With ``proc``, fail fast (ServiceError with the log tail) when the process has exited.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            return probe()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last = exc
        if proc is not None and proc.pid is not None and not proc.alive():
            rc = proc.returncode()
            raise ServiceError(
                f"{proc.name} exited (rc={rc}) before it was ready; last lines of {proc.log_path}:\n"
                + tail(proc.log_path)
            )
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s: {last!r}")
        time.sleep(interval)
