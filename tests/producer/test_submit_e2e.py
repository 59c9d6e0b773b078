"""``barcodeflow submit`` end to end: real worker and sink (the ``pipeline`` fixture of tests/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

pytestmark = pytest.mark.integration


def _submit(pipeline: Any, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "barcodeflow.cli", "submit", *args]
    return subprocess.run(cmd, env=pipeline.env(), capture_output=True, text=True, timeout=300, check=False)


def test_submit_csv_end_to_end_then_cached(pipeline: Any, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    f = tmp_path / "codes.csv"
    rows = ["sku,payload"] + [f"sku-{i},{run}-{i:04d}" for i in range(150)]
    rows[1] = f"../escape,{run}-0000"  # an id that must not leave --out
    f.write_text("\n".join(rows) + "\n")
    args = [str(f), "--type", "code128", "--data-column", "payload", "--id-column", "sku", "--timeout", "120"]

    out = tmp_path / "out"
    proc = _submit(pipeline, *args, "--out", str(out))
    assert proc.returncode == 0, f"{proc.stderr}\n{pipeline.logs()}"
    assert proc.stdout == ""
    results = sorted(out.glob("*.json"))
    assert len(results) == 2
    docs = [orjson.loads(p.read_bytes()) for p in results]
    assert sorted(d["summary"]["total"] for d in docs) == [50, 100]
    assert all(d["summary"]["successful"] == d["summary"]["total"] for d in docs)
    images = [p for p in out.rglob("*.svg")]
    assert len(images) == 150
    assert all(p.read_text().lstrip().startswith(("<?xml", "<svg")) for p in images[:5])
    assert all(p.resolve().is_relative_to(out.resolve()) for p in out.rglob("*"))
    assert (out / docs[0]["batch_id"]).is_dir()

    out2 = tmp_path / "out2"
    proc = _submit(pipeline, *args, "--out", str(out2))
    assert proc.returncode == 0, f"{proc.stderr}\n{pipeline.logs()}"
    assert "cached 150" in proc.stderr
    for p in out2.glob("*.json"):
        summary = orjson.loads(p.read_bytes())["summary"]
        assert summary["cached"] == summary["total"]
