"""QR Code and Micro QR Code, encoded with segno.

Data is taken verbatim; segno picks the segment modes (numeric / alphanumeric / byte as ISO-8859-1 when
possible, else UTF-8 without ECI / kanji). ``boost_error=False`` whenever a level is requested, so the
reported level is the requested one (QR defaults to M; Micro QR without a level is segno's choice).

Symbols are built by ``qr_mask.make``: segno's own steps, with the data mask picked by vectorised code
that reproduces segno's choice (identical symbols, several times faster). Whatever it cannot build
(invalid input, overflow, a segno release it was not checked against) is left to segno itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import segno
from segno import consts as segno_consts
from segno import encoder as segno_encoder

from render._text import show
from render.encoders import qr_mask
from render.symbol import Symbol
from schemas.errors import DataTooLong, InvalidData, InvalidOption

# bits per character of a segment mode, as a function of the character count
_MODE_BITS: dict[str, Callable[[int], int]] = {
    "numeric": lambda n: 10 * (n // 3) + (0, 4, 7)[n % 3],
    "alphanumeric": lambda n: 11 * (n // 2) + 6 * (n % 2),
    "byte": lambda n: 8 * n,
    "kanji": lambda n: 13 * n,
    "hanzi": lambda n: 13 * n,
}


def _matrix(code: segno.QRCode) -> np.ndarray[Any, np.dtype[np.bool_]]:
    rows = code.matrix
    flat = np.frombuffer(b"".join(bytes(r) for r in rows), dtype=np.uint8)
    return (flat != 0).reshape(len(rows), -1)


def _latin1(data: str) -> bool:
    try:
        data.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _segno(data: str, error_correction: str | None, micro: bool, mode: str | None) -> segno.QRCode:
    if micro:
        if error_correction is None:
            return segno.make_micro(data, mode=mode)
        return segno.make_micro(data, error=error_correction, mode=mode, boost_error=False)
    return segno.make_qr(data, error=error_correction or "M", mode=mode, boost_error=False)


def _build(data: str, error_correction: str | None, micro: bool, mode: str | None) -> qr_mask.Built:
    """What ``_segno`` returns (same symbol, same mask), via ``qr_mask``; segno itself where that fails."""
    if micro:
        level, boost = error_correction, error_correction is None  # no level: segno's default boost
    else:
        level, boost = error_correction or "M", False
    try:
        return qr_mask.make(data, level, mode, micro, boost)
    except Exception:  # noqa: S110 -- bad input (segno raises the proper error below) or segno mismatch
        pass
    code = _segno(data, error_correction, micro, mode)
    return qr_mask.Built(code, _matrix(code))


def _make(data: str, error_correction: str | None, micro: bool) -> qr_mask.Built:
    kind = "Micro QR Code" if micro else "QR Code"
    try:
        built = _build(data, error_correction, micro, None)
        if built.code.mode == "kanji" and _latin1(data):
            # segno 1.6 picks kanji mode for ISO-8859-1 text whose *Latin-1 bytes* happen to pair into
            # Shift_JIS kanji ranges (e.g. "éé"), which then decodes as Japanese: force byte mode.
            built = _build(data, error_correction, micro, "byte")
        return built
    except segno.DataOverflowError:
        level = f" at error correction {error_correction}" if error_correction else ""
        raise DataTooLong(
            f"data: {show(data)} does not fit in any {kind}{level} ({len(data)} characters)", field="data"
        ) from None
    except ValueError as exc:  # e.g. a level the chosen Micro QR version does not offer
        if error_correction is None:
            message = f"data: {show(data)} cannot be encoded as a {kind}: {exc}"
            raise InvalidData(message, field="data") from None
        raise InvalidOption(
            f"options.error_correction: {show(error_correction)} cannot be used for this {kind}: {exc}",
            field="options.error_correction",
        ) from None


def capacity(data: str, code: segno.QRCode) -> dict[str, Any] | None:
    """Remaining room in the chosen version at the chosen error level.

    ``data_bits``: data capacity of (version, level); ``used_bits``: segment headers + payload as segno
    encodes ``data``; ``free_bits``: the difference; ``free_chars``: how many more characters of the
    final segment's mode (``mode``: numeric digits, alphanumeric chars, bytes, kanji) could be appended
    without changing version or level.
    """
    try:
        version = code.version
        vconst = segno_consts.MICRO_VERSION_MAPPING[version] if isinstance(version, str) else int(version)
        econst = None if code.error is None else segno_consts.ERROR_MAPPING[code.error.upper()]
        table: Any = segno_consts.SYMBOL_CAPACITY
        total = int(table[vconst][econst])
        modes: Any = segno_consts.MODE_MAPPING
        segments = segno_encoder.prepare_data(data, modes[code.mode], None)  # str data: one segment
        used = int(segments.bit_length_with_overhead(vconst, False))
        last = segments[-1]
        mode = segno_encoder.get_mode_name(last.mode)
        ver_range = segno_encoder.version_range(vconst) if vconst > 0 else vconst
        count_bits = segno_consts.CHAR_COUNT_INDICATOR_LENGTH[last.mode][ver_range]
        bits_of = _MODE_BITS[mode]
        base = used - len(last.bits)
        lo, hi = 0, max(0, total - used)
        while lo < hi:  # largest k with the extended last segment still fitting
            mid = (lo + hi + 1) // 2
            n = last.char_count + mid
            if base + bits_of(n) <= total and n < (1 << count_bits):
                lo = mid
            else:
                hi = mid - 1
    except Exception:  # segno internals changed: capacity is informative only
        return None
    return {"data_bits": total, "used_bits": used, "free_bits": total - used, "mode": mode, "free_chars": lo}


def _encode(data: str, error_correction: str | None, micro: bool) -> tuple[Symbol, segno.QRCode]:
    built = _make(data, error_correction, micro)
    code = built.code
    level = code.error.upper() if code.error else None
    symbol = Symbol(
        modules=built.modules,
        linear=False,
        data=data,
        content=data,
        version=code.version,
        error_correction=level,
        extra={"mode": code.mode},
    )
    return symbol, code


def encode_qr(data: str, error_correction: str | None) -> Symbol:
    return _encode(data, error_correction, micro=False)[0]


def encode_micro_qr(data: str, error_correction: str | None) -> Symbol:
    return _encode(data, error_correction, micro=True)[0]


def describe_qr(data: str, error_correction: str | None) -> Symbol:
    symbol, code = _encode(data, error_correction, micro=False)
    symbol.extra["capacity"] = capacity(data, code)
    return symbol


def describe_micro_qr(data: str, error_correction: str | None) -> Symbol:
    symbol, code = _encode(data, error_correction, micro=True)
    symbol.extra["capacity"] = capacity(data, code)
    return symbol
