"""The query endpoint's own rules, without a store: what counts as a read, who may ask."""

from __future__ import annotations

import gzip

import pytest

from perpstream.errors import ConfigError
from perpstream.query_server import QueryServer, _compressor, keywords, read_only_problem


@pytest.mark.parametrize("query", [
    "SELECT 1", "  -- why\nSELECT 1", "(SELECT 1) UNION ALL (SELECT 2)", "with 1 as x select x",
    "SHOW TABLES", "DESCRIBE TABLE perpstream.metric_points", "EXPLAIN SELECT 1", "EXISTS TABLE t",
    "SELECT 'INTO OUTFILE' AS s", "SELECT 1 /* INTO OUTFILE 'x' */", "SELECT `INTO`, \"OUTFILE\" FROM t",
])
def test_reads_are_served(query: str) -> None:
    assert read_only_problem(query) is None


@pytest.mark.parametrize("query", [
    "INSERT INTO t VALUES (1)", "SYSTEM STOP MERGES", "SET readonly = 0", "KILL QUERY WHERE 1",
    "OPTIMIZE TABLE t FINAL", "BACKUP DATABASE d TO File('/tmp/x')", "/* */ DROP TABLE t", "",
    "SELECT 1 INTO OUTFILE '/tmp/x'", "select 1 into\n  outfile 'x'", "SELECT 'a\\'' INTO OUTFILE 'x'",
])
def test_anything_else_is_refused(query: str) -> None:
    assert read_only_problem(query) is not None


def test_keywords_skip_literals_quoted_names_and_comments() -> None:
    words = keywords("SELECT 'it''s' AS `a b`, \"c\" -- tail\n FROM t # x\n/* y */")
    assert words == ["SELECT", "AS", "FROM", "T"]


def test_off_loopback_needs_a_password() -> None:
    with pytest.raises(ConfigError, match=r"http_host.*password"):
        QueryServer(None, host="0.0.0.0", port=0)  # type: ignore[arg-type]
    QueryServer(None, host="127.0.0.1", port=0)  # type: ignore[arg-type]
    QueryServer(None, host="0.0.0.0", port=0, password="s3cret")  # type: ignore[arg-type]


def test_a_password_is_checked_however_the_client_sends_it() -> None:
    import base64

    srv = QueryServer(None, host="0.0.0.0", port=0, password="s3cret")  # type: ignore[arg-type]
    assert srv.authorised({}, {"password": "s3cret"})
    assert srv.authorised({"X-ClickHouse-Key": "s3cret"}, {})
    basic = "Basic " + base64.b64encode(b"default:s3cret").decode()
    assert srv.authorised({"Authorization": basic}, {})
    assert not srv.authorised({}, {})
    assert not srv.authorised({}, {"password": "wrong"})


def test_compression_follows_the_clients_preference() -> None:
    chosen = _compressor("gzip, deflate")
    assert chosen is not None and chosen[0] == "gzip"
    assert gzip.decompress(chosen[1](b"x" * 1000)) == b"x" * 1000
    lz4 = _compressor("lz4;q=1, gzip")
    assert lz4 is not None and lz4[0] == "lz4"
    assert _compressor("br") is None
