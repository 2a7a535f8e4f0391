"""``perpstream broker``: the embedded local broker on its own, for development.

(``perpstream run``, the whole pipeline in one process on the embedded
default, is registered here too once the producer and consumers exist.)
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from perpstream.local import TansuBroker, ensure_topics
from schemas.exceptions import ConfigError
from schemas.settings import CommonSettings


def register(sub: Any) -> None:
    p = sub.add_parser("broker", help="run a local Tansu broker until Ctrl+C")
    p.add_argument("--port", type=int, default=9092)
    p.set_defaults(func=_broker)

    t = sub.add_parser("topics", help="create the metrics, snapshots and DLQ topics if missing")
    t.add_argument("--bootstrap-servers", help="default: PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS")
    t.add_argument("--partitions", type=int, default=6, help="partitions per topic (default 6)")
    t.add_argument("--replication-factor", type=int, default=1)
    t.set_defaults(func=_topics)


def standard_topics(settings: CommonSettings, partitions: int) -> dict[str, int]:
    return {
        settings.metrics_topic: partitions,
        settings.snapshots_topic: partitions,
        settings.dlq_topic: partitions,
    }


def _topics(args: argparse.Namespace) -> int:
    settings = CommonSettings()
    bootstrap = args.bootstrap_servers or settings.kafka_bootstrap_servers
    if not bootstrap:
        raise ConfigError(
            "no Kafka cluster: set PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS or pass --bootstrap-servers"
        )
    if args.partitions < 1:
        raise ConfigError(f"--partitions must be >= 1, got {args.partitions}")
    ensure_topics(
        bootstrap, standard_topics(settings, args.partitions),
        replication_factor=args.replication_factor,
    )
    print(f"topics ready on {bootstrap}: {', '.join(standard_topics(settings, args.partitions))}")
    return 0


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
