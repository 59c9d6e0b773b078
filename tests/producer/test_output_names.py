from __future__ import annotations

import base64

import pytest

from producer.outputs import image_files, safe_name


@pytest.mark.parametrize("ident", ["A1", "sku-0001", "item_7.v2", "x" * 100])
def test_safe_ids_are_kept(ident: str) -> None:
    assert safe_name(ident) == ident


@pytest.mark.parametrize(
    "ident",
    ["../etc/passwd", "..", ".", ".hidden", "a/b", "a\\b", "/abs", "C:\\x", "ü", "", "a b", "x" * 300, "CON",
     "nul.txt", "end.", "tab\there", "new\nline", "\x00"],
)  # fmt: skip
def test_unsafe_ids_become_plain_file_names(ident: str) -> None:
    name = safe_name(ident)
    assert name and "/" not in name and "\\" not in name and "\x00" not in name
    assert not name.startswith(".")
    assert name not in (".", "..")
    assert len(name) <= 120
    assert name.split(".")[0].upper() not in {"CON", "NUL"}
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in name)


def test_distinct_ids_stay_distinct() -> None:
    ids = ["a/b", "a_b", "a\\b", "a b", "a?b", "x" * 150, "x" * 151, ".a", "a"]
    names = [safe_name(i) for i in ids]
    assert len(set(names)) == len(ids)
    assert safe_name("a/b") == safe_name("a/b")  # deterministic


def _result(*items: dict[str, object]) -> dict[str, object]:
    return {"batch_id": "b", "results": [{"index": i, **it} for i, it in enumerate(items)]}


def test_image_files_names_and_content() -> None:
    png = b"\x89PNG\r\n\x1a\nDATA"
    res = _result(
        {"id": "one", "success": True, "svg": "<svg/>"},
        {"id": None, "success": True, "png": base64.b64encode(png).decode()},
        {"id": "../up", "success": True, "svg": "<svg>u</svg>"},
        {"id": "bad", "success": False, "error": {"code": "invalid_data", "message": "x"}},
        {"id": "nothing", "success": True},  # validate_only: no image
    )
    files, problems = image_files(res)
    assert problems == []
    names = dict(files)
    assert names["one.svg"] == b"<svg/>"
    assert names["1.png"] == png
    (up,) = [n for n in names if n.endswith(".svg") and n.startswith("_up-")]
    assert names[up] == b"<svg>u</svg>"
    assert len(files) == 3


def test_image_files_collisions_get_the_index() -> None:
    res = _result(
        {"id": "2", "success": True, "svg": "a"},
        {"id": None, "success": True, "svg": "b"},
        {"id": None, "success": True, "svg": "c"},  # index 2 collides with id "2"
        {"id": "A", "success": True, "svg": "d"},
        {"id": "a", "success": True, "svg": "e"},  # case-insensitive file systems
    )
    files, _ = image_files(res)
    names = [n for n, _ in files]
    assert len({n.casefold() for n in names}) == 5
    assert names[:2] == ["2.svg", "1.svg"]
    assert names[2] == "2-2.svg"


def test_image_files_reports_bad_base64() -> None:
    files, problems = image_files(_result({"id": "p", "success": True, "png": "not base64!"}))
    assert files == []
    assert len(problems) == 1 and "base64" in problems[0]
