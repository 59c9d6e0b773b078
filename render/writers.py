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
      high, with the same text layout as the SVG, drawn with Pillow's built-in font (glyphs rendered once
      per size, then copied);
    * quiet zones: ``margin`` on both sides, else the symbol's own (EAN/UPC, ITF-14: GS1 left/right),
      widened to 7 modules where a digit or ``<``/``>`` marker is printed; an ITF-14 bearer frame adds
      5 modules outside them; ``bar_height`` (from ``bar_height_mm``) adds the text band to the height.

EAN/UPC (``symbol.retail``): digits 10 modules high (at most 22 % of the height) in a band under the bars,
guard bars extended half into it, UPC's outer digits at 80 %, add-on bars starting below their digits.
ITF-14 bearers (``bearer``): bars 5 modules thick above and below the bars; ``frame`` adds the sides.

SVG shape: optional background ``<rect>`` (omitted when transparent), then one ``<path>`` in module units.
2D and plain 1D: a stroked path (``fill="none"``), one horizontal line per run of dark modules through the
middle of its band, ``M{x} {y}h{w}`` and then ``m{gap} 0h{w}`` along the band; ``stroke-width`` is the
band's height (2D: the largest height shared by every run of identical rows, e.g. 3 for PDF417, 1 for
QR; 1D: the bars' height in viewBox units). Half the bytes of one filled rectangle per run (a 100-item
mixed result is a third smaller), and drawn pixel for pixel as the PNG. EAN/UPC, ITF-14 bearers and
asymmetric quiet zones: filled rectangles ``M{x} {y}h{w}v{h}h-{w}z``, one per bar (their bars differ in
height). 1D text is a ``<text>`` (monospace, centred), XML-escaped, control characters removed. No ids,
scripts, styles or event attributes.

Any derived side above ``MAX_SIDE`` is refused (``InvalidOption``) before anything is allocated.
Output is deterministic: no timestamps or ids; PNG uses a fixed zlib level (6; 1 for 1D images drawn
with text rows or bearers) — bytes are stable for a given zlib and Pillow build. With ``dpi`` a PNG
carries ``pHYs`` and, with ``x_dim_mm``, SVG ``width``/``height`` are in millimetres.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple
from xml.sax.saxutils import escape

import numpy as np
from PIL import ImageFont

from render._text import strip_controls
from render.registry import REGISTRY
from render.spec import (
    DEFAULT_BAR_HEIGHT,
    DEFAULT_MODULE_SIZE_1D,
    DEFAULT_MODULE_SIZE_2D,
    MAX_SIDE,
    TRANSPARENT,
    RenderSpec,
)
from render.symbol import BoolMatrix, Symbol, with_margin
from schemas.errors import InvalidOption

PNG_ZLIB_LEVEL = 6
TEXT_PNG_ZLIB_LEVEL = 1  # 1D PNGs with text rows: level 6 costs twice the time for ~10 % fewer bytes
TEXT_SIZE_RATIO = 0.15  # font size / image height, 1D SVG text
TEXT_CHAR_WIDTH = 0.6  # monospace advance / font size, used to shrink long text to fit
RETAIL_FONT = 10.0  # EAN/UPC digit size, modules (6 digits of 0.6 em fill a 42-module half)
RETAIL_FONT_RATIO = 0.22  # at most this share of the image height
SMALL_RATIO = 0.8  # UPC's outer digits
MARKER_NEED = 7  # modules of quiet zone a < or > marker needs
BEARER_MODULES = 5  # ITF-14 bearer bar thickness, X


class Layout(NamedTuple):
    """Sizes of one image. A NamedTuple, like ``Geometry``: built for every image, and a tuple is several times
    cheaper to build than a frozen dataclass."""

    margin: int  # quiet zone, modules (1D: the left one)
    cols: int  # modules across, quiet zone included
    rows: int  # modules down, quiet zone included (1D: 1)
    svg_width: int  # px
    svg_height: int  # px
    png_scale: int  # px per module (1D: horizontally)
    png_width: int
    png_height: int
    margin_right: int = -1  # 1D: right quiet zone, modules (-1: same as margin)
    bearer: int = 0  # ITF-14 bearer thickness, modules (0: none)
    frame: bool = False  # ITF-14: the bearer surrounds the symbol (its sides sit outside the quiet zones)

    @property
    def right(self) -> int:
        return self.margin if self.margin_right < 0 else self.margin_right


