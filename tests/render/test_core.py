"""render_item / Outcome: every error code, never a crash, pickling, import hygiene."""

from __future__ import annotations

import pickle
import subprocess
import sys
from typing import Any

import orjson
import pytest

from render import Outcome, render_item
from render.registry import REGISTRY, Symbology
from schemas.errors import ErrorCode, RenderFailed
from tests.render.helpers import SAMPLE

ERROR_CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "unsupported_type": ({"barcode_type": "maxicode", "data": "x"}, {}),
    "invalid_data": ({"barcode_type": "ean13", "data": "59012341234X"}, {}),
    "invalid_check_digit": ({"barcode_type": "ean13", "data": "5901234123458"}, {}),
    "data_too_long": ({"barcode_type": "code128", "data": "x" * 81}, {}),
    "invalid_option": ({"barcode_type": "qr", "data": "x", "options": {"width": float("nan")}}, {}),
    "invalid_item": (["not", "a", "dict"], {}),  # type: ignore[dict-item]
    "verify_failed": (
        {"barcode_type": "qr", "data": "x", "options": {"foreground": "#777777", "background": "#787878"}},
        {"verify": True},
    ),
}
FIELDS = {
    "unsupported_type": ("barcode_type", "'maxicode'"),
    "invalid_data": ("data", "'59012341234X'"),
    "invalid_check_digit": ("data", "'5901234123458'"),
    "data_too_long": ("data", "'xxxxxxxx"),
    "invalid_option": ("options.width", "nan"),
    "invalid_item": ("item", "['not', 'a', 'dict']"),
    "verify_failed": ("data", "'x'"),
}


@pytest.mark.parametrize("code", sorted(ERROR_CASES))
def test_each_error_code(code: str) -> None:
    item, kwargs = ERROR_CASES[code]
    outcome = render_item(item, **kwargs)
    assert not outcome.success and outcome.image is None and outcome.metadata is None
    assert outcome.error is not None and outcome.error.code == ErrorCode(code)
    field, value = FIELDS[code]
    assert outcome.error.field == field
    assert str(outcome.error).startswith(f"{field}: ") and value in str(outcome.error)
    assert outcome.elapsed_ms >= 0


def _broken(exc: Exception) -> Symbology:
    def encode(data: str, error_correction: str | None) -> Any:
        raise exc

    qr = REGISTRY["qr"]
    return Symbology("qr", False, 4, qr.normalize, encode, qr.read_formats, qr.ec_levels)


def test_unexpected_encoder_failure_is_render_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REGISTRY, "qr", _broken(ZeroDivisionError("boom")))
    outcome = render_item({"barcode_type": "qr", "data": "x"})
    assert outcome.error is not None and outcome.error.code == ErrorCode.RENDER_FAILED
    assert "ZeroDivisionError: boom" in str(outcome.error) and str(outcome.error).startswith("data: 'x'")


def test_any_other_exception_is_render_failed_never_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise KeyError("surprise")

    monkeypatch.setattr("render.core.normalize_item", explode)
    outcome = render_item({"barcode_type": "qr", "data": "x"})
    assert isinstance(outcome.error, RenderFailed)
    assert "KeyError" in str(outcome.error)


def test_success_and_validate_only() -> None:
    ok = render_item({"barcode_type": "ean13", "data": "590123412345", "format": "png"})
    assert ok.success and ok.error is None and isinstance(ok.image, bytes)
    assert ok.content_type == "image/png" and ok.image.startswith(b"\x89PNG")
    assert ok.metadata["data"] == "5901234123457" and ok.metadata["check_digit"] == "7"
    orjson.dumps(ok.metadata)  # JSON-safe
    only = render_item({"barcode_type": "qr", "data": "hello"}, validate_only=True)
    assert only.success and only.image is None and only.metadata is not None
    assert only.metadata["version"] == 1 and only.metadata["capacity"]["free_chars"] == 9
    bad = render_item({"barcode_type": "ean13", "data": "5901234123458"}, validate_only=True)
    assert bad.error is not None and bad.error.code == ErrorCode.INVALID_CHECK_DIGIT


@pytest.mark.parametrize("barcode_type", sorted(REGISTRY))
def test_metadata_is_json_safe(barcode_type: str) -> None:
    for validate_only in (False, True):
        outcome = render_item({"barcode_type": barcode_type, "data": SAMPLE[barcode_type]}, validate_only=validate_only)
        assert outcome.metadata is not None
        assert orjson.loads(orjson.dumps(outcome.metadata)) == outcome.metadata
        assert outcome.metadata["type"] == barcode_type and outcome.metadata["modules"] > 0


def test_outcomes_pickle_with_their_error_field() -> None:
    for outcome in (
        render_item({"barcode_type": "qr", "data": "x"}),
        render_item({"barcode_type": "qr", "data": ""}),
    ):
        copy: Outcome = pickle.loads(pickle.dumps(outcome))  # noqa: S301 - our own bytes
        assert copy.success == outcome.success and copy.image == outcome.image
        if outcome.error is not None:
            assert copy.error is not None
            assert (
                copy.error.to_dict()
                == outcome.error.to_dict()
                == {
                    "code": "invalid_data",
                    "message": "data: '' is not a non-empty string",
                    "field": "data",
                }
            )


def test_render_core_does_not_import_service_dependencies() -> None:
    code = (
        "import render, sys\n"
        "from render import render_item\n"
        "render_item({'barcode_type': 'qr', 'data': 'x', 'options': {'verify': True}})\n"
        "bad = [m for m in sys.modules if m.startswith(('faust', 'redis', 'aiokafka', 'kafka'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
