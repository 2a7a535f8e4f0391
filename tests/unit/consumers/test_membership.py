"""Static group membership: the member name, the group.instance.id of each worker, the
session/heartbeat rule, and what a fenced member says."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from confluent_kafka import KafkaError

from perpstream.cli import EXIT_CONFIG, main
from perpstream.consumers.exceptions import FencedMemberError
from perpstream.consumers.failures import KafkaFault, classify, member_error
from perpstream.consumers.runtime.member import Fail
from perpstream.consumers.runtime.supervisor import run_workers
from perpstream.consumers.settings import ConsumerSettings, default_member_name
from perpstream.consumers.sink.service import sink_loop
from perpstream.consumers.sink.settings import SinkSettings
from perpstream.consumers.snapshots.app import SnapshotService
from perpstream.consumers.snapshots.settings import SnapshotSettings
from perpstream.errors import ConfigError
from perpstream.runtime.settings import build_settings

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _no_member_name_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERPSTREAM_MEMBER_NAME", raising=False)


def test_each_worker_sends_its_own_instance_id() -> None:
    s = SinkSettings(kafka_bootstrap_servers="h:1", member_name="sink-a")
    ids = [s.consumer_config(i)["group.instance.id"] for i in range(3)]
    assert ids == ["sink-a-0", "sink-a-1", "sink-a-2"]
    # the members the services build carry them too
    assert [sink_loop(s, None, member=i)._config["group.instance.id"] for i in range(2)] == ids[:2]
    snaps = SnapshotService(SnapshotSettings(kafka_bootstrap_servers="h:1", member_name="snap-a"), None)
    assert snaps.make_loop(1)._config["group.instance.id"] == "snap-a-1"


def test_an_empty_member_name_is_dynamic_membership(monkeypatch: pytest.MonkeyPatch) -> None:
    dynamic = SinkSettings(kafka_bootstrap_servers="h:1", member_name="")
    assert "group.instance.id" not in dynamic.consumer_config(0)
    monkeypatch.setenv("PERPSTREAM_MEMBER_NAME", "")
    s = build_settings(SinkSettings, values={"kafka_bootstrap_servers": "h:1"})
    assert s.group_instance_id(0) is None
    assert "group.instance.id" not in sink_loop(s, None)._config


def test_the_default_name_comes_from_the_host_and_the_group() -> None:
    s = SinkSettings(kafka_bootstrap_servers="h:1", group_id="perpstream-sink")
    name = s.resolved_member_name
    assert "-perpstream-sink" in name and s.consumer_config(1)["group.instance.id"] == f"{name}-1"
    # the same in every settings object of the process: workers differ by index only
    again = SinkSettings(kafka_bootstrap_servers="h:1", group_id="perpstream-sink")
    assert again.resolved_member_name == name
    assert default_member_name("group with spaces/and:colons", host="host 1", lock_dir=None) \
        .startswith("host_1-group_with_spaces_and_colons")


_CHILD = ("import sys; from pathlib import Path; "
          "from perpstream.consumers.settings import default_member_name; "
          "print(default_member_name('g', host='h', lock_dir=Path(sys.argv[1])), flush=True); "
          "sys.stdin.read()")


def _claim(lock_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(lock_dir)], cwd=ROOT, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def _name(p: subprocess.Popen[str]) -> str:
    assert p.stdout is not None
    return p.stdout.readline().strip()


def test_the_default_name_is_stable_across_restarts_and_distinct_per_process(tmp_path: Path) -> None:
    first = _claim(tmp_path)
    assert _name(first) == "h-g"
    second = _claim(tmp_path)  # a second process of the group on this host, beside the first
    assert _name(second) == "h-g-p1"
    first.kill()  # kill -9: its slot is free again at once
    first.wait(10)
    restarted = _claim(tmp_path)
    try:
        assert _name(restarted) == "h-g"  # the restarted process reclaims its identity
    finally:
        for p in (second, restarted):
            p.kill()
            p.wait(10)


def test_a_bad_member_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"member_name \(PERPSTREAM_MEMBER_NAME\)"):
        build_settings(SinkSettings, values={"member_name": "two words"})


def test_heartbeat_must_be_below_the_session_timeout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(ConfigError) as exc:
        build_settings(SinkSettings, values={"session_timeout_ms": 6_000, "heartbeat_interval_ms": 6_000})
    assert "heartbeat_interval_ms" in str(exc.value) and "session_timeout_ms" in str(exc.value)
    ConsumerSettings(session_timeout_ms=6_000, heartbeat_interval_ms=1_999)  # below a third: fine

    monkeypatch.setenv("PERPSTREAM_SESSION_TIMEOUT_MS", "10000")
    monkeypatch.setenv("PERPSTREAM_HEARTBEAT_INTERVAL_MS", "12000")
    assert main(["sink", "--bootstrap-servers", "h:1"]) == EXIT_CONFIG
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("perpstream sink: configuration error: heartbeat_interval_ms"), err
    assert "PERPSTREAM_HEARTBEAT_INTERVAL_MS" in err and "PERPSTREAM_SESSION_TIMEOUT_MS" in err
    assert "12000 >= 10000" in err


def test_a_fenced_member_stops_with_one_line_naming_the_member() -> None:
    """What librdkafka raises from ``consume()`` for a static member another consumer took the
    id of, sorted by consumers.failures, is the member's one-line stop reason."""
    failure = classify(KafkaError(
        KafkaError._FATAL, "Fatal error: Broker: Static consumer fenced by other consumer with same "
        "group.instance.id", fatal=True))
    assert failure.fault is KafkaFault.FATAL
    loop = sink_loop(SinkSettings(kafka_bootstrap_servers="h:1", member_name="sink-a"), None, member=1)
    exc = member_error(failure, loop.group_id, loop.core.instance)
    assert isinstance(exc, FencedMemberError)
    msg = str(exc)
    assert "'sink-a-1'" in msg and "perpstream-sink" in msg and "PERPSTREAM_MEMBER_NAME" in msg
    assert "\n" not in msg


