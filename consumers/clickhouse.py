"""ClickHouse plumbing the consumers share: opening a client, versioned
migrations, and the batch journal.

Migrations: every package that owns tables passes its own ordered list of
:class:`Migration` steps to :func:`apply_migrations` under a component name
(``sink``, ``snapshots``). Applied steps are recorded in
``<database>.schema_migrations``; a step runs at most once per component and
database, steps must be idempotent DDL anyway (``IF NOT EXISTS``) because two
members can race on a fresh database. Changing an applied step's SQL is an
error: add a new version instead.

Batch journal: see :class:`ClickHouseBatchJournal`. It makes a batch that is
re-delivered after a crash or a rebalance have the same per-partition offset
boundaries as before, which is what lets ``insert_deduplication_token`` drop
the re-insert.

Failure classification: :func:`classify_clickhouse_error` is the one table
that says whether a ClickHouse error is worth retrying (:class:`Transient`)
or not (:class:`Permanent`); :func:`store_error` turns an exception into the
consumer error the runtime acts on. docs/sink.md ("Failures by edge") has the
table in prose.

Every function takes an already open clickhouse-connect client: with the
embedded engine one process may open one chdb directory, so the process opens
one client and every component shares it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perpstream.consumers.exceptions import MigrationError, StoreRejectedError, StoreUnavailableError
from perpstream.errors import ConfigError
from perpstream.runtime.secrets import redact_dsn
from perpstream.runtime.settings import clickhouse_dsn_problem

log = logging.getLogger(__name__)

TopicPartitionId = tuple[str, int]


# -- failure classification ---------------------------------------------------------------

#: Server error codes a retry of the identical request cannot fix: the table,
#: its columns, the SQL or the credentials must change first. Retrying would
#: only hide the fault, so the member stops and names it.
PERMANENT_CODES: dict[int, str] = {
    6: "CANNOT_PARSE_TEXT",
    10: "NOT_FOUND_COLUMN_IN_BLOCK",
    16: "NO_SUCH_COLUMN_IN_TABLE",
    20: "NUMBER_OF_COLUMNS_DOESNT_MATCH",
    27: "CANNOT_PARSE_INPUT_ASSERTION_FAILED",
    36: "BAD_ARGUMENTS",
    41: "CANNOT_PARSE_DATETIME",
    43: "ILLEGAL_TYPE_OF_ARGUMENT",
    44: "ILLEGAL_COLUMN",
    46: "UNKNOWN_FUNCTION",
    47: "UNKNOWN_IDENTIFIER",
    # chdb reports an Arrow column it cannot cast to the table's type (Float64 -> UUID) this way
    48: "NOT_IMPLEMENTED",
    53: "TYPE_MISMATCH",
    60: "UNKNOWN_TABLE",
    62: "SYNTAX_ERROR",
    69: "ARGUMENT_OUT_OF_BOUND",
    70: "CANNOT_CONVERT_TYPE",
    81: "UNKNOWN_DATABASE",
    115: "UNKNOWN_SETTING",
    117: "INCORRECT_DATA",
    164: "READONLY",
    192: "UNKNOWN_USER",
    193: "WRONG_PASSWORD",
    194: "REQUIRED_PASSWORD",
    291: "DATABASE_ACCESS_DENIED",
    497: "ACCESS_DENIED",
    516: "AUTHENTICATION_FAILED",
    # A ClickHouse session serves one query at a time. perpstream's server clients use no
    # session (open_client), so this can only be a bug, or a proxy adding a session: stop and
    # say so instead of retrying into a storm of refusals (docs/sink.md, "ClickHouse server").
    373: "SESSION_IS_LOCKED",
}

#: Server error codes that clear by themselves (load, merges, a replica or
#: Keeper coming back, the network): pause, back off, retry the same batch.
TRANSIENT_CODES: dict[int, str] = {
    159: "TIMEOUT_EXCEEDED",
    160: "TOO_SLOW",
    173: "CANNOT_ALLOCATE_MEMORY",
    201: "QUOTA_EXCEEDED",
    202: "TOO_MANY_SIMULTANEOUS_QUERIES",
    203: "NO_FREE_CONNECTION",
    209: "SOCKET_TIMEOUT",
    210: "NETWORK_ERROR",
    225: "NO_ZOOKEEPER",
    236: "ABORTED",
    241: "MEMORY_LIMIT_EXCEEDED",
    242: "TABLE_IS_READ_ONLY",
    243: "NOT_ENOUGH_SPACE",
    252: "TOO_MANY_PARTS",
    279: "ALL_CONNECTION_TRIES_FAILED",
    285: "TOO_FEW_LIVE_REPLICAS",
    319: "UNKNOWN_STATUS_OF_INSERT",
    394: "QUERY_WAS_CANCELLED",
    425: "SYSTEM_ERROR",
    439: "CANNOT_SCHEDULE_TASK",
    999: "KEEPER_EXCEPTION",
}

#: HTTP statuses without a ClickHouse error code (a proxy or load balancer
#: answered, or the server gave no code): worth a retry.
TRANSIENT_HTTP_STATUSES = frozenset({408, 429})

_CODE_RE = re.compile(r"\b[Cc]ode:\s*(\d+)")
_HTTP_STATUS_RE = re.compile(r"HTTP status (\d{3})")


@dataclass(frozen=True)
class Transient:
    """Retry the identical request later. ``known`` is False for an error the
    tables do not list: the runtime then retries it a bounded number of times."""

    name: str
    code: int | None = None
    known: bool = True

    @property
    def reason(self) -> str:
        return self.name if self.code is None else f"{self.name} ({self.code})"


@dataclass(frozen=True)
class Permanent:
    """Retrying cannot succeed until an operator changes something."""

    name: str
    code: int | None = None

    @property
    def reason(self) -> str:
        return self.name if self.code is None else f"{self.name} ({self.code})"


def _server_code(exc: BaseException) -> int | None:
    """The ClickHouse error code: clickhouse-connect's ``code`` (the HTTP
    exception header, or parsed from chdb's message), else ``Code: N`` in the text."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    m = _CODE_RE.search(str(exc))
    return int(m.group(1)) if m else None


