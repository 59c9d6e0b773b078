"""Fault-injection and abuse suite: size switch, per-scenario settings, the figures table.

Size: CI size by default. ``--long`` (when pytest is pointed at ``tests/faults``, e.g.
``pytest tests/faults --long``) or the environment variable ``FAULTS_LONG=1`` (works from any
invocation, e.g. ``FAULTS_LONG=1 scripts/test tests/faults``) scales every scenario up and raises the
per-test time bounds by ``LONG_TIMEOUT_FACTOR``. ``tests/faults/run [--long]`` wraps both.

Every scenario records its figures with the ``figures`` fixture; they are printed as a table at the end
of the run and, with ``FAULTS_REPORT=path.json``, written there (RELIABILITY.md is built from it).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from barcodeflow.settings import Settings, Topics
from tests.support.topics import private

LONG_TIMEOUT_FACTOR = 5


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("faults", "fault-injection suite (tests/faults)")
    group.addoption(
        "--long",
        action="store_true",
        default=False,
        help="run the fault-injection scenarios at long size (same as FAULTS_LONG=1)",
    )


def _env_long() -> bool:
    return os.environ.get("FAULTS_LONG", "").strip().lower() in {"1", "true", "yes", "on"}


def is_long(config: pytest.Config) -> bool:
    try:
        opt = bool(config.getoption("--long"))
    except ValueError:  # option not registered (conftest not loaded as an initial conftest)
        opt = False
    return opt or _env_long()


@dataclass(frozen=True)
class Scale:
    long: bool
    # R1: worker SIGKILLs
    r1_batches: int
    r1_items: int
    r1_kills: int
    # R1b: sink SIGKILLs
    r1b_batches: int
    r1b_kills: int
    # R2: broker kill behind the facade
    r2_accept_before: int
    r2_down_s: float
    r2_accept_after: int
    r2_clients: int
    # R3: Redis outage
    r3_baseline_s: float
    r3_frozen_s: float
    r3_killed_s: float
    r3_after_s: float
    # R4: poison
    r4_malformed: int
    r4_good: int
    r4_junk_2mb: int
    # R5: replay
    r5_batches: int
    # S*
    s1_examples: int
    s5_examples: int
    s6_examples: int

    def label(self) -> str:
        return "long" if self.long else "CI"


CI = Scale(
    long=False,
    r1_batches=60, r1_items=10, r1_kills=3,
    r1b_batches=30, r1b_kills=3,
    r2_accept_before=15, r2_down_s=8.0, r2_accept_after=15, r2_clients=3,
    r3_baseline_s=6.0, r3_frozen_s=10.0, r3_killed_s=5.0, r3_after_s=4.0,
    r4_malformed=200, r4_good=40, r4_junk_2mb=3,
    r5_batches=30,
    s1_examples=60, s5_examples=120, s6_examples=150,
)  # fmt: skip

LONG = Scale(
    long=True,
    r1_batches=200, r1_items=20, r1_kills=3,
    r1b_batches=100, r1b_kills=3,
    r2_accept_before=100, r2_down_s=20.0, r2_accept_after=100, r2_clients=4,
    r3_baseline_s=20.0, r3_frozen_s=30.0, r3_killed_s=30.0, r3_after_s=15.0,
    r4_malformed=1000, r4_good=200, r4_junk_2mb=10,
    r5_batches=150,
    s1_examples=300, s5_examples=1000, s6_examples=1000,
)  # fmt: skip


@pytest.fixture(scope="session")
def scale(request: pytest.FixtureRequest) -> Scale:
    return LONG if is_long(request.config) else CI


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not is_long(config):
        return
    for item in items:
        if "tests/faults/" not in item.nodeid.replace("\\", "/"):
            continue
        marker = item.get_closest_marker("timeout")
        if marker is not None and marker.args:
            item.add_marker(pytest.mark.timeout(float(marker.args[0]) * LONG_TIMEOUT_FACTOR), append=False)


# --------------------------------------------------------------------------- settings per scenario


@pytest.fixture
def fault_settings(stack_settings: Settings, tmp_path: Path) -> Settings:
    """Private topics, consumer groups and Faust data dir for one scenario (on the shared broker/Redis),
    at the batch deadline users get (``BATCH_TIMEOUT_S`` as shipped, not the test suite's generous one)."""
    run = uuid.uuid4().hex[:8]
    prefix = f"f{run}."
    return private(
        stack_settings.with_(
            batch_timeout_s=Settings().batch_timeout_s,
            topic_prefix=prefix,
            topics=Topics.with_prefix(prefix),
            app_id=f"bf-fault-{run}",
            data_dir=str(tmp_path / "faust"),
        )
    )


# --------------------------------------------------------------------------- figures


@dataclass
class Figure:
    scenario: str
    size: str
    load: str
    faults: str
    lost: int | str = "-"
    visible_duplicates: int | str = "-"
    raw_duplicates: int | str = "-"
    recover_s: str = "-"
    outcome: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


_FIGURES: list[Figure] = []


class Figures:
    def __init__(self, scale: Scale) -> None:
        self.scale = scale

    def record(self, scenario: str, **kw: Any) -> Figure:
        fig = Figure(scenario=scenario, size=self.scale.label(), **kw)
        _FIGURES.append(fig)
        return fig


@pytest.fixture
def figures(scale: Scale) -> Iterator[Figures]:
    yield Figures(scale)


def table(figs: list[Figure]) -> list[str]:
    cols = ["scenario", "size", "load", "faults", "lost", "visible dup", "raw dup", "recover", "outcome"]
    rows = [
        [f.scenario, f.size, f.load, f.faults, str(f.lost), str(f.visible_duplicates), str(f.raw_duplicates),
         f.recover_s, f.outcome]
        for f in figs
    ]  # fmt: skip
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("fault-injection figures")
    for line in table(_FIGURES):
        terminalreporter.write_line(line)
    for f in _FIGURES:
        if f.extra:
            terminalreporter.write_line(f"{f.scenario}: " + json.dumps(f.extra, default=str, sort_keys=True))
    path = os.environ.get("FAULTS_REPORT")
    if path:
        doc = {
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "exitstatus": int(exitstatus),
            "figures": [asdict(f) for f in _FIGURES],
        }
        Path(path).write_text(json.dumps(doc, indent=1, default=str) + "\n")
        terminalreporter.write_line(f"figures written to {path}")


# --------------------------------------------------------------------------- the facade for the S scenarios


@dataclass
class Api:
    url: str
    key: str
    other_key: str
    facade: Any  # support.FacadeProc
    worker_pid: int


# Mixed case on purpose: S2 sends the same key in the other case.
API_KEY = "FaultKey-" + uuid.uuid4().hex[:8] + "ABCdef"
OTHER_KEY = "FaultKey-" + uuid.uuid4().hex[:8] + "GHIjkl"


@pytest.fixture(scope="session")
def api(pipeline: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A ``barcodeflow facade`` process on the session's pipeline (shared broker and Redis, private topics).

    Waits are short (FACADE_WAIT_S=3, at most 5) so generated ``?timeout=`` values cannot stall the suite.
    """
    from tests.faults.support import FacadeProc

    env = {
        **pipeline.settings.as_env(),
        "API_KEYS": f"{API_KEY},{OTHER_KEY}",
        "RATE_LIMIT": "1000000/minute",
        "FACADE_RATELIMIT_PREFIX": f"bf:rl:faults:{uuid.uuid4().hex[:12]}",
        "FACADE_WAIT_S": "3",
        "FACADE_MAX_WAIT_S": "5",
    }
    fp = FacadeProc(env, tmp_path_factory.mktemp("facade") / "facade.log").start()
    try:
        fp.wait_ready(60)
        yield Api(fp.url, API_KEY, OTHER_KEY, fp, pipeline.procs["worker"].popen.pid)
    finally:
        fp.stop()