def _quiet_zones(symbol: Symbol, spec: RenderSpec) -> tuple[int, int, int, bool]:
    """1D (left, right) quiet zones in modules, widened for text printed in them; bearer size; frame."""
    if spec.margin is not None:
        left = right = spec.margin
    elif symbol.quiet_zone is not None:
        left, right = symbol.quiet_zone
    else:
        left = right = REGISTRY[spec.barcode_type].default_margin
    retail = symbol.retail
    if retail is not None and spec.show_text:
        left, right = max(left, retail.need[0]), max(right, retail.need[1])
        if spec.quiet_zone_markers:
            left = max(left, MARKER_NEED) if retail.markers[0] is not None else left
            right = max(right, MARKER_NEED) if retail.markers[1] is not None else right
    bearer, frame = 0, False
    if spec.bearer in ("bars", "frame"):
        bearer, frame = BEARER_MODULES, spec.bearer == "frame"
    if frame:
        left, right = left + bearer, right + bearer
    return left, right, bearer, frame


def compute_layout(symbol: Symbol, spec: RenderSpec) -> Layout:
    margin = REGISTRY[spec.barcode_type].default_margin if spec.margin is None else spec.margin
    cols = symbol.cols + 2 * margin
    if symbol.linear:
        left, right, bearer, frame = _quiet_zones(symbol, spec)
        cols = symbol.cols + left + right
        if spec.width:
            svg_w, scale = spec.width, max(1, spec.width // cols)
        else:
            scale = spec.module_size or DEFAULT_MODULE_SIZE_1D
            svg_w = cols * scale
        if spec.bar_height is not None:  # bars of that height, the text band (and bearers) added
            height = (
                spec.bar_height
                + round(_band(symbol, spec, svg_w / cols, spec.bar_height))
                + 2 * round(bearer * svg_w / cols)
            )
        else:
            height = spec.height or DEFAULT_BAR_HEIGHT
        layout = Layout(left, cols, 1, svg_w, height, scale, cols * scale, height, right, bearer, frame)
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


@lru_cache(maxsize=4096)
def _num(value: float) -> str:
    """A coordinate in at most 3 decimals, trailing zeros dropped (memoised: a type's geometry repeats)."""
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


def _matrix_path(modules: BoolMatrix, margin: int) -> tuple[int, str]:
    """A 2D symbol's path: the height of its bands (the largest height shared by every band of identical
    rows: 3 for PDF417's 3-module rows, 1 for QR) and ``d``, one line per run of dark modules through the
    middle of its band (``M{x} {y}h{w}``, a band's later runs ``m{gap} 0h{w}``), stroked as high as a band."""
    rows = modules.shape[0]
    starts = np.flatnonzero(np.concatenate(([True], np.any(modules[1:] != modules[:-1], axis=1))))
    band = int(np.gcd.reduce(np.diff(np.append(starts, rows))))
    ys, xs, ws = runs(modules[::band])
    return band, _lines(ys, xs, ws, margin, lambda y: _num(y * band + margin + band / 2))


def _band_path(row: np.ndarray, margin: int, middle: str) -> str:
    """A row of bars as one band (plain 1D symbols): one line per bar at height ``middle``."""
    ys, xs, ws = runs(row[np.newaxis, :])
    return _lines(ys, xs, ws, margin, lambda _: middle)


def _lines(ys: list[int], xs: list[int], ws: list[int], margin: int, middle: Callable[[int], str]) -> str:
    """Runs ``(row, first column, length)`` in row order as ``d``: ``M`` at a row's first run (at height
    ``middle(row)``), then relative moves along the row."""
    parts: list[str] = []
    row, end = -1, 0
    for y, x, w in zip(ys, xs, ws, strict=True):
        if y != row:
            parts.append(f"M{x + margin} {middle(y)}h{w}")
            row = y
        else:
            parts.append(f"m{x - end} 0h{w}")
        end = x + w
    return "".join(parts)


class Geometry(NamedTuple):
    """Vertical layout of a 1D symbol in px (floats) for a given px-per-module ``unit``; x in modules."""

    height: float
    bars: tuple[float, float]  # top, bottom of ordinary bars
    guard_bottom: float  # EAN/UPC guard bars (and add-on bars) reach down to here
    addon_top: float  # add-on bars start here (below the add-on digits)
    bearer: float  # thickness of the ITF-14 bearer bars (0: none)
    font: float  # text size, px
    small: float  # text size of UPC's outer digits, px
    baseline: float  # text baseline below the bars
    texts: tuple[tuple[str, float, float, float], ...]  # (text, centre x in modules, baseline y, size)


def _band(symbol: Symbol, spec: RenderSpec, unit: float, bars: float) -> float:
    """Height of the text band under bars ``bars`` px tall (for ``bar_height_mm``)."""
    if not spec.show_text or not strip_controls(symbol.text):
        return 0.0
    if symbol.retail is not None:
        return min(RETAIL_FONT * unit, RETAIL_FONT_RATIO * bars / (1 - RETAIL_FONT_RATIO))
    fit = 0.95 * symbol.cols * unit / (TEXT_CHAR_WIDTH * len(symbol.text))
    return 1.25 * min(TEXT_SIZE_RATIO * bars / (1 - 1.25 * TEXT_SIZE_RATIO), fit)


def geometry(symbol: Symbol, spec: RenderSpec, layout: Layout, width: float, height: float) -> Geometry:
    unit = width / layout.cols
    left = layout.margin
    text = strip_controls(symbol.text) if spec.show_text else ""
    bearer = layout.bearer * unit
    retail = symbol.retail
    if retail is not None and text:
        font = min(RETAIL_FONT * unit, RETAIL_FONT_RATIO * height)
        small = font * SMALL_RATIO
        bottom = height - font
        guard = bottom + font / 2
        base = height - font * 0.12
        items = [(t, left + x, base, small if is_small else font) for t, x, is_small in retail.digits]
        top = 0.0
        if retail.addon is not None:
            top = font
            cx = left + retail.addon + (symbol.cols - retail.addon) / 2
            items.append((retail.addon_text, cx, font * 0.88, font))
        if spec.quiet_zone_markers:
            items += [(m, left + x, base, font) for m, x in zip("<>", retail.markers, strict=True) if x is not None]
        return Geometry(height, (0.0, bottom), guard, top, 0.0, font, small, base, tuple(items))
    if retail is not None:  # no text: add-on bars as tall as the others
        return Geometry(height, (0.0, height), height, 0.0, 0.0, 0.0, 0.0, height, ())
    font = 0.0
    if text:
        fit = 0.95 * width / (TEXT_CHAR_WIDTH * len(text))
        font = min((height - 2 * bearer) * TEXT_SIZE_RATIO if bearer else height * TEXT_SIZE_RATIO, fit)
    bottom = height - font * 1.25
    texts: tuple[tuple[str, float, float, float], ...] = ((text, layout.cols / 2, height - font * 0.25, font),)
    texts = texts if text else ()
    if bearer:
        bars = (bearer, bottom - bearer)
        return Geometry(height, bars, bars[1], 0.0, bearer, font, font, height - font * 0.25, texts)
    return Geometry(height, (0.0, bottom), bottom, 0.0, 0.0, font, font, height - font * 0.25, texts)


def _svg_size(value: int, spec: RenderSpec) -> str:
    if spec.dpi is None or spec.x_dim_mm is None:
        return str(value)
    return f"{_num(value * 25.4 / spec.dpi)}mm"


def _svg_head(spec: RenderSpec, layout: Layout, view: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_svg_size(layout.svg_width, spec)}" '
        f'height="{_svg_size(layout.svg_height, spec)}" viewBox="{view}" shape-rendering="crispEdges">'
    )


