"""1D encoders: python-barcode bars, our check-digit validation, documented python-barcode workarounds."""

from __future__ import annotations

import pytest
from barcode.codex import Code39, Code128, Gs1_128
from barcode.ean import EAN13, EAN14
from barcode.isxn import ISBN10, ISSN
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from render import normalize_item, render
from render.encoders import linear
from render.registry import REGISTRY
from schemas.errors import DataTooLong, InvalidCheckDigit, InvalidData
from tests.render.helpers import decode_png, decodes_to, gtin_check, svg_modules
from tests.render.strategies import VALID

LINEAR_TYPES = [name for name, s in REGISTRY.items() if s.linear]


def pattern(barcode_type: str, data: str) -> str:
    symbology = REGISTRY[barcode_type]
    modules = symbology.encode(symbology.normalize(data), None).modules
    assert modules.shape[0] == 1
    return "".join("1" if v else "0" for v in modules[0])


@settings(max_examples=50, deadline=None)
@given(st.text(st.characters(max_codepoint=127), min_size=1, max_size=80))
def test_code128_bars_equal_python_barcode_build(data: str) -> None:
    assume(not data.startswith("99"))  # python-barcode drops a leading Code C pair "99": see the next test
    expected = Code128(data).build()[0]
    assert pattern("code128", data) == expected
    # and through our SVG writer
    spec = normalize_item({"barcode_type": "code128", "data": data})
    row = svg_modules(render(spec).image, linear=True)[0]
    m = spec.margin or 0
    assert "".join("1" if v else "0" for v in row[m : len(row) - m]) == expected


@pytest.mark.parametrize("data", ["99", "990", "9912345678", "99A", "999", "A99"])
def test_code128_keeps_a_leading_99(data: str) -> None:
    """python-barcode's start-code shortcut took the data pair "99" after START C for the CODE C switch
    and dropped it ("99" encoded as nothing, "990" as "0"); our encoder keeps it."""
    for fmt in ("png", "svg"):
        item = {"barcode_type": "code128", "data": data, "format": fmt, "options": {"verify": True}}
        r = render(normalize_item(item))
        assert r.metadata["verified"] is True
    png = render(normalize_item({"barcode_type": "code128", "data": data, "format": "png"}))
    assert decodes_to(decode_png(png.image, "code128"), data)
    if data in ("99", "990"):
        assert Code128(data).build()[0] != pattern("code128", data)  # the library's own output is wrong


def test_other_bars_equal_python_barcode_build() -> None:
    assert pattern("ean13", "590123412345") == EAN13("590123412345").build()[0]
    assert pattern("code39", "abc-1") == Code39("ABC-1", add_checksum=False).build()[0]
    assert pattern("gs1_128", "(01)12345678901231(10)AB(21)C") == Gs1_128("0112345678901231" + "10AB\xf121C").build()[0]
    assert pattern("pzn", "1234562") == Code39("-1234562", add_checksum=False).build()[0]


@pytest.mark.parametrize("barcode_type", LINEAR_TYPES)
@settings(max_examples=25, deadline=None)
@given(draw=st.data())
def test_normalisation_is_idempotent(barcode_type: str, draw: st.DataObject) -> None:
    data, _ = draw.draw(VALID[barcode_type])
    normalize = REGISTRY[barcode_type].normalize
    once = normalize(data)
    assert normalize(once) == once


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet="0123456789", min_size=13, max_size=13))
def test_ean14_check_digit_is_the_gs1_one(body: str) -> None:
    assert linear.normalize_ean14(body) == body + gtin_check(body)
    assert EAN14(body).get_fullcode() == body + gtin_check(body)


@pytest.mark.parametrize(
    ("barcode_type", "data", "normalised", "content"),
    [
        ("ean13", "4006381333931", "4006381333931", "4006381333931"),
        ("ean8", "9638507", "96385074", "96385074"),
        ("upca", "03600029145", "036000291452", "036000291452"),
        ("jan", "4901234567894", "4901234567894", "4901234567894"),
        ("isbn13", "978-3-16-148410-0", "9783161484100", "9783161484100"),
        ("isbn10", "0-306-40615-2", "0306406152", "9780306406157"),
        ("isbn10", "080442957X", "080442957X", "9780804429573"),
        ("issn", "0317-8471", "03178471", "9770317847001"),
        ("issn", "2049-3630", "20493630", "9772049363002"),
        ("ean14", "1234567890123", "12345678901231", "0112345678901231"),
        ("pzn", "123456", "1234562", "-1234562"),
        ("pzn", "PZN-01234562", "01234562", "-01234562"),
        ("itf", "12345", "012345", "012345"),
        ("codabar", "a40156b", "A40156B", "A40156B"),
        ("code39", "hello world", "HELLO WORLD", "HELLO WORLD"),
        (
            "gs1_128",
            "(01)09506000134352(10)ABC(17)201231",
            "(01)09506000134352(10)ABC(17)201231",
            "010950600013435210ABC\x1d17201231",
        ),
        ("gs1_128", "0109506000134352\x1d10ABC", "0109506000134352\x1d10ABC", "0109506000134352\x1d10ABC"),
    ],
)
def test_known_vectors(barcode_type: str, data: str, normalised: str, content: str) -> None:
    spec = normalize_item({"barcode_type": barcode_type, "data": data})
    assert spec.data == normalised
    meta = render(spec).metadata
    assert (meta["data"], meta["content"]) == (normalised, content)


