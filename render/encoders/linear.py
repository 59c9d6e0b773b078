"""Linear (1D) symbologies, encoded with python-barcode's encoder classes (never its writers), except the
EAN/UPC family (EAN-13, EAN-8, UPC-A, UPC-E, add-ons), whose bars are built here from the same code tables
(a few string joins instead of a python-barcode object per item; ``tests/render/encoders`` compares them).

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
from collections.abc import Callable
from dataclasses import replace
from operator import mul

from barcode.charsets import code128 as code128_charset
from barcode.codabar import CODABAR
from barcode.codex import PZN7, Code39, Code128, Gs1_128
from barcode.ean import EAN14
from barcode.errors import BarcodeError
from barcode.itf import ITF
from barcode.writer import SVGWriter

from render import gs1
from render._text import show
from render.symbol import Retail, Symbol, pattern_to_modules
from schemas.errors import DataTooLong, InvalidCheckDigit, InvalidData

MAX_LINEAR_CHARS = 80  # code128 / code39 / itf / codabar data
GS1_MAX_CHARS = 48  # GS1 General Specifications: at most 48 data characters per GS1-128 symbol
QUIET_ITF14 = (10, 10)  # GS1 General Specifications 5.3.4: 10 X each side, inside the bearer frame
MIN_ITF_DIGITS = 4  # shorter ITF is rejected by readers (too easily a partial read)
MIN_CODABAR_BODY = 2  # likewise for Codabar (zxing-cpp wants at least 4 characters incl. start/stop)

GS = gs1.GS  # FNC1 separator as it appears in decoded GS1 data
_FNC1 = Gs1_128.FNC1_CHAR  # python-barcode's in-band FNC1 marker
# one writer for every python-barcode object: its classes build a default writer per object otherwise (build()
# never uses it; we only take the bar pattern)
_WRITER = SVGWriter()

_CODE39_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-. $/+%")
_CODABAR_BODY = frozenset("0123456789-$:/.+")
_CODABAR_STARTSTOP = frozenset("ABCD")
# GS1 "character set 82" (GS1 General Specifications, figure 7.11-1)
_TEN_CHARS = "expected 9 digits, optionally followed by the check digit (0-9 or X)"
_EIGHT_CHARS = "expected 7 digits, optionally followed by the check digit (0-9 or X)"
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
            f"data: {show(data)} is not a valid {kind}: check digit is {value[body_len:]!r}, expected {check!r}",
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


_L = ("0001101", "0011001", "0010011", "0111101", "0100011", "0110001", "0101111", "0111011", "0110111", "0001011")
_R = tuple(code.translate(str.maketrans("01", "10")) for code in _L)  # right half: L inverted
_G = tuple(code[::-1] for code in _R)  # even parity: reversed R
_EAN13_PARITY = ("LLLLLL", "LLGLGG", "LLGGLG", "LLGGGL", "LGLLGG", "LGGLLG", "LGGGLL", "LGLGLG", "LGLGGL", "LGGLGL")
_SIDES = {"L": _L, "G": _G}
_ADDON2_PARITY = ("LL", "LG", "GL", "GG")
_ADDON5_PARITY = ("GGLLL", "GLGLL", "GLLGL", "GLLLG", "LGGLL", "LLGGL", "LLLGG", "LGLGL", "LGLLG", "LLGLG")
_UPCE_PARITY = ("GGGLLL", "GGLGLL", "GGLLGL", "GGLLLG", "GLGGLL", "GLLGGL", "GLLLGG", "GLGLGL", "GLGLLG", "GLLGLG")
# GS1 General Specifications 5.2.3.4: quiet zones (left, right) in modules; add-on: 7-12 gap, 5 after it
QUIET_EAN13, QUIET_EAN8, QUIET_UPCA, QUIET_UPCE, QUIET_ADDON = (11, 7), (7, 7), (9, 9), (9, 7), 5
ADDON_GAP = {"ean13": 7, "upca": 9, "upce": 7, "ean8": 7}  # Zint's defaults
_OUT = 4.0  # centre of a digit printed in a quiet zone, modules from the outer guard
_NEED = 7  # quiet zone a digit or marker printed there needs, modules


def _digit(code: str, parity: str) -> str:
    return _L[int(code)] if parity == "L" else _G[int(code)]


def addon_pattern(addon: str) -> str:
    """EAN-2 / EAN-5 add-on bars: start 1011, digits (parity from the value), separators 01."""
    if len(addon) == 2:
        parity = _ADDON2_PARITY[int(addon) % 4]
    else:
        total = 3 * sum(int(d) for d in addon[0::2]) + 9 * sum(int(d) for d in addon[1::2])
        parity = _ADDON5_PARITY[total % 10]
    return "1011" + "01".join(_digit(d, p) for d, p in zip(addon, parity, strict=True))


def _split_addon(data: str, kind: str) -> tuple[str, str]:
    """``main+addon`` / ``main addon`` → (main, addon); the add-on has 2 or 5 digits."""
    value = data.strip()
    for sep in ("+", " "):
        if sep in value:
            main, _, addon = value.partition(sep)
            addon = addon.strip()
            if len(addon) not in (2, 5) or not (addon.isascii() and addon.isdigit()):
                raise _invalid(data, kind, f"the add-on {addon!r} must be 2 or 5 digits")
            return main.strip(), addon
    return value, ""


def _join(main: str, addon: str) -> str:
    return f"{main}+{addon}" if addon else main


def _retail(
    main_pattern: str,
    *,
    data: str,
    main: str,
    addon: str,
    kind: str,
    digits: tuple[tuple[str, float, bool], ...],
    guards: tuple[tuple[int, int], ...],
    quiet: tuple[int, int],
    need: tuple[int, int],
    markers: tuple[float | None, float | None],
    content: str | None = None,
) -> Symbol:
    pattern, addon_at, right = main_pattern, None, quiet[1]
    left_marker, right_marker = markers
    if addon:
        addon_at = len(main_pattern) + ADDON_GAP[kind]
        pattern = main_pattern + "0" * ADDON_GAP[kind] + addon_pattern(addon)
        right, right_marker = QUIET_ADDON, (len(pattern) + _OUT if right_marker is not None else None)
    layout = Retail(
        digits=digits,
        guards=guards,
        addon=addon_at,
        addon_text=addon,
        need=(need[0], need[1] if not addon else 0),
        markers=(left_marker, right_marker),
    )
    read = (content or main) + addon
    extra = {"addon": addon} if addon else {}
    return Symbol(
        modules=pattern_to_modules(pattern),
        linear=True,
        data=data,
        content=read,
        text=_join(content or main, addon),
        check_digit=main[-1],
        extra=extra,
        quiet_zone=(quiet[0], right),
        retail=layout,
    )


_L_DIGITS = str.maketrans({str(d): code for d, code in enumerate(_L)})  # digit -> its 7 modules
_R_DIGITS = str.maketrans({str(d): code for d, code in enumerate(_R)})
# per first digit: the code table (L or G) of each of the 6 left-half digits
_EAN13_LEFT = tuple(tuple(_SIDES[p] for p in parity) for parity in _EAN13_PARITY)


def ean13_pattern(full: str) -> str:
    """EAN-13 bars of 13 digits (check digit included): guard, left half in the parity the first digit
    selects, centre guard, right half, guard (the UPC-A pattern is that of ``"0" + upca``)."""
    left = "".join(map(tuple.__getitem__, _EAN13_LEFT[int(full[0])], map(int, full[1:7])))
    return "101" + left + "01010" + full[7:13].translate(_R_DIGITS) + "101"


def ean8_pattern(full: str) -> str:
    """EAN-8 bars of 8 digits (check digit included)."""
    return "101" + full[:4].translate(_L_DIGITS) + "01010" + full[4:8].translate(_R_DIGITS) + "101"


def _ean13_symbol(pattern: str, data: str, full: str, addon: str, content: str | None = None) -> Symbol:
    shown = content or full
    return _retail(
        pattern,
        data=data,
        main=full,
        addon=addon,
        kind="ean13",
        digits=((shown[0], -_OUT, False), (shown[1:7], 24.0, False), (shown[7:], 71.0, False)),
        guards=((0, 3), (45, 50), (92, 95)),
        quiet=QUIET_EAN13,
        need=(_NEED, 0),
        markers=(None, 95 + _OUT),
        content=content,
    )


def normalize_ean13(data: str) -> str:
    main, addon = _split_addon(data, "EAN-13")
    value = _digits(main, "EAN-13", (12, 13))
    return _join(_with_check(data, "EAN-13", value, 12, gs1.check_digit(value[:12])), addon)


def encode_ean13(data: str) -> Symbol:
    main, _, addon = data.partition("+")
    return _ean13_symbol(ean13_pattern(main), data, main, addon)


def normalize_jan(data: str) -> str:
    main, addon = _split_addon(data, "JAN")
    value = _digits(main, "JAN", (12, 13))
    if not (450 <= int(value[:3]) <= 459 or 490 <= int(value[:3]) <= 499):
        raise _invalid(data, "JAN", "must start with 450-459 or 490-499")
    return _join(_with_check(data, "JAN", value, 12, gs1.check_digit(value[:12])), addon)


def encode_jan(data: str) -> Symbol:
    main, _, addon = data.partition("+")
    return _ean13_symbol(ean13_pattern(main), data, main, addon)


def normalize_ean8(data: str) -> str:
    main, addon = _split_addon(data, "EAN-8")
    value = _digits(main, "EAN-8", (7, 8))
    return _join(_with_check(data, "EAN-8", value, 7, gs1.check_digit(value[:7])), addon)


def encode_ean8(data: str) -> Symbol:
    main, _, addon = data.partition("+")
    return _retail(
        ean8_pattern(main),
        data=data,
        main=main,
        addon=addon,
        kind="ean8",
        digits=((main[:4], 17.0, False), (main[4:], 50.0, False)),
        guards=((0, 3), (31, 36), (64, 67)),
        quiet=QUIET_EAN8,
        need=(0, 0),
        markers=(-_OUT, 67 + _OUT),
    )


def normalize_upca(data: str) -> str:
    main, addon = _split_addon(data, "UPC-A")
    value = _digits(main, "UPC-A", (11, 12))
    return _join(_with_check(data, "UPC-A", value, 11, gs1.check_digit(value[:11])), addon)


def encode_upca(data: str) -> Symbol:
    main, _, addon = data.partition("+")
    return _retail(
        ean13_pattern("0" + main),
        data=data,
        main=main,
        addon=addon,
        kind="upca",
        digits=(
            (main[0], -_OUT, True),
            (main[1:6], 27.5, False),
            (main[6:11], 67.5, False),
            (main[11], 95 + _OUT, True),
        ),
        guards=((0, 10), (45, 50), (85, 95)),
        quiet=QUIET_UPCA,
        need=(_NEED, _NEED),
        markers=(None, None),
    )


def upce_to_upca(upce: str) -> str:
    """8-digit UPC-E (number system, 6 digits, check) → 12-digit UPC-A."""
    ns, d, check = upce[0], upce[1:7], upce[7]
    last = d[5]
    if last in "012":
        body = d[0:2] + last + "0000" + d[2:5]
    elif last == "3":
        body = d[0:3] + "00000" + d[3:5]
    elif last == "4":
        body = d[0:4] + "00000" + d[4]
    else:
        body = d[0:5] + "0000" + last
    return ns + body + check


def upca_to_upce(upca: str) -> str | None:
    """12-digit UPC-A → 8-digit UPC-E, or None when it has no zero-suppressed form."""
    ns, m, p, check = upca[0], upca[1:6], upca[6:11], upca[11]
    if ns not in "01":
        return None
    if m[2] in "012" and m[3:] == "00" and p[:2] == "00":
        return ns + m[0:2] + p[2:5] + m[2] + check
    if m[3:] == "00" and p[:3] == "000":
        return ns + m[0:3] + p[3:5] + "3" + check
    if m[4] == "0" and p[:4] == "0000":
        return ns + m[0:4] + p[4] + "4" + check
    if m[4] != "0" and p[:4] == "0000" and p[4] in "56789":
        return ns + m + p[4] + check
    return None


def normalize_upce(data: str) -> str:
    """6 digits (number system 0), 7 (number system 0/1 + 6), 8 (+ check digit), or the 11/12-digit UPC-A
    it zero-suppresses; optional ``+`` 2/5-digit add-on. Canonical: the 8-digit UPC-E."""
    main, addon = _split_addon(data, "UPC-E")
    value = _digits(main, "UPC-E", (6, 7, 8, 11, 12))
    if len(value) == 6:
        value = "0" + value
    if len(value) in (11, 12):
        upca = _with_check(data, "UPC-E", value, 11, gs1_check_digit(value[:11]))
        upce = upca_to_upce(upca)
        if upce is None:
            raise _invalid(data, "UPC-E", f"UPC-A {upca} has no zero-suppressed UPC-E form")
        return _join(upce, addon)
    if value[0] not in "01":
        raise _invalid(data, "UPC-E", "the number system (first of 7 or 8 digits) must be 0 or 1")
    upca = upce_to_upca(value[:7] + "0")
    check = gs1_check_digit(upca[:11])
    upce = _with_check(data, "UPC-E", value, 7, check)
    if upca_to_upce(upca[:11] + check) != upce:  # e.g. 0000003: its UPC-A zero-suppresses differently
        raise _invalid(data, "UPC-E", f"it is not the zero-suppressed form of UPC-A {upca[:11] + check}")
    return _join(upce, addon)


def encode_upce(data: str) -> Symbol:
    main, _, addon = data.partition("+")
    parity = _UPCE_PARITY[int(main[7])]
    if main[0] == "1":
        parity = parity.translate(str.maketrans("LG", "GL"))
    pattern = "101" + "".join(_digit(d, p) for d, p in zip(main[1:7], parity, strict=True)) + "010101"
    symbol = _retail(
        pattern,
        data=data,
        main=main,
        addon=addon,
        kind="upce",
        digits=((main[0], -_OUT, True), (main[1:7], 24.0, False), (main[7], 51 + _OUT, True)),
        guards=((0, 3), (45, 51)),
        quiet=QUIET_UPCE,
        need=(_NEED, _NEED),
        markers=(None, None),
    )
    return replace(symbol, extra={**symbol.extra, "upca": upce_to_upca(main)})


def normalize_isbn13(data: str) -> str:
    value = _digits(data, "ISBN-13", (12, 13), drop="- ")
    if not (value.startswith("978") or value.startswith(("9791", "9798"))):
        raise _invalid(data, "ISBN-13", "must start with 978, 9791 or 9798")
    return _with_check(data, "ISBN-13", value, 12, gs1.check_digit(value[:12]))


def encode_isbn13(data: str) -> Symbol:
    return _ean13_symbol(ean13_pattern(data), data, data, "")


def _weighted_sum(digits: str, weights: range) -> int:
    """Sum of weight × digit over ASCII ``digits``, taken from their bytes (digit + 48)."""
    return sum(map(mul, weights, digits.encode())) - 48 * sum(weights)


def _isbn10_check(body: str) -> str:
    rest = _weighted_sum(body, range(1, 10)) % 11  # body: 9 digits
    return "X" if rest == 10 else str(rest)


def _normalize_mod11(data: str, name: str, n: int, check: Callable[[str], str], chars: str) -> str:
    """ISBN-10 / ISSN: ``n`` digits and a mod-11 check character (digit or X), hyphens and spaces dropped."""
    value = data.strip().replace("-", "").replace(" ", "").upper()
    body = value[:n]
    if not (body.isascii() and body.isdigit()) or len(body) != n:
        raise _invalid(data, name, chars)
    if len(value) > n + 1 or (len(value) == n + 1 and value[n] not in "0123456789X"):
        raise _invalid(data, name, chars)
    return _with_check(data, name, value, n, check(body))


def _as_ean13(data: str, ean12: str) -> Symbol:
    """An ISBN-10 or ISSN rendered in its EAN-13 form; the text keeps the data's own check character."""
    ean = ean12 + gs1.check_digit(ean12)
    return _ean13_symbol(ean13_pattern(ean), data, data, "", content=ean)


