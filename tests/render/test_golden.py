"""Output stability: SVG bytes, PNG pixels and metadata of a fixed sample of items and options, per type.

Any change of what ``render_item`` produces for these items (an optimisation must not make one) shows up
as a digest mismatch naming the type and format. SVG and metadata are compared byte for byte; PNG by its
chunks with IDAT decompressed (so the zlib build does not matter), only with the Pillow/FreeType build
the digests were taken with (the 1D text glyphs come from Pillow's built-in font).

Regenerate after an intended output change: ``python -m tests.render.test_golden > tests/render/golden.json``.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import PIL
import pytest
from PIL import features

from render import SUPPORTED_TYPES, render_item
from tests.render.helpers import SAMPLE

GOLDEN = Path(__file__).with_name("golden.json")

EXTRA: dict[str, list[str]] = {
    "ean13": ["590123412345+12", "5901234123457+12345", "4006381333931"],
    "upca": ["03600029145+12", "036000291452"],
    "ean8": ["9638507+12345", "96385074"],
    "upce": ["0123456+12", "01234565", "123456"],
    "gs1_128": ["011234567890123110ABC123", "(00)123456789012345675", "(01)09506000134352(17)201231(10)ABC(21)XYZ"],
    "gs1_digital_link": ["(01)09506000134352(10)ABC123", "https://example.com/a/01/09506000134352/10/AB?17=201231&x=1"],
    "gs1_qr": ["(01)09506000134352"],
    "code128": ["x", "Hello World 1234567890 long text here ok"],
    "qr": ["A" * 300],
    "itf14": ["15400141288763"],
}
OPTIONS: list[dict[str, Any] | None] = [
    None,
    {"show_text": False},
    {"width": 400},
    {"width": 333, "height": 50},
    {"height": 120, "module_size": 3},
    {"margin": 0},
    {"margin": 3, "foreground": "#123", "background": "transparent"},
    {"foreground": "#ffffff", "background": "#000000"},
    {"x_dim_mm": 0.33, "dpi": 600},
    {"bar_height_mm": 20},
    {"dpi": 300},
    {"quiet_zone_markers": True},
    {"bearer": "bars"},
    {"bearer": "none"},
    {"gs1_requisites": False},
    {"carrier": "datamatrix"},
    {"error_correction": "H"},
    {"module_size": 1, "height": 10},
]


def _items(barcode_type: str) -> Iterator[dict[str, Any]]:
    for data in [SAMPLE[barcode_type], *EXTRA.get(barcode_type, [])]:
        for options in OPTIONS:
            item: dict[str, Any] = {"barcode_type": barcode_type, "data": data}
            if options is not None:
                item["options"] = options
            yield item


def _png_content(png: bytes) -> bytes:
    """The PNG's chunks with IDAT decompressed: what it shows, independent of the zlib build."""
    out, pos = [png[:8]], 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        tag, payload = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        out.append(tag + (zlib.decompress(payload) if tag == b"IDAT" else payload))
        pos += 12 + length
    return b"".join(out)


def _digest(barcode_type: str, fmt: str) -> str:
    h = hashlib.sha256()
    for item in _items(barcode_type):
        item = {**item, "format": fmt}
        runs = [(False, render_item(item))] + ([(True, render_item(item, validate_only=True))] if fmt == "svg" else [])
        for validate_only, out in runs:
            h.update(orjson.dumps([item, validate_only, out.success], option=orjson.OPT_SORT_KEYS))
            if out.error is not None:
                h.update(orjson.dumps(out.error.to_dict(), option=orjson.OPT_SORT_KEYS))
                continue
            h.update(orjson.dumps(out.metadata, option=orjson.OPT_SORT_KEYS))
            if out.image is not None:
                image = out.image
                h.update(_png_content(image) if fmt == "png" else image)
    return h.hexdigest()


def _build() -> str:
    return f"Pillow {PIL.__version__}, FreeType {features.version('freetype2')}"


def compute() -> dict[str, Any]:
    digests = {f"{t} {fmt}": _digest(t, fmt) for t in SUPPORTED_TYPES for fmt in ("svg", "png")}
    return {"png_build": _build(), "digests": digests}


@pytest.mark.parametrize("fmt", ["svg", "png"])
@pytest.mark.parametrize("barcode_type", SUPPORTED_TYPES)
def test_output_unchanged(barcode_type: str, fmt: str) -> None:
    golden = json.loads(GOLDEN.read_text())
    if fmt == "png" and golden["png_build"] != _build():
        pytest.skip(f"PNG digests were taken with {golden['png_build']}, this is {_build()}")
    assert _digest(barcode_type, fmt) == golden["digests"][f"{barcode_type} {fmt}"]


if __name__ == "__main__":
    print(json.dumps(compute(), indent=1, sort_keys=True))
