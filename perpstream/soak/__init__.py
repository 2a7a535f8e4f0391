"""``perpstream soak``: the whole pipeline under load and a schedule of faults,
then an account that must balance (docs/soak.md).

The package, by concern: :mod:`.run` (one run: the broker, the fake exchange,
the members, the end), :mod:`.kinds` and :mod:`.faults` (the kinds, the schedule, each
fault's injection and recovery), :mod:`.processes` (the child processes it can kill, their ``/metrics``),
:mod:`.observe` (the sampler, the view of Kafka's replicas, the DLQ),
:mod:`.account` (what was sent against what was stored), :mod:`.report` and
:mod:`.command`; :mod:`.member` is the sink members' entry point with the
fault hooks.
"""

from perpstream.soak.command import register, soak_command
from perpstream.soak.kinds import DEFAULT_FAULTS, FAULT_KINDS, KAFKA_DEFAULT_FAULTS, KAFKA_ONLY_FAULTS
from perpstream.soak.processes import SoakError, scrape

__all__ = [
    "DEFAULT_FAULTS", "FAULT_KINDS", "KAFKA_DEFAULT_FAULTS", "KAFKA_ONLY_FAULTS", "SoakError", "register",
    "scrape", "soak_command",
]
