"""qr_mask: the (Micro) QR symbol and data mask are the ones segno's automatic mask choice produces."""

from __future__ import annotations

import numpy as np
import pytest
import segno
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from segno import consts, encoder

from render.encoders import qr, qr_mask

LEVELS = ["L", "M", "Q", "H"]
NUMERIC = "0123456789"
ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


def _segno_matrix(m: np.ndarray) -> tuple[bytearray, ...]:
    return tuple(bytearray(row.astype(np.uint8).tobytes()) for row in m)


def _assert_same(data: str, error: str | None, micro: bool, boost: bool) -> None:
    """qr_mask.make builds exactly segno.make's symbol (or raises where segno raises)."""
    try:
        ref = segno.make(data, error=error, micro=micro, boost_error=boost)
    except ValueError:
        with pytest.raises(Exception):  # noqa: B017 -- any error: the caller falls back to segno
            qr_mask.make(data, error, None, micro, boost)
        return
    built = qr_mask.make(data, error, None, micro, boost)
    got = built.code
    assert (got.version, got.error, got.mode, got.mask) == (ref.version, ref.error, ref.mode, ref.mask)
    assert got.matrix == ref.matrix
    assert np.array_equal(built.modules, qr._matrix(ref))


def _fill(version: int, error: str, alphabet: str) -> str:
    """The longest string over ``alphabet`` (cycled) that segno puts in ``version`` at ``error``."""
    err = consts.ERROR_MAPPING[error]

    def version_of(n: int) -> int:
        text = (alphabet * (n // len(alphabet) + 1))[:n]
        return int(encoder.find_version(encoder.prepare_data(text, None, None), err, False, False))

    lo, hi = 1, 7089
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            fits = version_of(mid) <= version
        except segno.DataOverflowError:
            fits = False
        lo, hi = (mid, hi) if fits else (lo, mid - 1)
    return (alphabet * (lo // len(alphabet) + 1))[:lo]


def test_enabled_for_the_installed_segno() -> None:
    # fails after a segno upgrade outside 1.6.x: re-check segno's encoder, then widen qr_mask.ENABLED
    assert qr_mask.ENABLED, segno.__version__


# ------------------------------------------------------------------------------------------ scoring


_CHUNKS = ["1011101", "0000", "1111", "1", "0", "1011", "10111011101", "1011101011101", "00001011101"]


def _matrices(n: int, k: int, seed: int) -> np.ndarray:
    """``k`` square 0/1 matrices, rows assembled from N3-pattern fragments and runs."""
    rng = np.random.default_rng(seed)
    out = np.zeros((k, n, n), dtype=np.bool_)
    for m in range(k):
        for i in range(n):
            row = "".join(rng.choice(_CHUNKS, size=n // 2))
            row = (row + "0" * n)[:n] if rng.random() < 0.5 else (("0" * n) + row)[-n:]
            out[m, i] = np.frombuffer(row.encode(), dtype=np.uint8) == ord("1")
        if rng.random() < 0.5:
            out[m] = out[m].T  # patterns along the columns too
    return out


@settings(max_examples=60, deadline=None)
@given(n=st.integers(21, 49), k=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_qr_penalties_equal_segnos_scores(n: int, k: int, seed: int) -> None:
    masked = _matrices(n, k, seed)
    expected = [encoder.evaluate_mask(_segno_matrix(m), n, n) for m in masked]
    assert qr_mask.qr_penalties(masked) == expected


@pytest.mark.parametrize("n", [21, 64, 65, 129, 177])
def test_qr_penalties_random_sizes(n: int) -> None:
    rng = np.random.default_rng(n)
    masked = rng.random((3, n, n)) < rng.random((3, 1, 1))
    expected = [encoder.evaluate_mask(_segno_matrix(m), n, n) for m in masked]
    assert qr_mask.qr_penalties(masked) == expected


def test_n3_overlapping_patterns_follow_segnos_scan() -> None:
    # 1011101 at 4, and again at 8 (overlapping): segno counts the first (light before it), then resumes
    # its search after it and never sees the second, although that one has light modules after it
    row = "0000" + "10111011101" + "0" * 6
    m = np.zeros((1, 21, 21), dtype=np.bool_)
    m[0, 10] = np.frombuffer(row.encode(), dtype=np.uint8) == ord("1")
    n3 = encoder.mask_scores(_segno_matrix(m[0]), 21, 21)[2]
    assert n3 == 40
    assert qr_mask.qr_penalties(m) == [encoder.evaluate_mask(_segno_matrix(m[0]), 21, 21)]


def test_popcount_fallback_matches() -> None:
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2**63, size=(5, 3, 4), dtype=np.uint64)
    expected = [sum(bin(int(x)).count("1") for x in bits[:, i].ravel()) for i in range(3)]
    assert qr_mask._popcounts(bits).tolist() == expected
    assert qr_mask._popcounts_by_table(bits).tolist() == expected  # numpy < 2 (no bitwise_count)


@settings(max_examples=30, deadline=None)
@given(n=st.sampled_from([11, 13, 15, 17]), seed=st.integers(0, 2**32 - 1))
def test_micro_scores_equal_segnos(n: int, seed: int) -> None:
    masked = np.random.default_rng(seed).random((4, n, n)) < 0.5
    assert qr_mask.micro_scores(masked) == [encoder.evaluate_micro_mask(_segno_matrix(m), n, n) for m in masked]


# ------------------------------------------------------------------------------------------ codewords


@settings(max_examples=40, deadline=None)
@given(data=st.binary(min_size=1, max_size=150), num_ec=st.sampled_from(sorted(consts.GEN_POLY)))
def test_rs_remainder_equals_segnos(data: bytes, num_ec: int) -> None:
    ec_info = consts.ECC[1][consts.ERROR_LEVEL_L][0]._replace(num_blocks=1, num_data=len(data))
    ec_info = ec_info._replace(num_total=len(data) + num_ec)
    buff = encoder.Buffer()
    buff.extend(np.unpackbits(np.frombuffer(data, dtype=np.uint8)).tolist())
    _, error_blocks = encoder.make_blocks([ec_info], buff)
    assert qr_mask.rs_remainder(data, num_ec) == bytes(error_blocks[0])


texts = st.one_of(
    st.text(alphabet=NUMERIC, min_size=0, max_size=400),
    st.text(alphabet=ALNUM, min_size=1, max_size=300),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz/:.?=&-_0123456789", min_size=1, max_size=300),
    st.text(alphabet="aéüß€Ωж漢字日本語\U0001f600 ", min_size=1, max_size=80),
    st.text(min_size=1, max_size=60),
)


@settings(max_examples=80, deadline=None)
@given(data=texts, mode=st.sampled_from([None, "byte"]))
def test_prepare_data_equals_segnos(data: str, mode: str | None) -> None:
    mode_const = encoder.normalize_mode(mode)
    try:
        expected = encoder.prepare_data(data, mode_const, None)
    except ValueError:
        with pytest.raises(ValueError):
            qr_mask.prepare_data(data, mode_const)
        return
    got = qr_mask.prepare_data(data, mode_const)
    assert list(got) == list(expected)
    assert (got.modes, got.bit_length) == (expected.modes, expected.bit_length)


# ------------------------------------------------------------------------------------------ symbols


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=texts, error=st.sampled_from(LEVELS))
def test_qr_symbol_equals_segnos_automatic_mask(data: str, error: str) -> None:
    _assert_same(data, error, micro=False, boost=False)


@pytest.mark.parametrize("version", range(1, 41))
def test_every_qr_version(version: int) -> None:
    error = LEVELS[version % 4]
    alphabet = [NUMERIC, ALNUM, "https://example.com/?q=", "naïve café "][version % 4]
    data = _fill(version, error, alphabet)
    assert segno.make_qr(data, error=error, boost_error=False).version == version
    _assert_same(data, error, micro=False, boost=False)


@pytest.mark.parametrize("error", LEVELS)
@pytest.mark.parametrize("version", [7, 21, 40])  # version information; 4-bit remainder; the largest
def test_large_versions_all_levels(version: int, error: str) -> None:
    _assert_same(_fill(version, error, "The quick brown fox 0123456789. "), error, micro=False, boost=False)


def test_every_mask_pattern_is_chosen() -> None:
    seen: set[int] = set()
    for i in range(300):
        data = f"https://example.com/item/{i}"
        _assert_same(data, "M", micro=False, boost=False)
        seen.add(qr_mask.make(data, "M", None, False, False).code.mask)
        if len(seen) == 8:
            break
    assert seen == set(range(8))


def test_boosted_error_level() -> None:
    _assert_same("https://example.com", "L", micro=False, boost=True)


micro_texts = st.one_of(
    st.text(alphabet=NUMERIC, min_size=1, max_size=36),
    st.text(alphabet=ALNUM, min_size=1, max_size=22),
    st.text(alphabet="abcxyz!é", min_size=1, max_size=16),
    st.text(alphabet="漢字日本", min_size=1, max_size=10),
)


@settings(max_examples=80, deadline=None)
@given(data=micro_texts, error=st.sampled_from([None, "L", "M", "Q", "H"]))
def test_micro_symbol_equals_segnos_automatic_mask(data: str, error: str | None) -> None:
    _assert_same(data, error, micro=True, boost=error is None)


@pytest.mark.parametrize(
    ("data", "error", "version"),
    [
        ("12345", None, "M1"),
        ("1" * 10, "L", "M2"),
        ("1" * 8, "M", "M2"),
        ("A" * 5, "M", "M2"),
        ("1" * 23, "L", "M3"),
        ("1" * 18, "M", "M3"),
        ("a" * 9, "L", "M3"),
        ("1" * 35, "L", "M4"),
        ("1" * 30, "M", "M4"),
        ("HELLO WORLD 1", "Q", "M4"),
        ("a" * 9, "Q", "M4"),
    ],
)
def test_every_micro_version(data: str, error: str | None, version: str) -> None:
    assert segno.make_micro(data, error=error, boost_error=error is None).version == version
    _assert_same(data, error, micro=True, boost=error is None)


# ------------------------------------------------------------------------------------------ qr.py


def test_encoders_use_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = segno.make_qr("https://example.com/item/12345", error="M", boost_error=False)
    expected_micro = segno.make_micro("12345678")

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("segno's automatic mask path was used")

    monkeypatch.setattr(segno, "make", refuse)
    monkeypatch.setattr(segno, "make_qr", refuse)
    monkeypatch.setattr(segno, "make_micro", refuse)
    symbol = qr.encode_qr("https://example.com/item/12345", None)
    assert np.array_equal(symbol.modules, qr._matrix(expected))
    assert np.array_equal(qr.encode_micro_qr("12345678", None).modules, qr._matrix(expected_micro))


def test_falls_back_to_segno(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = qr.describe_qr("éé ok", "Q")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("internals changed")

    monkeypatch.setattr(qr_mask, "make", broken)
    slow = qr.describe_qr("éé ok", "Q")
    assert np.array_equal(fast.modules, slow.modules)
    assert (fast.version, fast.error_correction, fast.extra) == (slow.version, slow.error_correction, slow.extra)
