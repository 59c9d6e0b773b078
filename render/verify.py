"""Read the delivered image back with zxing-cpp and compare with what it should say.

What is decoded is the bytes returned to the client, at their size: a PNG as it is; an SVG rasterised by
resvg (``resvg-py``) at its own width/height (``mm`` sizes at the item's ``dpi``), text included (monospace
= DejaVu Sans Mono when installed). The image is composited on white (a transparent background shows the
page) and given a white surround of 16 px, as a page would; nothing else is changed, so a foreground /
background pair of low contrast, a module size that blurs, or text over bars fail verification.

Checked: the decoded text equals the symbol's reader content (GS1: the element string with GS
separators; EAN/UPC: with the add-on digits; UPC-E: its 8 digits), and for GS1 symbols the symbology
identifier (``]C1`` GS1-128, ``]d2`` GS1 Data Matrix, ``]Q3`` GS1 QR).
"""

from __future__ import annotations

import io
import os
from functools import cache

import numpy as np
import numpy.typing as npt
import resvg_py
import zxingcpp
from PIL import Image

from render._text import show
from render.registry import REGISTRY
from render.spec import RenderSpec
from render.symbol import Symbol
from schemas.errors import VerifyFailed

SURROUND = 16  # px of white page around the delivered image
MONOSPACE = "DejaVu Sans Mono"
_FONT_FILES = ("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",)
_ALT_ENCODINGS = ("utf-8", "latin-1", "shift_jis", "cp932", "gb2312")


@cache
def _formats(barcode_type: str) -> zxingcpp.BarcodeFormats:
    names = REGISTRY[barcode_type].read_formats
    return zxingcpp.BarcodeFormats([getattr(zxingcpp.BarcodeFormat, n) for n in names])


@cache
def _fonts() -> list[str]:
    return [path for path in _FONT_FILES if os.path.exists(path)]


def rasterise_svg(svg: bytes, dpi: int | None = None) -> bytes:
    """PNG bytes of an SVG as resvg draws it at its own size (``mm`` at ``dpi``, default 96)."""
    png = resvg_py.svg_to_bytes(
        svg_string=svg.decode("utf-8"),
        skip_system_fonts=True,
        font_files=_fonts() or None,
        monospace_family=MONOSPACE,
        dpi=float(dpi or 0),
    )
    return bytes(png)


def grayscale_of(image: bytes, content_type: str, dpi: int | None = None) -> npt.NDArray[np.uint8]:
    """The delivered image as 8-bit grayscale on white, with the white surround."""
    png = image if content_type == "image/png" else rasterise_svg(image, dpi)
    with Image.open(io.BytesIO(png)) as opened:
        if opened.mode in ("1", "L", "P") and "transparency" not in opened.info:  # opaque: no compositing
            gray = np.asarray(opened.convert("L"), dtype=np.uint8)  # (8x faster at 4096 x 4096)
        else:
            rgba = opened.convert("RGBA")
            page = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            page.alpha_composite(rgba)
            gray = np.asarray(page.convert("L"), dtype=np.uint8)
    return np.pad(gray, SURROUND, constant_values=255)


def matches(expected: str, barcode: zxingcpp.Barcode) -> bool:
    """Compare a decoded symbol with the expected reader text, tolerating reader-side conventions."""
    text = barcode.text
    if text == expected:
        return True
    if expected.isdigit() and len(expected) in (12, 14, 17) and text == "0" + expected:  # UPC-A read as EAN-13
        return True
    extra = barcode.extra if isinstance(barcode.extra, dict) else {}
    upce = extra.get("UPCE")
    if upce is not None and upce + str(extra.get("EanAddOn", "")) == expected:
        return True
    raw = barcode.bytes  # 2D: the reader guesses a charset when there is no ECI; compare the bytes
    for encoding in _ALT_ENCODINGS:
        try:
            if expected.encode(encoding) == raw:
                return True
        except UnicodeEncodeError:
            continue
    return False


def read(image: npt.NDArray[np.uint8], barcode_type: str) -> list[zxingcpp.Barcode]:
    addon = zxingcpp.EanAddOnSymbol.Read if REGISTRY[barcode_type].retail else zxingcpp.EanAddOnSymbol.Ignore
    return zxingcpp.read_barcodes(
        image, formats=_formats(barcode_type), text_mode=zxingcpp.TextMode.Plain, ean_add_on_symbol=addon
    )


def verify_image(symbol: Symbol, spec: RenderSpec, image: bytes, content_type: str) -> None:
    """Raise ``VerifyFailed`` unless the delivered image decodes to ``symbol.content``."""
    found = read(grayscale_of(image, content_type, spec.dpi), spec.barcode_type)
    if not found:
        raise VerifyFailed(
            f"data: {show(symbol.content)} was rendered but no {spec.barcode_type} symbol could be decoded "
            f"back from the {spec.format.upper()} (foreground {spec.foreground} on {spec.background})",
            field="data",
        )
    good = [barcode for barcode in found if matches(symbol.content, barcode)]
    if not good:
        raise VerifyFailed(
            f"data: decoded {show(found[0].text)} but expected {show(symbol.content)}",
            field="data",
        )
    if symbol.symbology_id and not any(b.symbology_identifier == symbol.symbology_id for b in good):
        raise VerifyFailed(
            f"data: decoded with symbology identifier {good[0].symbology_identifier} but expected "
            f"{symbol.symbology_id}",
            field="data",
        )
