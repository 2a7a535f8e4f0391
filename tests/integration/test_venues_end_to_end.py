"""Each venue end to end, through the commands a user runs: ``perpstream produce --venues X``
against the fake venue, then ``perpstream sink``, then ``perpstream query latest``.

What the topic must hold is computed here, independently, from what the fake sent:
per (symbol, metric) and whole second of event time, the last value the venue sent in
that second, with its own event time (the conflation rule, docs/producer.md "Venues"),
plus one ``funding_interval_hours`` point per symbol from the listing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from perpstream.fakes.bybit import FakeBybit
from perpstream.fakes.hyperliquid import FakeHyperliquid
from perpstream.fakes.okx import DEFAULT_SWAPS, FakeOkx
from perpstream.fakes.server import FakeVenue
from tests.fakes import read_topic
from tests.integration.test_sink_support import committed_total
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "perpstream.cli"]

BYBIT_SYMBOLS = ["1000PEPEUSDT", "BTCUSDT", "SHIB1000USDT"]
BYBIT_FIELDS = {"markPrice": "mark_price", "indexPrice": "index_price", "fundingRate": "funding_rate",
                "nextFundingTime": "next_funding_time", "openInterest": "open_interest"}

HYPERLIQUID_FIELDS = {"markPx": "mark_price", "oraclePx": "index_price", "funding": "funding_rate",
                      "openInterest": "open_interest"}

Key = tuple[str, str, int]  # symbol, metric, event time


def conflated_bybit(sent: list[dict[str, Any]], span_ms: int = 1000) -> dict[Key, float]:
    """Per (symbol, metric, second): the last value a ticker message carried in it."""
    last: dict[tuple[str, str, int], tuple[int, float]] = {}
    for env in sent:
        ts, data = env["ts"], env["data"]
        for field, metric in BYBIT_FIELDS.items():
            if field in data:
                last[(data["symbol"], metric, ts // span_ms)] = (ts, float(data[field]))
    return {(sym, metric, ts): value for (sym, metric, _), (ts, value) in last.items()}


def stop(proc: subprocess.Popen[str], what: str) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"{what} exited {proc.returncode}:\n{err[-3000:]}"
    return err


@dataclass
class Run:
    """One venue's run: its topic and sink group, the ClickHouse DSN and the commands'
    environment (with a DLQ topic of its own)."""

    kafka_bootstrap: str
    topic: str
    group: str
    dsn: str
    env: dict[str, str]

    @contextmanager
    def produce(self, venue: str, fake: FakeVenue[Any], **env: str) -> Iterator[subprocess.Popen[str]]:
        """``perpstream produce --venues <venue>`` pointed at ``fake``, killed on the way out if
        still running (a test stops it with :func:`stop`, to read its last log line)."""
        produce = subprocess.Popen(
            [*CLI, "produce", "--venues", venue, f"--{venue}-ws-url", fake.ws_url,
             f"--{venue}-rest-url", fake.rest_url, "--bootstrap-servers", self.kafka_bootstrap,
             "--topic", self.topic],
            cwd=ROOT, env={**self.env, **env}, stderr=subprocess.PIPE, text=True, encoding="utf-8")
        try:
            yield produce
        finally:
            if produce.poll() is None:
                produce.kill()
                produce.communicate()

    def stored_latest(self, delivered: int) -> dict[str, dict[str, tuple[int, float]]]:
        """``perpstream sink`` the whole topic, then ``perpstream query latest``: symbol -> metric ->
        (event time, value), funding intervals left out (one venue per topic here)."""
        database = f"venues_{uuid.uuid4().hex[:8]}"
        sink = subprocess.Popen(
            [*CLI, "sink", "--bootstrap-servers", self.kafka_bootstrap, "--clickhouse-dsn", self.dsn,
             "--database", database, "--topic", self.topic, "--group-id", self.group],
            cwd=ROOT, env=self.env, stderr=subprocess.PIPE, text=True, encoding="utf-8")
        try:
            wait_for(lambda: sum(max(o, 0) for o in committed_total(
                self.kafka_bootstrap, self.group, self.topic, 3).values()) >= delivered,
                what="the sink committed the whole topic", timeout=180, alive=(sink,))
            stop(sink, "sink")
        finally:
            if sink.poll() is None:
                sink.kill()
                sink.communicate()
        q = subprocess.run(
            [*CLI, "query", "latest", "--clickhouse-dsn", self.dsn, "--database", database, "--format",
             "json"],
            cwd=ROOT, env=self.env, capture_output=True, text=True, encoding="utf-8", timeout=120)
        assert q.returncode == 0, q.stderr[-3000:]
        out: dict[str, dict[str, tuple[int, float]]] = {}
        for r in map(json.loads, q.stdout.splitlines()):
            if r["metric"] != "funding_interval_hours":
                out.setdefault(r["symbol"], {})[r["metric"]] = (r["event_time_ms"], r["value"])
        return out


@pytest.fixture
def run(kafka_bootstrap: str, topic_factory: Callable[..., str], group_factory: Callable[..., str],
        clickhouse_dsn: str, tmp_path: Path) -> Run:
    topic, dlq, group = topic_factory(3), topic_factory(1), group_factory()
    dsn = f"chdb://{tmp_path / 'chdb'}" if clickhouse_dsn.startswith("chdb") else clickhouse_dsn
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPSTREAM_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONIOENCODING="utf-8", PERPSTREAM_LOG_FORMAT="json",
               PERPSTREAM_DLQ_TOPIC=dlq, PERPSTREAM_SESSION_TIMEOUT_MS="6000",
               PERPSTREAM_HEARTBEAT_INTERVAL_MS="500")
    return Run(kafka_bootstrap, topic, group, dsn, env)


def points_delivered(err: str) -> int:
    """``points_delivered`` of the producer's last log line."""
    return int(next(json.loads(line) for line in reversed(err.splitlines())
                    if line.startswith("{") and "producer stopped" in line)["points_delivered"])


