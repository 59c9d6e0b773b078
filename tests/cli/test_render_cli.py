"""``barcodeflow render``: the embedded path, as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import zxingcpp
from PIL import Image


def render(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "barcodeflow.cli", "render", *args],
        input=stdin, capture_output=True, timeout=120, cwd=cwd, check=False,
    )  # fmt: skip


def batch(n: int, **extra: Any) -> dict[str, Any]:
    return {"barcodes": [{"id": f"item/{i}", "barcode_type": "code128", "data": f"CODE-{i}"} for i in range(n)],
            **extra}  # fmt: skip


def test_one_bad_item_of_100(tmp_path: Path) -> None:
    doc = batch(99)
    doc["barcodes"].insert(42, {"barcode_type": "ean8", "data": "12345"})
    proc = render("-", "--out", str(tmp_path), stdin=orjson.dumps(doc))
    assert proc.returncode == 1, proc.stderr
    result = orjson.loads(proc.stdout)
    assert result["summary"]["successful"] == 99 and result["summary"]["failed"] == 1
    bad = result["results"][42]
    assert bad["error"]["code"] == "invalid_data" and "'12345'" in bad["error"]["message"]
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 99 and any(f.startswith("item_0-") for f in files)  # ids made safe as file names


def test_all_good_exits_zero_and_writes_png(tmp_path: Path) -> None:
    doc = {"barcodes": [{"barcode_type": "qr", "data": "hello", "format": "png"}]}
    proc = render("-", "--out", str(tmp_path), stdin=orjson.dumps(doc))
    assert proc.returncode == 0, proc.stderr
    [found] = zxingcpp.read_barcodes(Image.open(tmp_path / "0.png"))
    assert found.text == "hello"


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (orjson.dumps(batch(101)), b"101 items exceed"),
        (orjson.dumps(batch(2, options={"max_concurrent": 21})), b"max_concurrent"),
        (b"{nope", b"not valid JSON"),
        (b"", b""),
    ],
)
def test_invalid_input_exits_two_with_nothing_on_stdout(payload: bytes, needle: bytes) -> None:
    proc = render("-", stdin=payload)
    assert proc.returncode == 2
    assert proc.stdout == b""
    assert needle in proc.stderr and proc.stderr.strip()


def test_csv_is_split_into_batches(tmp_path: Path) -> None:
    csv = tmp_path / "products.csv"
    rows = ["sku,gtin"] + [f"SKU-{i},{400000000000 + i}" for i in range(250)]
    csv.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    proc = render(str(csv), "--csv", "--type", "ean13", "--data-column", "gtin", "--id-column", "sku",
                  "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert [r["summary"]["total"] for r in results] == [100, 100, 50]
    assert len(list(out.iterdir())) == 250 and (out / "SKU-249.svg").exists()
    assert b"code" in proc.stderr  # the progress bar


def test_csv_missing_column_is_invalid_input(tmp_path: Path) -> None:
    csv = tmp_path / "p.csv"
    csv.write_text("sku,ean\nA,590123412345\n")
    proc = render(str(csv), "--csv", "--type", "ean13", "--data-column", "gtin")
    assert proc.returncode == 2 and proc.stdout == b""
    assert b"gtin" in proc.stderr


def test_rendering_is_deterministic() -> None:
    doc = {"barcodes": [
        {"barcode_type": t, "data": d, "format": f}
        for t, d in [("qr", "same"), ("ean13", "590123412345"), ("datamatrix", "x"), ("aztec", "y")]
        for f in ("svg", "png")
    ]}  # fmt: skip
    a, b = (orjson.loads(render("-", stdin=orjson.dumps(doc)).stdout) for _ in range(2))
    strip = [{k: v for k, v in r.items() if k != "generation_time_ms"} for r in a["results"]]
    assert strip == [{k: v for k, v in r.items() if k != "generation_time_ms"} for r in b["results"]]
