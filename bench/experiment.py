"""Run a barcodeflow service with a Kafka producer setting changed, to measure a change before making it.

    BENCH_CHILD_MODULE=bench.experiment EXP_BATCH_BYTES=1048576 .venv/bin/python -m bench --skip-facade

``python -m bench`` starts its worker, sink and facade with ``python -m $BENCH_CHILD_MODULE`` (default
``barcodeflow.cli``); this module patches, then runs ``barcodeflow.cli``:

* ``EXP_GZIP_LEVEL``: gzip level for aiokafka's compression (aiokafka always uses 9);
* ``EXP_BATCH_BYTES``: Faust's ``producer_max_batch_size`` (default 16 KB) for worker and sink;
* ``EXP_LINGER``: Faust's ``producer_linger`` in seconds.

``KAFKA_COMPRESSION`` (e.g. ``none``) is an ordinary setting and needs no patch.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def patch() -> None:
    if os.environ.get("EXP_GZIP_LEVEL"):
        import gzip
        import types

        import aiokafka.codec as codec

        level = int(os.environ["EXP_GZIP_LEVEL"])

        class LevelledGzipFile(gzip.GzipFile):
            def __init__(self, *args: Any, compresslevel: int = 9, **kwargs: Any) -> None:
                super().__init__(*args, compresslevel=level, **kwargs)

        # aiokafka's compiled record builder calls codec.gzip_encode, which reads the module global
        # ``gzip`` at call time: swap that for a namespace whose GzipFile uses our level
        shim = types.SimpleNamespace(**{k: getattr(gzip, k) for k in dir(gzip) if not k.startswith("__")})
        shim.GzipFile = LevelledGzipFile
        codec.gzip = shim

    import stream_app.faust_config as fc

    original = fc.faust_config

    def patched(settings: Any, role: str) -> dict[str, Any]:
        conf = original(settings, role)
        if os.environ.get("EXP_BATCH_BYTES"):
            conf["producer_max_batch_size"] = int(os.environ["EXP_BATCH_BYTES"])
        if os.environ.get("EXP_LINGER"):
            conf["producer_linger"] = float(os.environ["EXP_LINGER"])
        return conf

    import sink.app
    import stream_app.app

    fc.faust_config = patched
    stream_app.app.faust_config = patched
    sink.app.faust_config = patched


if __name__ == "__main__":  # not when a spawned render-pool child imports this module as __mp_main__
    patch()
    from barcodeflow.cli import main

    sys.exit(main())
