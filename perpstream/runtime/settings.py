"""Settings every perpstream process shares, read from ``PERPSTREAM_*`` env vars.

Each process has one Settings class deriving from :class:`CommonSettings`,
built at the edge (CLI) with :func:`build_settings` and passed down as
explicit arguments. Flags given on the command line override the
environment. Every configuration problem, from any settings class, reaches the
user as one :class:`~schemas.exceptions.ConfigError` line that names the
setting, its flag and its environment variable; an unknown ``PERPSTREAM_*``
variable is such a problem too, so a typo fails at start-up instead of
silently leaving a default in place.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args
from urllib.parse import parse_qsl, urlparse, urlsplit

import platformdirs
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from perpstream.errors import ConfigError
from perpstream.runtime import secrets
from perpstream.schemas.topics import ASSETS_TOPIC, DLQ_TOPIC, METRICS_TOPIC, SNAPSHOTS_TOPIC


@dataclasses.dataclass(frozen=True)
class TopicPlan:
    """The settings of the topics perpstream creates: replication (None = decided by the
    cluster's size), min.insync.replicas (None = one less than replication, at least 1),
    compression.type and retention.ms per topic name (docs/kafka.md, "Topics")."""

    replication_factor: int | None = None
    min_insync_replicas: int | None = None
    compression: str = "producer"
    retention_ms: Mapping[str, int] = dataclasses.field(default_factory=dict)


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PERPSTREAM_", frozen=True, extra="ignore", validate_default=True
    )

    kafka_bootstrap_servers: str | None = Field(
        default=None,
        description="host:port list of a Kafka cluster; unset = start the embedded local broker",
    )
    schema_registry_url: str | None = Field(
        default=None,
        description="Confluent Schema Registry URL; unset = Avro single-object encoding",
    )
    clickhouse_dsn: str | None = Field(
        default=None,
        description="http(s)://user:pass@host:8123/ (ClickHouse's HTTP interface; clickhouse://, the native "
        "protocol, is refused) or chdb:///abs/dir; unset = embedded chdb in --data-dir",
    )
    clickhouse_database: str = Field(
        default="perpstream", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="database holding metric_points and market_snapshots",
    )
    data_dir: str = Field(
        default_factory=lambda: default_data_dir(),
        description="where embedded state lives (broker log, embedded ClickHouse, endpoint file); "
        "default: the user's data directory",
    )
    metrics_topic: str = Field(default=METRICS_TOPIC, description="topic of the MetricPoint events")
    snapshots_topic: str = Field(default=SNAPSHOTS_TOPIC, description="topic of the MarketSnapshot events")
    assets_topic: str = Field(default=ASSETS_TOPIC, description="topic of the AssetSnapshot events")
    dlq_topic: str = Field(
        default=DLQ_TOPIC, description="dead-letter topic: records a consumer cannot use, as they were",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="lowest level logged (DEBUG also shows librdkafka's informational lines)",
    )
    log_format: Literal["json", "text"] = Field(
        default="json",
        description="one JSON object per log line, or plain text (perpstream run: text unless set)",
    )
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535,
        description="port of GET /metrics (Prometheus text), /healthz and /readyz; 0 = any free port; "
        "unset = off",
    )
    gc_threshold: int = Field(
        default=50_000, ge=0,
        description=(
            "allocations between collections of CPython's youngest GC generation (Python's default "
            "is 700, which costs the consumers 20-35% of their CPU); 0 = leave the interpreter's default"
        ),
    )

    # -- topics perpstream creates (docs/kafka.md, "Topics") ------------------------------------
    topic_replication_factor: int | None = Field(
        default=None, ge=1,
        description="copies of every partition of the topics perpstream creates; unset = min(3, brokers "
        "in the cluster)",
    )
    topic_min_insync_replicas: int | None = Field(
        default=None, ge=1,
        description="min.insync.replicas of the topics perpstream creates: replicas that must have a "
        "write before acks=all succeeds; unset = one less than the replication factor, at least 1",
    )
    topic_compression: Literal["producer", "lz4", "zstd", "snappy", "gzip", "uncompressed"] = Field(
        default="producer",
        description="compression.type of the topics perpstream creates (producer = keep the batches as "
        "the producer compressed them)",
    )
    metrics_retention_hours: float = Field(
        default=168.0, gt=0, description="retention.ms of the metrics topic, in hours (default 7 days)",
    )
    snapshots_retention_hours: float = Field(
        default=168.0, gt=0, description="retention.ms of the snapshots topic, in hours (default 7 days)",
    )
    assets_retention_hours: float = Field(
        default=168.0, gt=0,
        description="retention.ms of the asset-snapshots topic, in hours (default 7 days)",
    )
    dlq_retention_hours: float = Field(
        default=720.0, gt=0,
        description="retention.ms of the dead-letter topic, in hours (default 30 days: time to look)",
    )

    # -- security: TLS and SASL to Kafka, auth and TLS to the Schema Registry, TLS to ClickHouse
    # (docs/producer.md, "Schema Registry") -----------------------------------------------------
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="librdkafka security.protocol of every Kafka client (producer, consumers, DLQ, admin)",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        default=None, description="librdkafka sasl.mechanism; required with SASL_SSL / SASL_PLAINTEXT",
    )
    kafka_sasl_username: str | None = Field(default=None, description="librdkafka sasl.username")
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="librdkafka sasl.password (never logged or shown)",
    )
    kafka_ssl_ca_location: str | None = Field(
        default=None,
        description="librdkafka ssl.ca.location: CA bundle (PEM) of the brokers; unset = system CAs",
    )
    kafka_ssl_certificate_location: str | None = Field(
        default=None, description="librdkafka ssl.certificate.location: client certificate (PEM, mutual TLS)",
    )
    kafka_ssl_key_location: str | None = Field(
        default=None, description="librdkafka ssl.key.location: client private key (PEM, mutual TLS)",
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="librdkafka ssl.key.password of an encrypted client key (never shown)",
    )
    kafka_ssl_endpoint_identification: Literal["https", "none"] = Field(
        default="https",
        description="librdkafka ssl.endpoint.identification.algorithm: check the broker's host name "
        "(https) or not (none)",
    )
    schema_registry_basic_auth_user_info: SecretStr | None = Field(
        default=None,
        description="Schema Registry basic auth as key:secret (basic.auth.user.info; never shown); "
        "instead of userinfo in the URL",
    )
    schema_registry_ssl_ca_location: str | None = Field(
        default=None,
        description="Schema Registry ssl.ca.location: CA bundle (PEM) of an https registry; "
        "unset = SSL_CERT_FILE, else certifi's bundle",
    )
    schema_registry_ssl_certificate_location: str | None = Field(
        default=None,
        description="Schema Registry ssl.certificate.location: client certificate (PEM, mutual TLS)",
    )
    schema_registry_ssl_key_location: str | None = Field(
        default=None, description="Schema Registry ssl.key.location: client private key (PEM, mutual TLS)",
    )
    schema_registry_auto_register: bool = Field(
        default=True,
        description="the producers register their schema under its subject; false = look up the id "
        "of a schema registered beforehand (registries that refuse clients' registrations)",
    )
    clickhouse_verify: bool = Field(
        default=True, description="https DSN: verify the ClickHouse server's certificate",
    )
    clickhouse_ca_cert: str | None = Field(
        default=None,
        description="https DSN: CA bundle (PEM) of the ClickHouse server, or 'certifi'; unset = system CAs",
    )

    def kafka_security(self) -> dict[str, Any]:
        """The TLS and SASL entries of a librdkafka config; every Kafka client the process
        creates (producer, consumers, DLQ and snapshot producers, admin clients) carries them."""
        proto = self.kafka_security_protocol
        if proto == "PLAINTEXT":
            return {}
        cfg: dict[str, Any] = {"security.protocol": proto}
        if proto.startswith("SASL_"):
            cfg["sasl.mechanism"] = self.kafka_sasl_mechanism
            cfg["sasl.username"] = self.kafka_sasl_username
            password = self.kafka_sasl_password
            cfg["sasl.password"] = password.get_secret_value() if password is not None else ""
        if proto.endswith("SSL"):
            for key, value in (("ssl.ca.location", self.kafka_ssl_ca_location),
                               ("ssl.certificate.location", self.kafka_ssl_certificate_location),
                               ("ssl.key.location", self.kafka_ssl_key_location)):
                if value:
                    cfg[key] = value
            if self.kafka_ssl_key_password is not None:
                cfg["ssl.key.password"] = self.kafka_ssl_key_password.get_secret_value()
            cfg["ssl.endpoint.identification.algorithm"] = self.kafka_ssl_endpoint_identification
        return cfg

    def topic_plan(self) -> TopicPlan:
        """How the topics this process may create are configured (replication decided against
        the cluster found, when not set)."""
        hours = {self.metrics_topic: self.metrics_retention_hours,
                 self.snapshots_topic: self.snapshots_retention_hours,
                 self.assets_topic: self.assets_retention_hours,
                 self.dlq_topic: self.dlq_retention_hours}
        return TopicPlan(
            replication_factor=self.topic_replication_factor,
            min_insync_replicas=self.topic_min_insync_replicas,
            compression=self.topic_compression,
            retention_ms={t: round(h * 3_600_000) for t, h in hours.items()},
        )

    def schema_registry_config(self) -> dict[str, Any] | None:
        """The ``SchemaRegistryClient`` config of every process (the producers register or look up
        their schema with it, the consumers resolve schema ids), or None without a registry."""
        if self.schema_registry_url is None:
            return None
        cfg: dict[str, Any] = {"url": self.schema_registry_url}
        if self.schema_registry_basic_auth_user_info is not None:
            cfg["basic.auth.user.info"] = self.schema_registry_basic_auth_user_info.get_secret_value()
        for key, value in (("ssl.ca.location", self.schema_registry_ssl_ca_location),
                           ("ssl.certificate.location", self.schema_registry_ssl_certificate_location),
                           ("ssl.key.location", self.schema_registry_ssl_key_location)):
            if value:
                cfg[key] = value
        return cfg

    def clickhouse_options(self) -> dict[str, Any]:
        """Keyword arguments of ``clickhouse_connect.get_client`` beyond the DSN: TLS of an https DSN."""
        dsn = self.clickhouse_dsn or ""
        if dsn.startswith("http://"):
            return {"interface": "http"}
        if not dsn.startswith("https://"):
            return {}
        # clickhouse-connect does not read the scheme of a DSN: without interface=https it
        # would speak plain HTTP (credentials included) to any port but 443 and 8443
        opts: dict[str, Any] = {"interface": "https", "verify": self.clickhouse_verify}
        if self.clickhouse_ca_cert:
            opts["ca_cert"] = self.clickhouse_ca_cert
        return opts

    def resolved_clickhouse_dsn(self) -> str:
        """The DSN to open: the configured one, or the embedded engine under ``data_dir``."""
        return self.clickhouse_dsn or embedded_clickhouse_dsn(self.data_dir)

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        for part in v.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {v!r}")
        return v

    @field_validator("clickhouse_dsn")
    @classmethod
    def _dsn(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        secrets.register_values([v])  # its password is masked from here on, even if v is refused
        problem = clickhouse_dsn_problem(v)
        if problem is not None:
            raise ValueError(f"{problem}, got {secrets.redact_dsn(v)!r}")
        return v

    @field_validator("schema_registry_url")
    @classmethod
    def _registry(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        secrets.register_values([v])
        if not v.startswith(("http://", "https://", "mock://")):
            raise ValueError(f"expected http(s)://[key:secret@]host[:port], got {secrets.redact_dsn(v)!r}")
        return v

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.strip().upper() if isinstance(v, str) else v

    @field_validator("kafka_sasl_password", "kafka_ssl_key_password", "schema_registry_basic_auth_user_info",
                     mode="before")
    @classmethod
    def _secret(cls, v: Any) -> Any:
        secrets.register_secret(v if isinstance(v, str | SecretStr) else None)
        return None if v == "" else v

    @field_validator("schema_registry_basic_auth_user_info")
    @classmethod
    def _user_info(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and ":" not in v.get_secret_value():
            raise ValueError("expected key:secret (user:password), found no ':'")
        return v

    @field_validator("kafka_sasl_username", mode="before")
    @classmethod
    def _unset_if_empty(cls, v: Any) -> Any:
        return None if v == "" else v

    @field_validator("kafka_ssl_ca_location", "kafka_ssl_certificate_location", "kafka_ssl_key_location",
                     "schema_registry_ssl_ca_location", "schema_registry_ssl_certificate_location",
                     "schema_registry_ssl_key_location", "clickhouse_ca_cert")
    @classmethod
    def _file(cls, v: str | None, info: ValidationInfo) -> str | None:
        # the registry client falls back to certifi's bundle by itself: for it 'certifi' is a file name
        if v is None or v == "" or (v == "certifi" and not str(info.field_name).startswith("schema_")):
            return v or None
        if not Path(v).expanduser().is_file():
            raise ValueError(f"no such file: {v}")
        return str(Path(v).expanduser())

    @model_validator(mode="after")
    def _security(self) -> CommonSettings:
        secrets.register_values(getattr(self, name) for name in type(self).model_fields)
        proto = self.kafka_security_protocol
        protocol = f"kafka_security_protocol ({ENV_PREFIX}KAFKA_SECURITY_PROTOCOL)"
        if proto != "PLAINTEXT" and self.kafka_bootstrap_servers is None:
            raise ValueError(f"{protocol} is {proto}, but no Kafka cluster is set "
                             f"({ENV_PREFIX}KAFKA_BOOTSTRAP_SERVERS); the embedded broker is plaintext")
        sasl = ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
        if proto.startswith("SASL_"):
            missing = [_named(n) for n in sasl if getattr(self, n) is None]
            if missing:
                raise ValueError(f"{protocol} {proto} needs {', '.join(missing)}")
        tls = ("kafka_ssl_ca_location", "kafka_ssl_certificate_location", "kafka_ssl_key_location",
               "kafka_ssl_key_password")
        for names, wanted, fix in ((sasl, "SASL_", "SASL_SSL (or SASL_PLAINTEXT)"),
                                   (tls, "SSL", "SSL or SASL_SSL")):
            given = [n for n in names if getattr(self, n) is not None]
            if given and wanted not in proto:
                raise ValueError(f"{_named(given[0])} is set, but {protocol} is {proto}: use {fix}")
        if (self.kafka_ssl_certificate_location is None) != (self.kafka_ssl_key_location is None):
            raise ValueError(f"{_named('kafka_ssl_certificate_location')} and "
                             f"{_named('kafka_ssl_key_location')} go together (mutual TLS)")
        rf, isr = self.topic_replication_factor, self.topic_min_insync_replicas
        if rf is not None and isr is not None and isr > rf:
            raise ValueError(f"{_named('topic_min_insync_replicas')} is {isr}, more than the "
                             f"{rf} replicas of {_named('topic_replication_factor')}: no write could succeed")
        self._check_registry()
        return self

    def _check_registry(self) -> None:
        """The registry's auth and TLS settings need a registry, TLS an https one; credentials come
        from the URL or from the setting, not both (the client refuses that)."""
        url = self.schema_registry_url
        auth = "schema_registry_basic_auth_user_info"
        tls = ("schema_registry_ssl_ca_location", "schema_registry_ssl_certificate_location",
               "schema_registry_ssl_key_location")
        given = [n for n in (auth, *tls) if getattr(self, n) is not None]
        if given and url is None:
            raise ValueError(f"{_named(given[0])} is set, but no Schema Registry is "
                             f"({_named('schema_registry_url')})")
        if url is None:
            return
        if url.startswith("http://") and any(n in tls for n in given):
            tls_given = next(n for n in given if n in tls)
            raise ValueError(f"{_named(tls_given)} is set, but {_named('schema_registry_url')} is http://: "
                             "use https://")
        first = urlparse(url.split(",", 1)[0].strip())  # where the client reads URL credentials
        if getattr(self, auth) is not None and first.username is not None and first.password is not None:
            raise ValueError(f"{_named(auth)} is set, and {_named('schema_registry_url')} has credentials "
                             "too: keep one of them")
        if (self.schema_registry_ssl_certificate_location is None) != (
                self.schema_registry_ssl_key_location is None):
            raise ValueError(f"{_named('schema_registry_ssl_certificate_location')} and "
                             f"{_named('schema_registry_ssl_key_location')} go together (mutual TLS)")


#: DSN parameters that would give a server client an HTTP session (clickhouse-connect reads
#: a DSN's query parameters as client options, over the ones perpstream passes).
_SESSION_PARAMETERS = ("session_id", "autogenerate_session_id")


def clickhouse_dsn_problem(dsn: str) -> str | None:
    """What makes ``dsn`` unusable as a ClickHouse DSN, or None.

    perpstream speaks ClickHouse's HTTP interface (clickhouse-connect has no
    other protocol) or opens the embedded engine. ``clickhouse://`` usually
    names the native protocol on port 9000, so it is refused rather than
    guessed at. A session in the DSN is refused too: one client serves every
    thread of a process, and a ClickHouse session runs one query at a time
    (docs/sink.md, "ClickHouse server").
    """
    scheme, sep, rest = dsn.partition("://")
    if sep and scheme.lower() in ("clickhouse", "clickhouses"):
        return (f"{scheme}:// is ClickHouse's native protocol (port 9000), which perpstream does not "
                "speak; use the HTTP interface: http://host:8123/ (https://host:8443/ with TLS)")
    if not sep or scheme not in ("http", "https", "chdb"):
        return "expected http(s)://... or chdb:///dir"
    if scheme == "chdb":
        return None if rest.startswith("/") else "a chdb DSN needs an absolute directory (chdb:///abs/dir)"
    given = [k for k, _ in parse_qsl(urlsplit(dsn).query, keep_blank_values=True) if k in _SESSION_PARAMETERS]
    if given:
        return (f"{given[0]} in the DSN: perpstream runs queries from several threads on one client, "
                "and a ClickHouse session serves one query at a time; remove it")
    return None


def _named(field: str) -> str:
    return f"{field} ({ENV_PREFIX}{field.upper()})"


def default_data_dir() -> str:
    """The user's data directory for perpstream (``~/.local/share/perpstream`` on Linux,
    ``~/Library/Application Support/perpstream`` on macOS), as platformdirs knows it."""
    return platformdirs.user_data_dir("perpstream", appauthor=False)


def embedded_clickhouse_dsn(data_dir: str) -> str:
    """Where the embedded ClickHouse of a data directory lives: ``chdb:///<data_dir>/clickhouse``."""
    return "chdb://" + str(Path(data_dir, "clickhouse").resolve())