def _text_svg(text: str, x: float, y: float, size: float, colour: str) -> str:
    return _text_open(x, y, size, colour) + escape(text) + "</text>"


@lru_cache(maxsize=1024)
def _text_open(x: float, y: float, size: float, colour: str) -> str:
    return (
        f'<text x="{_num(x)}" y="{_num(y)}" font-family="monospace" font-size="{_num(size)}" '
        f'text-anchor="middle" fill="{colour}">'
    )


@lru_cache(maxsize=256)
def _bar_kinds(cols: int, guards: tuple[tuple[int, int], ...], addon: int | None) -> tuple[int, ...]:
    """Per module of an EAN/UPC symbol: 0 ordinary bar, 1 guard bar (reaches into the text), 2 add-on bar."""
    kinds = [0] * cols
    for start, end in guards:
        kinds[start:end] = [1] * (end - start)
    if addon is not None:
        kinds[addon:] = [2] * (cols - addon)
    return tuple(kinds)


def _print_svg(symbol: Symbol, spec: RenderSpec, layout: Layout) -> bytes:
    """1D with EAN/UPC text layout, add-on or bearer bars (module units, square)."""
    unit = layout.svg_width / layout.cols
    g = geometry(symbol, spec, layout, float(layout.cols), layout.svg_height / unit)
    m = layout.margin
    top, bottom = g.bars
    retail = symbol.retail
    plain = (_num(top), _num(bottom - top))  # (y, height) strings of the three kinds of bar
    _, xs, ws = runs(symbol.modules)
    if retail is None:
        y, h = plain
        parts = [f"M{x + m} {y}h{w}v{h}h-{w}z" for x, w in zip(xs, ws, strict=True)]
    else:
        guard = (_num(top), _num(g.guard_bottom - top))
        added = (_num(g.addon_top), _num(g.guard_bottom - g.addon_top))
        kinds = _bar_kinds(symbol.cols, retail.guards, retail.addon)
        yh = (plain, guard, added)
        parts = [f"M{x + m} {yh[kinds[x]][0]}h{w}v{yh[kinds[x]][1]}h-{w}z" for x, w in zip(xs, ws, strict=True)]
    if g.bearer:
        b, total = _num(g.bearer), layout.cols
        parts.append(f"M0 0h{total}v{b}h-{total}z")
        parts.append(f"M0 {_num(bottom)}h{total}v{b}h-{total}z")
        if layout.frame:
            inner = _num(bottom - g.bearer)
            parts.append(f"M0 {b}h{layout.bearer}v{inner}h-{layout.bearer}z")
            parts.append(f"M{total - layout.bearer} {b}h{layout.bearer}v{inner}h-{layout.bearer}z")
    view_h = g.height
    out = [_svg_head(spec, layout, f"0 0 {layout.cols} {_num(view_h)}")]
    if spec.background != TRANSPARENT:
        out.append(f'<rect width="{layout.cols}" height="{_num(view_h)}" fill="{spec.background}"/>')
    out.append(f'<path fill="{spec.foreground}" d="{"".join(parts)}"/>')
    out += [_text_svg(t, x, y, size, spec.foreground) for t, x, y, size in g.texts if t]
    out.append("</svg>\n")
    return "".join(out).encode("utf-8")


