"""``python -m bench``: the full benchmark harness (see ``bench.pipeline``)."""

from bench.pipeline import main

raise SystemExit(main())
