"""Data Matrix / PDF417 / Aztec via zxing-cpp's writer."""

from __future__ import annotations

import pytest
import zxingcpp

from render import RenderSpec, normalize_item, render
from render.registry import REGISTRY
from render.verify import grayscale_of
from schemas.errors import DataTooLong
from tests.render.helpers import to_gray


def _spec(barcode_type: str, data: str) -> RenderSpec:
    return normalize_item({"barcode_type": barcode_type, "data": data})


@pytest.mark.parametrize(("barcode_type", "limit"), [("datamatrix", 3116), ("pdf417", 2710), ("aztec", 1661)])
def test_too_long_is_data_too_long(barcode_type: str, limit: int) -> None:
    with pytest.raises(DataTooLong) as err:
        render(_spec(barcode_type, "x" * 5000))
    assert str(err.value).startswith("data: 'xxxx")
    assert err.value.field == "data"


def test_datamatrix_version_is_its_size() -> None:
    meta = render(_spec("datamatrix", "hi")).metadata
    assert (meta["version"], meta["modules"], meta["rows"]) == ("10x10", 10, 10)


def test_pdf417_version_is_rows_by_columns() -> None:
    meta = render(_spec("pdf417", "hello world 123")).metadata
    assert meta["version"] == "9x2"
    assert (meta["modules"], meta["rows"]) == (103, 27)  # rows are drawn 3 modules high


@pytest.mark.parametrize("size", [1, 20, 50, 100, 300, 1000])
def test_aztec_layers_and_compactness_agree_with_the_reader(size: int) -> None:
    s = _spec("aztec", "y" * size)
    symbol = REGISTRY["aztec"].encode(s.data, None)
    read = zxingcpp.read_barcodes(to_gray(symbol.modules, linear=False))
    assert read and read[0].text == "y" * size
    extra: dict[str, object] = read[0].extra  # type: ignore[assignment]
    assert str(symbol.version) == extra["Version"]
    assert symbol.extra["compact"] is (size <= 50)  # 15, 19, 23 compact; 31, 53, 91 full range (seen in the bullseye)


# --------------------------------------------------------------------------- GS1 2D

GS1_DATA = "(01)09506000134352(17)201231(10)ABC123(21)XYZ"
GS1_RAW = "01095060001343521720123110ABC123\x1d21XYZ"


@pytest.mark.parametrize(("barcode_type", "identifier"), [("gs1_datamatrix", "]d2"), ("gs1_qr", "]Q3")])
@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_gs1_2d_decodes_with_its_symbology_identifier(barcode_type: str, identifier: str, fmt: str) -> None:
    out = render(normalize_item({"barcode_type": barcode_type, "data": GS1_DATA, "format": fmt}, verify=True))
    found = zxingcpp.read_barcodes(grayscale_of(out.image, out.content_type), text_mode=zxingcpp.TextMode.Plain)
    assert [(b.symbology_identifier, b.content_type, b.text) for b in found] == [
        (identifier, zxingcpp.ContentType.GS1, GS1_RAW)
    ]
    assert out.metadata["verified"] is True and out.metadata["content"] == GS1_RAW
    # the same data as plain datamatrix / qr is not GS1: a reader reports ]d1 / ]Q1
    plain = "datamatrix" if barcode_type == "gs1_datamatrix" else "qr"
    other = render(normalize_item({"barcode_type": plain, "data": GS1_RAW, "format": "png"}))
    assert zxingcpp.read_barcodes(grayscale_of(other.image, "image/png"))[0].symbology_identifier != identifier


def test_gs1_qr_error_correction_and_raw_input() -> None:
    spec = normalize_item({"barcode_type": "gs1_qr", "data": GS1_RAW, "options": {"error_correction": "H"}})
    assert spec.data == GS1_DATA  # raw input, bracketed canonical form
    out = render(normalize_item({**spec.to_dict(), "options": {"error_correction": "H"}}, verify=True))
    meta = out.metadata
    assert (meta["error_correction"], meta["version"]) == ("H", (meta["modules"] - 17) // 4)
    [found] = zxingcpp.read_barcodes(grayscale_of(out.image, out.content_type))
    assert (found.ec_level, found.extra["Version"]) == ("H", str(meta["version"]))


def test_gs1_datamatrix_is_square() -> None:
    for data in (GS1_DATA, "(01)09506000134352", "(00)106141411234567897(400)" + "A" * 30):
        meta = render(normalize_item({"barcode_type": "gs1_datamatrix", "data": data})).metadata
        assert meta["modules"] == meta["rows"] and meta["version"] == f"{meta['rows']}x{meta['rows']}"


@pytest.mark.parametrize("carrier", ["qr", "datamatrix"])
def test_gs1_digital_link_carriers(carrier: str) -> None:
    item = {
        "barcode_type": "gs1_digital_link",
        "data": "https://Example.com/01/9506000134352/10/ABC?17=201231&linkType=all",
        "format": "png",
        "options": {"carrier": carrier},
    }
    out = render(normalize_item(item, verify=True))
    uri = "https://example.com/01/09506000134352/10/ABC?17=201231"
    assert out.metadata["data"] == uri and out.metadata["element_string"] == "(01)09506000134352(10)ABC(17)201231"
    [found] = zxingcpp.read_barcodes(grayscale_of(out.image, "image/png"))
    fmt = zxingcpp.BarcodeFormat.QRCode if carrier == "qr" else zxingcpp.BarcodeFormat.DataMatrix
    assert (found.format, found.text) == (fmt, uri)
    assert out.metadata["margin"] == (4 if carrier == "qr" else 1)


def test_digital_link_options() -> None:
    from schemas.errors import InvalidOption

    with pytest.raises(InvalidOption, match="only supported for gs1_digital_link"):
        normalize_item({"barcode_type": "qr", "data": "x", "options": {"carrier": "datamatrix"}})
    with pytest.raises(InvalidOption, match="not supported for Data Matrix"):
        normalize_item(
            {
                "barcode_type": "gs1_digital_link",
                "data": "(01)09506000134352",
                "options": {"carrier": "datamatrix", "error_correction": "H"},
            }
        )
