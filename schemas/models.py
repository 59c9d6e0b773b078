"""Pydantic v2 wire models: what travels on ``barcode.requests`` and ``barcode.results``.

Two views of a request exist on purpose:

* ``BatchRequest`` is what the pipeline accepts. Its items are *lenient* (any type name, any data,
  any options) so that one bad item fails alone, with a stable error code, while the other 99 render.
* ``StrictBatchRequest`` / ``BarcodeItem`` describe what a *valid* request looks like. They are what
  the exported JSON Schemas document for non-Python producers.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_MAX_BATCH_SIZE = 100
MAX_CONCURRENT_RANGE = (1, 20)

BarcodeType = Literal[
    "qr", "micro_qr",
    "ean13", "ean8", "upca", "jan", "isbn13", "isbn10", "issn", "ean14", "gs1_128",
    "code128", "code39", "itf", "itf14", "upce", "codabar", "pzn",
    "datamatrix", "pdf417", "aztec",
    "gs1_datamatrix", "gs1_qr", "gs1_digital_link",
]  # fmt: skip
OutputFormat = Literal["svg", "png"]


def new_batch_id() -> str:
    return str(uuid.uuid4())


class ItemOptions(BaseModel):
    """Rendering options of one item (documented view; the render core validates each value)."""

    model_config = ConfigDict(extra="forbid")

    width: int | None = Field(None, ge=1, le=4096, description="Output width in pixels.")
    height: int | None = Field(None, ge=1, le=4096, description="Output height in pixels.")
    margin: int | None = Field(None, ge=0, le=64, description="Quiet zone in modules.")
    module_size: int | None = Field(None, ge=1, le=64, description="Pixels per module when no width is set.")
    error_correction: Literal["L", "M", "Q", "H"] | None = Field(None, description="QR/Micro QR error level.")
    foreground: str | None = Field(None, description="Bar colour, #rgb or #rrggbb.")
    background: str | None = Field(None, description="Background colour, #rgb, #rrggbb or 'transparent'.")
    show_text: bool | None = Field(None, description="Print the human-readable text under 1D codes.")
    verify: bool | None = Field(
        None, description="Decode the delivered PNG/SVG back and fail the item if it differs (verify_failed)."
    )
    x_dim_mm: float | None = Field(
        None,
        ge=0.05,
        le=10,
        description="X-dimension (module width) in mm, snapped to whole pixels at dpi; the actual value is "
        "reported in metadata.x_dim_mm. Not with width/module_size (2D: nor height).",
    )
    dpi: int | None = Field(
        None, ge=72, le=4800, description="Output resolution (default 300 with x_dim_mm/bar_height_mm): PNG pHYs."
    )
    bar_height_mm: float | None = Field(
        None, ge=1, le=1000, description="1D bar height in mm at dpi (the text band is added below). Not with height."
    )
    quiet_zone_markers: bool | None = Field(None, description="EAN/UPC: print < / > in the quiet zones.")
    bearer: Literal["none", "bars", "frame"] | None = Field(None, description="itf14 bearer bars (default frame).")
    carrier: Literal["qr", "datamatrix"] | None = Field(None, description="gs1_digital_link symbol (default qr).")
    gs1_requisites: bool | None = Field(
        None,
        description="GS1 types: enforce mandatory AI associations, e.g. (10) needs (01) (default true). "
        "Invalid pairs are always refused.",
    )


class BarcodeItem(BaseModel):
    """A valid item, as documented for producers."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, max_length=256)
    barcode_type: BarcodeType
    data: str = Field(
        ...,
        min_length=1,
        description="EAN/UPC add-on: main+12 or main+12345. GS1 types: (AI)value… or raw with GS (0x1D) "
        "separators; gs1_digital_link: a GS1 Digital Link URI or AIs.",
    )
    format: OutputFormat = "svg"
    options: ItemOptions | None = None


class RequestItem(BaseModel):
    """An item as accepted on the wire: shape only; content is checked per item by the render core."""

    model_config = ConfigDict(extra="allow")

    id: str | None = Field(None, max_length=256)
    barcode_type: Any = None
    data: Any = None
    format: Any = "svg"
    options: Any = None


class BatchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    max_concurrent: int = Field(
        10,
        ge=MAX_CONCURRENT_RANGE[0],
        le=MAX_CONCURRENT_RANGE[1],
        description="Upper bound on how many items of this batch render at the same time across the pipeline.",
    )
    include_metadata: bool = True
    validate_only: bool = False
    verify: bool = False
    no_cache: bool = Field(False, description="Render afresh, bypassing cache reads (results are still cached).")


class ReplayMarker(BaseModel):
    """Set on requests republished by ``barcodeflow replay`` and copied onto their results."""

    replayed_at: float
    source_partition: int
    source_offset: int


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_id: str | None = Field(None, min_length=1, max_length=128)
    barcodes: list[RequestItem]
    options: BatchOptions = Field(default_factory=BatchOptions)
    replay: ReplayMarker | None = None

    @field_validator("options", mode="before")
    @classmethod
    def _null_options(cls, v: Any) -> Any:
        return {} if v is None else v


class StrictBatchRequest(BaseModel):
    """The documented request shape (exported as ``batch_request.schema.json``)."""

    model_config = ConfigDict(extra="forbid", title="BatchRequest")

    batch_id: str | None = Field(None, min_length=1, max_length=128)
    barcodes: list[BarcodeItem] = Field(..., min_length=1, max_length=DEFAULT_MAX_BATCH_SIZE)
    options: BatchOptions | None = None


class ErrorInfo(BaseModel):
    code: str
    message: str
    field: str | None = None


class ItemResult(BaseModel):
    index: int
    id: str | None = None
    success: bool
    svg: str | None = None
    png: str | None = Field(None, description="Base64-encoded PNG.")
    cached: bool = False
    generation_time_ms: float = 0.0
    metadata: dict[str, Any] | None = None
    error: ErrorInfo | None = None


class Summary(BaseModel):
    total: int
    successful: int
    failed: int
    cached: int
    total_time_ms: float
    average_time_ms: float


class Problem(BaseModel):
    loc: str
    message: str


class BatchError(BaseModel):
    code: str
    message: str
    problems: list[Problem] = Field(default_factory=list)


class BatchResult(BaseModel):
    batch_id: str
    success: bool
    results: list[ItemResult] = Field(default_factory=list)
    summary: Summary
    error: BatchError | None = None
    replay: ReplayMarker | None = None
