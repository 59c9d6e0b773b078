"""The encoder → writer hand-off: a symbol is a boolean module matrix plus what describes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

BoolMatrix = npt.NDArray[np.bool_]


class Retail(NamedTuple):
    """EAN/UPC human-readable layout, in modules from the first bar (negative: in the left quiet zone).

    ``digits``: (text, centre x, small) groups printed under the bars (small: UPC's outer digits);
    ``guards``: module ranges ``[start, end)`` whose bars extend down into the text band;
    ``addon``: first module of the 2/5-digit add-on (its bars start below its digits, printed above it);
    ``need``: quiet zone (left, right) the outside digits need; ``markers``: x of ``<`` and ``>`` (or None).
    """

    digits: tuple[tuple[str, float, bool], ...]
    guards: tuple[tuple[int, int], ...]
    addon: int | None = None
    addon_text: str = ""
    need: tuple[int, int] = (0, 0)
    markers: tuple[float | None, float | None] = (None, None)


@dataclass(frozen=True, slots=True)
class Symbol:
    """One encoded barcode, before any pixel or SVG exists.

    ``modules`` is ``(rows, cols)``; dark modules are ``True``. A linear (1D) symbol has exactly one
    row: its bar pattern, one entry per module, without quiet zone.
    """

    modules: BoolMatrix
    linear: bool
    data: str  # normalised data, as reported in metadata
    content: str  # what a reader returns (plain text mode): compared by verify
    text: str = ""  # human-readable text printed under 1D symbols
    version: int | str | None = None
    error_correction: str | None = None
    check_digit: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    quiet_zone: tuple[int, int] | None = None  # standard quiet zones (left, right) in modules, 1D
    retail: Retail | None = None  # EAN/UPC text layout
    symbology_id: str | None = None  # what a reader reports (]C1, ]d2, ]Q3, …) when verify checks it

    @property
    def cols(self) -> int:
        return int(self.modules.shape[1])

    @property
    def rows(self) -> int:
        return int(self.modules.shape[0])


_DARK = bytes(c == ord("1") for c in range(256))  # pattern byte -> 1 for "1", else 0: a bool's byte


def pattern_to_modules(pattern: str) -> BoolMatrix:
    """``'10110…'`` → a ``(1, n)`` boolean matrix (read-only: it views the translated bytes)."""
    return np.frombuffer(pattern.encode("ascii").translate(_DARK), dtype=np.bool_).reshape(1, -1)


def with_margin(modules: BoolMatrix, margin: int, *, linear: bool) -> BoolMatrix:
    """Add the quiet zone: all around (2D) or left and right only (1D). Faster than ``np.pad``."""
    if margin == 0:
        return modules
    rows, cols = modules.shape
    top = 0 if linear else margin
    out = np.zeros((rows + 2 * top, cols + 2 * margin), dtype=np.bool_)
    out[top : top + rows, margin : margin + cols] = modules
    return out
