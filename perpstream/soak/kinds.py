"""The soak's fault kinds and the defaults of its schedule (docs/soak.md, "Faults").

Apart from :mod:`.faults` so that ``perpstream soak``'s flags are checked, and
every other command starts, without importing the run.
"""

from __future__ import annotations

#: Every fault kind, in the order of the schedule.
FAULT_KINDS = (
    "ws_drop", "ws_silence", "bad_frames", "rest_429", "rest_418", "clickhouse_down", "sink_kill",
    "snapshots_kill", "member_join", "member_leave", "broker_kill", "broker_pause", "rolling_restart",
    "broker_restart",
)
#: Faults of a broker's own process: Apache Kafka only (Tansu keeps no durable logs to restart on).
KAFKA_ONLY_FAULTS = ("broker_kill", "broker_pause", "rolling_restart")
#: The default schedule on Tansu: every fault it can take. The sink group rebalances eagerly there,
#: since Tansu starts no second cooperative round after its static sink rejoins (docs/soak.md, "Faults").
DEFAULT_FAULTS = tuple(k for k in FAULT_KINDS if k not in KAFKA_ONLY_FAULTS)
#: The default schedule on Apache Kafka: every fault.
KAFKA_DEFAULT_FAULTS = FAULT_KINDS
#: The default SIGSTOP of ``broker_pause``: past librdkafka's request.timeout.ms (30 s, the producer's
#: produce requests) and socket.timeout.ms (60 s, every other request), which the clients keep.
BROKER_PAUSE_S = 65.0