def normalize_isbn10(data: str) -> str:
    return _normalize_mod11(data, "ISBN-10", 9, _isbn10_check, _TEN_CHARS)


def encode_isbn10(data: str) -> Symbol:
    return _as_ean13(data, "978" + data[:9])  # the Bookland form


def _issn_check(body: str) -> str:
    rest = -_weighted_sum(body, range(8, 1, -1)) % 11  # body: 7 digits
    return "X" if rest == 10 else str(rest)


def normalize_issn(data: str) -> str:
    return _normalize_mod11(data, "ISSN", 7, _issn_check, _EIGHT_CHARS)


def encode_issn(data: str) -> Symbol:
    return _as_ean13(data, "977" + data[:7] + "00")  # issue/price code 00


def normalize_ean14(data: str) -> str:
    value = _digits(data, "EAN-14", (13, 14))
    return _with_check(data, "EAN-14", value, 13, EAN14(value[:13], writer=_WRITER).get_fullcode()[-1])


def encode_ean14(data: str) -> Symbol:
    pattern = _build(Gs1_128("01" + data, writer=_WRITER))
    return _symbol(pattern, data=data, content="01" + data, text=f"(01){data}", check_digit=data[-1])


# --------------------------------------------------------------------------- GS1-128


def _gs1_too_long(data: str) -> DataTooLong:
    return DataTooLong(f"data: {show(data)} is too long for GS1-128: at most {GS1_MAX_CHARS} characters", field="data")


