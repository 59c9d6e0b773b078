"""A non-Python client (kcat) publishes plain JSON to the requests topic and reads the result."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid

import orjson
import pytest

from tests.support.pipeline import Pipeline

pytestmark = pytest.mark.integration


def test_kcat_round_trip(pipeline: Pipeline) -> None:
    kcat = shutil.which("kcat")
    assert kcat, "kcat is installed by scripts/setup"
    s = pipeline.settings
    bid = f"kcat-{uuid.uuid4().hex}"
    line = f'{bid}|{{"batch_id":"{bid}","barcodes":[{{"barcode_type":"ean8","data":"9638507"}}]}}\n'
    subprocess.run([kcat, "-P", "-b", s.kafka_bootstrap_servers, "-t", s.topics.requests, "-K", "|"],
                   input=line.encode(), check=True, timeout=30)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = subprocess.run(
            [kcat, "-C", "-b", s.kafka_bootstrap_servers, "-t", s.topics.results, "-o", "beginning", "-e",
             "-K", "\t", "-q"],  # fmt: skip
            capture_output=True, check=True, timeout=60,
        )  # fmt: skip
        mine = [ln.split(b"\t", 1)[1] for ln in out.stdout.splitlines() if ln.startswith(bid.encode() + b"\t")]
        if mine:
            result = orjson.loads(mine[-1])
            assert result["success"] is True
            assert result["results"][0]["metadata"]["data"] == "96385074"
            return
        time.sleep(1)
    pytest.fail(f"no result for {bid} on {s.topics.results}")
