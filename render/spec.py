"""Entry normalisation: a raw item dict becomes a canonical, hashable, picklable ``RenderSpec`` once.

Everything downstream trusts the spec. Canonicalisation rules (so that equal outputs share a cache key):

* ``data`` is the symbology's canonical form (e.g. EAN-13 always with its 13th, check digit);
* defaults are resolved: ``margin`` (per symbology), colours (``#000000`` on ``#ffffff``), ``show_text``
  (1D: True, 2D: False), ``error_correction`` (qr: ``M``; micro_qr: None = segno's choice), 1D bar
  ``height`` (80 px);
* options without effect are dropped: ``module_size`` is None whenever ``width``/``height`` decide the
  scale (2D) or ``width`` does (1D); otherwise it holds the effective value (2D 4 px, 1D 2 px).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from functools import cache
from operator import itemgetter
from typing import Any

import orjson

from render._text import show
from render.registry import REGISTRY, SUPPORTED_TYPES, Symbology
from schemas.errors import DataTooLong, InvalidData, InvalidItem, InvalidOption, UnsupportedType

RENDERER_VERSION = "3"

MAX_SIDE = 4096  # px, for width, height and any derived image side
MAX_MARGIN = 64  # modules
MAX_MODULE_SIZE = 64  # px per module
MAX_DATA_CHARS = 7089  # the most any supported symbology holds (QR, numeric)
DEFAULT_MODULE_SIZE_2D = 4
DEFAULT_MODULE_SIZE_1D = 2
DEFAULT_BAR_HEIGHT = 80
DEFAULT_FOREGROUND = "#000000"
DEFAULT_BACKGROUND = "#ffffff"
TRANSPARENT = "transparent"
FORMATS: tuple[str, ...] = ("svg", "png")

OPTION_KEYS: tuple[str, ...] = (
    "width",
    "height",
    "margin",
    "module_size",
    "error_correction",
    "foreground",
    "background",
    "show_text",
    "verify",
    "x_dim_mm",
    "dpi",
    "bar_height_mm",
    "quiet_zone_markers",
    "bearer",
    "carrier",
    "gs1_requisites",
)
DEFAULT_DPI = 300
DATAMATRIX_MARGIN = 1  # modules, gs1_digital_link with carrier datamatrix (as datamatrix)
DPI_RANGE = (72, 4800)
X_DIM_RANGE = (0.05, 10.0)  # mm
BAR_HEIGHT_RANGE = (1.0, 1000.0)  # mm
BEARERS = ("none", "bars", "frame")
CARRIERS = ("qr", "datamatrix")
_INT_RANGES = {
    "width": (1, MAX_SIDE),
    "height": (1, MAX_SIDE),
    "margin": (0, MAX_MARGIN),
    "module_size": (1, MAX_MODULE_SIZE),
    "dpi": (72, 4800),
}
_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")


@dataclass(frozen=True, slots=True)
class RenderSpec:
    """A normalised render request. Build it with ``normalize_item``; fields are already canonical."""

    barcode_type: str
    data: str
    format: str  # "svg" | "png"
    width: int | None
    height: int | None
    margin: int | None
    module_size: int | None
    error_correction: str | None
    foreground: str
    background: str  # "#rrggbb" or "transparent"
    show_text: bool
    verify: bool
    x_dim_mm: float | None = None  # requested X-dimension (module width); module_size holds its pixels
    dpi: int | None = None  # output resolution: PNG pHYs, SVG sizes in mm (with x_dim_mm)
    bar_height: int | None = None  # 1D: bar height in px from bar_height_mm (text band added below)
    quiet_zone_markers: bool = False  # EAN/UPC: print < / > in the quiet zones
    bearer: str | None = None  # itf14: "none" | "bars" | "frame"
    carrier: str | None = None  # gs1_digital_link: "qr" | "datamatrix"
    gs1_requisites: bool = True  # GS1: enforce the mandatory AI associations

    def cache_key(self) -> str:
        """sha256 hex of the canonical field tuple + ``RENDERER_VERSION``.

        ``verify`` is included: it changes the result (``metadata['verified']``, or a VerifyFailed), so a
        cached unverified render must never answer a verify request.
        """
        return _key(getattr(self, name) for name in _FIELD_NAMES)

    def to_dict(self) -> dict[str, Any]:
        """Plain fields, as shipped to the render pool (``RenderSpec(**d)`` rebuilds it)."""
        return {name: getattr(self, name) for name in _FIELD_NAMES}


_FIELD_NAMES = tuple(f.name for f in fields(RenderSpec))
_field_values = itemgetter(*_FIELD_NAMES)


def _key(values: Iterable[Any]) -> str:
    return hashlib.sha256(orjson.dumps([RENDERER_VERSION, *values])).hexdigest()


def fields_key(spec: Mapping[str, Any]) -> str:
    """``RenderSpec(**spec).cache_key()``, from a spec's plain fields (as ``spec_fields`` gives them)."""
    return _key(_field_values(spec))