def normalize_gs1_128(data: str, requisites: bool = True) -> str:
    """``(01)09506000134352(10)ABC`` (canonical form), or a raw element string with GS (0x1D) separators,
    validated by ``gs1.parse`` (AI table, check digits, dates, AI pairs)."""
    if not data.startswith("(") and len(data) > GS1_MAX_CHARS:
        raise _gs1_too_long(data)
    elements = gs1.parse(data, requisites=requisites)
    if data.startswith("("):
        canonical = gs1.bracketed(elements)
        if len(gs1.raw(elements)) > GS1_MAX_CHARS:
            raise _gs1_too_long(data)
        return canonical
    return data


def _gs1_raw(canonical: str) -> str:
    """Element string as encoded: FNC1 (shown as GS) after every variable-length element but the last."""
    if not canonical.startswith("("):
        return canonical
    return gs1.raw([gs1.Element(ai, v, ai[:2] in gs1.PREDEFINED_LENGTH) for ai, v in _split(canonical)])


def _split(canonical: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in _GS1_ELEMENT.finditer(canonical)]


def _gs1_text(canonical: str) -> str:
    """Human-readable text: AIs in parentheses, also for raw input."""
    if canonical.startswith("("):
        return canonical
    return gs1.bracketed(gs1.parse(canonical, requisites=False))


