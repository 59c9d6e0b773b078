"""render / describe / render_item: the pure entry points (no I/O, no service imports)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from render._text import show
from render.registry import REGISTRY
from render.spec import RenderSpec, normalize_item
from render.symbol import Symbol
from render.verify import verify_image
from render.writers import WRITERS, Layout, compute_layout
from schemas.errors import InvalidOption, ItemError, RenderFailed, UnsupportedType


@dataclass(frozen=True, slots=True)
class Rendered:
    image: bytes  # SVG (UTF-8) or PNG bytes
    content_type: str  # image/svg+xml | image/png
    metadata: dict[str, Any]  # JSON-safe


class Outcome(NamedTuple):
    """One item's result, never an exception. A flat tuple: outcomes cross the process pool in bulk, and
    a tuple pickles several times cheaper than an object."""

    success: bool
    image: bytes | None  # None for validate_only and for failures
    content_type: str | None
    metadata: dict[str, Any] | None  # the image's metadata, or validate_only's description
    error: ItemError | None
    elapsed_ms: float


def _encode(spec: RenderSpec, *, for_describe: bool = False, normalized: bool = False) -> Symbol:
    """``normalized``: ``spec`` comes straight from ``normalize_item`` (its data is already canonical)."""
    symbology = REGISTRY.get(spec.barcode_type)
    if symbology is None:
        raise UnsupportedType(f"barcode_type: {show(spec.barcode_type)} is not supported", field="barcode_type")
    encode = symbology.describe if for_describe and symbology.describe else symbology.encode
    enc = {key: getattr(spec, name) for name, key in symbology.enc_options} if symbology.enc_options else {}
    try:
        if normalized:
            data = spec.data
        else:  # idempotent; guards hand-built specs
            data = symbology.normalize(spec.data, **{key: getattr(spec, name) for name, key in symbology.norm_options})
        return encode(data, spec.error_correction, **enc)
    except ItemError:
        raise
    except Exception as exc:
        raise RenderFailed(
            f"data: {show(spec.data)}: the {symbology.name} encoder failed: {type(exc).__name__}: {exc}",
            field="data",
        ) from exc


def _metadata(symbol: Symbol, spec: RenderSpec, layout: Layout) -> dict[str, Any]:
    png = spec.format == "png"
    meta: dict[str, Any] = {
        "type": spec.barcode_type,
        "data": symbol.data,
        "content": symbol.content,
        "check_digit": symbol.check_digit,
        "version": symbol.version,
        "error_correction": symbol.error_correction,
        "modules": symbol.cols,
        "rows": symbol.rows,
        "margin": layout.margin,
        "width": layout.png_width if png else layout.svg_width,
        "height": layout.png_height if png else layout.svg_height,
    }
    if symbol.linear and (layout.right != layout.margin or symbol.quiet_zone is not None):
        meta["quiet_zone"] = [layout.margin - layout.frame * layout.bearer, layout.right - layout.frame * layout.bearer]
    if spec.bearer is not None:
        meta["bearer"] = spec.bearer
    if spec.dpi is not None:
        meta["dpi"] = spec.dpi
        scale = layout.png_scale if png else layout.svg_width / layout.cols
        meta["x_dim_mm"] = round(scale * 25.4 / spec.dpi, 4)  # actual, after snapping to whole pixels
        if spec.x_dim_mm is not None:
            meta["x_dim_mm_requested"] = spec.x_dim_mm
        meta["width_mm"] = round(meta["width"] * 25.4 / spec.dpi, 2)
        meta["height_mm"] = round(meta["height"] * 25.4 / spec.dpi, 2)
    meta.update(symbol.extra)
    return meta


def render(spec: RenderSpec) -> Rendered:
    """Encode and write one normalised spec. Raises ItemError subclasses only."""
    return _render(spec, normalized=False)


def _render(spec: RenderSpec, *, normalized: bool) -> Rendered:
    writer = WRITERS.get(spec.format)
    if writer is None:
        raise InvalidOption(f"format: {show(spec.format)} is not supported", field="format")
    content_type, write = writer
    symbol = _encode(spec, normalized=normalized)
    layout = compute_layout(symbol, spec)
    try:
        image = write(symbol, spec, layout)
    except ItemError:
        raise
    except Exception as exc:
        raise RenderFailed(
            f"format: {spec.format} writer failed for {spec.barcode_type}: {type(exc).__name__}: {exc}",
            field="format",
        ) from exc
    metadata = _metadata(symbol, spec, layout)
    if spec.verify:
        verify_image(symbol, spec, image, content_type)
        metadata["verified"] = True
    return Rendered(image=image, content_type=content_type, metadata=metadata)


def describe(spec: RenderSpec) -> dict[str, Any]:
    """What ``render`` would produce, without an image: normalised data, check digit, version, sizes and,
    for qr/micro_qr, ``capacity`` (see ``encoders.qr.capacity``)."""
    return _describe(spec, normalized=False)


def _describe(spec: RenderSpec, *, normalized: bool) -> dict[str, Any]:
    symbol = _encode(spec, for_describe=True, normalized=normalized)
    layout = compute_layout(symbol, spec)
    return _metadata(symbol, spec, layout)


def render_item(item: Mapping[str, Any], *, verify: bool = False, validate_only: bool = False) -> Outcome:
    """normalize + render (or describe); never raises: failures come back as ``Outcome.error``."""
    start = time.perf_counter()
    try:
        spec = normalize_item(item, verify=verify)
        if validate_only:
            meta = _describe(spec, normalized=True)
            return Outcome(True, None, None, meta, None, (time.perf_counter() - start) * 1000)
        rendered = _render(spec, normalized=True)
        elapsed = (time.perf_counter() - start) * 1000
        return Outcome(True, rendered.image, rendered.content_type, rendered.metadata, None, elapsed)
    except ItemError as exc:
        return Outcome(False, None, None, None, exc, (time.perf_counter() - start) * 1000)
    except Exception as exc:  # a bug, never a crash of the worker
        error = RenderFailed(f"render failed: {type(exc).__name__}: {show(str(exc))}")
        return Outcome(False, None, None, None, error, (time.perf_counter() - start) * 1000)
