"""Linear (1D) symbologies, encoded with python-barcode's encoder classes (never its writers).

Each symbology has a ``normalize_*`` function (validate raw ``data`` → canonical string, idempotent:
``normalize(normalize(x)) == normalize(x)``) and an ``encode_*`` function (canonical string → Symbol).

python-barcode 0.16 quirks handled here (checked against its source):

* every class silently truncates extra digits and recomputes the check digit, so a wrong check digit
  supplied by the caller would be "corrected" → we validate the check digit ourselves first;
* ``ISBN10`` and ``ISSN`` build broken 10- and 8-digit "EAN-13" patterns (their ``digits`` class attribute
  leaks into ``EAN13.__init__``) → we build the 978…/977… EAN-13 with its ``EAN13`` class;
* ``EAN14`` builds a non-standard 102-module EAN-13-like pattern no reader decodes → GTIN-14 is encoded
  as GS1-128 with AI (01), like Zint and bwip-js do, via its ``Gs1_128`` class;
* ``PZN`` encodes the literal letters ``PZN-`` in Code 39 and ``PZN8`` uses the PZN7 weights → we encode
  ``-`` + digits (the PZN standard, what pharmacy readers expect) with its ``Code39`` class;
* ``Code39`` appends a mod-43 checksum by default → ``add_checksum=False`` so it scans as the data.
"""

from __future__ import annotations

import re

from barcode.codabar import CODABAR
from barcode.codex import PZN7, Code39, Code128, Gs1_128
from barcode.ean import EAN8, EAN13, EAN14, JAN
from barcode.errors import BarcodeError
from barcode.isxn import ISBN13
from barcode.itf import ITF
from barcode.upc import UPCA

from schemas.errors import DataTooLong, InvalidCheckDigit, InvalidData
from stream_app.render._text import show
from stream_app.render.symbol import Symbol, pattern_to_modules

MAX_LINEAR_CHARS = 80  # code128 / code39 / itf / codabar data
GS1_MAX_CHARS = 48  # GS1 General Specifications: at most 48 data characters per GS1-128 symbol
MIN_ITF_DIGITS = 4  # shorter ITF is rejected by readers (too easily a partial read)
MIN_CODABAR_BODY = 2  # likewise for Codabar (zxing-cpp wants at least 4 characters incl. start/stop)

GS = "\x1d"  # FNC1 separator as it appears in decoded GS1 data
_FNC1 = Gs1_128.FNC1_CHAR  # python-barcode's in-band FNC1 marker

_CODE39_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-. $/+%")
_CODABAR_BODY = frozenset("0123456789-$:/.+")
_CODABAR_STARTSTOP = frozenset("ABCD")
# GS1 "character set 82" (GS1 General Specifications, figure 7.11-1)
_GS1_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!\"%&'()*+,-./:;<=>?_")
# Application identifiers whose first two digits imply a predefined total length (AI + value):
# no FNC1 separator is needed after them (GS1 General Specifications, figure 7.8.5-2).
_GS1_PREDEFINED_LENGTH = {
    "00": 20, "01": 16, "02": 16, "03": 16, "04": 18,
    "11": 8, "12": 8, "13": 8, "14": 8, "15": 8, "16": 8, "17": 8, "18": 8, "19": 8, "20": 4,
    "31": 10, "32": 10, "33": 10, "34": 10, "35": 10, "36": 10, "41": 16,
}  # fmt: skip
_GS1_CHECKED_AIS = frozenset({"00", "01", "02"})  # values ending in a GS1 mod-10 check digit
_TEN_CHARS = "expected 9 digits, optionally followed by the check digit (0-9 or X)"
_EIGHT_CHARS = "expected 7 digits, optionally followed by the check digit (0-9 or X)"
_GS1 = "GS1-128 element string"
_GS1_ELEMENT = re.compile(r"\((\d{2,4})\)([^()]*)")


# --------------------------------------------------------------------------- helpers


def _invalid(data: str, kind: str, why: str) -> InvalidData:
    return InvalidData(f"data: {show(data)} is not a valid {kind}: {why}", field="data")


def _digits(data: str, kind: str, lengths: tuple[int, ...], *, drop: str = "") -> str:
    """Strip surrounding whitespace (and ``drop`` characters anywhere); require ASCII digits of a length."""
    value = data.strip()
    for ch in drop:
        value = value.replace(ch, "")
    if not value or not (value.isascii() and value.isdigit()):
        raise _invalid(data, kind, "only digits 0-9 are allowed")
    if len(value) not in lengths:
        expected = " or ".join(str(n) for n in lengths)
        raise _invalid(data, kind, f"expected {expected} digits, got {len(value)}")
    return value