def write_svg(symbol: Symbol, spec: RenderSpec, layout: Layout) -> bytes:
    if symbol.linear and (symbol.retail is not None or layout.bearer or layout.right != layout.margin):
        return _print_svg(symbol, spec, layout)
    m = layout.margin
    text = strip_controls(symbol.text) if symbol.linear and spec.show_text else ""
    if symbol.linear:
        unit = layout.svg_width / layout.cols  # px per viewBox unit
        view_h = layout.svg_height / unit
        font = 0.0
        if text:
            fit = 0.95 * layout.svg_width / (TEXT_CHAR_WIDTH * len(text))
            font = min(layout.svg_height * TEXT_SIZE_RATIO, fit) / unit
        bar_h = view_h - font * 1.25
        stroke, d = _num(bar_h), _band_path(symbol.modules[0], m, _num(bar_h / 2))
        view = f"0 0 {layout.cols} {_num(view_h)}"
    else:
        view_h = float(layout.rows)
        band, d = _matrix_path(symbol.modules, m)
        stroke = str(band)
        view = f"0 0 {layout.cols} {layout.rows}"
    shape = f'fill="none" stroke="{spec.foreground}"' + (f' stroke-width="{stroke}"' if stroke != "1" else "")
    out = [_svg_head(spec, layout, view)]
    if spec.background != TRANSPARENT:
        out.append(f'<rect width="{layout.cols}" height="{_num(view_h)}" fill="{spec.background}"/>')
    if d:
        out.append(f'<path {shape} d="{d}"/>')
    if text:
        out.append(_text_svg(text, layout.cols / 2, view_h - font * 0.25, font, spec.foreground))
    out.append("</svg>\n")
    return "".join(out).encode("utf-8")


