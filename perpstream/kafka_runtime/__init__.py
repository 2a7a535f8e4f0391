"""Apache Kafka on loopback: the production engine, run from Maven Central's artifacts.

:class:`KafkaCluster` formats KRaft storage and runs one or three combined
broker+controller nodes as child processes, each on its own durable log
directory under a data directory, so a node (or the whole cluster) restarts on
what it had written. The broker's classes come from ``KAFKA_HOME`` (an unpacked
Apache Kafka distribution) or are resolved once by Maven from the ``pom.xml``
beside this file into a cache outside the repository. docs/kafka.md says how
each part is used, by ``perpstream broker``, ``perpstream up --broker kafka``,
the test suite and the soak.

What a node is told (:func:`node_properties`) is also what docker-compose.yml
runs; tests/unit/test_compose.py holds the two together.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import platformdirs
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from perpstream.local import InfraError, accepts, die_with_parent, free_ports, replication_for
from perpstream.runtime.telemetry import kafka_logging

log = logging.getLogger(__name__)

#: The Apache Kafka release every launcher, test and compose file runs (pom.xml pins the same).
KAFKA_VERSION = "4.1.1"
_HERE = Path(__file__).resolve().parent
POM = _HERE / "pom.xml"
LOG4J_CONFIG = _HERE / "log4j2.properties"
MIN_JAVA = 17


class KafkaUnavailable(InfraError):
    """Java or the broker's classes cannot be had on this machine: the message says what to install."""


def cluster_settings(nodes: int) -> dict[str, str]:
    """Broker settings shared by every node of a loopback cluster (and by docker-compose.yml).

    The internal topics get the product topics' replication, so that a cluster of
    three survives one broker's loss for consumer offsets as for data. The group
    join delay is 0: a single operator's cluster starts its consumers itself, and
    waiting 3 s for more members to join only delays the first assignment. Topics
    are never created by a fetch or a produce: perpstream creates its own with the
    settings it wants (docs/kafka.md)."""
    rf, isr = replication_for(nodes)
    return {
        "process.roles": "broker,controller",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "auto.create.topics.enable": "false",
        "group.initial.rebalance.delay.ms": "0",
        "default.replication.factor": str(rf),
        "min.insync.replicas": str(isr),
        "offsets.topic.replication.factor": str(rf),
        "transaction.state.log.replication.factor": str(rf),
        "transaction.state.log.min.isr": str(isr),
        "share.coordinator.state.topic.replication.factor": str(rf),
        "share.coordinator.state.topic.min.isr": str(isr),
        "unclean.leader.election.enable": "false",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "log.retention.hours": "168",
    }


@dataclass(frozen=True)
class Node:
    """One combined broker+controller node of a loopback cluster."""

    node_id: int
    port: int
    controller_port: int
    directory: Path

    @property
    def log_dir(self) -> Path:
        return self.directory / "logs"

    @property
    def config_path(self) -> Path:
        return self.directory / "node.properties"

    @property
    def output_path(self) -> Path:
        return self.directory / "kafka.log"


def node_properties(node: Node, nodes: list[Node]) -> dict[str, str]:
    """Everything one node is started with: the cluster's settings plus its own identity."""
    voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes)
    return {
        **cluster_settings(len(nodes)),
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
        "log.dirs": str(node.log_dir),
    }


# -- the tools: Java, and the broker's classes ------------------------------------------------------


def java_executable() -> str:
    """The ``java`` to run (``JAVA_HOME`` first, then ``PATH``), checked to be Java ≥ 17."""
    home = os.environ.get("JAVA_HOME")
    in_home = Path(home, "bin", "java") if home else None
    java = str(in_home) if in_home is not None and in_home.exists() else shutil.which("java")
    if java is None:
        raise KafkaUnavailable(
            f"Apache Kafka needs Java {MIN_JAVA} or newer and none was found: install a JDK or JRE "
            f"(Debian/Ubuntu: apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
        )
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KafkaUnavailable(f"cannot run {java} -version: {exc}") from exc
    major = java_major(out.stderr + out.stdout)
    if major is None or major < MIN_JAVA:
        found = "of an unknown version" if major is None else f"Java {major}"
        raise KafkaUnavailable(
            f"Apache Kafka {KAFKA_VERSION} needs Java {MIN_JAVA} or newer; {java} is {found}: "
            f"install a newer JDK or set JAVA_HOME"
        )
    return java


