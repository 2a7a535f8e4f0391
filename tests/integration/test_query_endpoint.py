"""The running embedded pipeline answers ClickHouse clients from other processes,
read-only: a plain clickhouse-connect client, raw HTTP as curl sends it, and
``perpstream sql`` / ``perpstream query`` find it through the endpoint file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pytest

from tests.waiting import wait_for

pytestmark = pytest.mark.integration

DB = "perpstream"


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPSTREAM_")}
    env["PERPSTREAM_DATA_DIR"] = str(data_dir)
    return env


def _perpstream(data_dir: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "perpstream.cli", *args], env=_env(data_dir),
                          capture_output=True, text=True, timeout=timeout)




@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[str], Path, str]]:
    data_dir = tmp_path_factory.mktemp("endpoint") / "state"
    log = (data_dir.parent / "run.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "perpstream.cli", "run", "--source", "sim", "--sim-symbols", "4",
         "--http-port", "0", "--summary-interval", "2"],
        env=_env(data_dir), stdout=log, stderr=subprocess.STDOUT, text=True,
    )
    try:
        endpoint = data_dir / "endpoint.json"
        wait_for(lambda: endpoint.exists() or proc.poll() is not None, 90, "the endpoint file")
        assert proc.poll() is None, (data_dir.parent / "run.log").read_text()[-3000:]
        url = json.loads(endpoint.read_text())["url"]
        yield proc, data_dir, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def _http(url: str, query: str, **params: str) -> tuple[int, str]:
    q = urllib.parse.urlencode({"query": query, **params})
    try:
        with urllib.request.urlopen(f"{url}/?{q}", timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


Running = tuple[subprocess.Popen[str], Path, str]


def test_a_plain_clickhouse_client_reads_live_growing_counts(running: Running) -> None:
    _, _, url = running
    host, port = url.removeprefix("http://").rsplit(":", 1)
    client = clickhouse_connect.get_client(host=host, port=int(port))
    counts: list[int] = []

    def grew() -> bool:
        n = int(client.command(f"SELECT count() FROM {DB}.metric_points"))
        if n > 0:
            counts.append(n)
        return len(set(counts)) >= 3

    wait_for(grew, 90, "three growing counts", interval=0.2)
    assert counts == sorted(counts)
    rows = client.query(
        f"SELECT symbol, count() FROM {DB}.metric_points GROUP BY symbol ORDER BY symbol").result_rows
    assert [r[0] for r in rows] == ["SIM0000USDT", "SIM0001USDT", "SIM0002USDT", "SIM0003USDT"]
    n = client.query(f"SELECT count() FROM {DB}.metric_points WHERE symbol = {{s:String}}",
                     parameters={"s": "SIM0001USDT"}).result_rows[0][0]
    assert n > 0
    assert _http(url, "SELECT 1")[0] == 200
    with urllib.request.urlopen(f"{url}/ping", timeout=10) as r:
        assert r.read() == b"Ok.\n"


@pytest.mark.parametrize("query", [
    f"INSERT INTO {DB}.metric_points SELECT * FROM {DB}.metric_points LIMIT 1",
    f"ALTER TABLE {DB}.metric_points DELETE WHERE 1",
    f"DROP TABLE {DB}.metric_points",
    "CREATE TABLE default.x (a UInt8) ENGINE = Memory",
    "CREATE TABLE default.f (a String) ENGINE = File(CSV)",
    "SYSTEM STOP MERGES",
    "KILL QUERY WHERE 1",
    f"OPTIMIZE TABLE {DB}.metric_points FINAL",
    "BACKUP DATABASE perpstream TO File('/tmp/perpstream-backup')",
    "SELECT 1 INTO OUTFILE '/tmp/perpstream-outfile.csv'",
    "/* a comment */ WITH 1 AS x SELECT x INTO  OUTFILE '/tmp/perpstream-outfile.csv' FORMAT CSV",
    "SET readonly = 0",
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT * FROM url('http://127.0.0.1:1/x', 'CSV', 'a String')",
    "SELECT * FROM remote('127.0.0.1:9000', system.one)",
    "SELECT * FROM executable('ls', 'TSV', 'a String')",
    "SELECT * FROM s3('http://127.0.0.1:1/bucket/x.csv')",
    "SELECT 1 SETTINGS readonly = 0",
    "SELECT 1 SETTINGS max_execution_time = 0",
])
def test_writes_files_urls_servers_executables_and_limit_changes_are_refused(
    running: tuple[subprocess.Popen[str], Path, str], query: str,
) -> None:
    _, _, url = running
    status, body = _http(url, query)
    assert status == 403, body
    assert body.startswith("Code: 164.") and "readonly" in body.lower(), body


def test_a_setting_sent_by_the_client_cannot_lift_a_limit(running: Running) -> None:
    _, _, url = running
    status, body = _http(url, "SELECT 1", max_result_rows="0")
    assert status == 403 and "Cannot modify 'max_result_rows'" in body, body


def test_perpstream_sql_and_query_find_the_running_instance(
    running: tuple[subprocess.Popen[str], Path, str],
) -> None:
    proc, data_dir, _ = running
    sql = _perpstream(data_dir, "sql", "SELECT count() AS n FROM metric_points", "--format", "json")
    assert sql.returncode == 0, sql.stderr
    assert json.loads(sql.stdout)["n"] > 0
    table = _perpstream(data_dir, "sql", "SELECT symbol, max(event_time) AS latest FROM metric_points "
                        "GROUP BY symbol ORDER BY symbol")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["symbol", "latest"] and lines[2].startswith("SIM0000USDT")
    assert lines[2].rstrip().endswith("Z")  # ISO-8601 UTC
    latest = _perpstream(data_dir, "query", "latest", "--symbol", "SIM0002USDT", "--format", "json")
    assert latest.returncode == 0, latest.stderr
    assert {json.loads(x)["metric"] for x in latest.stdout.splitlines()} >= {"mark_price", "open_interest"}
    refused = _perpstream(data_dir, "sql", f"DROP TABLE {DB}.metric_points")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("perpstream sql: Code: 164."), refused.stderr
    again = _perpstream(data_dir, "run", "--source", "sim")
    assert again.returncode == 1
    assert f"pid {proc.pid}" in again.stderr and "already runs" in again.stderr, again.stderr


def test_sigint_drains_and_removes_the_endpoint(running: tuple[subprocess.Popen[str], Path, str]) -> None:
    proc, data_dir, _ = running
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 0
    assert not (data_dir / "endpoint.json").exists()
    # stopped: the directory is opened directly and holds what was stored
    after = _perpstream(data_dir, "sql", "SELECT count() AS n FROM metric_points", "--format", "json")
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["n"] > 0