# --------------------------------------------------------------------------- PNG


def _rgb(colour: str) -> bytes:
    return bytes.fromhex(colour[1:])


def _chunk(tag: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))


def png_bytes(
    rows: np.ndarray, width: int, foreground: str, background: str, dpi: int | None = None, level: int = PNG_ZLIB_LEVEL
) -> bytes:
    """PNG, 1-bit palette (0 = background, 1 = foreground), from packed scanlines incl. filter bytes;
    with ``dpi``, a pHYs chunk (pixels per metre) so that print software knows the physical size."""
    return png_from_scanlines(rows.tobytes(), width, int(rows.shape[0]), foreground, background, dpi, level)


def png_from_scanlines(
    raw: bytes, width: int, height: int, foreground: str, background: str, dpi: int | None, level: int
) -> bytes:
    """``png_bytes`` of scanlines already serialised (``height`` rows of filter byte + packed pixels)."""
    head = _png_head(width, height, foreground, background, dpi)
    return head + _chunk(b"IDAT", zlib.compress(raw, level)) + _IEND


@lru_cache(maxsize=256)
def _png_head(width: int, height: int, foreground: str, background: str, dpi: int | None) -> bytes:
    """Signature, IHDR, PLTE and the optional tRNS / pHYs chunks: the same for every image of that size."""
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
    if dpi is not None:
        ppm = round(dpi / 0.0254)
        parts.append(_chunk(b"pHYs", struct.pack(">IIB", ppm, ppm, 1)))
    return b"".join(parts)


_IEND = _chunk(b"IEND", b"")


@lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    font = ImageFont.load_default(size)  # Pillow's built-in font (no file, no network)
    if not isinstance(font, ImageFont.FreeTypeFont):  # Pillow built without FreeType
        raise RuntimeError("Pillow has no FreeType support: 1D PNG text cannot be drawn")
    return font


@lru_cache(maxsize=4096)
def _cell(char: str, size: int) -> BoolMatrix:
    """One character in a cell one line high (ascent + descent) and one advance wide, rendered once."""
    font = _font(size)
    ascent, descent = font.getmetrics()
    advance = max(1, round(font.getlength(char)))
    cell = np.zeros((ascent + descent, advance), dtype=np.bool_)
    mask, (ox, oy) = font.getmask2(char, mode="L")
    w, h = mask.size
    if w and h:
        pixels = np.asarray(mask, dtype=np.uint8).reshape(h, w) >= 128
        block = cell[oy : oy + h, ox : ox + w]
        block |= pixels[: block.shape[0], : block.shape[1]]
    return cell


@lru_cache(maxsize=1024)
def _strip(text: str, size: int) -> tuple[BoolMatrix, int, int, int]:
    """``text`` as one line of cells, cut to its inked part: (ink, rows from its top to the baseline, columns
    left of it, line width). Read-only: shared by every image that prints this text at this size."""
    line = np.concatenate([_cell(ch, size) for ch in text], axis=1) if len(text) > 1 else _cell(text, size)
    ys, xs = np.nonzero(line.any(axis=1))[0], np.nonzero(line.any(axis=0))[0]
    if ys.size == 0:
        ink = np.zeros((0, 0), dtype=np.bool_)
        ink.flags.writeable = False
        return ink, 0, 0, int(line.shape[1])
    dy, dx = int(ys[0]), int(xs[0])
    ink = np.ascontiguousarray(line[dy : int(ys[-1]) + 1, dx : int(xs[-1]) + 1])
    ink.flags.writeable = False
    return ink, _font(size).getmetrics()[0] - dy, dx, int(line.shape[1])


