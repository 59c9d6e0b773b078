"""Kafka record headers that are part of the wire contract.

``x-owner`` names who submitted a batch: the facade sets it on the request to the key id of the API key
that claimed the ``batch_id`` (the SHA-256 hex of the key, never the key). The worker carries it through
its records to the sink, and the sink sets it on the batch's result. A facade stores a result only for
that owner, so a result can never land under another key's claim of the same id, even when the claim
itself was lost (evicted, expired) while the batch was in the pipeline. Requests published by upstream
systems carry no owner, and neither do their results: a facade neither stores nor answers those, even
under an id one of its clients chose too.

``x-run`` names the run a result answers (the request's source ``partition:offset`` in the worker's
records, ``sink/aggregate.py``). The sink sets it on every result; a restarted sink reads the results written
since its last commit and skips the runs they answer, so a crash between a result's ack and the next commit
writes no second result. Consumers of results may ignore it.
"""

from __future__ import annotations

from collections.abc import Iterable

OWNER_HEADER = "x-owner"
RUN_HEADER = "x-run"
MAX_OWNER_CHARS = 128


def owner_headers(owner: str | None) -> list[tuple[str, bytes]] | None:
    """The headers of a record on behalf of ``owner`` (None when there is none)."""
    return [(OWNER_HEADER, owner.encode())] if owner else None


def valid_owner(value: object) -> str | None:
    """``value`` when it is an owner as the facade writes one (printable ASCII, at most 128 characters)."""
    if isinstance(value, str) and 0 < len(value) <= MAX_OWNER_CHARS and value.isascii() and value.isprintable():
        return value
    return None


def owner_from(headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    """The owner named by a record's headers; None when absent or not one a facade would write."""
    return valid_owner(header(headers, OWNER_HEADER))


def header(headers: Iterable[tuple[str, bytes]] | None, name: str) -> str | None:
    """The value of header ``name`` as ASCII text; None when absent or not ASCII."""
    for key, value in headers or ():
        if key == name:
            try:
                return bytes(value).decode("ascii")
            except (UnicodeDecodeError, TypeError):
                return None
    return None
