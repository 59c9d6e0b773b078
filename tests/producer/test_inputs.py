from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from producer.inputs import InputError, count_items, iter_batches, iter_batches_with_origin, scan, sniff_kind
from schemas import parse_batch


def _csv(path: Path, rows: int, header: str = "sku,code") -> Path:
    lines = [header] + [f"sku-{i},{4000000000000 + i}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_json_single_object(tmp_path: Path) -> None:
    doc = {"batch_id": "b1", "barcodes": [{"barcode_type": "qr", "data": "x"}]}
    f = tmp_path / "in.json"
    f.write_bytes(orjson.dumps(doc))
    assert list(iter_batches(f)) == [doc]
    assert list(iter_batches(str(f))) == [doc]
    assert list(iter_batches_with_origin(f)) == [("", doc)]


def test_json_list_of_batches(tmp_path: Path) -> None:
    docs = [{"barcodes": [{"barcode_type": "qr", "data": str(i)}]} for i in range(3)]
    f = tmp_path / "in.json"
    f.write_bytes(orjson.dumps(docs, option=orjson.OPT_INDENT_2))
    assert list(iter_batches(f)) == docs
    assert [o for o, _ in iter_batches_with_origin(f)] == ["[0]", "[1]", "[2]"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("{not json", "not valid JSON"),
        ("42", "got int"),
        ('[{"barcodes": []}, 3]', "element [1]"),
    ],
)
def test_json_unreadable(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "in.json"
    f.write_text(text)
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        list(iter_batches(f))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        list(iter_batches(tmp_path / "nope.json"))


def test_ndjson_skips_blank_lines(tmp_path: Path) -> None:
    f = tmp_path / "in.ndjson"
    f.write_text('{"barcodes": [{"data": "1"}]}\n\n   \n{"barcodes": [{"data": "2"}, {"data": "3"}]}\n')
    assert [b["barcodes"][0]["data"] for b in iter_batches(f)] == ["1", "2"]
    assert [o for o, _ in iter_batches_with_origin(f)] == ["line 1", "line 4"]
    assert scan(f).batches == 2
    assert count_items(f) == 3


@pytest.mark.parametrize("bad", ['{"barcodes": [}', "[1, 2]", '"text"'])
def test_ndjson_bad_line_names_line_number(tmp_path: Path, bad: str) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text('{"barcodes": []}\n\n' + bad + "\n")
    with pytest.raises(InputError, match=r"line 3"):
        list(iter_batches(f))


def test_csv_rows_to_items(tmp_path: Path) -> None:
    f = tmp_path / "in.csv"
    f.write_text("sku,code,extra\nA1,4006381333931,x\n,4006381333932,y\n")
    (batch,) = list(
        iter_batches(f, csv_type="ean13", data_column="code", id_column="sku", format="png", options={"width": 300})
    )
    assert batch == {
        "barcodes": [
            {
                "id": "A1",
                "barcode_type": "ean13",
                "data": "4006381333931",
                "format": "png",
                "options": {"width": 300},
            },
            # an empty id cell means "no id"
            {
                "id": None,
                "barcode_type": "ean13",
                "data": "4006381333932",
                "format": "png",
                "options": {"width": 300},
            },
        ]
    }
    parse_batch(batch)  # a CSV batch is a valid wire batch


def test_csv_without_id_column(tmp_path: Path) -> None:
    f = _csv(tmp_path / "in.csv", 3)
    (batch,) = list(iter_batches(f, csv_type="ean13", data_column="code"))
    assert [it["id"] for it in batch["barcodes"]] == [None, None, None]
    assert {it["format"] for it in batch["barcodes"]} == {"svg"}


def test_csv_splits_250_rows_into_100_100_50(tmp_path: Path) -> None:
    f = _csv(tmp_path / "in.csv", 250)
    batches = list(iter_batches(f, csv_type="ean13", data_column="code", id_column="sku"))
    assert [len(b["barcodes"]) for b in batches] == [100, 100, 50]
    ids = [it["id"] for b in batches for it in b["barcodes"]]
    assert ids == [f"sku-{i}" for i in range(250)]
    assert scan(f, csv_type="ean13", data_column="code").batches == 3
    assert count_items(f, csv_type="ean13", data_column="code") == 250
    origins = [o for o, _ in iter_batches_with_origin(f, csv_type="ean13", data_column="code")]
    assert origins == ["lines 2-101", "lines 102-201", "lines 202-251"]


def test_csv_custom_batch_size(tmp_path: Path) -> None:
    f = _csv(tmp_path / "in.csv", 7)
    batches = list(iter_batches(f, csv_type="qr", data_column="code", batch_size=3))
    assert [len(b["barcodes"]) for b in batches] == [3, 3, 1]


@pytest.mark.parametrize(
    ("flag", "kwargs"),
    [("--data-column", {"data_column": "data"}), ("--id-column", {"data_column": "code", "id_column": "id"})],
)
def test_csv_missing_column_names_column_and_header(tmp_path: Path, flag: str, kwargs: dict[str, str]) -> None:
    f = _csv(tmp_path / "in.csv", 2)
    with pytest.raises(InputError) as info:
        list(iter_batches(f, csv_type="ean13", **kwargs))
    msg = str(info.value)
    missing = kwargs["id_column"] if flag == "--id-column" else kwargs["data_column"]
    assert flag in msg and repr(missing) in msg
    assert "'sku', 'code'" in msg  # the header that was found


def test_csv_needs_type_and_data_column(tmp_path: Path) -> None:
    f = _csv(tmp_path / "in.csv", 2)
    with pytest.raises(InputError, match="--type"):
        list(iter_batches(f, data_column="code"))
    with pytest.raises(InputError, match="--data-column"):
        list(iter_batches(f, csv_type="qr"))


def test_csv_empty_file_and_header_only(tmp_path: Path) -> None:
    f = tmp_path / "in.csv"
    f.write_text("")
    with pytest.raises(InputError, match="empty"):
        list(iter_batches(f, csv_type="qr", data_column="code"))
    f.write_text("code\n")
    assert list(iter_batches(f, csv_type="qr", data_column="code")) == []


def test_csv_bom_and_quoted_newlines(tmp_path: Path) -> None:
    f = tmp_path / "in.csv"
    f.write_bytes('\ufeffid,text\r\n1,"two\nlines"\r\n2,plain\r\n'.encode())
    (batch,) = list(iter_batches(f, csv_type="qr", data_column="text", id_column="id"))
    assert [it["data"] for it in batch["barcodes"]] == ["two\nlines", "plain"]
    # a stream that was not opened with utf-8-sig still loses the BOM in the header
    stream = io.StringIO("\ufeffid,text\n1,x\n")
    (batch,) = list(iter_batches(stream, kind="csv", csv_type="qr", data_column="text", id_column="id"))
    assert batch["barcodes"][0]["id"] == "1"


def test_kind_from_content_for_streams() -> None:
    ndjson = io.StringIO('{"barcodes": [{"data": "a"}]}\n{"barcodes": [{"data": "b"}]}\n')
    assert len(list(iter_batches(ndjson))) == 2
    pretty = io.StringIO('{\n  "barcodes": [{"data": "a"}]\n}\n')
    assert len(list(iter_batches(pretty))) == 1
    csv_stream = io.StringIO("code\n1\n2\n")
    (batch,) = list(iter_batches(csv_stream, csv_type="qr", data_column="code"))
    assert len(batch["barcodes"]) == 2


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('{"barcodes": []}', "json"),
        ('[{"barcodes": []}]', "json"),
        ('{"barcodes": []}\n{"barcodes": []}\n', "ndjson"),
        ('{\n "barcodes": []\n}', "json"),
        ("id,data\n1,2\n", "csv"),
        ("\ufeff{}", "json"),
    ],
)
def test_sniff_kind(text: str, kind: str) -> None:
    assert sniff_kind(text) == kind


