"""Every symbology, both formats, decodes back to its data (property-based, per type)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from render import SUPPORTED_TYPES, normalize_item, render
from render.registry import REGISTRY
from tests.render.helpers import decode, decode_png, decodes_to, png_dark, png_row, svg_modules, to_gray
from tests.render.strategies import VALID

LINEAR = {t for t in SUPPORTED_TYPES if REGISTRY[t].linear}
PROPERTY = settings(
    max_examples=int(os.environ.get("RENDER_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_strategies_cover_every_type() -> None:
    assert set(VALID) == set(SUPPORTED_TYPES)


@pytest.mark.parametrize("barcode_type", SUPPORTED_TYPES)
@PROPERTY
@given(draw=st.data())
def test_png_and_svg_decode_back(barcode_type: str, draw: st.DataObject) -> None:
    data, content = draw.draw(VALID[barcode_type], label="data, expected content")
    linear = barcode_type in LINEAR

    spec = normalize_item({"barcode_type": barcode_type, "data": data, "format": "png"}, verify=True)
    png = render(spec)
    assert png.content_type == "image/png"
    assert png.metadata["content"] == content
    assert png.metadata["verified"] is True
    found = decode_png(png.image, barcode_type)
    assert decodes_to(found, content), (content, [b.text for b in found])

    svg = render(normalize_item({"barcode_type": barcode_type, "data": data, "format": "svg"}))
    assert svg.content_type == "image/svg+xml"
    modules = svg_modules(svg.image, linear=linear)
    # the SVG path encodes exactly the PNG's modules
    scale = spec.module_size or 1
    sampled = png_row(png.image)[:, ::scale] if linear else png_dark(png.image)[::scale, ::scale]
    assert np.array_equal(modules, sampled)
    # and, rasterised on its own, it scans
    assert decodes_to(decode(to_gray(modules, linear=linear), barcode_type), content)

    same = {k: v for k, v in png.metadata.items() if k not in {"width", "height", "verified"}}
    assert same == {k: v for k, v in svg.metadata.items() if k not in {"width", "height"}}
