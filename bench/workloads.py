"""Realistic, unique-per-item barcode workloads shared by every part of the benchmark harness.

Every item carries data that no other item of this run (and, through the random run tag, no recent
run) uses, so "unique" really means "a render-cache miss": the cache key is a hash of the item.

Formats: 3 items in 4 are SVG, every 4th is PNG (so PNG's encoder and the base64 of its bytes on
the wire are part of every figure). In the mixed workload the four types take turns, and the PNG
quarter is spread evenly over them (item ``i`` is ``TYPES[i % 4]``, PNG when ``(i // 4) % 4 == 3``).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from itertools import count
from typing import Any

TYPES: tuple[str, ...] = ("qr", "ean13", "code128", "datamatrix")
WORKLOADS: tuple[str, ...] = (*TYPES, "mixed")
PNG_SHARE = "1 in 4 items PNG, 3 in 4 SVG"

_ALNUM = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class DataSource:
    """Unique data per barcode type; ``tag`` (random per run) keeps runs apart in the shared cache."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.tag4 = f"{self.rng.randrange(10_000):04d}"
        self.tag = "".join(self.rng.choice(_ALNUM) for _ in range(6))
        self._n = count()

    def data(self, barcode_type: str, n: int | None = None) -> str:
        i = next(self._n) if n is None else n
        r = self.rng
        if barcode_type == "qr":  # a product / tracking URL, 60-75 characters
            sku = "".join(r.choice(_ALNUM) for _ in range(8))
            return f"https://shop.example.com/p/{sku}?lot={self.tag}-{i:07d}&src=label&v={r.randrange(100)}"
        if barcode_type == "ean13":  # in-store numbers (prefix 2x): 12 digits, the core adds the check digit
            return f"2{self.tag4}{i % 10_000_000:07d}"
        if barcode_type == "code128":  # a shipping / SKU label
            return f"SKU-{self.tag}-{i:07d}-{r.choice(_ALNUM)}{r.randrange(1000):03d}"
        if barcode_type == "datamatrix":  # GS1-style element string text: GTIN + serial + batch
            return f"(01)0950110153000{i % 10}(21){self.tag}{i:08d}(10)L{r.randrange(10_000):04d}"
        raise ValueError(barcode_type)


def item_type(workload: str, i: int) -> str:
    return TYPES[i % len(TYPES)] if workload == "mixed" else workload


def item_format(workload: str, i: int) -> str:
    k = i // len(TYPES) if workload == "mixed" else i
    return "png" if k % 4 == 3 else "svg"


def items(workload: str, source: DataSource, *, start: int = 0) -> Iterator[dict[str, Any]]:
    """An endless stream of unique items of ``workload`` (one of ``WORKLOADS``)."""
    for i in count(start):
        t = item_type(workload, i)
        yield {"barcode_type": t, "data": source.data(t), "format": item_format(workload, i)}


def take(it: Iterator[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return [next(it) for _ in range(n)]


def spec_dicts(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items normalised the way the worker's dispatch agent does it (``plan_batch``): pool-ready dicts."""
    from render import normalize_item

    return [dataclasses.asdict(normalize_item(it)) for it in batch]
