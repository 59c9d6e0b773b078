"""verify: decode the symbol back and compare."""

from __future__ import annotations

import pytest

from render import normalize_item, render
from render.registry import REGISTRY
from render.verify import SURROUND, grayscale_of, verify_image
from render.writers import compute_layout, write_png
from schemas.errors import VerifyFailed


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


@pytest.mark.parametrize("barcode_type", ["ean13", "code128", "qr", "gs1_datamatrix", "upce", "itf14"])
def test_verify_reads_the_delivered_svg_through_a_real_renderer(barcode_type: str) -> None:
    from tests.render.helpers import SAMPLE

    item = {"barcode_type": barcode_type, "data": SAMPLE[barcode_type], "format": "svg"}
    out = render(normalize_item(item, verify=True))
    assert out.metadata["verified"] is True
    image = grayscale_of(out.image, out.content_type)
    assert image.shape == (out.metadata["height"] + 2 * SURROUND, out.metadata["width"] + 2 * SURROUND)


def test_what_is_delivered_is_what_is_verified() -> None:
    """An SVG squeezed to less than a pixel per module blurs when rasterised at its size: verify fails, though
    the same symbol as a PNG (never below 1 px per module) verifies."""
    item = {"barcode_type": "code128", "data": "HELLO-WORLD-1234", "options": {"width": 60}}
    with pytest.raises(VerifyFailed):
        render(normalize_item({**item, "format": "svg"}, verify=True))
    assert render(normalize_item({**item, "format": "png"}, verify=True)).metadata["verified"] is True


def test_gs1_symbology_identifier_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = normalize_item({"barcode_type": "gs1_128", "data": "(01)09506000134352", "format": "png"})
    symbol = REGISTRY["gs1_128"].encode(spec.data, None)
    plain = REGISTRY["code128"].encode("0109506000134352", None)  # same text, no FNC1: ]C0
    image = write_png(plain, spec, compute_layout(plain, spec))
    fake = type(symbol)(modules=plain.modules, linear=True, data=symbol.data, content=symbol.content,
                        symbology_id="]C1")  # fmt: skip
    with pytest.raises(VerifyFailed, match=r"symbology identifier \]C0 but expected \]C1"):
        verify_image(fake, spec, image, "image/png")