def draw_text(image: BoolMatrix, text: str, centre_x: float, baseline: float, size: int, top: int = 0) -> None:
    """Draw ``text`` (dark pixels) centred on ``centre_x`` with its baseline at ``baseline``; ``image`` is the
    part of the picture from row ``top`` down."""
    if size < 1 or not text:
        return
    line, rise, dx, full = _strip(text, size)
    if not line.shape[0]:
        return
    x0, y0 = round(centre_x - full / 2) + dx, round(baseline) - rise - top
    _blit(image, line, y0, x0)


def _blit(image: BoolMatrix, ink: BoolMatrix, y0: int, x0: int, blank: bool = False) -> None:
    """OR ``ink`` into ``image`` with its top-left corner at (``y0``, ``x0``), clipped to the image; ``blank``:
    that part of the image is known to be blank, so a copy does (an in-place OR costs about three)."""
    h, w = ink.shape
    rows, cols = image.shape
    if not (x0 >= 0 and y0 >= 0 and x0 + w <= cols and y0 + h <= rows):
        ys, xs, ye, xe = max(0, y0), max(0, x0), min(rows, y0 + h), min(cols, x0 + w)
        if ye <= ys or xe <= xs:
            return
        ink = ink[ys - y0 : ye - y0, xs - x0 : xe - x0]
        y0, x0, h, w = ys, xs, ye - ys, xe - xs
    if blank:
        image[y0 : y0 + h, x0 : x0 + w] = ink
    else:
        image[y0 : y0 + h, x0 : x0 + w] |= ink


def linear_raster(symbol: Symbol, spec: RenderSpec, layout: Layout) -> BoolMatrix:
    """Full 1D image (True = dark) at the PNG scale: bars, guards, add-on, bearers and text."""
    s = layout.png_scale
    full = np.zeros(layout.cols, dtype=np.bool_)
    full[layout.margin : layout.margin + symbol.cols] = symbol.modules[0]
    row = np.repeat(full, s)
    width, height = row.size, layout.png_height
    g = geometry(symbol, spec, layout, float(width), float(height))
    image = np.zeros((height, width), dtype=np.bool_)
    top, bottom = round(g.bars[0]), round(g.bars[1])
    image[top:bottom] = row
    retail = symbol.retail
    if retail is not None and g.font:
        guard = round(g.guard_bottom)
        for start, end in retail.guards:
            x0, x1 = (layout.margin + start) * s, (layout.margin + end) * s
            image[bottom:guard, x0:x1] = row[x0:x1]
        if retail.addon is not None:
            x0 = (layout.margin + retail.addon) * s
            image[: round(g.addon_top), x0:] = False
            image[bottom:guard, x0:] = row[x0:]
    if g.bearer:
        b = max(1, round(g.bearer))
        image[:b] = True
        image[bottom : bottom + b] = True
        if layout.frame:
            side = layout.bearer * s
            image[: bottom + b, :side] = True
            image[: bottom + b, width - side :] = True
    for text, x, y, size in g.texts:
        draw_text(image, text, x * s, y, int(size))
    return image


_FILTER = 8  # pixels of a padded row that pack into the PNG filter byte


def _linear_scanlines(symbol: Symbol, spec: RenderSpec, layout: Layout) -> bytes:
    """PNG scanlines (filter byte + packed pixels) of ``linear_raster``'s image, packing only the rows below
    the bars (text band, guard extensions): the rows above are the packed bar row, repeated. Symbols with
    bearers or an add-on (their rows differ above the band) are packed whole."""
    s = layout.png_scale
    width, height = layout.png_width, layout.png_height
    g = geometry(symbol, spec, layout, float(width), float(height))
    retail = symbol.retail
    top, bottom, guard = round(g.bars[0]), round(g.bars[1]), round(g.guard_bottom)
    if g.bearer or (retail is not None and retail.addon is not None) or top != 0 or not 0 <= bottom <= height:
        return _scanlines(np.packbits(linear_raster(symbol, spec, layout), axis=1))
    glyphs, band = _placed_glyphs(g.texts, s, bottom)
    # Row 0 is the bar row, rows 1.. the image from row ``band`` down. Every row starts with _FILTER blank
    # pixels: packed, they are the scanline's filter byte (0).
    image = np.zeros((1 + height - band, _FILTER + width), dtype=np.bool_)
    line = image[0]
    x = _FILTER + layout.margin * s
    line[x : x + symbol.cols * s].reshape(-1, s)[:] = symbol.modules.T
    _stamp(image[1:, _FILTER:], glyphs, band)
    if bottom > band:
        image[1 : 1 + bottom - band] |= line
    if retail is not None and g.font and guard > bottom:
        image[1 + bottom - band : 1 + guard - band] |= line & _guard_mask(width, layout.margin, s, retail.guards)
    packed = np.packbits(image, axis=1).tobytes()
    stride = len(packed) // len(image)
    return packed[:stride] * band + packed[stride:]


