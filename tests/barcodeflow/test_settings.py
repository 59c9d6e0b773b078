"""``Settings``: values from the environment and the bounds derived from them."""

from __future__ import annotations

from barcodeflow.settings import Settings


def test_the_open_grace_comes_from_the_environment() -> None:
    s = Settings.from_env({"WORKER_OPEN_GRACE_S": "0.25", "BATCH_TIMEOUT_S": "10"})
    assert (s.worker_open_grace_s, s.open_grace_s) == (0.25, 0.25)
    assert Settings.from_env({}).open_grace_s == 1.0


def test_the_open_grace_is_at_most_half_the_deadline_and_never_negative() -> None:
    # the sink must learn of a batch in time to answer it at its deadline
    assert Settings(batch_timeout_s=1.0, worker_open_grace_s=5.0).open_grace_s == 0.5
    assert Settings(worker_open_grace_s=-1.0).open_grace_s == 0.0
