"""Small text helpers shared by the render core (no third-party imports)."""

from __future__ import annotations

import re
from typing import Any

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_MAX_SHOWN = 60


def show(value: Any) -> str:
    """``repr`` of a bad value for an error message, bounded in length and never raising."""
    try:
        text = repr(value)
    except Exception:  # e.g. int too large to print, or a hostile __repr__
        text = f"<{type(value).__name__}>"
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 1] + "…"
    return text


def strip_controls(text: str) -> str:
    """Remove C0/C1 control characters (and DEL) from text meant for display."""
    if text.isascii() and text.isprintable():  # the usual case: nothing to remove
        return text
    return _CONTROL.sub("", text)
