"""GS1 element strings: one validator for every GS1 symbol (AI table, check digits, dates, AI pairs)."""

from __future__ import annotations

import pytest

from render import gs1, normalize_item, render
from render.registry import REGISTRY
from schemas.errors import InvalidCheckDigit, InvalidData
from tests.render.helpers import gtin_check

GS = "\x1d"
GS1_TYPES = [name for name, s in REGISTRY.items() if s.gs1]


@pytest.mark.parametrize(
    ("data", "raw"),
    [
        ("(01)09506000134352(17)201231(10)ABC123", "01095060001343521720123110ABC123"),
        ("(01)09506000134352(10)ABC123(17)201231", f"010950600013435210ABC123{GS}17201231"),
        ("(00)106141411234567897", "00106141411234567897"),  # the SSCC of GS1's examples
        ("(01)09506000134352(3103)000189", "01095060001343523103000189"),
        ("(01)09506000134352(17)260200", "010950600013435217260200"),  # DD = 00: end of month
        ("(01)09506000134352(11)240229(21)S1", "01095060001343521124022921S1"),  # leap day
    ],
)
def test_valid_element_strings_and_their_raw_form(data: str, raw: str) -> None:
    elements = gs1.parse(data)
    assert gs1.bracketed(elements) == data
    assert gs1.raw(elements) == raw
    assert gs1.bracketed(gs1.parse(raw)) == data  # raw input parses to the same elements
    assert gs1.bracketed(gs1.parse("]C1" + raw)) == data  # a symbology identifier prefix is dropped


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        ("(01)09506000134352(17)269931", "AI (17) USE BY or EXPIRY: '269931' does not match its format N2+N6"),
        ("(01)09506000134352(17)261301", "AI (17) USE BY or EXPIRY: '261301' does not match its format N2+N6"),
        ("(01)09506000134352(17)260001", "AI (17) date '260001': month 00 is not 01-12"),
        ("(01)09506000134352(17)260230", "AI (17) date '260230': day 30 is not 00 (whole month) or 01-28"),
        ("(01)09506000134352(17)250229", "day 29 is not 00 (whole month) or 01-28"),
        ("(01)09506000134352(7006)260200", "AI (7006) date '260200': day 00 is not 01-28"),  # yymmdd: no 00
        ("(01)09506000134352(8008)2601012500", "AI (8008) PROD TIME: '2601012500' does not match"),
        ("(01)09506000134352(8008)2602301200", "AI (8008) date '260230': day 30 is not 01-28"),
        ("(10)ABC", "AI (10) requires (01) or (02) or (8006) or (8026)"),
        ("(01)09506000134352(02)09506000134352", "AI (01) must not be used together with AI (02)"),
        ("(01)09506000134352(21)A(235)B", "AI (21) must not be used together with AI (235)"),
        ("(01)09506000134352(3103)000189(3102)001234", "AI (3103) must not be used together with AI (3102)"),
        ("(01)09506000134352(10)A(10)B", "AI (10) appears twice with different values"),
        ("(01)09506000134352(10)ABC~", "AI (10) BATCH/LOT: 'ABC~' does not match its format N2+X..20"),
        ("(01)09506000134352(10)" + "A" * 21, "does not match its format N2+X..20"),
        ("(01)0950600013435", "AI (01) GTIN: '0950600013435' does not match its format N2+N14"),
        ("(23)123", "(23) is not a known GS1 Application Identifier"),
        ("(01)09506000134352(10)", "AI (10) has no value"),
        ("0109506000134352\x1d\x1d10A", "single GS separators"),
        ("2309506000134352", "does not start with a known GS1 Application Identifier"),
        ("01095060001", "AI (01) needs 14 characters"),
        ("(1)ABC", "expected (AI)value"),
    ],
)
def test_errors_name_the_ai_and_the_rule(data: str, rule: str) -> None:
    with pytest.raises(InvalidData) as err:
        gs1.parse(data)
    assert type(err.value) is InvalidData and err.value.code.value == "invalid_data"
    assert rule in str(err.value) and str(err.value).startswith("data: ")


