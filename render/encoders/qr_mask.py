"""(Micro) QR symbols exactly as segno builds them, with the data mask chosen by vectorised numpy code.

segno spends most of its time choosing the data mask: it applies each of the 8 (Micro QR: 4) patterns and
scores the result in pure Python, module by module. Here segno's own code still decides everything about
the content (``data_to_bytes`` / ``find_mode`` → segment mode, ``find_version``, ``boost_error_level``,
the bit stream with terminator and padding) and still draws the function patterns and the format /
version information; these steps are redone with numpy / big-integer arithmetic:

* packing a numeric / alphanumeric / byte segment into bits (``make_segment``; kanji: segno);
* Reed-Solomon error correction (``make_blocks``): a byte-wise LFSR on one Python int per block;
* codeword placement (``add_codewords``): the module order per version is computed once and cached;
* masking and mask selection (``find_and_apply_best_mask``): all patterns at once, QR penalties on
  bit-sliced planes (64 rows / columns per machine word), with segno's scoring reproduced exactly, quirks
  included (see ``qr_penalties`` and ``micro_scores``), and its tie-break (QR: the lowest-numbered
  pattern of minimal penalty; Micro QR: the lowest-numbered one of maximal score).

The result is the symbol ``segno.make(..., mask=None)`` returns, module for module, with the same mask
(tests compare the two over versions 1-40 and M1-M4, all levels and modes). ``make`` raises whatever
segno's internals raise for unusual input; callers fall back to segno itself then, and whenever
``ENABLED`` is false: a segno release other than 1.6.x, whose internals were not checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
import segno
from segno import consts, encoder

Bools = npt.NDArray[np.bool_]
Bytes = npt.NDArray[np.uint8]
Ints = npt.NDArray[np.intp]
Words = npt.NDArray[Any]  # uint64 bit planes (numpy's stubs lose track of bitwise results)

# The segno releases whose internals (and mask rule) this module mirrors; others use plain segno.
ENABLED = segno.__version__.startswith("1.6.")

_C: Any = consts  # segno ships no type information
_E: Any = encoder
_QRCode: Any = segno.QRCode  # its stub hides the constructor


# ---------------------------------------------------------------------------------------------- scoring


def qr_penalties(masked: Bools) -> list[int]:
    """segno's ``evaluate_mask`` (= sum of ``mask_scores``) of each ``(n, n)`` matrix in ``(k, n, n)``."""
    return _penalties(bit_planes(masked), masked.shape[-1])


def bit_planes(matrices: Bools) -> Words:
    """``(k, n, n)`` matrices, bit-sliced: ``planes[4 + p, mask]`` holds module ``p`` of every row (bit
    ``i`` of the first ``w`` words: row ``i``) and of every column (bit ``j`` of the next ``w`` words),
    with 4 light positions either side. Linear: the planes of ``a ^ b`` are the planes of ``a`` ^ those
    of ``b``."""
    k, n, _ = matrices.shape
    w = (n + 63) // 64  # words per section (rows / columns)
    rows = np.packbits(np.ascontiguousarray(matrices.transpose(0, 2, 1)), axis=2, bitorder="little")  # [., j, i]
    cols = np.packbits(matrices, axis=2, bitorder="little")  # [mask, i, j bytes]
    packed = np.zeros((n + 8, k, 16 * w), dtype=np.uint8)
    packed[4 : n + 4, :, : rows.shape[2]] = rows.transpose(1, 0, 2)
    packed[4 : n + 4, :, 8 * w : 8 * w + cols.shape[2]] = cols.transpose(1, 0, 2)
    return packed.view("<u8")


