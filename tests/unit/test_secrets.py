"""Secrets never leave the process: not in error lines, log lines, metrics or health bodies;
and the Kafka/ClickHouse security settings reach every client config.

Every test uses a fresh random password, so a leak anywhere shows as that string."""

from __future__ import annotations

import json
import logging
import os
import secrets as random
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from perpstream.consumers.runtime.loop import _connection
from perpstream.consumers.sink.settings import SinkSettings
from perpstream.errors import ConfigError
from perpstream.producer.publisher import producer_config
from perpstream.runtime import secrets
from perpstream.runtime.health import Health
from perpstream.runtime.settings import CommonSettings, build_settings
from perpstream.runtime.telemetry import JsonFormatter, Telemetry, TextFormatter, kafka_logging, serve_metrics

ROOT = Path(__file__).resolve().parents[2]


def _password() -> str:
    return f"s3cr3t-{random.token_hex(8)}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _perpstream(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PERPSTREAM_")}
    base["PERPSTREAM_MEMBER_NAME"] = ""
    return subprocess.run([sys.executable, "-m", "perpstream.cli", *args], env={**base, **env},
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def _sasl_env(password: str, port: int) -> dict[str, str]:
    return {"PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
            "PERPSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "PERPSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "PERPSTREAM_KAFKA_SASL_USERNAME": "alice",
            "PERPSTREAM_KAFKA_SASL_PASSWORD": password}


# -- (a) the CLI's error lines -----------------------------------------------------------------

@pytest.mark.parametrize(("env", "args", "expected"), [
    # a bad value of a setting next to a valid secret
    ({"PERPSTREAM_KAFKA_SASL_MECHANISM": "GSSAPI"}, ("sql", "SELECT 1"), "kafka_sasl_mechanism"),
    # the password of a DSN without a scheme, of a registry URL with a wrong scheme
    ({"PERPSTREAM_CLICKHOUSE_DSN": "bob:{pw}@clickhouse:8123"}, ("sql", "SELECT 1"), "clickhouse_dsn"),
    ({"PERPSTREAM_SCHEMA_REGISTRY_URL": "ftp://key:{pw}@registry"}, ("sql", "SELECT 1"),
     "schema_registry_url"),
    # a SASL password without SASL; a certificate that does not exist
    ({"PERPSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL"}, ("sql", "SELECT 1"), "kafka_sasl_mechanism"),
    ({"PERPSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
      "PERPSTREAM_KAFKA_SSL_CA_LOCATION": "/nonexistent/ca.pem"}, ("sql", "SELECT 1"),
     "kafka_ssl_ca_location"),
])
def test_a_bad_setting_is_named_and_no_password_is_shown(env: dict[str, str], args: tuple[str, ...],
                                                         expected: str) -> None:
    pw = _password()
    full = {**_sasl_env(pw, 9), **{k: v.replace("{pw}", pw) for k, v in env.items()}}
    out = _perpstream(full, *args)
    assert out.returncode == 2, out.stderr
    assert pw not in out.stdout + out.stderr
    assert "configuration error" in out.stderr and expected in out.stderr


def test_a_bad_secret_value_is_not_echoed() -> None:
    pw = _password()
    out = _perpstream({**_sasl_env(pw, 9), "PERPSTREAM_KAFKA_SECURITY_PROTOCOL": pw}, "sql", "SELECT 1")
    assert out.returncode == 2
    assert pw not in out.stderr and "kafka_security_protocol" in out.stderr


def test_an_unreachable_clickhouse_is_named_without_its_password() -> None:
    pw = _password()
    port = _free_port()
    out = _perpstream({"PERPSTREAM_CLICKHOUSE_DSN": f"http://reader:{pw}@127.0.0.1:{port}/"},
                      "sql", "SELECT 1")
    assert out.returncode == 1, out.stderr
    assert pw not in out.stdout + out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert f"connecting to ClickHouse at http://reader:***@127.0.0.1:{port}/ failed" in last
    assert "Connection refused" in last


def test_an_unreachable_kafka_with_sasl_logs_no_password() -> None:
    pw = _password()
    out = _perpstream({**_sasl_env(pw, _free_port()), "PERPSTREAM_FLUSH_TIMEOUT": "0.5"},
                      "produce", "--source", "sim", "--duration", "0.5", "--log-level", "DEBUG")
    text = out.stdout + out.stderr
    assert pw not in text
    assert "sasl_plaintext://" in text  # the client did use the security settings
    assert out.returncode == 1


# -- (b) both log formatters -------------------------------------------------------------------

@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()])
def test_log_lines_mask_secrets_in_message_fields_and_traceback(formatter: logging.Formatter) -> None:
    pw = _password()
    build_settings(CommonSettings, values={"kafka_bootstrap_servers": "k:9092", **_sasl_fields(pw)})
    try:
        raise RuntimeError(f"auth failed with {pw}")
    except RuntimeError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "login %s", (pw,), sys.exc_info())
    record.error = f"password={pw}"
    record.nested = {"dsn": f"https://u:{pw}@h:8443/", "list": [pw]}
    record.url = "https://someone:unregistered-pw@host/"  # any URL's userinfo, registered or not
    text = formatter.format(record)
    assert pw not in text and "unregistered-pw" not in text
    assert "***" in text and "RuntimeError" in text
    if isinstance(formatter, JsonFormatter):
        assert json.loads(text)["msg"] == "login ***"