@pytest.mark.parametrize(
    ("ai", "body", "name"),
    [("01", "0950600013435", "GTIN"), ("00", "10614141123456789", "SSCC"), ("414", "950600000000", "GLN"),
     ("8018", "95060000000000001", "GSRN"), ("02", "0950600013435", "GTIN")],
)  # fmt: skip
def test_check_digits_of_keys(ai: str, body: str, name: str) -> None:
    good = body + gtin_check(body)
    bad = body + str((int(gtin_check(body)) + 1) % 10)
    extra = "(37)5" if ai == "02" else ("(00)106141411234567897" if ai == "8018" else "")
    extra = "" if ai == "8018" else extra
    assert gs1.parse(f"({ai}){good}{extra}", requisites=ai != "02")
    with pytest.raises(InvalidCheckDigit) as err:
        gs1.parse(f"({ai}){bad}")
    assert err.value.code.value == "invalid_check_digit"
    assert f"AI ({ai}) {name} check digit is '{bad[-1]}', expected '{good[-1]}'" in str(err.value)


def test_requisites_can_be_left_to_another_symbol_but_invalid_pairs_never() -> None:
    assert gs1.bracketed(gs1.parse("(10)ABC(21)1", requisites=False)) == "(10)ABC(21)1"
    with pytest.raises(InvalidData, match="must not be used together"):
        gs1.parse("(01)09506000134352(02)09506000134352", requisites=False)
    spec = normalize_item({"barcode_type": "gs1_128", "data": "(10)ABC", "options": {"gs1_requisites": False}})
    assert render(spec).metadata["content"] == "10ABC"


@pytest.mark.parametrize("barcode_type", GS1_TYPES)
def test_every_gs1_symbology_uses_the_validator(barcode_type: str) -> None:
    for data, code in [
        ("(01)09506000134352(17)269931", "invalid_data"),
        ("(01)09506000134353", "invalid_check_digit"),
        ("(10)ABC", "invalid_data"),
    ]:
        with pytest.raises(InvalidData) as err:
            normalize_item({"barcode_type": barcode_type, "data": data})
        assert err.value.code.value == code
    meta = render(normalize_item({"barcode_type": barcode_type, "data": "(01)09506000134352"})).metadata
    assert meta["gs1_ai_table"] == gs1.AI_TABLE_VERSION and gs1.AI_TABLE_VERSION.startswith("biip ")


@pytest.mark.parametrize(
    ("uri", "normalised", "element_string"),
    [
        (
            "https://example.com/01/09506000134352/10/ABC?17=201231",
            "https://example.com/01/09506000134352/10/ABC?17=201231",
            "(01)09506000134352(10)ABC(17)201231",
        ),
        (  # GTIN-13 padded to 14 digits, host lower-cased, path prefix kept, non-AI parameters dropped
            "https://Shop.Example.com/p/01/9506000134352/21/X1?linkType=gs1:pip",
            "https://shop.example.com/p/01/09506000134352/21/X1",
            "(01)09506000134352(21)X1",
        ),
        (
            "(01)09506000134352(10)AB/C",
            "https://id.gs1.org/01/09506000134352/10/AB%2FC",
            "(01)09506000134352(10)AB/C",
        ),
        (
            "https://id.gs1.org/00/106141411234567897",
            "https://id.gs1.org/00/106141411234567897",
            "(00)106141411234567897",
        ),
    ],
)
def test_digital_link_is_validated_and_normalised(uri: str, normalised: str, element_string: str) -> None:
    link, elements = gs1.digital_link(uri)
    assert link == normalised and gs1.bracketed(elements) == element_string
    assert gs1.digital_link(link)[0] == link  # idempotent


@pytest.mark.parametrize(
    ("uri", "rule"),
    [
        ("https://example.com/01/09506000134353", "AI (01) GTIN check digit is '3', expected '2'"),
        ("https://example.com/01/09506000134352?17=269931", "AI (17)"),
        ("https://example.com/shop/item/12", "Expected a primary identifier in the path"),
        ("ftp://example.com/01/09506000134352", "does not start with a known GS1 Application Identifier"),
    ],
)
def test_digital_link_errors(uri: str, rule: str) -> None:
    with pytest.raises(InvalidData) as err:
        gs1.digital_link(uri)
    assert rule in str(err.value)