def classify_clickhouse_error(exc: BaseException) -> Transient | Permanent:
    """Whether retrying the request that raised ``exc`` can succeed.

    The same answer for the embedded engine (chdb raises clickhouse-connect's
    ``DatabaseError`` with the server's code) and a ClickHouse server over
    HTTP (``DatabaseError`` with the code from the exception header;
    transport faults as ``OperationalError`` without one). In order:

    1. a server error code: :data:`PERMANENT_CODES`, :data:`TRANSIENT_CODES`;
    2. no code, an HTTP status: 5xx, 408 and 429 transient, other 4xx
       permanent (401/403 are credentials, 404 a wrong URL);
    3. no code: transport faults — clickhouse-connect's ``OperationalError``,
       ``OSError`` (connection refused or reset, timeouts), urllib3's errors —
       are transient; ``ProgrammingError``/``DataError``/``InterfaceError``/
       ``NotSupportedError`` are raised by the client itself before anything is
       sent (a closed client, a value a column cannot hold) and are permanent;
    4. anything else — an unlisted code, an unexpected exception — is
       ``Transient(known=False)``: retried, but only a bounded number of times
       (see :class:`~consumers.exceptions.BackpressureError`), because a fault
       nobody catalogued may be a hiccup, and may also never clear.
    """
    # local: clickhouse_connect costs ~0.17 s of `perpstream --help` (python -X importtime)
    from clickhouse_connect.driver import exceptions as ch

    code = _server_code(exc)
    if code is not None:
        if code in PERMANENT_CODES:
            return Permanent(PERMANENT_CODES[code], code)
        if code in TRANSIENT_CODES:
            return Transient(TRANSIENT_CODES[code], code)
        return Transient(getattr(exc, "name", None) or "unlisted error code", code, known=False)
    m = _HTTP_STATUS_RE.search(str(exc))
    if m and isinstance(exc, ch.Error):
        status = int(m.group(1))
        if status >= 500 or status in TRANSIENT_HTTP_STATUSES:
            return Transient(f"HTTP {status}")
        if 400 <= status < 500:
            return Permanent(f"HTTP {status}")
    if isinstance(exc, ch.OperationalError | OSError) or type(exc).__module__.startswith("urllib3"):
        return Transient(f"connection: {type(exc).__name__}")
    if isinstance(exc, ch.ProgrammingError | ch.DataError | ch.InterfaceError | ch.NotSupportedError):
        return Permanent(f"client: {type(exc).__name__}")
    return Transient(f"unclassified: {type(exc).__name__}", known=False)