def _option_error(key: str, value: Any, why: str) -> InvalidOption:
    return InvalidOption(f"options.{key}: {show(value)} {why}", field=f"options.{key}")


def _int_option(key: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _option_error(key, value, "is not an integer")
    lo, hi = _INT_RANGES[key]
    if not lo <= value <= hi:
        raise _option_error(key, value, f"is out of range {lo}..{hi}")
    return int(value)


def _bool_option(key: str, value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise _option_error(key, value, "is not a boolean (true/false)")


def _float_option(key: str, value: Any, lo: float, hi: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise _option_error(key, value, "is not a number")
    if not lo <= value <= hi:
        raise _option_error(key, value, f"is out of range {lo:g}..{hi:g}")
    return float(value)


def _choice_option(key: str, value: Any, choices: tuple[str, ...], applies: bool, kind: str) -> str | None:
    if value is None:
        return None
    if not applies:
        raise _option_error(key, value, f"is only supported for {kind}")
    if value not in choices:
        raise _option_error(key, value, f"is not one of {', '.join(choices)}")
    return str(value)


def _colour_option(key: str, value: Any, default: str, *, transparent: bool) -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise _option_error(key, value, "is not a colour string")
    if transparent and value.lower() == TRANSPARENT:
        return TRANSPARENT
    if not _COLOUR.fullmatch(value):
        allowed = "'#rgb', '#rrggbb' or 'transparent'" if transparent else "'#rgb' or '#rrggbb'"
        raise _option_error(key, value, f"is not a colour: expected {allowed}")
    hexdigits = value[1:].lower()
    if len(hexdigits) == 3:
        hexdigits = "".join(ch * 2 for ch in hexdigits)
    return "#" + hexdigits


def _ec_option(value: Any, symbology: Symbology) -> str | None:
    if value is None:
        return "M" if symbology.name == "qr" else None
    if not symbology.ec_levels:
        raise _option_error("error_correction", value, f"is not supported for {symbology.name} (only for qr, micro_qr)")
    level = value.upper() if isinstance(value, str) else None
    if level not in symbology.ec_levels:
        raise _option_error(
            "error_correction",
            value,
            f"is not a level of {symbology.name}: expected one of {', '.join(symbology.ec_levels)}",
        )
    return level


def _symbology(value: Any) -> Symbology:
    exact = REGISTRY.get(value) if isinstance(value, str) else None  # already canonical (the usual case)
    if exact is not None:
        return exact
    name = value.strip().lower().replace("-", "_") if isinstance(value, str) else None
    symbology = REGISTRY.get(name) if name is not None else None
    if symbology is None:
        raise UnsupportedType(
            f"barcode_type: {show(value)} is not supported (supported: {', '.join(SUPPORTED_TYPES)})",
            field="barcode_type",
        )
    return symbology


def _format(value: Any) -> str:
    if value is None:
        return "svg"
    if isinstance(value, str) and value in FORMATS:
        return value
    fmt = value.lower() if isinstance(value, str) else None
    if fmt not in FORMATS:
        raise InvalidOption(f"format: {show(value)} is not supported (expected 'svg' or 'png')", field="format")
    return fmt


def normalize_data(symbology: Symbology, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidData(f"data: {show(value)} is not a non-empty string", field="data")
    if len(value) > MAX_DATA_CHARS:
        raise DataTooLong(
            f"data: {show(value)} is too long: {len(value)} characters, no symbology holds more than {MAX_DATA_CHARS}",
            field="data",
        )
    try:
        if not value.isascii():  # ASCII has no surrogates
            value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidData(
            f"data: {show(value)} contains unpaired surrogates (not valid Unicode text)", field="data"
        ) from None
    return value


def normalize_item(item: Mapping[str, Any], *, verify: bool = False) -> RenderSpec:
    """Validate one raw item ``{barcode_type, data, format, options}``; raise an ``ItemError`` subclass.

    ``options.verify`` (when given) overrides the batch-level ``verify``. Other item keys (``id``…) are
    ignored.
    """
    symbology, fmt, data, options = _entry(item)
    if _no_options(options):  # the common case: all defaults
        return RenderSpec(**{**_default_fields(symbology.name, fmt, bool(verify)), "data": data})
    return _with_options(symbology, fmt, data, options, verify)


def spec_fields(item: Mapping[str, Any], *, verify: bool = False) -> dict[str, Any]:
    """``normalize_item(item, verify=verify).to_dict()``, the same checks and errors: what a dispatcher
    ships to the render pool and keys the cache with (``fields_key``). An item without options builds no
    ``RenderSpec`` on the way (setting the fields of a frozen dataclass is most of ``normalize_item``'s
    cost, and a worker normalises every item of every batch)."""
    symbology, fmt, data, options = _entry(item)
    if _no_options(options):
        out = dict(_default_fields(symbology.name, fmt, bool(verify)))  # field order as ``to_dict`` has it
        out["data"] = data
        return out
    return _with_options(symbology, fmt, data, options, verify).to_dict()


def _entry(item: Mapping[str, Any]) -> tuple[Symbology, str, str, Any]:
    """The checks every item passes: symbology, format and canonical data; the options as given."""
    if not isinstance(item, Mapping):
        raise InvalidItem(f"item: {show(item)} is not an object", field="item")
    symbology = _symbology(item.get("barcode_type"))
    fmt = _format(item.get("format"))
    options = item.get("options")
    early = options.get("gs1_requisites") if isinstance(options, Mapping) else None
    kwargs = {"requisites": early is not False} if symbology.gs1 else {}
    return symbology, fmt, symbology.normalize(normalize_data(symbology, item.get("data")), **kwargs), options


def _no_options(options: Any) -> bool:
    return not options and (options is None or isinstance(options, Mapping))


@cache
def _default_fields(barcode_type: str, fmt: str, verify: bool) -> dict[str, Any]:
    """Every field of a spec without options, ``data`` empty (the option rules below, resolved once)."""
    return _with_options(REGISTRY[barcode_type], fmt, "", {}, verify).to_dict()


def _with_options(symbology: Symbology, fmt: str, data: str, options: Any, verify: bool) -> RenderSpec:
    if not isinstance(options, Mapping):
        raise InvalidOption(f"options: {show(options)} is not an object", field="options")
    for key in options:
        if not isinstance(key, str):
            raise InvalidOption(f"options: key {show(key)} is not a string", field="options")
        if key not in OPTION_KEYS:
            name = key if key.isidentifier() and len(key) <= 40 else show(key)
            allowed = ", ".join(OPTION_KEYS)
            raise InvalidOption(f"options.{name}: unknown option (allowed: {allowed})", field=f"options.{name}")

    width = _int_option("width", options.get("width"))
    height = _int_option("height", options.get("height"))
    margin = _int_option("margin", options.get("margin"))
    module_size = _int_option("module_size", options.get("module_size"))
    error_correction = _ec_option(options.get("error_correction"), symbology)
    fg_raw, bg_raw = options.get("foreground"), options.get("background")
    foreground = _colour_option("foreground", fg_raw, DEFAULT_FOREGROUND, transparent=False)
    background = _colour_option("background", bg_raw, DEFAULT_BACKGROUND, transparent=True)
    if foreground == background:
        same = f"is the same colour as the background ({background})"
        raise _option_error("foreground", fg_raw or foreground, same)
    show_text = _bool_option("show_text", options.get("show_text"))
    verify_opt = _bool_option("verify", options.get("verify"))
    x_dim_mm = _float_option("x_dim_mm", options.get("x_dim_mm"), *X_DIM_RANGE)
    bar_height_mm = _float_option("bar_height_mm", options.get("bar_height_mm"), *BAR_HEIGHT_RANGE)
    dpi = _int_option("dpi", options.get("dpi"))
    markers = _bool_option("quiet_zone_markers", options.get("quiet_zone_markers"))
    if markers and not symbology.retail:
        raise _option_error("quiet_zone_markers", markers, "is only supported for EAN/UPC types")
    bearer = _choice_option("bearer", options.get("bearer"), BEARERS, symbology.name == "itf14", "itf14")
    carrier = _choice_option(
        "carrier", options.get("carrier"), CARRIERS, symbology.name == "gs1_digital_link", "gs1_digital_link"
    )
    requisites = _bool_option("gs1_requisites", options.get("gs1_requisites"))
    if requisites is not None and not symbology.gs1:
        raise _option_error("gs1_requisites", requisites, "is only supported for GS1 types")
    requisites = True if requisites is None else requisites
    if carrier == "datamatrix" and error_correction is not None and options.get("error_correction") is not None:
        raise _option_error("error_correction", options.get("error_correction"), "is not supported for Data Matrix")
    if symbology.name == "gs1_digital_link":
        carrier = carrier or "qr"
        if carrier == "datamatrix" and margin is None:
            margin = DATAMATRIX_MARGIN
        error_correction = None if carrier == "datamatrix" else (error_correction or "M")
    if symbology.name == "itf14":
        bearer = bearer or "frame"
    bar_height: int | None = None
    if x_dim_mm is not None or bar_height_mm is not None:
        dpi = dpi or DEFAULT_DPI
    if x_dim_mm is not None:
        for key in ("width", "height", "module_size") if not symbology.linear else ("width", "module_size"):
            if options.get(key) is not None:
                raise _option_error(key, options.get(key), "cannot be combined with options.x_dim_mm")
        module_size = max(1, round(x_dim_mm * (dpi or DEFAULT_DPI) / 25.4))
    if bar_height_mm is not None:
        if not symbology.linear:
            raise _option_error("bar_height_mm", bar_height_mm, f"is not supported for {symbology.name} (1D only)")
        if height is not None:
            raise _option_error("height", height, "cannot be combined with options.bar_height_mm")
        bar_height = max(1, round(bar_height_mm * (dpi or DEFAULT_DPI) / 25.4))

    if symbology.linear:
        show_text = True if show_text is None else show_text
        height = DEFAULT_BAR_HEIGHT if height is None and bar_height is None else height
        module_size = None if width is not None else (module_size or DEFAULT_MODULE_SIZE_1D)
    else:
        if show_text:
            raise _option_error("show_text", show_text, f"is not supported for {symbology.name} (1D only)")
        show_text = False
        if x_dim_mm is not None:
            pass
        elif width is not None or height is not None:
            module_size = None
        else:
            module_size = module_size or DEFAULT_MODULE_SIZE_2D

    return RenderSpec(
        barcode_type=symbology.name,
        data=data,
        format=fmt,
        width=width,
        height=height,
        margin=symbology.default_margin if margin is None and not _symbol_quiet_zone(symbology) else margin,
        module_size=module_size,
        error_correction=error_correction,
        foreground=foreground,
        background=background,
        show_text=show_text,
        verify=bool(verify) if verify_opt is None else verify_opt,
        x_dim_mm=x_dim_mm,
        dpi=dpi,
        bar_height=bar_height,
        quiet_zone_markers=bool(markers),
        bearer=bearer,
        carrier=carrier,
        gs1_requisites=requisites,
    )


def _symbol_quiet_zone(symbology: Symbology) -> bool:
    """EAN/UPC and ITF-14 take the GS1 quiet zones from the symbol (left and right differ)."""
    return symbology.retail or symbology.name == "itf14"
