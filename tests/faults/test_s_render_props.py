"""S5-S6: generated options, texts and colours through the facade (single-image route and batches).

The oracle is the in-process render core (``normalize_item`` + ``render``, pure and deterministic): for every
generated item the facade must answer exactly what the core says (the image bytes, or a 4xx / item error with
the core's code), never a 5xx.

* S5 hypothesis over options (0, negative, NaN, inf, 1e9, 2^70, wrong types, unknown keys) through
  ``GET /v1/barcodes/{type}.{fmt}`` and ``POST /v1/batches``; plus the worst-case render time of the slowest
  valid options, measured through both routes, under the bounds stated below.
* S6 hostile texts (markup, quotes, ``]]>``, controls, any Unicode) and colours (attribute injection, CSS,
  near-misses): every SVG is well-formed (defusedxml: no DTD, no entities), contains only ``svg``/``rect``/
  ``path``/``text`` elements, no event handler, no ``href``, no ``javascript:``, fills are ``#rrggbb``, and the
  human-readable text of Code 128 is the data (control characters removed, as documented).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from typing import Annotated, Any, Literal

import defusedxml.ElementTree as DET
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field, TypeAdapter, ValidationError

from render import SUPPORTED_TYPES, normalize_item, render
from render._text import strip_controls
from schemas.errors import ItemError
from tests.faults.checker import completeness_problem, expect_batch
from tests.faults.conftest import Api, Figures, Scale

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ITEM_CODES = {"unsupported_type", "invalid_data", "invalid_check_digit", "data_too_long", "invalid_option",
              "invalid_item", "render_failed", "verify_failed"}  # fmt: skip
# Bounds for the slowest *valid* options (measured: tens of ms in-process on this 2-core machine).
SINGLE_RENDER_BOUND_S = 2.0  # GET /v1/barcodes/...: one 4096x4096 image incl. HTTP (render_timeout_s is 10)
BATCH_100_BOUND_S = 20.0  # POST /v1/batches: 100 worst-case items (QR v40 4096x4096 PNG, verify) end to end

SAMPLE_DATA = {
    "qr": "hello", "micro_qr": "12345", "ean13": "400638133393", "ean8": "9638507", "upca": "03600029145",
    "jan": "490123456789", "isbn13": "978316148410", "isbn10": "316148410", "issn": "0317847", "ean14":
    "1400638133393", "gs1_128": "(01)04006381333931", "code128": "ABC-123", "code39": "ABC-123", "itf": "12345678",
    "codabar": "A1234B", "pzn": "1234562", "datamatrix": "hello", "pdf417": "hello", "aztec": "hello",
}  # fmt: skip

no_surrogates = st.characters(exclude_categories=("Cs",))
weird_num_text = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0", "-0", "1e9", "1E9", "NaN", "nan", "Infinity", "-inf", "4096", "4097", "1", "64", "65",
                     "0x10", "1_000", " 5", "5 ", "", "\u0663", "true", "null", "[]", "1.0", "+7"]),
    st.text(no_surrogates, max_size=6),
)  # fmt: skip
colour_text = st.one_of(
    st.from_regex(r"#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}", fullmatch=True),
    st.sampled_from(['#fff" onload="alert(1)', "red", "url(#x)", "#ffffff;fill:url(javascript:alert(1))",
                     "transparent", "TRANSPARENT", "#12345", "#1234567", "#ggg", "", " #fff", "#fff ", "#fff\n",
                     "#FFF", "#abc'/><script>alert(1)</script>", "currentColor", "inherit"]),
    st.text(no_surrogates, max_size=40),
)  # fmt: skip


def oracle(item: dict[str, Any]) -> tuple[bool, Any]:
    """(True, image bytes) or (False, error code) from the in-process render core."""
    try:
        return True, render(normalize_item(item)).image
    except ItemError as exc:
        return False, exc.to_dict()["code"]


_INT = {"width": (1, 4096), "height": (1, 4096), "margin": (0, 64), "module_size": (1, 64)}
# The query parameters as the route declares them (FastAPI validates them with pydantic, lax mode).
_QUERY = {
    **{k: TypeAdapter(Annotated[int, Field(ge=lo, le=hi)]) for k, (lo, hi) in _INT.items()},
    "error_correction": TypeAdapter(Literal["L", "M", "Q", "H"]),
    "foreground": TypeAdapter(Annotated[str, Field(max_length=32)]),
    "background": TypeAdapter(Annotated[str, Field(max_length=32)]),
    "show_text": TypeAdapter(bool),
}


def _query_item(barcode_type: str, fmt: str, data: str, params: dict[str, str]) -> dict[str, Any]:
    """The item the facade builds from query parameters, for the oracle (ValidationError: a 422 query)."""
    opts = {k: _QUERY[k].validate_python(v) for k, v in params.items()}
    item: dict[str, Any] = {"barcode_type": barcode_type, "data": data, "format": fmt}
    if opts:
        item["options"] = opts
    return item


# --------------------------------------------------------------------------- S5


@pytest.mark.timeout(300)
def test_s5_generated_options_never_5xx(api: Api, scale: Scale, figures: Figures) -> None:
    statuses: Counter[int] = Counter()
    problems: list[str] = []
    h = {"X-API-Key": api.key}
    with httpx.Client(base_url=api.url, timeout=30) as c:

        @given(
            barcode_type=st.sampled_from([*SUPPORTED_TYPES, "nope", "QR", "ean-13"]),
            fmt=st.sampled_from(["svg", "png"]),
            params=st.fixed_dictionaries(
                {},
                optional={
                    "width": weird_num_text,
                    "height": weird_num_text,
                    "margin": weird_num_text,
                    "module_size": weird_num_text,
                    "error_correction": st.one_of(
                        st.sampled_from(["L", "M", "Q", "H", "l", "X", ""]), st.text(no_surrogates, max_size=3)
                    ),
                    "foreground": colour_text,
                    "background": colour_text,
                    "show_text": st.sampled_from(["true", "false", "1", "0", "yes", "no", "maybe", ""]),
                },
            ),  # fmt: skip
        )
        @settings(max_examples=scale.s5_examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def single(barcode_type: str, fmt: str, params: dict[str, str]) -> None:
            data = SAMPLE_DATA.get(barcode_type.lower().replace("-", "_"), "hello")
            r = c.get(f"/v1/barcodes/{barcode_type}.{fmt}", params={"data": data, **params}, headers=h)
            statuses[r.status_code] += 1
            if r.status_code >= 500:
                problems.append(f"GET {barcode_type}.{fmt} {params} -> {r.status_code} {r.text[:200]}")
                return
            try:
                item = _query_item(barcode_type, fmt, data, params)
            except ValidationError:
                if r.status_code != 422:
                    problems.append(f"GET {params}: query invalid, got {r.status_code} {r.text[:200]}")
                return
            ok, want = oracle(item)
            if ok and (r.status_code != 200 or r.content != want):
                problems.append(
                    f"GET {barcode_type}.{fmt} {params}: core renders, facade {r.status_code} {r.text[:200]}"
                )
            elif not ok and (r.status_code != 422 or r.json()["error"]["code"] not in (want, "invalid_request")):
                problems.append(
                    f"GET {barcode_type}.{fmt} {params}: core {want}, facade {r.status_code} {r.text[:200]}"
                )

        single()

        json_val = st.one_of(
            st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.integers(-(2**70), 2**70),
            st.floats(allow_nan=True, allow_infinity=True), st.text(no_surrogates, max_size=10),
            st.lists(st.integers(-5, 5), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
        )  # fmt: skip
        option_keys = ["width", "height", "margin", "module_size", "error_correction", "foreground", "background",
                       "show_text", "verify", "nope"]  # fmt: skip
        options = st.one_of(json_val, st.dictionaries(st.sampled_from(option_keys), json_val, max_size=5))
        batches = 0

        @given(
            items=st.lists(
                st.tuples(st.sampled_from([*SUPPORTED_TYPES, "nope"]), st.sampled_from(["svg", "png", "gif"]), options),
                min_size=1, max_size=6,
            )
        )  # fmt: skip
        @settings(max_examples=max(10, scale.s5_examples // 3), deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def batch(items: list[tuple[str, str, Any]]) -> None:
            nonlocal batches
            body = {
                "batch_id": f"s5-{uuid.uuid4().hex}",
                "barcodes": [{"id": f"i{n}", "barcode_type": t, "data": SAMPLE_DATA.get(t, "x"), "format": f,
                              "options": o} for n, (t, f, o) in enumerate(items)],
            }  # fmt: skip
            # stdlib json writes NaN / Infinity tokens (not JSON: the facade must answer 400, not crash)
            raw = json.dumps(body, allow_nan=True).encode()
            r = c.post("/v1/batches", content=raw, headers={**h, "Content-Type": "application/json"})
            statuses[r.status_code] += 1
            if r.status_code >= 500:
                problems.append(f"POST {body['barcodes']} -> {r.status_code} {r.text[:200]}")
                return
            if r.status_code == 202:
                deadline = time.monotonic() + 30
                while r.status_code == 202 and time.monotonic() < deadline:
                    time.sleep(0.2)
                    r = c.get(f"/v1/batches/{body['batch_id']}", headers=h)
            if r.status_code != 200:
                if r.status_code not in (400, 422):
                    problems.append(f"POST {body['barcodes']} -> {r.status_code} {r.text[:200]}")
                return
            batches += 1
            why = completeness_problem(r.json(), expect_batch(body))
            if why is not None:
                problems.append(f"POST {body['barcodes']}: {why}")

        batch()

        # explicit non-JSON numbers and edge values in options (raw bodies: NaN/Infinity are not JSON)
        for value in ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", str(2**70), "1e9", "4096.0", "true",
                      "null", "[]", "{}", '"4096"', "-0", "0"]:  # fmt: skip
            opts = '{"width":' + value + ',"height":' + value + "}"
            raw = ('{"barcodes":[{"barcode_type":"qr","data":"x","options":' + opts + "}]}").encode()
            r = c.post("/v1/batches", content=raw, headers={**h, "Content-Type": "application/json"})
            statuses[r.status_code] += 1
            if r.status_code >= 500 or r.status_code not in (200, 400, 422):
                problems.append(f"POST width={value} -> {r.status_code} {r.text[:200]}")
            elif r.status_code == 200:
                item = r.json()["results"][0]
                want_ok, want = oracle(json.loads(raw)["barcodes"][0]) if value not in ("1e400", "-1e400") else \
                    (False, "?")  # fmt: skip
                if item["success"] != want_ok or (not want_ok and item["error"]["code"] != want):
                    problems.append(f"POST width={value}: {item.get('error')} vs core {want}")
    figures.record(
        "S5 generated options",
        load=f"{scale.s5_examples} GET + {max(10, scale.s5_examples // 3)} POST examples ({batches} rendered batches)",
        faults="0, negative, NaN, inf, 1e9, 2^70, wrong types, unknown keys",
        outcome="pass" if not problems else "FAIL",
        extra={"status_codes": dict(sorted(statuses.items()))},
    )
    assert not problems, "\n".join(problems[:10])
    assert not any(code >= 500 for code in statuses)


WORST = {
    "qr v40-L png 4096": {"barcode_type": "qr", "data": "A" * 4296, "format": "png",
                          "options": {"width": 4096, "height": 4096, "error_correction": "L"}},
    "qr numeric 7089 png 4096": {"barcode_type": "qr", "data": "1" * 7089, "format": "png",
                                 "options": {"width": 4096, "height": 4096, "error_correction": "L"}},
    "qr v40-L svg": {"barcode_type": "qr", "data": "a" * 2953, "format": "svg", "options": {"error_correction": "L"}},
    "datamatrix png 4096": {"barcode_type": "datamatrix", "data": "x" * 1500, "format": "png",
                            "options": {"width": 4096, "height": 4096}},
    "aztec png 4096": {"barcode_type": "aztec", "data": "x" * 1500, "format": "png",
                       "options": {"width": 4096, "height": 4096}},
    "pdf417 png 4096": {"barcode_type": "pdf417", "data": "x" * 1000, "format": "png",
                        "options": {"width": 4096, "height": 4096}},
    "code128 png 4096": {"barcode_type": "code128", "data": "x" * 80, "format": "png",
                         "options": {"width": 4096, "height": 4096}},
}  # fmt: skip


def _unique(item: dict[str, Any], nonce: str) -> dict[str, Any]:
    """Same size, different content (no cache hit): the nonce replaces the start of the data."""
    data = item["data"]
    if data.isdigit():
        nonce = str(int(nonce, 16))[: len(nonce)]
    elif data.isupper():
        nonce = nonce.upper()  # stays in QR's alphanumeric mode
    return {**item, "data": nonce + data[len(nonce) :]}


@pytest.mark.timeout(180)
def test_s5_worst_case_render_time_is_bounded(api: Api, figures: Figures) -> None:
    h = {"X-API-Key": api.key}
    single: dict[str, float] = {}
    with httpx.Client(base_url=api.url, timeout=60) as c:
        c.get("/v1/barcodes/qr.svg", params={"data": "warm-up"}, headers=h)  # start the render pool
        for name, item in WORST.items():
            it = _unique(item, uuid.uuid4().hex[:8])
            params = {"data": it["data"], **{k: str(v) for k, v in it["options"].items()}}
            t0 = time.monotonic()
            r = c.get(f"/v1/barcodes/{it['barcode_type']}.{it['format']}", params=params, headers=h)
            single[name] = round(time.monotonic() - t0, 3)
            assert r.status_code == 200, (name, r.status_code, r.text[:300])
        items = []
        worst = WORST["qr v40-L png 4096"]
        for n in range(100):
            it = _unique(worst, f"{n:04d}{uuid.uuid4().hex[:6]}")
            items.append({**it, "id": f"w{n}", "options": {**it["options"], "verify": True}})
        t0 = time.monotonic()
        r = c.post("/v1/batches", json={"barcodes": items}, params={"timeout": 5}, headers=h)
        bid = r.json()["batch_id"]
        while r.status_code == 202 and time.monotonic() - t0 < 120:
            time.sleep(0.2)
            r = c.get(f"/v1/batches/{bid}", headers=h)
        batch_s = time.monotonic() - t0
        assert r.status_code == 200, r.text[:300]
        doc = r.json()
    gen_ms = [x["generation_time_ms"] for x in doc["results"]]
    slowest = max(single.values())
    ok = doc["summary"]["successful"] == 100 and slowest < SINGLE_RENDER_BOUND_S and batch_s < BATCH_100_BOUND_S
    figures.record(
        "S5 worst-case render time",
        load="7 largest valid single images (GET) + 1 batch of 100 QR v40-L 4096x4096 PNG with verify",
        faults="slowest valid options",
        recover_s=f"single max {slowest:.2f} s (bound {SINGLE_RENDER_BOUND_S:g}); batch {batch_s:.1f} s "
        f"(bound {BATCH_100_BOUND_S:g})",
        outcome="pass" if ok else "FAIL",
        extra={"single_s": single, "batch_item_generation_ms_max": max(gen_ms), "batch_s": round(batch_s, 2)},
    )
    assert doc["summary"]["successful"] == 100, [x.get("error") for x in doc["results"] if not x["success"]][:3]
    assert slowest < SINGLE_RENDER_BOUND_S, single
    assert batch_s < BATCH_100_BOUND_S, batch_s


# --------------------------------------------------------------------------- S6

ALLOWED_TAGS = {"svg", "rect", "path", "text"}
FILL = re.compile(r"#[0-9a-f]{6}")


def svg_problems(svg: bytes, *, expect_text: str | None) -> list[str]:
    """Why an SVG is unsafe or wrong (empty list: fine). ``expect_text``: the required 1D text, "" = none."""
    out: list[str] = []
    lowered = svg.lower()
    for bad in (b"<!doctype", b"<!entity", b"<script", b"javascript:", b"<foreignobject"):
        if bad in lowered:
            out.append(f"contains {bad!r}")
    try:
        root = DET.fromstring(svg)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the finding
        return [*out, f"not well-formed: {exc!r}"]
    texts = []
    for el in root.iter():
        tag = el.tag.rsplit("}", 1)[-1]
        if tag not in ALLOWED_TAGS:
            out.append(f"element <{tag}>")
        if tag == "text":
            texts.append(el.text or "")
        for name, value in el.attrib.items():
            lname = name.rsplit("}", 1)[-1].lower()
            if lname.startswith("on") or "href" in lname or lname == "style":
                out.append(f"attribute {name}={value!r}")
            unfilled = (tag, name, value) == ("path", "fill", "none")  # a stroked path
            if lname in ("fill", "stroke") and not (FILL.fullmatch(value) or unfilled):
                out.append(f"{lname}={value!r}")
    if expect_text is not None:
        want = [expect_text] if expect_text else []
        if texts != want:
            out.append(f"text {texts!r} != {want!r}")
    return out


hostile_text = st.one_of(
    st.text(st.characters(max_codepoint=0x7F), min_size=1, max_size=80),
    st.sampled_from(["<script>alert(1)</script>", "]]><x/>", "&amp;&lt;&#0;", '"><svg onload=alert(1)>', "'\"`",
                     "<!--", "-->", "<?xml ?>", "&", "<", ">", "\x00\x01\x1f\x7f", "\r\n\t", " lead", "trail "]),
)  # fmt: skip
unicode_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=120)


def _check_one(item: dict[str, Any], got_status: int, got: bytes, code: str | None) -> list[str]:
    ok, want = oracle(item)
    if not ok:
        if got_status == 200 or (code not in (want, "invalid_request")):
            return [f"{item}: core says {want}, facade {got_status} {code}"]
        return []
    if got_status != 200:
        return [f"{item}: core renders, facade {got_status} {code}"]
    if got != want:
        return [f"{item}: image differs from the core's"]
    if item.get("format", "svg") != "svg":
        return []
    expect = None
    if item["barcode_type"] == "code128":
        show = (item.get("options") or {}).get("show_text", True)
        expect = strip_controls(item["data"]) if show else ""
    return [f"{item}: {p}" for p in svg_problems(got, expect_text=expect)]


@pytest.mark.timeout(300)
def test_s6_hostile_texts_and_colours_make_safe_svgs(api: Api, scale: Scale, figures: Figures) -> None:
    problems: list[str] = []
    counts: Counter[str] = Counter()

    @given(
        kind=st.sampled_from(["code128", "qr", "datamatrix", "code39"]),
        text=st.one_of(hostile_text, unicode_text),
        fg=st.one_of(st.none(), colour_text),
        bg=st.one_of(st.none(), colour_text),
        show=st.sampled_from([None, True, False]),
    )
    @settings(max_examples=scale.s6_examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def in_process(kind: str, text: str, fg: str | None, bg: str | None, show: bool | None) -> None:
        opts = {k: v for k, v in (("foreground", fg), ("background", bg), ("show_text", show)) if v is not None}
        item = {"barcode_type": kind, "data": text, "format": "svg", **({"options": opts} if opts else {})}
        ok, want = oracle(item)
        counts["core ok" if ok else f"core {want}"] += 1
        if ok:
            problems.extend(_check_one(item, 200, want, None))

    in_process()

    h = {"X-API-Key": api.key}
    with httpx.Client(base_url=api.url, timeout=30) as c:

        @given(
            text=hostile_text,
            fg=st.one_of(st.none(), colour_text),
            bg=st.one_of(st.none(), colour_text),
        )
        @settings(max_examples=max(20, scale.s6_examples // 3), deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def over_http(text: str, fg: str | None, bg: str | None) -> None:
            params = {"data": text, **{k: v for k, v in (("foreground", fg), ("background", bg)) if v is not None}}
            r = c.get("/v1/barcodes/code128.svg", params=params, headers=h)
            counts[f"http {r.status_code}"] += 1
            if r.status_code >= 500:
                problems.append(f"GET code128.svg {params} -> {r.status_code}")
                return
            code = r.json()["error"]["code"] if r.status_code >= 400 else None
            opts = {k: v for k, v in params.items() if k != "data"}
            item = {"barcode_type": "code128", "data": text, "format": "svg", **({"options": opts} if opts else {})}
            problems.extend(_check_one(item, r.status_code, r.content, code))
            if r.status_code == 200 and "sandbox" not in r.headers.get("content-security-policy", ""):
                problems.append("SVG served without a sandboxing CSP")

        over_http()

        # the same hostile texts through the pipeline (batch route), SVG strings inside the BatchResult JSON
        samples = ["<script>alert(1)</script>", "]]><x/>", "&amp;&lt;", '"><svg onload=alert(1)>', "\x00\x01<\x7f>",
                   "'\"`", "<!--x-->"]  # fmt: skip
        body = {
            "barcodes": [{"id": f"h{i}", "barcode_type": "code128", "data": t} for i, t in enumerate(samples)]
            + [{"id": "fg", "barcode_type": "qr", "data": "x", "options": {"foreground": '#fff" onload="x'}}]
        }
        r = c.post("/v1/batches", json=body, headers=h)
        assert r.status_code == 200, r.text[:300]
        for it, sent in zip(r.json()["results"], body["barcodes"], strict=True):
            if it["success"]:
                problems.extend(_check_one(sent, 200, it["svg"].encode(), None))
            elif sent["id"] != "fg" or it["error"]["code"] != "invalid_option":
                problems.append(f"batch item {sent}: {it.get('error')}")
    figures.record(
        "S6 hostile texts / colours",
        load=f"{scale.s6_examples} in-process + {max(20, scale.s6_examples // 3)} HTTP examples + 1 batch",
        faults="markup, quotes, ]]>, controls, Unicode; colour injection",
        outcome="pass" if not problems else "FAIL",
        extra=dict(counts),
    )
    assert not problems, "\n".join(problems[:10])
