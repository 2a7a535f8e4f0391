"""The batch journal on the real engine: the range a member finds when it is assigned a
partition belongs to the topic's current incarnation. A range journaled for a topic that was
deleted and created again (the local broker restarted with memory storage) describes another
log: cutting the new log's first batch there waited for an offset that never came, and a clean
restart of ``perpstream up`` logged "journaled batch end not reached"."""

from __future__ import annotations

from typing import Any

import pytest

from perpstream.consumers.clickhouse import ClickHouseBatchJournal

pytestmark = pytest.mark.integration

T = "perpstream.metrics.v1"


def test_pending_ranges_are_those_of_the_current_incarnation(clickhouse: Any, ch_database: str) -> None:
    journal = ClickHouseBatchJournal(clickhouse, ch_database)
    journal.migrate()
    journal.record("g", {(T, 0): (5_000, 5_999), (T, 1): (700, 799)}, {T: "old-id"})
    journal.record("g", {(T, 0): (0, 99)}, {T: "new-id"})

    # the new incarnation: its own range on partition 0; partition 1 has none of its own
    assert journal.pending("g", [(T, 0), (T, 1)], {T: "new-id"}) == {(T, 0): (0, 99)}
    # the old incarnation's member (ids as it knew them) still finds its ranges
    assert journal.pending("g", [(T, 0), (T, 1)], {T: "old-id"}) == {(T, 0): (5_000, 5_999),
                                                                     (T, 1): (700, 799)}
    # another group, or a partition not asked for, is never returned
    assert journal.pending("h", [(T, 0)], {T: "new-id"}) == {}
    assert journal.pending("g", [(T, 1)], {T: "new-id"}) == {}


def test_ranges_journaled_before_topic_ids_count_as_current(clickhouse: Any, ch_database: str) -> None:
    journal = ClickHouseBatchJournal(clickhouse, ch_database)
    journal.migrate()
    journal.record("g", {(T, 0): (10, 19)})  # no ids: a broker that cannot describe topics
    assert journal.pending("g", [(T, 0)], {T: "some-id"}) == {(T, 0): (10, 19)}
    assert journal.pending("g", [(T, 0)]) == {(T, 0): (10, 19)}
    journal.record("g", {(T, 0): (20, 29)}, {T: "some-id"})
    assert journal.pending("g", [(T, 0)], {T: "some-id"}) == {(T, 0): (20, 29)}


def test_any_group_id_and_several_partitions_in_one_record(clickhouse: Any, ch_database: str) -> None:
    """The embedded engine gets the rows as literal values: quoting must hold for any group id."""
    journal = ClickHouseBatchJournal(clickhouse, ch_database)
    journal.migrate()
    group = "o'brien \\ \"x\"; DROP TABLE consumer_batches --"
    ranges = {(T, p): (p * 100, p * 100 + 41) for p in range(4)}
    journal.record(group, ranges, {T: "id-1"})
    assert journal.pending(group, list(ranges), {T: "id-1"}) == ranges
    assert journal.pending("o", list(ranges), {T: "id-1"}) == {}
