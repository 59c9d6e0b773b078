"""The pipeline's guarantees rest on public APIs only: no product module reads or writes a private
attribute (``obj._name``, ``getattr(obj, "_name")``) of an object that is not its own (``self``/``cls``).

Faust's and aiokafka's private state changes between releases and was the root of earlier defects
(RELIABILITY.md D6); the render core's use of segno's segment class and python-barcode's Code 128
optimiser is deliberate, pinned by golden outputs, and listed here by name.
"""

from __future__ import annotations

import ast

from tests.test_layers import PACKAGES, ROOT

# file -> the private names it may use on foreign objects, with the reason
ALLOWED: dict[str, set[str]] = {
    # segno's byte conversion and Segment (render/encoders/qr_mask.py docstring); golden tests pin the output
    "render/encoders/qr_mask.py": {"_Segment"},
    # our subclass overrides python-barcode's optimiser to fix the "99" start-code bug
    "render/encoders/linear.py": {"_try_to_optimize"},
    # the type of argparse's add_subparsers() result, for annotations only
    "producer/cli.py": {"_SubParsersAction"},
    "barcodeflow/commands/worker.py": {"_SubParsersAction"},
    "barcodeflow/commands/render.py": {"_SubParsersAction"},
    "barcodeflow/commands/up.py": {"_SubParsersAction"},
}


def private_uses(source: str) -> list[tuple[int, str]]:
    """(line, name) of every private attribute a module uses on an object other than ``self``/``cls``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        name = None
        if isinstance(node, ast.Attribute):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                name = node.attr
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            name = node.args[1].value
        if name and name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
            found.append((node.lineno, name))
    return sorted(found)


def test_no_product_module_touches_foreign_private_state() -> None:
    problems = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            allowed = ALLOWED.get(rel, set())
            for line, name in private_uses(path.read_text()):
                if name not in allowed:
                    problems.append(f"{rel}:{line}: {name}")
    assert problems == []


def test_the_check_sees_private_access() -> None:
    source = (
        "def f(app, consumer):\n"
        "    app.consumer._committed_offset = 1\n"
        "    return getattr(consumer, '_fetcher'), self._ok, cls._ok, app.public, obj.__class__\n"
    )
    assert private_uses(source) == [(2, "_committed_offset"), (3, "_fetcher")]


def test_every_allowance_is_still_used() -> None:
    for rel, names in ALLOWED.items():
        used = {name for _, name in private_uses((ROOT / rel).read_text())}
        assert names <= used, f"{rel}: {sorted(names - used)} no longer used; drop the allowance"
