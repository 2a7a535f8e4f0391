"""docker-compose.yml cannot run here (no Docker engine), so it is kept honest
by reading it: services, ports, commands and environment names must agree with
the CLI and the settings classes the processes really read."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from pydantic_settings import BaseSettings

from perpstream.cli import build_parser
from service.settings import CommonSettings

ROOT = Path(__file__).resolve().parents[2]

#: compose service -> (settings class path, subcommand); the class a process builds its settings from.
PERPSTREAM_SERVICES = {
    "topics": ("service.settings:CommonSettings", "topics"),
    "producer": ("producer.settings:ProducerSettings", "produce"),
    "sink": ("consumers.sink.settings:SinkSettings", "sink"),
    "snapshots": ("consumers.snapshots.settings:SnapshotSettings", "snapshots"),
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
