"""Hypothesis strategies of *valid* data per barcode type, as (data, expected reader content) pairs."""

from __future__ import annotations

import string

from hypothesis import strategies as st

from tests.render.helpers import gtin_check

GS = "\x1d"
digits = st.text(alphabet="0123456789", min_size=1, max_size=1)


def _digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


def _gtin(body_len: int, prefix: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[tuple[str, str]]:
    """Body with or without its (correct) check digit → (data, full code)."""

    @st.composite
    def build(draw: st.DrawFn) -> tuple[str, str]:
        head = draw(prefix) if prefix is not None else ""
        body = head + draw(_digits(body_len - len(head)))
        full = body + gtin_check(body)
        return (draw(st.sampled_from([body, full])), full)

    return build()


@st.composite
def _isbn10(draw: st.DrawFn) -> tuple[str, str]:
    body = draw(_digits(9))
    rest = sum(i * int(d) for i, d in enumerate(body, start=1)) % 11
    check = "X" if rest == 10 else str(rest)
    data = draw(st.sampled_from([body, body + check, f"{body[0]}-{body[1:4]}-{body[4:9]}-{check}"]))
    ean = "978" + body
    return data, ean + gtin_check(ean)


@st.composite
def _issn(draw: st.DrawFn) -> tuple[str, str]:
    body = draw(_digits(7))
    rest = (11 - sum(w * int(d) for w, d in zip(range(8, 1, -1), body, strict=True)) % 11) % 11
    check = "X" if rest == 10 else str(rest)
    data = draw(st.sampled_from([body, body + check, f"{body[:4]}-{body[4:]}{check}"]))
    ean = "977" + body + "00"
    return data, ean + gtin_check(ean)


@st.composite
def _ean14(draw: st.DrawFn) -> tuple[str, str]:
    data, full = draw(_gtin(13))
    return data, "01" + full


_GS1_VALUE = st.text(alphabet=string.ascii_letters + string.digits + "!\"%&'*+,-./:;<=>?_", min_size=1, max_size=8)


@st.composite
def _gs1(draw: st.DrawFn) -> tuple[str, str]:
    elements: list[tuple[str, str, bool]] = []  # (ai, value, fixed length)
    with_gtin = draw(st.booleans())
    if with_gtin:  # (10), (17), (21), (240) need a GTIN beside them (GS1 mandatory associations)
        body = draw(_digits(13))
        elements.append(("01", body + gtin_check(body), True))
        if draw(st.booleans()):
            date = f"{draw(st.integers(0, 99)):02d}{draw(st.integers(1, 12)):02d}{draw(st.integers(0, 28)):02d}"
            elements.append(("17", date, True))
    choices = ["10", "21", "240", "91"] if with_gtin else ["91", "90"]
    for ai in draw(st.lists(st.sampled_from(choices), max_size=2, unique=True)):
        elements.append((ai, draw(_GS1_VALUE), False))
    if not elements:
        elements.append(("91", draw(_GS1_VALUE), False))
    data = "".join(f"({ai}){value}" for ai, value, _ in elements)
    parts = []
    for i, (ai, value, fixed) in enumerate(elements):
        parts.append(ai + value)
        if not fixed and i < len(elements) - 1:
            parts.append(GS)
    return data, "".join(parts)


@st.composite
def _pzn(draw: st.DrawFn) -> tuple[str, str]:
    if draw(st.booleans()):  # PZN7: 6 digits, with or without the check digit
        body = draw(_digits(6).filter(lambda b: sum(int(d) * w for w, d in enumerate(b, start=2)) % 11 != 10))
        check = str(sum(int(d) * w for w, d in enumerate(body, start=2)) % 11)
        data = draw(st.sampled_from([body, body + check, f"PZN-{body}{check}"]))
    else:  # PZN8: always 8 digits (7 digits alone would be a PZN7 with its check digit)
        body = draw(_digits(7).filter(lambda b: sum(int(d) * w for w, d in enumerate(b, start=1)) % 11 != 10))
        check = str(sum(int(d) * w for w, d in enumerate(body, start=1)) % 11)
        data = draw(st.sampled_from([body + check, f"PZN-{body}{check}", f"-{body}{check}"]))
    return data, "-" + body + check


@st.composite
def _codabar(draw: st.DrawFn) -> tuple[str, str]:
    body = draw(st.text(alphabet="0123456789-$:/.+", min_size=2, max_size=20))
    start, stop = draw(st.sampled_from("ABCD")), draw(st.sampled_from("ABCD"))
    if draw(st.booleans()):
        return body, f"A{body}A"
    return f"{start}{body}{stop}", f"{start}{body}{stop}"


def _same(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str, str]]:
    return strategy.map(lambda s: (s, s))


