"""A real single-node Apache Kafka (KRaft, broker+controller in one JVM) from Maven Central jars.

No tarball: ``pom.xml`` beside this file pins ``org.apache.kafka:kafka_2.13`` and a log4j2 binding;
``mvn dependency:copy-dependencies`` puts the runtime class path in ``.stack/kafka/lib`` (once; a stamp
with the pom's hash makes later calls instant). Storage is formatted with ``kafka.tools.StorageTool``
and the broker runs as ``java -cp '.stack/kafka/lib/*' kafka.Kafka .stack/kafka/server.properties``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import importlib.resources
import logging
import os
import re
import shutil
import string
import subprocess
import threading
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from barcodeflow.stack.procs import (
    ManagedProcess,
    ServiceError,
    StackPaths,
    describe_pid,
    listening_pid,
    live_pid_record,
    port_open,
    read_pid_file,
    tail,
    terminate_pid,
    wait_port_free,
    wait_until,
)

log = logging.getLogger(__name__)

NAME = "kafka"
DEFAULT_PORT = 9092
HEAP = os.environ.get("BARCODEFLOW_KAFKA_HEAP", "512m")
STAMP = ".barcodeflow-installed"
MIN_JAVA = 17
NODE_ID = "1"

# Log lines after which a failed start is retried once on freshly formatted storage.
_STORAGE_ERRORS = re.compile(
    r"meta\.properties|InconsistentClusterIdException|Invalid cluster\.id|CorruptRecordException"
    r"|InvalidRecordException|KafkaStorageException|has not been formatted|No readable meta"
    r"|Inconsistent node\.id|bootstrap\.checkpoint|directory\.id|CorruptSnapshotException"
    r"|Unable to read the metadata|Found directory .* not in the metadata",
    re.IGNORECASE,
)

T = TypeVar("T")


def _resource_text(name: str) -> str:
    return (importlib.resources.files("barcodeflow.stack") / name).read_text(encoding="utf-8")


def kafka_version() -> str:
    m = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", _resource_text("pom.xml"))
    return m.group(1) if m else "unknown"


# --------------------------------------------------------------------------- java / maven


def java_bin() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if not found:
        raise ServiceError(
            f"java not found: Kafka {kafka_version()} needs Java {MIN_JAVA}+ "
            "(apt-get install -y openjdk-17-jre-headless)"
        )
    return found


def java_major(java: str | None = None) -> int:
    out = subprocess.run(  # noqa: S603
        [java or java_bin(), "-version"], capture_output=True, text=True, check=False
    ).stderr
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return 0
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def _mvn_bin() -> str:
    found = shutil.which("mvn")
    if not found:
        raise ServiceError("mvn not found: the Kafka jars come from Maven Central (apt-get install -y maven)")
    return found


def ensure_kafka_installed(root: Path, *, quiet: bool = True) -> Path:
    """Fetch the broker's runtime jars into ``<root>/.stack/kafka/lib`` (once); returns that dir.

    Runs ``mvn dependency:copy-dependencies`` into a temporary dir and renames it into place, so an
    interrupted download never leaves a half-filled lib dir that looks installed.
    """
    paths = StackPaths(root)
    pom = _resource_text("pom.xml")
    digest = hashlib.sha256(pom.encode()).hexdigest()
    stamp = paths.kafka_lib / STAMP
    if stamp.is_file() and stamp.read_text().strip() == digest and any(paths.kafka_lib.glob("kafka_2.13-*.jar")):
        return paths.kafka_lib
    paths.kafka.mkdir(parents=True, exist_ok=True)
    (paths.kafka / "pom.xml").write_text(pom)
    tmp = paths.kafka / "lib.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        _mvn_bin(),
        "-B",
        *(["-q"] if quiet else []),
        "-f",
        str(paths.kafka / "pom.xml"),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={tmp}",
    ]
    log.info("fetching Kafka %s jars: %s", kafka_version(), " ".join(cmd))
    res = subprocess.run(cmd, cwd=paths.kafka, capture_output=True, text=True, check=False)  # noqa: S603
    if res.returncode != 0 or not any(tmp.glob("kafka_2.13-*.jar")):
        raise ServiceError(f"mvn failed (rc={res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    (tmp / STAMP).write_text(digest + "\n")
    shutil.rmtree(paths.kafka_lib, ignore_errors=True)
    tmp.replace(paths.kafka_lib)
    shutil.rmtree(paths.kafka / "target", ignore_errors=True)
    return paths.kafka_lib


# --------------------------------------------------------------------------- config + storage


def render_config(root: Path, *, port: int = DEFAULT_PORT, controller_port: int | None = None) -> Path:
    paths = StackPaths(root)
    paths.kafka.mkdir(parents=True, exist_ok=True)
    text = string.Template(_resource_text("server.properties")).substitute(
        port=port,
        controller_port=controller_port or port + 1,
        log_dirs=str(paths.kafka_data),
    )
    _write_if_changed(paths.kafka_config, text)
    _write_if_changed(paths.kafka_log4j, _resource_text("log4j2.properties"))
    return paths.kafka_config


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _read_properties(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")) or "=" not in line:
            continue
        k, v = line.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def storage_ok(data: Path) -> bool:
    """True when the KRaft log dir is formatted for our node (meta.properties sane, metadata present)."""
    meta = data / "meta.properties"
    try:
        props = _read_properties(meta)
    except OSError:
        return False
    if props.get("node.id") != NODE_ID or props.get("version") != "1" or not props.get("cluster.id"):
        return False
    return (data / "bootstrap.checkpoint").is_file() or (data / "__cluster_metadata-0").is_dir()


def _new_cluster_id() -> str:
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def format_storage(root: Path, *, wipe: bool = True) -> str:
    """(Re)format the KRaft storage under ``.stack/kafka/data``; returns the cluster id used."""
    paths = StackPaths(root)
    if not paths.kafka_config.exists():
        render_config(root)
    cid_file = paths.kafka / "cluster.id"
    cid = cid_file.read_text().strip() if cid_file.exists() else ""
    if not re.fullmatch(r"[A-Za-z0-9_-]{22}", cid):
        cid = _new_cluster_id()
        cid_file.write_text(cid + "\n")
    if wipe:
        shutil.rmtree(paths.kafka_data, ignore_errors=True)
    paths.kafka_data.mkdir(parents=True, exist_ok=True)
    cmd = [
        java_bin(),
        f"-Dlog4j2.configurationFile={paths.kafka_log4j}",
        "-Dlog4j2.level=WARN",
        "-cp",
        f"{paths.kafka_lib}/*",
        "kafka.tools.StorageTool",
        "format",
        "--cluster-id",
        cid,
        "--config",
        str(paths.kafka_config),
        "--ignore-formatted",
    ]
    res = subprocess.run(cmd, cwd=paths.kafka, capture_output=True, text=True, check=False)  # noqa: S603
    if res.returncode != 0 or not storage_ok(paths.kafka_data):
        raise ServiceError(
            f"kafka-storage format failed (rc={res.returncode}):\n{res.stdout[-3000:]}{res.stderr[-3000:]}"
        )
    log.info("formatted Kafka storage %s (cluster id %s)", paths.kafka_data, cid)
    return cid


def ensure_storage(root: Path) -> bool:
    """Format the storage if it is missing or broken. True when it (re)formatted."""
    paths = StackPaths(root)
    if storage_ok(paths.kafka_data):
        return False
    if paths.kafka_data.exists() and any(paths.kafka_data.iterdir()):
        log.warning("Kafka storage %s is not a valid KRaft log dir: wiping and reformatting", paths.kafka_data)
    format_storage(root)
    return True


def _storage_failure(log_path: Path) -> bool:
    """Did the last start (after the last '===== ... starting' marker) die on a storage error?"""
    text = tail(log_path, 400)
    text = text.rsplit("\n===== ", 1)[-1] if "\n===== " in text else text
    bad = [ln for ln in text.splitlines() if re.search(r"\b(ERROR|FATAL)\b|Exception", ln)]
    return any(_STORAGE_ERRORS.search(ln) for ln in bad)


def _our_kafka_pids(paths: StackPaths) -> list[int]:
    """JVMs running kafka.Kafka on *this* root's server.properties (even without a pid file)."""
    import psutil

    cfg = str(paths.kafka_config)
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = p.info.get("cmdline") or []
        if "kafka.Kafka" in cmd and cfg in cmd:
            out.append(int(p.info["pid"]))
    return out


