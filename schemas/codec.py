"""Avro codec for both wire framings.

- Schema Registry configured: Confluent wire format, ``0x00`` + 4-byte
  big-endian schema id + Avro body.
- No registry (the embedded default): Avro single-object encoding,
  ``C3 01`` + 8-byte little-endian CRC-64-AVRO fingerprint of the schema's
  Parsing Canonical Form + Avro body.

``decode`` detects the framing from the first byte, so a consumer reads both
no matter how it is configured (a Confluent-framed record still needs a
registry to resolve its id). Writer schemas are resolved against the reader
schema, so a newer reader (a field added with a default, an enum symbol added)
reads older events.

Records are plain dicts with timestamps as epoch-millisecond ints: the codec
parses the schema with logical types removed, which leaves the fingerprint
unchanged (Parsing Canonical Form drops ``logicalType``) and halves the
per-record cost of fastavro.
"""

from __future__ import annotations

import copy
import json
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache, cached_property
from importlib import resources
from io import BytesIO
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from perpstream.errors import ConfigError
from perpstream.schemas.avro_binary import read_long, zigzag_varint
from perpstream.schemas.exceptions import (
    BadMagicError,
    DecodeError,
    EncodeError,
    TruncatedRecordError,
    UnknownSchemaError,
)

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
#: The settings an operator turns when the registry refuses: named in those errors.
AUTO_REGISTER_SETTING = "schema_registry_auto_register (PERPSTREAM_SCHEMA_REGISTRY_AUTO_REGISTER)"
AUTH_SETTING = "schema_registry_basic_auth_user_info (PERPSTREAM_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO)"
#: Schema Registry error code of an unknown subject (40403: the subject has no such schema).
_SUBJECT_NOT_FOUND = 40401
CONFLUENT_MAGIC = 0
_SINGLE_HEADER = 10
_CONFLUENT_HEADER = 5
_CONFLUENT_ID = struct.Struct(">I")


class Framing(StrEnum):
    SINGLE_OBJECT = "single_object"
    CONFLUENT = "confluent"


def _strip_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _strip_logical_types(v) for k, v in node.items() if k != "logicalType"}
        return out
    if isinstance(node, list):
        return [_strip_logical_types(v) for v in node]
    return node


@dataclass(frozen=True)
class AvroSchema:
    """One schema version: its JSON, the parsed form used on hot paths, its fingerprint."""

    definition: dict[str, Any]
    parsed: Any = field(repr=False)
    canonical: str = field(repr=False)
    fingerprint: bytes

    @property
    def full_name(self) -> str:
        ns = self.definition.get("namespace")
        name = str(self.definition["name"])
        return f"{ns}.{name}" if ns else name

    @property
    def json(self) -> str:
        return json.dumps(self.definition, separators=(",", ":"))

    @cached_property
    def enum_plan(self) -> tuple[tuple[str, str], ...] | None:
        """The top-level fields up to the last enum, as ``(name, kind)``, when each one
        before it is a fixed-layout primitive; ``()`` when the record has no enum;
        ``None`` when an enum sits behind a field whose size cannot be told from its value.

        fastavro reads a negative enum index as ``symbols[index]`` (Python's negative
        indexing), so one flipped bit turns ``index_price`` into ``open_interest``: the
        codec checks each enum index of a decoded record itself (:meth:`AvroCodec.decode`).
        """
        fields = self.definition.get("fields", [])
        kinds = [(str(f["name"]), _kind(f["type"])) for f in fields]
        last = max((i for i, (_, k) in enumerate(kinds) if k == "enum"), default=-1)
        if last < 0:
            return ()
        plan = tuple(kinds[:last + 1])
        return plan if all(k in _SIZED_KINDS for _, k in plan) else None

    @classmethod
    def from_definition(cls, definition: Mapping[str, Any]) -> AvroSchema:
        d = copy.deepcopy(dict(definition))
        canonical = to_parsing_canonical_form(d)
        fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
        parsed = fastavro.parse_schema(_strip_logical_types(d), _write_hint=False)
        return cls(definition=d, parsed=parsed, canonical=canonical, fingerprint=fp)

    @classmethod
    def from_json(cls, text: str) -> AvroSchema:
        return cls.from_definition(json.loads(text))


