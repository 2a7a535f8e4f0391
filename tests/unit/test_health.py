"""The health registry and /healthz, /readyz over a real HTTP server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from perpstream.consumers.exceptions import StoreUnavailableError
from perpstream.consumers.runtime.health import LagTrend, liveness, readiness
from perpstream.local import free_port
from perpstream.runtime.health import NOTHING_REGISTERED, Health
from perpstream.runtime.telemetry import Telemetry, operator_endpoints


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_nothing_registered_is_alive_but_not_ready() -> None:
    h = Health()
    assert h.liveness().ok
    ready = h.readiness()
    assert not ready.ok and ready.problems == [NOTHING_REGISTERED]


def test_readiness_names_each_failing_component_and_joins_its_reasons() -> None:
    h = Health()
    state = {"ws": "no websocket connected for 42 s"}
    h.add_readiness("producer", lambda: state["ws"])
    h.add_readiness("producer", lambda: None)
    h.add_readiness("sink", lambda: "not assigned any partition")
    h.add_readiness("sink", lambda: "ClickHouse failing for 30 s: OperationalError")
    report = h.readiness()
    assert not report.ok
    assert report.problems == [
        "producer: no websocket connected for 42 s",
        "sink: not assigned any partition; ClickHouse failing for 30 s: OperationalError",
    ]
    state["ws"] = None
    assert h.readiness().problems == [report.problems[1]]


def test_a_check_that_raises_is_failing_not_passing() -> None:
    h = Health()
    h.add_readiness("sink", lambda: {}["missing"])  # type: ignore[misc]
    report = h.readiness()
    assert not report.ok
    assert report.problems[0].startswith("sink: check failed: KeyError")


def test_heartbeat_fails_liveness_once_the_loop_stops_turning() -> None:
    clock = Clock()
    h = Health(clock)
    beat = h.heartbeat("producer", stall_after=30)
    clock.now += 29
    assert h.liveness().ok
    beat.beat()
    clock.now += 31
    report = h.liveness()
    assert report.problems == ["producer: loop has not turned for 31 s (limit 30 s)"]
    beat.beat()
    assert h.liveness().ok


def test_a_stopped_component_is_not_ready_and_no_longer_watched_for_liveness() -> None:
    clock = Clock()
    h = Health(clock)
    h.heartbeat("sink", stall_after=1)
    h.add_readiness("sink", lambda: None)
    h.stopped("sink")
    clock.now += 100
    assert h.liveness().ok
    assert h.readiness().problems == ["sink: stopped"]


@pytest.fixture
def served() -> Iterator[tuple[Health, str]]:
    health = Health()
    telemetry = Telemetry()
    telemetry.inc("points_published", 3)
    with operator_endpoints(telemetry, free_port(), health, host="127.0.0.1") as server:
        assert server is not None
        yield health, f"http://127.0.0.1:{server.server_address[1]}"


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_endpoints_answer_200_ok_then_503_with_the_reasons(served: tuple[Health, str]) -> None:
    health, base = served
    state: dict[str, str | None] = {"reason": None}
    health.heartbeat("producer", stall_after=60)
    health.add_readiness("producer", lambda: state["reason"])
    assert _get(base + "/healthz")[::2] == (200, "ok\n")
    assert _get(base + "/readyz")[::2] == (200, "ok\n")
    state["reason"] = "no websocket connected for 42 s"
    status, ctype, body = _get(base + "/readyz")
    assert (status, body) == (503, "producer: no websocket connected for 42 s\n")
    assert ctype.startswith("text/plain")
    assert _get(base + "/healthz")[0] == 200  # alive while not ready
    assert "perpstream_points_published 3" in _get(base + "/metrics")[2]
    assert _get(base + "/nope")[0] == 404


@pytest.mark.parametrize("how", ["query", "accept"])
def test_json_when_asked(served: tuple[Health, str], how: str) -> None:
    health, base = served
    health.add_readiness("sink", lambda: "not assigned any partition")
    health.add_readiness("producer", lambda: None)
    url, headers = (base + "/readyz?format=json", {}) if how == "query" else \
        (base + "/readyz", {"Accept": "application/json"})
    status, ctype, body = _get(url, headers)
    assert status == 503 and ctype == "application/json"
    doc: dict[str, Any] = json.loads(body)
    assert doc["status"] == "unavailable"
    assert doc["checks"] == {"producer": {"ok": True, "reason": None},
                             "sink": {"ok": False, "reason": "not assigned any partition"}}
    assert doc["problems"] == ["sink: not assigned any partition"]


def test_no_port_serves_nothing() -> None:
    with operator_endpoints(Telemetry(), None, Health()) as server:
        assert server is None


def test_lag_trend_needs_two_windows_of_growth_beyond_a_batch() -> None:
    trend = LagTrend(tolerance=100, window=30, windows=2)
    trend.update(0, 0)
    trend.update(5_000, 31)
    assert trend.problem() is None  # one window
    trend.update(5_050, 62)
    assert trend.problem() is None  # grew by less than a batch: reset
    trend.update(9_000, 93)
    trend.update(20_000, 124)
    assert trend.problem() == "lag growing: +14,950 records over the last 60 s, 20,000 behind"
    trend.update(19_000, 130)  # catching up clears it at once
    assert trend.problem() is None


class _Member:
    """The state of a ConsumeLoop the checks read."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.running = True
        self.assignment: set[tuple[str, int]] = set()
        self.turned_at = 0.0
        self.poll_deadline = 300.0
        self.retrying_since: float | None = None
        self.retry_error: Exception | None = None
        self.commit_failing: tuple[float, str] | None = None
        self.lag_trend = LagTrend()


def test_member_checks_report_assignment_retries_commits_and_stalls() -> None:
    a, b = _Member("sink-0"), _Member("sink-1")
    loops: Any = [a, b]
    a.running = b.running = False
    assert readiness(loops, 0) == "starting: not subscribed yet"
    a.running = b.running = True
    assert readiness(loops, 0) == "not assigned any partition"
    a.assignment.add(("t", 0))
    assert readiness(loops, 0) is None
    try:
        raise StoreUnavailableError("insert failed") from ConnectionRefusedError("refused")
    except StoreUnavailableError as exc:
        b.retry_error = exc
    b.retrying_since = 10.0
    b.commit_failing = (20.0, "KafkaError{_TRANSPORT}")
    assert readiness(loops, 40.0) == (
        "sink-1: ClickHouse failing for 30 s: ConnectionRefusedError: refused; "
        "sink-1: offset commits failing for 20 s: KafkaError{_TRANSPORT}")
    assert readiness([b], 40.0).startswith("not assigned any partition; ClickHouse failing")  # type: ignore[list-item]
    assert liveness(loops, 300.0) is None
    assert liveness(loops, 301.0) == (
        "sink-0 has not polled Kafka for 301 s (max.poll.interval 300 s); "
        "sink-1 has not polled Kafka for 301 s (max.poll.interval 300 s)")


def test_a_component_started_again_is_judged_by_its_new_checks_only() -> None:
    health = Health()
    health.add_readiness("sink", lambda: "ClickHouse failing for 30 s")
    health.stopped("sink")
    assert health.readiness().problems == ["sink: stopped"]
    health.reset("sink")  # its supervisor starts it again
    health.add_readiness("sink", lambda: None)
    assert health.readiness().ok and health.names() == ["sink"]
