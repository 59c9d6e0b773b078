"""The sink's own record of which items records it has processed, in pure code.

Faust's committed offsets cannot be trusted to mean "processed": after a rebalance a restarted sink
acknowledged (and committed) records its agent never saw (RELIABILITY.md, D6: six batches whose open
record and all parts were on the topic, below the committed offset, never aggregated). So the sink
keeps, per items partition, the next offset it expects, in its own table: the mark is written to the
changelog together with the state it describes and recovered with it. A record above the mark means
records were skipped: the sink reads the partition again from the mark. A record below it was
processed already (a redelivery): it is skipped.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any, Literal

MARK_PREFIX = "__next_offset__|"


def mark_key(partition: int) -> str:
    return f"{MARK_PREFIX}{partition}"


def is_mark_key(key: str) -> bool:
    return key.startswith(MARK_PREFIX)


@dataclass(frozen=True)
class Admission:
    verdict: Literal["process", "duplicate", "gap"]
    expected: int | None = None  # the mark, for "gap": where to read again from


class OffsetMarks:
    def __init__(self, store: MutableMapping[str, Any]) -> None:
        self.store = store

    def admit(self, partition: int, offset: int) -> Admission:
        expected = self.store.get(mark_key(partition))
        if not isinstance(expected, int) or offset == expected:  # no mark yet: a new consumer group
            return Admission("process", expected)
        if offset < expected:
            return Admission("duplicate", expected)
        return Admission("gap", expected)

    def processed(self, partition: int, offset: int) -> None:
        self.store[mark_key(partition)] = offset + 1
