"""The fake Bybit v5 (perpstream.fakes.bybit) behaves as Bybit documents its public linear
market: a plain websocket client and plain HTTP see the documented
acks, snapshot-then-delta tickers, pongs, pages and the 403 of the IP limit."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedOK

from perpstream.fakes.bybit import ARGS_LIMIT, FakeBybit, base_coin

pytestmark = pytest.mark.integration

SYMBOLS = ["BTCUSDT", "ETHUSDT", "1000PEPEUSDT"]


@pytest.fixture
def fake() -> Iterator[FakeBybit]:
    with FakeBybit(SYMBOLS, rate=20.0) as f:
        yield f


def get(fake: FakeBybit, path: str, **params: Any) -> dict[str, Any]:
    url = f"{fake.rest_url}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as r:
        body: dict[str, Any] = json.loads(r.read())
    return body


async def recv(ws: ClientConnection) -> dict[str, Any]:
    msg: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return msg


async def recv_op(ws: ClientConnection, op: str) -> dict[str, Any]:
    """The next reply to ``op``, skipping ticker messages in between."""
    while True:
        msg = await recv(ws)
        if msg.get("op") == op:
            return msg


def test_subscribe_ack_then_snapshot_then_deltas_with_only_changed_fields(fake: FakeBybit) -> None:
    async def run() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with connect(fake.ws_url) as ws:
            await ws.send(json.dumps({"op": "subscribe", "args": ["tickers.BTCUSDT", "tickers.1000PEPEUSDT"],
                                      "req_id": "sub-1"}))
            ack = await recv(ws)
            msgs = [await recv(ws) for _ in range(40)]
        return ack, msgs

    ack, msgs = asyncio.run(run())
    assert ack["success"] is True and ack["op"] == "subscribe" and ack["req_id"] == "sub-1"
    assert ack["ret_msg"] == "" and isinstance(ack["conn_id"], str) and ack["conn_id"]
    for symbol in ("BTCUSDT", "1000PEPEUSDT"):
        mine = [m for m in msgs if m["topic"] == f"tickers.{symbol}"]
        assert mine[0]["type"] == "snapshot" and len(mine) > 5
        assert {m["type"] for m in mine[1:]} == {"delta"}
        state = dict(mine[0]["data"])
        assert {"markPrice", "indexPrice", "fundingRate", "nextFundingTime", "openInterest",
                "fundingIntervalHour"} <= state.keys()
        for m in mine:
            assert set(m) == {"topic", "type", "data", "cs", "ts"}
            assert m["data"]["symbol"] == symbol
        for m in mine[1:]:
            changed = {f for f in m["data"] if f != "symbol"}
            assert changed and all(state[f] != m["data"][f] for f in changed)  # nothing unchanged re-sent
            state.update(m["data"])
        # some fields stay out of some deltas: open interest moves every third tick only
        assert any("openInterest" not in m["data"] for m in mine[1:])
        assert all(isinstance(v, str) for v in state.values())
    cs = [m["cs"] for m in msgs]
    assert cs == sorted(cs) and len(set(cs)) == len(cs)
    ts = [m["ts"] for m in msgs if m["topic"] == "tickers.BTCUSDT"]
    assert {b - a for a, b in itertools.pairwise(ts)} == {50}  # rate=20: one message per 50 ms of ts


def test_ping_gets_the_pong_message(fake: FakeBybit) -> None:
    async def run() -> dict[str, Any]:
        async with connect(fake.ws_url) as ws:
            await ws.send(json.dumps({"op": "ping", "req_id": "p1"}))
            return await recv(ws)

    pong = asyncio.run(run())
    assert pong["success"] is True and pong["ret_msg"] == "pong" and pong["op"] == "ping"
    assert pong["req_id"] == "p1" and pong["conn_id"]


def test_args_past_21000_characters_on_one_connection_are_refused(fake: FakeBybit) -> None:
    many = [f"tickers.{s}" for s in SYMBOLS] * (ARGS_LIMIT // 30)
    assert sum(map(len, many)) > ARGS_LIMIT

    async def run() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        async with connect(fake.ws_url) as ws:
            await ws.send(json.dumps({"op": "subscribe", "args": many, "req_id": "big"}))
            big = await recv_op(ws, "subscribe")
            await ws.send(json.dumps({"op": "subscribe", "args": ["tickers.BTCUSDT"], "req_id": "small"}))
            small = await recv_op(ws, "subscribe")
            await ws.send(json.dumps({"op": "subscribe", "args": ["tickers.NOPEUSDT"], "req_id": "bad"}))
            bad = await recv_op(ws, "subscribe")
        return big, small, bad

    big, small, bad = asyncio.run(run())
    assert big["success"] is False and big["req_id"] == "big" and big["ret_msg"]
    assert small["success"] is True  # the refused args did not count against the connection
    assert bad["success"] is False and "NOPEUSDT" in bad["ret_msg"]


def test_faults_inject_mute_and_drop(fake: FakeBybit) -> None:
    async def run() -> tuple[int, int]:
        async with connect(fake.ws_url) as ws:
            await ws.send(json.dumps({"op": "subscribe", "args": ["tickers.ETHUSDT"]}))
            await recv(ws)  # ack
            assert fake.inject("{not json") == 1
            raw = ""
            while raw != "{not json":  # the injected frame arrives among the tickers
                raw = str(await asyncio.wait_for(ws.recv(), 10))
            assert fake.mute_connections() == 1
            k0 = fake.k
            await ws.send(json.dumps({"op": "ping"}))
            heard = 0
            with contextlib.suppress(TimeoutError):  # muted: no ticker, no pong
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
                    heard += msg.get("op") == "ping"  # tickers sent before the mute may still be in flight
            ticks = fake.k - k0
            assert fake.drop_connections() == 1
            with pytest.raises(ConnectionClosedOK):
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
        return heard, ticks

    pongs, ticks_while_muted = asyncio.run(run())
    assert pongs == 0 and ticks_while_muted >= 10  # silent while the clock kept running


def test_instruments_are_paged_to_the_end() -> None:
    symbols = [f"C{i:03d}USDT" for i in range(25)] + ["1000PEPEUSDT"]
    with FakeBybit(symbols) as fake:
        first = get(fake, "/v5/market/instruments-info", category="linear", limit=10)
        assert first["retCode"] == 0 and first["retMsg"] == "OK" and first["retExtInfo"] == {}
        assert isinstance(first["time"], int)
        seen, body, pages = [], first, 1
        while True:
            seen += body["result"]["list"]
            cursor = body["result"]["nextPageCursor"]
            if not cursor:
                break
            body = get(fake, "/v5/market/instruments-info", category="linear", limit=10, cursor=cursor)
            pages += 1
        assert pages == 3 and sorted(i["symbol"] for i in seen) == sorted(symbols)
        pepe = next(i for i in seen if i["symbol"] == "1000PEPEUSDT")
        assert pepe["baseCoin"] == "1000PEPE" and pepe["contractType"] == "LinearPerpetual"
        assert pepe["status"] == "Trading" and pepe["fundingInterval"] == 480
        assert get(fake, "/v5/market/instruments-info", category="linear", limit=1001)["retCode"] != 0


def test_funding_history_is_newest_first_and_needs_symbol_and_end() -> None:
    with FakeBybit(SYMBOLS, funding_interval_min=240) as fake:
        body = get(fake, "/v5/market/funding/history", category="linear", symbol="ETHUSDT", limit=5)
        rows = body["result"]["list"]
        times = [int(r["fundingRateTimestamp"]) for r in rows]
        assert body["retCode"] == 0 and len(rows) == 5 and times == sorted(times, reverse=True)
        assert all(b - a == 240 * 60_000 for a, b in itertools.pairwise(reversed(times)))
        assert all(float(r["fundingRate"]) == fake.settled_funding("ETHUSDT", t)
                   for r, t in zip(rows, times, strict=True))
        now = int(time.time() * 1000)
        assert get(fake, "/v5/market/funding/history", category="linear", symbol="ETHUSDT",
                   startTime=now - 86_400_000)["retCode"] == 10001
        assert get(fake, "/v5/market/funding/history", category="linear")["retCode"] == 10001
        assert get(fake, "/v5/market/funding/history", category="linear", symbol="ETHUSDT",
                   limit=201)["retCode"] == 10001
        day = get(fake, "/v5/market/funding/history", category="linear", symbol="ETHUSDT",
                  startTime=now - 86_400_000, endTime=now)["result"]["list"]
        assert len(day) in (6, 7)  # every 4 h over one day


def test_open_interest_pages_by_cursor_to_the_start() -> None:
    now = int(time.time() * 1000)
    with FakeBybit(SYMBOLS) as fake:
        end = now - now % 3_600_000
        start = end - 10 * 3_600_000
        q = {"category": "linear", "symbol": "BTCUSDT", "intervalTime": "1h", "startTime": start,
             "endTime": end, "limit": 4}
        seen: list[dict[str, str]] = []
        body = get(fake, "/v5/market/open-interest", **q)
        while True:
            assert body["retCode"] == 0 and body["result"]["symbol"] == "BTCUSDT"
            seen += body["result"]["list"]
            if not body["result"]["nextPageCursor"]:
                break
            body = get(fake, "/v5/market/open-interest", **q, cursor=body["result"]["nextPageCursor"])
        times = [int(r["timestamp"]) for r in seen]
        assert times == list(range(end, start - 1, -3_600_000))
        assert all(float(r["openInterest"]) == fake.open_interest_at("BTCUSDT", t)
                   for r, t in zip(seen, times, strict=True))
        assert get(fake, "/v5/market/open-interest", category="linear", symbol="BTCUSDT",
                   intervalTime="2min")["retCode"] == 10001


def test_past_the_ip_limit_the_answer_is_403() -> None:
    with FakeBybit(SYMBOLS, rest_limit=5) as fake:
        for _ in range(5):
            assert get(fake, "/v5/market/instruments-info", category="linear")["retCode"] == 0
        with pytest.raises(urllib.error.HTTPError) as info:
            get(fake, "/v5/market/instruments-info", category="linear")
        assert info.value.code == 403
        assert [s for _, _, s in fake.rest_requests] == [200] * 5 + [403]


def test_base_coin_keeps_the_multiplier() -> None:
    assert base_coin("1000PEPEUSDT") == "1000PEPE" and base_coin("BTCPERP") == "BTC"