def test_extension_wins_over_content(tmp_path: Path) -> None:
    f = tmp_path / "data.txt"
    f.write_text('{"barcodes": [{"data": "a"}]}\n{"barcodes": [{"data": "b"}]}\n')
    assert len(list(iter_batches(f))) == 2  # sniffed: NDJSON
    g = tmp_path / "weird.csv"
    g.write_text("data\n{x}\n")
    (batch,) = list(iter_batches(g, csv_type="qr", data_column="data"))
    assert batch["barcodes"][0]["data"] == "{x}"


def test_scan_rewinds_a_stream() -> None:
    stream = io.StringIO("code\n1\n2\n3\n")
    totals = scan(stream, kind="csv", csv_type="qr", data_column="code", batch_size=2)
    assert (totals.batches, totals.items) == (2, 3)
    assert len(list(iter_batches(stream, kind="csv", csv_type="qr", data_column="code"))) == 1


def test_invalid_arguments() -> None:
    with pytest.raises(InputError, match="batch size"):
        list(iter_batches(io.StringIO("x"), kind="csv", csv_type="qr", data_column="x", batch_size=0))
    with pytest.raises(InputError, match="format"):
        list(iter_batches(io.StringIO("x"), kind="csv", csv_type="qr", data_column="x", format="gif"))
    with pytest.raises(InputError, match="kind"):
        list(iter_batches(io.StringIO("x"), kind="xml"))  # type: ignore[arg-type]


def test_input_error_is_a_value_error_and_barcodeflow_error() -> None:
    from schemas.errors import BarcodeflowError

    assert issubclass(InputError, ValueError)
    assert issubclass(InputError, BarcodeflowError)