def latest_of(expected: dict[Key, float]) -> dict[str, dict[str, tuple[int, float]]]:
    """symbol -> metric -> (event time, value) of the latest point in ``expected``."""
    latest: dict[str, dict[str, tuple[int, float]]] = {}
    for (sym, metric, et), value in expected.items():
        if et >= latest.setdefault(sym, {}).get(metric, (0, 0.0))[0]:
            latest[sym][metric] = (et, value)
    return latest


def test_bybit_end_to_end_under_the_conflation_rule(run: Run) -> None:
    with FakeBybit(BYBIT_SYMBOLS, rate=10) as fake, \
            run.produce("bybit", fake, PERPSTREAM_EXCHANGE_INFO_INTERVAL="1") as produce:
        wait_for(lambda: len({e["data"]["symbol"] for e in fake.sent_tickers}) == len(BYBIT_SYMBOLS),
                 what="every ticker subscribed", alive=(produce,))
        k0 = fake.k
        wait_for(lambda: fake.k >= k0 + 35, what="3.5 s of tickers", alive=(produce,))
        wait_for(lambda: sum(1 for r in fake.rest_requests if "instruments-info" in r[0]) >= 3,
                 what="the listing refreshed", alive=(produce,))
        fake.paused = True  # nothing new from here: the last second's values are then released
        expected = conflated_bybit(list(fake.sent_tickers))
        records = read_topic(run.kafka_bootstrap, run.topic, timeout=120, quiet=0, until=lambda recs: (
            set(expected) <= {(r["symbol"], r["metric"], r["event_time"]) for _, r in recs}))
        err = stop(produce, "produce --venues bybit")

    assert {r["source"] for _, r in records} == {"bybit_linear"}
    got = {(r["symbol"], r["metric"], r["event_time"]): r["value"]
           for _, r in records if r["metric"] != "funding_interval_hours"}
    assert got == expected, "the topic is not the conflated ticker stream"
    intervals = [(r["symbol"], r["value"]) for _, r in records if r["metric"] == "funding_interval_hours"]
    # one point per symbol, though the listing was read again every second
    assert sorted(intervals) == [(s, 8.0) for s in BYBIT_SYMBOLS]
    assert {key for key, _ in records} == {s.encode() for s in BYBIT_SYMBOLS}
    delivered = points_delivered(err)
    assert delivered == len(records)
    assert run.stored_latest(delivered) == latest_of(expected)


