"""``perpstream broker``: the embedded local broker on its own, for development.

(``perpstream run``, the whole pipeline in one process on the embedded
default, is registered here too once the producer and consumers exist.)
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from perpstream.local import TansuBroker


def register(sub: Any) -> None:
    p = sub.add_parser("broker", help="run a local Tansu broker until Ctrl+C")
    p.add_argument("--port", type=int, default=9092)
    p.set_defaults(func=_broker)


def _broker(args: argparse.Namespace) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with TansuBroker(port=args.port) as broker:
        print(f"broker listening on {broker.bootstrap_servers}; Ctrl+C stops it", flush=True)
        while not stop.wait(0.5):
            if not broker.running:
                print("broker exited", flush=True)
                return 1
    return 0
