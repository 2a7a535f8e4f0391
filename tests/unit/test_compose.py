"""docker-compose.yml cannot run here (no Docker engine), so it is kept honest
by reading it: services, ports, commands and environment names must agree with
the CLI and the settings classes the processes really read; the broker runs the
release and the settings the test suite runs (perpstream/kafka_runtime); the
perpstream services' healthcheck is run against a real /healthz; grace periods
outlast the drains they must not cut. Where the compose tool exists, it
validates the file too."""

from __future__ import annotations

import importlib
import inspect
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from pydantic_settings import BaseSettings

from perpstream.cli import build_parser
from perpstream.consumers.runtime.dlq import DlqWriter
from perpstream.consumers.runtime.leave import leave_group
from perpstream.consumers.runtime.publisher import RecordPublisher
from perpstream.consumers.settings import ConsumerSettings
from perpstream.kafka_runtime import KAFKA_VERSION, Node, cluster_settings, node_properties
from perpstream.local import free_port
from perpstream.producer.settings import ProducerSettings
from perpstream.runtime.health import Health
from perpstream.runtime.settings import CommonSettings
from perpstream.runtime.telemetry import Telemetry, operator_endpoints

ROOT = Path(__file__).resolve().parents[2]

#: compose service -> (settings class path, subcommand); the class a process builds its settings from.
PERPSTREAM_SERVICES = {
    "topics": ("perpstream.runtime.settings:CommonSettings", "topics"),
    "producer": ("perpstream.producer.settings:ProducerSettings", "produce"),
    "sink": ("perpstream.consumers.sink.settings:SinkSettings", "sink"),
    "snapshots": ("perpstream.consumers.snapshots.settings:SnapshotSettings", "snapshots"),
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _settings_class(path: str) -> type[BaseSettings]:
    mod, _, name = path.partition(":")
    cls = getattr(importlib.import_module(mod), name)
    assert issubclass(cls, CommonSettings)
    return cls  # type: ignore[no-any-return]


def _env_names(cls: type[BaseSettings]) -> set[str]:
    prefix = cls.model_config.get("env_prefix", "")
    return {f"{prefix}{name}".upper() for name in cls.model_fields}


#: subcommand -> the settings class its process builds
SETTINGS_OF = {subcommand: cls_path for cls_path, subcommand in PERPSTREAM_SERVICES.values()}


def _settings(compose: dict[str, Any], service: str) -> Any:
    """The settings the service's process builds from its compose environment."""
    svc = compose["services"][service]
    cls = _settings_class(SETTINGS_OF[svc["command"][0]])
    env = svc["environment"]
    return cls.model_validate(
        {k.removeprefix("PERPSTREAM_").lower(): v for k, v in env.items() if k.startswith("PERPSTREAM_")}
    )


def test_the_stack_has_kafka_clickhouse_and_the_perpstream_processes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "clickhouse", "producer", "sink", "snapshots"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    for name in PERPSTREAM_SERVICES:
        assert services[name]["build"] == ".", name
    assert (ROOT / "Dockerfile").is_file()


def test_kafka_runs_kraft_without_zookeeper(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert "broker" in env["KAFKA_PROCESS_ROLES"] and "controller" in env["KAFKA_PROCESS_ROLES"]
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    node = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{node}@")
    assert not any("ZOOKEEPER" in k for k in env)
    assert "zookeeper" not in compose["services"]


@pytest.mark.parametrize("service", sorted(PERPSTREAM_SERVICES))
def test_service_env_names_are_settings_the_process_reads(
    compose: dict[str, Any], service: str
) -> None:
    cls_path, _ = PERPSTREAM_SERVICES[service]
    env = compose["services"][service]["environment"]
    names = {k for k in env if k.startswith("PERPSTREAM_")}
    unknown = names - _env_names(_settings_class(cls_path))
    assert not unknown, f"{service}: {sorted(unknown)} are read by no settings class"
    # and the values parse: a typo in a value fails here, not at deploy time
    _settings_class(cls_path).model_validate(
        {k.removeprefix("PERPSTREAM_").lower(): v for k, v in env.items() if k in names}
    )


@pytest.mark.parametrize("service", sorted(PERPSTREAM_SERVICES))
def test_service_commands_are_real_subcommands(compose: dict[str, Any], service: str) -> None:
    _, subcommand = PERPSTREAM_SERVICES[service]
    command = compose["services"][service]["command"]
    assert command[0] == subcommand
    parser = build_parser()
    args = parser.parse_args(command)  # exits (fails the test) on an unknown flag
    assert args.command == subcommand


def test_bootstrap_and_dsn_point_at_the_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    env = services["sink"]["environment"]
    host, port = env["PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS"].split(":")
    assert host == "kafka"
    listeners = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"PLAINTEXT://kafka:{port}" in listeners.split(",")

    dsn = urlparse(env["PERPSTREAM_CLICKHOUSE_DSN"])
    ch = services["clickhouse"]
    assert dsn.hostname == "clickhouse"
    assert any(str(p).split(":")[-1] == str(dsn.port) for p in ch["ports"])
    assert dsn.username == ch["environment"]["CLICKHOUSE_USER"]
    assert dsn.password == ch["environment"]["CLICKHOUSE_PASSWORD"]


def test_metrics_port_is_published_where_set(compose: dict[str, Any]) -> None:
    producer = compose["services"]["producer"]
    port = producer["environment"]["PERPSTREAM_METRICS_PORT"]
    assert f"{port}:{port}" in producer["ports"]


def test_consumers_wait_for_their_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("sink", "snapshots"):
        deps = services[name]["depends_on"]
        assert deps["clickhouse"]["condition"] == "service_healthy"
        assert deps["topics"]["condition"] == "service_completed_successfully"
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"


# -- Kafka: the release and the broker settings the test suite runs ------------------------------


def kafka_env_name(prop: str) -> str:
    """The apache/kafka image's variable for a server property: "." -> "_", "_" -> "__",
    "-" -> "___", upper-cased, prefixed KAFKA_ (the image's documented convention)."""
    return "KAFKA_" + prop.replace("_", "__").replace("-", "___").replace(".", "_").upper()


def _protocol_map(value: str) -> dict[str, str]:
    return dict(entry.split(":", 1) for entry in value.split(","))


def _map_has_every_entry(compose_value: str, launcher_value: str) -> bool:
    compose_map = _protocol_map(compose_value)
    return all(compose_map.get(name) == proto for name, proto in _protocol_map(launcher_value).items())


#: Keys of cluster_settings(1) whose compose value may differ from the launcher's, each with the
#: check it must pass instead. Keep this short: every entry is a way compose and tests can drift.
DIFFERS: dict[str, Callable[[str, str], bool]] = {
    # compose has a third listener, EXTERNAL (localhost:29092, for clients on the docker host);
    # the launcher's PLAINTEXT and CONTROLLER must be there with the same protocol.
    "listener.security.protocol.map": _map_has_every_entry,
}

#: What the launcher sets per node (node_properties beyond cluster_settings): compose sets
#: these for its one node, with its own host names, ports and directory.
_ONE = Node(node_id=1, port=9092, controller_port=9093, directory=Path("/node"))
NODE_KEYS = set(node_properties(_ONE, [_ONE])) - set(cluster_settings(1))

#: Variables of the image that are not server properties (JVM and logging options).
IMAGE_VARIABLES = {"KAFKA_HEAP_OPTS", "KAFKA_OPTS", "KAFKA_JMX_OPTS", "KAFKA_JMX_PORT", "KAFKA_JMX_HOSTNAME",
                   "KAFKA_LOG4J_OPTS", "KAFKA_LOG4J_ROOT_LOGLEVEL", "KAFKA_LOG4J_LOGGERS"}


def test_kafka_is_the_release_the_tests_run(compose: dict[str, Any]) -> None:
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"


def test_kafka_variable_names_follow_the_image_convention() -> None:
    assert kafka_env_name("log.dirs") == "KAFKA_LOG_DIRS"
    assert kafka_env_name("abc_def") == "KAFKA_ABC__DEF"
    assert kafka_env_name("abc-def") == "KAFKA_ABC___DEF"


def test_kafka_broker_settings_are_the_ones_the_tests_run(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    wrong = []
    for prop, launcher in cluster_settings(1).items():
        name = kafka_env_name(prop)
        if name not in env:
            wrong.append(f"{name} missing (the tests run {prop}={launcher})")
            continue
        value = str(env[name])
        ok = DIFFERS[prop](value, launcher) if prop in DIFFERS else value == launcher
        if not ok:
            wrong.append(f"{name}={value!r}, the tests run {prop}={launcher!r}")
    assert not wrong, "docker-compose.yml's broker differs from cluster_settings(1): " + "; ".join(wrong)


def test_kafka_sets_no_broker_setting_the_tests_do_not(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    known = {kafka_env_name(p) for p in (*cluster_settings(1), *NODE_KEYS)} | IMAGE_VARIABLES
    extra = sorted(k for k in env if k.startswith("KAFKA_") and k not in known)
    assert not extra, f"{extra}: set in compose, not by the launcher (perpstream/kafka_runtime)"
    assert {kafka_env_name(p) for p in NODE_KEYS} <= set(env)


def test_kafka_logs_live_on_a_named_volume(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    mounts = {}
    for spec in kafka["volumes"]:
        source, target = spec.split(":")[:2]
        assert source in compose["volumes"], f"{source} is not a named volume"
        mounts[target] = source
    for log_dir in kafka["environment"]["KAFKA_LOG_DIRS"].split(","):
        path = Path(log_dir)
        assert any(path == Path(t) or Path(t) in path.parents for t in mounts), \
            f"log dir {log_dir} is on no volume ({sorted(mounts)}): it is lost when the container is"


def test_topics_replication_is_explicit_and_fits_the_broker(compose: dict[str, Any]) -> None:
    args = build_parser().parse_args(compose["services"]["topics"]["command"])
    brokers = cluster_settings(1)
    assert args.replication_factor == int(brokers["default.replication.factor"]) == 1
    assert args.min_insync_replicas == int(brokers["min.insync.replicas"]) == 1


# -- the perpstream services: healthcheck, grace period, member names -----------------------------

LONG_RUNNING = ("producer", "sink", "snapshots")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def health_server() -> Iterator[tuple[Health, Clock, int]]:
    clock = Clock()
    health = Health(clock)
    with operator_endpoints(Telemetry(), free_port(), health, host="127.0.0.1") as server:
        assert server is not None
        yield health, clock, server.server_address[1]


def _run_check(test: list[str], port: int) -> int:
    assert test[0] == "CMD" and test[1] == "python", "the image has python, not curl or wget"
    done = subprocess.run([sys.executable, *test[2:]], env={"PERPSTREAM_METRICS_PORT": str(port)},
                          capture_output=True, timeout=60)
    return done.returncode


@pytest.mark.parametrize("service", LONG_RUNNING)
def test_healthcheck_passes_while_the_loops_turn_and_fails_once_one_is_stuck(
    compose: dict[str, Any], service: str, health_server: tuple[Health, Clock, int]
) -> None:
    svc = compose["services"][service]
    assert svc["environment"]["PERPSTREAM_METRICS_PORT"]  # the check's port; the process serves on it
    health, clock, port = health_server
    beat = health.heartbeat(service, stall_after=30)
    health.add_readiness(service, lambda: "ClickHouse failing for 30 s")  # not ready: still alive
    assert _run_check(svc["healthcheck"]["test"], port) == 0
    clock.now += 60
    assert _run_check(svc["healthcheck"]["test"], port) != 0
    beat.beat()
    assert _run_check(svc["healthcheck"]["test"], port) == 0


def test_healthcheck_fails_when_nothing_answers(compose: dict[str, Any]) -> None:
    assert _run_check(compose["services"]["sink"]["healthcheck"]["test"], free_port()) != 0


def _seconds(duration: str) -> float:
    """A compose duration ("1m30s", "150s", "500ms") in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def _default(func: Callable[..., Any], name: str) -> float:
    return float(inspect.signature(func).parameters[name].default)


#: Grace beyond the longest stop the code allows: scheduling, the interpreter, logs.
GRACE_MARGIN_S = 20


def test_producer_grace_period_outlasts_its_drain(compose: dict[str, Any]) -> None:
    s: ProducerSettings = _settings(compose, "producer")
    # producer/app.py: the source gets max(5 s, flush_timeout / 2) to stop, then the flush
    longest_stop = max(5.0, s.flush_timeout / 2) + s.flush_timeout
    grace = _seconds(compose["services"]["producer"]["stop_grace_period"])
    assert grace >= longest_stop + GRACE_MARGIN_S, (grace, longest_stop)


@pytest.mark.parametrize("service", ["sink", "snapshots"])
def test_consumer_grace_period_outlasts_its_drain(compose: dict[str, Any], service: str) -> None:
    s: ConsumerSettings = _settings(compose, service)
    # consumers/runtime/loop.py: a stop lets an unstored batch be retried for drain_timeout; the
    # deadline is checked between attempts, so the backoff wait under way and one attempt may follow
    # (a snapshots attempt waits for the broker's acknowledgement); then the DLQ flush and LeaveGroup
    attempt = _default(RecordPublisher.__init__, "flush_timeout") if service == "snapshots" else 0.0
    close = _default(DlqWriter.close, "timeout") + 2 * _default(leave_group, "timeout")
    longest_stop = (s.drain_timeout_ms + s.retry_backoff_max_ms) / 1000 + attempt + close
    grace = _seconds(compose["services"][service]["stop_grace_period"])
    assert grace >= longest_stop + GRACE_MARGIN_S, (grace, longest_stop)


def test_consumers_have_fixed_member_names_one_per_service(compose: dict[str, Any]) -> None:
    names: dict[tuple[str, str], str] = {}
    for name, svc in compose["services"].items():
        command = svc.get("command") or []
        if not command or command[0] not in ("sink", "snapshots"):
            continue
        member = svc["environment"].get("PERPSTREAM_MEMBER_NAME")
        assert member, f"{name}: no PERPSTREAM_MEMBER_NAME, so its name follows the container's host name"
        assert _settings(compose, name).resolved_member_name == member
        # --scale / replicas would start several members with this one name, fencing each other
        assert svc.get("scale", 1) == 1 and svc.get("deploy", {}).get("replicas", 1) == 1, name
        key = (command[0], member)
        assert key not in names, f"{name} and {names[key]} share member name {member!r}"
        names[key] = name
    assert {group for group, _ in names} == {"sink", "snapshots"}
    assert "## Member names across redeploys" in (ROOT / "docs" / "sink.md").read_text()
    assert '"Member names across redeploys"' in (ROOT / "docker-compose.yml").read_text()


# -- the compose tool itself, where it exists -----------------------------------------------------


def _compose_tool() -> str | None:
    """Why the compose tool cannot be asked (None: it can)."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        done = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker compose version failed: {exc}"
    if done.returncode != 0:
        return "docker compose is not installed: " + (done.stderr or done.stdout).strip().splitlines()[0]
    return None


def test_compose_tool_accepts_the_file() -> None:
    missing = _compose_tool()
    if missing is not None:
        pytest.skip(missing)
    done = subprocess.run(["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
