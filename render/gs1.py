"""GS1 element strings: the one validator used by every GS1 symbology (GS1-128, GS1 Data Matrix, GS1 QR,
GS1 Digital Link).

* The AI table (format, length, character set, separator) is biip's, which is generated from GS1's
  published AI list; ``AI_TABLE_VERSION`` names it in item metadata.
* On top of its patterns: check digits (GS1 mod 10) of the key AIs (GTIN, SSCC, GLN, GSRN, GDTI, GCN,
  GRAI, ITIP), dates ``YYMMDD`` (month 01-12, day valid for the month; ``DD = 00`` allowed where the
  syntax dictionary says ``yymmd0``), times, and the mandatory (``req``) and invalid (``ex``) AI pairs of
  the GS1 Barcode Syntax Dictionary (``_PAIR_RULES`` below, transcribed from it).
* Input: bracketed ``(01)09506000134352(10)ABC`` or raw ``0109506000134352<GS>10ABC`` (GS = 0x1D, the
  FNC1 separator as readers transmit it; a leading FNC1/``]C1``/``]d2``/``]Q3`` is accepted and dropped).

Errors are ``InvalidData`` / ``InvalidCheckDigit`` naming the AI and the rule broken.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version
from urllib.parse import urlsplit

from biip import ParseError
from biip.gs1_application_identifiers import _GS1_APPLICATION_IDENTIFIERS as _BIIP_AIS
from biip.gs1_application_identifiers import GS1ApplicationIdentifier
from biip.gs1_digital_link_uris import GS1DigitalLinkURI
from biip.gs1_element_strings import GS1ElementString, GS1ElementStrings

from render._text import show
from schemas.errors import InvalidCheckDigit, InvalidData

GS = "\x1d"
AI_TABLE_VERSION = f"biip {version('biip')}"
_PREFIXES = ("]C1", "]e0", "]d2", "]Q3", "\xf1")  # symbology identifiers / FNC1 a reader or writer may prefix

# AI prefixes (first two digits) with a predefined total length: no FNC1 after them
# (GS1 General Specifications, figure 7.8.5-2).
PREDEFINED_LENGTH = {
    "00": 20, "01": 16, "02": 16, "03": 16, "04": 18,
    "11": 8, "12": 8, "13": 8, "14": 8, "15": 8, "16": 8, "17": 8, "18": 8, "19": 8, "20": 4,
    "31": 10, "32": 10, "33": 10, "34": 10, "35": 10, "36": 10, "41": 16,
}  # fmt: skip

# AI -> (start, length) of the digits within the value that end in a GS1 mod-10 check digit
_CHECKED = {
    "00": (0, 18), "01": (0, 14), "02": (0, 14), "03": (0, 14), "253": (0, 13), "255": (0, 13),
    "402": (0, 17), "8003": (1, 13), "8006": (0, 14), "8017": (0, 18), "8018": (0, 18), "8026": (0, 14),
    **{f"41{n}": (0, 13) for n in range(8)},
}  # fmt: skip
_KEY_NAMES = {"00": "SSCC", "01": "GTIN", "02": "GTIN", "03": "GTIN", "8017": "GSRN", "8018": "GSRN"}
# AI -> (date spec per 6-digit date part, "d0" = day 00 allowed); times checked as HHMM(SS)
_DATES = {
    "11": "d0", "12": "d0", "13": "d0", "15": "d0", "16": "d0", "17": "d0", "4324": "d0", "4325": "d0",
    "4326": "dd", "7003": "dd", "7006": "dd", "7007": "dd", "7011": "dd", "8008": "dd",
}  # fmt: skip

# Mandatory (req: each group needs one of its AIs present) and invalid (ex) pairings, from the GS1 Barcode
# Syntax Dictionary. "n" in a pattern is any digit.
_PAIR_TEXT = """
01 ex=02,255,37
02 req=37
10 req=01,02,8006,8026
11 req=01,02,8006,8026
12 req=8020
13 req=01,02,8006,8026
15 req=01,02,8006,8026
16 req=01,02,8006,8026
17 req=01,02,255,8006,8026
20 req=01,02,8006,8026
21 req=01,8006 ex=235
22 req=01
235 req=01
240 req=01,02,8006,8026
241 req=01,02,8006,8026
242 req=01,02,8006,8026
243 req=01
250 req=01,8006 req=21
251 req=01,8006
254 req=414
255 ex=01,02,415,8006,8020,8026
30 req=01,02
37 req=00 req=02,8026
390n req=255,8020 ex=390n,391n,394n,8111
391n req=8020 ex=391n
392n req=01 req=30,31nn,32nn,35nn,36nn ex=392n,393n
393n req=30,31nn,32nn,35nn,36nn ex=393n
394n req=255 ex=394n,8111
395n req=30,31nn,32nn,35nn,36nn ex=392n,393n,395n,8005
403 req=00
415 req=8020
420 ex=421
421 ex=4307
422 req=01,02,8006,8026 ex=426
423 req=01,02 ex=426
424 req=01,02 ex=426
425 req=01,02 ex=426
426 req=01,02
427 req=01,02 req=422
4303 req=4302
4313 req=4312
4330 req=00 ex=4331
4331 req=00 ex=4330
4332 req=00 ex=4333
4333 req=00 ex=4332
7001 req=01,02,8006,8026
7004 req=01 req=10
7020 req=01,8006 req=416
7021 req=01,8006
7022 req=7021
7241 req=8017,8018
7242 req=8017,8018
8001 req=01
8005 req=01,02
8006 ex=01,37
8007 req=415
8009 req=00,01
8011 req=8010
8012 req=01,8006
8017 ex=8018
8018 ex=8017
8019 req=8017,8018
8020 req=415
8026 req=37 ex=02,8006
8030 req=00,01,253,255,8003,8004,8006,8010,8017,8018
8111 req=255
8200 req=01
"""
# trade measures (req 01/02) and logistic measures (req 00/01): each excludes its other decimal positions
_TRADE = ("310", "311", "312", "313", "314", "315", "316", "320", "321", "322", "323", "324", "325", "326",
          "327", "328", "329", "350", "351", "352", "356", "357", "360", "361", "364", "365", "366")  # fmt: skip
_LOGISTIC = ("330", "331", "332", "333", "334", "335", "336", "340", "341", "342", "343", "344", "345", "346",
             "347", "348", "349", "353", "354", "355", "362", "363", "367", "368", "369")  # fmt: skip
# AIs of 43xx (ship-to / return-to) and 7002-7039 also require a key: listed in full here
_REQ00 = ("4300", "4301", "4302", "4304", "4305", "4306", "4307", "4308", "4309", "4310", "4311", "4312",
          "4314", "4315", "4316", "4317", "4318", "4319", "4320", "4321", "4322", "4323", "4326")  # fmt: skip
_REQ0102 = ("7002", "7003", "7005", "7006", "7007", "7008", "7009", "7010", "7011",
            *(f"703{n}" for n in range(10)))  # fmt: skip


@dataclass(frozen=True, slots=True)
class PairRule:
    req: tuple[tuple[str, ...], ...]
    ex: tuple[str, ...]
    req_re: tuple[re.Pattern[str], ...] = ()  # one alternation per req group ("n" = any digit)
    ex_re: re.Pattern[str] | None = None


def _alternation(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(p.replace("n", r"\d") for p in patterns))


def _build_rules() -> dict[str, PairRule]:
    lines = [line.split() for line in _PAIR_TEXT.strip().splitlines()]
    lines += [[f"{p}n", "req=01,02", f"ex={p}n"] for p in _TRADE]
    lines += [[f"{p}n", "req=00,01", f"ex={p}n"] for p in _LOGISTIC]
    lines += [["337n", "req=01", "ex=337n"]]
    lines += [[ai, "req=00"] for ai in _REQ00] + [[ai, "req=01,02"] for ai in _REQ0102]
    lines += [[f"71{n}", "req=01"] for n in range(6)] + [[f"723{n}", "req=01,8004"] for n in range(10)]
    lines += [["7240", "req=01,8006"], ["4324", "req=00"], ["4325", "req=00"]]
    rules: dict[str, PairRule] = {}
    for pattern, *keys in lines:
        req = tuple(tuple(k[4:].split(",")) for k in keys if k.startswith("req="))
        ex = tuple(a for k in keys if k.startswith("ex=") for a in k[3:].split(","))
        rules[pattern] = PairRule(req, ex, tuple(_alternation(g) for g in req), _alternation(ex) if ex else None)
    return rules


PAIR_RULES = _build_rules()


def _fits(pattern: str, ai: str) -> bool:
    return len(pattern) == len(ai) and all(p in ("n", a) for p, a in zip(pattern, ai, strict=True))


@lru_cache(maxsize=1024)
def _rule(ai: str) -> PairRule | None:
    rule = PAIR_RULES.get(ai)
    if rule is not None:
        return rule
    for pattern, candidate in PAIR_RULES.items():
        if "n" in pattern and _fits(pattern, ai):
            return candidate
    return None


@dataclass(frozen=True, slots=True)
class Element:
    ai: str
    value: str
    fixed: bool  # predefined length: no FNC1 separator needed after it


def _error(data: str, why: str, kind: str = "GS1 element string") -> InvalidData:
    return InvalidData(f"data: {show(data)} is not a valid {kind}: {why}", field="data")


def check_digit(body: str) -> str:
    """GS1 mod-10 check digit of a digit string (weights 3, 1, 3, … from the right)."""
    if body.isascii() and body.isdigit():  # summed as bytes: each digit is its code minus 48
        odd, even = body[-1::-2].encode(), body[-2::-2].encode()
        total = 3 * (sum(odd) - 48 * len(odd)) + sum(even) - 48 * len(even)
    else:  # int() raises for what is not a digit
        total = 3 * sum(map(int, body[-1::-2])) + sum(map(int, body[-2::-2]))
    return str(-total % 10)


def _lookup(data: str, text: str) -> GS1ApplicationIdentifier:
    for size in (2, 3, 4):
        ai = _BIIP_AIS.get(text[:size])
        if ai is not None:
            return ai
    raise _error(data, f"{show(text[:4])} does not start with a known GS1 Application Identifier")


def _check_date(data: str, ai: str, value: str, day_zero: bool) -> None:
    yy, mm, dd = int(value[0:2]), int(value[2:4]), int(value[4:6])
    if not 1 <= mm <= 12:
        raise _error(data, f"AI ({ai}) date {value[:6]!r}: month {value[2:4]} is not 01-12")
    last = 29 if mm == 2 and yy % 4 == 0 else calendar.monthrange(2001, mm)[1]
    if dd == 0 and day_zero:
        return
    if not 1 <= dd <= last:
        allowed = "00 (whole month) or " if day_zero else ""
        raise _error(data, f"AI ({ai}) date {value[:6]!r}: day {value[4:6]} is not {allowed}01-{last:02d}")


def _check_time(data: str, ai: str, value: str) -> None:
    if not value:
        return
    hh, mm = int(value[0:2]), int(value[2:4]) if len(value) >= 4 else 0
    ss = int(value[4:6]) if len(value) >= 6 else 0
    if hh > 23 or mm > 59 or ss > 59:
        raise _error(data, f"AI ({ai}) time {value!r} is not a valid HHMM[SS]")


@lru_cache(maxsize=1024)
def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _check_element(data: str, ai: GS1ApplicationIdentifier, value: str) -> None:
    code = ai.ai
    if not value:
        raise _error(data, f"AI ({code}) has no value")
    if _pattern(ai.pattern).fullmatch(code + value) is None:
        raise _error(data, f"AI ({code}) {ai.data_title}: {value!r} does not match its format {ai.format}")
    spec = _DATES.get(code)
    if spec is not None:
        _check_date(data, code, value, spec == "d0")
        if code == "7007" and len(value) == 12:
            _check_date(data, code, value[6:], False)
        elif code in ("4324", "4325", "7003", "7011", "8008"):
            _check_time(data, code, value[6:])
    checked = _CHECKED.get(code)
    if checked is not None:
        start, length = checked
        digits = value[start : start + length]
        expected = check_digit(digits[:-1])
        if digits[-1] != expected:
            name = _KEY_NAMES.get(code, "GLN" if code.startswith("41") else ai.data_title)
            raise InvalidCheckDigit(
                f"data: {show(data)} is not a valid GS1 element string: AI ({code}) {name} check digit is "
                f"{digits[-1]!r}, expected {expected!r}",
                field="data",
            )


def _check_pairs(data: str, elements: list[Element], requisites: bool) -> None:
    seen: dict[str, str] = {}
    for el in elements:
        if seen.setdefault(el.ai, el.value) != el.value:
            raise _error(data, f"AI ({el.ai}) appears twice with different values")
    present = list(seen)
    for ai in present:
        rule = _rule(ai)
        if rule is None:
            continue
        if rule.ex_re is not None:
            for other in present:
                if other != ai and rule.ex_re.fullmatch(other):
                    raise _error(data, f"AI ({ai}) must not be used together with AI ({other})")
        if requisites:
            for group, pattern in zip(rule.req, rule.req_re, strict=True):
                if not any(pattern.fullmatch(other) for other in present):
                    needed = " or ".join(f"({p})" for p in group)
                    raise _error(data, f"AI ({ai}) requires {needed} in the same element string")


_BRACKETED = re.compile(r"\((\d{2,4})\)([^()]*)")


def _split_bracketed(data: str) -> list[tuple[str, str]]:
    pos = 0
    out: list[tuple[str, str]] = []
    for m in _BRACKETED.finditer(data):
        if m.start() != pos:
            break
        out.append((m.group(1), m.group(2)))
        pos = m.end()
    if pos != len(data) or not out:
        raise _error(data, "expected (AI)value(AI)value… with 2-4 digit AIs")
    return out


def _split_raw(data: str, text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        ai = _lookup(data, text[pos:])
        start = pos + len(ai.ai)
        fixed = PREDEFINED_LENGTH.get(ai.ai[:2])
        if fixed is not None:
            end = pos + fixed
            if end > len(text) or GS in text[start:end]:
                raise _error(data, f"AI ({ai.ai}) needs {fixed - len(ai.ai)} characters")
            out.append((ai.ai, text[start:end]))
            pos = end + (1 if text[end : end + 1] == GS else 0)
            continue
        end = text.find(GS, start)
        end = len(text) if end < 0 else end
        out.append((ai.ai, text[start:end]))
        pos = end + 1
        if end == len(text) - 1:
            raise _error(data, "ends with a GS separator")
    return out


def parse(data: str, *, requisites: bool = True) -> list[Element]:
    """Validate a bracketed or raw element string; return its elements in order."""
    if data.startswith("("):
        pairs = _split_bracketed(data)
    else:
        text = data
        for prefix in _PREFIXES:
            text = text.removeprefix(prefix)
        if not text or text.startswith(GS) or GS * 2 in text:
            raise _error(data, "expected AI digits first and single GS separators")
        pairs = _split_raw(data, text)
    elements: list[Element] = []
    for code, value in pairs:
        ai = _BIIP_AIS.get(code)
        if ai is None:
            raise _error(data, f"({code}) is not a known GS1 Application Identifier")
        _check_element(data, ai, value)
        elements.append(Element(code, value, code[:2] in PREDEFINED_LENGTH))
    _check_pairs(data, elements, requisites)
    return elements


def bracketed(elements: list[Element]) -> str:
    """Human-readable form: ``(01)09506000134352(10)ABC``."""
    return "".join(f"({el.ai}){el.value}" for el in elements)


def raw(elements: list[Element]) -> str:
    """As encoded and read back: GS after every variable-length element but the last."""
    parts: list[str] = []
    for i, el in enumerate(elements):
        parts.append(el.ai + el.value)
        if i < len(elements) - 1 and not el.fixed:
            parts.append(GS)
    return "".join(parts)


# --------------------------------------------------------------------------- GS1 Digital Link

DL_DOMAIN = "id.gs1.org"


def _dl_error(data: str, why: str) -> InvalidData:
    return InvalidData(f"data: {show(data)} is not a valid GS1 Digital Link: {why}", field="data")


def digital_link(data: str, *, requisites: bool = True) -> tuple[str, list[Element]]:
    """A GS1 Digital Link URI (validated, normalised: same scheme, host and path prefix, AIs numeric in
    the order the standard defines, query AIs after the path, other query parameters dropped) or an AI
    element string (turned into a URI on ``https://id.gs1.org``) → (URI, elements)."""
    if data.startswith(("http://", "https://", "HTTP://", "HTTPS://")):
        parts = urlsplit(data)
        if not parts.hostname:
            raise _dl_error(data, "the URI has no host")
        try:
            link = GS1DigitalLinkURI.parse(data)
        except (ParseError, ValueError) as exc:
            raise _dl_error(data, str(exc)) from None
        elements = [Element(e.ai.ai, e.value, e.ai.ai[:2] in PREDEFINED_LENGTH) for e in link.element_strings]
        try:
            parse(bracketed(elements), requisites=requisites)  # the same checks as every GS1 symbol
        except InvalidData as exc:
            why = exc.message.split(" element string: ", 1)[-1]
            raise type(exc)(f"data: {show(data)} is not a valid GS1 Digital Link: {why}", field="data") from None
        path = parts.path.split("/")
        cut = next((i for i, seg in enumerate(path) if seg in _PRIMARY_KEYS), len(path))
        prefix = "/".join(path[:cut]).strip("/") or None
        host = parts.hostname.lower() + (f":{parts.port}" if parts.port else "")
        uri = link.as_uri(domain=host, prefix=prefix)
        if parts.scheme.lower() == "http":
            uri = "http://" + uri.removeprefix("https://")
        return uri, elements
    elements = parse(data, requisites=requisites)
    strings = GS1ElementStrings(GS1ElementString.parse(el.ai + el.value) for el in elements)
    try:
        uri = GS1DigitalLinkURI.from_element_strings(strings).as_uri(domain=DL_DOMAIN)
    except (ParseError, ValueError) as exc:
        raise _dl_error(data, str(exc)) from None
    return uri, elements


_PRIMARY_KEYS = ("00", "01", "253", "255", "401", "402", "414", "417", "8003", "8004", "8006", "8010", "8013",
                 "8017", "8018")  # fmt: skip