def _penalties(planes: Words, n: int) -> list[int]:
    """``qr_penalties`` of the matrices given as ``bit_planes``; each numpy operation below handles 64
    lines at once, and moving along a line is slicing.

    Evaluated as segno does: before format and version information are written (their areas and the
    dark module still light). N1: a run of ``L >= 5`` same-coloured modules in a row or column scores
    ``L - 2``; N2: 3 per 2x2 same-coloured block (overlapping blocks all count); N3: 40 per
    dark-light-dark³-light-dark (1011101) with 4 light modules (outside the symbol counts as light)
    before or after it, where segno's scan resumes 7 modules after a counted match (so a match starting 4
    or 6 modules after a counted one is not seen); N4: ``10 * int(abs(dark% - 50) / 5)`` in floats.
    """
    w = planes.shape[2] // 2
    lines = _valid_bits(n, w)  # bits of real lines (the rest of each section: padding, kept light)
    mod = planes[4 : n + 4]
    # N1 -- a run of L >= 5 holds L - 4 windows of 5 equal modules, one of them at the run's start
    eq = ~(mod[1:] ^ mod[:-1]) & lines  # [p]: module p + 1 == module p
    eq2 = eq[:-1] & eq[1:]
    five = eq2[:-2] & eq2[2:]  # [p]: modules p .. p + 4 equal
    starts = five[1:] & ~eq[: n - 5]  # ... and module p - 1 differs
    score = _popcounts(five) + 2 * (_popcounts(starts) + _popcounts(five[:1]))
    # N3 -- planes[q] is module q - 4: a match at p spans q = p + 4 .. p + 10
    m = n - 6
    match = planes[4 : m + 4] & ~planes[5 : m + 5] & planes[6 : m + 6] & planes[7 : m + 7]
    match &= planes[8 : m + 8] & ~planes[9 : m + 9] & planes[10 : m + 10]
    dark2 = planes[:-1] | planes[1:]
    dark4 = dark2[:-2] | dark2[2:]  # [q]: any dark module in planes[q : q + 4]
    counted = match & ~(dark4[:m] & dark4[11 : m + 11])  # light before (q = p) or after (q = p + 11)
    seen = counted.copy()
    seen[4:] &= ~counted[:-4]
    seen[6:] &= ~counted[:-6]
    score += 40 * _popcounts(seen)
    # N2 -- row[j] == row[j-1] == last_row[j] == last_row[j-1], with rows as bits: last_row = bit i - 1
    row_eq = eq[:, :, :w]  # [j - 1]: bit i: (i, j) == (i, j - 1)
    row_mod = mod[1:, :, :w]  # [j - 1]: bit i: (i, j)
    blocks = row_eq & _previous_line(row_eq) & ~(row_mod ^ _previous_line(row_mod))
    score += 3 * _popcounts(blocks)
    # N4 -- segno's float formula
    dark = _popcounts(mod[:, :, :w]).tolist()
    n4 = [10 * int(abs(float(d) / (n**2) * 100 - 50) / 5) for d in dark]
    return [int(s) + p for s, p in zip(score.tolist(), n4, strict=True)]


@cache
def _valid_bits(n: int, w: int) -> Words:
    section = np.packbits(np.arange(64 * w) < n, bitorder="little").view("<u8")
    return np.concatenate((section, section))


def _previous_line(bits: Words) -> Words:
    """Bit ``i`` takes bit ``i - 1`` (bit 0 of the first word: light), along the words of the last axis."""
    out = bits << np.uint64(1)
    if bits.shape[-1] > 1:
        out[..., 1:] |= bits[..., :-1] >> np.uint64(63)
    return out


_POPCOUNT8 = np.array([bin(b).count("1") for b in range(256)], dtype=np.intp)


