"""normalize_item: canonical specs, option validation, cache keys."""

from __future__ import annotations

import math
import pickle
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from render import MAX_SIDE, RENDERER_VERSION, SUPPORTED_TYPES, RenderSpec, normalize_item
from render.spec import OPTION_KEYS, fields_key, spec_fields
from schemas.errors import (
    DataTooLong,
    InvalidCheckDigit,
    InvalidData,
    InvalidItem,
    InvalidOption,
    ItemError,
    UnsupportedType,
)
from schemas.models import BarcodeType, ItemOptions


def item(barcode_type: str = "qr", data: Any = "hello", fmt: Any = "svg", **options: Any) -> dict[str, Any]:
    return {"barcode_type": barcode_type, "data": data, "format": fmt, "options": options}


def test_supported_types_match_the_wire_schema() -> None:
    assert SUPPORTED_TYPES == get_args(BarcodeType)


def test_option_keys_match_the_documented_model() -> None:
    assert set(OPTION_KEYS) == set(ItemOptions.model_fields)


def test_defaults_are_resolved() -> None:
    qr = normalize_item({"barcode_type": "qr", "data": "x"})
    assert (qr.format, qr.margin, qr.module_size, qr.error_correction) == ("svg", 4, 4, "M")
    assert (qr.foreground, qr.background, qr.show_text, qr.verify) == ("#000000", "#ffffff", False, False)
    assert (qr.width, qr.height) == (None, None)
    micro = normalize_item({"barcode_type": "micro_qr", "data": "1"})
    assert (micro.margin, micro.error_correction) == (2, None)
    ean = normalize_item({"barcode_type": "ean13", "data": "590123412345"})
    assert (ean.margin, ean.module_size, ean.height, ean.show_text) == (None, 2, 80, True)  # None: GS1 11/7
    itf14 = normalize_item({"barcode_type": "itf14", "data": "1540014128876"})
    assert (itf14.margin, itf14.bearer) == (None, "frame")
    link = normalize_item({"barcode_type": "gs1_digital_link", "data": "(01)09506000134352"})
    assert (link.carrier, link.margin, link.error_correction, link.gs1_requisites) == ("qr", 4, "M", True)
    for name, margin in {"datamatrix": 1, "pdf417": 2, "aztec": 1}.items():
        assert normalize_item({"barcode_type": name, "data": "x"}).margin == margin


def test_names_and_formats_are_normalised() -> None:
    spec = normalize_item({"barcode_type": " Micro-QR ", "data": "1", "format": "PNG"})
    assert (spec.barcode_type, spec.format) == ("micro_qr", "png")


def test_data_is_canonical() -> None:
    assert normalize_item(item("ean13", "590123412345")).data == "5901234123457"
    assert normalize_item(item("ean13", "5901234123457")).data == "5901234123457"
    assert normalize_item(item("code39", "abc")).data == "ABC"
    assert normalize_item(item("itf", "123")).data == "0123"
    assert normalize_item(item("isbn10", "0-306-40615-2")).data == "0306406152"
    assert normalize_item(item("codabar", "123")).data == "A123A"


def test_options_that_do_not_matter_are_dropped() -> None:
    spec = normalize_item(item("qr", width=200, module_size=9))
    assert spec.module_size is None
    spec = normalize_item(item("code128", "x", width=300, module_size=3))
    assert spec.module_size is None


def test_colours() -> None:
    spec = normalize_item(item(foreground="#ABC", background="Transparent"))
    assert (spec.foreground, spec.background) == ("#aabbcc", "transparent")
    assert normalize_item(item(foreground="#A1b2C3")).foreground == "#a1b2c3"
    for bad in ["red", "#12", "#1234", "#ggg", " #fff", "#fff ", "transparent", 123, [], True]:
        with pytest.raises(InvalidOption) as err:
            normalize_item(item(foreground=bad))
        assert err.value.field == "options.foreground"
        assert "options.foreground" in str(err.value)
    with pytest.raises(InvalidOption, match=r"options\.foreground: '#fff' is the same colour"):
        normalize_item(item(foreground="#fff", background="#FFFFFF"))


def test_error_correction() -> None:
    assert normalize_item(item("qr", error_correction="h")).error_correction == "H"
    assert normalize_item(item("micro_qr", "1", error_correction="q")).error_correction == "Q"
    with pytest.raises(InvalidOption, match=r"options\.error_correction: 'H' is not a level of micro_qr"):
        normalize_item(item("micro_qr", "1", error_correction="H"))
    with pytest.raises(InvalidOption, match=r"options\.error_correction: 'L' is not supported for ean13"):
        normalize_item(item("ean13", "590123412345", error_correction="L"))
    with pytest.raises(InvalidOption, match=r"options\.error_correction: 'X'"):
        normalize_item(item("qr", error_correction="X"))


