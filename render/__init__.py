"""barcodeflow render core: pure functions from an item dict to SVG/PNG bytes.

No I/O and no service dependencies (faust, redis, kafka). Flow::

    normalize_item(item) -> RenderSpec        # validate + canonicalise once (spec.py)
    render(spec) -> Rendered                  # registry encoder -> Symbol -> writer (+ verify)
    describe(spec) -> dict                    # validate_only: the facts, no image
    render_item(item) -> Outcome              # the above, never raising
"""

from render.core import Outcome, Rendered, describe, render, render_item
from render.registry import SUPPORTED_TYPES
from render.spec import MAX_SIDE, RENDERER_VERSION, RenderSpec, normalize_item

__all__ = [
    "MAX_SIDE",
    "RENDERER_VERSION",
    "SUPPORTED_TYPES",
    "Outcome",
    "RenderSpec",
    "Rendered",
    "describe",
    "normalize_item",
    "render",
    "render_item",
]