def test_hyperliquid_end_to_end_with_receive_time_as_event_time(run: Run) -> None:
    """Hyperliquid sends no timestamp: event time is the receive time, so what the topic holds is
    checked against the rule itself: at most one point per (coin, metric, second), values the venue
    sent in the order it sent them, the last one sent last, next funding at the next whole hour."""
    coins = ["BTC", "ETH", "kPEPE"]
    with FakeHyperliquid(coins, delisted=(), rate=4.0) as fake, run.produce("hyperliquid", fake) as produce:
        wait_for(lambda: {c for _, c, _ in fake.sent} == set(coins), what="every coin subscribed",
                 alive=(produce,))
        k0 = fake.k
        wait_for(lambda: fake.k >= k0 + 14, what="3.5 s of pushes", alive=(produce,))
        fake.paused = True
        sent: dict[tuple[str, str], list[float]] = {}
        for _, coin, frame in list(fake.sent):
            ctx = json.loads(frame)["data"]["ctx"]
            for field, metric in HYPERLIQUID_FIELDS.items():
                sent.setdefault((coin, metric), []).append(float(ctx[field]))
        records = read_topic(run.kafka_bootstrap, run.topic, timeout=120, quiet=0, until=lambda recs: all(
            any(r["symbol"] == c and r["metric"] == m and r["value"] == values[-1] for _, r in recs)
            for (c, m), values in sent.items()))
        err = stop(produce, "produce --venues hyperliquid")

    assert {r["source"] for _, r in records} == {"hyperliquid"}
    assert {r["symbol"] for _, r in records} == set(coins)  # kPEPE as Hyperliquid spells it
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _, r in sorted(records, key=lambda kr: kr[1]["event_time"]):
        by_key.setdefault((r["symbol"], r["metric"]), []).append(r)
    for (coin, metric), values in sent.items():
        points = by_key[(coin, metric)]
        seconds = [p["event_time"] // 1000 for p in points]
        assert len(set(seconds)) == len(seconds), f"{coin} {metric}: two points in one second"
        assert all(p["event_time"] == p["ingest_time"] for p in points)  # receive time, no venue time
        assert points[-1]["value"] == values[-1]
        it = iter(values)  # the topic's values are a subsequence of what was sent, in order
        assert all(any(p["value"] == v for v in it) for p in points), f"{coin} {metric}: out of order"
    for coin in coins:
        assert [r["value"] for r in by_key[(coin, "funding_interval_hours")]] == [1.0]
        for p in by_key[(coin, "next_funding_time")]:
            assert p["value"] == (p["event_time"] // 3_600_000 + 1) * 3_600_000
    delivered = points_delivered(err)
    assert delivered == len(records)
    expected = {c: {m: (ps[-1]["event_time"], ps[-1]["value"]) for (c2, m), ps in by_key.items()
                    if c2 == c and m != "funding_interval_hours"} for c in coins}
    assert run.stored_latest(delivered) == expected


OKX_FOLLOWED = [s for s in DEFAULT_SWAPS if s.ct_type == "linear" and s.state == "live"]


def conflated_okx(pushes: list[dict[str, Any]], span_ms: int = 1000) -> dict[Key, float]:
    """What the OKX pushes mean, conflated: marks, the index of every followed swap on it, the rate
    for the settlement at ``fundingTime`` with that time as the next funding, open interest in coin."""
    ulys: dict[str, list[str]] = {}
    for swap in OKX_FOLLOWED:
        ulys.setdefault(swap.uly, []).append(swap.inst_id)
    last: dict[tuple[str, str, int], tuple[int, float]] = {}
    for push in pushes:
        channel, inst = push["arg"]["channel"], push["arg"]["instId"]
        for item in push["data"]:
            ts = int(item["ts"])
            values: list[tuple[str, str, float]] = []
            if channel == "mark-price":
                values.append((inst, "mark_price", float(item["markPx"])))
            elif channel == "index-tickers":
                values.extend((swap, "index_price", float(item["idxPx"])) for swap in ulys.get(inst, []))
            elif channel == "open-interest":
                values.append((inst, "open_interest", float(item["oiCcy"])))
            elif channel == "funding-rate":
                values += [(inst, "funding_rate", float(item["fundingRate"])),
                           (inst, "next_funding_time", float(item["fundingTime"]))]
            for sym, metric, value in values:
                last[(sym, metric, ts // span_ms)] = (ts, value)
    return {(sym, metric, ts): value for (sym, metric, _), (ts, value) in last.items()}


def test_okx_end_to_end_under_the_conflation_rule(run: Run) -> None:
    followed = {s.inst_id for s in OKX_FOLLOWED}
    with FakeOkx(funding_push_ms=1000, oi_interval_ms=1000) as fake, run.produce("okx", fake) as produce:
        wait_for(lambda: followed == {p["arg"]["instId"] for p in fake.pushes
                                      if p["arg"]["channel"] == "funding-rate"},
                 what="every swap's funding pushed", alive=(produce,))
        n0 = len(fake.pushes)
        wait_for(lambda: len(fake.pushes) >= n0 + 60, what="more pushes", alive=(produce,))
        fake.paused = True
        expected = conflated_okx(list(fake.pushes))
        records = read_topic(run.kafka_bootstrap, run.topic, timeout=120, quiet=0, until=lambda recs: (
            set(expected) <= {(r["symbol"], r["metric"], r["event_time"]) for _, r in recs}))
        err = stop(produce, "produce --venues okx")

    assert {r["source"] for _, r in records} == {"okx_swap"}
    got = {(r["symbol"], r["metric"], r["event_time"]): r["value"]
           for _, r in records if r["metric"] != "funding_interval_hours"}
    assert got == expected, "the topic is not the conflated OKX stream"
    intervals = sorted((r["symbol"], r["value"]) for _, r in records
                       if r["metric"] == "funding_interval_hours")
    # from nextFundingTime - fundingTime, once per swap: 4 h PEPE, 1 h BONK, 8 h the others
    assert intervals == sorted((s.inst_id, float(s.funding_interval_h)) for s in OKX_FOLLOWED)
    delivered = points_delivered(err)
    assert delivered == len(records)
    assert run.stored_latest(delivered) == latest_of(expected)