def _popcounts(bits: Words) -> Ints:
    """Set bits of ``bits[:, mask, :]`` per mask."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.asarray(np.bitwise_count(bits).sum(axis=(0, 2), dtype=np.intp))
    return _popcounts_by_table(bits)


def _popcounts_by_table(bits: Words) -> Ints:
    as_bytes = np.ascontiguousarray(bits).view(np.uint8)
    return np.asarray(_POPCOUNT8[as_bytes].sum(axis=(0, 2)), dtype=np.intp)


def micro_scores(masked: Bools) -> list[int]:
    """segno's ``evaluate_micro_mask``: with SUM1 / SUM2 the dark modules of the right column / bottom
    row (without the timing-pattern module), ``SUM1 * 16 + SUM2`` if ``SUM1 <= SUM2`` else
    ``SUM2 * 16 + SUM1``. Higher is better."""
    s1 = np.count_nonzero(masked[:, 1:, -1], axis=1).tolist()
    s2 = np.count_nonzero(masked[:, -1, 1:], axis=1).tolist()
    return [a * 16 + b if a <= b else b * 16 + a for a, b in zip(s1, s2, strict=True)]


# ---------------------------------------------------------------------------------------------- layout


@dataclass(frozen=True, slots=True)
class _Layout:
    size: int
    base: Bools  # function patterns; data modules and the reserved format / version areas light
    order: Ints  # flat indices of the data modules, in codeword placement order
    masks: Bools  # (k, n, n): each data mask pattern, restricted to the data modules
    mask_planes: Words  # QR: ``bit_planes(masks)``


@cache
def _layout(version: int) -> _Layout:
    """Function patterns, placement order and masks of a version, from segno's own drawing functions."""
    size = _E.calc_matrix_size(version)
    is_micro = version < 1
    matrix = _E.make_matrix(size, size)  # timing pattern; format / version areas reserved (0)
    _E.add_finder_patterns(matrix, size, size)
    _E.add_alignment_patterns(matrix, size, size)
    raw = np.frombuffer(b"".join(matrix), dtype=np.uint8).reshape(size, size)
    region = raw == 2  # segno's ``is_encoding_region``
    order = _placement_order(region, version)
    i, j = np.indices((size, size))
    patterns = [np.asarray(fn(i, j), dtype=np.bool_) for fn in _E.get_data_mask_functions(is_micro)]
    masks = np.stack([np.broadcast_to(p, (size, size)) & region for p in patterns])
    base = raw == 1
    mask_planes = bit_planes(masks[:0] if is_micro else masks)
    for arr in (base, order, masks, mask_planes):
        arr.flags.writeable = False
    return _Layout(size, base, order, masks, mask_planes)


def _placement_order(region: Bools, version: int) -> Ints:
    """The modules segno's ``add_codewords`` fills, in order: two-module columns from the right,
    alternately upwards and downwards, skipping the vertical timing column (QR Code)."""
    size = region.shape[0]
    is_micro = version < 1
    inc = 2 if version in (_C.VERSION_M1, _C.VERSION_M3) else 0
    order: list[int] = []
    for start in range(size - 1, 0, -2):
        right = start - 1 if not is_micro and start <= 6 else start
        for vertical in range(size):
            for z in (0, 1):
                j = right - z
                upwards = ((right + inc) & 2) == 0
                if not is_micro:
                    upwards ^= j < 6
                i = (size - 1 - vertical) if upwards else vertical
                if region[i, j]:
                    order.append(i * size + j)
    return np.asarray(order, dtype=np.intp)


@lru_cache(maxsize=4096)
def _info(version: int, error: int | None, mask: int) -> tuple[Ints, Bools]:
    """Flat indices and values of the format / version information (and dark module), as written by
    segno's ``add_format_info`` and ``add_version_info``."""
    size = _E.calc_matrix_size(version)
    probe = tuple(bytearray(b"\x02" * size) for _ in range(size))
    _E.add_format_info(probe, version, error, mask)
    _E.add_version_info(probe, version)
    flat = np.frombuffer(b"".join(probe), dtype=np.uint8)
    where = np.flatnonzero(flat != 2)
    values = flat[where] == 1
    where.flags.writeable = False
    values.flags.writeable = False
    return where, values


# ---------------------------------------------------------------------------------------------- codewords

_ALNUM_VALUE = np.zeros(256, dtype=np.int64)
_ALNUM_VALUE[np.frombuffer(_C.ALPHANUMERIC_CHARS, dtype=np.uint8)] = np.arange(len(_C.ALPHANUMERIC_CHARS))


def _to_bits(values: npt.NDArray[np.int64], width: int) -> Bytes:
    shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((values[:, None] >> shifts) & 1).astype(np.uint8).reshape(-1)


