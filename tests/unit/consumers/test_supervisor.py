"""run_workers: a failed member stops all of them, the exit code says so, the log says why."""

from __future__ import annotations

import logging
import threading

import pytest

from perpstream.consumers.exceptions import BatchFailedError, FatalConsumerError
from perpstream.consumers.runtime.supervisor import run_workers


class Member:
    """Runs until ``stop`` or fails at once with ``error``."""

    def __init__(self, error: BaseException | None = None, rc: int = 0) -> None:
        self.error, self.rc, self.stopped = error, rc, False

    def run(self, stop: threading.Event) -> int:
        if self.error is not None:
            raise self.error
        assert stop.wait(30), "never stopped"
        self.stopped = True
        return self.rc


def test_clean_members_exit_zero() -> None:
    stop = threading.Event()
    members = [Member(), Member()]
    threading.Timer(0.1, stop.set).start()
    assert run_workers(lambda i: members[i], 2, stop) == 0
    assert all(m.stopped for m in members)


def test_a_member_that_cannot_store_a_batch_stops_all_without_a_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failed = BatchFailedError("batch t[0] 10..19 cannot be stored, nothing of it is committed: "
                              "insert failed: TYPE_MISMATCH (53)", {("t", 0): (10, 19)})
    members = [Member(), Member(failed)]
    stop = threading.Event()
    with caplog.at_level(logging.ERROR, "perpstream.consumers.runtime.supervisor"):
        assert run_workers(lambda i: members[i], 2, stop, name="sink") == 1
    assert stop.is_set() and members[0].stopped
    [rec] = [r for r in caplog.records if r.name == "perpstream.consumers.runtime.supervisor"]
    assert rec.exc_info is None
    assert "t[0] 10..19" in rec.getMessage() and "TYPE_MISMATCH" in rec.getMessage()
    assert rec.ranges == {"t[0]": "10..19"}  # type: ignore[attr-defined]


def test_a_fatal_kafka_error_is_logged_as_such() -> None:
    stop = threading.Event()
    fenced = FatalConsumerError("fatal Kafka consumer error: fenced")
    assert run_workers(lambda i: Member(fenced), 1, stop) == 1


def test_a_bug_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    stop = threading.Event()
    with caplog.at_level(logging.ERROR, "perpstream.consumers.runtime.supervisor"):
        assert run_workers(lambda i: Member(ZeroDivisionError("oops")), 1, stop) == 1
    [rec] = [r for r in caplog.records if r.name == "perpstream.consumers.runtime.supervisor"]
    assert rec.exc_info is not None and rec.exc_info[0] is ZeroDivisionError


def test_a_member_left_with_an_unstored_batch_makes_the_exit_code_non_zero() -> None:
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    assert run_workers(lambda i: Member(rc=1 if i == 0 else 0), 2, stop) == 1
