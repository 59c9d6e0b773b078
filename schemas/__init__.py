"""Wire models, validation and error codes of barcodeflow."""

from schemas.errors import BarcodeflowError, BatchValidationError, ErrorCode, ItemError
from schemas.models import (
    DEFAULT_MAX_BATCH_SIZE,
    BarcodeItem,
    BatchOptions,
    BatchRequest,
    BatchResult,
    ErrorInfo,
    ItemResult,
    ReplayMarker,
    RequestItem,
    StrictBatchRequest,
    Summary,
)
from schemas.validate import parse_batch, peek_batch_id

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE",
    "BarcodeItem",
    "BarcodeflowError",
    "BatchOptions",
    "BatchRequest",
    "BatchResult",
    "BatchValidationError",
    "ErrorCode",
    "ErrorInfo",
    "ItemError",
    "ItemResult",
    "ReplayMarker",
    "RequestItem",
    "StrictBatchRequest",
    "Summary",
    "parse_batch",
    "peek_batch_id",
]
