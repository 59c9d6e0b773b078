"""The one table mapping ``barcode_type`` → how to validate, encode and read it back.

Adding a symbology means writing its normalise/encode functions and adding one row to ``REGISTRY``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from render.encoders import linear, matrix, qr
from render.symbol import Symbol

Normalizer = Callable[..., str]  # (data, **norm_options) -> canonical data
Encoder = Callable[..., Symbol]  # (data, error_correction, **enc_options) -> Symbol


def _verbatim(data: str) -> str:
    return data


def _linear(fn: Callable[..., Symbol]) -> Encoder:
    def encode(data: str, error_correction: str | None, **options: object) -> Symbol:
        return fn(data, **options)

    encode.__name__ = fn.__name__
    return encode


@dataclass(frozen=True, slots=True)
class Symbology:
    name: str
    linear: bool
    default_margin: int  # quiet zone, in modules
    normalize: Normalizer  # raw data → canonical data (raises InvalidData & co), idempotent
    encode: Encoder  # canonical data, error level → Symbol
    read_formats: tuple[str, ...]  # zxingcpp.BarcodeFormat names used by verify
    ec_levels: tuple[str, ...] = ()  # accepted options.error_correction values (empty: option refused)
    describe: Encoder | None = None  # like encode, plus extra facts for describe() (QR capacity)
    norm_options: tuple[tuple[str, str], ...] = ()  # (RenderSpec field, keyword) passed to normalize
    enc_options: tuple[tuple[str, str], ...] = ()  # (RenderSpec field, keyword) passed to encode
    gs1: bool = False  # data is a GS1 element string (or Digital Link): options.gs1_requisites applies
    retail: bool = False  # EAN/UPC: options.quiet_zone_markers applies


_REQ = (("gs1_requisites", "requisites"),)
_LMQH = ("L", "M", "Q", "H")


_EAN = ("EAN13", "UPCA")
_ROWS: tuple[Symbology, ...] = (
    Symbology("qr", False, 4, _verbatim, qr.encode_qr, ("QRCode",), _LMQH, qr.describe_qr),
    Symbology(
        "micro_qr",
        False,
        2,
        _verbatim,
        qr.encode_micro_qr,
        ("MicroQRCode",),
        ("L", "M", "Q"),
        qr.describe_micro_qr,
    ),
    Symbology("ean13", True, 10, linear.normalize_ean13, _linear(linear.encode_ean13), _EAN, retail=True),
    Symbology("ean8", True, 10, linear.normalize_ean8, _linear(linear.encode_ean8), ("EAN8",), retail=True),
    Symbology("upca", True, 10, linear.normalize_upca, _linear(linear.encode_upca), _EAN, retail=True),
    Symbology("jan", True, 10, linear.normalize_jan, _linear(linear.encode_jan), _EAN, retail=True),
    Symbology("isbn13", True, 10, linear.normalize_isbn13, _linear(linear.encode_isbn13), _EAN, retail=True),
    Symbology("isbn10", True, 10, linear.normalize_isbn10, _linear(linear.encode_isbn10), _EAN, retail=True),
    Symbology("issn", True, 10, linear.normalize_issn, _linear(linear.encode_issn), _EAN, retail=True),
    Symbology("ean14", True, 10, linear.normalize_ean14, _linear(linear.encode_ean14), ("Code128",)),
    Symbology(
        "gs1_128",
        True,
        10,
        linear.normalize_gs1_128,
        _linear(linear.encode_gs1_128),
        ("Code128",),
        norm_options=_REQ,
        enc_options=_REQ,
        gs1=True,
    ),
    Symbology("code128", True, 10, linear.normalize_code128, _linear(linear.encode_code128), ("Code128",)),
    Symbology("code39", True, 10, linear.normalize_code39, _linear(linear.encode_code39), ("Code39Std",)),
    Symbology("itf", True, 10, linear.normalize_itf, _linear(linear.encode_itf), ("ITF",)),
    Symbology("itf14", True, 10, linear.normalize_itf14, _linear(linear.encode_itf14), ("ITF14", "ITF")),
    Symbology("upce", True, 9, linear.normalize_upce, _linear(linear.encode_upce), ("UPCE",), retail=True),
    Symbology("codabar", True, 10, linear.normalize_codabar, _linear(linear.encode_codabar), ("Codabar",)),
    Symbology("pzn", True, 10, linear.normalize_pzn, _linear(linear.encode_pzn), ("Code39Std",)),
    Symbology("datamatrix", False, 1, _verbatim, matrix.encode_datamatrix, ("DataMatrix",)),
    Symbology("pdf417", False, 2, _verbatim, matrix.encode_pdf417, ("PDF417",)),
    Symbology("aztec", False, 1, _verbatim, matrix.encode_aztec, ("Aztec",)),
    Symbology(
        "gs1_datamatrix",
        False,
        1,
        matrix.normalize_gs1,
        matrix.encode_gs1_datamatrix,
        ("DataMatrix",),
        norm_options=_REQ,
        enc_options=_REQ,
        gs1=True,
    ),
    Symbology(
        "gs1_qr",
        False,
        4,
        matrix.normalize_gs1,
        matrix.encode_gs1_qr,
        ("QRCode",),
        _LMQH,
        norm_options=_REQ,
        enc_options=_REQ,
        gs1=True,
    ),
    Symbology(
        "gs1_digital_link",
        False,
        4,  # QR Code; 1 with carrier datamatrix
        matrix.normalize_digital_link,
        matrix.encode_digital_link,
        ("QRCode", "DataMatrix"),
        _LMQH,
        norm_options=_REQ,
        enc_options=(*_REQ, ("carrier", "carrier")),
        gs1=True,
    ),
)

REGISTRY: dict[str, Symbology] = {row.name: row for row in _ROWS}
SUPPORTED_TYPES: tuple[str, ...] = tuple(REGISTRY)
