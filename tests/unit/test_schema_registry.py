"""A production Schema Registry: basic auth and TLS reach it, and with auto-registration off the
producers use the id of a schema registered beforehand, or stop at start-up saying which subject
lacks it (docs/producer.md, "Schema Registry").

The registry is confluent-kafka's in-memory ``mock://`` client where that serves, and otherwise
a real HTTP(S) server on 127.0.0.1 (tests/fakes/schema_registry.py)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema

from perpstream.errors import ConfigError
from perpstream.runtime.settings import CommonSettings, build_settings
from perpstream.schemas.codec import (
    load_schema,
    market_snapshot_codec,
    metric_point_codec,
    registry_client,
    subject_for,
)
from perpstream.schemas.exceptions import EncodeError
from perpstream.schemas.topics import METRICS_TOPIC
from tests.fakes.schema_registry import FakeSchemaRegistry, basic

ROOT = Path(__file__).resolve().parents[2]
SUBJECT = subject_for(METRICS_TOPIC)
POINT = {"source": "binance_usdm", "symbol": "BTCUSDT", "metric": "mark_price", "value": 64240.5,
         "event_time": 1781419401002, "ingest_time": 1781419401017}
USER_INFO = "sr-key:sr-s3cret-7f3a"
#: the client's own retries of a failed connection (a refused certificate) would only slow the test
NO_RETRIES = {"max.retries": 0}


def _metric_point_json() -> str:
    return load_schema("metric_point").json


@pytest.fixture(autouse=True)
def _no_perpstream_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("PERPSTREAM_") and not key.startswith("PERPSTREAM_TEST_"):
            monkeypatch.delenv(key)


# -- the codec against the in-memory registry ------------------------------------------------

def test_auto_register_off_uses_the_id_registered_beforehand() -> None:
    registry = registry_client("mock://lookup")
    other = registry.register_schema("unrelated-value", Schema(load_schema("market_snapshot").json, "AVRO"))
    sid = registry.register_schema(SUBJECT, Schema(_metric_point_json(), "AVRO"))
    assert sid != other
    codec = metric_point_codec(registry, SUBJECT, auto_register=False)
    data = codec.encode(POINT)
    assert data[:5] == b"\x00" + sid.to_bytes(4, "big")
    assert metric_point_codec(registry).decode(data) == POINT
    assert registry.get_versions(SUBJECT) == [1]  # looked up, not registered again


@pytest.mark.parametrize("held", ["nothing", "another schema"])
def test_auto_register_off_and_not_registered_names_the_subject_and_the_setting(held: str) -> None:
    registry = registry_client(f"mock://missing-{held.replace(' ', '-')}")
    if held == "another schema":
        registry.register_schema(SUBJECT, Schema(load_schema("history/metric_point.v1").json, "AVRO"))
    codec = metric_point_codec(registry, SUBJECT, auto_register=False)
    with pytest.raises(ConfigError) as err:
        codec.header()
    msg = str(err.value)
    assert "\n" not in msg
    assert repr(SUBJECT) in msg and "PERPSTREAM_SCHEMA_REGISTRY_AUTO_REGISTER" in msg
    assert registry.get_subjects() == ([SUBJECT] if held == "another schema" else [])


def test_auto_register_on_registers_the_schema() -> None:
    registry = registry_client("mock://register")
    codec = market_snapshot_codec(registry, "snaps-value")
    sid = int.from_bytes(codec.header()[1:], "big")
    assert registry.lookup_schema("snaps-value", Schema(load_schema("market_snapshot").json, "AVRO")) \
        .schema_id == sid


# -- settings --------------------------------------------------------------------------------

@dataclass
class Pem:
    """A CA, and a server and a client certificate it signed, as PEM files."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> Pem:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d = tmp_path_factory.mktemp("pem")
    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))

    def cert(cn: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey,
             *extensions: tuple[Any, bool]) -> x509.Certificate:
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(issuer))
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - day).not_valid_after(now + day))
        for ext, critical in extensions:
            b = b.add_extension(ext, critical=critical)
        return b.sign(signer, hashes.SHA256())

    ca_name, ca_key = "perpstream test CA", ec.generate_private_key(ec.SECP256R1())
    usage = {k: False for k in ("content_commitment", "key_encipherment", "data_encipherment",
                                "key_agreement", "encipher_only", "decipher_only")}
    ca = cert(ca_name, ca_key, ca_name, ca_key,
              (x509.BasicConstraints(ca=True, path_length=None), True),
              (x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, **usage), True),
              (x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False))
    aki = (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False)

    def leaf(cn: str, eku: Any, *extra: tuple[Any, bool]) -> tuple[bytes, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        c = cert(cn, key, ca_name, ca_key, (x509.BasicConstraints(ca=False, path_length=None), True),
                 (x509.ExtendedKeyUsage([eku]), False), aki, *extra)
        return c.public_bytes(serialization.Encoding.PEM), key

    out = Pem(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key")
    out.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    text, key = leaf("127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH, (san, False))
    out.server_cert.write_bytes(text)
    write_key(out.server_key, key)
    text, key = leaf("perpstream producer", ExtendedKeyUsageOID.CLIENT_AUTH)
    out.client_cert.write_bytes(text)
    write_key(out.client_key, key)
    return out


def test_settings_map_to_the_clients_config_keys(pem: Pem) -> None:
    s = CommonSettings(schema_registry_url="https://sr.example:443",
                       schema_registry_basic_auth_user_info=USER_INFO,
                       schema_registry_ssl_ca_location=str(pem.ca),
                       schema_registry_ssl_certificate_location=str(pem.client_cert),
                       schema_registry_ssl_key_location=str(pem.client_key))
    assert s.schema_registry_config() == {
        "url": "https://sr.example:443", "basic.auth.user.info": USER_INFO,
        "ssl.ca.location": str(pem.ca), "ssl.certificate.location": str(pem.client_cert),
        "ssl.key.location": str(pem.client_key),
    }
    assert s.schema_registry_auto_register is True
    assert USER_INFO not in repr(s)
    assert CommonSettings().schema_registry_config() is None


#: (environment, with {ca} {cert} {key} for the PEM files; the setting the line must name)
BAD = [
    ({"PERPSTREAM_SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION": "{cert}"}, "schema_registry_ssl_key_location"),
    ({"PERPSTREAM_SCHEMA_REGISTRY_SSL_KEY_LOCATION": "{key}"}, "schema_registry_ssl_certificate_location"),
    ({"PERPSTREAM_SCHEMA_REGISTRY_SSL_CA_LOCATION": "/no/such/ca.pem"}, "schema_registry_ssl_ca_location"),
    ({"PERPSTREAM_SCHEMA_REGISTRY_SSL_KEY_LOCATION": "/no/such/client.key",
      "PERPSTREAM_SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION": "{cert}"}, "schema_registry_ssl_key_location"),
    ({"PERPSTREAM_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "just-a-s3cret-token"},
     "schema_registry_basic_auth_user_info"),
    ({"PERPSTREAM_SCHEMA_REGISTRY_URL": "http://sr:8081",
      "PERPSTREAM_SCHEMA_REGISTRY_SSL_CA_LOCATION": "{ca}"}, "schema_registry_ssl_ca_location"),
    ({"PERPSTREAM_SCHEMA_REGISTRY_URL": "https://k:s3cret-in-url@sr",
      "PERPSTREAM_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": USER_INFO}, "schema_registry_basic_auth_user_info"),
    ({"PERPSTREAM_SCHEMA_REGISTRY_URL": "", "PERPSTREAM_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": USER_INFO},
     "schema_registry_url"),
    ({"PERPSTREAM_SCHEMA_REGISTRY_AUTO_REGISTER": "sometimes"}, "schema_registry_auto_register"),
]


@pytest.mark.parametrize(("env", "setting"), BAD, ids=[f"{i}-{b[1]}" for i, b in enumerate(BAD)])
def test_a_bad_registry_setting_is_one_line_that_names_it(
    env: dict[str, str], setting: str, pem: Pem, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PERPSTREAM_SCHEMA_REGISTRY_URL", "https://sr.example")
    for k, v in env.items():
        monkeypatch.setenv(k, v.format(ca=pem.ca, cert=pem.client_cert, key=pem.client_key))
    with pytest.raises(ConfigError) as err:
        build_settings(CommonSettings)
    msg = str(err.value)
    assert "\n" not in msg and setting in msg, msg
    assert "s3cret" not in msg, msg


# -- a real registry over HTTP ---------------------------------------------------------------

def _client(s: CommonSettings) -> Any:
    return registry_client({**(s.schema_registry_config() or {}), **NO_RETRIES})


def test_basic_auth_reaches_the_registry_and_a_lookup_registers_nothing() -> None:
    with FakeSchemaRegistry(user_info=USER_INFO) as sr:
        sid = sr.register(SUBJECT, _metric_point_json())
        s = CommonSettings(schema_registry_url=sr.url, schema_registry_basic_auth_user_info=USER_INFO,
                           schema_registry_auto_register=False)
        codec = metric_point_codec(_client(s), SUBJECT, auto_register=s.schema_registry_auto_register)
        data = codec.encode(POINT)
        # a consumer with its own client resolves the id over the wire, with the same credentials
        assert metric_point_codec(_client(s)).decode(data) == POINT
    assert data[1:5] == sid.to_bytes(4, "big")
    assert [(r.method, r.path) for r in sr.requests] == [
        ("POST", f"/subjects/{SUBJECT}"), ("GET", f"/schemas/ids/{sid}")]
    assert "normalize=" in sr.requests[0].query
    assert {r.authorization for r in sr.requests} == {basic(USER_INFO)}
    assert sr.versions(SUBJECT) == 1


def test_auto_register_on_registers_over_http() -> None:
    with FakeSchemaRegistry(user_info=USER_INFO) as sr:
        s = CommonSettings(schema_registry_url=sr.url, schema_registry_basic_auth_user_info=USER_INFO)
        header = metric_point_codec(_client(s), SUBJECT).header()
    assert sr.paths("POST") == [f"/subjects/{SUBJECT}/versions"]
    assert sr.requests[0].authorization == basic(USER_INFO)
    assert header == b"\x00" + (1).to_bytes(4, "big") and sr.versions(SUBJECT) == 1


@pytest.mark.parametrize("auto_register", [True, False])
def test_refused_credentials_name_the_auth_setting(auto_register: bool) -> None:
    with FakeSchemaRegistry(user_info=USER_INFO) as sr:
        s = CommonSettings(schema_registry_url=sr.url,
                           schema_registry_basic_auth_user_info="sr-key:wrong-one")
        with pytest.raises(ConfigError) as err:
            metric_point_codec(_client(s), SUBJECT, auto_register=auto_register).header()
    assert "HTTP 401" in str(err.value) and "schema_registry_basic_auth_user_info" in str(err.value)
    assert sr.versions(SUBJECT) == 0


def _perpstream(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PERPSTREAM_")}
    base["PERPSTREAM_MEMBER_NAME"] = ""
    return subprocess.run([sys.executable, "-m", "perpstream.cli", *args], env={**base, **env},
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


COMMANDS = {
    "produce": ["produce", "--source", "sim", "--sim-symbols", "2"],
    "backfill": ["backfill", "--symbols", "BTCUSDT", "--since", "1h", "--rest-url", "http://127.0.0.1:9"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_subject_the_registry_lacks_stops_the_command_at_start_up(command: str, tmp_path: Path) -> None:
    """Nothing reaches Kafka (there is none at 127.0.0.1:9): the lookup comes first."""
    with FakeSchemaRegistry(user_info=USER_INFO) as sr:
        out = _perpstream(
            {"PERPSTREAM_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": USER_INFO,
             "PERPSTREAM_DATA_DIR": str(tmp_path), "PERPSTREAM_LOG_FORMAT": "text"},
            *COMMANDS[command], "--bootstrap-servers", "127.0.0.1:9", "--schema-registry-url", sr.url,
            "--no-schema-registry-auto-register")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"perpstream {command}: configuration error" in lines[0]
    assert repr(SUBJECT) in lines[0] and "PERPSTREAM_SCHEMA_REGISTRY_AUTO_REGISTER" in lines[0]
    assert "s3cret" not in out.stderr + out.stdout
    assert sr.paths() == [f"/subjects/{SUBJECT}"]  # looked up, never registered
    assert sr.requests[0].authorization == basic(USER_INFO)


def test_the_snapshots_publisher_looks_up_its_subject_before_it_starts() -> None:
    from perpstream.consumers.snapshots.app import SnapshotService
    from perpstream.consumers.snapshots.settings import SnapshotSettings

    with FakeSchemaRegistry(user_info=USER_INFO) as sr:
        s = SnapshotSettings(kafka_bootstrap_servers="127.0.0.1:9", schema_registry_url=sr.url,
                             schema_registry_basic_auth_user_info=USER_INFO,
                             schema_registry_auto_register=False)
        with pytest.raises(ConfigError, match=r"'perpstream\.snapshots\.v1-value'.*AUTO_REGISTER"):
            SnapshotService(s, client=None).make_handler()
    assert sr.paths() == ["/subjects/perpstream.snapshots.v1-value"]
    assert sr.requests[0].authorization == basic(USER_INFO)


# -- TLS -------------------------------------------------------------------------------------

@pytest.fixture
def https_registry(pem: Pem) -> Iterator[FakeSchemaRegistry]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pem.server_cert, pem.server_key)
    with FakeSchemaRegistry(ssl_context=ctx) as sr:
        sr.register(SUBJECT, _metric_point_json())
        yield sr


def test_an_https_registry_is_trusted_with_its_ca_only(https_registry: FakeSchemaRegistry, pem: Pem) -> None:
    s = CommonSettings(schema_registry_url=https_registry.url, schema_registry_auto_register=False)
    with pytest.raises(EncodeError, match="CERTIFICATE_VERIFY_FAILED"):
        metric_point_codec(_client(s), SUBJECT, auto_register=False).header()
    assert https_registry.requests == []

    s = CommonSettings(schema_registry_url=https_registry.url, schema_registry_ssl_ca_location=str(pem.ca))
    codec = metric_point_codec(_client(s), SUBJECT, auto_register=False)
    assert codec.header() == b"\x00" + (1).to_bytes(4, "big")
    assert https_registry.paths() == [f"/subjects/{SUBJECT}"]


def test_mutual_tls_presents_the_client_certificate(pem: Pem) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pem.server_cert, pem.server_key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(pem.ca)
    with FakeSchemaRegistry(ssl_context=ctx) as sr:
        sr.register(SUBJECT, _metric_point_json())
        without = CommonSettings(schema_registry_url=sr.url, schema_registry_ssl_ca_location=str(pem.ca))
        with pytest.raises(EncodeError):
            metric_point_codec(_client(without), SUBJECT, auto_register=False).header()
        assert sr.requests == []
        with_cert = CommonSettings(schema_registry_url=sr.url, schema_registry_ssl_ca_location=str(pem.ca),
                                   schema_registry_ssl_certificate_location=str(pem.client_cert),
                                   schema_registry_ssl_key_location=str(pem.client_key))
        codec = metric_point_codec(_client(with_cert), SUBJECT, auto_register=False)
        assert codec.header() == b"\x00" + (1).to_bytes(4, "big")
    assert sr.paths() == [f"/subjects/{SUBJECT}"]


def test_a_key_that_is_not_the_certificates_is_a_config_error(pem: Pem) -> None:
    s = CommonSettings(schema_registry_url="https://sr.example", schema_registry_ssl_ca_location=str(pem.ca),
                       schema_registry_ssl_certificate_location=str(pem.client_cert),
                       schema_registry_ssl_key_location=str(pem.server_key))
    with pytest.raises(ConfigError, match="schema_registry_ssl"):
        registry_client(s.schema_registry_config())