def store_error(exc: BaseException, what: str) -> StoreUnavailableError | StoreRejectedError:
    """The consumer error for a failed ClickHouse request (``what``: which one).

    Raise it ``from exc``: transient errors become backpressure (retry the
    same batch), permanent ones stop the member.
    """
    verdict = classify_clickhouse_error(exc)
    text = f"{what} failed: {verdict.reason}: {_short(exc)}"
    if isinstance(verdict, Permanent):
        return StoreRejectedError(text, code=verdict.code, name=verdict.name)
    return StoreUnavailableError(text, unclassified=not verdict.known)


def _short(exc: BaseException, limit: int = 600) -> str:
    """The exception text on one line, bounded (server messages carry the whole query)."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."


#: Settings of every insert the pipeline's correctness rests on: a synchronous insert.
#: A user profile may turn ``async_insert`` on; the server then buffers the rows and
#: deduplicates by its own rules (``async_insert_deduplicate``, off by default), so an
#: ``insert_deduplication_token`` would no longer drop a re-delivered batch, and with
#: ``wait_for_async_insert = 0`` an insert returns before its rows are written, so an
#: offset (or a checkpoint) could be committed for rows not yet stored
#: (docs/sink.md, "ClickHouse server").
SYNC_INSERT: Mapping[str, Any] = {"async_insert": 0}


@dataclass(frozen=True)
class Migration:
    """One step. ``sql`` may hold several statements separated by ``;\\n`` and
    uses ``{db}`` for the database name."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    def statements(self, database: str) -> list[str]:
        return [s.strip() for s in self.sql.format(db=database).split(";\n") if s.strip()]


_migrate_lock = threading.Lock()