_SIZED_KINDS = frozenset({"string", "bytes", "long", "int", "double", "float", "boolean", "enum"})


def _kind(t: Any) -> str:
    if isinstance(t, str):
        return t
    if isinstance(t, dict):
        return str(t.get("type"))
    return "union"


def _negative_enum(
    plan: tuple[tuple[str, str], ...], rec: Mapping[str, Any], data: bytes, pos: int,
) -> str | None:
    """The first enum field of ``plan`` whose index in ``data`` is negative, or None.

    Walks the body from ``pos`` using the decoded values for the sizes of the
    fields before each enum (the record decoded fine, so every size is known).
    """
    for name, kind in plan:
        if kind == "enum":
            value, nxt = read_long(data, pos)
            if value < 0:
                return name
            pos = nxt
            continue
        v = rec[name]
        if kind == "string":
            n = len(v.encode("utf-8"))
            pos += len(zigzag_varint(n)) + n
        elif kind == "bytes":
            pos += len(zigzag_varint(len(v))) + len(v)
        elif kind in ("long", "int"):
            pos += len(zigzag_varint(int(v)))
        elif kind == "double":
            pos += 8
        elif kind == "float":
            pos += 4
        else:  # boolean
            pos += 1
    return None


@cache
def load_schema(name: str) -> AvroSchema:
    """Load a schema shipped with the package: ``metric_point``, ``market_snapshot``,
    or an older version kept under ``history/`` (``history/metric_point.v1``)."""
    text = resources.files("perpstream.schemas").joinpath(f"{name}.avsc").read_text("utf-8")
    return AvroSchema.from_json(text)


