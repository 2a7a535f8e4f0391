"""``perpstream up`` end to end, as a user runs it: a subprocess on the simulated
market. While it runs, ClickHouse clients in other processes read the live
store read-only (a plain clickhouse-connect client, raw HTTP as curl sends it,
``perpstream sql`` / ``perpstream query`` through the endpoint file), and a
second ``up`` on the same directory says that one runs. Ctrl+C drains: exit 0,
no child process left, every published point stored once, snapshots for every
symbol and window. Started again, it continues from the stored data."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pytest

from perpstream.local import free_port
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

DB = "perpstream"
SYMBOLS = ["SIM0000USDT", "SIM0001USDT", "SIM0002USDT", "SIM0003USDT"]
WINDOWS = {60, 300, 3600}


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPSTREAM_")}
    env["PERPSTREAM_DATA_DIR"] = str(data_dir)
    return env


def _perpstream(data_dir: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "perpstream.cli", *args], env=_env(data_dir),
                          capture_output=True, text=True, timeout=timeout)


#: where the fixture's ``up`` serves /metrics, /healthz and /readyz
METRICS_PORT = free_port()


def _up(data_dir: Path, log_path: Path, **env: str) -> tuple[subprocess.Popen[str], str, float]:
    """Start ``perpstream up`` on the simulated market; (process, query URL, when the URL appeared)."""
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "perpstream.cli", "up", "--source", "sim", "--sim-symbols", "4",
         "--no-ui", "--http-port", "0", "--summary-interval", "2", "--metrics-port", str(METRICS_PORT)],
        env={**_env(data_dir), **env}, stdout=log, stderr=subprocess.STDOUT, text=True,
    )
    log.close()
    endpoint = data_dir / "endpoint.json"
    wait_for(lambda: endpoint.exists() or proc.poll() is not None, 90, "the endpoint file")
    seen = time.time()
    assert proc.poll() is None, log_path.read_text()[-3000:]
    return proc, json.loads(endpoint.read_text())["url"], seen


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out.update(int(x) for x in (task / "children").read_text().split())
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    return proc.wait(timeout=120)




@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[subprocess.Popen[str], Path, str]]:
    data_dir = tmp_path_factory.mktemp("up") / "state"
    proc, url, _ = _up(data_dir, data_dir.parent / "up.log")
    try:
        yield proc, data_dir, url
    finally:
        if proc.poll() is None:
            try:
                _stop(proc)
            except subprocess.TimeoutExpired:
                proc.kill()


def _http(url: str, query: str, **params: str) -> tuple[int, str]:
    q = urllib.parse.urlencode({"query": query, **params})
    try:
        with urllib.request.urlopen(f"{url}/?{q}", timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


#: when the drain test sent SIGINT to the fixture's ``up`` (the restart test measures the gap from it)
STOPPED_AT: dict[str, float] = {}

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
    ops = f"http://127.0.0.1:{METRICS_PORT}"
    wait_for(lambda: _get(f"{ops}/readyz")[0] == 200, 60, "ready: broker, producer, sink, snapshots")
    assert _get(f"{ops}/healthz") == (200, "ok\n")
    ready = json.loads(_get(f"{ops}/readyz?format=json")[1])
    assert set(ready["checks"]) >= {"broker", "producer", "sink", "snapshots"}, ready
    status, metrics = _get(f"{ops}/metrics")
    assert status == 200 and "perpstream_records_stored" in metrics
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
    url = json.loads((data_dir / "endpoint.json").read_text())["url"]
    # run and up give one answer: exit 1, who holds the directory and where it answers queries
    second = _perpstream(data_dir, "up", "--source", "sim")
    assert second.returncode == 1 and "Traceback" not in second.stderr
    assert "already runs" in second.stderr and f"pid {proc.pid}" in second.stderr, second.stderr
    assert url in second.stderr
    run = _perpstream(data_dir, "run", "--source", "sim")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert f"pid {proc.pid}" in run.stderr and "already runs" in run.stderr and url in run.stderr, run.stderr


def _points(data_dir: Path) -> list[dict[str, object]]:
    res = _perpstream(data_dir, "sql", "SELECT symbol, metric, toUnixTimestamp64Milli(event_time) AS t, "
                      "count() AS copies FROM metric_points GROUP BY symbol, metric, t ORDER BY symbol, "
                      "metric, t", "--format", "json")
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


def _published(log_path: Path) -> int:
    m = re.findall(r"stopped after \S+: ([\d,]+) points published", log_path.read_text())
    assert m, log_path.read_text()[-3000:]
    return int(m[-1].replace(",", ""))


def _mark_times(points: list[dict[str, object]], symbol: str) -> list[int]:
    return [int(str(p["t"])) for p in points if p["symbol"] == symbol and p["metric"] == "mark_price"]


def test_sigint_drains_stores_every_point_once_and_leaves_no_child(running: Running) -> None:
    proc, data_dir, _ = running
    children = _children(proc.pid)
    assert children, "the local broker runs as a child process"
    stopped_at = STOPPED_AT["first run"] = time.time()
    assert _stop(proc) == 0
    assert not (data_dir / "endpoint.json").exists()
    assert not [pid for pid in children if _alive(pid)]
    # stopped: the directory is opened directly and holds every published point, once
    points = _points(data_dir)
    assert sum(int(str(p["copies"])) for p in points) == len(points) == _published(data_dir.parent / "up.log")
    assert sorted({str(p["symbol"]) for p in points}) == SYMBOLS
    for symbol in SYMBOLS:
        times = _mark_times(points, symbol)
        assert all(b - a == 1000 for a, b in itertools.pairwise(times)), symbol
        assert times[-1] >= stopped_at * 1000 - 3000, "what was produced up to the stop is stored"
    snaps = _perpstream(data_dir, "sql", "SELECT symbol, window_s FROM market_snapshots GROUP BY symbol, "
                        "window_s", "--format", "json")
    assert snaps.returncode == 0, snaps.stderr
    got = {(r["symbol"], r["window_s"]) for r in map(json.loads, snaps.stdout.splitlines())}
    assert got == {(s, w) for s in SYMBOLS for w in WINDOWS}


def test_started_again_it_continues_from_the_stored_data(running: Running) -> None:
    proc, data_dir, _ = running
    assert proc.poll() is not None, "runs after the drain test"
    before = _points(data_dir)
    last_before = {s: _mark_times(before, s)[-1] for s in SYMBOLS}
    stopped = STOPPED_AT["first run"]
    log_path = data_dir.parent / "up-again.log"
    again, url, seen = _up(data_dir, log_path)
    try:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        client = clickhouse_connect.get_client(host=host, port=int(port))
        wait_for(lambda: int(client.command(f"SELECT count() FROM {DB}.metric_points")) > len(before) + 40,
                 90, "points of the second run stored")
    finally:
        assert _stop(again) == 0, log_path.read_text()[-3000:]
    after = _points(data_dir)
    assert all(p["copies"] == 1 for p in after), "no point stored twice"
    assert len(after) == len(before) + _published(log_path)
    for symbol in SYMBOLS:
        times = _mark_times(after, symbol)
        resumed = [t for t in times if t > last_before[symbol]]
        assert resumed, symbol
        # the only gap is the stopped time: from the stop to the second run serving queries
        assert resumed[0] - last_before[symbol] <= (seen - stopped) * 1000 + 3000, symbol
        assert all(b - a == 1000 for a, b in itertools.pairwise(resumed)), symbol


def test_a_local_broker_that_dies_is_restarted_and_data_flows_again(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    log_path = tmp_path / "up.log"
    proc, url, _ = _up(data_dir, log_path, PERPSTREAM_KAFKA_DELIVERY_TIMEOUT_MS="5000")
    try:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        client = clickhouse_connect.get_client(host=host, port=int(port))

        def stored() -> int:
            return int(client.command(f"SELECT count() FROM {DB}.metric_points"))

        wait_for(lambda: stored() > 0, 90, "the first points stored", alive=(proc,))
        (broker,) = _children(proc.pid)
        os.kill(broker, signal.SIGKILL)
        killed_at = stored()
        # every simulated second brings 4 symbols x 5 metrics; 100 more = data flows again
        wait_for(lambda: stored() > killed_at + 100, 120, "points stored after the broker died",
                 alive=(proc,))
        assert _children(proc.pid) - {broker}, "a new broker runs"
    finally:
        assert _stop(proc) == 0, log_path.read_text()[-3000:]
    assert "the local broker exited; restarting it" in log_path.read_text()


def test_on_a_terminal_the_live_view_shows_real_numbers_in_80_columns(tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 80, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "perpstream.cli", "up", "--source", "sim", "--sim-symbols", "4",
         "--http-port", "0"],
        env={**_env(tmp_path / "state"), "TERM": "xterm-256color"},
        stdin=slave, stdout=slave, stderr=slave, text=True, close_fds=True,
    )
    os.close(slave)
    chunks: list[bytes] = []

    def read() -> None:
        with contextlib.suppress(OSError):
            while data := os.read(master, 65536):
                chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def screen() -> str:
        text = b"".join(chunks).decode("utf-8", "replace")
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text.replace("\r", "\n"))

    def board_with_rates() -> bool:
        s = screen()
        return re.search(r"stored [\d,.]+/s", s) is not None and re.search(
            r"SIM0002USDT +[\d,.]+ +[+-][\d.]+% +[+-][\d.]+ +[\d,]+", s) is not None

    try:
        wait_for(board_with_rates, 120, "a board with rates and symbol rows", alive=(proc,))
    finally:
        assert _stop(proc) == 0
        reader.join(10)
        os.close(master)
    s = screen()
    board = s[s.rindex("perpstream   "):s.rindex("store: ")]  # the last board drawn
    assert max(len(line) for line in board.split("\n")) <= 80
    assert "symbol" in s and "funding" in s and "open int." in s
    assert "stopped after" in s and "data:" in s


def test_the_live_source_with_a_backfill_stores_history_then_live_points(tmp_path: Path) -> None:
    from tests.fakes.binance import FakeBinance

    symbols = ["BTCUSDT", "币安人生USDT"]
    log_path = tmp_path / "up.log"
    with FakeBinance(symbols) as fake, log_path.open("w") as log:
        started_ms = int(time.time() * 1000)
        proc = subprocess.Popen(
            [sys.executable, "-m", "perpstream.cli", "up", "--symbols", ",".join(symbols),
             "--ws-url", fake.ws_url, "--rest-url", fake.rest_url, "--backfill", "5m",
             "--no-ui", "--http-port", "0"],
            env=_env(tmp_path / "state"), stdout=log, stderr=subprocess.STDOUT, text=True)
        endpoint = tmp_path / "state" / "endpoint.json"
        try:
            wait_for(endpoint.exists, 90, "the endpoint file", alive=(proc,))
            host, port = json.loads(endpoint.read_text())["url"].removeprefix("http://").rsplit(":", 1)
            client = clickhouse_connect.get_client(host=host, port=int(port))

            def split() -> tuple[int, int]:
                """(closed 1 m marks of the last 5 minutes, live marks): the fake's live
                stream runs on a clock of its own, far from the wall clock."""
                history = (f"event_time >= fromUnixTimestamp64Milli({started_ms - 5 * 60_000}) AND "
                           f"event_time < fromUnixTimestamp64Milli({started_ms})")
                old, new = client.query(
                    f"SELECT countIf({history}), countIf(NOT ({history})) "
                    f"FROM {DB}.metric_points WHERE metric = 'mark_price'").result_rows[0]
                return int(old), int(new)

            wait_for(lambda: split()[0] >= 4 * len(symbols) and split()[1] >= 5 * len(symbols), 90,
                     "history (closed minutes) and live marks stored", alive=(proc,))
        finally:
            assert _stop(proc) == 0, log_path.read_text()[-3000:]
    kinds = [r[0] for r in fake.rest_requests]
    assert kinds[0] == "ping", "the prerequisites check asks the exchange first"


def test_on_apache_kafka_nothing_acknowledged_is_lost_to_a_kill(tmp_path: Path, apache_kafka: None) -> None:
    """``up --broker kafka``: the local Apache Kafka keeps its logs in the data directory, so
    after ``kill -9`` of ``up`` (its broker dies with it) and a restart on the same directory,
    every point the producer had seen acknowledged before the kill reaches ClickHouse."""
    from perpstream.soak import scrape

    data_dir = tmp_path / "state"
    log_path = tmp_path / "up.log"
    proc, url, _ = _up_on_kafka(data_dir, log_path)
    try:
        wait_for(lambda: scrape(METRICS_PORT).get("points_delivered", 0) > 200, 120,
                 "points acknowledged by Apache Kafka", alive=(proc,))
        acknowledged = int(scrape(METRICS_PORT)["points_delivered"])
        killed_ms = int(time.time() * 1000)
        broker_pids = _children(proc.pid)
        proc.kill()
        proc.wait(30)
        wait_for(lambda: not any(_alive(p) for p in broker_pids), 30, "the broker gone with up")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (data_dir / "kafka" / "cluster.json").exists()
    (data_dir / "endpoint.json").unlink()  # left by the killed run; wait for the new one
    # started again without --broker: the data directory's Apache Kafka is chosen again
    proc, url, _ = _up(data_dir, tmp_path / "up2.log")
    try:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        client = clickhouse_connect.get_client(host=host, port=int(port))

        def stored_before_kill() -> int:
            return int(client.command(
                f"SELECT uniqExact(symbol, metric, event_time) FROM {DB}.metric_points "
                f"WHERE ingest_time <= fromUnixTimestamp64Milli({killed_ms})"))

        wait_for(lambda: stored_before_kill() >= acknowledged, 120,
                 f"the {acknowledged} points acknowledged before the kill stored", alive=(proc,))
        assert "Apache Kafka" in (tmp_path / "up2.log").read_text()
    finally:
        assert _stop(proc) == 0, (tmp_path / "up2.log").read_text()[-3000:]


def _up_on_kafka(data_dir: Path, log_path: Path) -> tuple[subprocess.Popen[str], str, float]:
    log = log_path.open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "perpstream.cli", "up", "--broker", "kafka", "--source", "sim",
         "--sim-symbols", "4", "--no-ui", "--http-port", "0", "--metrics-port", str(METRICS_PORT)],
        env=_env(data_dir), stdout=log, stderr=subprocess.STDOUT, text=True,
    )
    log.close()
    endpoint = data_dir / "endpoint.json"
    wait_for(lambda: endpoint.exists() or proc.poll() is not None, 120, "the endpoint file")
    assert proc.poll() is None, log_path.read_text()[-3000:]
    return proc, json.loads(endpoint.read_text())["url"], time.time()