def test_a_fenced_member_from_the_error_callback(caplog: pytest.LogCaptureFixture) -> None:
    class Member:
        def __init__(self) -> None:
            self.loop = sink_loop(SinkSettings(kafka_bootstrap_servers="h:1", member_name="m"), None)

        def run(self, stop: threading.Event) -> int:
            [fail] = self.loop.core.client_error(
                classify(KafkaError(KafkaError.FENCED_INSTANCE_ID, fatal=True)), 0.0)
            assert isinstance(fail, Fail)
            raise fail.error

    stop = threading.Event()
    assert run_workers(lambda i: Member(), 1, stop, name="sink") == 1
    [rec] = [r for r in caplog.records if r.name == "perpstream.consumers.runtime.supervisor"]
    assert rec.exc_info is None and "static member 'm-0'" in rec.getMessage()
    assert rec.error_type == "FencedMemberError"  # type: ignore[attr-defined]


def test_a_fatal_error_without_the_fatal_flag_stops_the_member() -> None:
    """librdkafka hands a fenced static member's error to the error callback and as a consumed
    error event under the code _FATAL, with ``fatal()`` false: the member stops all the same
    (it used to log a warning and stay, with no partitions, forever)."""

    fenced = KafkaError(KafkaError._FATAL, "Fatal error: Broker: Static consumer fenced by other consumer "
                        "with same group.instance.id")
    assert not fenced.fatal()
    loop = sink_loop(SinkSettings(kafka_bootstrap_servers="h:1", member_name="m"), None)
    for where in ("client", "message"):
        [fail] = loop.core.client_error(classify(fenced), 0.0, where)
        assert isinstance(fail, Fail) and isinstance(fail.error, FencedMemberError)
