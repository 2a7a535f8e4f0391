"""The member's core on a fake clock: events in, actions out, no broker, no sleeping.

Each test plays the part of the librdkafka adapter: it carries out the
actions the core asks for by reporting their results as the next events.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError

from perpstream.consumers.exceptions import (
    BackpressureError,
    BatchFailedError,
    CommitFailedError,
    DlqError,
    FencedMemberError,
    StoreRejectedError,
    StoreUnavailableError,
)
from perpstream.consumers.failures import REVOKE_COMMIT_ATTEMPTS, KafkaFault, classify
from perpstream.consumers.runtime.batch import Batch, PartitionBatch, Rejected
from perpstream.consumers.runtime.builder import BatchBuilder
from perpstream.consumers.runtime.member import (
    Abandon,
    Action,
    Assigned,
    Commit,
    Fail,
    Handle,
    MemberCore,
    Pause,
    RecordJournal,
    RefreshTopicIds,
    Released,
    Resume,
    SendDlq,
    Stored,
)
from perpstream.runtime.telemetry import Telemetry
from tests.unit.consumers.test_builder import Msg

T = "t"
RETRY = classify(KafkaError(KafkaError.REQUEST_TIMED_OUT))
REBALANCING = classify(KafkaError(KafkaError.REBALANCE_IN_PROGRESS))


def steady() -> Iterator[float]:
    return itertools.repeat(1.0)


def core(**kw: object) -> MemberCore:
    opts: dict[str, object] = {"backoff": steady, "telemetry": Telemetry()}
    opts.update(kw)
    return MemberCore("g", "m", **opts)  # type: ignore[arg-type]


def batch(*spans: tuple[int, int, int], rejected: tuple[int, int] | None = None) -> Batch:
    """Partition ``p`` from ``first`` to ``last``: one row per offset (``rejected`` is (p, offset))."""
    parts = {}
    for p, first, last in spans:
        offs = [o for o in range(first, last + 1) if (p, o) != rejected]
        parts[(T, p)] = PartitionBatch(T, p, first, last, rows=[(o,) for o in offs], offsets=offs)
    rej = [] if rejected is None else [Rejected(T, rejected[0], rejected[1], b"k", b"\x00bad", None,
                                                "truncated Avro", "decode")]
    return Batch(parts, rej)


def kinds(actions: list[Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


def store(c: MemberCore, b: Batch, now: float = 0.0) -> list[Action]:
    """Collect ``b`` and let every step succeed; the actions after the handler returned."""
    out = c.collected(b, now)
    while out and isinstance(out[-1], RefreshTopicIds | RecordJournal):
        out = c.journal_done(None, now) if isinstance(out[-1], RecordJournal) else out[:-1]
    assert isinstance(out[-1], Handle), out
    return c.handled(None, now)


def commit_of(actions: list[Action]) -> Commit:
    [commit] = [a for a in actions if isinstance(a, Commit)]
    return commit


# -- assignment ---------------------------------------------------------------------------------


def test_eager_revoke_with_a_batch_in_flight_commits_nothing_of_it_and_the_new_share_replaces() -> None:
    c = core(cooperative=False)
    c.assigned([(T, 0), (T, 1), (T, 2)], {}, 0.0)
    assert isinstance(c.collected(batch((0, 0, 9), (1, 0, 4)), 0.0)[-1], Handle)
    # the store is slow: the batch waits for a retry, partitions paused
    out = c.handled(StoreUnavailableError("ClickHouse down"), 0.0)
    assert kinds(out) == ["Pause"] and c.paused
    # eager: everything is revoked before the member rejoins, batch still in hand
    out = c.revoked([(T, 0), (T, 1), (T, 2)], 0.5)
    assert not [a for a in out if isinstance(a, Commit)]  # nothing of the unstored batch
    assert kinds(out) == ["Resume", "Released"]  # the pause flag must not survive the revocation
    out = c.assigned([(T, 2), (T, 3)], {}, 0.6)
    assert c.assignment == {(T, 2), (T, 3)}
    # the retry finds nothing left of the batch: finished without a handle or a commit
    out = c.tick(1.0)
    assert not [a for a in out if isinstance(a, Handle | Commit)] and c.pending is None and not c.paused
    # an eager assignment without the revocation before it: what is not in it is not ours
    out = c.assigned([(T, 3)], {}, 2.0)
    assert c.assignment == {(T, 3)}
    assert Released(((T, 2),), lost=True) in out


def test_cooperative_assignments_add_and_revocations_take_only_what_moves() -> None:
    c = core()
    assert c.assigned([(T, 0), (T, 1), (T, 2)], {}, 0.0) == [Assigned(((T, 0), (T, 1), (T, 2)))]
    c.revoked([(T, 2)], 0.0)
    c.assigned([], {}, 0.0)  # the second round adds nothing here
    c.assigned([(T, 4)], {}, 0.0)
    assert c.assignment == {(T, 0), (T, 1), (T, 4)}
    # a batch of a partition that stays is stored and committed as usual
    assert commit_of(store(c, batch((0, 10, 19)))).offsets == {(T, 0): 20}


def test_a_handled_batch_whose_commit_failed_is_committed_on_revocation_and_lost_ones_never() -> None:
    c = core()
    c.assigned([(T, 0), (T, 1)], {}, 0.0)
    commit = commit_of(store(c, batch((0, 0, 9), (1, 0, 9))))
    c.commit_done(commit, REBALANCING, 0.0)
    assert c.uncommitted == {(T, 0): 10, (T, 1): 10}
    # revoked: the handled offsets of that partition, and only those, are committed first
    out = c.revoked([(T, 0)], 1.0)
    assert out[0] == Commit({(T, 0): 10}, revoking=True)
    assert c.commit_done(out[0], None, 1.0) == []
    assert c.committed[(T, 0)] == 10
    # lost: this member was evicted; its offsets are not its to commit any more
    out = c.lost([(T, 1)], 2.0)
    assert kinds(out) == ["Released"] and c.uncommitted == {}
    assert not [a for a in c.tick(100.0) if isinstance(a, Commit)]
    assert (T, 1) not in c.committed


def test_a_commit_failing_inside_a_revocation_is_retried_at_once_then_given_up_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = core()
    c.assigned([(T, 0)], {}, 0.0)
    c.commit_done(commit_of(store(c, batch((0, 0, 99)))), RETRY, 0.0)
    out = c.revoked([(T, 0)], 1.0)
    commit = out[0]
    assert isinstance(commit, Commit) and commit.offsets == {(T, 0): 100}  # never past the handled batch
    attempts = 1
    while True:
        more = c.commit_done(commit, RETRY, 1.0)
        if not more:
            break
        [commit] = more
        assert isinstance(commit, Commit) and commit.offsets == {(T, 0): 100}
        attempts += 1
    assert attempts == REVOKE_COMMIT_ATTEMPTS
    assert c.telemetry.total("commits_abandoned") == 1
    assert "offsets of revoked partitions not committed" in caplog.text
    assert c.commit_failing is None  # what failed is the next owner's now: no clock keeps running
    assert (T, 0) not in c.committed


# -- retries, backpressure, pause --------------------------------------------------------------


def test_a_failing_handler_pauses_retries_the_same_batch_and_resumes_when_it_is_stored() -> None:
    c = core()
    c.assigned([(T, 0), (T, 1)], {}, 0.0)
    b = batch((0, 0, 9), (1, 0, 9))
    [handle] = c.collected(b, 0.0)
    assert handle == Handle(b)
    assert c.handled(StoreUnavailableError("down"), 0.0) == [Pause(((T, 0), (T, 1)))]
    assert c.retrying_since == 0.0 and c.next_deadline() == 1.0
    assert c.tick(0.5) == []  # not due yet
    # partitions assigned meanwhile are paused too, once the client has them
    c.assigned([(T, 2)], {}, 0.7)
    assert c.before_poll() == [Pause(((T, 2),))]
    assert c.tick(1.0) == [Handle(b)] and b.attempts == 2
    out = c.handled(BackpressureError("slow", retry_after=5.0), 1.0)
    assert out == [] and c.next_deadline() == 6.0  # retry_after wins over the backoff
    assert c.tick(6.0) == [Handle(b)]
    out = c.handled(None, 6.5)
    assert kinds(out) == ["Commit", "Resume", "Stored"]
    assert out[1] == Resume(((T, 0), (T, 1), (T, 2)))
    assert commit_of(out).offsets == {(T, 0): 10, (T, 1): 10}
    assert c.retrying_since is None and not c.paused and c.telemetry.total("batch_retries") == 2


def test_an_unclassified_error_is_retried_within_its_budget_then_the_member_stops() -> None:
    c = core(unclassified_attempts=3)
    c.assigned([(T, 0)], {}, 0.0)
    b = batch((0, 100, 199))
    c.collected(b, 0.0)
    now = 0.0
    for _ in range(2):
        assert kinds(c.handled(BackpressureError("odd", unclassified=True), now)) in (["Pause"], [])
        now = c.next_deadline() or now
        assert c.tick(now) == [Handle(b)]
    [fail] = c.handled(BackpressureError("odd", unclassified=True), now)
    assert isinstance(fail, Fail) and isinstance(fail.error, BatchFailedError)
    assert fail.error.ranges == {(T, 0): (100, 199)}
    assert "t[0] 100..199" in str(fail.error) and "3 attempts" in str(fail.error)


def test_a_permanent_store_error_stops_the_member_naming_the_batch_and_committing_nothing() -> None:
    c = core()
    c.assigned([(T, 0)], {}, 0.0)
    c.collected(batch((0, 0, 9)), 0.0)
    [fail] = c.handled(StoreRejectedError("TYPE_MISMATCH (53)"), 0.0)
    assert isinstance(fail, Fail) and isinstance(fail.error, BatchFailedError)
    assert "nothing of it is committed" in str(fail.error) and c.committed == {}


def test_a_stop_while_retrying_drains_within_the_bound_then_abandons_the_batch() -> None:
    c = core(drain_timeout=3.0)
    c.assigned([(T, 0)], {}, 0.0)
    b = batch((0, 0, 9))
    c.collected(b, 0.0)
    c.handled(StoreUnavailableError("down"), 0.0)
    c.stop(0.5)
    assert not c.finished  # the batch in hand first
    now = 0.5
    while True:
        now = c.next_deadline() or now
        assert c.tick(now) == [Handle(b)]
        out = c.handled(StoreUnavailableError("down"), now)
        if out:
            break
    assert out == [Abandon(b)] and now == pytest.approx(3.5) and c.finished and c.committed == {}


# -- commit failures and their clock -----------------------------------------------------------


def test_commit_failures_keep_the_offsets_retry_while_idle_and_stop_the_member_at_the_timeout() -> None:
    c = core(commit_timeout=60.0, commit_retry_interval=1.0)
    c.assigned([(T, 0)], {}, 0.0)
    commit = commit_of(store(c, batch((0, 0, 9))))
    assert c.commit_done(commit, RETRY, 0.0) == []
    assert c.commit_failing == (0.0, RETRY.text) and c.uncommitted == {(T, 0): 10}
    now = 0.0
    while True:
        now = c.next_deadline() or now + 1
        out = c.tick(now)
        if any(isinstance(a, Fail) for a in out):
            break
        retry = commit_of(out)
        assert retry.offsets == {(T, 0): 10}  # the handled offsets, never further
        assert c.commit_done(retry, RETRY, now) == [] or now > 60.0
        assert c.commit_failing is not None and c.commit_failing[0] == 0.0  # the clock keeps its start
    [fail] = [a for a in out if isinstance(a, Fail)]
    assert isinstance(fail.error, CommitFailedError) and "failing for 6" in str(fail.error)
    assert now == 60.0 and c.telemetry.total("commit_failures") >= 60


def test_commits_that_work_again_reset_the_clock(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    c = core()
    c.assigned([(T, 0)], {}, 0.0)
    c.commit_done(commit_of(store(c, batch((0, 0, 9)))), RETRY, 0.0)
    # the next batch's commit carries the earlier offsets along
    commit = commit_of(store(c, batch((0, 10, 19)), 5.0))
    assert commit.offsets == {(T, 0): 20}
    assert c.commit_done(commit, None, 5.0) == []
    assert c.commit_failing is None and c.uncommitted == {} and c.committed == {(T, 0): 20}
    assert "offset commits work again" in caplog.text


def test_a_commit_refused_for_authorization_or_fenced_stops_the_member() -> None:
    c = core(instance="m-0")
    c.assigned([(T, 0)], {}, 0.0)
    commit = commit_of(store(c, batch((0, 0, 9))))
    [fail] = c.commit_done(commit, classify(KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED)), 0.0)
    assert isinstance(fail, Fail) and isinstance(fail.error, CommitFailedError)
    assert "refused" in str(fail.error)
    [fail] = c.commit_done(commit, classify(KafkaError(KafkaError.FENCED_INSTANCE_ID, fatal=True)), 0.0)
    assert isinstance(fail, Fail) and isinstance(fail.error, FencedMemberError)


# -- the DLQ --------------------------------------------------------------------------------------


def test_rejected_records_go_to_the_dlq_and_are_committed_past_only_once_acknowledged() -> None:
    c = core()
    c.assigned([(T, 0)], {}, 0.0)
    b = batch((0, 0, 9), rejected=(0, 4))
    c.collected(b, 0.0)
    assert c.handled(None, 0.0) == [SendDlq(b)]
    # the DLQ does not acknowledge: backpressure, and the handler is not called again
    assert kinds(c.dlq_done([], DlqError("DLQ: 0/1 acknowledged"), 0.0)) == ["Pause"]
    assert c.tick(1.0) == [SendDlq(b)] and b.attempts == 1
    b.rejected[0].dlq_state = "acked"
    out = c.dlq_done(list(b.rejected), None, 1.0)
    assert commit_of(out).offsets == {(T, 0): 10}  # past the rejected record, with its copy durable
    assert c.telemetry.get("records_dlq", {"group": "g", "reason": "decode"}) == 1


def test_a_rejected_record_without_a_dlq_stops_the_member() -> None:
    c = core(dlq=False)
    c.assigned([(T, 0)], {}, 0.0)
    b = batch((0, 0, 9), rejected=(0, 4))
    c.collected(b, 0.0)
    [fail] = c.handled(None, 0.0)
    assert isinstance(fail, Fail) and isinstance(fail.error, BatchFailedError)
    assert "no DLQ" in str(fail.error)


# -- the journal and restarts ------------------------------------------------------------------


class Journal:
    """The latest journaled range per partition, as ClickHouseBatchJournal.pending returns it."""

    def __init__(self) -> None:
        self.ranges: dict[tuple[str, int], tuple[int, int]] = {}


def run_member(c: MemberCore, journal: Journal, b: Batch, now: float) -> None:
    out = c.collected(b, now)
    assert out == [RecordJournal(b)]
    journal.ranges.update(b.ranges())
    assert c.journal_done(None, now) == [Handle(b)]
    c.commit_done(commit_of(c.handled(None, now)), None, now)


def build(c: MemberCore, msgs: list[Msg]) -> BatchBuilder:
    b = BatchBuilder(lambda v: (v,), c.cuts, c.topic_ids)
    b.add(msgs, [])
    return b


def test_a_clean_restart_is_quiet_and_a_crash_cuts_the_first_batch_where_the_journal_says(
    caplog: pytest.LogCaptureFixture,
) -> None:
    journal = Journal()
    first = core(journal=True)
    first.assigned([(T, 0), (T, 1)], {}, 0.0)
    run_member(first, journal, batch((0, 0, 99), (1, 0, 49)), 0.0)
    run_member(first, journal, batch((0, 100, 149)), 1.0)
    first.stop(2.0)
    assert first.finished and first.committed == {(T, 0): 150, (T, 1): 50}

    # restart: the journal's ranges are all committed; the first batch starts after them
    again = core(journal=True)
    again.assigned([(T, 0), (T, 1)], journal.ranges, 10.0)
    b = build(again, [Msg(0, o, b"x") for o in range(150, 160)] + [Msg(1, o, b"x") for o in range(50, 55)])
    assert b.waiting_for_cut() == []
    assert again.collecting_done(b.waiting_for_cut(), 10.5, 10.5)
    assert "journaled batch end not reached" not in caplog.text

    # a crash between store and commit: re-read from the committed offset, cut as before
    crashed = core(journal=True)
    crashed.assigned([(T, 0)], {(T, 0): (150, 199)}, 20.0)
    b = build(crashed, [Msg(0, o, b"x") for o in range(150, 180)])
    assert b.waiting_for_cut() == [(T, 0)]
    assert not crashed.collecting_done(b.waiting_for_cut(), 20.5, 20.5)  # waits for the end
    b.add([Msg(0, o, b"x") for o in range(180, 210)], carry := [])
    rebuilt = b.batch()
    assert rebuilt is not None and rebuilt.ranges() == {(T, 0): (150, 199)} and len(carry) == 10
    assert "journaled batch end not reached" not in caplog.text


def test_a_journaled_end_that_never_comes_is_given_up_after_the_cut_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = core(journal=True, cut_wait=30.0)
    c.assigned([(T, 0)], {(T, 0): (0, 999)}, 0.0)
    b = build(c, [Msg(0, o, b"x") for o in range(0, 10)])
    assert not c.collecting_done(b.waiting_for_cut(), 29.0, 0.5)
    assert c.collecting_done(b.waiting_for_cut(), 31.0, 0.5)
    assert "journaled batch end not reached; cutting where we are" in caplog.text
    assert (T, 0) not in c.cuts


# -- topic incarnations and client errors --------------------------------------------------------


def test_offsets_going_back_without_a_rebalance_ask_for_the_new_topic_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = core()
    c.topic_ids_known({T: "old"})
    c.assigned([(T, 0)], {}, 0.0)
    b = batch((0, 0, 99))
    b.partitions[(T, 0)].topic_id = "old"
    store(c, b)
    c.commit_done(Commit({(T, 0): 100}), None, 0.0)
    again = batch((0, 0, 9))  # the broker restarted with empty storage: offsets start over
    again.partitions[(T, 0)].topic_id = "old"
    out = c.collected(again, 1.0)
    assert out == [RefreshTopicIds(), Handle(again)]
    c.topic_ids_known({T: "new"})
    assert again.partitions[(T, 0)].topic_id == "new"
    assert "topic recreated" in caplog.text
    # forward again: no question asked
    c.handled(None, 1.0)
    assert kinds(c.collected(batch((0, 10, 19)), 2.0)) == ["Handle"]


@pytest.mark.parametrize(("code", "fatal", "fault"), [
    (KafkaError._PARTITION_EOF, False, KafkaFault.IGNORE),
    (KafkaError._TRANSPORT, False, KafkaFault.RETRY),
    (KafkaError._ALL_BROKERS_DOWN, False, KafkaFault.RETRY),
    (KafkaError._TIMED_OUT, False, KafkaFault.RETRY),
    (KafkaError.COORDINATOR_NOT_AVAILABLE, False, KafkaFault.RETRY),
    (KafkaError.NOT_COORDINATOR, False, KafkaFault.RETRY),
    (KafkaError.COORDINATOR_LOAD_IN_PROGRESS, False, KafkaFault.RETRY),
    (KafkaError.UNKNOWN_TOPIC_OR_PART, False, KafkaFault.RETRY),
    (KafkaError._NO_OFFSET, False, KafkaFault.RETRY),
    (KafkaError.REBALANCE_IN_PROGRESS, False, KafkaFault.REBALANCE),
    (KafkaError.ILLEGAL_GENERATION, False, KafkaFault.REBALANCE),
    (KafkaError.UNKNOWN_MEMBER_ID, False, KafkaFault.REBALANCE),
    (KafkaError._MAX_POLL_EXCEEDED, False, KafkaFault.REBALANCE),
    (KafkaError.FENCED_INSTANCE_ID, False, KafkaFault.FATAL),
    (KafkaError._FATAL, False, KafkaFault.FATAL),
    (KafkaError._TRANSPORT, True, KafkaFault.FATAL),
    (KafkaError.TOPIC_AUTHORIZATION_FAILED, False, KafkaFault.REFUSED),
    (KafkaError.GROUP_AUTHORIZATION_FAILED, False, KafkaFault.REFUSED),
    (KafkaError.SASL_AUTHENTICATION_FAILED, False, KafkaFault.REFUSED),
    (KafkaError._AUTHENTICATION, False, KafkaFault.REFUSED),
])
def test_kafka_errors_are_sorted_by_one_table_and_the_member_acts_on_the_sort(
    code: int, fatal: bool, fault: KafkaFault,
) -> None:
    failure = classify(KafkaError(code, fatal=fatal))
    assert failure.fault is fault
    c = core()
    out = c.client_error(failure, 0.0)
    stops = fault in (KafkaFault.FATAL, KafkaFault.REFUSED)
    assert bool(out) == stops and (c.failure is not None) == stops
    assert c.telemetry.total("consumer_errors") == (0 if fault is KafkaFault.IGNORE else 1)


def test_stored_batches_are_reported_after_their_commit() -> None:
    c = core()
    c.assigned([(T, 0)], {}, 0.0)
    b = batch((0, 0, 9))
    out = store(c, b)
    assert out == [Commit({(T, 0): 10}), Stored(b)]
    assert c.telemetry.total("batches") == 1
