"""``barcodeflow submit`` against the real broker, with a fake pipeline answering on private topics."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.producer.conftest import PNG_MAGIC, FakePipeline

pytestmark = pytest.mark.integration

NASTY_IDS = ["../evil", "a/b", "a_b", "CON", ".hidden", "ü"]


def _submit(fp: FakePipeline, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **fp.settings.as_env()}
    cmd = [sys.executable, "-m", "barcodeflow.cli", "submit", *args]
    return subprocess.run(cmd, env=env, input=stdin, capture_output=True, text=True, timeout=120, check=False)


def _csv(path: Path, rows: int, *, data: str = "item-{i}", ids: list[str] | None = None) -> Path:
    lines = ["id,payload"]
    for i in range(rows):
        ident = ids[i] if ids and i < len(ids) else f"row-{i}"
        lines.append(f"{ident},{data.format(i=i)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _csv_args(f: Path, *extra: str) -> list[str]:
    return [str(f), "--type", "qr", "--data-column", "payload", "--id-column", "id", *extra]


def test_csv_to_files_then_cached(fake_pipeline: FakePipeline, tmp_path: Path) -> None:
    f = _csv(tmp_path / "rows.csv", 150, ids=NASTY_IDS)
    out = tmp_path / "out"
    proc = _submit(fake_pipeline, *_csv_args(f, "--out", str(out)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # with --out nothing goes to stdout
    assert "items:      150 (successful 150, failed 0, cached 0)" in proc.stderr
    assert "codes/s" in proc.stderr and "batches:    2" in proc.stderr

    results = sorted(out.glob("*.json"))
    assert len(results) == 2
    docs = [orjson.loads(p.read_bytes()) for p in results]
    assert sorted(len(d["results"]) for d in docs) == [50, 100]
    for path, doc in zip(results, docs, strict=True):
        assert path.stem == doc["batch_id"]
        images = list((out / doc["batch_id"]).iterdir())
        assert len(images) == len(doc["results"])
        assert all(p.suffix == ".svg" for p in images)
    # every file stayed inside --out, with distinct names for the tricky ids
    all_files = [p for p in out.rglob("*") if p.is_file()]
    assert len(all_files) == 152
    assert all(p.resolve().is_relative_to(out.resolve()) for p in all_files)
    assert not (tmp_path / "evil.svg").exists()
    names = {p.name for p in all_files}
    assert "row-10.svg" in names and "a_b.svg" in names
    assert len([n for n in names if n.startswith("a_b")]) == 2  # "a/b" and "a_b" do not collide

    # the requests on the wire: ≤100 items per batch, ids and type from the CSV
    assert sorted(len(r["barcodes"]) for r in fake_pipeline.requests) == [50, 100]
    first = next(r for r in fake_pipeline.requests if len(r["barcodes"]) == 100)
    assert first["barcodes"][0] == {"id": "../evil", "barcode_type": "qr", "data": "item-0", "format": "svg"}

    # second run: everything comes from the cache
    out2 = tmp_path / "out2"
    proc = _submit(fake_pipeline, *_csv_args(f, "--out", str(out2)))
    assert proc.returncode == 0, proc.stderr
    assert "cached 150" in proc.stderr
    for p in out2.glob("*.json"):
        s = orjson.loads(p.read_bytes())["summary"]
        assert s["cached"] == s["total"]
    # and --no-cache asks for a fresh render
    proc = _submit(fake_pipeline, *_csv_args(f, "--no-progress", "--no-cache"))
    assert proc.returncode == 0, proc.stderr
    assert "cached 0" in proc.stderr
    assert all(r["options"]["no_cache"] for r in fake_pipeline.requests[-2:])


def test_png_is_decoded(fake_pipeline: FakePipeline, tmp_path: Path) -> None:
    f = _csv(tmp_path / "rows.csv", 3)
    out = tmp_path / "out"
    proc = _submit(fake_pipeline, *_csv_args(f, "--format", "png", "--out", str(out)))
    assert proc.returncode == 0, proc.stderr
    (batch_dir,) = [p for p in out.iterdir() if p.is_dir()]
    assert sorted(p.name for p in batch_dir.iterdir()) == ["row-0.png", "row-1.png", "row-2.png"]
    assert (batch_dir / "row-1.png").read_bytes() == PNG_MAGIC + b"item-1"


def test_results_on_stdout_without_out(fake_pipeline: FakePipeline, tmp_path: Path) -> None:
    f = tmp_path / "batches.ndjson"
    lines = [{"batch_id": f"nd-{i}-{tmp_path.name}", "barcodes": [{"barcode_type": "qr", "data": f"x{i}"}]}
             for i in range(3)]  # fmt: skip
    f.write_text("\n".join(orjson.dumps(doc).decode() for doc in lines) + "\n")
    proc = _submit(fake_pipeline, str(f))
    assert proc.returncode == 0, proc.stderr
    got = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(g["batch_id"] for g in got) == sorted(d["batch_id"] for d in lines)
    assert all(g["results"][0]["svg"] for g in got)


def test_stdin_json(fake_pipeline: FakePipeline) -> None:
    doc = {"barcodes": [{"id": "s", "barcode_type": "qr", "data": "from-stdin"}]}
    proc = _submit(fake_pipeline, "-", stdin=orjson.dumps(doc).decode())
    assert proc.returncode == 0, proc.stderr
    (res,) = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert res["results"][0]["id"] == "s"


def test_item_failures_exit_1(fake_pipeline: FakePipeline, tmp_path: Path) -> None:
    f = _csv(tmp_path / "rows.csv", 5, data="{i}")
    text = f.read_text().replace(",3\n", ",FAIL3\n")
    f.write_text(text)
    proc = _submit(fake_pipeline, *_csv_args(f, "--out", str(tmp_path / "out")))
    assert proc.returncode == 1, proc.stderr
    assert "1 of 5 item(s) failed" in proc.stderr
    assert "item [3] id 'row-3': invalid_data" in proc.stderr
    assert "successful 4, failed 1" in proc.stderr


def test_invalid_batch_among_others_counts_as_failed(fake_pipeline: FakePipeline, tmp_path: Path) -> None:
    f = tmp_path / "batches.ndjson"
    good = {"barcodes": [{"barcode_type": "qr", "data": "ok"}]}
    bad = {"barcodes": [{"id": "x"}, {"id": "x"}], "options": {"max_concurrent": 0}}
    f.write_text("\n".join(orjson.dumps(d).decode() for d in (good, bad, good)) + "\n")
    proc = _submit(fake_pipeline, str(f), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1, proc.stderr
    assert "line 2: invalid batch, not sent" in proc.stderr
    assert "duplicate item ids: x" in proc.stderr and "max_concurrent" in proc.stderr
    assert "invalid 1" in proc.stderr and "successful 2, failed 2" in proc.stderr
    assert len(fake_pipeline.requests) == 2


def test_duplicate_batch_ids_in_one_input(fake_pipeline: FakePipeline, tmp_path: Path) -> None:
    f = tmp_path / "batches.ndjson"
    doc = {"batch_id": f"dup-{tmp_path.name}", "barcodes": [{"barcode_type": "qr", "data": "ok"}]}
    f.write_text(f"{orjson.dumps(doc).decode()}\n{orjson.dumps(doc).decode()}\n")
    proc = _submit(fake_pipeline, str(f))
    assert proc.returncode == 1, proc.stderr
    assert "duplicate batch_id" in proc.stderr
    assert len(proc.stdout.splitlines()) == 1


def test_timeout_exit_1(fake_pipeline: FakePipeline, tmp_path: Path) -> None:
    f = tmp_path / "batches.ndjson"
    docs = [
        {"barcodes": [{"barcode_type": "qr", "data": "DROP"}]},
        {"barcodes": [{"barcode_type": "qr", "data": "y"}]},
    ]
    f.write_text("\n".join(orjson.dumps(d).decode() for d in docs) + "\n")
    proc = _submit(fake_pipeline, str(f), "--timeout", "2")
    assert proc.returncode == 1, proc.stderr
    assert "no result within 2 s" in proc.stderr
    assert "timed out 1" in proc.stderr
    assert len(proc.stdout.splitlines()) == 1


def test_in_flight_limit(fake_pipeline: FakePipeline, tmp_path: Path) -> None:
    fake_pipeline.delay = 0.3
    f = _csv(tmp_path / "rows.csv", 12)
    proc = _submit(fake_pipeline, *_csv_args(f, "--batch-size", "2", "--in-flight", "2", "--no-progress"))
    assert proc.returncode == 0, proc.stderr
    assert len(fake_pipeline.requests) == 6
    assert fake_pipeline.max_outstanding == 2
