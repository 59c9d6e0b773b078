"""``run_faust_app``: however the Faust worker ends, a crash's last log line names the static member id."""

from __future__ import annotations

import asyncio
from pathlib import Path

import faust
import pytest

from barcodeflow.commands import worker as worker_cmd
from barcodeflow.settings import Settings


@pytest.fixture
def exiting_with(monkeypatch: pytest.MonkeyPatch) -> object:
    """Make Faust's worker end at once with SystemExit(code), as mode's does after a stop or a crash."""

    def install(code: int) -> None:
        class Worker:
            def __init__(self, app: object, **_: object) -> None:
                pass

            def execute_from_commandline(self) -> None:
                raise SystemExit(code)

        async def no_topics(settings: Settings) -> None:
            return None

        monkeypatch.setattr(faust, "Worker", Worker)
        monkeypatch.setattr("stream_app.topics.ensure_topics", no_topics)

    return install


def run(settings: Settings) -> None:
    try:
        worker_cmd.run_faust_app(object(), settings, "info")  # type: ignore[arg-type]
    finally:
        asyncio.get_event_loop_policy().get_event_loop().close()


@pytest.mark.parametrize("instance_id", ["host-worker", ""])
def test_a_crash_ends_with_a_line_naming_the_member_id(
    exiting_with: object, tmp_path: Path, caplog: pytest.LogCaptureFixture, instance_id: str
) -> None:
    exiting_with(1)  # type: ignore[operator]
    settings = Settings.from_env({}).with_(group_instance_id=instance_id, data_dir=str(tmp_path))
    with pytest.raises(SystemExit) as exc:
        run(settings)
    assert exc.value.code == 1
    last = caplog.records[-1]
    assert last.levelname == "CRITICAL" and "worker exited with status 1" in last.getMessage()
    assert ("GROUP_INSTANCE_ID='host-worker'" in last.getMessage()) == bool(instance_id)


def test_a_clean_stop_logs_nothing_more(exiting_with: object, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    exiting_with(0)  # type: ignore[operator]
    with pytest.raises(SystemExit) as exc:
        run(Settings.from_env({}).with_(group_instance_id="host-worker", data_dir=str(tmp_path)))
    assert exc.value.code == 0
    assert not [r for r in caplog.records if r.levelname == "CRITICAL"]