def test_show_text_is_refused_for_2d() -> None:
    assert normalize_item(item("qr", show_text=False)).show_text is False
    with pytest.raises(InvalidOption, match=r"options\.show_text: True is not supported for qr"):
        normalize_item(item("qr", show_text=True))


def test_verify_option_overrides_batch_flag() -> None:
    assert normalize_item(item(), verify=True).verify is True
    assert normalize_item(item(verify=False), verify=True).verify is False
    assert normalize_item(item(verify=True), verify=False).verify is True


@pytest.mark.parametrize(
    ("raw", "error", "field", "needle"),
    [
        ("not a dict", InvalidItem, "item", "'not a dict'"),
        ({"barcode_type": "foo", "data": "x"}, UnsupportedType, "barcode_type", "'foo'"),
        ({"barcode_type": None, "data": "x"}, UnsupportedType, "barcode_type", "None"),
        ({"barcode_type": 13, "data": "x"}, UnsupportedType, "barcode_type", "13"),
        ({"barcode_type": "qr", "data": ""}, InvalidData, "data", "''"),
        ({"barcode_type": "qr", "data": None}, InvalidData, "data", "None"),
        ({"barcode_type": "qr", "data": b"bytes"}, InvalidData, "data", "b'bytes'"),
        ({"barcode_type": "qr", "data": "\ud800"}, InvalidData, "data", "surrogates"),
        ({"barcode_type": "qr", "data": "1" * 8000}, DataTooLong, "data", "8000 characters"),
        ({"barcode_type": "qr", "data": "x", "format": "gif"}, InvalidOption, "format", "'gif'"),
        ({"barcode_type": "qr", "data": "x", "options": []}, InvalidOption, "options", "[]"),
        (
            {"barcode_type": "qr", "data": "x", "options": {"colour": 1}},
            InvalidOption,
            "options.colour",
            "unknown",
        ),
        ({"barcode_type": "qr", "data": "x", "options": {1: 1}}, InvalidOption, "options", "key 1"),
        ({"barcode_type": "ean13", "data": "12345"}, InvalidData, "data", "expected 12 or 13 digits"),
        ({"barcode_type": "ean13", "data": "5901234123458"}, InvalidCheckDigit, "data", "expected '7'"),
    ],
)
def test_item_errors_name_field_and_value(raw: Any, error: type[ItemError], field: str, needle: str) -> None:
    with pytest.raises(error) as err:
        normalize_item(raw)
    assert type(err.value) is error
    assert err.value.field == field
    assert str(err.value).startswith(field)
    assert needle in str(err.value)


def test_ean13_message_matches_the_house_style() -> None:
    with pytest.raises(InvalidData) as err:
        normalize_item(item("ean13", "12345"))
    assert str(err.value) == "data: '12345' is not a valid EAN-13: expected 12 or 13 digits, got 5"


@pytest.mark.parametrize("key", ["width", "height", "margin", "module_size"])
@settings(max_examples=60, deadline=None)
@given(
    value=st.one_of(
        st.integers(max_value=-1),
        st.integers(min_value=MAX_SIDE + 1),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0.0, 1.0, 1e9, math.nan, math.inf, -0.0, 10**5000]),
        st.booleans(),
        st.text(max_size=5),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    )
)
def test_bad_integer_options_are_invalid_option(key: str, value: Any) -> None:
    with pytest.raises(InvalidOption) as err:
        normalize_item({**item(), "options": {key: value}})
    assert err.value.field == f"options.{key}"
    assert str(err.value).startswith(f"options.{key}: ")


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("width", 0),
        ("width", 4097),
        ("height", 0),
        ("margin", -1),
        ("margin", 65),
        ("module_size", 0),
        ("module_size", 65),
    ],
)
def test_integer_bounds(key: str, bad: int) -> None:
    with pytest.raises(InvalidOption, match=rf"options\.{key}: {bad} is out of range"):
        normalize_item({**item(), "options": {key: bad}})


