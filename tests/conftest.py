"""Shared fixtures.

One Kafka-protocol broker and one ClickHouse per test session; factory
fixtures hand out uuid-named topics, consumer groups and ClickHouse databases
so tests never see each other's data.

Where they come from, in order:
- ``PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS`` / ``PERPSTREAM_CLICKHOUSE_DSN``: bring your own.
- ``PERPSTREAM_TEST_CONTAINERS=1`` and a reachable Docker engine: Apache Kafka
  (KRaft) and ClickHouse server containers via testcontainers.
- otherwise the broker is ``PERPSTREAM_TEST_BROKER``: ``kafka`` (Apache Kafka,
  one KRaft node on loopback from perpstream.kafka_runtime) or ``tansu`` (the
  embedded default's local broker). Unset, it is Apache Kafka wherever Java 17
  and Maven (or ``KAFKA_HOME``) are there, and Tansu elsewhere, with one line in
  the report naming what was skipped and why; under ``CI=true`` a machine that
  cannot run Apache Kafka fails the run instead. ClickHouse is the embedded
  engine (chdb) in a temp dir: chdb allows one data directory per OS process,
  so the whole session shares one directory and tests get their own database.

Tests of the embedded default (``up``, ``run``, the demo path, the embedded
soak, the local broker's restart) start their own Tansu whatever the session's
broker is: that is the Tansu tier. Tests that need Apache Kafka itself (a
cluster of three, a broker restarted on its logs) ask for ``apache_kafka`` and
are skipped, and named in the report, where it cannot run.
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

from perpstream import kafka_runtime
from perpstream.local import TansuBroker, ensure_topics, open_clickhouse

#: Tansu wants short sessions: a group join waits session.timeout.ms / 2.
TEST_CONSUMER_CONFIG = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}

# Dynamic group membership unless a test names its members: a static member that stops does not
# leave its group (KIP-345), and Tansu never expires one, so tests where members come and go
# would wait for partitions forever. tests/integration/test_static_membership.py sets a name.
os.environ.setdefault("PERPSTREAM_MEMBER_NAME", "")
# The settings class that knows that variable: the unknown-variable check looks at the classes
# loaded, and a test of a producer command alone would not load it.
importlib.import_module("perpstream.consumers.settings")


@pytest.fixture(autouse=True)
def _clean_secret_registry() -> Iterator[None]:
    """Secrets registered by one test's settings (service.secrets) are not masked in the next one's output."""
    yield
    from perpstream.runtime import secrets

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


#: Why Apache Kafka cannot run on this machine (None when it can); decided once per session.
_KAFKA_UNAVAILABLE: str | None = None
#: the start of the reason of every test skipped for it (counted in the report's last line)
NEEDS_KAFKA = "needs Apache Kafka"


def skip_without_kafka() -> None:
    """Skips the calling test (or fixture) where Apache Kafka cannot run."""
    if _KAFKA_UNAVAILABLE is not None:
        pytest.skip(f"{NEEDS_KAFKA}: {_KAFKA_UNAVAILABLE}")


def pytest_configure(config: pytest.Config) -> None:
    global _KAFKA_UNAVAILABLE
    wanted = os.environ.get("PERPSTREAM_TEST_BROKER", "")
    if wanted not in ("", "kafka", "tansu"):
        raise pytest.UsageError(f"PERPSTREAM_TEST_BROKER={wanted!r}: expected kafka or tansu")
    if wanted == "tansu" and os.environ.get("CI") != "true":
        _KAFKA_UNAVAILABLE = "PERPSTREAM_TEST_BROKER=tansu"
        return
    _KAFKA_UNAVAILABLE = kafka_runtime.unavailable_reason()
    if _KAFKA_UNAVAILABLE is not None and (os.environ.get("CI") == "true" or wanted == "kafka"):
        raise pytest.UsageError(f"Apache Kafka cannot run here, and this run needs it: {_KAFKA_UNAVAILABLE}")


def pytest_report_header(config: pytest.Config) -> str:
    if _KAFKA_UNAVAILABLE is None:
        return (f"broker: Apache Kafka {kafka_runtime.KAFKA_VERSION} (KRaft on loopback); "
                f"the Tansu tier starts its own brokers")
    return f"broker: Tansu, the local broker; Apache Kafka skipped: {_KAFKA_UNAVAILABLE}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _KAFKA_UNAVAILABLE is not None:
        skipped = [r for r in terminalreporter.stats.get("skipped", [])
                   if isinstance(r.longrepr, tuple) and NEEDS_KAFKA in str(r.longrepr[2])]
        terminalreporter.write_line(
            f"Apache Kafka skipped ({_KAFKA_UNAVAILABLE}): the integration suite ran on Tansu and "
            f"{len(skipped)} test(s) that need Apache Kafka itself did not run"
        )


@pytest.fixture(scope="session")
def broker_kind() -> str:
    """``external`` (bring your own), ``kafka`` (Apache Kafka, launched here or in a container)
    or ``tansu``."""
    if os.environ.get("PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS"):
        return "external"
    if _use_containers() or _KAFKA_UNAVAILABLE is None:
        return "kafka"
    return "tansu"


@pytest.fixture
def apache_kafka() -> None:
    """Skips the test where Apache Kafka cannot run (counted in the report's last line)."""
    skip_without_kafka()


@pytest.fixture(scope="session")
def kafka_bootstrap(broker_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if broker_kind == "external":
        yield os.environ["PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS"]
    elif broker_kind == "kafka" and _use_containers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("confluentinc/cp-kafka:7.6.1").with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
    elif broker_kind == "kafka":
        with kafka_runtime.KafkaCluster(tmp_path_factory.mktemp("kafka"), nodes=1) as cluster:
            yield cluster.bootstrap_servers
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
