"""Print options: GS1 quiet zones, physical size (x_dim_mm, dpi, bar_height_mm, pHYs), human-readable text
(EAN/UPC layout, never over bars, show_text: false), quiet-zone markers."""

from __future__ import annotations

import struct
import zlib
from io import BytesIO
from typing import Any

import numpy as np
import pytest
from PIL import Image

from render import Rendered, normalize_item, render
from render.registry import REGISTRY
from schemas.errors import InvalidOption
from tests.render.helpers import SAMPLE, SVG_NS, parse_svg, png_dark, png_row

LINEAR = [name for name, s in REGISTRY.items() if s.linear]


def rendered(barcode_type: str, fmt: str = "png", data: str | None = None, **options: Any) -> Rendered:
    item = {"barcode_type": barcode_type, "data": SAMPLE[barcode_type] if data is None else data, "format": fmt}
    return render(normalize_item({**item, "options": options}))


def chunks(png: bytes) -> dict[bytes, bytes]:
    out, pos = {}, 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        out[png[pos + 4 : pos + 8]] = png[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return out


@pytest.mark.parametrize(
    ("barcode_type", "left", "right"),
    [("ean13", 11, 7), ("isbn13", 11, 7), ("upca", 9, 9), ("ean8", 7, 7), ("upce", 9, 7), ("itf14", 10, 10)],
)
def test_gs1_quiet_zones(barcode_type: str, left: int, right: int) -> None:
    out = rendered(
        barcode_type, module_size=1, show_text=False, **({"bearer": "none"} if barcode_type == "itf14" else {})
    )
    assert out.metadata["quiet_zone"] == [left, right]
    row = png_row(out.image)[0]
    dark = np.flatnonzero(row)
    assert dark[0] == left and row.size - 1 - dark[-1] == right  # exactly that many light modules


def test_addon_quiet_zone_is_5_after_it() -> None:
    out = rendered("ean13", data="5901234123457+12", module_size=1, show_text=False)
    row = png_row(out.image)[0]
    assert out.metadata["quiet_zone"] == [11, 5] and row.size - 1 - np.flatnonzero(row)[-1] == 5


def test_x_dim_snaps_to_whole_pixels_and_png_carries_phys() -> None:
    out = rendered("ean13", x_dim_mm=0.33, dpi=300)  # 0.33 mm at 300 dpi = 3.9 px → 4 px
    assert out.metadata["x_dim_mm"] == round(4 * 25.4 / 300, 4) and out.metadata["x_dim_mm_requested"] == 0.33
    assert out.metadata["dpi"] == 300
    phys = chunks(out.image)[b"pHYs"]
    assert struct.unpack(">IIB", phys) == (11811, 11811, 1)  # 300 dpi in pixels per metre
    assert Image.open(BytesIO(out.image)).info["dpi"] == pytest.approx((300, 300), abs=0.01)
    assert png_dark(out.image).shape[1] == 4 * (11 + 95 + 7)
    assert b"pHYs" not in chunks(rendered("ean13").image)  # no dpi: no pHYs (unchanged PNGs)


def test_svg_in_millimetres_and_bar_height() -> None:
    out = rendered("code128", "svg", x_dim_mm=0.25, dpi=600, bar_height_mm=10)
    root = parse_svg(out.image)
    px = round(0.25 * 600 / 25.4)  # 6 px per module
    assert root.get("width") == f"{out.metadata['width'] * 25.4 / 600:.3f}".rstrip("0").rstrip(".") + "mm"
    assert out.metadata["x_dim_mm"] == round(px * 25.4 / 600, 4)
    png = rendered("code128", x_dim_mm=0.25, dpi=600, bar_height_mm=10, show_text=False)
    assert png_dark(png.image).shape[0] == round(10 * 600 / 25.4)  # bars 10 mm high, no text band
    with_text = rendered("code128", x_dim_mm=0.25, dpi=600, bar_height_mm=10)
    assert png_dark(with_text.image).shape[0] > round(10 * 600 / 25.4)  # the text band is added below


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"x_dim_mm": 0.33, "width": 300}, "options.width: 300 cannot be combined with options.x_dim_mm"),
        ({"x_dim_mm": 0.33, "module_size": 3}, "options.module_size: 3 cannot be combined"),
        ({"bar_height_mm": 10, "height": 50}, "options.height: 50 cannot be combined with options.bar_height_mm"),
        ({"x_dim_mm": 0.01}, "options.x_dim_mm: 0.01 is out of range 0.05..10"),
        ({"x_dim_mm": "1"}, "options.x_dim_mm: '1' is not a number"),
        ({"dpi": 10}, "options.dpi: 10 is out of range 72..4800"),
    ],
)
def test_physical_option_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidOption) as err:
        rendered("ean13", **options)
    assert message in str(err.value)