def _sasl_fields(pw: str) -> dict[str, str]:
    return {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "PLAIN",
            "kafka_sasl_username": "alice", "kafka_sasl_password": pw}


def test_redaction_of_dsns_and_encoded_forms() -> None:
    pw = "p@ss/wörd:1"
    secrets.register_secret(pw)
    assert secrets.redact_dsn("https://u:p%40ss@h:8443/db") == "https://u:***@h:8443/db"
    assert secrets.redact_dsn("u:x@h") == "u:***@h"
    assert secrets.redact_dsn("chdb:///data/clickhouse") == "chdb:///data/clickhouse"
    from urllib.parse import quote
    assert pw not in secrets.redact(f"a {pw} b")
    assert quote(pw, safe="") not in secrets.redact(quote(pw, safe=""))


# -- (c) metrics and readiness -----------------------------------------------------------------

def test_prometheus_labels_and_readyz_never_show_a_secret() -> None:
    pw = _password()
    build_settings(CommonSettings, values={"clickhouse_dsn": f"https://u:{pw}@ch:8443/"})
    telemetry, health = Telemetry(), Health()
    telemetry.inc("errors", 1, {"error": f"denied for {pw}"})
    health.add_readiness("sink", lambda: f"ClickHouse at https://u:{pw}@ch:8443/ refused the login")
    assert pw not in telemetry.render_prometheus()
    server = serve_metrics(telemetry, 0, "127.0.0.1", health=health)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        for path in ("/readyz", "/readyz?format=json", "/metrics"):
            try:
                body = urllib.request.urlopen(base + path, timeout=5).read().decode()
            except urllib.error.HTTPError as exc:
                body = exc.read().decode()
            assert pw not in body
            if path.startswith("/readyz"):
                assert "u:***@ch" in body
    finally:
        server.shutdown()
        server.server_close()


# -- (d) the security settings reach every librdkafka config --------------------------------------

def _tls_settings(tmp_path: Path, pw: str) -> dict[str, str]:
    import certifi  # a real CA bundle (clickhouse-connect depends on certifi)

    ca = tmp_path / "ca.pem"
    ca.write_bytes(Path(certifi.where()).read_bytes())
    return {"kafka_bootstrap_servers": f"127.0.0.1:{_free_port()}", **_sasl_fields(pw),
            "kafka_ssl_ca_location": str(ca), "kafka_ssl_endpoint_identification": "none"}


def test_kafka_security_is_one_dict_carried_by_every_client_config(tmp_path: Path) -> None:
    pw = _password()
    s = build_settings(SinkSettings, values=_tls_settings(tmp_path, pw))
    sec = s.kafka_security()
    assert sec == {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.username": "alice",
                   "sasl.password": pw, "ssl.ca.location": str(tmp_path / "ca.pem"),
                   "ssl.endpoint.identification.algorithm": "none"}
    consumer = s.consumer_config()
    producer = producer_config(s.require_bootstrap(), security=sec)
    # the DLQ producer and the topic-id admin client of ConsumeLoop take the connection entries
    dlq_and_admin = _connection(consumer)
    for cfg in (consumer, producer, dlq_and_admin):
        assert sec.items() <= cfg.items()
    # librdkafka accepts them (a bad key or value raises here)
    Producer({**producer, **kafka_logging()}).flush(0)
    Consumer({**consumer, **kafka_logging()}).close()
    AdminClient({**dlq_and_admin, **kafka_logging()})
    assert pw not in repr(s)


def test_plaintext_adds_nothing_and_https_dsn_speaks_tls(tmp_path: Path) -> None:
    s = build_settings(CommonSettings, values={"kafka_bootstrap_servers": "k:9092"})
    assert s.kafka_security() == {}
    ch = build_settings(CommonSettings, values={"clickhouse_dsn": "https://u:p@ch:9440/",
                                                "clickhouse_verify": False})
    assert ch.clickhouse_options() == {"interface": "https", "verify": False}
    assert build_settings(CommonSettings).clickhouse_options() == {}


@pytest.mark.parametrize(("values", "named"), [
    ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "PLAIN"}, "kafka_sasl_username"),
    ({"kafka_sasl_username": "alice"}, "kafka_sasl_username"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_certificate_location": __file__},
     "kafka_ssl_key_location"),
    ({"kafka_security_protocol": "SSL", "kafka_ssl_key_location": "/no/such/key.pem"},
     "kafka_ssl_key_location"),
    ({"clickhouse_ca_cert": "/no/such/ca.pem"}, "clickhouse_ca_cert"),
])
def test_inconsistent_security_settings_are_one_line_naming_the_setting(values: dict[str, str],
                                                                      named: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_settings(CommonSettings, values={"kafka_bootstrap_servers": "k:9092", **values})
    assert named in str(err.value) and "\n" not in str(err.value)


def test_security_without_a_cluster_is_refused() -> None:
    with pytest.raises(ConfigError, match="embedded broker is plaintext"):
        build_settings(CommonSettings, values={"kafka_security_protocol": "SSL"})
