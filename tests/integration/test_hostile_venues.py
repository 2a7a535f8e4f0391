"""Hostile frames from a venue into a running ``perpstream produce --venues X`` (Bybit,
Hyperliquid, OKX).

The fake venue streams its market; once the producer reads it, the fake injects
hostile frames on every open connection (perpstream/fakes/*.py ``inject``): data the
parser must reject, each of a known reason, and answers with ids and data that are
not the producer's, which must not be taken for anything. The producer must keep
running on the same connections (a frame that raises in the read loop would replace
the socket), count each rejected frame once in
``frames_rejected{reason=…,source=…}`` on ``--metrics-port``, publish nothing of
them, and keep publishing the fake's good frames, exactly as the fake sent them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from perpstream.fakes.bybit import FakeBybit
from perpstream.fakes.hyperliquid import FakeHyperliquid
from perpstream.fakes.okx import FakeOkx
from perpstream.local import free_port
from tests.fakes import read_topic
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
T0 = 1_790_000_000_000
_SERIES = re.compile(r'^perpstream_frames_rejected\{reason="([^"]*)",source="([^"]*)"\} (\S+)$', re.M)


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return str(resp.read().decode())
    except OSError:
        return ""


def rejected(port: int, source: str) -> Counter[str]:
    return Counter({r: int(float(n)) for r, s, n in _SERIES.findall(scrape(port)) if s == source})


def produce(venue: str, fake: Any, kafka_bootstrap: str, topic: str, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPSTREAM_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONIOENCODING="utf-8", PERPSTREAM_LOG_FORMAT="json")
    return subprocess.Popen(
        [sys.executable, "-m", "perpstream.cli", "produce", "--venues", venue,
         f"--{venue}-ws-url", fake.ws_url, f"--{venue}-rest-url", fake.rest_url,
         "--bootstrap-servers", kafka_bootstrap, "--topic", topic,
         "--metrics-port", str(port)],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, encoding="utf-8")


@pytest.fixture
def stopped() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes to stop at the end, whatever happened (a failed test must not leave one)."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.communicate()


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"produce exited {proc.returncode}:\n{err[-3000:]}"
    return err


def flowing(names: list[str], after: int) -> Callable[[list[tuple[bytes, dict[str, Any]]]], bool]:
    """True once the topic holds a mark price of every name with an event time from ``after`` on."""
    def done(recs: list[tuple[bytes, dict[str, Any]]]) -> bool:
        seen = {r["symbol"] for _, r in recs if r["metric"] == "mark_price" and r["event_time"] >= after}
        return seen >= set(names)
    return done


def publishing(port: int, proc: subprocess.Popen[str]) -> None:
    wait_for(lambda: "perpstream_points_published" in scrape(port), what="points published", alive=(proc,))


def _bybit(kind: str, symbol: str = "BTCUSDT", topic: str | None = None, **data: Any) -> str:
    ts: Any = data.pop("ts", T0)
    env = {"topic": topic or f"tickers.{symbol}", "type": kind, "data": {"symbol": symbol, **data}, "cs": 1}
    if ts is not None:
        env["ts"] = ts
    return json.dumps(env)


#: Frames Bybit's parser must reject, by reason (the symbols followed are BTCUSDT and ETHUSDT).
BYBIT_REJECTED: list[tuple[str, str]] = [
    (_bybit("delta", "SOLUSDT", markPrice="150.1"), "delta_before_snapshot"),
    (_bybit("delta", "BTCUSDT", topic="tickers.ETHUSDT", markPrice="1.5"), "unexpected_topic"),
    (_bybit("delta", markPrice="NaN"), "non_finite"),
    (_bybit("delta", indexPrice="1e400"), "non_finite"),
    (_bybit("delta", markPrice=17217.33), "bad_number"),
    (_bybit("delta", fundingRate=" 0.0001"), "bad_number"),
    (_bybit("delta", nextFundingTime="9" * 40), "bad_timestamp"),
    (_bybit("delta", "btcusdt"), "bad_symbol"),
    (_bybit("update"), "unexpected_event"),
    (_bybit("delta", ts=None, markPrice="1.5"), "missing_field"),
    ('{"topic":"tickers.BTCUSDT","type":"delta","data":[],"ts":1790000000000}', "not_object"),
    ('{"topic":"tickers.BTCUSDT","type":"delta","data":{', "bad_json"),
    ('{"topic":"tickers.BTCUSDT","pad":"' + "x" * 4_000_000 + '"}', "too_large"),
]
#: Answers that are not to the producer's requests: never counted, never a reason to reconnect.
BYBIT_ANSWERS: list[str] = [
    json.dumps({"success": True, "ret_msg": "", "conn_id": "c", "req_id": "\u00b2", "op": "subscribe"}),
    json.dumps({"success": True, "ret_msg": "", "conn_id": "c", "req_id": "9" * 5000, "op": "subscribe"}),
    json.dumps({"success": True, "ret_msg": "", "conn_id": "c", "req_id": "424242", "op": "unsubscribe"}),
    json.dumps({"success": True, "ret_msg": "pong", "conn_id": "c", "req_id": [1], "op": "ping"}),
]


def _push(coin: Any, channel: str = "activeAssetCtx", **ctx: Any) -> str:
    full = {"funding": "0.0000125", "openInterest": "26142.5", "oraclePx": "97005.0", "markPx": "97015.0",
            **ctx}
    return json.dumps({"channel": channel, "data": {"coin": coin, "ctx": {k: v for k, v in full.items()
                                                                         if v is not None}}})


HYPERLIQUID_REJECTED: list[tuple[str, str]] = [
    (_push("BTC\u200b"), "bad_symbol"),
    (_push("xyz:TSLA"), "bad_symbol"),
    (_push("BTC "), "bad_symbol"),
    (_push("@107"), "unexpected_event"),
    (_push("PURR/USDC", "activeSpotAssetCtx"), "unexpected_event"),
    (_push("BTC", markPx=None), "missing_field"),
    (_push("BTC", markPx="NaN"), "non_finite"),
    (_push("BTC", openInterest=-3), "bad_number"),
    (_push("BTC").replace('"97015.0"', "9" * 400), "bad_number"),
    ('{"channel":"activeAssetCtx","data":{"coin":"BTC","ctx":"x"}}', "not_object"),
    ('{"channel":"activeAssetCtx","data":{', "bad_json"),
    (_push("BTC", pad="x" * 70_000), "too_large"),
]
HYPERLIQUID_ANSWERS: list[str] = [
    '{"channel":"error","data":' + "[" * 1_000 + "]" * 1_000 + "}",
    '{"channel":"subscriptionResponse","data":null}',
    '{"channel":"pong","data":[1,{"a":null}]}',
]


def _okx(channel: str, inst: str, *items: Any) -> str:
    return json.dumps({"arg": {"channel": channel, "instId": inst}, "data": list(items)})


_MARK = {"instType": "SWAP", "instId": "BTC-USDT-SWAP", "markPx": "60000.1", "ts": str(T0)}
#: Pushes OKX's parser must reject whole, by reason (the swaps followed are BTC- and ETH-USDT-SWAP).
OKX_REJECTED: list[tuple[str, str]] = [
    (_okx("mark-price", "BTC-USDT-SWAP", _MARK, {**_MARK, "markPx": "NaN"}), "non_finite"),
    (_okx("mark-price", "BTC-USDT-SWAP", _MARK, {**_MARK, "markPx": "-1"}), "bad_number"),
    (_okx("mark-price", "BTC-USDT-SWAP", {**_MARK, "ts": "1.79e12"}), "bad_timestamp"),
    (_okx("mark-price", "BTC-USDT-SWAP", _MARK, {**_MARK, "instId": "ETH-USDT-SWAP"}), "unexpected_topic"),
    (_okx("tickers", "BTC-USDT-SWAP", _MARK), "unexpected_topic"),
    (_okx("index-tickers", "DOGE-USDT", {"idxPx": "0.1", "ts": str(T0)}), "unknown_index"),
    (_okx("mark-price", "btc-usdt-swap", {**_MARK, "instId": "btc-usdt-swap"}), "bad_symbol"),
    (_okx("open-interest", "BTC-USDT-SWAP", {"instId": "BTC-USDT-SWAP", "oi": "22", "ts": str(T0)}),
     "missing_field"),
    ('{"arg":{"channel":"mark-price","instId":"BTC-USDT-SWAP"},"data":"x"}', "not_object"),
    ('{"arg":{"channel":"mark-price","instId":"BTC-USDT-SWAP"},"data":[', "bad_json"),
    (json.dumps({"event": "notice", "code": "64008", "msg": "closing soon"}), "unexpected_event"),
    ('{"arg":{"channel":"mark-price","instId":"BTC-USDT-SWAP"},"data":[{"pad":"' + "x" * 4_000_000 + '"}]}',
     "too_large"),
]
OKX_ANSWERS: list[str] = [
    json.dumps({"id": "\u00b2", "event": "subscribe", "arg": {"channel": "mark-price", "instId": "X"}}),
    json.dumps({"id": "1" * 33, "event": "unsubscribe", "arg": {"channel": 5}}),
    "pong",
]


def _inject_and_count(fake: Any, port: int, source: str, proc: subprocess.Popen[str],
                      hostile: list[tuple[str, str]], answers: list[str]) -> None:
    """Inject the frames on every connection; each rejected one is counted once, by reason,
    the answers not at all, and no connection is replaced."""
    before = rejected(port, source)
    connections = fake.connections_total
    sockets = fake.inject(*answers, *(frame for frame, _ in hostile))
    assert sockets >= 1
    expected = before + Counter({r: n * sockets for r, n in Counter(r for _, r in hostile).items()})

    def counted(what: str) -> None:
        try:
            wait_for(lambda: rejected(port, source) == expected, timeout=30, alive=(proc,), what=what)
        except AssertionError as exc:
            got, opened = dict(rejected(port, source)), fake.connections_total - connections
            raise AssertionError(f"{exc}\n  expected {dict(expected)}\n  counted  {got}\n"
                                 f"  connections opened since: {opened}") from None

    counted(f"frames_rejected of {source} to count every hostile frame once")
    fake.inject(*answers)  # the answers alone, after the rest was read: still nothing counted
    fake.inject(hostile[0][0])
    expected[hostile[0][1]] += sockets
    counted("the answers to count nothing")
    assert fake.connections_total == connections, "a hostile frame made the producer reconnect"


def test_bybit_hostile_frames_are_counted_and_the_good_ones_still_flow(
    kafka_bootstrap: str, topic_factory: Callable[..., str], stopped: list[subprocess.Popen[str]],
) -> None:
    topic, port = topic_factory(3), free_port()
    symbols = ["BTCUSDT", "ETHUSDT"]
    with FakeBybit(symbols, rate=10) as fake:
        proc = produce("bybit", fake, kafka_bootstrap, topic, port)
        stopped.append(proc)
        wait_for(lambda: {e["data"]["symbol"] for e in fake.sent_tickers} == set(symbols),
                 what="every ticker subscribed", alive=(proc,))
        publishing(port, proc)
        _inject_and_count(fake, port, "bybit_linear", proc, BYBIT_REJECTED, BYBIT_ANSWERS)
        after = fake.start_ms + (fake.k + 20) * fake.tick_ms  # two seconds of tickers after the last frame
        records = read_topic(kafka_bootstrap, topic, timeout=120, quiet=0, until=flowing(symbols, after))
        fake.paused = True
        sent = {(e["data"]["symbol"], f, e["ts"]): v for e in list(fake.sent_tickers)
                for f, v in e["data"].items()}
        stop(proc)
    fields = {"mark_price": "markPrice", "index_price": "indexPrice", "funding_rate": "fundingRate",
              "next_funding_time": "nextFundingTime", "open_interest": "openInterest"}
    assert {r["symbol"] for _, r in records} == set(symbols)
    for _, r in records:  # every value is one the fake sent, at the time it sent it: none is hostile
        if r["metric"] != "funding_interval_hours":
            assert float(sent[(r["symbol"], fields[r["metric"]], r["event_time"])]) == r["value"], r


def test_hyperliquid_hostile_frames_are_counted_and_the_good_ones_still_flow(
    kafka_bootstrap: str, topic_factory: Callable[..., str], stopped: list[subprocess.Popen[str]],
) -> None:
    topic, port = topic_factory(3), free_port()
    coins = ["BTC", "ETH", "kPEPE"]
    with FakeHyperliquid(coins, delisted=(), rate=4.0) as fake:
        proc = produce("hyperliquid", fake, kafka_bootstrap, topic, port)
        stopped.append(proc)
        wait_for(lambda: {c for _, c, _ in fake.sent} == set(coins), what="every coin subscribed",
                 alive=(proc,))
        publishing(port, proc)
        _inject_and_count(fake, port, "hyperliquid", proc, HYPERLIQUID_REJECTED, HYPERLIQUID_ANSWERS)
        after = int(time.time() * 1000) + 2_000  # event time is the receive time
        records = read_topic(kafka_bootstrap, topic, timeout=120, quiet=0, until=flowing(coins, after))
        fake.paused = True
        sent: dict[tuple[str, str], set[float]] = {}
        for _, coin, frame in list(fake.sent):
            ctx = json.loads(frame)["data"]["ctx"]
            for field, metric in (("markPx", "mark_price"), ("oraclePx", "index_price"),
                                  ("funding", "funding_rate"), ("openInterest", "open_interest")):
                sent.setdefault((coin, metric), set()).add(float(ctx[field]))
        stop(proc)
    assert {r["symbol"] for _, r in records} == set(coins)
    for _, r in records:  # every value is one the fake sent for that coin: none is hostile
        if (r["symbol"], r["metric"]) in sent:
            assert r["value"] in sent[(r["symbol"], r["metric"])], r


def test_okx_hostile_frames_are_counted_and_the_good_ones_still_flow(
    kafka_bootstrap: str, topic_factory: Callable[..., str], stopped: list[subprocess.Popen[str]],
) -> None:
    topic, port = topic_factory(3), free_port()
    swaps = ["BTC-USDT-SWAP", "ETH-USDT-SWAP"]
    with FakeOkx(swaps, funding_push_ms=1000, oi_interval_ms=1000) as fake:
        proc = produce("okx", fake, kafka_bootstrap, topic, port)
        stopped.append(proc)
        wait_for(lambda: set(swaps) <= {p["arg"]["instId"] for p in fake.pushes
                                        if p["arg"]["channel"] == "funding-rate"},
                 what="every swap's funding pushed", alive=(proc,))
        publishing(port, proc)
        _inject_and_count(fake, port, "okx_swap", proc, OKX_REJECTED, OKX_ANSWERS)
        after = int(time.time() * 1000) + 2_000
        records = read_topic(kafka_bootstrap, topic, timeout=120, quiet=0, until=flowing(swaps, after))
        fake.paused = True
        sent = okx_sent(list(fake.pushes), {s: s.removesuffix("-SWAP") for s in swaps})
        stop(proc)
    assert {r["symbol"] for _, r in records} == set(swaps)
    for _, r in records:  # every value is one the fake sent, at the time it sent it: none is hostile
        assert sent[(r["symbol"], r["metric"], r["event_time"])] == r["value"], r


def okx_sent(pushes: list[dict[str, Any]], index_of: dict[str, str]) -> dict[tuple[str, str, int], float]:
    """(swap, metric, ts) -> value of what the fake pushed, as OKX's docs say to read it."""
    out: dict[tuple[str, str, int], float] = {}
    for push in pushes:
        channel, inst = push["arg"]["channel"], push["arg"]["instId"]
        for item in push["data"]:
            ts = int(item["ts"])
            if channel == "mark-price":
                out[(inst, "mark_price", ts)] = float(item["markPx"])
            elif channel == "index-tickers":
                out.update({(s, "index_price", ts): float(item["idxPx"])
                            for s, i in index_of.items() if i == inst})
            elif channel == "open-interest":
                out[(inst, "open_interest", ts)] = float(item["oiCcy"])
            else:
                at, after = int(item["fundingTime"]), int(item["nextFundingTime"])
                out.update({(inst, "funding_rate", ts): float(item["fundingRate"]),
                            (inst, "next_funding_time", ts): float(at),
                            (inst, "funding_interval_hours", ts): (after - at) / 3_600_000})
    return out