# --------------------------------------------------------------------------- readiness


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code, also when the caller is already inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            box["v"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001
            box["e"] = exc

    t = threading.Thread(target=runner, daemon=True)
    t.start()
    t.join()
    if "e" in box:
        raise box["e"]
    return box["v"]


async def kafka_metadata_async(bootstrap: str, timeout: float = 5.0) -> dict[str, Any]:
    """One metadata round trip: {"brokers": [...], "controller": id, "topics": [...]}.

    Raises when the broker is unreachable or lists no live broker yet.
    """
    from aiokafka.client import AIOKafkaClient

    aio_log = logging.getLogger("aiokafka")
    old = aio_log.level
    aio_log.setLevel(logging.CRITICAL)  # a refused bootstrap is logged at ERROR; here it just means "not yet"
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        md = await asyncio.wait_for(client.fetch_all_metadata(), timeout)
        brokers = sorted(f"{b.host}:{b.port}" for b in md.brokers())
        if not brokers:
            raise ServiceError("metadata lists no live broker yet")
        return {
            "brokers": brokers,
            "controller": getattr(md.controller, "nodeId", None),
            "topics": sorted(md.topics()),
        }
    finally:
        with contextlib.suppress(Exception):
            await client.close()
        aio_log.setLevel(old)


def kafka_metadata(bootstrap: str, timeout: float = 5.0) -> dict[str, Any]:
    return _run_sync(kafka_metadata_async(bootstrap, timeout))


def _first_host_port(bootstrap: str) -> tuple[str, int]:
    first = bootstrap.split(",")[0].strip()
    first = first.removeprefix("kafka://").removeprefix("PLAINTEXT://")
    host, _, port = first.rpartition(":")
    return host or "127.0.0.1", int(port or DEFAULT_PORT)


def kafka_healthy(bootstrap: str, timeout: float = 3.0) -> bool:
    host, port = _first_host_port(bootstrap)
    if not port_open(host, port):
        return False
    try:
        kafka_metadata(bootstrap, timeout)
        return True
    except Exception:  # noqa: BLE001
        return False


def wait_kafka_ready(bootstrap: str, timeout: float = 120.0, *, proc: ManagedProcess | None = None) -> dict[str, Any]:
    """Block until a metadata request to ``bootstrap`` succeeds (not merely an open port)."""
    host, port = _first_host_port(bootstrap)

    def probe() -> dict[str, Any]:
        if not port_open(host, port):
            raise ConnectionRefusedError(f"{host}:{port} not accepting connections")
        return kafka_metadata(bootstrap, timeout=5.0)

    return wait_until(probe, timeout, what=f"Kafka at {bootstrap}", proc=proc, interval=0.3)  # type: ignore[return-value]


# --------------------------------------------------------------------------- start


def kafka_argv(root: Path) -> list[str]:
    paths = StackPaths(root)
    return [
        java_bin(),
        "-Xms256m",
        f"-Xmx{HEAP}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={paths.kafka_log4j}",
        f"-Dkafka.logs.dir={paths.logs}",
        "-cp",
        f"{paths.kafka_lib}/*",
        "kafka.Kafka",
        str(paths.kafka_config),
    ]


def _prepare(root: Path, port: int, controller_port: int) -> Any:
    def prepare(proc: ManagedProcess) -> None:
        paths = StackPaths(root)
        ensure_kafka_installed(root)
        render_config(root, port=port, controller_port=controller_port)
        # A leftover broker on this data dir (pid file lost) would hold the lock: stop it first.
        for pid in _our_kafka_pids(paths):
            log.warning("stopping leftover Kafka %s", describe_pid(pid))
            terminate_pid(pid, timeout=30)
        for what, p in (("controller", controller_port), ("broker", port)):
            if not wait_port_free("127.0.0.1", p, timeout=20):
                raise ServiceError(f"Kafka {what} port {p} is taken by {describe_pid(listening_pid(p))}")
        ensure_storage(root)
        with contextlib.suppress(FileNotFoundError):
            (paths.kafka_data / ".lock").unlink()  # flock is released by the OS; the file is only a leftover

    return prepare


def start_kafka(
    root: Path,
    *,
    port: int = DEFAULT_PORT,
    controller_port: int | None = None,
    timeout: float = 180.0,
    wait: bool = True,
) -> ManagedProcess:
    """Start (or reuse) the local broker on 127.0.0.1:``port`` (controller on ``port+1``).

    * a healthy Kafka already answering on the port is reused (``proc.reused``; :func:`stop` leaves it);
    * a stale pid file is removed; a broker of ours that is alive but not answering gets ``timeout``
      to become ready, then is killed and started again;
    * missing/corrupt KRaft storage is (re)formatted; a start that dies on a storage error is retried
      once on freshly formatted storage.
    """
    root = Path(root).resolve()
    paths = StackPaths(root)
    cport = controller_port or port + 1
    bootstrap = f"127.0.0.1:{port}"
    ensure_kafka_installed(root)
    render_config(root, port=port, controller_port=cport)
    major = java_major()
    if major < MIN_JAVA:
        raise ServiceError(f"Kafka {kafka_version()} needs Java {MIN_JAVA}+, found {major} at {java_bin()}")

    def ready(p: ManagedProcess, t: float) -> None:
        p.info.update({k: str(v) for k, v in wait_kafka_ready(p.address, t, proc=p).items()})

    def make() -> ManagedProcess:
        return ManagedProcess(
            name=NAME,
            argv=kafka_argv(root),
            cwd=paths.kafka,
            address=bootstrap,
            log_path=paths.log_file(NAME),
            pid_path=paths.pid_file(NAME),
            ready=ready,
            prepare=_prepare(root, port, cport),
            info={"version": kafka_version()},
        )

    proc = make()

    rec = live_pid_record(paths.pid_file(NAME))
    if port_open("127.0.0.1", port):
        pid = rec.pid if rec else listening_pid(port)
        if kafka_healthy(bootstrap, timeout=5.0):
            proc.adopt(pid)
            log.info("reusing Kafka already running on %s (%s)", bootstrap, describe_pid(pid))
            return proc
        if rec is None:
            raise ServiceError(f"port {port} is taken by {describe_pid(pid)}, which does not answer as Kafka")
    if rec is not None:
        # Our broker from an earlier start, still booting (or hung): give it the timeout, else replace it.
        proc.adopt(rec.pid)
        try:
            wait_kafka_ready(bootstrap, timeout)
            log.info("reusing Kafka started earlier (%s)", describe_pid(rec.pid))
            return proc
        except (TimeoutError, ServiceError):
            log.warning("Kafka %s did not become ready: killing it and starting again", describe_pid(rec.pid))
            terminate_pid(rec.pid, timeout=10)
            proc = make()

    proc.owned, proc.reused = True, False
    proc.spawn()
    if not wait:
        return proc
    try:
        proc.wait_ready(timeout)
    except ServiceError:
        if proc.alive() or not _storage_failure(proc.log_path):
            proc.terminate(10)
            raise
        log.warning("Kafka failed on its storage; reformatting %s and retrying once", paths.kafka_data)
        format_storage(root, wipe=True)
        proc.spawn()
        proc.wait_ready(timeout)
    except TimeoutError:
        proc.terminate(10)
        raise
    return proc


def kafka_status(root: Path, port: int = DEFAULT_PORT) -> dict[str, Any]:
    paths = StackPaths(root)
    rec = read_pid_file(paths.pid_file(NAME))
    live = rec is not None and rec.process() is not None
    out: dict[str, Any] = {
        "service": NAME,
        "address": f"127.0.0.1:{port}",
        "version": kafka_version(),
        "installed": (paths.kafka_lib / STAMP).exists(),
        "pid": rec.pid if live and rec else listening_pid(port),
        "started_by_stack": live,
        "healthy": False,
    }
    try:
        md = kafka_metadata(out["address"], 3.0) if port_open("127.0.0.1", port) else None
        if md:
            out.update(healthy=True, brokers=md["brokers"], topics=len(md["topics"]))
    except Exception as exc:  # noqa: BLE001
        out["error"] = repr(exc)
    return out
