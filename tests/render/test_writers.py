"""SVG and PNG writers: well-formed, hostile-text safe, sized by the documented rules, deterministic."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
import zlib
from io import BytesIO
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from render import SUPPORTED_TYPES, Rendered, normalize_item, render
from render import writers as writers_module
from render._text import strip_controls
from render.registry import REGISTRY
from render.verify import rasterise_svg
from schemas.errors import InvalidOption
from tests.render.helpers import SAMPLE, SVG_NS, parse_svg, png_dark, png_row, svg_modules

HOSTILE = "<script>alert('x')</script> & \"quotes\" ]]> <!-- --> \x00\x01\x07\x1b\x7f onload=evil()"


def rendered(barcode_type: str, data: str | None = None, fmt: str = "svg", **options: Any) -> Rendered:
    item = {
        "barcode_type": barcode_type,
        "data": SAMPLE[barcode_type] if data is None else data,
        "format": fmt,
    }
    return render(normalize_item({**item, "options": options}))


def assert_safe_svg(svg: bytes) -> Any:
    root = parse_svg(svg)  # defusedxml: well-formed, no entities / DTD tricks
    assert root.tag == f"{SVG_NS}svg"
    assert b"<script" not in svg.lower()
    for element in root.iter():
        assert not element.tag.endswith("script")
        assert not any(name.lower().startswith("on") for name in element.attrib)
    return root


def test_sample_covers_every_type() -> None:
    assert set(SAMPLE) == set(SUPPORTED_TYPES)


@pytest.mark.parametrize("barcode_type", SUPPORTED_TYPES)
def test_svg_structure(barcode_type: str) -> None:
    out = rendered(barcode_type)
    root = assert_safe_svg(out.image)
    assert root.get("shape-rendering") == "crispEdges"
    assert (int(root.get("width")), int(root.get("height"))) == (
        out.metadata["width"],
        out.metadata["height"],
    )
    assert len(root.findall(f"{SVG_NS}path")) == 1
    rect = root.find(f"{SVG_NS}rect")
    assert rect is not None and rect.get("fill") == "#ffffff"
    text = root.find(f"{SVG_NS}text")
    if out.metadata["rows"] == 1:
        assert text is not None and text.text
    else:
        assert text is None


@pytest.mark.parametrize("barcode_type", ["code128", "gs1_128", "code39"])
def test_hostile_text(barcode_type: str) -> None:
    data = {"code128": HOSTILE, "gs1_128": "(01)09506000134352(10)<&>\"'(21)<!--", "code39": "A+B%C$D/E.F-G"}[
        barcode_type
    ]
    out = rendered(barcode_type, data)
    root = assert_safe_svg(out.image)
    text = root.find(f"{SVG_NS}text")
    assert text is not None
    assert text.text == strip_controls(out.metadata["data"])
    if barcode_type == "code128":
        assert text.text == strip_controls(HOSTILE)
        assert b"&lt;script&gt;" in out.image and b"]]&gt;" in out.image


@settings(max_examples=50, deadline=None)
@given(st.text(st.characters(max_codepoint=127), min_size=1, max_size=80))
def test_any_code128_text_survives(data: str) -> None:
    out = rendered("code128", data)
    text = assert_safe_svg(out.image).find(f"{SVG_NS}text")
    shown = strip_controls(data)
    assert (text.text if text is not None else "") == shown


def test_only_control_characters_means_no_text() -> None:
    root = assert_safe_svg(rendered("code128", "\x00\x01\x02").image)
    assert root.find(f"{SVG_NS}text") is None


def test_show_text_false_and_colours() -> None:
    out = rendered("ean13", show_text=False, foreground="#123", background="transparent")
    root = assert_safe_svg(out.image)
    assert root.find(f"{SVG_NS}text") is None
    assert root.find(f"{SVG_NS}rect") is None
    assert root.find(f"{SVG_NS}path").get("fill") == "#112233"


def test_2d_default_size_and_viewbox() -> None:
    out = rendered("qr")  # 21 modules + 2*4 quiet zone, 4 px each
    root = parse_svg(out.image)
    assert root.get("viewBox") == "0 0 29 29"
    assert (root.get("width"), root.get("height")) == ("116", "116")
    png = rendered("qr", fmt="png")
    assert Image.open(BytesIO(png.image)).size == (116, 116)


def test_2d_requested_width() -> None:
    svg = parse_svg(rendered("qr", width=300).image)
    assert (svg.get("width"), svg.get("height"), svg.get("viewBox")) == ("300", "300", "0 0 29 29")
    png = rendered("qr", fmt="png", width=300)
    assert Image.open(BytesIO(png.image)).size == (290, 290)  # scale = 300 // 29 = 10
    assert (png.metadata["width"], png.metadata["height"]) == (290, 290)
    tiny = rendered("qr", fmt="png", width=10)
    assert Image.open(BytesIO(tiny.image)).size == (29, 29)  # never below 1 px per module
    both = rendered("qr", fmt="png", width=300, height=100)
    assert Image.open(BytesIO(both.image)).size == (87, 87)  # min(300 // 29, 100 // 29) = 3


def test_1d_sizes() -> None:
    svg = parse_svg(rendered("ean13").image)  # 95 + 11 + 7 modules (GS1 quiet zones), 2 px each, 80 px high
    assert (svg.get("width"), svg.get("height"), svg.get("viewBox")) == ("226", "80", "0 0 113 40")
    png = rendered("ean13", fmt="png", width=500, height=50)
    assert Image.open(BytesIO(png.image)).size == (452, 50)  # 500 // 113 = 4 px per module
    svg = parse_svg(rendered("ean13", width=500, height=50).image)
    assert (svg.get("width"), svg.get("height")) == ("500", "50")
    png = rendered("ean13", fmt="png", module_size=3, margin=0, show_text=False)
    assert Image.open(BytesIO(png.image)).size == (285, 80)
    png = rendered("ean13", fmt="png", module_size=3, margin=0)  # the leading digit needs 7 modules
    assert Image.open(BytesIO(png.image)).size == (3 * (95 + 7), 80)


def test_margin_is_the_quiet_zone() -> None:
    out = rendered("qr", fmt="png", margin=0, module_size=1)
    dark = png_dark(out.image)
    assert dark.shape == (21, 21) and dark[0, 0] and dark[20, 0] and dark[0, 20]  # finder patterns at the edge
    out = rendered("code128", fmt="png", margin=3, module_size=1)
    row = png_dark(out.image)[0]
    assert not row[:3].any() and row[3] and not row[-3:].any() and row[-4]


def test_huge_derived_sizes_are_refused_before_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object) -> bytes:
        raise AssertionError("writer must not run")

    monkeypatch.setattr(writers_module, "WRITERS", {"svg": ("x", boom), "png": ("x", boom)})
    monkeypatch.setattr("render.core.WRITERS", {"svg": ("x", boom), "png": ("x", boom)})
    with pytest.raises(InvalidOption) as err:
        rendered("code128", "x" * 80, fmt="png", module_size=64)
    assert err.value.field == "options.module_size"
    assert "options.module_size: 64 makes the image" in str(err.value) and "4096" in str(err.value)
    with pytest.raises(InvalidOption, match=r"options\.module_size: 64"):
        rendered("aztec", "x" * 1000, module_size=64)


def _chunks(png: bytes) -> dict[bytes, bytes]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    out: dict[bytes, bytes] = {}
    pos = 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        tag, payload = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(tag + payload)
        out[tag] = payload
        pos += 12 + length
    return out


def test_png_is_a_1bit_palette_image() -> None:
    png = rendered("qr", fmt="png", foreground="#102030", background="#f0e0d0").image
    chunks = _chunks(png)
    width, height, depth, colour_type, *_ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (width, height, depth, colour_type) == (116, 116, 1, 3)
    assert chunks[b"PLTE"] == bytes.fromhex("f0e0d0102030")
    assert b"tRNS" not in chunks
    rgb = np.asarray(Image.open(BytesIO(png)).convert("RGB"))
    assert tuple(rgb[0, 0]) == (0xF0, 0xE0, 0xD0) and tuple(rgb[16, 16]) == (0x10, 0x20, 0x30)


def test_png_transparent_background() -> None:
    png = rendered("ean8", fmt="png", background="transparent").image
    assert _chunks(png)[b"tRNS"] == b"\x00"
    rgba = np.asarray(Image.open(BytesIO(png)).convert("RGBA"))
    assert rgba[0, 0, 3] == 0 and rgba[:, :, 3].max() == 255


@pytest.mark.parametrize("barcode_type", SUPPORTED_TYPES)
@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_same_spec_same_bytes(barcode_type: str, fmt: str) -> None:
    assert rendered(barcode_type, fmt=fmt).image == rendered(barcode_type, fmt=fmt).image


def test_bytes_are_stable_across_processes() -> None:
    script = (
        "import hashlib\n"
        "from render import normalize_item, render\n"
        "for t, d in [('qr', 'hello'), ('code128', 'Hello'), ('aztec', 'hello')]:\n"
        "    for f in ('svg', 'png'):\n"
        "        r = render(normalize_item({'barcode_type': t, 'data': d, 'format': f}))\n"
        "        print(hashlib.sha256(r.image).hexdigest())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    here = [
        hashlib.sha256(rendered(t, d, fmt=f).image).hexdigest()
        for t, d in [("qr", "hello"), ("code128", "Hello"), ("aztec", "hello")]
        for f in ("svg", "png")
    ]
    assert out.stdout.split() == here


def test_svg_path_matches_png_modules_for_every_type() -> None:
    for barcode_type in SUPPORTED_TYPES:
        svg, png = rendered(barcode_type, module_size=3), rendered(barcode_type, fmt="png", module_size=3)
        linear = png.metadata["rows"] == 1
        sampled = png_row(png.image)[:, ::3] if linear else png_dark(png.image)[::3, ::3]
        assert np.array_equal(svg_modules(svg.image, linear=linear), sampled), barcode_type


@pytest.mark.parametrize("barcode_type", SUPPORTED_TYPES)
def test_svg_draws_the_png_pixels_in_a_real_renderer(barcode_type: str) -> None:
    """resvg draws the SVG (stroked lines for 2D and plain 1D, rectangles for EAN/UPC) pixel for pixel as
    the PNG: no half-covered module edge, no gap, no overlap (text off: fonts differ between the two)."""
    opts: dict[str, Any] = {"module_size": 3, "show_text": False}
    svg, png = rendered(barcode_type, **opts), rendered(barcode_type, fmt="png", **opts)
    drawn = np.asarray(Image.open(BytesIO(rasterise_svg(svg.image))).convert("L"))
    assert drawn.shape == png_dark(png.image).shape, barcode_type
    assert set(np.unique(drawn).tolist()) <= {0, 255}, f"{barcode_type}: anti-aliased edges"
    assert np.array_equal(drawn == 0, png_dark(png.image)), barcode_type


def test_2d_paths_are_stroked_bands() -> None:
    qr = parse_svg(rendered("qr").image).find(f"{SVG_NS}path")
    assert (qr.get("fill"), qr.get("stroke"), qr.get("stroke-width")) == ("none", "#000000", None)
    assert qr.get("d").startswith("M4 4.5h7m")  # the finder pattern's top row, then a relative move
    pdf = parse_svg(rendered("pdf417").image).find(f"{SVG_NS}path")
    assert pdf.get("stroke-width") == "3"  # one line per 3-module row, not three


LINEAR_TYPES = [t for t in SUPPORTED_TYPES if REGISTRY[t].linear]
PRINT_OPTIONS: list[dict[str, Any]] = [
    {},
    {"module_size": 3},
    {"width": 333, "height": 50},
    {"module_size": 1, "height": 12},
    {"margin": 0, "height": 200},
    {"bar_height_mm": 10, "dpi": 300},
]


@pytest.mark.parametrize("barcode_type", LINEAR_TYPES)
@pytest.mark.parametrize("options", PRINT_OPTIONS, ids=str)
def test_1d_png_rows_are_the_full_raster(barcode_type: str, options: dict[str, Any]) -> None:
    """write_png packs only the text band and repeats the bar row: the pixels are ``raster``'s."""
    if options.get("module_size") == 3 and barcode_type in ("ean13", "ean8", "upca", "upce", "jan", "isbn13"):
        options = {**options, "quiet_zone_markers": True}
    spec = normalize_item({"barcode_type": barcode_type, "data": SAMPLE[barcode_type], "options": options})
    symbol = REGISTRY[barcode_type].encode(spec.data, None)
    layout = writers_module.compute_layout(symbol, spec)
    png = writers_module.write_png(symbol, spec, layout)
    assert np.array_equal(png_dark(png), writers_module.raster(symbol, layout, spec))


def test_overlapping_glyph_strips_are_ored() -> None:
    image = np.zeros((4, 8), dtype=np.bool_)
    first = np.array([[True, False, True]])
    second = np.array([[False, True, False, False]])
    writers_module._stamp(image, [(first, 1, 2), (second, 1, 4)], top=0)  # second starts inside first
    assert image[1].tolist() == [False, False, True, False, True, True, False, False]
    assert not image[[0, 2, 3]].any()
