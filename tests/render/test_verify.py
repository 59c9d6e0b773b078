"""verify: decode the symbol back and compare."""

from __future__ import annotations

import pytest

from schemas.errors import VerifyFailed
from stream_app.render import normalize_item, render
from stream_app.render.registry import REGISTRY
from stream_app.render.verify import verify_image
from stream_app.render.writers import compute_layout, write_png


def test_verified_flag_only_when_verify_ran() -> None:
    item = {"barcode_type": "upca", "data": "03600029145", "format": "png"}
    assert render(normalize_item(item, verify=True)).metadata["verified"] is True  # read as EAN-13 0036…
    assert "verified" not in render(normalize_item(item)).metadata


@pytest.mark.parametrize("barcode_type", ["qr", "code128", "datamatrix"])
def test_low_contrast_fails_verification(barcode_type: str) -> None:
    item = {
        "barcode_type": barcode_type,
        "data": "HELLO",
        "options": {"foreground": "#808080", "background": "#7a7a7a"},
    }
    with pytest.raises(VerifyFailed) as err:
        render(normalize_item(item, verify=True))
    assert err.value.code.value == "verify_failed"
    assert "'HELLO'" in str(err.value) and "#808080" in str(err.value)
    render(normalize_item(item))  # without verify it renders


def test_mismatch_names_both_values() -> None:
    spec = normalize_item({"barcode_type": "code128", "data": "AAA"}, verify=True)
    symbol = REGISTRY["code128"].encode("BBB", None)  # a symbol that says something else
    wrong = type(symbol)(modules=symbol.modules, linear=True, data="AAA", content="AAA", text="AAA")
    image = write_png(wrong, spec, compute_layout(wrong, spec))  # the delivered PNG says BBB
    with pytest.raises(VerifyFailed, match=r"^data: decoded 'BBB' but expected 'AAA'$"):
        verify_image(wrong, spec, image, "image/png")


def test_transparent_background_verifies() -> None:
    item = {
        "barcode_type": "aztec",
        "data": "x",
        "options": {"background": "transparent", "foreground": "#224"},
    }
    assert render(normalize_item(item, verify=True)).metadata["verified"] is True
