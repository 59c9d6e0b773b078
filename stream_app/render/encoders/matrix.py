"""Data Matrix, PDF417 and Aztec, encoded with zxing-cpp's writer (``create_barcode``).

The module matrix is read back at 1 px/module without quiet zone (``to_image(scale=1,
add_quiet_zones=False)``). PDF417 rows come out 3 modules high, which is kept as is (the module matrix
is then exactly what zxing-cpp would draw).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import zxingcpp

from schemas.errors import DataTooLong, InvalidData, RenderFailed
from stream_app.render._text import show
from stream_app.render.symbol import BoolMatrix, Symbol

_FORMATS = {
    "datamatrix": zxingcpp.BarcodeFormat.DataMatrix,
    "pdf417": zxingcpp.BarcodeFormat.PDF417,
    "aztec": zxingcpp.BarcodeFormat.Aztec,
}
_NAMES = {"datamatrix": "Data Matrix", "pdf417": "PDF417", "aztec": "Aztec"}


def _create(kind: str, data: str) -> BoolMatrix:
    try:
        barcode = zxingcpp.create_barcode(data, _FORMATS[kind])
        image = barcode.to_image(scale=1, add_quiet_zones=False)
    except ValueError as exc:
        message = str(exc)
        if "too long" in message.lower() or "too many" in message.lower():
            raise DataTooLong(
                f"data: {show(data)} does not fit in a {_NAMES[kind]} symbol "
                f"({len(data)} characters): {message}",
                field="data",
            ) from None
        raise InvalidData(
            f"data: {show(data)} cannot be encoded as {_NAMES[kind]}: {message}", field="data"
        ) from None
    pixels = np.asarray(image)
    if pixels.ndim != 2 or pixels.size == 0:
        raise RenderFailed(
            f"data: {show(data)}: zxing-cpp returned an unexpected {_NAMES[kind]} image", field="data"
        )
    modules: BoolMatrix = pixels < 128
    return modules


def _aztec_version(modules: BoolMatrix) -> tuple[int | None, bool | None]:
    """(layers, compact) from the symbol size and bullseye (full range: ring 5 light, ring 6 dark)."""
    size = int(modules.shape[0])
    c = size // 2
    compact = True
    if size >= 19:
        ring5 = modules[c - 5 : c + 6, c - 5 : c + 6].copy()
        ring5[1:-1, 1:-1] = False
        ring6 = ~modules[c - 6 : c + 7, c - 6 : c + 7]
        ring6[1:-1, 1:-1] = False
        compact = bool(ring5.any() or ring6.any())
    for layers in range(1, 33):
        if compact:
            if layers <= 4 and 11 + 4 * layers == size:
                return layers, True
        else:
            base = 14 + 4 * layers
            if base + 1 + 2 * ((base // 2 - 1) // 15) == size:
                return layers, False
    return None, None


def _pdf417_version(modules: BoolMatrix) -> str:
    changes = int(np.count_nonzero(np.any(modules[1:] != modules[:-1], axis=1)))
    data_columns = (int(modules.shape[1]) - 69) // 17  # start 17 + 2 row indicators 17 + stop 18
    return f"{changes + 1}x{data_columns}"


def _symbol(kind: str, data: str, modules: BoolMatrix) -> Symbol:
    version: int | str | None
    extra: dict[str, Any] = {}
    if kind == "datamatrix":
        version = f"{modules.shape[0]}x{modules.shape[1]}"
    elif kind == "pdf417":
        version = _pdf417_version(modules)
    else:
        version, compact = _aztec_version(modules)
        extra["compact"] = compact
    return Symbol(modules=modules, linear=False, data=data, content=data, version=version, extra=extra)


def encode_datamatrix(data: str, error_correction: str | None) -> Symbol:
    return _symbol("datamatrix", data, _create("datamatrix", data))


def encode_pdf417(data: str, error_correction: str | None) -> Symbol:
    return _symbol("pdf417", data, _create("pdf417", data))


def encode_aztec(data: str, error_correction: str | None) -> Symbol:
    return _symbol("aztec", data, _create("aztec", data))
