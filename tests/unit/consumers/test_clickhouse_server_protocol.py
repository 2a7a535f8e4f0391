"""What perpstream asks of a ClickHouse server, over a real HTTP socket.

No ClickHouse server runs here, so tests/fakes/clickhouse_http.py answers
what clickhouse-connect asks and records every request. The assertions are on
what a real server would receive: no session on any request (one client
serves several threads, a session serves one query at a time), two threads
served at once, the sink's inserts synchronous and carrying their dedup
token; and a ``clickhouse://`` DSN refused at start-up (docs/sink.md,
"ClickHouse server").
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import clickhouse_connect
import pyarrow as pa
import pytest

from perpstream.consumers.clickhouse import ClickHouseBatchJournal, open_client, store_error
from perpstream.consumers.exceptions import StoreRejectedError
from perpstream.consumers.reading import open_reader
from perpstream.consumers.runtime.batch import Batch, PartitionBatch
from perpstream.consumers.runtime.decoding import ROW_FIELDS
from perpstream.consumers.sink.handler import ClickHouseSink
from perpstream.consumers.snapshots.store import SnapshotStore
from perpstream.local import open_clickhouse
from perpstream.runtime.endpoint import write_endpoint
from perpstream.runtime.settings import CommonSettings, build_settings
from tests.fakes.clickhouse_http import FakeClickHouse

ROOT = Path(__file__).resolve().parents[3]

TABLES = {
    "consumer_batches": [("group_id", "LowCardinality(String)"), ("topic", "LowCardinality(String)"),
                         ("partition", "UInt32"), ("first_offset", "Int64"), ("last_offset", "Int64"),
                         ("topic_id", "String")],
    "snapshot_checkpoints": [("group_id", "LowCardinality(String)"), ("topic", "LowCardinality(String)"),
                             ("partition", "UInt32"), ("source", "LowCardinality(String)"),
                             ("symbol", "LowCardinality(String)"), ("last_snapshot_ms", "Int64")],
}


@pytest.fixture
def server() -> Iterator[FakeClickHouse]:
    # a profile that turns async inserts on: the inserts below must still be synchronous
    with FakeClickHouse(tables=TABLES, profile={"async_insert": "1", "wait_for_async_insert": "0"}) as ch:
        yield ch


def _settings(dsn: str, **values: Any) -> CommonSettings:
    return build_settings(CommonSettings, values={"clickhouse_dsn": dsn, **values})


def _product_client(ch: FakeClickHouse) -> Any:
    settings = _settings(ch.url + "/")
    return open_client(settings.resolved_clickhouse_dsn(), **settings.clickhouse_options())


def _by_reader_via_endpoint(ch: FakeClickHouse, tmp_path: Path) -> Any:
    write_endpoint(tmp_path, ch.url)  # as a running pipeline announces its query endpoint
    return open_reader(build_settings(CommonSettings, values={"data_dir": str(tmp_path)})).client


#: every way the product opens a client on a ClickHouse server
OPENERS: dict[str, Callable[[FakeClickHouse, Path], Any]] = {
    "open_client": lambda ch, _: _product_client(ch),
    "open_clickhouse": lambda ch, _: open_clickhouse(ch.url + "/"),
    "reader on a server DSN": lambda ch, _: open_reader(_settings(ch.url + "/")).client,
    "reader via a running instance's endpoint": _by_reader_via_endpoint,
}


@pytest.mark.parametrize("opener", OPENERS.values(), ids=list(OPENERS))
def test_no_request_of_a_product_client_carries_a_session(
    server: FakeClickHouse, tmp_path: Path, opener: Callable[[FakeClickHouse, Path], Any],
) -> None:
    client = opener(server, tmp_path)
    assert client.query("SELECT 5").result_rows == [(5,)]
    assert len(server.requests) >= 3  # what it asks at creation, and the query
    assert [r.params["session_id"] for r in server.requests if "session_id" in r.params] == []


def test_the_recording_server_would_see_a_session() -> None:
    # clickhouse-connect's default, which the product must not keep
    with FakeClickHouse() as ch:
        clickhouse_connect.get_client(dsn=ch.url).query("SELECT 5")
        assert ch.requests[-1].params.get("session_id")


def test_two_threads_share_one_client(server: FakeClickHouse) -> None:
    client = _product_client(server)
    server.hold_selects(2)  # neither query is answered until both are being served
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(client.query, f"SELECT {n}") for n in (1, 2)]
        results = [f.result(timeout=60).result_rows for f in futures]
    assert results == [[(1,)], [(2,)]]
    assert server.max_together == 2


def test_a_locked_session_stops_the_member_instead_of_retrying(server: FakeClickHouse) -> None:
    # only a client with a session can meet this: perpstream's never should
    client = clickhouse_connect.get_client(dsn=server.url, session_id="shared")
    server.lock_session("shared")
    with pytest.raises(Exception) as caught:
        client.query("SELECT 1")
    err = store_error(caught.value, "insert into perpstream.metric_points")
    assert isinstance(err, StoreRejectedError)
    assert "SESSION_IS_LOCKED (373)" in str(err)


def _row(symbol: str, event_time: int) -> tuple[Any, ...]:
    rec = {"source": "binance_usdm", "symbol": symbol, "metric": "mark_price", "value": 1.5,
           "event_time": event_time, "ingest_time": event_time + 3}
    return tuple(rec[f] for f in ROW_FIELDS)


def test_sink_inserts_are_synchronous_and_carry_their_dedup_token(server: FakeClickHouse) -> None:
    client = _product_client(server)
    rows = [_row("BTCUSDT", 1_760_000_000_000 + i) for i in range(3)]
    pb = PartitionBatch("perpstream.metrics.v1", 2, 100, 102, rows=rows, offsets=[100, 101, 102],
                        topic_id="tid")
    batch = Batch({pb.tp: pb}, [])
    ClickHouseBatchJournal(client, "perpstream").record("sink-group", batch.ranges())
    ClickHouseSink(client, "perpstream").handle(batch)

    journal, data = server.inserts()
    assert journal.query.startswith("INSERT INTO `perpstream`.`consumer_batches`")
    assert journal.params["async_insert"] == "0"
    assert data.query.startswith("INSERT INTO `perpstream`.`metric_points`")
    assert data.params["insert_deduplication_token"] == "perpstream.metrics.v1:tid:2:100:102"
    assert data.params["async_insert"] == "0"
    rows = pa.ipc.open_file(pa.BufferReader(data.data)).read_all()  # FORMAT Arrow: the IPC file format
    assert rows.num_rows == 3 and rows.column("symbol").to_pylist() == ["BTCUSDT"] * 3


def test_snapshot_checkpoints_are_synchronous(server: FakeClickHouse) -> None:
    client = _product_client(server)
    SnapshotStore(client, "perpstream", "snap-group").write_checkpoints(
        {("perpstream.metrics.v1", 0): {("binance_usdm", "BTCUSDT"): 1_760_000_000_000}})
    (insert,) = server.inserts()
    assert insert.query.startswith("INSERT INTO `perpstream`.`snapshot_checkpoints`")
    assert insert.params["async_insert"] == "0"


@pytest.mark.parametrize("dsn", ["clickhouse://default:pw-9@clickhouse:9000/perpstream",
                                 "clickhouses://default:pw-9@clickhouse:9440/"])
def test_a_native_protocol_dsn_is_refused_at_start_up(dsn: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPSTREAM_")}
    env["PERPSTREAM_CLICKHOUSE_DSN"] = dsn
    argv = [sys.executable, "-m", "perpstream.cli", "sink", "--bootstrap-servers", "127.0.0.1:9"]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "PERPSTREAM_CLICKHOUSE_DSN" in lines[0] and "--clickhouse-dsn" in lines[0]
    assert "http://host:8123/" in lines[0] and "native protocol" in lines[0]
    assert "pw-9" not in out.stderr and "Traceback" not in out.stderr


def test_a_session_in_the_dsn_is_refused() -> None:
    from perpstream.errors import ConfigError

    with pytest.raises(ConfigError, match=r"clickhouse_dsn.*session_id in the DSN"):
        _settings("http://ch:8123/?session_id=s1")
    with pytest.raises(ConfigError, match=r"clickhouse_dsn.*autogenerate_session_id"):
        open_client("http://ch:8123/?autogenerate_session_id=1")
