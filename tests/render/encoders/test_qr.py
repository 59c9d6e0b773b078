"""QR / Micro QR via segno: error levels, overflow, the kanji-mode workaround, capacity."""

from __future__ import annotations

import pytest
import segno
from hypothesis import given, settings
from hypothesis import strategies as st

from render import RenderSpec, describe, normalize_item, render
from schemas.errors import DataTooLong, InvalidOption
from tests.render.helpers import decode_png, decodes_to


def spec(barcode_type: str, data: str, **options: object) -> RenderSpec:
    return normalize_item({"barcode_type": barcode_type, "data": data, "options": options})


@pytest.mark.parametrize("level", ["L", "M", "Q", "H"])
def test_qr_reports_the_requested_level(level: str) -> None:
    meta = render(spec("qr", "hi", error_correction=level.lower())).metadata
    assert (meta["version"], meta["error_correction"]) == (1, level)


def test_qr_defaults_to_m_without_boost() -> None:
    meta = render(spec("qr", "hi")).metadata
    assert meta["error_correction"] == "M"  # segno would boost "hi" to H by default
    assert segno.make_qr("hi").error == "H"


def test_micro_qr_levels() -> None:
    assert render(spec("micro_qr", "12345")).metadata["version"] == "M1"
    meta = render(spec("micro_qr", "12345", error_correction="Q")).metadata
    assert (meta["version"], meta["error_correction"]) == ("M4", "Q")


def test_overflow_is_data_too_long() -> None:
    with pytest.raises(DataTooLong, match=r"^data: .* does not fit in any QR Code at error correction H"):
        render(spec("qr", "x" * 2000, error_correction="H"))
    with pytest.raises(DataTooLong, match=r"Micro QR Code"):
        render(spec("micro_qr", "1" * 36))
    with pytest.raises(DataTooLong):
        render(spec("micro_qr", "HELLO WORLD 12345", error_correction="Q"))  # M4-Q: 13 alphanumerics
    assert render(spec("qr", "1" * 7089, error_correction="L")).metadata["version"] == 40


@pytest.mark.parametrize("data", ["éé", "àA", "\x820"])
def test_latin1_text_is_never_encoded_as_kanji(data: str) -> None:
    assert segno.make_qr(data).mode == "kanji"  # the segno behaviour being worked around
    for barcode_type in ("qr", "micro_qr"):
        s = normalize_item({"barcode_type": barcode_type, "data": data, "format": "png"}, verify=True)
        rendered = render(s)
        assert rendered.metadata["mode"] == "byte"
        assert decodes_to(decode_png(rendered.image, barcode_type), data)


def test_real_kanji_still_uses_kanji_mode() -> None:
    assert render(spec("qr", "日本語")).metadata["mode"] == "kanji"


def test_describe_has_capacity_and_no_image() -> None:
    meta = describe(spec("qr", "hello"))
    assert meta["capacity"] == {
        "data_bits": 128,
        "used_bits": 52,
        "free_bits": 76,
        "mode": "byte",
        "free_chars": 9,
    }
    assert "image" not in meta
    assert describe(spec("micro_qr", "1234567"))["capacity"]["free_chars"] == 1  # M2-M holds 8 digits


_EXTEND = {"numeric": "7", "alphanumeric": "Z", "byte": "z", "kanji": "漢"}


@settings(max_examples=40, deadline=None)
@given(
    barcode_type=st.sampled_from(["qr", "micro_qr"]),
    data=st.one_of(
        st.text(alphabet="0123456789", min_size=1, max_size=30),
        st.text(alphabet="ABCDEFGHIJ0123 $%", min_size=2, max_size=18).filter(lambda s: not s.isdigit()),
        st.text(alphabet="abcdefgh!", min_size=1, max_size=12),
        st.text(alphabet="漢字日本", min_size=1, max_size=6),
    ),
)
def test_free_chars_is_exact(barcode_type: str, data: str) -> None:
    try:
        meta = describe(spec(barcode_type, data))
    except DataTooLong:
        return
    cap = meta["capacity"]
    assert cap["free_bits"] == cap["data_bits"] - cap["used_bits"] >= 0
    extra = _EXTEND[cap["mode"]]
    fits = describe(spec(barcode_type, data + extra * cap["free_chars"], error_correction=meta["error_correction"]))
    assert (fits["version"], fits["error_correction"]) == (meta["version"], meta["error_correction"])
    try:
        bigger = describe(
            spec(
                barcode_type,
                data + extra * (cap["free_chars"] + 1),
                error_correction=meta["error_correction"],
            )
        )
    except (DataTooLong, InvalidOption):
        return
    assert bigger["version"] != meta["version"]
