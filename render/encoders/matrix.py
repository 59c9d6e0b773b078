"""Data Matrix, PDF417 and Aztec, and the GS1 2D symbols (GS1 Data Matrix, GS1 QR: FNC1 in first position,
read back as ``]d2`` / ``]Q3``), encoded with zxing-cpp's writer (``create_barcode``). GS1 data is validated
by ``gs1.parse`` first; the writer gets the bracketed element string with ``gs1=True``.

The module matrix is read back at 1 px/module without quiet zone (``to_image(scale=1,
add_quiet_zones=False)``). PDF417 rows come out 3 modules high, which is kept as is (the module matrix
is then exactly what zxing-cpp would draw).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import zxingcpp

from render import gs1
from render._text import show
from render.encoders import qr
from render.symbol import BoolMatrix, Symbol
from schemas.errors import DataTooLong, InvalidData, RenderFailed

_FORMATS = {
    "datamatrix": zxingcpp.BarcodeFormat.DataMatrix,
    "pdf417": zxingcpp.BarcodeFormat.PDF417,
    "aztec": zxingcpp.BarcodeFormat.Aztec,
    "qr": zxingcpp.BarcodeFormat.QRCode,
}
_NAMES = {"datamatrix": "Data Matrix", "pdf417": "PDF417", "aztec": "Aztec", "qr": "QR Code"}


def _create(kind: str, data: str, **options: Any) -> BoolMatrix:
    try:
        barcode = zxingcpp.create_barcode(data, _FORMATS[kind], **options)
        image = barcode.to_image(scale=1, add_quiet_zones=False)
    except ValueError as exc:
        message = str(exc)
        if "too long" in message.lower() or "too many" in message.lower():
            raise DataTooLong(
                f"data: {show(data)} does not fit in a {_NAMES[kind]} symbol ({len(data)} characters): {message}",
                field="data",
            ) from None
        raise InvalidData(f"data: {show(data)} cannot be encoded as {_NAMES[kind]}: {message}", field="data") from None
    pixels = np.asarray(image)
    if pixels.ndim != 2 or pixels.size == 0:
        raise RenderFailed(f"data: {show(data)}: zxing-cpp returned an unexpected {_NAMES[kind]} image", field="data")
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


# --------------------------------------------------------------------------- GS1 2D


def normalize_gs1(data: str, requisites: bool = True) -> str:
    """Bracketed or raw element string → the bracketed form (validated)."""
    return gs1.bracketed(gs1.parse(data, requisites=requisites))


def _gs1_symbol(modules: BoolMatrix, data: str, elements: list[gs1.Element], version: int | str) -> Symbol:
    return Symbol(
        modules=modules,
        linear=False,
        data=data,
        content=gs1.raw(elements),
        version=version,
        extra={"gs1_ai_table": gs1.AI_TABLE_VERSION},
    )


def encode_gs1_datamatrix(data: str, error_correction: str | None, requisites: bool = True) -> Symbol:
    elements = gs1.parse(data, requisites=requisites)
    # square sizes only: the rectangular extension (DMRE, e.g. 8x64) is not read as GS1 (]d2) everywhere
    modules = _create("datamatrix", gs1.bracketed(elements), gs1=True, force_square=True)
    version = f"{modules.shape[0]}x{modules.shape[1]}"
    symbol = _gs1_symbol(modules, data, elements, version)
    return replace(symbol, symbology_id="]d2")


def _qr_version(modules: BoolMatrix) -> int:
    return (int(modules.shape[0]) - 17) // 4


def encode_gs1_qr(data: str, error_correction: str | None, requisites: bool = True) -> Symbol:
    elements = gs1.parse(data, requisites=requisites)
    level = error_correction or "M"
    modules = _create("qr", gs1.bracketed(elements), gs1=True, ec_level=level)
    symbol = _gs1_symbol(modules, data, elements, _qr_version(modules))
    return replace(symbol, symbology_id="]Q3", error_correction=level)


def normalize_digital_link(data: str, requisites: bool = True) -> str:
    """A GS1 Digital Link URI (normalised) or AIs (turned into a URI on id.gs1.org)."""
    return gs1.digital_link(data, requisites=requisites)[0]


def encode_digital_link(
    data: str, error_correction: str | None, requisites: bool = True, carrier: str | None = None
) -> Symbol:
    """The URI as plain text: in a QR Code (segno, like ``qr``) or a Data Matrix (``carrier``)."""
    uri, elements = gs1.digital_link(data, requisites=requisites)
    extra = {
        "carrier": carrier or "qr",
        "element_string": gs1.bracketed(elements),
        "gs1_ai_table": gs1.AI_TABLE_VERSION,
    }
    if carrier == "datamatrix":
        modules = _create("datamatrix", uri, force_square=True)
        symbol = _symbol("datamatrix", uri, modules)
        return replace(symbol, extra=extra)
    symbol = qr.encode_qr(uri, error_correction or "M")
    return replace(symbol, extra={**symbol.extra, **extra})