def encode_gs1_128(data: str, requisites: bool = True) -> Symbol:
    raw = _gs1_raw(data)
    pattern = _build(Gs1_128(raw.replace(GS, _FNC1), writer=_WRITER))
    return Symbol(
        modules=pattern_to_modules(pattern),
        linear=True,
        data=data,
        content=raw,
        text=_gs1_text(data),
        extra={"gs1_ai_table": gs1.AI_TABLE_VERSION},
        symbology_id="]C1",
    )


# --------------------------------------------------------------------------- general purpose 1D


def _check_length(data: str, kind: str, limit: int = MAX_LINEAR_CHARS) -> None:
    if len(data) > limit:
        raise DataTooLong(
            f"data: {show(data)} is too long for {kind}: {len(data)} characters, at most {limit}",
            field="data",
        )


class _Code128(Code128):
    """python-barcode's Code 128 with its start-code shortcut fixed. ``_try_to_optimize`` turns
    ``[START x, CODE y]`` into ``[START y]``, but it also fires on ``[START C, 99]``, where 99 is the data
    pair "99" and not the CODE C switch: a leading "99" vanished ("99" encoded as nothing, "990" as "0")."""

    def _try_to_optimize(self, encoded: list[int]) -> list[int]:
        if encoded[:2] == [code128_charset.START_CODES["C"], 99]:  # data "99", not a switch to C while in C
            return encoded
        return super()._try_to_optimize(encoded)


