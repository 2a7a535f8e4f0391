"""The ClickHouse failure classification: one table, the same verdict for chdb and a server.

Exceptions are built the way clickhouse-connect builds them: the HTTP
backend's ``build_http_error`` (server answers), ``DatabaseError(message,
code=...)`` as the chdb backend wraps the engine's errors, and a real
connection to a closed port. What the real engine raises for the same faults
is checked in tests/integration/test_consumer_failures.py.
"""

from __future__ import annotations

import pytest
from clickhouse_connect.driver import exceptions as ch
from clickhouse_connect.driver._backend.httpcommon import build_http_error

from perpstream.consumers.clickhouse import (
    PERMANENT_CODES,
    TRANSIENT_CODES,
    Permanent,
    Transient,
    classify_clickhouse_error,
    store_error,
)
from perpstream.consumers.exceptions import BackpressureError, StoreRejectedError, StoreUnavailableError

#: The codes the runbook names, and their class.
NAMED = {
    53: Permanent, 60: Permanent, 81: Permanent, 16: Permanent, 62: Permanent, 164: Permanent,
    497: Permanent, 516: Permanent, 373: Permanent,
    159: Transient, 209: Transient, 210: Transient, 202: Transient, 252: Transient, 241: Transient,
    242: Transient, 999: Transient, 279: Transient,
}


def chdb_error(code: int, name: str, text: str = "something") -> ch.DatabaseError:
    """What the chdb backend raises: the engine's message, code parsed from it."""
    return ch.DatabaseError(f"Code: {code}. DB::Exception: {text}. ({name})", code=code, name=name)


def http_error(status: int, code: int | None, body: str, *, retried: bool = False) -> ch.DatabaseError:
    """What the HTTP backend raises for a server answer (OperationalError once it retried)."""
    header = None if code is None else str(code)
    return build_http_error(status, header, body, True, "http://h:8123/", retried)


@pytest.mark.parametrize(("code", "kind"), sorted(NAMED.items()))
def test_named_codes_for_the_embedded_engine_and_a_server(code: int, kind: type) -> None:
    name = PERMANENT_CODES.get(code) or TRANSIENT_CODES[code]
    body = f"Code: {code}. DB::Exception: whatever. ({name}) (version 24.8.1.1)"
    for exc in (chdb_error(code, name), http_error(500 if kind is Transient else 400, code, body),
                http_error(503, code, body, retried=True)):
        verdict = classify_clickhouse_error(exc)
        assert isinstance(verdict, kind), (exc, verdict)
        assert verdict.code == code and verdict.name == name
        if isinstance(verdict, Transient):
            assert verdict.known


def test_the_code_is_read_from_the_text_when_the_attribute_is_missing() -> None:
    # chdb nests the engine's message ("Code: 53. DB::Exception: Code: 53. ...")
    exc = RuntimeError("Code: 53. DB::Exception: Code: 53. DB::Exception: CAST AS Array can only be "
                       "performed between same-dimensional Array, Map or String types. (TYPE_MISMATCH)")
    assert classify_clickhouse_error(exc) == Permanent("TYPE_MISMATCH", 53)
    # chdb reports a cast it cannot do (Float64 -> UUID) as NOT_IMPLEMENTED
    assert isinstance(classify_clickhouse_error(chdb_error(48, "NOT_IMPLEMENTED")), Permanent)


def test_the_tables_do_not_overlap() -> None:
    assert not set(PERMANENT_CODES) & set(TRANSIENT_CODES)


def test_http_statuses_without_a_code() -> None:
    for status in (500, 502, 503, 504, 408, 429):
        verdict = classify_clickhouse_error(http_error(status, None, "<html>busy</html>"))
        assert verdict == Transient(f"HTTP {status}")
        assert isinstance(classify_clickhouse_error(http_error(status, None, "x", retried=True)), Transient)
    for status in (401, 403, 404):
        assert classify_clickhouse_error(http_error(status, None, "no")) == Permanent(f"HTTP {status}")


def test_a_refused_connection_is_transient() -> None:
    import clickhouse_connect

    with pytest.raises(ch.OperationalError) as caught:  # nothing listens on port 1
        clickhouse_connect.get_client(host="127.0.0.1", port=1, connect_timeout=2)
    verdict = classify_clickhouse_error(caught.value)
    assert isinstance(verdict, Transient) and verdict.known
    for exc in (ConnectionRefusedError(111, "Connection refused"), ConnectionResetError(104, "reset"),
                TimeoutError("timed out")):
        assert isinstance(classify_clickhouse_error(exc), Transient)


def test_errors_raised_by_the_client_itself_are_permanent() -> None:
    for exc in (ch.ProgrammingError("The client has been closed"),
                ch.DataError("Invalid None value in non-Nullable column"),
                ch.NotSupportedError("external_data is not supported by the chdb backend")):
        assert isinstance(classify_clickhouse_error(exc), Permanent)


def test_unknown_errors_are_transient_but_bounded() -> None:
    unlisted = classify_clickhouse_error(chdb_error(1002, "UNKNOWN_EXCEPTION"))
    assert unlisted == Transient("UNKNOWN_EXCEPTION", 1002, known=False)
    assert classify_clickhouse_error(ValueError("?")) == Transient("unclassified: ValueError", known=False)


def test_store_error_turns_the_verdict_into_what_the_runtime_acts_on() -> None:
    mismatch = chdb_error(53, "TYPE_MISMATCH", "while converting column `value`")
    rejected = store_error(mismatch, "insert into d.t")
    assert isinstance(rejected, StoreRejectedError)
    assert (rejected.code, rejected.name) == (53, "TYPE_MISMATCH")
    assert str(rejected).startswith("insert into d.t failed: TYPE_MISMATCH (53): Code: 53.")
    busy = store_error(chdb_error(252, "TOO_MANY_PARTS"), "insert into d.t")
    assert isinstance(busy, StoreUnavailableError) and not busy.unclassified
    odd = store_error(chdb_error(1002, "UNKNOWN_EXCEPTION"), "insert")
    assert isinstance(odd, BackpressureError) and odd.unclassified
    long = store_error(ch.DatabaseError("Code: 62. " + "x" * 5000, code=62), "q")
    assert len(str(long)) < 700  # server messages can carry the whole query
