"""R4: malformed messages mixed into good traffic on ``barcode.requests``.

Malformed kinds (each message has a unique key; a few have no key and are found by a marker in their value):
invalid JSON (truncated, NaN, 1e400, nesting beyond the parser's depth, trailing NUL), invalid UTF-8,
2 MiB of random bytes, empty value, tombstone (null value), JSON that is not an object, and valid JSON that
is not a valid batch (barcodes not a list / empty / 101 items, duplicate item ids, max_concurrent 0,
unknown top-level field, bad ``options``/``replay``, items that are not objects, batch_id too long or not a
string). Good batches carry item-level errors on purpose (unknown / non-string type, missing data, wrong
check digit, width 1e9, format gif, options not an object) next to valid items and an item with an extra
field nested 25 levels (29 in all: within MAX_JSON_DEPTH). A batch nested 300 levels is malformed.

Checked: every malformed message is in the DLQ (by key) with its original bytes, ``x-error-code``,
``x-error-reason`` and the source coordinates; those whose ``batch_id`` is readable also get a failed
BatchResult (``invalid_batch``); no good batch is lost or wrong (oracle: in-process render, item error
codes); the worker keeps its pid and logs no traceback/crash; no good batch goes to the DLQ.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from barcodeflow.kafka import producer_config
from barcodeflow.settings import Settings
from tests.conftest import running_pipeline
from tests.faults.checker import ExpectedBatch, ResultsChecker, TopicFollower, expect_batch, header
from tests.faults.conftest import Figures, Scale
from tests.faults.support import LogWatch, RssSampler, keep_logs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VALID_ITEM = {"barcode_type": "qr", "data": "ok"}


def _j(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


# kind -> builder(key) -> (value, batch_id_readable)
MalformedBuilder = Callable[[str], tuple[bytes | None, bool]]

MALFORMED: dict[str, MalformedBuilder] = {
    "truncated_json": lambda k: (b'{"batch_id": "' + k.encode() + b'", "barcodes": [{"barcode_type": "qr"', False),
    "nan": lambda k: (b'{"batch_id": "' + k.encode() + b'", "barcodes": [{"barcode_type": "qr", "data": NaN}]}', False),
    "number_1e400": lambda k: (
        b'{"batch_id": "' + k.encode() + b'", "barcodes": [{"barcode_type": "qr", "data": "x", '
        b'"options": {"width": 1e400}}]}',
        False,
    ),
    "too_deep": lambda k: (b"[" * 5000 + b"]" * 5000, False),
    "trailing_nul": lambda k: (_j({"batch_id": k, "barcodes": [VALID_ITEM]}) + b"\x00", False),
    "invalid_utf8": lambda k: (
        b'{"batch_id": "' + k.encode() + b'", "barcodes": [{"barcode_type": "qr", "data": "\xff\xfe\xc3"}]}',
        False,
    ),
    "empty_value": lambda k: (b"", False),
    "tombstone": lambda k: (None, False),
    "array": lambda k: (_j([{"batch_id": k, "barcodes": [VALID_ITEM]}]), False),
    "string": lambda k: (_j(k), False),
    "number": lambda k: (b"42", False),
    "null": lambda k: (b"null", False),
    "barcodes_not_list": lambda k: (_j({"batch_id": k, "barcodes": "qr"}), True),
    "barcodes_empty": lambda k: (_j({"batch_id": k, "barcodes": []}), True),
    "barcodes_missing": lambda k: (_j({"batch_id": k}), True),
    "too_many_items": lambda k: (_j({"batch_id": k, "barcodes": [VALID_ITEM] * 101}), True),
    "duplicate_ids": lambda k: (
        _j({"batch_id": k, "barcodes": [{"id": "a", **VALID_ITEM}, {"id": "a", **VALID_ITEM}]}),
        True,
    ),
    "max_concurrent_0": lambda k: (
        _j({"batch_id": k, "barcodes": [VALID_ITEM], "options": {"max_concurrent": 0}}),
        True,
    ),
    "unknown_field": lambda k: (_j({"batch_id": k, "barcodes": [VALID_ITEM], "priority": "high"}), True),
    "options_not_object": lambda k: (_j({"batch_id": k, "barcodes": [VALID_ITEM], "options": [1]}), True),
    "replay_wrong_type": lambda k: (_j({"batch_id": k, "barcodes": [VALID_ITEM], "replay": "yes"}), True),
    "items_not_objects": lambda k: (_j({"batch_id": k, "barcodes": [1, "x", None]}), True),
    "batch_id_too_long": lambda k: (_j({"batch_id": k + "x" * 200, "barcodes": [VALID_ITEM]}), False),
    "batch_id_not_string": lambda k: (_j({"batch_id": 12345, "barcodes": [VALID_ITEM], "k": k}), False),
    # below the parser's 1024 levels, above MAX_JSON_DEPTH (32): a readable batch_id, so a rejected result too
    "nested_300_in_item": lambda k: (
        b'{"batch_id":"'
        + k.encode()
        + b'","barcodes":[{"barcode_type":"qr","data":"x","extra":'
        + b"[" * 300
        + b"]" * 300
        + b"}]}",
        True,
    ),
}
JUNK = "junk_2mib"


def good_batch(tag: str, n: int) -> dict[str, Any]:
    nested: Any = []
    for _ in range(25):  # the batch is 4 levels: 29 in all, within MAX_JSON_DEPTH (32)
        nested = [nested]
    items: list[dict[str, Any]] = [
        {"id": "ok-qr", "barcode_type": "qr", "data": f"{tag}/{n}"},
        {"id": "ok-png", "barcode_type": "datamatrix", "data": f"{tag} {n}", "format": "png"},
        {"id": "unknown-type", "barcode_type": "qrx", "data": "x"},
        {"id": "type-not-string", "barcode_type": 123, "data": "x"},
        {"id": "no-data", "barcode_type": "qr"},
        {"id": "bad-check-digit", "barcode_type": "ean13", "data": "4006381333932"},
        {"id": "huge-width", "barcode_type": "qr", "data": "x", "options": {"width": 10**9, "height": 10**9}},
        {"id": "gif", "barcode_type": "qr", "data": "x", "format": "gif"},
        {"id": "options-not-object", "barcode_type": "qr", "data": "x", "options": "big"},
        {"id": "deep-extra", "barcode_type": "code128", "data": f"{tag}-{n}", "extra": nested},
    ]
    return {"batch_id": f"{tag}-good-{n:05d}", "barcodes": items}


@pytest.mark.timeout(240)
async def test_r4_poison_messages_go_to_the_dlq_and_nothing_else_breaks(
    fault_settings: Settings, tmp_path: Path, scale: Scale, figures: Figures
) -> None:
    s = fault_settings
    tag = "r4" + uuid.uuid4().hex[:6]
    kinds = list(MALFORMED)
    malformed: dict[str, tuple[str, bytes | None, bool]] = {}  # key -> (kind, value, batch_id readable)
    keyless: dict[bytes, str] = {}  # marker -> kind
    for n in range(scale.r4_malformed):
        key = f"{tag}-bad-{n:05d}"
        if n < scale.r4_junk_2mb:
            malformed[key] = (JUNK, os.urandom(2 * 1024 * 1024), False)
            continue
        kind = kinds[n % len(kinds)]
        value, readable = MALFORMED[kind](key)
        malformed[key] = (kind, value, readable)
    for n in range(5):  # no key at all: found in the DLQ by the marker in the value
        marker = f"{tag}-keyless-{n}".encode()
        keyless[marker] = "keyless"
    goods = [good_batch(tag, n) for n in range(scale.r4_good)]
    expected: dict[str, ExpectedBatch] = await asyncio.to_thread(
        lambda: {b["batch_id"]: expect_batch(b) for b in goods}
    )
    for key, (_, _, readable) in malformed.items():
        if readable:
            expected[key] = ExpectedBatch(key, (), rejected=True)

    async with running_pipeline(s, tmp_path) as pipe:
        worker = pipe.procs["worker"]
        worker_pid = worker.popen.pid  # type: ignore[union-attr]
        watch = LogWatch(worker.log_path)
        watch.mark()
        results = ResultsChecker(s)
        dlq = TopicFollower(s, s.topics.dlq, client_id="faults-dlq")
        await results.start()
        await dlq.start()
        prod = AIOKafkaProducer(**producer_config(s, "faults-poison"))
        await prod.start()
        try:
            with RssSampler({"worker": worker_pid}) as rss:
                bad = list(malformed.items())
                per_good = max(1, len(bad) // max(1, len(goods)))
                sends = []
                for i, b in enumerate(goods):
                    for key, (_, value, _) in bad[i * per_good : (i + 1) * per_good]:
                        sends.append(await prod.send(s.topics.requests, value, key=key.encode()))
                    sends.append(await prod.send(s.topics.requests, _j(b), key=b["batch_id"].encode()))
                for key, (_, value, _) in bad[len(goods) * per_good :]:
                    sends.append(await prod.send(s.topics.requests, value, key=key.encode()))
                for marker in keyless:
                    sends.append(await prod.send(s.topics.requests, b'{"oops": "' + marker + b'"', key=None))
                await asyncio.gather(*sends)

                def dlq_has_all() -> bool:
                    keys = {r.key for r in dlq.records}
                    return all(k.encode() in keys for k in malformed)

                in_dlq = await dlq.wait_until(dlq_has_all, 120)
                complete = await results.wait_for(list(expected), 120)
                await dlq.drain(quiet_s=2.0)
                await results.drain(quiet_s=1.0)
        finally:
            await prod.stop()
            await results.stop()
            await dlq.stop()
        worker_same = worker.alive() and worker.popen.pid == worker_pid  # type: ignore[union-attr]
        sink_alive = pipe.procs["sink"].alive()
        crashes = watch.crash_lines()

    by_key: dict[bytes | None, list[Any]] = {}
    for r in dlq.records:
        by_key.setdefault(r.key, []).append(r)
    missing = [k for k in malformed if k.encode() not in by_key]
    dlq_dups = sum(len(v) - 1 for k, v in by_key.items() if k is not None)
    wrong: list[tuple[str, str]] = []
    for key, (kind, value, _) in malformed.items():
        for r in by_key.get(key.encode(), []):
            want = hashlib.sha256(value).hexdigest() if value is not None else None
            got = hashlib.sha256(r.value).hexdigest() if r.value is not None else None
            if kind in ("empty_value", "tombstone"):
                want = got if not r.value else "non-empty"  # b"" and None both read back as "no bytes"
            if got != want:
                wrong.append((key, f"{kind}: value changed"))
            if not header(r, "x-error-code") or not header(r, "x-error-reason"):
                wrong.append((key, f"{kind}: no error code/reason"))
            if header(r, "x-source-topic") != s.topics.requests or header(r, "x-source-offset") is None:
                wrong.append((key, f"{kind}: no source coordinates"))
    keyless_found = sum(1 for m in keyless if any(r.value and m in r.value for r in by_key.get(None, [])))
    good_in_dlq = [b["batch_id"] for b in goods if b["batch_id"].encode() in by_key]
    reasons = Counter(header(r, "x-error-code") for r in dlq.records)
    report = results.analyse(expected)
    good_report = results.analyse({b["batch_id"]: expected[b["batch_id"]] for b in goods})
    ok = (in_dlq and complete and not missing and not wrong and keyless_found == len(keyless) and not good_in_dlq
          and not report.lost and not report.incomplete and worker_same and sink_alive and not crashes)  # fmt: skip
    if not ok:
        print(f"logs of the failed R4 run kept in {keep_logs(tmp_path, 'r4')}")
    figures.record(
        "R4 poison messages",
        load=f"{len(malformed) + len(keyless)} malformed ({len(MALFORMED) + 1} kinds, {scale.r4_junk_2mb} x 2 MiB "
        f"junk) + {len(goods)} good batches with 7 item-level errors each",
        faults="malformed requests interleaved with good traffic",
        lost=len(good_report.lost),
        visible_duplicates=good_report.visible_duplicates,
        raw_duplicates=good_report.raw_duplicates,
        recover_s="no restart (same worker pid, no traceback)" if worker_same and not crashes else "RESTARTED",
        outcome="pass" if ok else "FAIL",
        extra={
            "dlq_records": len(dlq.records),
            "dlq_missing": len(missing),
            "dlq_duplicates": dlq_dups,
            "dlq_wrong": len(wrong),
            "dlq_codes": dict(reasons),
            "rejected_results_expected": sum(1 for e in expected.values() if e.rejected),
            "rejected_results_incomplete": sum(1 for b, _ in report.incomplete if b in malformed),
            "worker_peak_rss_mb": round(rss.peak.get("worker", 0)),
        },
    )
    assert worker_same, "the worker process was replaced or died"
    assert not crashes, crashes[:10]
    assert sink_alive
    assert in_dlq and not missing, f"{len(missing)} malformed messages not in the DLQ: {missing[:10]}"
    assert not wrong, wrong[:10]
    assert keyless_found == len(keyless)
    assert not good_in_dlq, good_in_dlq[:10]
    assert complete, report.explain()
    assert not report.lost, report.explain()
    assert not report.incomplete, report.explain()
    assert good_report.visible_duplicates == 0
