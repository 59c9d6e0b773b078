"""``submit``/``replay`` behaviour that needs no broker: argument and input errors, Kafka down."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from barcodeflow.cli import main

DOWN = "127.0.0.1:1"  # nothing listens there: connection refused at once


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", DOWN)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_invalid_single_json_batch_exits_2_with_all_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "batch.json"
    f.write_bytes(orjson.dumps({"barcodes": [{"id": "a"}, {"id": "a"}], "options": {"max_concurrent": 99}, "x": 1}))
    code, out, err = _run(capsys, "submit", str(f))
    assert code == 2
    assert out == ""
    assert "not a valid batch" in err
    assert "duplicate item ids: a" in err and "max_concurrent" in err and "x" in err


def test_too_many_items_in_single_json_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "batch.json"
    f.write_bytes(orjson.dumps({"barcodes": [{"barcode_type": "qr", "data": str(i)} for i in range(101)]}))
    code, out, err = _run(capsys, "submit", str(f))
    assert (code, out) == (2, "")
    assert "exceed the maximum batch size of 100" in err


def test_unreadable_json_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "batch.json"
    f.write_text("{nope")
    code, out, err = _run(capsys, "submit", str(f))
    assert (code, out) == (2, "")
    assert "not valid JSON" in err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "submit", str(tmp_path / "missing.csv"), "--type", "qr", "--data-column", "d")
    assert (code, out) == (2, "")
    assert "cannot read" in err


def test_bad_ndjson_line_exits_2_before_sending(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "batches.ndjson"
    f.write_text('{"barcodes": [{"barcode_type": "qr", "data": "1"}]}\n{oops\n')
    code, out, err = _run(capsys, "submit", str(f))
    assert (code, out) == (2, "")
    assert "line 2" in err
    assert "Kafka" not in err  # rejected before connecting


def test_csv_missing_column_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "rows.csv"
    f.write_text("sku,ean\n1,4006381333931\n")
    code, out, err = _run(capsys, "submit", str(f), "--type", "ean13", "--data-column", "code")
    assert (code, out) == (2, "")
    assert "'code'" in err and "'sku', 'ean'" in err


def test_csv_without_type_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "rows.txt"
    f.write_text("code\n1\n")
    code, _, err = _run(capsys, "submit", str(f), "--csv", "--data-column", "code")
    assert code == 2 and "--type" in err


def test_empty_csv_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "rows.csv"
    f.write_text("code\n")
    code, _, err = _run(capsys, "submit", str(f), "--type", "qr", "--data-column", "code")
    assert code == 2 and "no batches" in err


def test_batch_size_above_max_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "rows.csv"
    f.write_text("code\n1\n")
    code, _, err = _run(capsys, "submit", str(f), "--type", "qr", "--data-column", "code", "--batch-size", "101")
    assert code == 2 and "MAX_BATCH_SIZE" in err


def test_submit_kafka_unavailable_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "rows.csv"
    f.write_text("code\n1\n2\n")
    code, out, err = _run(capsys, "submit", str(f), "--type", "qr", "--data-column", "code")
    assert (code, out) == (3, "")
    assert "Kafka unavailable" in err


def test_replay_kafka_unavailable_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "replay", "--since", "15m")
    assert (code, out) == (3, "")
    assert "Kafka unavailable" in err


@pytest.mark.parametrize("bad", [["--since", "yesterday"], ["--since", "1764532800"], []])
def test_replay_bad_time_is_a_usage_error(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["replay", *bad])
    assert info.value.code == 2


def test_replay_until_before_since_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "replay", "--since", "1h", "--until", "2h")
    assert code == 2 and "must be after" in err


def test_help_documents_output_and_replay_vs_reset(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["submit", "--help"])
    out = capsys.readouterr().out
    assert "without --out" in out and "exit codes" in out
    with pytest.raises(SystemExit):
        main(["replay", "--help"])
    out = capsys.readouterr().out
    assert "--reset-offsets" in out and "replay marker" in out


def test_out_that_is_a_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "rows.csv"
    f.write_text("code\n1\n")
    blocker = tmp_path / "out"
    blocker.write_text("")
    code, out, err = _run(capsys, "submit", str(f), "--type", "qr", "--data-column", "code", "--out", str(blocker))
    assert (code, out) == (2, "")
    assert "--out" in err
