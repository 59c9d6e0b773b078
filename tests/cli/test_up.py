"""``barcodeflow up --demo``: the README's run command, end to end (reusing the running Kafka/Redis)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest
import zxingcpp
from PIL import Image

from barcodeflow.settings import Settings
from tests.support.pipeline import free_port
from tests.support.topics import private

pytestmark = pytest.mark.integration


def test_up_runs_the_demo_and_stops_what_it_started(stack_settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    run = uuid.uuid4().hex[:8]
    # its own topics and app id (TOPIC_PREFIX, BARCODEFLOW_APP_ID), deleted at the session's end
    settings = private(stack_settings.with_(topic_prefix=f"up{run}.", app_id=f"bf-up-{run}"))
    env = {**os.environ, **settings.as_env(), "FACADE_PORT": str(free_port())}
    proc = subprocess.run(
        [sys.executable, "-m", "barcodeflow.cli", "up", "--demo", "--exit-after-demo", "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "9/10 rendered, 1 failed" in proc.stdout
    assert "invalid_check_digit" in proc.stdout
    assert len(list(out.iterdir())) == 9
    [found] = zxingcpp.read_barcodes(Image.open(out / "tiny.png"))
    assert found.text == "A-42"
    # everything it started (worker, sink, facade, render pools) is gone
    leftovers = []
    for p in psutil.process_iter():
        try:
            if p.environ().get("TOPIC_PREFIX") == settings.topic_prefix:
                leftovers.append(p.cmdline())
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    assert leftovers == []