def _stamp(image: BoolMatrix, glyphs: list[tuple[BoolMatrix, int, int]], top: int) -> None:
    """Draw glyph strips (ink, top row, left column) into ``image``, the blank picture from row ``top`` down:
    copied where it starts right of every strip drawn before, else ORed."""
    right = float("-inf")  # right edge of the strips drawn so far (EAN/UPC digits come left to right)
    for ink, y0, x0 in glyphs:
        _blit(image, ink, y0 - top, x0, blank=x0 >= right)
        right = max(right, x0 + ink.shape[1])


def _placed_glyphs(
    texts: tuple[tuple[str, float, float, float], ...], scale: int, bottom: int
) -> tuple[list[tuple[BoolMatrix, int, int]], int]:
    """(ink, top row, left column) of each text as ``draw_text`` places it, and the first row that is not a
    plain bar row (``bottom``, or higher where a glyph reaches above it)."""
    band = bottom
    glyphs = []
    for text, x, y, size in texts:
        px = int(size)
        if px >= 1 and text:
            ink, rise, dx, line_w = _strip(text, px)
            if ink.size:
                top_row = round(y) - rise
                glyphs.append((ink, top_row, round(x * scale - line_w / 2) + dx))
                band = min(band, top_row)
            else:
                band = min(band, round(y))
    return glyphs, max(0, band)


def _scanlines(packed: np.ndarray) -> bytes:
    lines = np.zeros((packed.shape[0], packed.shape[1] + 1), np.uint8)
    lines[:, 1:] = packed
    return lines.tobytes()


@lru_cache(maxsize=256)
def _guard_mask(width: int, margin: int, scale: int, guards: tuple[tuple[int, int], ...]) -> BoolMatrix:
    """Pixel columns of the EAN/UPC guard bars (the ones extended into the text band), on a row padded with
    the ``_FILTER`` pixels."""
    mask = np.zeros(_FILTER + width, dtype=np.bool_)
    for start, end in guards:
        mask[_FILTER + (margin + start) * scale : _FILTER + (margin + end) * scale] = True
    mask.flags.writeable = False
    return mask


def raster(symbol: Symbol, layout: Layout, spec: RenderSpec | None = None) -> BoolMatrix:
    """Full-size boolean image (True = dark) at the PNG scale (for tests; write_png packs directly)."""
    if symbol.linear and spec is not None:
        return linear_raster(symbol, spec, layout)
    full = with_margin(symbol.modules, layout.margin, linear=symbol.linear)
    s = layout.png_scale
    if symbol.linear:
        row = np.repeat(full[0], s)
        return np.broadcast_to(row, (layout.png_height, row.size))
    return np.repeat(np.repeat(full, s, axis=0), s, axis=1)


def write_png(symbol: Symbol, spec: RenderSpec, layout: Layout) -> bytes:
    dpi = spec.dpi
    if symbol.linear and (
        (spec.show_text and symbol.text) or symbol.retail is not None or layout.bearer or layout.right != layout.margin
    ):
        raw = _linear_scanlines(symbol, spec, layout)
        return png_from_scanlines(
            raw, layout.png_width, layout.png_height, spec.foreground, spec.background, dpi, TEXT_PNG_ZLIB_LEVEL
        )
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
    return png_bytes(np.ascontiguousarray(rows), layout.png_width, spec.foreground, spec.background, dpi)


Writer = Callable[[Symbol, RenderSpec, Layout], bytes]

WRITERS: dict[str, tuple[str, Writer]] = {
    "svg": ("image/svg+xml", write_svg),
    "png": ("image/png", write_png),
}
