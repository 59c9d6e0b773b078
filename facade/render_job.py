"""What the render executor runs. Kept free of web imports: spawned worker processes import only this."""

from __future__ import annotations

import signal
import time
from collections.abc import Mapping
from typing import Any

from schemas.errors import ItemError


def init_worker() -> None:
    # Ctrl-C goes to the whole process group; the parent shuts the pool down, workers must not trace.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def render_job(item: Mapping[str, Any]) -> tuple[str, Any, Any, float]:
    """Normalize and render one item.

    Returns ``("ok", image_bytes, content_type, seconds)`` or ``("error", error_dict, None, seconds)``:
    item errors travel back as plain data (exception pickling would lose ``field``).
    """
    from stream_app.render import normalize_item, render

    start = time.perf_counter()
    try:
        rendered = render(normalize_item(item))
    except ItemError as exc:
        return "error", exc.to_dict(), None, time.perf_counter() - start
    return "ok", bytes(rendered.image), str(rendered.content_type), time.perf_counter() - start