@pytest.mark.parametrize(
    ("barcode_type", "data"),
    [
        ("ean13", "5901234123458"),
        ("ean8", "96385075"),
        ("upca", "036000291453"),
        ("jan", "4901234567895"),
        ("isbn13", "9783161484101"),
        ("isbn10", "0306406153"),
        ("issn", "03178472"),
        ("ean14", "12345678901230"),
        ("pzn", "1234563"),
        ("pzn", "01234563"),
        ("gs1_128", "(01)12345678901230"),
    ],
)
def test_wrong_check_digit(barcode_type: str, data: str) -> None:
    with pytest.raises(InvalidCheckDigit) as err:
        normalize_item({"barcode_type": barcode_type, "data": data})
    assert err.value.code.value == "invalid_check_digit"
    assert str(err.value).startswith(f"data: {data!r} is not a valid ")
    assert "check digit is" in str(err.value)


@pytest.mark.parametrize(
    ("barcode_type", "data", "why"),
    [
        ("ean13", "59012341234", "expected 12 or 13 digits"),
        ("ean13", "59012341234567", "expected 12 or 13 digits"),
        ("ean13", "59012341234a", "only digits"),
        ("ean13", "５９０１２３４１２３４５", "only digits"),  # full-width digits are not ASCII
        ("jan", "590123412345", "450-459 or 490-499"),
        ("isbn13", "979012345678", "978, 9791 or 9798"),
        ("isbn10", "12345", "expected 9 digits"),
        ("isbn10", "123456789Y", "expected 9 digits"),
        ("issn", "123456", "expected 7 digits"),
        ("code128", "naïve", "outside ASCII"),
        ("code39", "a*b", "not in 0-9 A-Z"),
        ("itf", "12a4", "only digits"),
        ("itf", "12", "at least 4 digits"),
        ("codabar", "A12E", "expected [A-D]"),
        ("codabar", "A1B", "at least 2 characters"),
        ("pzn", "12345", "expected 6 or 7 digits"),
        ("pzn", "000003", "check sum is 10"),
        ("gs1_128", "(01)123", "AI (01) GTIN: '123' does not match its format N2+N14"),
        ("gs1_128", "(10)", "AI (10) has no value"),
        ("gs1_128", "(1)ABC", "expected (AI)value"),
        ("gs1_128", "(01)09506000134352(10)ABC~", "AI (10) BATCH/LOT: 'ABC~' does not match its format N2+X..20"),
        ("gs1_128", "\x1d10ABC", "single GS separators"),
    ],
)
def test_invalid_data(barcode_type: str, data: str, why: str) -> None:
    with pytest.raises(InvalidData) as err:
        normalize_item({"barcode_type": barcode_type, "data": data})
    assert type(err.value) is InvalidData
    assert err.value.field == "data"
    assert str(err.value).startswith(f"data: {data!r} is not a valid ")
    assert why in str(err.value)


@pytest.mark.parametrize(
    ("barcode_type", "data"),
    [
        ("code128", "x" * 81),
        ("code39", "X" * 81),
        ("itf", "1" * 81),
        ("codabar", "1" * 81),
        ("gs1_128", "(01)09506000134352(10)" + "A" * 20 + "(21)" + "B" * 20),
        ("gs1_128", "10" + "A" * 47),
    ],
)
def test_data_too_long(barcode_type: str, data: str) -> None:
    with pytest.raises(DataTooLong) as err:
        normalize_item({"barcode_type": barcode_type, "data": data})
    assert err.value.code.value == "data_too_long"
    assert str(err.value).startswith("data: ")


def test_python_barcode_bugs_we_work_around() -> None:
    # ISBN10 / ISSN classes build 10- and 8-digit "EAN-13"s; EAN14 a 102-module pattern no reader knows.
    assert ISBN10("0306406152").get_fullcode() != "9780306406157"
    assert ISSN("03178471").get_fullcode() != "9770317847001"
    assert len(EAN14("1234567890123").build()[0]) == 102
    assert len(pattern("isbn10", "0306406152")) == 95
    assert len(pattern("issn", "03178471")) == 95
    # PZN: python-barcode encodes the letters "PZN-" in Code 39; we encode "-" + digits
    assert pattern("pzn", "123456") == Code39("-1234562", add_checksum=False).build()[0]