def java_major(version_output: str) -> int | None:
    """The major version in ``java -version``'s output: ``"17.0.15"`` → 17, ``"1.8.0_402"`` → 8."""
    m = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if m is None:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def cache_dir() -> Path:
    """Where Maven's copy of the broker's jars lives: ``PERPSTREAM_KAFKA_CACHE``, or the user's cache."""
    configured = os.environ.get("PERPSTREAM_KAFKA_CACHE")
    if configured:
        return Path(configured)
    return Path(platformdirs.user_cache_dir("perpstream", appauthor=False)) / f"kafka-{KAFKA_VERSION}"


def classpath() -> str:
    """The broker's class path: ``$KAFKA_HOME/libs/*``, or the Maven cache (resolved on first use)."""
    home = os.environ.get("KAFKA_HOME")
    if home:
        libs = Path(home, "libs")
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise KafkaUnavailable(
                f"KAFKA_HOME={home} holds no Apache Kafka distribution (no libs/kafka_2.13-*.jar)")
        return f"{libs}/*"
    libs = cache_dir() / "libs"
    if not (libs / ".complete").exists():
        resolve_with_maven(libs)
    return f"{libs}/*"


def resolve_with_maven(libs: Path) -> None:
    """Copies the broker's runtime closure into ``libs`` with Maven, once (a lock serialises
    concurrent first runs; a marker file says the copy is whole)."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaUnavailable(
            "Apache Kafka's broker is resolved from Maven Central and mvn was not found: install Maven "
            "(Debian/Ubuntu: apt-get install maven) or set KAFKA_HOME to an unpacked Apache Kafka "
            f"{KAFKA_VERSION} distribution"
        )
    libs.parent.mkdir(parents=True, exist_ok=True)
    with _locked(libs.parent / ".resolve.lock"):
        if (libs / ".complete").exists():
            return
        partial = libs.with_name("libs.partial")
        shutil.rmtree(partial, ignore_errors=True)
        log.info("resolving Apache Kafka with Maven", extra={"version": KAFKA_VERSION, "into": str(libs)})
        cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
               "-DincludeScope=runtime", f"-DoutputDirectory={partial}"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if done.returncode != 0 or not any(partial.glob("kafka_2.13-*.jar")):
            lines = (done.stdout + done.stderr).strip().splitlines()
            errors = [ln for ln in lines if "[ERROR]" in ln and "Help" not in ln] or lines
            raise KafkaUnavailable(
                f"Maven could not resolve Apache Kafka {KAFKA_VERSION} (exit {done.returncode}): "
                + (errors[0].strip() if errors else "no output")
            )
        (partial / ".complete").touch()
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)


def unavailable_reason() -> str | None:
    """Why Apache Kafka cannot run here (missing Java or Maven), or None when it can.
    Resolves the jars if they are not cached yet."""
    try:
        java_executable()
        classpath()
    except KafkaUnavailable as exc:
        return str(exc)
    return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# -- the cluster --------------------------------------------------------------------------------------


class KafkaCluster:
    """One or three Apache Kafka nodes (KRaft, combined roles) on loopback. Use as a context manager.

    The data directory keeps each node's log directory and the cluster's identity and
    ports (``cluster.json``), so a node restarted by :meth:`restart_node`, or the whole
    cluster started again on the same directory, comes back on its own logs. Nodes are
    children in their own process groups, tied to our death (PR_SET_PDEATHSIG), stopped
    with SIGTERM (a controlled shutdown that moves leadership away) and SIGKILL after
    ``stop_timeout``.
    """

    def __init__(self, data_dir: Path | str, nodes: int = 1, *, heap_mb: int = 384,
                 overrides: Mapping[str, str] | None = None,
                 client_config: Mapping[str, Any] | None = None) -> None:
        if nodes not in (1, 3):
            raise InfraError(f"a loopback Apache Kafka cluster has 1 or 3 nodes, not {nodes}")
        self.data_dir = Path(data_dir).resolve()
        self.size = nodes
        self.heap_mb = heap_mb
        #: broker settings beyond :func:`node_properties` (a SASL listener, say)
        self.overrides = dict(overrides or {})
        #: what the launcher's own admin client needs to reach the nodes (their SASL credentials)
        self.client_config = dict(client_config or {})
        self.nodes: list[Node] = []
        self.cluster_id = ""
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._outputs: dict[int, IO[bytes]] = {}
        self._java = ""
        self._classpath = ""

    # identity ---------------------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def node(self, node_id: int) -> Node:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(node_id)

    def pid(self, node_id: int) -> int | None:
        proc = self._procs.get(node_id)
        return proc.pid if proc is not None and proc.poll() is None else None

    def running(self, node_id: int) -> bool:
        return self.pid(node_id) is not None

    # lifecycle --------------------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> KafkaCluster:
        self._java = java_executable()
        self._classpath = classpath()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._load_or_create_layout()
        for node in self.nodes:
            self._write_config(node)
            self._format(node)
        for node in self.nodes:
            self._spawn(node)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        log.info("apache kafka up", extra={"bootstrap": self.bootstrap_servers, "nodes": self.size,
                                           "data_dir": str(self.data_dir)})
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stops every node: SIGTERM to all at once, SIGKILL to what is left after ``timeout``."""
        for node_id in list(self._procs):
            self._signal(node_id, signal.SIGCONT)  # a paused node cannot shut down
            self._signal(node_id, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node_id in list(self._procs):
            self._reap(node_id, max(0.1, deadline - time.monotonic()))

    def kill_node(self, node_id: int) -> None:
        """SIGKILL: the node dies without a controlled shutdown, as on a power cut."""
        self._signal(node_id, signal.SIGKILL)
        self._reap(node_id, 10)

    def stop_node(self, node_id: int, timeout: float = 30.0) -> None:
        """SIGTERM: a controlled shutdown (leadership moves away first), SIGKILL after ``timeout``."""
        self._signal(node_id, signal.SIGCONT)
        self._signal(node_id, signal.SIGTERM)
        self._reap(node_id, timeout)

    def start_node(self, node_id: int, timeout: float = 90.0) -> None:
        """Starts a stopped node again on its own log directory and waits until it serves."""
        node = self.node(node_id)
        if self.running(node_id):
            return
        self._spawn(node)
        self._wait_listening(node, timeout)

    def pause_node(self, node_id: int) -> None:
        """SIGSTOP: the node stops answering without closing a connection (a hung broker)."""
        self._signal(node_id, signal.SIGSTOP)

    def resume_node(self, node_id: int) -> None:
        self._signal(node_id, signal.SIGCONT)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until every running node listens and the cluster's metadata lists them all."""
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if self.running(node.node_id):
                self._wait_listening(node, max(0.1, deadline - time.monotonic()))
        expected = {n.node_id for n in self.nodes if self.running(n.node_id)}
        while True:
            seen = self.broker_ids(timeout=5)
            if expected <= seen:
                break
            if time.monotonic() > deadline:
                raise InfraError(f"apache kafka brokers {sorted(expected - seen)} did not register "
                                 f"within {timeout:.0f}s; see {self.data_dir}/node-*/kafka.log")
            time.sleep(0.2)
        # The first group request creates __consumer_offsets; until its partitions are loaded
        # every group call answers COORDINATOR_NOT_AVAILABLE / NOT_COORDINATOR / LOAD_IN_PROGRESS.
        # Ready means ready for consumer groups too.
        while not self._groups_served():
            if time.monotonic() > deadline:
                raise InfraError(f"apache kafka's group coordinator did not come up within {timeout:.0f}s; "
                                 f"see {self.data_dir}/node-*/kafka.log")
            time.sleep(0.2)

    def _groups_served(self) -> bool:
        """Whether a group's committed offsets can be read (OffsetFetch through its coordinator)."""
        probe = Consumer({"bootstrap.servers": self.bootstrap_servers, **self.client_config,
                          "group.id": "perpstream-readiness-probe", "enable.auto.commit": False,
                          "log_level": 3})
        try:
            probe.committed([TopicPartition("perpstream-readiness-probe", 0)], timeout=10)
        except Exception as exc:
            log.debug("group coordinator not ready", extra={"error": str(exc)})
            return False
        finally:
            probe.close()
        return True

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # what the cluster knows -------------------------------------------------------------------------

    def _admin(self) -> Any:
        return AdminClient({"bootstrap.servers": self.bootstrap_servers, **self.client_config,
                            **kafka_logging()})

    def broker_ids(self, timeout: float = 10.0) -> set[int]:
        try:
            md = self._admin().list_topics(timeout=timeout)
        except Exception:
            return set()
        return set(md.brokers)

    def leader_counts(self, topics: list[str] | None = None, timeout: float = 10.0) -> dict[int, int]:
        """Partitions each node leads (of ``topics``, or of every topic but the internal ones)."""
        md = self._admin().list_topics(timeout=timeout)
        counts = {n.node_id: 0 for n in self.nodes}
        for name, topic in md.topics.items():
            if (topics is not None and name not in topics) or (topics is None and name.startswith("__")):
                continue
            for part in topic.partitions.values():
                if part.leader in counts:
                    counts[part.leader] += 1
        return counts

    def busiest_leader(self, topics: list[str] | None = None) -> int:
        counts = self.leader_counts(topics)
        return max(sorted(counts), key=lambda n: counts[n])

    # internals --------------------------------------------------------------------------------------

    def _load_or_create_layout(self) -> None:
        state_path = self.data_dir / "cluster.json"
        state: dict[str, Any] = {}
        if state_path.exists():
            try:
                state = json.loads(state_path.read_text())
            except (OSError, ValueError) as exc:
                raise InfraError(
                    f"{state_path} is unreadable ({exc}); move the data directory aside") from exc
            if state.get("nodes") != self.size:
                had = state.get("nodes")
                raise InfraError(f"{self.data_dir} holds an Apache Kafka cluster of {had} node(s), "
                                 f"not {self.size}: use --nodes {had} or another directory")
        self.cluster_id = state.get("cluster_id") or random_cluster_id()
        ports = state.get("ports") or []
        if len(ports) != self.size or any(accepts("127.0.0.1", p) for pair in ports for p in pair):
            flat = free_ports(2 * self.size)
            ports = [flat[2 * i:2 * i + 2] for i in range(self.size)]
        self.nodes = [Node(i + 1, ports[i][0], ports[i][1], self.data_dir / f"node-{i + 1}")
                      for i in range(self.size)]
        state_path.write_text(json.dumps({"cluster_id": self.cluster_id, "nodes": self.size, "ports": ports,
                                          "kafka_version": KAFKA_VERSION}, indent=2) + "\n")

    def _write_config(self, node: Node) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        props = {**node_properties(node, self.nodes), **self.overrides}
        body = "".join(f"{k}={v}\n" for k, v in props.items())
        node.config_path.write_text("# written by perpstream at every start (docs/kafka.md)\n" + body)

    def _format(self, node: Node) -> None:
        if (node.log_dir / "meta.properties").exists():
            return
        cmd = [self._java, "-Xmx256m", f"-Dlog4j2.configurationFile={LOG4J_CONFIG}", "-cp", self._classpath,
               "kafka.tools.StorageTool", "format", "-t", self.cluster_id, "-c", str(node.config_path),
               "--ignore-formatted"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            tail = " / ".join((done.stdout + done.stderr).strip().splitlines()[-3:])
            raise InfraError(f"formatting Kafka storage of node {node.node_id} failed: {tail}")

    def _spawn(self, node: Node) -> None:
        out = self._outputs.get(node.node_id)
        if out is None or out.closed:
            out = open(node.output_path, "ab")  # noqa: SIM115 - lives as long as the node
            self._outputs[node.node_id] = out
        cmd = [
            self._java, f"-Xmx{self.heap_mb}m", "-Xms64m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp", self._classpath, "kafka.Kafka", str(node.config_path),
        ]
        self._procs[node.node_id] = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=die_with_parent, cwd=node.directory,
        )

    def _wait_listening(self, node: Node, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not accepts("127.0.0.1", node.port):
            proc = self._procs.get(node.node_id)
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise InfraError(f"apache kafka node {node.node_id} exited ({code}) before listening; "
                                 f"see {node.output_path}")
            if time.monotonic() > deadline:
                raise InfraError(f"apache kafka node {node.node_id} did not listen on {node.port} "
                                 f"within {timeout:.0f}s; see {node.output_path}")
            time.sleep(0.1)

    def _signal(self, node_id: int, sig: signal.Signals) -> None:
        proc = self._procs.get(node_id)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def _reap(self, node_id: int, timeout: float) -> None:
        proc = self._procs.get(node_id)
        if proc is None:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("apache kafka node did not stop in time; killing it",
                        extra={"node": node_id, "timeout_s": timeout})
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(10)


def random_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (as StorageTool random-uuid).

    Like Kafka's own ``Uuid.randomUuid``, never one that starts with ``-``: the storage tool would
    read it as an option and refuse to format (``--cluster-id expected one argument``), once in 64
    starts."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id
