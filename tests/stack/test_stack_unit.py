"""No services needed: docker-compose.yml shape, config rendering, storage checks, packaged resources."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from barcodeflow.stack import kafka as kafka_mod
from barcodeflow.stack.procs import ManagedProcess, StackPaths, read_pid_file, write_pid_file

ROOT = Path(__file__).resolve().parents[2]
SUBCOMMANDS = {"worker", "sink", "facade", "up"}


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _words(command: str | list[str]) -> list[str]:
    return command.split() if isinstance(command, str) else [str(w) for w in command]


def test_compose_commands_are_barcodeflow_subcommands() -> None:
    """Every service built from our image runs `barcodeflow <subcommand>` (kafka/redis are stock images)."""
    services = _compose()["services"]
    ours = {name: svc for name, svc in services.items() if "build" in svc}
    assert {"worker", "sink", "facade"} <= set(ours), sorted(ours)
    for name, svc in ours.items():
        assert "command" in svc, name
        words = _words(svc["command"])
        assert words[0] == "barcodeflow", (name, words)
        assert len(words) > 1 and words[1] in SUBCOMMANDS, (name, words)


def test_compose_app_services_point_at_the_stack() -> None:
    services = _compose()["services"]
    for name in ("worker", "sink", "facade"):
        env = services[name]["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092", name
        assert env["REDIS_URL"].startswith("redis://redis:6379"), name
        assert env["CACHE_REDIS_URL"].startswith("redis://redis-cache:6379"), name
    # the cache's LRU turnover has its own instance; the state instance evicts only keys with a TTL
    policy = {name: _words(services[name]["command"]) for name in ("redis", "redis-cache")}
    assert policy["redis-cache"][policy["redis-cache"].index("--maxmemory-policy") + 1] == "allkeys-lru"
    assert policy["redis"][policy["redis"].index("--maxmemory-policy") + 1] == "volatile-lru"
    kafka_env = services["kafka"]["environment"]
    assert int(kafka_env["KAFKA_MESSAGE_MAX_BYTES"]) == 16 * 1024 * 1024
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    # The compose image and the Maven pom stay on the same Kafka minor version.
    tag = services["kafka"]["image"].split(":")[1]
    assert tag.rsplit(".", 1)[0] == kafka_mod.kafka_version().rsplit(".", 1)[0], (
        tag,
        kafka_mod.kafka_version(),
    )


def test_rendered_server_properties(tmp_path: Path) -> None:
    cfg = kafka_mod.render_config(tmp_path, port=19092)
    text = cfg.read_text()
    assert "${" not in text
    props = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#") and "=" in line)
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["log.dirs"] == str(StackPaths(tmp_path).kafka_data)
    assert props["auto.create.topics.enable"] == "false"
    assert int(props["message.max.bytes"]) == int(props["replica.fetch.max.bytes"]) == 16 * 1024 * 1024
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert (tmp_path / ".stack/kafka/log4j2.properties").is_file()


def test_storage_ok(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert not kafka_mod.storage_ok(data)
    data.mkdir()
    (data / "meta.properties").write_text("version=1\nnode.id=1\ncluster.id=abc\n")
    assert not kafka_mod.storage_ok(data)  # no bootstrap checkpoint / metadata log
    (data / "bootstrap.checkpoint").write_bytes(b"")
    assert kafka_mod.storage_ok(data)
    (data / "meta.properties").write_text("version=1\nnode.id=2\ncluster.id=abc\n")
    assert not kafka_mod.storage_ok(data)
    (data / "meta.properties").write_text("garbage")
    assert not kafka_mod.storage_ok(data)


def test_storage_failure_detection(tmp_path: Path) -> None:
    log = tmp_path / "kafka.log"
    log.write_text(
        "===== old starting\n[x] ERROR meta.properties broken (kafka.Kafka$)\n"
        "===== new starting\n[x] INFO Loaded meta.properties (kafka.server)\n[x] ERROR Bind failed (kafka)\n"
    )
    assert not kafka_mod._storage_failure(log)  # only the last start counts, and only error lines
    log.write_text(log.read_text() + "[x] ERROR Exiting: InconsistentClusterIdException (kafka.Kafka$)\n")
    assert kafka_mod._storage_failure(log)


def test_cluster_id_shape() -> None:
    for _ in range(50):
        cid = kafka_mod._new_cluster_id()
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cid) and not cid.startswith("-")


def test_packaged_resources() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+", kafka_mod.kafka_version())
    for name in ("pom.xml", "server.properties", "log4j2.properties"):
        assert kafka_mod._resource_text(name).strip()


def test_pid_file_roundtrip_and_stale(tmp_path: Path) -> None:
    import os

    pf = tmp_path / "x.pid"
    write_pid_file(pf, os.getpid(), ["python"], "127.0.0.1:1")
    rec = read_pid_file(pf)
    assert rec is not None and rec.pid == os.getpid() and rec.process() is not None
    pf.write_text(f'{{"pid": {os.getpid()}, "create_time": 1.0}}')  # recycled pid: wrong create time
    rec = read_pid_file(pf)
    assert rec is not None and rec.process() is None


def test_managed_process_spawn_kill_restart(tmp_path: Path) -> None:
    """The process handle itself, on a plain `sleep` (kill -9, restart, stop)."""
    import signal

    from barcodeflow.stack.procs import stop

    p = ManagedProcess(
        name="sleeper",
        argv=["sleep", "60"],
        cwd=tmp_path,
        address="127.0.0.1:1",
        log_path=tmp_path / "logs/sleeper.log",
        pid_path=tmp_path / "sleeper.pid",
        ready=lambda proc, t: None,
        owned=True,
    )
    p.spawn()
    first = p.pid
    assert p.alive() and read_pid_file(p.pid_path).pid == first
    p.kill(signal.SIGKILL)
    assert not p.alive()
    p.restart(timeout=5)
    assert p.alive() and p.pid != first and read_pid_file(p.pid_path).pid == p.pid
    stop(p, timeout=5)
    assert not p.alive() and not p.pid_path.exists()
