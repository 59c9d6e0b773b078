"""Output writers: one SVG and one PNG writer for every symbol (1D bar row or 2D module matrix).

Sizing rules (``compute_layout``), with ``cols``/``rows`` counting modules *including* the quiet zone
(``margin`` modules on each side; 1D symbols get a horizontal quiet zone only):

2D symbols
    * no ``width``/``height``: ``module_size`` px per module (default 4), both formats;
    * SVG: ``width``/``height`` attributes are the requested pixel size (a missing one follows the
      symbol's aspect ratio); the ``viewBox`` is in modules, so it scales and stays square-moduled
      (default ``preserveAspectRatio``, i.e. centred);
    * PNG: whole pixels per module only: ``scale = max(1, min(width // cols, height // rows))`` (using
      whichever of width/height is given). The PNG is ``cols*scale × rows*scale``: never larger than
      requested unless even 1 px/module is larger; not padded to the exact requested size.

1D symbols
    * bar height = ``height`` (default 80 px), the image height in both formats;
    * SVG: width = ``width`` or ``cols * module_size`` (default 2 px/module); the bars scale exactly
      (fractional module widths are fine in SVG). With ``show_text`` the text band (font size 15 % of the
      height, shrunk to fit the width) is carved out of the bottom of that height;
    * PNG: ``scale = max(1, width // cols)`` or ``module_size`` px per module horizontally, ``height`` px
      high. **The PNG carries no human-readable text** (no font rasteriser in the core): bars only.

SVG shape: optional background ``<rect>`` (omitted when transparent), then one ``<path>`` whose ``d`` is a
list of filled rectangles ``M{x} {y}h{w}v{h}h-{w}z`` in module units: 2D = horizontal runs of dark
modules, consecutive identical rows merged into one taller rectangle; 1D = one rectangle per bar, bar
height in viewBox units. 1D text is a ``<text>`` (monospace, centred), XML-escaped, control characters
removed. No ids, scripts, styles or event attributes.

Any derived side above ``MAX_SIDE`` is refused (``InvalidOption``) before anything is allocated.
Output is deterministic: no timestamps or ids; PNG uses a fixed zlib level (bytes are stable for a given
zlib build).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from xml.sax.saxutils import escape

import numpy as np

from schemas.errors import InvalidOption
from stream_app.render._text import strip_controls
from stream_app.render.registry import REGISTRY
from stream_app.render.spec import (
    DEFAULT_BAR_HEIGHT,
    DEFAULT_MODULE_SIZE_1D,
    DEFAULT_MODULE_SIZE_2D,
    MAX_SIDE,
    TRANSPARENT,
    RenderSpec,
)
from stream_app.render.symbol import BoolMatrix, Symbol, with_margin

PNG_ZLIB_LEVEL = 6
TEXT_SIZE_RATIO = 0.15  # font size / image height, 1D SVG text
TEXT_CHAR_WIDTH = 0.6  # monospace advance / font size, used to shrink long text to fit


@dataclass(frozen=True, slots=True)
class Layout:
    margin: int  # quiet zone, modules
    cols: int  # modules across, quiet zone included
    rows: int  # modules down, quiet zone included (1D: 1)
    svg_width: int  # px
    svg_height: int  # px
    png_scale: int  # px per module (1D: horizontally)
    png_width: int
    png_height: int


def compute_layout(symbol: Symbol, spec: RenderSpec) -> Layout:
    margin = REGISTRY[spec.barcode_type].default_margin if spec.margin is None else spec.margin
    cols = symbol.cols + 2 * margin
    if symbol.linear:
        rows = 1
        height = spec.height or DEFAULT_BAR_HEIGHT
        if spec.width:
            svg_w, scale = spec.width, max(1, spec.width // cols)
        else:
            scale = spec.module_size or DEFAULT_MODULE_SIZE_1D
            svg_w = cols * scale
        layout = Layout(margin, cols, rows, svg_w, height, scale, cols * scale, height)
    else:
        rows = symbol.rows + 2 * margin
        if spec.width and spec.height:
            svg_w, svg_h = spec.width, spec.height
            scale = max(1, min(spec.width // cols, spec.height // rows))
        elif spec.width:
            svg_w, svg_h = spec.width, max(1, round(spec.width * rows / cols))
            scale = max(1, spec.width // cols)
        elif spec.height:
            svg_w, svg_h = max(1, round(spec.height * cols / rows)), spec.height
            scale = max(1, spec.height // rows)
        else:
            scale = spec.module_size or DEFAULT_MODULE_SIZE_2D
            svg_w, svg_h = cols * scale, rows * scale
        layout = Layout(margin, cols, rows, svg_w, svg_h, scale, cols * scale, rows * scale)
    biggest = max(layout.svg_width, layout.svg_height, layout.png_width, layout.png_height)
    if biggest > MAX_SIDE:
        if spec.module_size is not None or not (spec.width or spec.height):
            key = "module_size"  # the per-module scale decided the size
        else:
            key = "width" if spec.width else "height"  # 2D: the other side derived from this one
        value = getattr(spec, key) or (DEFAULT_MODULE_SIZE_1D if symbol.linear else DEFAULT_MODULE_SIZE_2D)
        raise InvalidOption(
            f"options.{key}: {value} makes the image {biggest} px ({layout.cols}x{layout.rows} modules), "
            f"above the {MAX_SIDE} px maximum",
            field=f"options.{key}",
        )
    return layout


# --------------------------------------------------------------------------- SVG


def _num(value: float) -> str:
    rounded = round(value, 3)
    if rounded == int(rounded):
        return str(int(rounded))
    return f"{rounded:.3f}".rstrip("0").rstrip(".")


def runs(modules: BoolMatrix) -> tuple[list[int], list[int], list[int]]:
    """Horizontal runs of dark modules, row-major: (row, first column, length) as three lists."""
    r, c = modules.shape
    padded = np.zeros((r, c + 2), dtype=np.int8)
    padded[:, 1:-1] = modules
    edges = np.diff(padded, axis=1)
    ys, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)
    return ys.tolist(), starts.tolist(), (ends - starts).tolist()


def _matrix_path(modules: BoolMatrix, margin: int) -> str:
    """One rectangle per horizontal run; runs of identical consecutive rows become one taller rectangle
    (PDF417 rows are 3 modules high, QR finder patterns repeat rows)."""
    rows = modules.shape[0]
    starts = np.flatnonzero(np.concatenate(([True], np.any(modules[1:] != modules[:-1], axis=1))))
    heights = np.diff(np.append(starts, rows))
    group, xs, ws = runs(modules[starts])
    ys = (starts[group] + margin).tolist()
    hs = heights[group].tolist()
    return "".join([f"M{x + margin} {y}h{w}v{h}h-{w}z" for x, y, w, h in zip(xs, ys, ws, hs, strict=True)])


def write_svg(symbol: Symbol, spec: RenderSpec, layout: Layout) -> bytes:
    m = layout.margin
    text = strip_controls(symbol.text) if symbol.linear and spec.show_text else ""
    if symbol.linear:
        unit = layout.svg_width / layout.cols  # px per viewBox unit
        view_h = layout.svg_height / unit
        font = 0.0
        if text:
            fit = 0.95 * layout.svg_width / (TEXT_CHAR_WIDTH * len(text))
            font = min(layout.svg_height * TEXT_SIZE_RATIO, fit) / unit
        bar_h = _num(view_h - font * 1.25)
        _, xs, ws = runs(symbol.modules)
        d = "".join([f"M{x + m} 0h{w}v{bar_h}h-{w}z" for x, w in zip(xs, ws, strict=True)])
        view = f"0 0 {layout.cols} {_num(view_h)}"
    else:
        view_h = float(layout.rows)
        d = _matrix_path(symbol.modules, m)
        view = f"0 0 {layout.cols} {layout.rows}"
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{layout.svg_width}" height="{layout.svg_height}" '
        f'viewBox="{view}" shape-rendering="crispEdges">'
    ]
    if spec.background != TRANSPARENT:
        out.append(f'<rect width="{layout.cols}" height="{_num(view_h)}" fill="{spec.background}"/>')
    if d:
        out.append(f'<path fill="{spec.foreground}" d="{d}"/>')
    if text:
        out.append(
            f'<text x="{_num(layout.cols / 2)}" y="{_num(view_h - font * 0.25)}" font-family="monospace" '
            f'font-size="{_num(font)}" text-anchor="middle" fill="{spec.foreground}">{escape(text)}</text>'
        )
    out.append("</svg>\n")
    return "".join(out).encode("utf-8")


# --------------------------------------------------------------------------- PNG


def _rgb(colour: str) -> bytes:
    return bytes.fromhex(colour[1:])


def _chunk(tag: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))


def png_bytes(rows: np.ndarray, width: int, foreground: str, background: str) -> bytes:
    """PNG, 1-bit palette (0 = background, 1 = foreground), from packed scanlines incl. filter bytes."""
    height = int(rows.shape[0])
    fg = _rgb(foreground)
    if background == TRANSPARENT:
        dark = sum(fg) < 384
        palette = (b"\xff\xff\xff" if dark else b"\x00\x00\x00") + fg
    else:
        palette = _rgb(background) + fg
    parts = [
        b"\x89PNG\r\n\x1a\n",
        _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 3, 0, 0, 0)),
        _chunk(b"PLTE", palette),
    ]
    if background == TRANSPARENT:
        parts.append(_chunk(b"tRNS", b"\x00"))
    parts.append(_chunk(b"IDAT", zlib.compress(rows.tobytes(), PNG_ZLIB_LEVEL)))
    parts.append(_chunk(b"IEND", b""))
    return b"".join(parts)


def raster(symbol: Symbol, layout: Layout) -> BoolMatrix:
    """Full-size boolean image (True = dark) at the PNG scale (for tests; write_png packs directly)."""
    full = with_margin(symbol.modules, layout.margin, linear=symbol.linear)
    s = layout.png_scale
    if symbol.linear:
        row = np.repeat(full[0], s)
        return np.broadcast_to(row, (layout.png_height, row.size))
    return np.repeat(np.repeat(full, s, axis=0), s, axis=1)


def write_png(symbol: Symbol, spec: RenderSpec, layout: Layout) -> bytes:
    full = with_margin(symbol.modules, layout.margin, linear=symbol.linear)
    s = layout.png_scale
    if symbol.linear:
        row = np.repeat(full[0], s)
        line = np.concatenate((np.zeros(1, np.uint8), np.packbits(row)))
        rows = np.broadcast_to(line, (layout.png_height, line.size))
    else:
        wide = np.repeat(full, s, axis=1)
        packed = np.packbits(wide, axis=1)
        lines = np.zeros((packed.shape[0], packed.shape[1] + 1), np.uint8)
        lines[:, 1:] = packed
        rows = np.repeat(lines, s, axis=0)
    return png_bytes(np.ascontiguousarray(rows), layout.png_width, spec.foreground, spec.background)


Writer = Callable[[Symbol, RenderSpec, Layout], bytes]

WRITERS: dict[str, tuple[str, Writer]] = {
    "svg": ("image/svg+xml", write_svg),
    "png": ("image/png", write_png),
}
