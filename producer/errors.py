from __future__ import annotations

from schemas.errors import BarcodeflowError


class KafkaUnavailable(BarcodeflowError):
    """The broker could not be reached (or did not acknowledge) within the configured time."""


class ResultTimeout(BarcodeflowError, TimeoutError):
    """No BatchResult arrived for a batch within the caller's timeout."""

    def __init__(self, batch_id: str, timeout: float) -> None:
        super().__init__(f"no result for batch {batch_id} within {timeout:g} s")
        self.batch_id = batch_id