class AvroCodec:
    """Encode and decode one record type in either framing.

    ``registry`` is a ``confluent_kafka.schema_registry.SchemaRegistryClient``
    (``mock://`` works); with it, ``encode`` writes the Confluent framing under
    ``subject`` and ``decode`` resolves ids through it. The writer's id comes
    from registering the schema under ``subject``, or, with ``auto_register``
    off, from looking it up there (registries that refuse clients'
    registrations: docs/producer.md, "Schema Registry"); :meth:`header`
    resolves it, so a writer calls it at start-up. ``writers`` are extra schema
    versions that single-object records may have been written with; the reader
    schema itself is always known.
    """

    def __init__(
        self,
        reader: AvroSchema,
        *,
        writers: Iterable[AvroSchema] = (),
        registry: Any | None = None,
        subject: str | None = None,
        resolve_fingerprint: Callable[[bytes], AvroSchema | None] | None = None,
        auto_register: bool = True,
    ) -> None:
        self.reader = reader
        self._resolve_fingerprint = resolve_fingerprint
        self._by_fingerprint: dict[bytes, AvroSchema] = {reader.fingerprint: reader}
        for w in writers:
            self._by_fingerprint.setdefault(w.fingerprint, w)
        self._registry = registry
        self._subject = subject or reader.full_name
        self._auto_register = auto_register
        self._by_id: dict[int, AvroSchema] = {}
        self._writer_id: int | None = None
        self._header = SINGLE_OBJECT_MAGIC + reader.fingerprint
        self.framing = Framing.CONFLUENT if registry is not None else Framing.SINGLE_OBJECT

    # -- encoding ---------------------------------------------------------------

    def _confluent_header(self) -> bytes:
        if self._writer_id is None:
            self._writer_id = self._registered_id()
            self._by_id[self._writer_id] = self.reader
            self._header = bytes([CONFLUENT_MAGIC]) + _CONFLUENT_ID.pack(self._writer_id)
        return self._header

    def _registered_id(self) -> int:
        """The reader schema's id under the subject: registered now, or looked up (``auto_register`` off).

        What the operator can fix is a :class:`ConfigError` naming the setting: a
        schema the registry does not hold while auto-registration is off, and
        credentials the registry refuses. Anything else (unreachable, TLS, an
        incompatible schema) is an :class:`EncodeError` with the registry's reason.
        """
        # local: confluent_kafka.schema_registry (httpx, authlib) adds 0.2 s to every process's start
        # (python -X importtime); only a deployment with a registry loads it
        from confluent_kafka.schema_registry import Schema
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        subject, schema = self._subject, Schema(self.reader.json, "AVRO")
        action = "registration" if self._auto_register else "lookup"
        try:
            if self._auto_register:
                return int(self._registry.register_schema(subject, schema))  # type: ignore[union-attr]
            return int(self._registry.lookup_schema(subject, schema).schema_id)  # type: ignore[union-attr]
        except SchemaRegistryError as exc:
            status = exc.http_status_code
            if status == 404 and not self._auto_register:
                name = self.reader.full_name
                what = (f"subject {subject!r} is not in the Schema Registry"
                        if exc.error_code == _SUBJECT_NOT_FOUND
                        else f"the {name} schema is not registered under subject {subject!r}")
                raise ConfigError(
                    f"{what}, and auto-registration is off: register the {name} schema under "
                    f"{subject!r}, or set {AUTO_REGISTER_SETTING} to true"
                ) from None
            if status in (401, 403):
                refused_write = self._auto_register and status == 403
                hint = (f"; if the registry lets no client register, register the schema there and "
                        f"set {AUTO_REGISTER_SETTING} to false" if refused_write else "")
                raise ConfigError(
                    f"the Schema Registry refused the schema {action} for {subject!r} (HTTP {status}: "
                    f"{exc.error_message}): check its credentials ({AUTH_SETTING}, or the URL's "
                    f"userinfo){hint}"
                ) from None
            raise EncodeError(f"schema {action} for {subject!r} failed: {exc}") from exc
        except Exception as exc:  # the client raises httpx's and ssl's errors as they come
            raise EncodeError(f"schema {action} for {subject!r} failed: {exc}") from exc

    def header(self) -> bytes:
        """The framing prefix every record written by this codec starts with."""
        if self.framing is Framing.CONFLUENT:
            return self._confluent_header()
        return self._header

    def encode(self, record: Mapping[str, Any]) -> bytes:
        buf = BytesIO()
        buf.write(self.header())
        try:
            fastavro.schemaless_writer(buf, self.reader.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise EncodeError(f"record does not fit {self.reader.full_name}: {exc}") from exc
        return buf.getvalue()

    # -- decoding ---------------------------------------------------------------

    def _writer_for_id(self, schema_id: int) -> AvroSchema:
        w = self._by_id.get(schema_id)
        if w is not None:
            return w
        if self._registry is None:
            raise UnknownSchemaError(
                f"Confluent-framed record (schema id {schema_id}) but no schema registry is configured"
            )
        try:
            reg = self._registry.get_schema(schema_id)
        except Exception as exc:
            raise UnknownSchemaError(f"schema id {schema_id} not in the registry: {exc}") from exc
        w = AvroSchema.from_json(reg.schema_str)
        self._by_id[schema_id] = w
        return w

    def writer_of(self, data: bytes) -> AvroSchema:
        """The writer schema named by a record's header (no body decoding)."""
        if len(data) < 1:
            raise TruncatedRecordError("empty record")
        if data[0] == CONFLUENT_MAGIC:
            if len(data) < _CONFLUENT_HEADER:
                raise TruncatedRecordError(f"Confluent header needs 5 bytes, got {len(data)}")
            return self._writer_for_id(_CONFLUENT_ID.unpack_from(data, 1)[0])
        if data[:2] == SINGLE_OBJECT_MAGIC:
            if len(data) < _SINGLE_HEADER:
                raise TruncatedRecordError(f"single-object header needs 10 bytes, got {len(data)}")
            fp = bytes(data[2:_SINGLE_HEADER])
            w = self._by_fingerprint.get(fp)
            if w is None and self._resolve_fingerprint is not None:
                w = self._resolve_fingerprint(fp)
                if w is not None and w.fingerprint == fp:
                    self._by_fingerprint[fp] = w
                else:
                    w = None
            if w is None:
                raise UnknownSchemaError(f"unknown schema fingerprint {fp.hex()}")
            return w
        raise BadMagicError(f"unknown framing, first bytes {bytes(data[:2]).hex()}")

    def decode(self, data: bytes) -> dict[str, Any]:
        writer = self.writer_of(data)
        start = _CONFLUENT_HEADER if data[0] == CONFLUENT_MAGIC else _SINGLE_HEADER
        buf = BytesIO(data)
        buf.seek(start)
        reader = None if writer is self.reader else self.reader.parsed
        try:
            rec = fastavro.schemaless_reader(buf, writer.parsed, reader)
        except (EOFError, StopIteration, IndexError, struct.error) as exc:
            raise TruncatedRecordError(f"Avro body ends early: {exc!r}") from exc
        except Exception as exc:  # fastavro raises many types on corrupt bytes
            raise DecodeError(f"corrupt Avro body: {exc!r}") from exc
        if buf.tell() != len(data):
            raise TruncatedRecordError(
                f"{len(data) - buf.tell()} trailing bytes after the Avro body"
            )
        if not isinstance(rec, dict):
            raise DecodeError("Avro body did not decode to a record")
        plan = writer.enum_plan
        if plan:
            try:
                bad = _negative_enum(plan, rec, data, start)
            except (KeyError, IndexError, ValueError, AttributeError, TypeError):
                bad = None  # a field renamed by resolution: the reader's own checks stand
            if bad is not None:
                raise DecodeError(f"corrupt Avro body: negative index for enum field {bad!r}")
        return rec


@cache
def metric_point_writers() -> tuple[AvroSchema, ...]:
    """Every MetricPoint version ever shipped (current first)."""
    out = [load_schema("metric_point")]
    root = resources.files("perpstream.schemas").joinpath("history")
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("metric_point.") and entry.name.endswith(".avsc"):
            out.append(AvroSchema.from_json(entry.read_text("utf-8")))
    return tuple(out)


def metric_point_codec(
    registry: Any | None = None, subject: str | None = None, *, auto_register: bool = True,
) -> AvroCodec:
    return AvroCodec(
        load_schema("metric_point"), writers=metric_point_writers(), registry=registry,
        subject=subject, auto_register=auto_register,
    )


def market_snapshot_codec(
    registry: Any | None = None, subject: str | None = None, *, auto_register: bool = True,
) -> AvroCodec:
    return AvroCodec(load_schema("market_snapshot"), registry=registry, subject=subject,
                     auto_register=auto_register)


def registry_client(config: str | Mapping[str, Any] | None) -> Any | None:
    """A Schema Registry client for a URL or a whole client config (``url`` plus
    ``basic.auth.user.info`` and ``ssl.*``: ``CommonSettings.schema_registry_config``),
    or None without one. A ``mock://`` URL gives the in-memory client."""
    if not config:
        return None
    # local: 0.2 s of start-up (python -X importtime) that only a deployment with a registry pays
    from confluent_kafka.schema_registry import SchemaRegistryClient

    conf = {"url": config} if isinstance(config, str) else dict(config)
    try:
        return SchemaRegistryClient.new_client(conf)
    except OSError as exc:  # ssl.SSLError: a file that is no PEM, a key that is not the certificate's
        raise ConfigError(f"schema_registry_ssl_* (PERPSTREAM_SCHEMA_REGISTRY_SSL_*): the registry's CA, "
                          f"certificate or key cannot be loaded: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"schema_registry_* (PERPSTREAM_SCHEMA_REGISTRY_*): the Schema Registry "
                          f"client refused its settings: {exc}") from None


def subject_for(topic: str) -> str:
    """TopicNameStrategy, as Confluent serializers name value subjects."""
    return f"{topic}-value"
