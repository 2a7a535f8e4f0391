"""``perpstream soak``: the command's flags, checked before anything starts, and its exit
status: 0 when the account balances, 1 otherwise (docs/soak.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from perpstream.errors import ConfigError
from perpstream.soak.kinds import (
    BROKER_PAUSE_S,
    DEFAULT_FAULTS,
    FAULT_KINDS,
    KAFKA_DEFAULT_FAULTS,
    KAFKA_ONLY_FAULTS,
)

log = logging.getLogger("perpstream.soak")  # the soak's one logger, whichever module writes

#: Live Binance USD-M: about 700 symbols; the soak's default load is ten times that.
LIVE_SYMBOLS = 700


def register(sub: Any) -> None:
    p = sub.add_parser("soak", help="the pipeline under load and scheduled faults; "
                       "an account that must balance")
    p.add_argument("--minutes", type=float, default=10.0, help="length of the run (default 10)")
    p.add_argument("--seconds", type=float, help="length of the run in seconds (instead of --minutes)")
    p.add_argument("--symbols", type=int, default=10 * LIVE_SYMBOLS,
                   help=f"symbols of the simulated market, 1 markPrice/s each (default {10 * LIVE_SYMBOLS}: "
                   "10x live Binance)")
    p.add_argument("--oi-interval", type=float, default=10.0,
                   help="open-interest poll per symbol, s (default 10)")
    p.add_argument("--partitions", type=int, default=6, help="partitions of the metrics topic (default 6)")
    p.add_argument("--faults",
                   help=f"comma-separated fault kinds (known: {','.join(FAULT_KINDS)}; "
                   f"{', '.join(KAFKA_ONLY_FAULTS)} only with --broker kafka; default: every kind the "
                   "broker can take)")
    p.add_argument("--broker", choices=("tansu", "kafka"), default="tansu",
                   help="tansu: the local broker, memory storage (default); kafka: Apache Kafka on "
                   "loopback, durable logs (needs Java 17+)")
    p.add_argument("--nodes", type=int,
                   help="Apache Kafka nodes, 1 or 3 (default 3; only with --broker kafka)")
    p.add_argument("--broker-pause", type=float, default=BROKER_PAUSE_S,
                   help=f"seconds broker_pause keeps a node stopped (default {BROKER_PAUSE_S:g}: past the "
                   "clients' request and socket timeouts)")
    p.add_argument("--work-dir",
                   help="where the stores and logs go (default a new temporary directory, kept)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=soak_command)


def soak_command(args: argparse.Namespace) -> int:
    kafka = args.broker == "kafka"
    if args.nodes is not None and not kafka:
        raise ConfigError("--nodes: only with --broker kafka (the local Tansu broker is one process)")
    nodes = 3 if args.nodes is None else args.nodes
    if nodes not in (1, 3):
        raise ConfigError(f"--nodes: an Apache Kafka cluster on loopback has 1 or 3 nodes, not {nodes}")
    if args.faults is None:
        faults = KAFKA_DEFAULT_FAULTS if kafka else DEFAULT_FAULTS
    else:
        faults = tuple(f.strip() for f in args.faults.split(",") if f.strip())
    unknown = [f for f in faults if f not in FAULT_KINDS]
    if unknown:
        raise ConfigError(f"--faults: unknown fault kind(s) {', '.join(unknown)}; "
                          f"known: {', '.join(FAULT_KINDS)}")
    kafka_only = [f for f in faults if f in KAFKA_ONLY_FAULTS]
    if kafka_only and not kafka:
        raise ConfigError(f"--faults: {', '.join(kafka_only)} only with --broker kafka (a broker "
                          "process with durable logs to kill, pause or restart)")
    if not args.broker_pause > 0:
        raise ConfigError("--broker-pause must be positive")
    if "member_leave" in faults and "member_join" not in faults:
        raise ConfigError("--faults: member_leave needs member_join")
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    if seconds <= 0 or args.symbols < 1 or args.partitions < 1 or args.oi_interval <= 0:
        raise ConfigError("--minutes/--seconds, --symbols, --partitions and --oi-interval must be positive")
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="perpstream-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    log.setLevel(logging.INFO)
    # local: the run (fake exchange, aiohttp.web, websockets, rich, confluent_kafka.admin) adds about
    # 0.2 s to the start of every perpstream command (python -X importtime); only the soak needs it
    from perpstream.soak.report import as_json, print_report
    from perpstream.soak.run import Soak, SoakOptions

    opts = SoakOptions(seconds=seconds, symbols=args.symbols, partitions=args.partitions,
                       oi_interval=args.oi_interval, faults=faults, work_dir=work, broker=args.broker,
                       nodes=nodes if kafka else 1, broker_pause_s=args.broker_pause)
    account, fault_list, info = Soak(opts, work).run()
    if args.json:
        print(json.dumps(as_json(account, fault_list, info), default=str))
    else:
        print_report(account, fault_list, info)
    return 0 if account.balanced else 1
