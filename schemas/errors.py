"""Exception root and stable error codes shared by every barcodeflow component.

Item errors are narrow ``ValueError`` subclasses carrying a stable ``code`` that travels on the
wire (``ItemResult.error.code``); their message names the field and the bad value.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    UNSUPPORTED_TYPE = "unsupported_type"
    INVALID_DATA = "invalid_data"
    INVALID_CHECK_DIGIT = "invalid_check_digit"
    DATA_TOO_LONG = "data_too_long"
    INVALID_OPTION = "invalid_option"
    INVALID_ITEM = "invalid_item"
    RENDER_FAILED = "render_failed"
    VERIFY_FAILED = "verify_failed"
    TIMEOUT = "timeout"
    INVALID_BATCH = "invalid_batch"
    INTERNAL = "internal_error"


class BarcodeflowError(Exception):
    """Root of every exception barcodeflow raises on purpose."""


class ItemError(BarcodeflowError, ValueError):
    """One item cannot be rendered; the rest of its batch is unaffected."""

    code: ErrorCode = ErrorCode.INVALID_ITEM

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


class InvalidItem(ItemError):
    code = ErrorCode.INVALID_ITEM


class UnsupportedType(ItemError):
    code = ErrorCode.UNSUPPORTED_TYPE


class InvalidData(ItemError):
    code = ErrorCode.INVALID_DATA


class InvalidCheckDigit(InvalidData):
    code = ErrorCode.INVALID_CHECK_DIGIT


class DataTooLong(InvalidData):
    code = ErrorCode.DATA_TOO_LONG


class InvalidOption(ItemError):
    code = ErrorCode.INVALID_OPTION


class RenderFailed(ItemError):
    code = ErrorCode.RENDER_FAILED


class VerifyFailed(ItemError):
    code = ErrorCode.VERIFY_FAILED


class BatchValidationError(BarcodeflowError, ValueError):
    """The whole batch is rejected; ``problems`` lists every problem found, not just the first."""

    code = ErrorCode.INVALID_BATCH

    def __init__(self, problems: list[dict[str, str]]) -> None:
        self.problems = problems
        summary = "; ".join(f"{p['loc']}: {p['message']}" if p.get("loc") else p["message"] for p in problems)
        super().__init__(f"invalid batch: {summary}")
