"""The Apache Kafka runtime's pure parts (docs/kafka.md)."""

from __future__ import annotations

import base64

from perpstream.kafka_runtime import random_cluster_id
from perpstream.local import free_ports


def test_a_cluster_id_is_a_kraft_uuid_the_storage_tool_accepts_as_an_argument() -> None:
    # One id in 64 would start with "-", which the storage tool reads as an option and refuses
    # to format; 5,000 draws without the rule meet one with a probability of 1 - (63/64)^5000.
    ids = [random_cluster_id() for _ in range(5000)]
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == len(ids)
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)


def test_ports_taken_together_are_distinct() -> None:
    # Taken one at a time, the system may hand a just-closed port out again: a three-node
    # cluster once got one port for two listeners, and its third node could not bind.
    for _ in range(50):
        ports = free_ports(6)
        assert len(set(ports)) == 6