ENV_PREFIX = "PERPSTREAM_"
#: Variables of the test suite's own (bring-your-own infrastructure, containers).
_NOT_SETTINGS_PREFIXES = ("PERPSTREAM_TEST_",)

S = TypeVar("S", bound=BaseSettings)


#: flag dest -> settings field of the logging flags every long-running command takes
LOG_FLAGS = {"log_level": "log_level", "log_format": "log_format"}


def _choices(field: str) -> list[str]:
    return list(get_args(CommonSettings.model_fields[field].annotation))


def add_log_flags(parser: argparse.ArgumentParser, *, level: bool = True) -> None:
    """``--log-level`` (unless the parser has it already: ``level=False``) and ``--log-format``;
    map them with :data:`LOG_FLAGS` so that they win over ``PERPSTREAM_LOG_*``."""
    if level:
        parser.add_argument("--log-level", choices=_choices("log_level"),
                            help="lowest level logged (env PERPSTREAM_LOG_LEVEL, default INFO)")
    parser.add_argument("--log-format", choices=_choices("log_format"),
                        help="one JSON object per line, or plain text (env PERPSTREAM_LOG_FORMAT)")


#: The argparse default under which a command declares the settings it builds.
SETTINGS_USES = "settings_uses"


@dataclasses.dataclass(frozen=True)
class SettingsUse:
    """One settings class a command builds, with the flag dest -> field map it passes."""

    cls: type[BaseSettings]
    flags: Mapping[str, str] = dataclasses.field(default_factory=dict)