def _segment_bits(data: bytes, mode: int) -> Bytes | None:
    """The bits segno's ``make_segment`` writes for ``data`` in numeric / alphanumeric / byte mode."""
    raw = np.frombuffer(data, dtype=np.uint8)
    if mode == _C.MODE_BYTE:
        return np.unpackbits(raw)
    if mode == _C.MODE_NUMERIC:  # groups of 3 digits in 10 bits, a final 1 / 2 digits in 4 / 7 bits
        full, rest = divmod(len(raw), 3)
        digits = raw.astype(np.int64) - ord("0")
        bits = _to_bits(digits[: 3 * full].reshape(full, 3) @ np.array([100, 10, 1], dtype=np.int64), 10)
        if rest:
            bits = np.concatenate((bits, _to_bits(np.array([int(data[-rest:])], dtype=np.int64), 3 * rest + 1)))
        return bits
    if mode == _C.MODE_ALPHANUMERIC:  # pairs as 45 * first + second in 11 bits, a final one in 6 bits
        values = _ALNUM_VALUE[raw]
        full = len(values) // 2
        bits = _to_bits(45 * values[0 : 2 * full : 2] + values[1 : 2 * full : 2], 11)
        if len(values) % 2:
            bits = np.concatenate((bits, _to_bits(values[-1:], 6)))
        return bits
    return None  # kanji / hanzi: segno


def prepare_data(content: str, mode: int | None) -> Any:
    """segno's ``prepare_data(content, mode, None)`` for a string (one segment): segno's byte conversion
    and mode detection; the segment's bits packed here, in numeric, alphanumeric and byte mode."""
    if mode is None or mode == _C.MODE_BYTE:
        data, length, encoding = _E.data_to_bytes(content, None)
        found = _C.MODE_BYTE if mode == _C.MODE_BYTE else _E.find_mode(data)
        bits = _segment_bits(data, found)
        if bits is not None:
            segments = _E.Segments()
            encoding = encoding if found == _C.MODE_BYTE else None
            segments.add_segment(_E._Segment(bytearray(bits.tobytes()), length, found, encoding))
            return segments
    return _E.prepare_data(content, mode, None)


@cache
def _rs_table(num_ec: int) -> tuple[int, ...]:
    """``table[c]``: the generator polynomial (without its leading term) times ``c``, as a big-endian int."""
    log, exp, gen = _C.GALIOS_LOG, _C.GALIOS_EXP, _C.GEN_POLY[num_ec]
    table = [0]
    for c in range(1, 256):
        table.append(int.from_bytes(bytes(exp[log[c] + g] for g in gen), "big"))
    return tuple(table)


def rs_remainder(data: bytes, num_ec: int) -> bytes:
    """Reed-Solomon error codewords of ``data``, as segno's ``make_blocks`` computes them."""
    table = _rs_table(num_ec)
    shift = 8 * (num_ec - 1)
    keep = (1 << shift) - 1
    reg = 0
    for byte in data:
        reg = ((reg & keep) << 8) ^ table[byte ^ (reg >> shift)]
    return reg.to_bytes(num_ec, "big")


def _interleave(blocks: Sequence[bytes]) -> Bytes:
    """Column-wise, skipping the missing tail of shorter blocks (segno: ``zip_longest`` minus ``None``)."""
    width = max(len(b) for b in blocks)
    grid = np.zeros((len(blocks), width), dtype=np.uint8)
    valid = np.zeros((len(blocks), width), dtype=np.bool_)
    for row, block in enumerate(blocks):
        grid[row, : len(block)] = np.frombuffer(block, dtype=np.uint8)
        valid[row, : len(block)] = True
    return grid.T[valid.T]


