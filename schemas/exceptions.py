"""The contract's errors: records that cannot be encoded or decoded. They derive from
:class:`perpstream.errors.PerpstreamError`, the root of every error perpstream raises on purpose."""

from __future__ import annotations

from perpstream.errors import PerpstreamError


class EncodeError(PerpstreamError):
    """A record could not be encoded (it does not fit the schema or breaks a rule)."""


class DecodeError(PerpstreamError):
    """Bytes that cannot be turned into a record. Never partially decoded.

    ``reason`` is a short stable label used in counters and DLQ headers.
    """

    reason = "undecodable"


class BadMagicError(DecodeError):
    """The first bytes are neither Confluent framing (0x00) nor single-object (C3 01)."""

    reason = "bad_magic"


class UnknownSchemaError(DecodeError):
    """The schema id or fingerprint in the header is not known to this reader."""

    reason = "unknown_schema"


class TruncatedRecordError(DecodeError):
    """The header or the Avro body is shorter (or longer) than the schema requires."""

    reason = "truncated"


class InvalidRecordError(DecodeError):
    """Decoded fine, but the values break the contract (NaN price, empty symbol...)."""

    reason = "invalid"
