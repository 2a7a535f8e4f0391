"""The one supervisor: fail fast (``run``, a group's members) or restart with backoff (``up``);
state as an enum with the last failure and the restart count beside it."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from perpstream.errors import ConfigError, PerpstreamError
from perpstream.runtime.health import Health
from perpstream.runtime.supervisor import Component, FailFast, RestartWithBackoff, State, Supervisor
from perpstream.runtime.telemetry import Telemetry
from tests.waiting import wait_for


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _delays(record: list[str]) -> Iterator[float]:
    """Zero delays that note each fresh generator (a reset of the backoff)."""
    record.append("fresh")
    while True:
        yield 0.0


def _restarting(body: object, clock: _Clock | None = None,
                health: Health | None = None) -> tuple[Component, Telemetry, list[str]]:
    resets: list[str] = []
    telemetry = Telemetry()
    policy = RestartWithBackoff(delays=lambda: _delays(resets), healthy_after=60.0, clock=clock or _Clock())
    sup = Supervisor(policy, telemetry=telemetry, health=health, thread_prefix="up-")
    return sup.add("sink", body), telemetry, resets  # type: ignore[arg-type]


def test_a_failing_component_is_restarted_counted_and_reported() -> None:
    calls: list[int] = []

    def body(stop: threading.Event) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise PerpstreamError("ClickHouse unreachable")
        if len(calls) == 2:
            return 1
        stop.wait()
        return 0

    c, telemetry, _ = _restarting(body)
    c.start()
    wait_for(lambda: len(calls) == 3, 10, "the third start")
    assert c.restarts == 2 and c.state is State.RUNNING and c.name == "up-sink"
    assert telemetry.get("component_restarts", {"component": "sink"}) == 2
    assert c.last_failure == "exited with code 1"
    c.stop()
    c.join(5)
    assert not c.is_alive() and c.state is State.STOPPED and c.fatal is None


def test_while_restarting_readyz_says_which_failure_once(caplog: pytest.LogCaptureFixture) -> None:
    health = Health()

    def body(stop: threading.Event) -> int:
        raise PerpstreamError("ClickHouse unreachable")

    sup = Supervisor(RestartWithBackoff(delays=lambda: iter([30.0])), health=health)
    c = sup.add("sink", body)
    c.start()
    wait_for(lambda: c.state is State.RESTARTING, 10, "the restart")
    assert "sink: failed (ClickHouse unreachable); restarting" in health.readiness().text()
    assert not health.readiness().ok
    c.stop()
    c.join(5)
    assert c.state is State.STOPPED and c.last_failure == "ClickHouse unreachable"
    assert [r.getMessage() for r in caplog.records if "ClickHouse" in r.getMessage()] == [
        "sink failed (ClickHouse unreachable); restarting in 30.0 s"]  # said once, not twice


def test_a_bug_is_restarted_too_and_its_traceback_logged(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def body(stop: threading.Event) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise KeyError("oops")
        stop.wait()
        return 0

    c, _, _ = _restarting(body)
    c.start()
    wait_for(lambda: len(calls) == 2, 10, "the restart")
    c.stop()
    c.join(5)
    assert any(r.exc_info for r in caplog.records if r.message == "sink failed")
    assert c.last_failure == "KeyError: 'oops'"


def test_a_configuration_error_is_permanent() -> None:
    calls: list[int] = []

    def body(stop: threading.Event) -> int:
        calls.append(1)
        raise ConfigError("group_id: must not be empty")

    c, _, _ = _restarting(body)
    c.start()
    c.join(5)
    assert not c.is_alive() and calls == [1]
    assert isinstance(c.fatal, ConfigError) and c.state is State.FAILED


def test_returning_zero_on_its_own_is_finishing_not_failing() -> None:
    c, telemetry, _ = _restarting(lambda stop: 0)
    c.start()
    c.join(5)
    assert c.restarts == 0 and c.state is State.FINISHED
    assert telemetry.total("component_restarts") == 0


def test_the_backoff_starts_over_after_a_healthy_run() -> None:
    clock = _Clock()
    calls: list[int] = []

    def body(stop: threading.Event) -> int:
        calls.append(1)
        if len(calls) == 2:
            clock.now += 61  # this one ran longer than healthy_after before failing
        if len(calls) >= 4:
            stop.wait()
        return 1

    c, _, resets = _restarting(body, clock)
    c.start()
    wait_for(lambda: len(calls) == 4, 10, "four starts")
    c.stop()
    c.join(5)
    assert resets == ["fresh", "fresh"]  # one at the start, one after the healthy run


def test_fail_fast_stops_the_others_and_the_exit_code_says_so(caplog: pytest.LogCaptureFixture) -> None:
    sup = Supervisor(FailFast())
    waited = sup.add("sink", lambda stop: 0 if stop.wait(30) else 9)
    sup.add("producer", lambda stop: (_ for _ in ()).throw(PerpstreamError("registry refused\nmore")))
    sup.start()
    assert sup.join(timeout=10) == []
    assert sup.failure.is_set() and sup.first_failed is sup.components["producer"]
    assert waited.state is State.STOPPED and sup.components["producer"].state is State.FAILED
    assert sup.exit_code() == 1
    [rec] = [r for r in caplog.records if r.name == "perpstream.runtime.supervisor"]
    assert rec.getMessage().startswith("producer failed: registry refused") and rec.exc_info is None


def test_join_is_bounded_and_names_what_still_runs() -> None:
    sup = Supervisor(FailFast())
    release = threading.Event()
    sup.add("stuck", lambda stop: 0 if release.wait(30) else 1)
    sup.start()
    sup.stop()
    assert sup.join(timeout=0.2) == ["stuck"]
    release.set()
    assert sup.join(timeout=10) == []
