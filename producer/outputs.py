"""File names for images and results written by ``render --out`` and ``submit --out``."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Any

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_RESERVED = {
    "CON",
    "PRN",
    "AUX",
    "NUL",
    *(f"COM{i}" for i in range(1, 10)),
    *(f"LPT{i}" for i in range(1, 10)),
}
MAX_NAME = 100


def safe_name(raw: str) -> str:
    """A file name (no directory, no extension) for an id or batch id chosen by the caller.

    Keeps ``[A-Za-z0-9._-]``; anything else becomes ``_``; leading dots go (no ``..``, no hidden
    files); Windows device names get a ``_`` prefix; long names are cut. A name that was changed
    gets ``-`` + 8 hex digits of the SHA-256 of the original, so distinct ids stay distinct.
    """
    name = _UNSAFE.sub("_", raw).lstrip(".").rstrip(". ")
    if len(name) > MAX_NAME:
        name = name[:MAX_NAME]
    if not name:
        name = "_"
    if name.split(".")[0].upper() in _RESERVED:
        name = "_" + name
    if name != raw:
        name = f"{name}-{hashlib.sha256(raw.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    return name


def image_files(result: dict[str, Any], *, index_offset: int = 0) -> tuple[list[tuple[str, bytes]], list[str]]:
    """``(file name, content)`` of every image in a BatchResult, and the problems met (bad base64).

    Items without an id are named after their index (plus ``index_offset``: the position of the
    batch's first item in a multi-batch input).
    """
    files: list[tuple[str, bytes]] = []
    problems: list[str] = []
    used: set[str] = set()
    for pos, item in enumerate(result.get("results") or []):
        if not isinstance(item, dict):
            continue
        index = item.get("index", pos) + index_offset
        ident = item.get("id")
        if item.get("svg") is not None:
            ext, content = "svg", str(item["svg"]).encode()
        elif item.get("png") is not None:
            ext = "png"
            try:
                content = base64.b64decode(item["png"], validate=True)
            except (binascii.Error, ValueError, TypeError) as exc:
                problems.append(f"item [{index}] (id {ident!r}): PNG is not valid base64: {exc}")
                continue
        else:
            continue
        base = safe_name(str(ident)) if ident not in (None, "") else str(index)
        stem = base
        n = 1
        while stem.casefold() in used:  # case-insensitive file systems, or id "3" next to item index 3
            stem = f"{base}-{index}" if n == 1 else f"{base}-{index}-{n}"
            n += 1
        used.add(stem.casefold())
        files.append((f"{stem}.{ext}", content))
    return files, problems
