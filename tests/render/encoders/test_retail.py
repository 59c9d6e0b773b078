"""UPC-E, EAN/UPC add-ons and ITF-14: bars compared with Zint (an independent encoder), the delivered image
decoded with zxing-cpp, and the GS1 conversion and quiet-zone rules."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import zint
import zxingcpp
from hypothesis import given, settings
from hypothesis import strategies as st

from render import normalize_item, render
from render.encoders import linear
from render.registry import REGISTRY
from render.verify import grayscale_of
from schemas.errors import InvalidCheckDigit, InvalidData, InvalidOption
from tests.render.helpers import gtin_check, png_dark


def zint_bars(symbology: Any, data: str) -> str:
    symbol = zint.Symbol()
    symbol.symbology = symbology
    symbol.encode(data)
    row = np.unpackbits(np.asarray(symbol.encoded_data)[0], bitorder="little")[: symbol.width]
    return "".join("1" if v else "0" for v in row)


def ours(barcode_type: str, data: str) -> str:
    symbology = REGISTRY[barcode_type]
    modules = symbology.encode(symbology.normalize(data), None).modules
    return "".join("1" if v else "0" for v in modules[0])


def delivered(barcode_type: str, data: str, fmt: str, **options: Any) -> tuple[list[zxingcpp.Barcode], dict[str, Any]]:
    out = render(normalize_item({"barcode_type": barcode_type, "data": data, "format": fmt, "options": options}))
    image = grayscale_of(out.image, out.content_type)  # the bytes the client gets (SVG through resvg)
    found = zxingcpp.read_barcodes(image, ean_add_on_symbol=zxingcpp.EanAddOnSymbol.Read)
    return found, out.metadata


# --------------------------------------------------------------------------- UPC-E


@pytest.mark.parametrize(
    ("upce", "upca"),
    [("01234565", "012345000065"), ("04252614", "042100005264")],  # Zint's manual; GS1's UPC-E example
)
def test_upce_upca_conversion(upce: str, upca: str) -> None:
    assert linear.upce_to_upca(upce) == upca
    assert linear.upca_to_upce(upca) == upce
    assert upca[-1] == gtin_check(upca[:-1])
    assert normalize_item({"barcode_type": "upce", "data": upca}).data == upce  # UPC-A in, UPC-E out
    assert normalize_item({"barcode_type": "upce", "data": upce[:7]}).data == upce


def test_upca_without_a_upce_form() -> None:
    assert linear.upca_to_upce("036000291452") is None
    with pytest.raises(InvalidData, match="UPC-A 036000291452 has no zero-suppressed UPC-E form"):
        normalize_item({"barcode_type": "upce", "data": "036000291452"})
    with pytest.raises(InvalidCheckDigit, match="check digit is '6', expected '5'"):
        normalize_item({"barcode_type": "upce", "data": "01234566"})
    with pytest.raises(InvalidData, match="number system"):
        normalize_item({"barcode_type": "upce", "data": "21234565"})


@pytest.mark.parametrize("data", ["0123456", "1234567", "0425261", "0000000", "1999999", "0123453", "0123404"])
def test_upce_bars_equal_zint(data: str) -> None:
    assert ours("upce", data) == zint_bars(zint.Symbology.UPCE, data)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="0123456789", min_size=6, max_size=6), st.sampled_from("01"))
def test_upce_check_digit_and_round_trip_agree_with_zint(six: str, ns: str) -> None:
    symbol = zint.Symbol()
    symbol.symbology = zint.Symbology.UPCE
    try:
        symbol.encode(ns + six)
    except RuntimeError:  # Zint refuses a zero suppression that is not the canonical one: so do we
        with pytest.raises(InvalidData, match="not the zero-suppressed form"):
            normalize_item({"barcode_type": "upce", "data": ns + six})
        return
    upce = normalize_item({"barcode_type": "upce", "data": ns + six}).data
    assert upce == symbol.text  # Zint prints the 8 digits, check digit included
    upca = linear.upce_to_upca(upce)
    assert upca[-1] == gtin_check(upca[:-1]) and linear.upca_to_upce(upca) == upce


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_upce_decodes_from_the_delivered_image(fmt: str) -> None:
    found, meta = delivered("upce", "0425261", fmt)
    assert meta["data"] == "04252614" and meta["upca"] == "042100005264"
    assert [(b.format, b.extra["UPCE"]) for b in found] == [(zxingcpp.BarcodeFormat.UPCE, "04252614")]


# --------------------------------------------------------------------------- add-ons


@pytest.mark.parametrize(
    ("barcode_type", "data", "zint_symbology", "zint_data"),
    [
        ("ean13", "5901234123457+12345", zint.Symbology.EANX, "5901234123457+12345"),
        ("ean13", "5901234123457 12", zint.Symbology.EANX, "5901234123457+12"),
        ("ean13", "978316148410+90000", zint.Symbology.EANX, "978316148410+90000"),
        ("upca", "036000291452+12", zint.Symbology.UPCA, "036000291452+12"),
        ("upca", "03600029145+54321", zint.Symbology.UPCA, "03600029145+54321"),
        ("ean8", "9638507+12", zint.Symbology.EANX, "9638507+12"),
        ("upce", "0123456+12345", zint.Symbology.UPCE, "0123456+12345"),
    ],
)
def test_addon_bars_equal_zint(barcode_type: str, data: str, zint_symbology: Any, zint_data: str) -> None:
    assert ours(barcode_type, data) == zint_bars(zint_symbology, zint_data)


@pytest.mark.parametrize("fmt", ["png", "svg"])
@pytest.mark.parametrize(
    ("barcode_type", "data", "text"),
    [
        ("ean13", "5901234123457+12345", "590123412345712345"),
        ("ean13", "590123412345+07", "590123412345707"),
        ("upca", "036000291452+12", "003600029145212"),
        ("ean8", "9638507+12", "9638507412"),
        ("upce", "0123456+12345", "001234500006512345"),
    ],
)
def test_addons_decode_from_the_delivered_image(barcode_type: str, data: str, text: str, fmt: str) -> None:
    found, meta = delivered(barcode_type, data, fmt, quiet_zone_markers=barcode_type in ("ean13", "ean8"))
    with_addon = [b for b in found if b.symbology_identifier == "]E3"]  # EAN/UPC with add-on
    assert [b.text for b in with_addon] == [text]
    assert meta["addon"] == data.replace(" ", "+").split("+")[1]


@pytest.mark.parametrize("data", ["5901234123457+1", "5901234123457+123", "5901234123457+12a45"])
def test_addon_must_be_2_or_5_digits(data: str) -> None:
    with pytest.raises(InvalidData, match="the add-on .* must be 2 or 5 digits"):
        normalize_item({"barcode_type": "ean13", "data": data})


# --------------------------------------------------------------------------- ITF-14


@pytest.mark.parametrize("data", ["1540014128876", "0950600013435", "1234567890123"])
def test_itf14_bars_equal_zint_and_check_digit(data: str) -> None:
    full = data + gtin_check(data)
    assert normalize_item({"barcode_type": "itf14", "data": data}).data == full
    assert ours("itf14", data) == zint_bars(zint.Symbology.ITF14, data)
    wrong = data + str((int(full[-1]) + 1) % 10)
    with pytest.raises(InvalidCheckDigit):
        normalize_item({"barcode_type": "itf14", "data": wrong})


@pytest.mark.parametrize("bearer", ["none", "bars", "frame"])
@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_itf14_bearers_decode_from_the_delivered_image(bearer: str, fmt: str) -> None:
    found, meta = delivered("itf14", "1540014128876", fmt, bearer=bearer)
    assert [b.text for b in found] == ["15400141288763"]
    assert meta["bearer"] == bearer and meta["quiet_zone"] == [10, 10]


def test_itf14_bearer_geometry_in_the_png() -> None:
    def dark(bearer: str) -> np.ndarray:
        item = {"barcode_type": "itf14", "data": "1540014128876", "format": "png", "options": {"bearer": bearer}}
        return png_dark(render(normalize_item(item)).image)

    frame, bars, none = dark("frame"), dark("bars"), dark("none")
    assert frame[0].all() and bars[0].all()  # the top bearer runs across the whole width
    assert not none[0, :20].any()  # no bearer: the quiet zone is white from the top
    middle = frame.shape[0] // 3
    assert frame[middle, :10].all() and frame[middle, -10:].all()  # 5 X sides at 2 px/module
    assert not bars[middle, :10].any()  # bars only: no sides
    assert frame.shape[1] == bars.shape[1] + 2 * 5 * 2  # the frame sides sit outside the quiet zones


def test_option_scope() -> None:
    with pytest.raises(InvalidOption, match="options.bearer: 'frame' is only supported for itf14"):
        normalize_item({"barcode_type": "itf", "data": "1234", "options": {"bearer": "frame"}})
    with pytest.raises(InvalidOption, match="is not one of none, bars, frame"):
        normalize_item({"barcode_type": "itf14", "data": "1540014128876", "options": {"bearer": "box"}})
    with pytest.raises(InvalidOption, match="only supported for EAN/UPC types"):
        normalize_item({"barcode_type": "code128", "data": "x", "options": {"quiet_zone_markers": True}})


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789", min_size=12, max_size=12))
def test_ean_upc_patterns_and_check_digits_match_python_barcode(body: str) -> None:
    from barcode.ean import EAN8, EAN13
    from barcode.upc import UPCA

    ean13, upca, ean8 = EAN13(body), UPCA(body[:11]), EAN8(body[:7])
    assert linear.normalize_ean13(body) == ean13.get_fullcode()
    assert linear.ean13_pattern(ean13.get_fullcode()) == ean13.build()[0]
    assert linear.normalize_upca(body[:11]) == upca.get_fullcode()
    assert linear.ean13_pattern("0" + upca.get_fullcode()) == upca.build()[0]
    assert linear.normalize_ean8(body[:7]) == ean8.get_fullcode()
    assert linear.ean8_pattern(ean8.get_fullcode()) == ean8.build()[0]
