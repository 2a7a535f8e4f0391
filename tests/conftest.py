"""Shared fixtures.

One Kafka-protocol broker and one ClickHouse per test session; factory
fixtures hand out uuid-named topics, consumer groups and ClickHouse databases
so tests never see each other's data.

Where they come from, in order:
- ``PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS`` / ``PERPSTREAM_CLICKHOUSE_DSN``: bring your own.
- ``PERPSTREAM_TEST_CONTAINERS=1`` and a reachable Docker engine: Apache Kafka
  (KRaft) and ClickHouse server containers via testcontainers.
- otherwise: a Tansu broker child process and embedded ClickHouse (chdb) in a
  temp dir. chdb allows one data directory per OS process, so the whole
  session shares one directory and tests get their own database in it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from perpstream.local import TansuBroker, ensure_topics, open_clickhouse

#: Tansu wants short sessions: a group join waits session.timeout.ms / 2.
TEST_CONSUMER_CONFIG = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}

# Dynamic group membership unless a test names its members: a static member that stops does not
# leave its group (KIP-345), and Tansu never expires one, so tests where members come and go
# would wait for partitions forever. tests/integration/test_static_membership.py sets a name.
os.environ.setdefault("PERPSTREAM_MEMBER_NAME", "")
# The settings class that knows that variable: the unknown-variable check looks at the classes
# loaded, and a test of a producer command alone would not load it.
importlib.import_module("consumers.settings")


@pytest.fixture(autouse=True)
def _clean_secret_registry() -> Iterator[None]:
    """Secrets registered by one test's settings (service.secrets) are not masked in the next one's output."""
    yield
    from service import secrets

    secrets.forget_all()


def _docker_reachable() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:
        return False


def _use_containers() -> bool:
    return os.environ.get("PERPSTREAM_TEST_CONTAINERS") == "1" and _docker_reachable()


@pytest.fixture(scope="session")
def broker_kind() -> str:
    if os.environ.get("PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS"):
        return "external"
    return "kafka" if _use_containers() else "tansu"


@pytest.fixture(scope="session")
def kafka_bootstrap(broker_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if broker_kind == "external":
        yield os.environ["PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS"]
    elif broker_kind == "kafka":
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("confluentinc/cp-kafka:7.6.1").with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
    else:
        log = tmp_path_factory.mktemp("tansu") / "tansu.log"
        with TansuBroker(log_path=log) as broker:
            yield broker.bootstrap_servers


@pytest.fixture
def on_tansu(broker_kind: str) -> bool:
    """True when the broker is Tansu: tests skip only the assertions that hit its known gaps."""
    return broker_kind == "tansu"


@pytest.fixture
def topic_factory(kafka_bootstrap: str) -> Callable[..., str]:
    def make(partitions: int = 6, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        ensure_topics(kafka_bootstrap, {name: partitions})
        return name

    return make


@pytest.fixture
def group_factory() -> Callable[..., str]:
    def make(prefix: str = "g") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    return make


@pytest.fixture(scope="session")
def clickhouse_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if os.environ.get("PERPSTREAM_CLICKHOUSE_DSN"):
        yield os.environ["PERPSTREAM_CLICKHOUSE_DSN"]
    elif _use_containers():
        from testcontainers.clickhouse import ClickHouseContainer

        with ClickHouseContainer("clickhouse/clickhouse-server:24.8") as ch:
            host, port = ch.get_container_host_ip(), ch.get_exposed_port(8123)
            yield f"http://{ch.username}:{ch.password}@{host}:{port}/"
    else:
        path: Path = tmp_path_factory.mktemp("chdb")
        yield f"chdb://{path.resolve()}"


@pytest.fixture(scope="session")
def clickhouse(clickhouse_dsn: str) -> Iterator[Any]:
    """The session's ClickHouse client (for chdb: the only one this process may open)."""
    client = open_clickhouse(clickhouse_dsn)
    yield client
    with contextlib.suppress(Exception):
        client.close()


@pytest.fixture
def ch_database(clickhouse: Any) -> Iterator[str]:
    """A fresh, uniquely named database; dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:10]}"
    yield name
    with contextlib.suppress(Exception):
        clickhouse.command(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """Binance payload samples: the tests' own copies (tests/fixtures/binance)."""
    return Path(__file__).parent / "fixtures" / "binance"
