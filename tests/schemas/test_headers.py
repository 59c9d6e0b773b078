"""``schemas.headers``: the ``x-owner`` header a facade puts on a request and the sink on its result."""

from __future__ import annotations

import pytest

from schemas.headers import OWNER_HEADER, RUN_HEADER, header, owner_from, owner_headers, valid_owner

KEY_ID = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def test_owner_headers_round_trip() -> None:
    headers = owner_headers(KEY_ID)
    assert headers == [(OWNER_HEADER, KEY_ID.encode())]
    assert owner_from(headers) == KEY_ID


def test_no_owner_means_no_header() -> None:
    assert owner_headers(None) is None
    assert owner_headers("") is None
    assert owner_from(None) is None
    assert owner_from([]) is None
    assert owner_from([("x-error-code", b"invalid_batch")]) is None


def test_the_first_owner_header_counts() -> None:
    assert owner_from([("other", b"x"), (OWNER_HEADER, b"key-a"), (OWNER_HEADER, b"key-b")]) == "key-a"


@pytest.mark.parametrize(
    "value",
    [b"", b"\xff\xfe", b"a" * 129, b"key\nwith newline", "schlüssel".encode(), b"tab\there"],
)
def test_an_owner_a_facade_would_not_write_is_no_owner(value: bytes) -> None:
    assert owner_from([(OWNER_HEADER, value)]) is None


@pytest.mark.parametrize("value", [None, 7, ["key-a"], {"owner": "key-a"}, "", "a" * 129])
def test_valid_owner_refuses_anything_but_a_short_printable_string(value: object) -> None:
    assert valid_owner(value) is None


def test_valid_owner_keeps_a_key_id() -> None:
    assert valid_owner(KEY_ID) == KEY_ID
    assert valid_owner("a" * 128) == "a" * 128


def test_a_header_is_read_as_ascii_text_or_not_at_all() -> None:
    assert header([("x-owner", b"a"), ("x-run", b"3:17")], RUN_HEADER) == "3:17"
    assert header([("x-run", bytearray(b"0:1"))], RUN_HEADER) == "0:1"
    assert header([("x-run", "3:17".encode("utf-16"))], RUN_HEADER) is None  # not ASCII
    assert header([("x-owner", b"a")], RUN_HEADER) is None
    assert header(None, RUN_HEADER) is None