@settings(max_examples=200, deadline=None)
@given(
    options=st.dictionaries(
        st.sampled_from([*OPTION_KEYS, "bogus"]),
        st.one_of(st.none(), st.booleans(), st.integers(-10, 5000), st.floats(), st.text(max_size=8)),
        max_size=5,
    ),
    barcode_type=st.sampled_from(SUPPORTED_TYPES),
)
def test_arbitrary_options_never_raise_anything_but_item_errors(options: dict[str, Any], barcode_type: str) -> None:
    data = {"ean13": "590123412345", "ean8": "9638507", "upca": "03600029145", "jan": "490123456789",
            "isbn13": "978316148410", "isbn10": "316148410", "issn": "0317847", "ean14": "1234567890123",
            "gs1_128": "(01)12345678901231", "itf": "1234", "codabar": "A12B", "pzn": "123456",
            "micro_qr": "1", "itf14": "1540014128876", "upce": "0123456", "gs1_datamatrix": "(01)12345678901231",
            "gs1_qr": "(01)12345678901231", "gs1_digital_link": "(01)12345678901231",
            }.get(barcode_type, "HELLO")  # fmt: skip
    try:
        spec = normalize_item(item(barcode_type, data, **options))
    except InvalidOption as exc:
        assert str(exc).startswith(("options.", "options:"))
    else:
        assert isinstance(spec, RenderSpec)


def test_spec_is_hashable_and_picklable() -> None:
    spec = normalize_item(item("code128", "abc", "png", width=300, foreground="#123"))
    copy = pickle.loads(pickle.dumps(spec))  # noqa: S301 - our own bytes
    assert copy == spec and hash(copy) == hash(spec)
    assert {spec: 1}[normalize_item(item("code128", "abc", "png", width=300, foreground="#112233"))] == 1


def test_cache_key() -> None:
    a = normalize_item(item("ean13", "590123412345"))
    b = normalize_item(item("ean13", " 5901234123457 "))
    assert a == b and a.cache_key() == b.cache_key()
    key = a.cache_key()
    assert len(key) == 64 and int(key, 16) >= 0
    assert key == normalize_item(item("ean13", "590123412345")).cache_key()
    others = {
        normalize_item(item("ean13", "590123412345", "png")).cache_key(),
        normalize_item(item("ean13", "590123412345", margin=5)).cache_key(),
        normalize_item(item("ean13", "590123412345", width=400)).cache_key(),
        normalize_item(item("ean13", "590123412345", show_text=False)).cache_key(),
        normalize_item(item("ean13", "590123412345", foreground="#111")).cache_key(),
        normalize_item(item("ean13", "590123412345"), verify=True).cache_key(),
        normalize_item(item("jan", "490123456789")).cache_key(),
    }
    assert key not in others and len(others) == 7
    assert RENDERER_VERSION  # part of the hashed document


def _outcome(fn: Any, raw: Any, verify: bool) -> Any:
    try:
        return fn(raw, verify=verify)
    except ItemError as exc:
        return type(exc), str(exc), exc.field


@settings(max_examples=300, deadline=None)
@given(
    barcode_type=st.sampled_from([*SUPPORTED_TYPES, "bogus"]),
    data=st.one_of(st.sampled_from(["590123412345", "(01)12345678901231", "A12B", "1", "HELLO", ""]), st.text()),
    fmt=st.sampled_from(["svg", "png", "PNG", None, "gif"]),
    options=st.one_of(
        st.none(),
        st.just({}),
        st.dictionaries(
            st.sampled_from([*OPTION_KEYS, "bogus"]),
            st.one_of(st.none(), st.booleans(), st.integers(-10, 5000), st.text(max_size=8)),
            max_size=4,
        ),
    ),
    verify=st.booleans(),
)
def test_spec_fields_and_fields_key_agree_with_normalize_item(
    barcode_type: str, data: str, fmt: Any, options: Any, verify: bool
) -> None:
    raw = {"barcode_type": barcode_type, "data": data, "format": fmt, "options": options}
    spec, fields = _outcome(normalize_item, raw, verify), _outcome(spec_fields, raw, verify)
    if isinstance(spec, RenderSpec):
        assert fields == spec.to_dict() and list(fields) == list(spec.to_dict())  # same fields, same order
        assert RenderSpec(**fields) == spec
        assert fields_key(fields) == spec.cache_key()
    else:  # the same error, message and field
        assert fields == spec


def test_spec_fields_never_hand_out_the_shared_defaults() -> None:
    a = spec_fields({"barcode_type": "qr", "data": "first"})
    a["margin"] = 99
    b = spec_fields({"barcode_type": "qr", "data": "second"})
    assert b["margin"] != 99 and b["data"] == "second" and a["data"] == "first"