def test_bar_height_is_1d_only() -> None:
    with pytest.raises(InvalidOption, match="options.bar_height_mm: 10.0 is not supported for qr"):
        rendered("qr", bar_height_mm=10)
    meta = rendered("qr", x_dim_mm=0.5, dpi=300).metadata  # 2D: x_dim sets the module size
    assert meta["x_dim_mm"] == round(6 * 25.4 / 300, 4) and meta["width"] == 6 * 29


@pytest.mark.parametrize("barcode_type", LINEAR)
def test_1d_png_carries_text_and_show_text_false_leaves_it_out(barcode_type: str) -> None:
    with_text, without = png_dark(rendered(barcode_type).image), png_dark(rendered(barcode_type, show_text=False).image)
    assert with_text.shape == without.shape
    added = with_text & ~without  # pixels only the text version has: the digits
    rows = np.flatnonzero(added.any(axis=1))
    assert rows.size and rows.min() > with_text.shape[0] // 2  # text under the bars (add-on digits aside)
    svg = parse_svg(rendered(barcode_type, "svg", show_text=False).image)
    assert svg.find(f"{SVG_NS}text") is None


@pytest.mark.parametrize("barcode_type", ["ean13", "upca", "ean8", "upce"])
def test_retail_text_never_overlaps_bars(barcode_type: str) -> None:
    markers = {"quiet_zone_markers": True} if barcode_type in ("ean13", "ean8") else {}
    out = rendered(barcode_type, module_size=3, **markers)
    text = png_dark(out.image)
    bars = png_dark(rendered(barcode_type, module_size=3, show_text=False).image)
    digits = text & ~bars  # what the text adds
    rows = np.flatnonzero(digits.any(axis=1))
    cols_of_bars = bars[rows].any(axis=0)  # bars (guards) that reach into the text rows
    assert not (digits[rows] & cols_of_bars).any()  # no digit pixel in a column a bar occupies there
    assert digits.any()


def test_ean13_layout_in_svg() -> None:
    root = parse_svg(rendered("ean13", "svg", quiet_zone_markers=True).image)
    texts = [(t.text, float(t.get("x"))) for t in root.findall(f"{SVG_NS}text")]
    assert [t for t, _ in texts] == ["5", "901234", "123457", ">"]
    assert texts[0][1] < 11 < texts[1][1] < 11 + 47 < texts[2][1] < 11 + 95 < texts[3][1]  # digit 1 outside
    heights = {float(h) for h in __import__("re").findall(r"v([\d.]+)h", root.find(f"{SVG_NS}path").get("d"))}
    assert len(heights) == 2  # ordinary bars and the longer guard bars


def test_gs1_128_text_has_ais_in_parentheses_also_for_raw_input() -> None:
    root = parse_svg(rendered("gs1_128", "svg", data="0109506000134352\x1d10ABC").image)
    assert root.find(f"{SVG_NS}text").text == "(01)09506000134352(10)ABC"
    root = parse_svg(rendered("itf14", "svg").image)
    assert root.find(f"{SVG_NS}text").text == "1 54 00141 28876 3"


def test_png_text_rows_are_deterministic() -> None:
    a, b = rendered("ean13").image, rendered("ean13").image
    assert a == b
    assert zlib.decompress(chunks(a)[b"IDAT"])  # well-formed
