"""Symbols as Binance spells them, end to end, through the commands a user runs.

The fake exchange lists ``1000PEPEUSDT``, ``BTCUSDT``, the CJK-named perpetual
``币安人生USDT``, the dated delivery contract ``BTCUSDT_261225`` and one entry
whose symbol breaks the rule. ``perpstream produce --all`` follows the
perpetuals (the documented ``--all`` set: PERPETUAL contracts with status
TRADING); the delivery contract is followed by a second ``perpstream produce
--symbols BTCUSDT_261225``. Then ``perpstream sink`` stores the topic in
ClickHouse and ``perpstream query latest --symbol <each>`` must answer, for
every symbol, exactly the values the fake exchange sent.

Along the way: stream names on the wire are the symbols lower-cased, the
openInterest query strings are UTF-8 percent-encoded, Kafka keys are the
symbols' UTF-8 bytes, the broken listing entry is skipped, counted and
logged once, and the delivery contract has no funding metrics.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from perpstream.local import free_port
from tests.fakes import read_topic
from tests.fakes.binance import FakeBinance, contract_entry
from tests.integration.test_sink_support import committed_total
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]

PERPETUALS = ["1000PEPEUSDT", "BTCUSDT", "币安人生USDT"]
DELIVERY = "BTCUSDT_261225"
#: Listed as a trading perpetual, but lower-case ASCII and a space break the symbol rule.
BROKEN = {**contract_entry("BADUSDT"), "symbol": "bad usdt"}



def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def stop(proc: subprocess.Popen[str], what: str) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"{what} exited {proc.returncode}:\n{err[-3000:]}"
    return err


def log_lines(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_exchange_spelled_symbols_reach_clickhouse_unchanged(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_factory: Callable[..., str],
    clickhouse_dsn: str, tmp_path: Path,
) -> None:
    topic, dlq, group = topic_factory(3), topic_factory(1), group_factory()
    # The session's embedded ClickHouse belongs to this test process; the commands
    # are child processes, so they get an embedded directory of their own.
    dsn = f"chdb://{tmp_path / 'chdb'}" if clickhouse_dsn.startswith("chdb") else clickhouse_dsn
    database = f"symbols_{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPSTREAM_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONIOENCODING="utf-8", PERPSTREAM_LOG_FORMAT="json",
               PERPSTREAM_DLQ_TOPIC=dlq, PERPSTREAM_SESSION_TIMEOUT_MS="6000",
               PERPSTREAM_HEARTBEAT_INTERVAL_MS="500", PERPSTREAM_SUMMARY_INTERVAL="5")
    cmd = [sys.executable, "-m", "perpstream.cli"]
    everything = [*PERPETUALS, DELIVERY]

    with FakeBinance(everything, tick=0.2, extra_entries=[BROKEN]) as fake:
        common = ["--rest-url", fake.rest_url, "--ws-url", fake.ws_url,
                  "--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--oi-interval", "0.5"]
        port = free_port()
        # per-symbol streams: their names are what this test checks (--all alone reads the array stream)
        listing = subprocess.Popen([*cmd, "produce", "--all", "--stream-mode", "per_symbol", "--metrics-port",
                                    str(port), *common], cwd=ROOT,
                                   env={**env, "PERPSTREAM_EXCHANGE_INFO_INTERVAL": "1"},
                                   stderr=subprocess.PIPE, text=True, encoding="utf-8")
        dated = subprocess.Popen([*cmd, "produce", "--symbols", DELIVERY, *common],
                                 cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, encoding="utf-8")
        producers = (listing, dated)
        try:
            streams = {f"{s.lower()}@markPrice@1s" for s in everything}
            assert "币安人生usdt@markPrice@1s" in streams  # lower() leaves the CJK letters alone
            wait_for(lambda: fake.open_streams() == streams, what="every stream subscribed", alive=producers)
            k0 = fake.k
            wait_for(lambda: fake.k >= k0 + 5 and {s for s, _ in fake.sent_oi} == set(everything),
                     what="marks and open interest of every symbol", alive=producers)
            wait_for(lambda: "perpstream_listing_symbols_rejected 1" in scrape(port),
                     what="the broken listing entry counted", alive=producers)
            wait_for(lambda: sum(1 for r in fake.rest_requests if r[0] == "exchangeInfo") >= 3,
                     what="the listing refreshed", alive=producers)

            # Freeze the exchange; every symbol's open interest then settles on the
            # frozen second, so nothing newer than what is expected can exist.
            fake.paused = True
            frozen = fake.start_ms + 1000 * fake.k + 500
            wait_for(lambda: all((s, frozen) in fake.sent_oi for s in everything),
                     what="open interest at the frozen time", alive=producers)
            expected = fake.expected_points()
            records = read_topic(kafka_bootstrap, topic, timeout=120, quiet=0, until=lambda recs: (
                set(expected) <= {(r["symbol"], r["metric"], r["event_time"]) for _, r in recs}))
            got = {(r["symbol"], r["metric"], r["event_time"]): r["value"] for _, r in records}
            assert set(expected) <= set(got), "not every point the exchange sent is on the topic"
            assert all(got[k] == v for k, v in expected.items())
            errs = [stop(p, f"produce {p.args[4]}") for p in producers]
        finally:
            for p in producers:
                if p.poll() is None:
                    p.kill()
                    p.communicate()
        assert fake.expected_points().keys() == expected.keys()  # frozen: nothing new was sent

    # Kafka keys are the symbols' UTF-8 bytes
    assert {key for key, _ in records} == {s.encode("utf-8") for s in everything}
    assert all(key == r["symbol"].encode("utf-8") for key, r in records)
    # what went on the wire: lower-cased stream names, UTF-8 percent-encoded queries
    assert {s for sub in fake.subscribes for s in sub} == streams
    assert set(fake.rest_queries) == {"symbol=1000PEPEUSDT", "symbol=BTCUSDT", "symbol=BTCUSDT_261225",
                                      "symbol=%E5%B8%81%E5%AE%89%E4%BA%BA%E7%94%9FUSDT"}
    assert not [r for r in fake.rest_requests if r[2] != 200]  # no request was refused
    # the broken entry: skipped, logged once over several refreshes, the rest of the listing followed
    lines = log_lines(errs[0])
    skipped = [entry for entry in lines if "breaks the symbol rule" in entry["msg"]]
    assert len(skipped) == 1 and skipped[0]["symbol"] == "bad usdt", skipped
    delivered = sum(int(next(entry for entry in reversed(log_lines(e)) if entry["msg"] == "producer stopped")
                        ["points_delivered"]) for e in errs)
    assert delivered >= len(expected)

    # perpstream sink: the whole topic into ClickHouse
    sink = subprocess.Popen(
        [*cmd, "sink", "--bootstrap-servers", kafka_bootstrap, "--clickhouse-dsn", dsn,
         "--database", database, "--topic", topic, "--group-id", group],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, encoding="utf-8")
    try:
        wait_for(lambda: sum(max(o, 0) for o in committed_total(kafka_bootstrap, group, topic, 3).values())
                 >= delivered, what="the sink committed the whole topic", timeout=180, alive=(sink,))
        stop(sink, "sink")
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.communicate()

    # perpstream query latest --symbol <each>: the latest value of every metric is what was sent
    for symbol in everything:
        out = subprocess.run(
            [*cmd, "query", "latest", "--symbol", symbol, "--clickhouse-dsn", dsn, "--database", database,
             "--format", "json"],
            cwd=ROOT, env=env, capture_output=True, text=True, encoding="utf-8", timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        rows = [json.loads(line) for line in out.stdout.splitlines()]
        latest: dict[str, tuple[int, float]] = {}
        for (sym, metric, et), value in expected.items():
            if sym == symbol and et >= latest.get(metric, (0, 0.0))[0]:
                latest[metric] = (et, value)
        assert {r["symbol"] for r in rows} == {symbol}
        assert {r["metric"]: (r["event_time_ms"], r["value"]) for r in rows
                if r["metric"] != "funding_interval_hours"} == latest, symbol
        intervals = [r["value"] for r in rows if r["metric"] == "funding_interval_hours"]
        # every perpetual's interval (fundingInfo); a delivery contract has no funding at all
        assert intervals == ([] if symbol == DELIVERY else [float(fake.funding_interval_hours(symbol))])
        metrics = set(latest)
        if symbol == DELIVERY:  # "r": "" and "T": 0: no funding, not a zero
            assert metrics == {"mark_price", "index_price", "estimated_settle_price", "open_interest"}
        else:
            assert {"funding_rate", "next_funding_time", "open_interest"} <= metrics
