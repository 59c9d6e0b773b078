from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from barcodeflow.settings import Settings
from producer.errors import KafkaUnavailable
from producer.replay import ReplayError, ReplayReport, build_replay_value, format_ms, parse_time, replay
from schemas import parse_batch

NOW = 1_764_532_800.0  # 2025-11-30T20:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-30T20:00:00Z", datetime(2026, 11, 30, 20, tzinfo=UTC)),
        ("2026-11-30T20:00:00", datetime(2026, 11, 30, 20, tzinfo=UTC)),  # naive = UTC
        ("2026-11-30 20:00", datetime(2026, 11, 30, 20, tzinfo=UTC)),
        ("2026-11-30T21:00:00+01:00", datetime(2026, 11, 30, 20, tzinfo=UTC)),
        ("2026-11-30T20:00:00.250Z", datetime(2026, 11, 30, 20, 0, 0, 250_000, tzinfo=UTC)),
        ("2026-11-30", datetime(2026, 11, 30, tzinfo=UTC)),
    ],
)
def test_parse_iso(text: str, expected: datetime) -> None:
    assert parse_time(text) == int(expected.timestamp() * 1000)


@pytest.mark.parametrize(
    ("text", "seconds_ago"),
    [("15m", 900), ("2h", 7200), ("1d", 86400), ("90s", 90), ("1w", 604800), ("1.5h", 5400),
     ("15m ago", 900), (" 2H ", 7200), ("10min", 600)],
)  # fmt: skip
def test_parse_relative(text: str, seconds_ago: int) -> None:
    assert parse_time(text, now=NOW) == int((NOW - seconds_ago) * 1000)


def test_parse_now_and_epoch_ms() -> None:
    assert parse_time("now", now=NOW) == int(NOW * 1000)
    assert parse_time("1764532800000") == 1_764_532_800_000
    assert parse_time("0") == 0
    assert abs(parse_time("now") - time.time() * 1000) < 5000


@pytest.mark.parametrize("text", ["", "yesterday", "15x", "-5m", "2026-13-01", "12:00pm", "1764532800"])
def test_parse_invalid(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        parse_time(text)


def test_epoch_seconds_are_refused_with_a_hint() -> None:
    with pytest.raises(ValueError, match="1764532800000"):
        parse_time("1764532800")


def test_format_ms() -> None:
    assert format_ms(1_764_532_800_000) == "2025-11-30T20:00:00.000Z"
    assert format_ms(None) == "-"


def test_build_replay_value_adds_marker_and_keeps_the_rest() -> None:
    doc = {"batch_id": "b1", "barcodes": [{"barcode_type": "qr", "data": "x"}], "options": {"verify": True}}
    out = build_replay_value(doc, partition=1, offset=42, no_cache=False, now=NOW)
    assert out == {**doc, "replay": {"replayed_at": NOW, "source_partition": 1, "source_offset": 42}}
    assert "replay" not in doc  # the original is not modified
    req = parse_batch(out)
    assert req.replay is not None and req.replay.source_offset == 42
    assert req.batch_id == "b1"


def test_build_replay_value_no_cache() -> None:
    doc = {"batch_id": "b1", "barcodes": [], "options": {"verify": True}}
    out = build_replay_value(doc, partition=0, offset=1, no_cache=True)
    assert out["options"] == {"verify": True, "no_cache": True}
    assert doc["options"] == {"verify": True}
    bare = build_replay_value({"barcodes": []}, partition=0, offset=1, no_cache=True)
    assert bare["options"] == {"no_cache": True}


def test_build_replay_value_replaces_an_older_marker() -> None:
    doc = {
        "batch_id": "b",
        "barcodes": [],
        "replay": {"replayed_at": 1.0, "source_partition": 0, "source_offset": 3},
    }
    out = build_replay_value(doc, partition=1, offset=9, no_cache=False, now=NOW)
    assert out["replay"] == {"replayed_at": NOW, "source_partition": 1, "source_offset": 9}


def test_report_lines() -> None:
    r = ReplayReport(topic="barcode.requests", since_ms=0, until_ms=None, batch_id="b", dry_run=True)
    r.found, r.republished, r.replays_of_replays = 5, 2, 1
    r.skipped.update({"not_json": 1, "other_batch_id": 2})
    r.ranges = {0: (3, 6), 1: (4, 4)}
    lines = r.lines()
    assert lines[0] == (
        "replay of barcode.requests from 1970-01-01T00:00:00.000Z to now, batch id b (dry run: nothing published)"
    )
    assert lines[1:] == [
        "  found:            5 record(s) in the time range",
        "  would republish:  2 (1 of them replays themselves)",
        "  skipped:          3",
        "    not_json:       1",
        "    other_batch_id: 2",
        "  partition 0: offsets 3..5",
        "  partition 1: nothing (offset 4)",
    ]


async def test_until_must_be_after_since() -> None:
    with pytest.raises(ReplayError, match="after"):
        await replay(Settings(), 2000, until_ms=1000)


async def test_kafka_unavailable() -> None:
    with pytest.raises(KafkaUnavailable):
        await replay(Settings(kafka_bootstrap_servers="127.0.0.1:1"), 0, timeout=5)
