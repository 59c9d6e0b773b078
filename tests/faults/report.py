"""Print the figures of a fault-suite run (``FAULTS_REPORT`` JSON) as the markdown table of RELIABILITY.md.

python -m tests.faults.report .stack/faults/figures-long.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.faults.conftest import Figure, table


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    doc = json.loads(Path(argv[0]).read_text())
    figs = [Figure(**f) for f in doc["figures"]]
    print(f"Run of {doc['written_at']} (pytest exit status {doc['exitstatus']}):\n")
    print("\n".join(table(figs)))
    print()
    for f in figs:
        if f.extra:
            print(f"- **{f.scenario}**: `{json.dumps(f.extra, default=str, sort_keys=True)}`")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