def apply_migrations(client: Any, database: str, component: str, steps: Sequence[Migration]) -> list[int]:
    """Create ``database`` and apply the steps of ``component`` not applied yet.

    Returns the versions applied now. Safe to call from every member at start.
    """
    versions = [s.version for s in steps]
    if versions != sorted(set(versions)):
        raise MigrationError(f"{component}: migration versions must be unique and ascending: {versions}")
    with _migrate_lock:
        client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        client.command(
            f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations ("
            " component LowCardinality(String), version UInt32, name String, checksum String,"
            " applied_at DateTime64(3, 'UTC') DEFAULT now64(3)"
            ") ENGINE = ReplacingMergeTree ORDER BY (component, version)"
        )
        rows = client.query(
            f"SELECT version, checksum FROM {database}.schema_migrations FINAL WHERE component = %(c)s",
            parameters={"c": component},
        ).result_rows
        done = {int(v): str(c) for v, c in rows}
        applied: list[int] = []
        for step in steps:
            if step.version in done:
                if done[step.version] != step.checksum:
                    raise MigrationError(
                        f"{component} migration {step.version} ({step.name}) changed after it was "
                        "applied; add a new version instead"
                    )
                continue
            for stmt in step.statements(database):
                try:
                    client.command(stmt)
                except Exception as exc:
                    raise MigrationError(
                        f"{component} migration {step.version} ({step.name}) failed: {exc}"
                    ) from exc
            client.insert(
                "schema_migrations",
                [[component, step.version, step.name, step.checksum]],
                column_names=["component", "version", "name", "checksum"],
                database=database,
            )
            applied.append(step.version)
            log.info(
                "migration applied",
                extra={"component": component, "version": step.version, "migration": step.name,
                       "database": database},
            )
        return applied


def open_client(dsn: str, **kwargs: Any) -> Any:
    """A clickhouse-connect client for ``http(s)://...`` or ``chdb:///abs/dir``.

    Mirrors ``perpstream.local.open_clickhouse`` so that consumers do not
    import the CLI shell. ``kwargs``: ``CommonSettings.clickhouse_options()`` (TLS) and more.
    A DSN perpstream cannot use (:func:`~service.settings.clickhouse_dsn_problem`)
    is a :class:`ConfigError`; a server that cannot be reached or refuses the
    credentials is a one-line :func:`store_error` naming the DSN without its password.

    A server client uses no HTTP session: clickhouse-connect would give it one
    by default, a ClickHouse server runs one query per session at a time, and
    the process shares this client between threads (sink and snapshot members,
    the dashboard). Without a session every request stands alone, so nothing
    may rely on session state (``SET``, temporary tables); docs/sink.md,
    "ClickHouse server".
    """
    import clickhouse_connect  # local: ~0.17 s of `perpstream --help` (python -X importtime)

    problem = clickhouse_dsn_problem(dsn)
    if problem is not None:
        raise ConfigError(f"clickhouse_dsn: {problem}, got {redact_dsn(dsn)!r}")
    if dsn.startswith("chdb://"):
        Path(dsn[len("chdb://"):]).mkdir(parents=True, exist_ok=True)
        return clickhouse_connect.get_client(dsn=dsn, **kwargs)
    kwargs["autogenerate_session_id"] = False
    try:
        return clickhouse_connect.get_client(dsn=dsn, **kwargs)
    except Exception as exc:
        raise store_error(exc, f"connecting to ClickHouse at {redact_dsn(dsn)}") from exc


JOURNAL_MIGRATIONS = (
    Migration(
        1,
        "consumer_batches",
        "CREATE TABLE IF NOT EXISTS {db}.consumer_batches ("
        " group_id LowCardinality(String), topic LowCardinality(String), partition UInt32,"
        " first_offset Int64, last_offset Int64, written_at DateTime64(3, 'UTC') DEFAULT now64(3)"
        ") ENGINE = ReplacingMergeTree(last_offset) ORDER BY (group_id, topic, partition)",
    ),
    # Which incarnation of the topic a range belongs to: a range journaled for a topic that
    # was deleted and created again (a local broker restarted with memory storage) describes
    # offsets of another log and must not cut the new one's batches.
    Migration(
        2,
        "consumer_batches_topic_id",
        # in the sorting key too, so a merge never folds one incarnation's range into another's
        "ALTER TABLE {db}.consumer_batches ADD COLUMN IF NOT EXISTS topic_id String, "
        "MODIFY ORDER BY (group_id, topic, partition, topic_id)",
    ),
)


_JOURNAL_COLUMNS = ("group_id", "topic", "partition", "first_offset", "last_offset", "topic_id")


def _journal_values(database: str, rows: list[list[Any]]) -> tuple[str, dict[str, Any]]:
    """The journal rows as one statement with its settings inline, values bound client-side
    (clickhouse-connect quotes them: a group id may hold any character)."""
    params: dict[str, Any] = {}
    tuples = []
    for k, row in enumerate(rows):
        names = [f"c{j}_{k}" for j in range(len(row))]
        params.update(zip(names, row, strict=True))
        tuples.append("(" + ", ".join(f"%({n})s" for n in names) + ")")
    settings = ", ".join(f"{k} = {v}" for k, v in SYNC_INSERT.items())
    return (f"INSERT INTO {database}.consumer_batches ({', '.join(_JOURNAL_COLUMNS)}) "
            f"SETTINGS {settings} VALUES {', '.join(tuples)}", params)


class ClickHouseBatchJournal:
    """Remembers, per group and partition, the offset range of the latest batch
    handed to a handler (written *before* the handler stores it).

    Why: the dedup token of an insert is (topic, partition, first, last). After
    a crash between insert and commit the batch is polled again from the
    committed offset, but poll timing would cut it elsewhere and the token
    would differ. The runtime reads the journal when it is assigned a partition
    and cuts the first batch at the journaled ``last_offset``, so the re-insert
    is byte-identical and ClickHouse drops it. (Kafka commit metadata could hold
    this too, but Tansu does not keep it.) One small insert per batch; the
    table keeps one row per partition after merges (version = last_offset).

    On the embedded engine the insert is one ``INSERT ... SETTINGS ... VALUES``
    statement: clickhouse-connect's ``insert`` writes its rows to a temporary
    file for ``INFILE``, and per-call ``settings`` on chdb cost a read of
    ``system.settings`` and a ``SET`` before and after; the one statement takes
    about a third less CPU and half the wall time (docs/sink.md, "Tables").
    A server gets the columnar insert with its settings as request parameters.
    """

    def __init__(self, client: Any, database: str) -> None:
        self._client = client
        self._db = database
        self._embedded = str(getattr(client, "uri", "")).startswith("chdb:")

    def migrate(self) -> None:
        apply_migrations(self._client, self._db, "consumer_batches", JOURNAL_MIGRATIONS)

    def record(self, group_id: str, ranges: Mapping[TopicPartitionId, tuple[int, int]],
               topic_ids: Mapping[str, str] | None = None) -> None:
        ids = topic_ids or {}
        rows = [[group_id, t, p, first, last, ids.get(t, "")] for (t, p), (first, last) in ranges.items()]
        if not rows:
            return
        try:
            # synchronous: the range must be stored before the batch it describes is
            if self._embedded:
                self._client.command(*_journal_values(self._db, rows))
            else:
                self._client.insert("consumer_batches", rows, column_names=list(_JOURNAL_COLUMNS),
                                    database=self._db, settings=dict(SYNC_INSERT))
        except Exception as exc:
            raise store_error(exc, f"batch journal write to {self._db}.consumer_batches") from exc

    def pending(
        self, group_id: str, partitions: Iterable[TopicPartitionId],
        topic_ids: Mapping[str, str] | None = None,
    ) -> dict[TopicPartitionId, tuple[int, int]]:
        """The latest journaled range per partition, of the topics' current incarnations
        (``topic_ids``): a range of another topic id is left out; a range without one
        (journaled before ids were) counts as current when the current one has none."""
        wanted = set(partitions)
        if not wanted:
            return {}
        ids = topic_ids or {}
        topics = sorted({t for t, _ in wanted})
        rows = self._client.query(
            f"SELECT topic, partition, topic_id, argMax(first_offset, last_offset), max(last_offset) "
            f"FROM {self._db}.consumer_batches WHERE group_id = %(g)s AND topic IN %(t)s "
            "GROUP BY topic, partition, topic_id",
            parameters={"g": group_id, "t": topics},
        ).result_rows
        current: dict[TopicPartitionId, tuple[int, int]] = {}
        legacy: dict[TopicPartitionId, tuple[int, int]] = {}
        for t, p, tid, first, last in rows:
            tp = (str(t), int(p))
            if tp not in wanted:
                continue
            if not tid:
                legacy[tp] = (int(first), int(last))
            elif tid == ids.get(tp[0]) or not ids.get(tp[0]):
                current[tp] = (int(first), int(last))
        return {**legacy, **current}