def normalize_code128(data: str) -> str:
    _check_length(data, "Code 128")
    bad = sorted({ch for ch in data if ord(ch) > 0x7F})
    if bad:
        raise _invalid(data, "Code 128", f"characters {''.join(bad)!r} are outside ASCII")
    return data


def encode_code128(data: str) -> Symbol:
    return _symbol(_build(_Code128(data, writer=_WRITER)), data=data, content=data, text=data)


def normalize_code39(data: str) -> str:
    """Upper-cased, like python-barcode does (Code 39 has no lower case; full-ASCII mode is not offered)."""
    _check_length(data, "Code 39")
    value = data.upper()
    bad = sorted({ch for ch in value if ch not in _CODE39_CHARS})
    if bad:
        raise _invalid(data, "Code 39", f"characters {''.join(bad)!r} are not in 0-9 A-Z -. $/+%")
    return value


def encode_code39(data: str) -> Symbol:
    return _symbol(_build(Code39(data, writer=_WRITER, add_checksum=False)), data=data, content=data, text=data)


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
    return _symbol(_build(ITF(data, writer=_WRITER)), data=data, content=data, text=data)


def normalize_itf14(data: str) -> str:
    """13 digits (check digit computed) or 14 (check digit verified): a GTIN-14 for ITF-14."""
    value = _digits(data, "ITF-14", (13, 14), drop=" ")
    return _with_check(data, "ITF-14", value, 13, gs1_check_digit(value[:13]))


