"""Child process of ``perpstream bench``: ``python -m perpstream.bench <scenario|step> '<json kwargs>'``.

Runs one scenario (or one e2e step) and prints its result as one JSON line, last on stdout."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any


def main(argv: list[str]) -> int:
    # The scenario's module is imported for its scenario only: the child's RSS and CPU are what
    # the bench measures, and e2e alone loads chdb, the consumers and the producer.
    from perpstream.runtime.settings import CommonSettings
    from perpstream.runtime.tuning import tune_gc

    kind, kwargs = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    tune_gc(CommonSettings().gc_threshold)  # what every long-running command does at start-up
    fn: Any
    if kind == "step":
        from perpstream.bench.e2e import step as fn
    elif kind == "idle":
        from perpstream.bench.e2e import idle_store as fn
    elif kind == "frames":
        from perpstream.bench.frames import run as fn
    elif kind == "produce":
        from perpstream.bench.produce import run as fn
    elif kind == "sink":
        from perpstream.bench.sink import run as fn
    elif kind == "snapshots":
        from perpstream.bench.snapshots import run as fn
    else:
        print(f"unknown bench child {kind!r}", file=sys.stderr)
        return 2
    result = fn(**kwargs)
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
