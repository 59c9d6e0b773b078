"""Read a symbol back with zxing-cpp and compare with what it should say.

The symbol is rasterised straight from its module matrix with numpy (grayscale, the item's colours, its
margin, plus a white surround as a page would give), rather than decoding the output file: the same
pixels the PNG writer packs, independent of the requested format. Colours matter: a low-contrast
foreground/background pair fails verification.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import numpy.typing as npt
import zxingcpp

from schemas.errors import VerifyFailed
from stream_app.render._text import show
from stream_app.render.registry import REGISTRY
from stream_app.render.spec import TRANSPARENT, RenderSpec
from stream_app.render.symbol import Symbol

SCALE_2D = 3  # px per module
SCALE_1D = 2
BAR_HEIGHT_1D = 40  # px
_ALT_ENCODINGS = ("utf-8", "latin-1", "shift_jis", "cp932", "gb2312")


def _luma(colour: str) -> int:
    if colour == TRANSPARENT:
        return 255
    r, g, b = bytes.fromhex(colour[1:])
    return round(0.299 * r + 0.587 * g + 0.114 * b)


@cache
def _formats(barcode_type: str) -> zxingcpp.BarcodeFormats:
    names = REGISTRY[barcode_type].read_formats
    return zxingcpp.BarcodeFormats([getattr(zxingcpp.BarcodeFormat, n) for n in names])


def grayscale(symbol: Symbol, spec: RenderSpec) -> npt.NDArray[np.uint8]:
    """8-bit grayscale image of the symbol as verify sees it."""
    symbology = REGISTRY[spec.barcode_type]
    margin = symbology.default_margin if spec.margin is None else spec.margin
    surround = symbology.default_margin
    fg, bg = np.uint8(_luma(spec.foreground)), np.uint8(_luma(spec.background))
    if symbol.linear:
        row = np.where(np.pad(symbol.modules[0], margin), fg, bg).astype(np.uint8)
        row = np.pad(row, surround, constant_values=255)
        row = np.repeat(row, SCALE_1D)
        return np.ascontiguousarray(np.broadcast_to(row, (BAR_HEIGHT_1D, row.size)))
    full = np.where(np.pad(symbol.modules, margin), fg, bg).astype(np.uint8)
    full = np.pad(full, surround, constant_values=255)
    return np.repeat(np.repeat(full, SCALE_2D, axis=0), SCALE_2D, axis=1)


def matches(expected: str, barcode: zxingcpp.Barcode) -> bool:
    """Compare a decoded symbol with the expected reader text, tolerating reader-side conventions."""
    text = barcode.text
    if text == expected:
        return True
    if len(expected) == 12 and expected.isdigit() and text == "0" + expected:  # UPC-A read as EAN-13
        return True
    raw = barcode.bytes  # 2D: the reader guesses a charset when there is no ECI; compare the bytes
    for encoding in _ALT_ENCODINGS:
        try:
            if expected.encode(encoding) == raw:
                return True
        except UnicodeEncodeError:
            continue
    return False


def verify_symbol(symbol: Symbol, spec: RenderSpec) -> None:
    """Raise ``VerifyFailed`` unless the symbol decodes to ``symbol.content``."""
    image = grayscale(symbol, spec)
    formats = _formats(spec.barcode_type)
    found = zxingcpp.read_barcodes(image, formats=formats, text_mode=zxingcpp.TextMode.Plain)
    if not found:
        raise VerifyFailed(
            f"data: {show(symbol.content)} was rendered but no {spec.barcode_type} symbol could be decoded "
            f"back (foreground {spec.foreground} on {spec.background})",
            field="data",
        )
    if not any(matches(symbol.content, barcode) for barcode in found):
        raise VerifyFailed(
            f"data: decoded {show(found[0].text)} but expected {show(symbol.content)}",
            field="data",
        )
