from __future__ import annotations

import orjson
import pytest

from schemas.errors import BatchValidationError
from schemas.export import JSON_DIR, render_schemas
from schemas.models import BatchResult
from schemas.validate import parse_batch, peek_batch_id


def item(n: int, **kw: object) -> dict[str, object]:
    return {"id": f"i{n}", "barcode_type": "qr", "data": f"d{n}", **kw}


def problems(raw: object) -> list[dict[str, str]]:
    with pytest.raises(BatchValidationError) as exc:
        parse_batch(raw)  # type: ignore[arg-type]
    return exc.value.problems


def test_exported_json_schemas_are_fresh() -> None:
    for fname, data in render_schemas().items():
        path = JSON_DIR / fname
        assert path.exists(), f"{fname} missing: run python -m schemas.export"
        assert path.read_bytes() == data, f"{fname} is stale: run python -m schemas.export"


def test_all_batch_problems_are_listed_together() -> None:
    items = [item(n) for n in range(100)] + [item(5)]
    found = problems({"barcodes": items, "options": {"max_concurrent": 0}})
    text = " | ".join(f"{p['loc']}: {p['message']}" for p in found)
    assert "101 items exceed the maximum batch size of 100" in text
    assert "duplicate item ids: i5" in text
    assert "options.max_concurrent" in text
    assert len(found) == 3


@pytest.mark.parametrize("value", [0, 21, -1, "ten"])
def test_max_concurrent_outside_1_to_20(value: object) -> None:
    [p] = problems({"barcodes": [item(0)], "options": {"max_concurrent": value}})
    assert p["loc"] == "options.max_concurrent" and repr(value) in p["message"]


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"{oops", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got list"),
        (b'"text"', "must be a JSON object, got str"),
        (b"{}", "barcodes: field required"),
        (b'{"barcodes": []}', "at least one item"),
        (b'{"barcodes": "x"}', "barcodes"),
        (b'{"barcodes": [], "extra": 1}', "extra"),
    ],
)
def test_batch_level_rejections(raw: bytes, needle: str) -> None:
    with pytest.raises(BatchValidationError, match=needle):
        parse_batch(raw)


def test_limits_are_configurable_and_ids_assigned() -> None:
    assert len(parse_batch({"barcodes": [item(n) for n in range(3)]}, max_batch_size=3).barcodes) == 3
    with pytest.raises(BatchValidationError, match="maximum batch size of 2"):
        parse_batch({"barcodes": [item(n) for n in range(3)]}, max_batch_size=2)
    req = parse_batch({"barcodes": [item(0)]})
    assert req.batch_id and len(req.batch_id) == 36
    assert parse_batch({"batch_id": "mine", "barcodes": [item(0)]}).batch_id == "mine"


def test_item_content_is_not_a_batch_problem() -> None:
    """Unknown types and bad data fail per item later, so the other items still render."""
    req = parse_batch({"barcodes": [{"barcode_type": "nope", "data": 5}, item(1)]})
    assert req.barcodes[0].barcode_type == "nope"


def test_peek_batch_id() -> None:
    assert peek_batch_id(b'{"batch_id": "b1", "barcodes": 3}') == "b1"
    assert peek_batch_id(b"\xff") is None
    assert peek_batch_id(b'{"batch_id": 7}') is None


def test_seed_response_shape_validates() -> None:
    doc = {
        "batch_id": "b", "success": True,
        "results": [{"index": 0, "id": "optional-unique-id", "success": True, "svg": "<svg/>", "cached": False,
                     "generation_time_ms": 1.2, "metadata": {"type": "qr", "version": 3, "modules": 29,
                                                             "error_correction": "L"}}],
        "summary": {"total": 1, "successful": 1, "failed": 0, "cached": 0, "total_time_ms": 2.5,
                    "average_time_ms": 2.5},
    }  # fmt: skip
    assert BatchResult.model_validate_json(orjson.dumps(doc)).summary.total == 1


def nested(depth: int, kind: str) -> object:
    """A JSON value ``depth`` containers deep (1: an empty container)."""
    value: object = {} if kind == "object" else []
    for _ in range(depth - 1):
        value = {"x": value} if kind == "object" else [value]
    return value


@pytest.mark.parametrize("kind", ["object", "array"])
@pytest.mark.parametrize("where", ["batch", "item"])
def test_nesting_deeper_than_the_limit_is_rejected_at_any_place(kind: str, where: str) -> None:
    from schemas.validate import MAX_JSON_DEPTH

    def batch(depth: int) -> dict[str, object]:
        # levels above the nested value: the batch (1); or the batch, its list and the item (3)
        if where == "batch":
            return {"barcodes": [item(0)], "extra": nested(depth - 1, kind)}
        return {"barcodes": [{**item(0), "extra": nested(depth - 3, kind)}]}

    if where == "item":  # items keep unknown keys (a batch refuses them, whatever their depth)
        parse_batch(orjson.loads(orjson.dumps(batch(MAX_JSON_DEPTH))))  # at the limit: accepted
    with pytest.raises(BatchValidationError, match=f"nested deeper than {MAX_JSON_DEPTH} levels"):
        parse_batch(orjson.dumps(batch(MAX_JSON_DEPTH + 1)))
