"""HTTP facade of barcodeflow (FastAPI): batches over Kafka, single images rendered in-process.

Imports are lazy so that importing the package stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConfigError", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from facade.app import create_app

        return create_app
    if name == "ConfigError":
        from barcodeflow.settings import ConfigError

        return ConfigError
    raise AttributeError(name)