def _with_check(data: str, kind: str, value: str, body_len: int, check: str) -> str:
    """``value`` is body or body+check; verify a supplied check character, return body+check."""
    if len(value) > body_len and value[body_len:] != check:
        raise InvalidCheckDigit(
            f"data: {show(data)} is not a valid {kind}: "
            f"check digit is {value[body_len:]!r}, expected {check!r}",
            field="data",
        )
    return value[:body_len] + check


def gs1_check_digit(body: str) -> str:
    """GS1 mod-10 check digit of a digit string (GTIN-8/12/13/14, SSCC)."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def _symbol(pattern: str, *, data: str, content: str, text: str, check_digit: str | None = None) -> Symbol:
    return Symbol(
        modules=pattern_to_modules(pattern),
        linear=True,
        data=data,
        content=content,
        text=text,
        check_digit=check_digit,
    )


def _build(barcode: object) -> str:
    pattern: str = barcode.build()[0]  # type: ignore[attr-defined]
    return pattern


# --------------------------------------------------------------------------- EAN / UPC family


def normalize_ean13(data: str) -> str:
    value = _digits(data, "EAN-13", (12, 13))
    return _with_check(data, "EAN-13", value, 12, EAN13(value[:12]).get_fullcode()[-1])


def encode_ean13(data: str) -> Symbol:
    return _symbol(_build(EAN13(data[:12])), data=data, content=data, text=data, check_digit=data[-1])


def normalize_jan(data: str) -> str:
    value = _digits(data, "JAN", (12, 13))
    if not (450 <= int(value[:3]) <= 459 or 490 <= int(value[:3]) <= 499):
        raise _invalid(data, "JAN", "must start with 450-459 or 490-499")
    return _with_check(data, "JAN", value, 12, JAN(value[:12]).get_fullcode()[-1])


def encode_jan(data: str) -> Symbol:
    return _symbol(_build(JAN(data[:12])), data=data, content=data, text=data, check_digit=data[-1])


def normalize_ean8(data: str) -> str:
    value = _digits(data, "EAN-8", (7, 8))
    return _with_check(data, "EAN-8", value, 7, EAN8(value[:7]).get_fullcode()[-1])


def encode_ean8(data: str) -> Symbol:
    return _symbol(_build(EAN8(data[:7])), data=data, content=data, text=data, check_digit=data[-1])


def normalize_upca(data: str) -> str:
    value = _digits(data, "UPC-A", (11, 12))
    return _with_check(data, "UPC-A", value, 11, UPCA(value[:11]).get_fullcode()[-1])


def encode_upca(data: str) -> Symbol:
    return _symbol(_build(UPCA(data[:11])), data=data, content=data, text=data, check_digit=data[-1])


def normalize_isbn13(data: str) -> str:
    value = _digits(data, "ISBN-13", (12, 13), drop="- ")
    if not (value.startswith("978") or value.startswith(("9791", "9798"))):
        raise _invalid(data, "ISBN-13", "must start with 978, 9791 or 9798")
    return _with_check(data, "ISBN-13", value, 12, ISBN13(value[:12]).get_fullcode()[-1])


def encode_isbn13(data: str) -> Symbol:
    return _symbol(_build(ISBN13(data[:12])), data=data, content=data, text=data, check_digit=data[-1])


def _isbn10_check(body: str) -> str:
    rest = sum(i * int(d) for i, d in enumerate(body, start=1)) % 11
    return "X" if rest == 10 else str(rest)


def normalize_isbn10(data: str) -> str:
    value = data.strip().replace("-", "").replace(" ", "").upper()
    body = value[:9]
    if not (body.isascii() and body.isdigit()) or len(body) != 9:
        raise _invalid(data, "ISBN-10", _TEN_CHARS)
    if len(value) > 10 or (len(value) == 10 and value[9] not in "0123456789X"):
        raise _invalid(data, "ISBN-10", _TEN_CHARS)
    return _with_check(data, "ISBN-10", value, 9, _isbn10_check(body))


def encode_isbn10(data: str) -> Symbol:
    ean = EAN13("978" + data[:9])  # rendered as its EAN-13 (Bookland) form
    full = ean.get_fullcode()
    return _symbol(_build(ean), data=data, content=full, text=full, check_digit=data[-1])


def _issn_check(body: str) -> str:
    rest = (11 - sum(w * int(d) for w, d in zip(range(8, 1, -1), body, strict=True)) % 11) % 11
    return "X" if rest == 10 else str(rest)


def normalize_issn(data: str) -> str:
    value = data.strip().replace("-", "").replace(" ", "").upper()
    body = value[:7]
    if not (body.isascii() and body.isdigit()) or len(body) != 7:
        raise _invalid(data, "ISSN", _EIGHT_CHARS)
    if len(value) > 8 or (len(value) == 8 and value[7] not in "0123456789X"):
        raise _invalid(data, "ISSN", _EIGHT_CHARS)
    return _with_check(data, "ISSN", value, 7, _issn_check(body))


def encode_issn(data: str) -> Symbol:
    ean = EAN13("977" + data[:7] + "00")  # EAN-13 form of an ISSN, issue/price code 00
    full = ean.get_fullcode()
    return _symbol(_build(ean), data=data, content=full, text=full, check_digit=data[-1])


def normalize_ean14(data: str) -> str:
    value = _digits(data, "EAN-14", (13, 14))
    return _with_check(data, "EAN-14", value, 13, EAN14(value[:13]).get_fullcode()[-1])


def encode_ean14(data: str) -> Symbol:
    pattern = _build(Gs1_128("01" + data))
    return _symbol(pattern, data=data, content="01" + data, text=f"(01){data}", check_digit=data[-1])


# --------------------------------------------------------------------------- GS1-128


def _gs1_elements(data: str) -> list[tuple[str, str]]:
    pos = 0
    out: list[tuple[str, str]] = []
    for m in _GS1_ELEMENT.finditer(data):
        if m.start() != pos:
            break
        out.append((m.group(1), m.group(2)))
        pos = m.end()
    if pos != len(data) or not out:
        raise _invalid(data, _GS1, "expected (AI)value(AI)value… with 2-4 digit AIs")
    return out


def _gs1_check_value(data: str, ai: str, value: str) -> None:
    if any(ch not in _GS1_CHARS for ch in value) or not value:
        raise _invalid(data, _GS1, f"AI ({ai}) value {value!r} is empty or outside GS1 charset 82")
    fixed = _GS1_PREDEFINED_LENGTH.get(ai[:2])
    if fixed is None:
        return
    if len(ai) + len(value) != fixed or not value.isdigit():
        raise _invalid(data, _GS1, f"AI ({ai}) needs {fixed - len(ai)} digits, got {value!r}")
    if ai in _GS1_CHECKED_AIS and value[-1] != gs1_check_digit(value[:-1]):
        raise InvalidCheckDigit(
            f"data: {show(data)} is not a valid GS1-128 element string: AI ({ai}) check digit is "
            f"{value[-1]!r}, expected {gs1_check_digit(value[:-1])!r}",
            field="data",
        )


def _gs1_too_long(data: str) -> DataTooLong:
    return DataTooLong(
        f"data: {show(data)} is too long for GS1-128: at most {GS1_MAX_CHARS} characters", field="data"
    )


def normalize_gs1_128(data: str) -> str:
    """``(01)09506000134352(10)ABC`` (canonical form), or a raw element string with GS (0x1D) separators."""
    if data.startswith("("):
        elements = _gs1_elements(data)
        for ai, value in elements:
            _gs1_check_value(data, ai, value)
        canonical = "".join(f"({ai}){value}" for ai, value in elements)
        if len(_gs1_raw(canonical)) > GS1_MAX_CHARS:
            raise _gs1_too_long(data)
        return canonical
    if len(data) > GS1_MAX_CHARS:
        raise _gs1_too_long(data)
    bad = sorted({ch for ch in data if ch not in _GS1_CHARS and ch != GS})
    if bad:
        raise _invalid(data, _GS1, f"characters {''.join(bad)!r} are outside GS1 charset 82")
    if len(data) < 3 or not data[:2].isdigit() or data.startswith(GS) or data.endswith(GS) or GS * 2 in data:
        raise _invalid(data, _GS1, "expected AI digits first and single GS separators")
    return data


def _gs1_raw(canonical: str) -> str:
    """Element string as encoded: FNC1 (shown as GS) after every variable-length element but the last."""
    if not canonical.startswith("("):
        return canonical
    elements = _gs1_elements(canonical)
    parts: list[str] = []
    for i, (ai, value) in enumerate(elements):
        parts.append(ai + value)
        if i < len(elements) - 1 and ai[:2] not in _GS1_PREDEFINED_LENGTH:
            parts.append(GS)
    return "".join(parts)


def encode_gs1_128(data: str) -> Symbol:
    raw = _gs1_raw(data)
    pattern = _build(Gs1_128(raw.replace(GS, _FNC1)))
    return _symbol(pattern, data=data, content=raw, text=data)


# --------------------------------------------------------------------------- general purpose 1D


def _check_length(data: str, kind: str, limit: int = MAX_LINEAR_CHARS) -> None:
    if len(data) > limit:
        raise DataTooLong(
            f"data: {show(data)} is too long for {kind}: {len(data)} characters, at most {limit}",
            field="data",
        )


def normalize_code128(data: str) -> str:
    _check_length(data, "Code 128")
    bad = sorted({ch for ch in data if ord(ch) > 0x7F})
    if bad:
        raise _invalid(data, "Code 128", f"characters {''.join(bad)!r} are outside ASCII")
    return data


def encode_code128(data: str) -> Symbol:
    return _symbol(_build(Code128(data)), data=data, content=data, text=data)


def normalize_code39(data: str) -> str:
    """Upper-cased, like python-barcode does (Code 39 has no lower case; full-ASCII mode is not offered)."""
    _check_length(data, "Code 39")
    value = data.upper()
    bad = sorted({ch for ch in value if ch not in _CODE39_CHARS})
    if bad:
        raise _invalid(data, "Code 39", f"characters {''.join(bad)!r} are not in 0-9 A-Z -. $/+%")
    return value


def encode_code39(data: str) -> Symbol:
    return _symbol(_build(Code39(data, add_checksum=False)), data=data, content=data, text=data)


def normalize_itf(data: str) -> str:
    value = data.strip()
    _check_length(value, "ITF")
    if not value or not (value.isascii() and value.isdigit()):
        raise _invalid(data, "ITF", "only digits 0-9 are allowed")
    if len(value) % 2:
        value = "0" + value  # ITF encodes digit pairs; python-barcode pads the same way
    if len(value) < MIN_ITF_DIGITS:
        raise _invalid(data, "ITF", f"at least {MIN_ITF_DIGITS} digits are needed")
    _check_length(value, "ITF")
    return value


def encode_itf(data: str) -> Symbol:
    return _symbol(_build(ITF(data)), data=data, content=data, text=data)


def normalize_codabar(data: str) -> str:
    """``A1234B`` (start/stop A-D included) or a bare body, which gets ``A`` … ``A``."""
    value = data.strip().upper()
    _check_length(value, "Codabar", MAX_LINEAR_CHARS + 2)
    if len(value) >= 3 and value[0] in _CODABAR_STARTSTOP and value[-1] in _CODABAR_STARTSTOP:
        body = value[1:-1]
    else:
        body, value = value, f"A{value}A"
    if not body or any(ch not in _CODABAR_BODY for ch in body):
        raise _invalid(data, "Codabar", "expected [A-D] + digits or -$:/.+ + [A-D], or just the body")
    if len(body) < MIN_CODABAR_BODY:
        raise _invalid(
            data, "Codabar", f"at least {MIN_CODABAR_BODY} characters between start and stop are needed"
        )
    _check_length(body, "Codabar")
    return value


def encode_codabar(data: str) -> Symbol:
    return _symbol(_build(CODABAR(data)), data=data, content=data, text=data)


def _pzn8_check(body: str) -> str:
    rest = sum(w * int(d) for w, d in enumerate(body, start=1)) % 11
    return str(rest)  # 10 is rejected by the caller


def normalize_pzn(data: str) -> str:
    """6/7 digits → PZN7 (python-barcode's ``pzn``), 8 digits → PZN8; optional ``PZN``/``-`` prefix."""
    value = data.strip().upper()
    if value.startswith("PZN"):
        value = value[3:].lstrip(" ")
    value = value.removeprefix("-").lstrip(" ")
    if not (value.isascii() and value.isdigit()) or len(value) not in (6, 7, 8):
        raise _invalid(data, "PZN", "expected 6 or 7 digits (PZN7) or 8 digits (PZN8)")
    if len(value) == 8:
        check = _pzn8_check(value[:7])
        if check == "10":
            raise _invalid(data, "PZN", "PZN8 numbers whose check sum is 10 are never issued")
        return _with_check(data, "PZN", value, 7, check)
    try:
        check = PZN7(value[:6]).pzn[-1]
    except BarcodeError:
        raise _invalid(data, "PZN", "PZN7 numbers whose check sum is 10 are never issued") from None
    return _with_check(data, "PZN", value, 6, check)


def encode_pzn(data: str) -> Symbol:
    pattern = _build(Code39("-" + data, add_checksum=False))
    return _symbol(pattern, data=data, content="-" + data, text=f"PZN-{data}", check_digit=data[-1])
