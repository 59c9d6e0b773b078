"""Export the wire models as JSON Schema files for non-Python producers and consumers.

``python -m schemas.export`` rewrites ``schemas/json/*.schema.json``; a test fails when they are stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
from pydantic import BaseModel

from schemas.models import BarcodeItem, BatchResult, StrictBatchRequest

JSON_DIR = Path(__file__).resolve().parent / "json"
EXPORTS: dict[str, type[BaseModel]] = {
    "batch_request": StrictBatchRequest,
    "barcode_item": BarcodeItem,
    "batch_result": BatchResult,
}


def render_schemas() -> dict[str, bytes]:
    out = {}
    for name, model in EXPORTS.items():
        schema = model.model_json_schema(mode="validation" if name != "batch_result" else "serialization")
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"{name}.schema.json", **schema}
        out[f"{name}.schema.json"] = orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    return out


def main() -> int:
    JSON_DIR.mkdir(exist_ok=True)
    for fname, data in render_schemas().items():
        (JSON_DIR / fname).write_bytes(data)
        print(f"wrote {JSON_DIR / fname}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
