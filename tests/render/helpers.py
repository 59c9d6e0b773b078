"""Test helpers: independent check-digit maths, readers for our own SVG/PNG output, zxing decoding."""

from __future__ import annotations

import re
from io import BytesIO

import defusedxml.ElementTree as DET
import numpy as np
import zxingcpp
from PIL import Image

from render.registry import REGISTRY
from render.verify import matches

SVG_NS = "{http://www.w3.org/2000/svg}"
# one valid sample per type
SAMPLE = {
    "qr": "hello", "micro_qr": "12345", "ean13": "590123412345", "ean8": "9638507", "upca": "03600029145",
    "jan": "490123456789", "isbn13": "978316148410", "isbn10": "316148410", "issn": "0317847",
    "ean14": "1234567890123", "gs1_128": "(01)12345678901231(10)AB", "code128": "Hello", "code39": "HELLO",
    "itf": "123456", "codabar": "A1234B", "pzn": "123456", "datamatrix": "hello", "pdf417": "hello",
    "aztec": "hello", "itf14": "1540014128876", "upce": "0123456", "gs1_datamatrix": "(01)09506000134352(10)AB",
    "gs1_qr": "(01)09506000134352(10)AB", "gs1_digital_link": "https://id.gs1.org/01/09506000134352/10/AB",
}  # fmt: skip
_RECT = re.compile(r"M(\d+) ([\d.]+)h(\d+)v([\d.]+)h-(\d+)z")
_LINE = re.compile(r"([Mm])(\d+) ([\d.]+)h(\d+)")


def gtin_check(body: str) -> str:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def formats(barcode_type: str) -> zxingcpp.BarcodeFormats:
    names = REGISTRY[barcode_type].read_formats
    return zxingcpp.BarcodeFormats([getattr(zxingcpp.BarcodeFormat, n) for n in names])


def decode(image: object, barcode_type: str) -> list[zxingcpp.Barcode]:
    return zxingcpp.read_barcodes(image, formats=formats(barcode_type), text_mode=zxingcpp.TextMode.Plain)


def decode_png(png: bytes, barcode_type: str) -> list[zxingcpp.Barcode]:
    return decode(Image.open(BytesIO(png)), barcode_type)


def decodes_to(found: list[zxingcpp.Barcode], content: str) -> bool:
    return any(matches(content, b) for b in found)


def png_row(png: bytes) -> np.ndarray:
    """1D: the PNG's pixel row at ``MID`` of its height, as a (1, width) boolean matrix."""
    dark = png_dark(png)
    return dark[int(dark.shape[0] * MID) : int(dark.shape[0] * MID) + 1]


def png_dark(png: bytes) -> np.ndarray:
    """Boolean pixel matrix of one of our PNGs (True = foreground palette index 1)."""
    image = Image.open(BytesIO(png))
    assert image.mode == "P"
    return np.asarray(image) == 1


def parse_svg(svg: bytes) -> DET.Element:
    return DET.fromstring(svg)


MID = 0.4  # 1D: where bars are read, as a share of the height (below bearers and add-on digits)


def svg_modules(svg: bytes, *, linear: bool) -> np.ndarray:
    """Parse our own path formats back to the module matrix (quiet zone included); 1D: the row of modules
    crossing ``MID`` of the height."""
    root = parse_svg(svg)
    _, _, width, height = root.get("viewBox").split()
    cols = int(width)
    path = root.find(f"{SVG_NS}path")
    assert path is not None
    d = path.get("d")
    if path.get("stroke") is not None:
        rects = _stroked(d, float(path.get("stroke-width", "1")))
        assert path.get("fill") == "none"
    else:
        found = _RECT.findall(d)
        assert "".join(f"M{x} {y}h{w}v{h}h-{w2}z" for x, y, w, h, w2 in found) == d, "unexpected path syntax"
        assert all(w == w2 for _, _, w, _, w2 in found)
        rects = [(int(x), float(y), int(w), float(h)) for x, y, w, h, _ in found]
    if linear:
        out = np.zeros((1, cols), dtype=bool)
        level = float(height) * MID
        for x, y, w, h in rects:
            if y <= level < y + h:
                out[0, x : x + w] = True
        return out
    out = np.zeros((int(height), cols), dtype=bool)
    for x, y, w, h in rects:
        assert y == int(y) and h == int(h), "2D rows are whole modules"
        block = out[int(y) : int(y + h), x : x + w]
        assert block.shape == (int(h), w) and not block.any(), "rectangles must not overlap"
        block[:] = True
    return out


def _stroked(d: str, stroke_width: float) -> list[tuple[int, float, int, float]]:
    """``M{x} {y}h{w}`` / ``m{gap} 0h{w}`` lines stroked ``stroke_width`` high, as (x, top, width, height)."""
    lines = _LINE.findall(d)
    assert "".join(f"{c}{a} {b}h{w}" for c, a, b, w in lines) == d, "unexpected path syntax"
    out = []
    end, middle = 0, 0.0
    for cmd, a, b, w in lines:
        if cmd == "M":
            x, middle = int(a), float(b)
        else:
            assert b == "0", "a relative move stays on its line"
            x = end + int(a)
        end = x + int(w)
        out.append((x, middle - stroke_width / 2, int(w), stroke_width))
    return out


def to_gray(modules: np.ndarray, scale: int = 3, *, linear: bool, pad: int = 4) -> np.ndarray:
    """Rasterise a module matrix for zxing (white surround)."""
    if linear:
        row = np.repeat(np.pad(modules[0], pad * 2), scale)
        return np.ascontiguousarray(np.tile(np.where(row, 0, 255).astype(np.uint8), (40, 1)))
    full = np.pad(modules, pad)
    full = np.repeat(np.repeat(full, scale, axis=0), scale, axis=1)
    return np.where(full, 0, 255).astype(np.uint8)
