"""Render-core throughput, next to the libraries' own writers.

    .venv/bin/python -m bench.render [--seconds 0.5] [--types qr,code128]

Single process. Each case runs for ``--seconds`` in total (after one warm-up call), in 5 slices
interleaved with the other cases of the same type, and reports codes/s:

* ``ours svg`` / ``ours png``: ``render_item(item)`` end to end (validate + encode + write);
* ``baseline svg``: python-barcode's stock ``SVGWriter`` for the 1D types (same data; its ``pzn``,
  ``isbn10``, ``issn``, ``ean14`` classes, whatever they draw), segno's ``make(...).save(kind='svg')``
  for qr / micro_qr, zxing-cpp's ``Barcode.to_svg()`` for the matrix types;
* ``ratio``: ours svg / baseline svg.
"""

from __future__ import annotations

import argparse
import io
import platform
import sys
import time
from collections.abc import Callable

import segno
import zxingcpp
from barcode import get_barcode_class
from barcode.writer import SVGWriter

from render import RENDERER_VERSION, SUPPORTED_TYPES, render_item

SAMPLES: dict[str, str] = {
    "qr": "https://example.com/item/12345",
    "micro_qr": "12345678",
    "ean13": "590123412345",
    "ean8": "9638507",
    "upca": "03600029145",
    "jan": "490123456789",
    "isbn13": "978316148410",
    "isbn10": "030640615",
    "issn": "0317847",
    "ean14": "1234567890123",
    "gs1_128": "(01)12345678901231(10)ABC123",
    "code128": "ABC-123456-xyz",
    "code39": "ABC-123456",
    "itf": "12345678",
    "codabar": "A123456B",
    "pzn": "123456",
    "datamatrix": "https://example.com/item/12345",
    "pdf417": "https://example.com/item/12345",
    "aztec": "https://example.com/item/12345",
    "itf14": "1540014128876",
    "upce": "0123456",
    "gs1_datamatrix": "(01)09506000134352(17)201231(10)ABC123",
    "gs1_qr": "(01)09506000134352(17)201231(10)ABC123",
    "gs1_digital_link": "https://id.gs1.org/01/09506000134352/10/ABC123",
}
_PYBARCODE = {
    "ean13": "ean13", "ean8": "ean8", "upca": "upca", "jan": "jan", "isbn13": "isbn13", "isbn10": "isbn10",
    "issn": "issn", "ean14": "ean14", "code128": "code128", "code39": "code39", "itf": "itf",
    "codabar": "codabar", "pzn": "pzn",
}  # fmt: skip
_ZXING = {
    "datamatrix": zxingcpp.BarcodeFormat.DataMatrix,
    "pdf417": zxingcpp.BarcodeFormat.PDF417,
    "aztec": zxingcpp.BarcodeFormat.Aztec,
}


ROW = "{:<11} {:>11} {:>11} {:>15}  {:<15} {:>7}"


def rates(fns: list[Callable[[], object]], seconds: float, slices: int = 5) -> list[float]:
    """codes/s of each callable, ``seconds`` each, measured in interleaved slices so that every case
    sees the same machine load (the ratio stays meaningful on a busy host)."""
    for fn in fns:
        fn()  # warm-up (imports, caches)
    counts = [0] * len(fns)
    spent = [0.0] * len(fns)
    for _ in range(slices):
        for i, fn in enumerate(fns):
            n = 0
            start = time.perf_counter()
            deadline = start + seconds / slices
            while True:
                fn()
                n += 1
                now = time.perf_counter()
                if now >= deadline:
                    break
            counts[i] += n
            spent[i] += now - start
    return [c / t for c, t in zip(counts, spent, strict=True)]


def baseline(barcode_type: str, data: str) -> tuple[str, Callable[[], object]] | None:
    if barcode_type == "gs1_128":
        cls = get_barcode_class("gs1_128")
        raw = "0112345678901231" + "10ABC123"
        return "python-barcode", lambda: cls(raw, writer=SVGWriter()).write(io.BytesIO())
    if barcode_type in _PYBARCODE:
        cls = get_barcode_class(_PYBARCODE[barcode_type])
        kwargs = {"add_checksum": False} if barcode_type == "code39" else {}
        return "python-barcode", lambda: cls(data, writer=SVGWriter(), **kwargs).write(io.BytesIO())
    if barcode_type == "qr":
        return "segno", lambda: segno.make_qr(data, error="m", boost_error=False).save(io.BytesIO(), kind="svg")
    if barcode_type == "micro_qr":
        return "segno", lambda: segno.make_micro(data).save(io.BytesIO(), kind="svg")
    if barcode_type in _ZXING:
        fmt = _ZXING[barcode_type]
        return "zxing-cpp", lambda: zxingcpp.create_barcode(data, fmt).to_svg()
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.render",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=0.5, help="run time per case (default 0.5)")
    parser.add_argument("--types", default=",".join(SUPPORTED_TYPES), help="comma-separated barcode types")
    args = parser.parse_args(argv)
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    unknown = [t for t in types if t not in SUPPORTED_TYPES]
    if unknown:
        parser.error(f"unknown types: {', '.join(unknown)}")

    print(
        f"render core {RENDERER_VERSION} | Python {platform.python_version()} | segno {segno.__version__} | "
        f"{args.seconds:g} s per case, single process"
    )
    header = ROW.format("type", "ours svg/s", "ours png/s", "baseline svg/s", "baseline", "ratio")
    print(header)
    print("-" * len(header))
    for barcode_type in types:
        data = SAMPLES[barcode_type]
        svg_item = {"barcode_type": barcode_type, "data": data, "format": "svg"}
        png_item = {"barcode_type": barcode_type, "data": data, "format": "png"}
        first = render_item(svg_item)
        if not first.success:
            print(f"{barcode_type:<11} sample failed: {first.error}")
            continue
        cases: list[Callable[[], object]] = [
            lambda item=svg_item: render_item(item),  # type: ignore[misc]
            lambda item=png_item: render_item(item),  # type: ignore[misc]
        ]
        base = baseline(barcode_type, data)
        if base is not None:
            cases.append(base[1])
        measured = rates(cases, args.seconds)
        ours_svg, ours_png = measured[0], measured[1]
        if base is None:
            print(ROW.format(barcode_type, f"{ours_svg:,.0f}", f"{ours_png:,.0f}", "-", "-", "-"))
            continue
        name, base_rate = base[0], measured[2]
        ratio = ours_svg / base_rate
        print(
            ROW.format(
                barcode_type,
                f"{ours_svg:,.0f}",
                f"{ours_png:,.0f}",
                f"{base_rate:,.0f}",
                name,
                f"{ratio:.1f}x",
            )
        )
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
