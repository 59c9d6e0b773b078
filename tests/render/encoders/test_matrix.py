"""Data Matrix / PDF417 / Aztec via zxing-cpp's writer."""

from __future__ import annotations

import pytest
import zxingcpp

from schemas.errors import DataTooLong
from stream_app.render import RenderSpec, normalize_item, render
from stream_app.render.registry import REGISTRY
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
    assert symbol.extra["compact"] is (
        size <= 50
    )  # 15, 19, 23 compact; 31, 53, 91 full range (seen in the bullseye)
