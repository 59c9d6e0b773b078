"""The layers of the code base, checked over the import graph (grimp; imports inside functions count too).

    schemas <- render <- infra (barcodeflow.settings/kafka/aio/redis/cache/memory)
        <- stream_app | sink | producer | facade (facade may use producer)
        <- barcodeflow (CLI, supervisor, embedded path), which alone may use barcodeflow.stack (local stack)

Every import goes down this picture, never up and never sideways between the apps. ``bench`` and the tests
sit above everything and are not installed.
"""

from __future__ import annotations

import fnmatch
import inspect
import tomllib
from collections.abc import Iterable
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "render", "stream_app", "sink", "producer", "facade", "barcodeflow")
INFRA = {"settings", "kafka", "aio", "redis", "cache", "memory"}

# component -> the components its modules may import
ALLOWED: dict[str, set[str]] = {
    "schemas": {"schemas"},
    "render": {"render", "schemas"},
    "infra": {"infra", "render", "schemas"},
    "producer": {"producer", "infra", "render", "schemas"},
    "stream_app": {"stream_app", "infra", "render", "schemas"},
    "sink": {"sink", "infra", "render", "schemas"},
    "facade": {"facade", "producer", "infra", "render", "schemas"},
    "stack": {"stack"},
    "barcodeflow": {"barcodeflow", "stack", "stream_app", "sink", "facade", "producer", "infra", "render", "schemas"},
}


def component(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "barcodeflow":
        return parts[0]
    if len(parts) > 1 and parts[1] in INFRA:
        return "infra"
    if len(parts) > 1 and parts[1] == "stack":
        return "stack"
    return "barcodeflow"


def violations(graph: grimp.ImportGraph, modules: Iterable[str]) -> list[str]:
    """Every direct import of ``modules`` that its component may not make, as ``importer -> imported``."""
    out = []
    for importer in sorted(modules):
        allowed = ALLOWED[component(importer)]
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if imported.split(".")[0] in PACKAGES and component(imported) not in allowed:
                out.append(f"{importer} -> {imported}")
    return out


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, include_external_packages=True)


def ours(graph: grimp.ImportGraph) -> set[str]:
    return {m for m in graph.modules if m.split(".")[0] in PACKAGES}


def test_every_import_goes_down_the_layers(graph: grimp.ImportGraph) -> None:
    assert violations(graph, ours(graph)) == []


def test_the_checker_sees_a_violation() -> None:
    """The rules are not vacuous: sideways and upward imports of a small graph are reported."""
    g = grimp.ImportGraph()
    for m in ("stream_app.local", "sink.aggregate", "render.core", "stream_app.app", "schemas.models", "facade.app"):
        g.add_module(m)
    g.add_import(importer="stream_app.local", imported="sink.aggregate")  # sideways
    g.add_import(importer="render.core", imported="stream_app.app")  # upward
    g.add_import(importer="facade.app", imported="render.core")  # allowed
    g.add_import(importer="render.core", imported="schemas.models")  # allowed
    assert violations(g, g.modules) == ["render.core -> stream_app.app", "stream_app.local -> sink.aggregate"]


def test_the_render_core_depends_on_schemas_only(graph: grimp.ImportGraph) -> None:
    externals = {m for m in graph.modules if m.split(".")[0] not in PACKAGES}
    core = {m for m in ours(graph) if component(m) == "render"}
    used = {i for m in core for i in graph.find_modules_directly_imported_by(m)} & externals
    assert not used & {"faust", "redis", "aiokafka", "fastapi", "starlette", "limits", "bench"}


def test_nothing_installed_imports_bench(graph: grimp.ImportGraph) -> None:
    assert "bench" not in graph.modules or not graph.find_modules_that_directly_import("bench")


def test_bench_and_tests_are_not_installed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    installed = {p for p in ("bench", "tests", *PACKAGES) if any(fnmatch.fnmatch(p, pat) for pat in include)}
    assert installed == set(PACKAGES)


def test_app_factories_stay_short() -> None:
    """State is built apart from the wiring: each factory reads in one screen."""
    from facade.app import create_app
    from sink.app import run_sink
    from stream_app.app import create_worker_app

    for factory in (create_app, create_worker_app, run_sink):
        lines = inspect.getsource(factory).splitlines()
        assert len(lines) < 60, f"{factory.__module__}.{factory.__name__}: {len(lines)} lines"
