"""R5: replay a time range of ``barcode.requests`` and compare with the original run.

Batches are sent before, inside and after a time range; the "after" batches are sent *while* the first
replay runs. The range is replayed twice: once with ``no_cache`` (rendered afresh) and once from the cache.

Checked: exactly the batch ids of the range are replayed (each once per replay, none from before/after);
every replayed result carries the ``replay`` marker with its source coordinates and is identical in
content to the original (same item order, ids, success, error codes, image bytes, metadata); under the
consumer rule (last record per batch_id wins) the winning record of every batch equals the original and
is complete, i.e. a replay adds no visible duplicate; the original run itself has no raw duplicate.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from barcodeflow.settings import Settings
from producer import BatchProducer
from producer.replay import replay
from tests.conftest import running_pipeline
from tests.faults.checker import ResultsChecker, expect_batch
from tests.faults.conftest import Figures, Scale
from tests.faults.support import mixed_batch

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(180)
async def test_r5_replay_of_a_time_range_is_identical(
    fault_settings: Settings, tmp_path: Path, scale: Scale, figures: Figures
) -> None:
    s = fault_settings
    tag = "r5" + uuid.uuid4().hex[:6]
    before = [mixed_batch(f"{tag}a", n, 6) for n in range(3)]
    inside = [mixed_batch(f"{tag}b", n, 8) for n in range(scale.r5_batches)]
    after = [mixed_batch(f"{tag}c", n, 6) for n in range(5)]
    all_batches = before + inside + after
    expected = await asyncio.to_thread(lambda: {b["batch_id"]: expect_batch(b) for b in all_batches})
    ids_in = [b["batch_id"] for b in inside]
    ids_out = [b["batch_id"] for b in before + after]
    async with running_pipeline(s, tmp_path) as pipe:
        results = ResultsChecker(s)
        await results.start()
        try:
            async with BatchProducer(s) as prod:
                for b in before:
                    await prod.send(b)
                assert await results.wait_for([b["batch_id"] for b in before], 60), pipe.logs()
                await asyncio.sleep(0.05)
                since_ms = int(time.time() * 1000)
                for b in inside:
                    await prod.send(b)
                assert await results.wait_for(ids_in, 120), pipe.logs()
                until_ms = int(time.time() * 1000) + 1
                await asyncio.sleep(0.05)

                async def send_after() -> None:
                    for b in after:
                        await prod.send(b)
                        await asyncio.sleep(0.02)

                t0 = time.monotonic()
                rep1, _ = await asyncio.gather(replay(s, since_ms, until_ms, no_cache=True), send_after())
                assert await results.wait_for(ids_in, 120, replay=True), pipe.logs()
                t_replay1 = time.monotonic() - t0
                assert await results.wait_for([b["batch_id"] for b in after], 60)
                rep2 = await replay(s, since_ms, until_ms)
                assert await results.wait_for(ids_in, 120, replay=True, at_least=2), pipe.logs()
                await results.drain(quiet_s=2.0)
        finally:
            await results.stop()

    report = results.analyse(expected)
    replayed_ids = {b for b, recs in results.by_batch.items() if any(r.replay for r in recs)}
    extra_replays = sorted(replayed_ids - set(ids_in))
    wrong_count = {b: len(results.replays(b)) for b in ids_in if len(results.replays(b)) != 2}
    no_marker = [b for b in ids_in for r in results.replays(b)
                 if not {"source_partition", "source_offset", "replayed_at"} <= set(r.replay or {})]  # fmt: skip
    first_replay_cached = sum(results.replays(b)[0].doc["summary"]["cached"] for b in ids_in)  # type: ignore[index]
    second_replay_cached = sum(results.replays(b)[-1].doc["summary"]["cached"] for b in ids_in)  # type: ignore[index]
    # consumer rule: the last record per batch_id wins; it must carry the original content
    changed_winner = []
    for b in ids_in:
        recs = sorted(results.by_batch[b], key=lambda r: r.offset)
        if recs[-1].fingerprint != results.originals(b)[0].fingerprint:
            changed_winner.append(b)
    ok = (rep1.republished == rep2.republished == len(inside) and not extra_replays and not wrong_count
          and not report.replay_mismatches and not changed_winner and not report.lost and not report.incomplete
          and report.raw_duplicates == 0 and not no_marker)  # fmt: skip
    figures.record(
        "R5 replay time range",
        load=f"{len(inside)} batches x 8 mixed items in range (+{len(before)} before, {len(after)} after, "
        "sent during the replay)",
        faults="replay range twice (no_cache, then cached)",
        lost=len(report.lost),
        visible_duplicates=len(changed_winner),
        raw_duplicates=report.raw_duplicates,
        recover_s=f"replay 1 done in {t_replay1:.1f} s",
        outcome="pass" if ok else "FAIL",
        extra={**report.summary(), "republished": [rep1.republished, rep2.republished],
               "replays_outside_range": len(extra_replays), "replay_mismatches": len(report.replay_mismatches),
               "cached_items_replay1": first_replay_cached, "cached_items_replay2": second_replay_cached},
    )  # fmt: skip
    assert rep1.republished == len(inside) and rep2.republished == len(inside), (rep1.lines(), rep2.lines())
    assert rep1.replays_of_replays == 0 and rep2.replays_of_replays == 0
    assert not extra_replays, f"replayed outside the range: {extra_replays[:10]}"
    assert not set(ids_out) & replayed_ids
    assert not wrong_count, wrong_count
    assert not no_marker, no_marker[:5]
    assert not report.replay_mismatches, report.explain()
    assert not changed_winner, changed_winner[:10]
    assert not report.lost and not report.incomplete, report.explain()
    assert report.raw_duplicates == 0, report.explain()
    assert first_replay_cached == 0, "a no_cache replay served cached images"
    assert second_replay_cached > 0, "the second replay did not use the cache"