def encode_itf14(data: str) -> Symbol:
    pattern = _build(ITF(data, writer=_WRITER, narrow=1, wide=3))  # X = narrow bar, wide:narrow 3:1
    text = f"{data[0]} {data[1:3]} {data[3:8]} {data[8:13]} {data[13]}"
    symbol = _symbol(pattern, data=data, content=data, text=text, check_digit=data[-1])
    return replace(symbol, quiet_zone=QUIET_ITF14)


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
        raise _invalid(data, "Codabar", f"at least {MIN_CODABAR_BODY} characters between start and stop are needed")
    _check_length(body, "Codabar")
    return value


def encode_codabar(data: str) -> Symbol:
    return _symbol(_build(CODABAR(data, writer=_WRITER)), data=data, content=data, text=data)


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
        check = PZN7(value[:6], writer=_WRITER).pzn[-1]
    except BarcodeError:
        raise _invalid(data, "PZN", "PZN7 numbers whose check sum is 10 are never issued") from None
    return _with_check(data, "PZN", value, 6, check)


def encode_pzn(data: str) -> Symbol:
    pattern = _build(Code39("-" + data, writer=_WRITER, add_checksum=False))
    return _symbol(pattern, data=data, content="-" + data, text=f"PZN-{data}", check_digit=data[-1])