def message_bits(version: int, error: int | None, segments: Any) -> Bytes:
    """Data and error codewords, interleaved, as bits (segno's ``_encode`` up to ``make_final_message``,
    without the remainder bits: the modules they would fill are left light)."""
    is_micro = version < 1
    buff = _E.Buffer()
    ver, ver_range = (version, version) if is_micro else (None, _E.version_range(version))
    for segment in segments:
        _E.write_segment(buff, segment, ver, ver_range, False)
    capacity = _C.SYMBOL_CAPACITY[version][error]
    _E.write_terminator(buff, capacity, ver, len(buff))
    _E.write_padding_bits(buff, version, len(buff))
    _E.write_pad_codewords(buff, version, capacity, len(buff))
    # ``Buffer.toints``: groups of 8 bits, the last one zero-filled; ``make_blocks`` takes what it needs
    codewords = np.packbits(np.frombuffer(bytes(buff.getbits()), dtype=np.uint8)).tobytes()
    data_blocks: list[bytes] = []
    ec_blocks: list[bytes] = []
    pos = 0
    for ec in _C.ECC[version][error]:
        num_ec = ec.num_total - ec.num_data
        for _ in range(ec.num_blocks):
            block = codewords[pos : pos + ec.num_data]
            if len(block) != ec.num_data:
                raise ValueError("data stream shorter than the symbol's data capacity")
            pos += ec.num_data
            data_blocks.append(block)
            ec_blocks.append(rs_remainder(block, num_ec))
    data_bits = np.unpackbits(_interleave(data_blocks))
    if version in (_C.VERSION_M1, _C.VERSION_M3):
        data_bits = data_bits[:-4]  # the final data codeword has 4 bits (one block only)
    return np.concatenate((data_bits, np.unpackbits(_interleave(ec_blocks))))


# ---------------------------------------------------------------------------------------------- symbol


@dataclass(frozen=True, slots=True)
class Built:
    code: segno.QRCode
    modules: Bools  # ``code.matrix`` as a boolean array (dark: True)


def make(content: str, error: str | None, mode: str | None, micro: bool, boost_error: bool) -> Built:
    """``segno.make(content, error=..., mode=..., micro=..., boost_error=...)``, with mask and version
    chosen automatically, the ``encoding`` / ``eci`` / ``version`` / ``mask`` options at their defaults."""
    if not ENABLED:
        raise RuntimeError(f"segno {segno.__version__} is not the release this module mirrors")
    # segno.encoder.encode, for these options
    error_const = _E.normalize_errorlevel(error, accept_none=True)
    mode_const = _E.normalize_mode(mode)
    if micro and error_const == _C.ERROR_LEVEL_H:
        raise ValueError("level H is not available for Micro QR Codes")
    segments = prepare_data(content, mode_const)
    version = _E.find_version(segments, error_const, eci=False, micro=micro)
    if error_const is None and version != _C.VERSION_M1:
        error_const = _C.ERROR_LEVEL_L
    if boost_error:
        error_const = _E.boost_error_level(version, error_const, segments, False)
    # segno.encoder._encode
    layout = _layout(version)
    bits = message_bits(version, error_const, segments)
    remainder = len(layout.order) - len(bits)
    if not 0 <= remainder < 8:
        raise ValueError(f"{len(bits)} message bits for {len(layout.order)} data modules")
    symbol = layout.base.copy()
    symbol.reshape(-1)[layout.order[: len(bits)]] = bits.astype(np.bool_)  # remainder bits stay 0
    if version < 1:  # the highest score; the first one of equals
        scores = micro_scores(layout.masks ^ symbol)
        mask = scores.index(max(scores))
    else:  # the lowest penalty; the first one of equals
        penalties = _penalties(layout.mask_planes ^ bit_planes(symbol[None]), layout.size)
        mask = penalties.index(min(penalties))
    modules = symbol ^ layout.masks[mask]
    where, values = _info(version, error_const, mask)
    modules.reshape(-1)[where] = values
    size = layout.size
    raw = modules.view(np.uint8).tobytes()
    matrix = tuple(bytearray(raw[r : r + size]) for r in range(0, size * size, size))
    code: segno.QRCode = _QRCode(_E.Code(matrix, version, error_const, mask, segments))
    return Built(code, modules)