def declare_settings(parser: argparse.ArgumentParser, *uses: SettingsUse) -> None:
    """Record on ``parser`` which settings its command builds and from which flags
    (``python -m perpstream.settings_table`` reads it to write the README's table)."""
    parser.set_defaults(**{SETTINGS_USES: uses})


def flag_name(dest: str) -> str:
    """The long option argparse derives ``dest`` from (``batch_size`` -> ``--batch-size``)."""
    return "--" + dest.replace("_", "-")


def _where(field: str, flags: Mapping[str, str]) -> str:
    options = [flag_name(dest) for dest, f in flags.items() if f == field]
    env = ENV_PREFIX + field.upper()
    return f"{' / '.join(options)} or {env}" if options else env


def _shown(value: Any) -> str:
    text = repr(secrets.redact_dsn(value) if isinstance(value, str) else value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_secret(field: str) -> bool:
    """A ``SecretStr`` field of any settings class: its input is never echoed."""
    todo: list[type[BaseSettings]] = [CommonSettings]
    while todo:
        cls = todo.pop()
        info = cls.model_fields.get(field)
        if info is not None and "SecretStr" in str(info.annotation):
            return True
        todo.extend(cls.__subclasses__())
    return False


def describe(exc: ValidationError | SettingsError, flags: Mapping[str, str] | None = None) -> str:
    """One line naming each bad setting, where it is set, what is wrong and what was given."""
    flags = flags or {}
    if isinstance(exc, SettingsError):
        # pydantic-settings: 'error parsing value for field "x" from source "EnvSettingsSource"'
        text = str(exc)
        field = text.split('field "', 1)[1].split('"', 1)[0] if 'field "' in text else ""
        if field:
            return f"{field} ({_where(field, flags)}): cannot parse the value"
        return text.splitlines()[0]
    parts = []
    for err in exc.errors():
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if not err.get("loc"):  # a rule across settings: its message names them
            parts.append(msg)
            continue
        loc = ".".join(str(x) for x in err["loc"])
        field = str(err["loc"][0])
        shown = _shown(err.get("input"))
        secret = _is_secret(field)
        got = "" if err.get("type") == "missing" or secret or shown in msg else f", got {shown}"
        parts.append(f"{loc} ({_where(field, flags)}): {msg}{got}")
    return secrets.redact("; ".join(parts))


def build_settings(
    cls: type[S], args: argparse.Namespace | None = None, flags: Mapping[str, str] | None = None,
    values: Mapping[str, Any] | None = None,
) -> S:
    """``cls`` from the environment, overridden by ``values`` and by the flags given in ``args``.

    ``flags`` maps argparse ``dest`` names to settings fields; a flag left at
    ``None`` (not given) does not override. Any problem -> :class:`ConfigError`.
    """
    flags = flags or {}
    overrides = dict(values or {})
    if args is not None:
        for dest, field in flags.items():
            v = getattr(args, dest, None)
            if v is not None:
                overrides[field] = v
    check_environment(os.environ)
    try:
        return cls(**overrides)
    except (ValidationError, SettingsError) as exc:
        raise ConfigError(describe(exc, flags)) from None


def known_settings() -> set[str]:
    """Field names of every settings class loaded in this process."""
    names: set[str] = set()
    todo: list[type[BaseSettings]] = [CommonSettings]
    while todo:
        cls = todo.pop()
        names.update(cls.model_fields)
        todo.extend(cls.__subclasses__())
    return names


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse ``PERPSTREAM_*`` variables that no settings class knows (a typo, a removed setting)."""
    known = known_settings()
    unknown = sorted(
        k for k in environ
        if k.startswith(ENV_PREFIX) and not k.startswith(_NOT_SETTINGS_PREFIXES)
        and k[len(ENV_PREFIX):].lower() not in known
    )
    if unknown:
        noun = "no such setting" if len(unknown) == 1 else "no such settings"
        raise ConfigError(f"{', '.join(unknown)}: {noun} (a typo? the README lists every setting)")