_TEXT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=60)


def _upce_to_upca(upce: str) -> str:
    """UPC-E (number system + 6 digits) → UPC-A body (11 digits), per the GS1 zero-suppression table."""
    ns, d = upce[0], upce[1:7]
    last = d[5]
    expansions = {"0": d[:2] + "00000" + d[2:5], "1": d[:2] + "10000" + d[2:5], "2": d[:2] + "20000" + d[2:5],
                  "3": d[:3] + "00000" + d[3:5], "4": d[:4] + "00000" + d[4]}  # fmt: skip
    return ns + expansions.get(last, d[:5] + "0000" + last)


@st.composite
def _upce(draw: st.DrawFn) -> tuple[str, str]:
    ns = draw(st.sampled_from("01"))
    # canonical zero suppressions only: last digit 3 needs a 3rd digit 3-9, 4 a 4th digit 1-9, 5-9 a 5th 1-9
    six = draw(
        _digits(6).filter(
            lambda d: (
                not (d[5] == "3" and d[2] in "012")
                and not (d[5] == "4" and d[3] == "0")
                and not (d[5] in "56789" and d[4] == "0")
            )
        )
    )
    check = gtin_check(_upce_to_upca(ns + six))
    full = ns + six + check
    data = draw(st.sampled_from([full, ns + six] + ([six] if ns == "0" else [])))
    return data, full


@st.composite
def _digital_link(draw: st.DrawFn) -> tuple[str, str]:
    body = draw(_digits(13))
    gtin = body + gtin_check(body)
    lot = draw(st.text(alphabet=string.ascii_letters + string.digits, min_size=0, max_size=10))
    uri = f"https://id.gs1.org/01/{gtin}" + (f"/10/{lot}" if lot else "")
    data = draw(st.sampled_from([uri, f"(01){gtin}" + (f"(10){lot}" if lot else "")]))
    return data, uri


VALID: dict[str, st.SearchStrategy[tuple[str, str]]] = {
    "qr": _same(_TEXT),
    "micro_qr": _same(
        st.one_of(
            st.text(alphabet="0123456789", min_size=1, max_size=35),
            st.text(alphabet=string.ascii_uppercase + string.digits + " $%*+-./:", min_size=1, max_size=21),
            st.text(alphabet=string.printable, min_size=1, max_size=15),
        )
    ),
    "ean13": _gtin(12),
    "ean8": _gtin(7),
    "upca": _gtin(11),
    "jan": _gtin(12, st.sampled_from([*(str(n) for n in range(450, 460)), *(str(n) for n in range(490, 500))])),
    "isbn13": _gtin(12, st.sampled_from(["978", "9791", "9798"])),
    "isbn10": _isbn10(),
    "issn": _issn(),
    "ean14": _ean14(),
    "gs1_128": _gs1(),
    "code128": _same(st.text(st.characters(max_codepoint=127), min_size=1, max_size=40)),
    "code39": st.text(alphabet=string.ascii_letters + string.digits + "-. $/+%", min_size=1, max_size=30).map(
        lambda s: (s, s.upper())
    ),
    "itf": st.text(alphabet="0123456789", min_size=3, max_size=30).map(
        lambda s: (s, s if len(s) % 2 == 0 else "0" + s)
    ),
    "codabar": _codabar(),
    "pzn": _pzn(),
    "datamatrix": _same(_TEXT),
    "pdf417": _same(_TEXT),
    "aztec": _same(_TEXT),
    "itf14": _gtin(13),
    "upce": _upce(),
    "gs1_datamatrix": _gs1(),
    "gs1_qr": _gs1(),
    "gs1_digital_link": _digital_link(),
}
