"""The topics a test session creates on the shared broker, deleted when the session ends.

Every private pipeline of a session (its own ``topic_prefix`` and Faust ``app_id``) is recorded with
``private``; the session's ``stack_settings`` fixture deletes every topic named with one of the recorded
prefixes once all other fixtures are gone. Topics of other sessions (or of a benchmark running beside the
tests) never match: each prefix carries a random run id.
"""

from __future__ import annotations

import asyncio
import logging

from barcodeflow.settings import Settings
from stream_app.topics import delete_prefixed

__all__ = ["delete_prefixed", "delete_recorded", "private", "recorded"]

log = logging.getLogger(__name__)

_PREFIXES: set[str] = set()


def private(settings: Settings) -> Settings:
    """Record ``settings``' topics (``topic_prefix``) and Faust's internal ones (``{app_id}-``) for deletion."""
    if settings.topic_prefix:
        _PREFIXES.add(settings.topic_prefix)
    _PREFIXES.add(f"{settings.app_id}-")
    return settings


def recorded() -> frozenset[str]:
    return frozenset(_PREFIXES)


def delete_recorded(bootstrap: str) -> None:
    """Session end: delete the recorded topics; a failure is logged, never fails the session."""
    try:
        names = asyncio.run(delete_prefixed(bootstrap, recorded()))
    except Exception as exc:  # clean-up only: the tests' outcome stands
        log.warning("deleting this session's topics failed: %r", exc)
        return
    log.info("deleted %d topics of this session", len(names))
