"""The fake OKX v5 (perpstream.fakes.okx) behaves as OKX documents its public swaps: a plain
websocket client and plain HTTP see the documented per-arg answers, pushes, pongs, idle
close, pages and the 429 of the rate limits; and ``producer.okx`` reads its frames into the
values the fake says it sent."""

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
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from perpstream.fakes.okx import FakeOkx, Swap
from perpstream.producer import okx
from perpstream.producer.venue import Ack, Pong
from perpstream.schemas.models import Metric
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

HOUR = 3_600_000
#: Fields of each push's data item, as OKX's docs list them.
DOCUMENTED = {
    "mark-price": {"instType", "instId", "markPx", "ts"},
    "index-tickers": {"instId", "idxPx", "high24h", "low24h", "open24h", "sodUtc0", "sodUtc8", "ts"},
    "funding-rate": {"formulaType", "fundingRate", "fundingTime", "impactValue", "instId", "instType",
                     "interestRate", "method", "maxFundingRate", "minFundingRate", "nextFundingRate",
                     "nextFundingTime", "premium", "settFundingRate", "settState", "ts"},
    "open-interest": {"instId", "instType", "oi", "oiCcy", "oiUsd", "ts"},
}


@pytest.fixture
def fake() -> Iterator[FakeOkx]:
    with FakeOkx(funding_push_ms=300, oi_interval_ms=300) as f:
        yield f


def get(fake: FakeOkx, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
    """HTTP status and JSON body of a GET, errors included."""
    url = f"{fake.rest_url}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def sub(*args: tuple[str, str], op: str = "subscribe", rid: str | None = None) -> str:
    req: dict[str, Any] = {"op": op, "args": [{"channel": c, "instId": i} for c, i in args]}
    return json.dumps(req if rid is None else {"id": rid, **req})


async def recv(ws: ClientConnection) -> Any:
    raw = await asyncio.wait_for(ws.recv(), 10)
    return raw if raw == "pong" else json.loads(raw)


async def answers(ws: ClientConnection, n: int) -> list[dict[str, Any]]:
    """The next ``n`` answers (events), skipping pushes in between."""
    out: list[dict[str, Any]] = []
    while len(out) < n:
        msg = await recv(ws)
        if isinstance(msg, dict) and "event" in msg:
            out.append(msg)
    return out


async def pushes(ws: ClientConnection, channel: str, inst_id: str, n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while len(out) < n:
        msg = await recv(ws)
        if isinstance(msg, dict) and "data" in msg and msg["arg"] == {"channel": channel, "instId": inst_id}:
            out.append(msg)
    return out


def expected_value(fake: FakeOkx, symbol: str, metric: str, ts: int) -> float:
    """What the fake says a point of ``metric`` of ``symbol`` stamped ``ts`` must be."""
    swap = fake.swaps[symbol]
    if metric == Metric.MARK_PRICE:
        return fake.mark_price_at(symbol, ts)
    if metric == Metric.INDEX_PRICE:
        return fake.index_price_at(swap.uly, ts)
    if metric == Metric.FUNDING_RATE:
        return fake.funding_rate_at(symbol, ts)
    if metric == Metric.NEXT_FUNDING_TIME:
        return float(fake.funding_time_at(symbol, ts))
    if metric == Metric.OPEN_INTEREST:
        return fake.open_interest_at(symbol, ts)
    assert metric == okx.FUNDING_INTERVAL_HOURS, metric
    return float(swap.funding_interval_h)


def test_each_arg_is_answered_on_its_own_with_the_request_id(fake: FakeOkx) -> None:
    async def run() -> tuple[list[dict[str, Any]], ...]:
        async with connect(fake.ws_url) as ws:
            await ws.send(sub(("mark-price", "BTC-USDT-SWAP"), ("index-tickers", "BTC-USDT"),
                              ("mark-price", "NOPE-USDT-SWAP"), ("tickers", "BTC-USDT-SWAP"), rid="42"))
            first = await answers(ws, 4)
            await ws.send(json.dumps({"op": "subscribe", "args": [{"channel": "mark-price"}, "x"]}))
            malformed = await answers(ws, 2)
            await ws.send(json.dumps({"op": "login", "args": []}))
            await ws.send("not json")
            await ws.send(sub(("mark-price", "BTC-USDT-SWAP"), op="unsubscribe"))
            rest = await answers(ws, 3)
        return first, malformed, rest

    first, malformed, rest = asyncio.run(run())
    ok = [a for a in first if a["event"] == "subscribe"]
    assert [a["arg"] for a in ok] == [{"channel": "mark-price", "instId": "BTC-USDT-SWAP"},
                                      {"channel": "index-tickers", "instId": "BTC-USDT"}]
    assert all(a["id"] == "42" and set(a) == {"id", "event", "arg", "connId"} for a in ok)
    refused = [a for a in first if a["event"] == "error"]
    assert [(a["code"], a["id"]) for a in refused] == [("60018", "42"), ("60018", "42")]
    assert "channel:mark-price,instId:NOPE-USDT-SWAP doesn't exist" in refused[0]["msg"]
    assert "channel:tickers,instId:BTC-USDT-SWAP doesn't exist" in refused[1]["msg"]
    assert len({a["connId"] for a in first}) == 1
    assert [a["code"] for a in malformed] == ["60012", "60012"] and "id" not in malformed[0]
    assert malformed[0]["msg"].startswith("Invalid request: {")
    assert [(a["event"], a.get("code")) for a in rest] == [("error", "60019"), ("error", "60012"),
                                                           ("unsubscribe", None)]
    # the producer's dialect reads these answers back
    assert okx.control(json.dumps(ok[0])) == Ack(42, None, ("mark-price:BTC-USDT-SWAP",))
    refusal = okx.control(json.dumps(refused[0]))
    assert isinstance(refusal, Ack) and refusal.request_id == 42
    assert refusal.streams == ("mark-price:NOPE-USDT-SWAP",)


def test_pushes_have_the_documented_shape_at_the_documented_rates(fake: FakeOkx) -> None:
    args = [("mark-price", "PEPE-USDT-SWAP"), ("index-tickers", "PEPE-USDT"),
            ("funding-rate", "PEPE-USDT-SWAP"), ("open-interest", "PEPE-USDT-SWAP")]

    async def run() -> dict[str, list[dict[str, Any]]]:
        async with connect(fake.ws_url) as ws:
            await ws.send(sub(*args))
            got: dict[str, list[dict[str, Any]]] = {c: [] for c, _ in args}
            while min(len(v) for v in got.values()) < 4:
                msg = await recv(ws)
                if isinstance(msg, dict) and "arg" in msg and "event" not in msg:
                    got[msg["arg"]["channel"]].append(msg)
        return got

    got = asyncio.run(run())
    for channel, inst_id in args:
        for push in got[channel]:
            assert set(push) == {"arg", "data"} and push["arg"] == {"channel": channel, "instId": inst_id}
            assert len(push["data"]) == 1 and set(push["data"][0]) == DOCUMENTED[channel]
            assert all(isinstance(v, str) for v in push["data"][0].values())
            prices = push["data"][0].get("markPx", "") + push["data"][0].get("idxPx", "")
            assert "e" not in prices and "E" not in prices  # positional decimals, as OKX writes them
    ts = {c: [int(p["data"][0]["ts"]) for p in got[c]] for c, _ in args}
    assert {b - a for a, b in itertools.pairwise(ts["mark-price"][1:])} == {200}  # the price moves each time
    assert {b - a for a, b in itertools.pairwise(ts["index-tickers"][1:])} == {100}
    assert {b - a for a, b in itertools.pairwise(ts["open-interest"][1:])} == {300}
    for push in got["funding-rate"]:  # PEPE settles every 4 h
        item = push["data"][0]
        funding_time, next_time = int(item["fundingTime"]), int(item["nextFundingTime"])
        assert next_time - funding_time == 4 * HOUR and funding_time % (4 * HOUR) == 0
        assert funding_time - 4 * HOUR <= int(item["ts"]) < funding_time
        assert item["settFundingRate"] == str(Decimal(str(fake.settled_funding("PEPE-USDT-SWAP",
                                                                                 funding_time - 4 * HOUR))))
    oi = got["open-interest"][0]["data"][0]
    assert Decimal(oi["oi"]) * Decimal("10000000") == Decimal(oi["oiCcy"])  # contracts x ctVal = coins


def test_a_still_mark_is_pushed_every_idle_interval() -> None:
    with FakeOkx(["BTC-USDT-SWAP"], mark_hold=10**9, mark_idle_ms=400) as fake:
        async def run() -> list[dict[str, Any]]:
            async with connect(fake.ws_url) as ws:
                await ws.send(sub(("mark-price", "BTC-USDT-SWAP")))
                return await pushes(ws, "mark-price", "BTC-USDT-SWAP", 5)

        got = asyncio.run(run())
    ts = [int(p["data"][0]["ts"]) for p in got]
    assert {b - a for a, b in itertools.pairwise(ts[1:])} == {400}
    assert len({p["data"][0]["markPx"] for p in got}) == 1


def test_ping_gets_pong_and_a_connection_with_nothing_sent_for_the_timeout_is_closed() -> None:
    with FakeOkx(["BTC-USDT-SWAP"], idle_timeout_s=1.0) as fake:
        async def silent() -> tuple[int | None, str | None]:
            async with connect(fake.ws_url) as ws:
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 10)
                return ws.close_code, ws.close_reason

        async def pinging(seconds: float) -> int:
            pongs = 0
            async with connect(fake.ws_url) as ws:
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    await ws.send("ping")
                    assert await recv(ws) == "pong"
                    pongs += 1
                    with contextlib.suppress(TimeoutError):  # nothing else comes meanwhile
                        raise AssertionError(await asyncio.wait_for(ws.recv(), 0.4))
            return pongs

        async def streaming(seconds: float) -> int:
            async with connect(fake.ws_url) as ws:
                await ws.send(sub(("mark-price", "BTC-USDT-SWAP")))
                deadline, n = time.monotonic() + seconds, 0
                while time.monotonic() < deadline:
                    await recv(ws)
                    n += 1
            return n

        async def run() -> tuple[tuple[int | None, str | None], int, int]:
            return await asyncio.gather(silent(), pinging(2.5), streaming(2.5))

        (code, reason), pongs, frames = asyncio.run(run())
        assert (code, reason) == (4004, "No data received in 30s")
        assert pongs >= 5 and frames > 10  # both outlived twice the timeout
        assert fake.idle_closed == 1
    assert okx.control("pong") == Pong()


def test_the_connection_limits_okx_documents() -> None:
    with FakeOkx(["BTC-USDT-SWAP", "ETH-USDT-SWAP"], requests_per_hour=3, max_channels=2) as fake:
        async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]], int | None, int | None]:
            async with connect(fake.ws_url) as ws:
                for _ in range(3):
                    await ws.send(sub(("mark-price", "BTC-USDT-SWAP")))
                await ws.send(sub(("mark-price", "ETH-USDT-SWAP")))
                per_hour = await answers(ws, 4)
            async with connect(fake.ws_url) as ws:
                await ws.send(sub(("mark-price", "BTC-USDT-SWAP"), ("mark-price", "ETH-USDT-SWAP"),
                                  ("funding-rate", "BTC-USDT-SWAP")))
                too_many = await answers(ws, 2)
                with pytest.raises(ConnectionClosed):
                    while True:
                        await recv(ws)
                channels_code = ws.close_code
            async with connect(fake.ws_url, max_size=None) as ws:
                await ws.send(sub(*[("mark-price", "BTC-USDT-SWAP")] * 2000))  # > 64 KB
                with pytest.raises(ConnectionClosed):
                    await recv(ws)
                size_code = ws.close_code
            return per_hour, too_many, channels_code, size_code

        per_hour, too_many, channels_code, size_code = asyncio.run(run())
    assert [a["event"] for a in per_hour] == ["subscribe"] * 3 + ["error"]
    assert per_hour[3]["code"] == "60014"
    assert [a["event"] for a in too_many] == ["subscribe", "subscribe"] and channels_code == 4009
    assert size_code == 1009


def test_faults_inject_mute_and_drop(fake: FakeOkx) -> None:
    async def run() -> tuple[int, int]:
        async with connect(fake.ws_url) as ws:
            await ws.send(sub(("mark-price", "ETH-USDT-SWAP")))
            await answers(ws, 1)
            assert fake.inject("{not json") == 1
            raw = ""
            while raw != "{not json":  # the injected frame arrives among the pushes
                raw = str(await asyncio.wait_for(ws.recv(), 10))
            assert fake.mute_connections() == 1
            await ws.send("ping")
            heard, pongs = 0, 0
            with contextlib.suppress(TimeoutError):  # muted: no push, no pong
                while True:
                    msg = await asyncio.wait_for(ws.recv(), 1.0)
                    heard += 1  # pushes sent before the mute may still be in flight
                    pongs += msg == "pong"
            late = 0
            with contextlib.suppress(TimeoutError):
                while True:
                    await asyncio.wait_for(ws.recv(), 1.0)
                    late += 1
            # from another thread: this one's loop must answer the close handshake meanwhile
            assert await asyncio.to_thread(fake.drop_connections) == 1
            with pytest.raises(ConnectionClosedOK):
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
        return pongs, late

    pongs, late = asyncio.run(run())
    assert pongs == 0 and late == 0
    assert fake.idle_closed == 0  # a muted connection is silent and left open, not closed


def test_instruments_list_every_swap_with_its_contract(fake: FakeOkx) -> None:
    status, body = get(fake, "/api/v5/public/instruments", instType="SWAP")
    assert status == 200 and body["code"] == "0" and body["msg"] == ""
    items = {i["instId"]: i for i in body["data"]}
    assert set(items) == {"BTC-USDT-SWAP", "ETH-USDT-SWAP", "PEPE-USDT-SWAP", "SHIB-USDT-SWAP",
                          "BONK-USDT-SWAP", "BTC-USD-SWAP", "LUNA-USDT-SWAP"}
    pepe = items["PEPE-USDT-SWAP"]
    assert (pepe["ctType"], pepe["ctVal"], pepe["ctValCcy"], pepe["settleCcy"]) == (
        "linear", "10000000", "PEPE", "USDT")
    assert (pepe["uly"], pepe["state"]) == ("PEPE-USDT", "live")
    inverse = items["BTC-USD-SWAP"]
    assert (inverse["ctType"], inverse["ctValCcy"], inverse["settleCcy"]) == ("inverse", "USD", "BTC")
    assert items["LUNA-USDT-SWAP"]["state"] == "suspend"
    found = okx.listing(json.dumps(body))
    assert sorted(found.instruments) == ["BONK-USDT-SWAP", "BTC-USDT-SWAP", "ETH-USDT-SWAP",
                                         "PEPE-USDT-SWAP", "SHIB-USDT-SWAP"]
    assert found.rejected == {}
    assert found.instruments["PEPE-USDT-SWAP"].base == "PEPE"
    family = get(fake, "/api/v5/public/instruments", instType="SWAP", instFamily="BTC-USD")[1]["data"]
    assert [i["instId"] for i in family] == ["BTC-USD-SWAP"]
    assert get(fake, "/api/v5/public/instruments", instType="FUTURES")[1]["data"] == []
    assert get(fake, "/api/v5/public/instruments") == (
        400, {"code": "50014", "msg": "Parameter instType can not be empty.", "data": []})


def test_past_a_limit_the_answer_is_429_with_code_50011_per_instrument() -> None:
    with FakeOkx(instruments_limit=3, funding_history_limit=2) as fake:
        for _ in range(3):
            assert get(fake, "/api/v5/public/instruments", instType="SWAP")[0] == 200
        status, body = get(fake, "/api/v5/public/instruments", instType="SWAP")
        assert (status, body) == (429, {"code": "50011", "msg": "Too Many Requests", "data": []})
        with pytest.raises(okx.OkxApiError) as limited:
            okx.instruments(json.dumps(body))
        assert limited.value.rate_limited
        assert get(fake, "/api/v5/public/instruments", instType="FUTURES")[0] == 200  # IP + instType
        for _ in range(2):
            assert get(fake, "/api/v5/public/funding-rate-history", instId="BTC-USDT-SWAP", limit=1)[0] == 200
        assert get(fake, "/api/v5/public/funding-rate-history", instId="BTC-USDT-SWAP")[0] == 429
        # per IP and instrument
        assert get(fake, "/api/v5/public/funding-rate-history", instId="ETH-USDT-SWAP")[0] == 200
        # the limit is per 2 s: the same request is answered again once the window moved on
        wait_for(lambda: get(fake, "/api/v5/public/instruments", instType="SWAP")[0] == 200, 10, "window")
        codes = [s for p, _, s in fake.rest_requests if p == "/api/v5/public/instruments"]
        assert codes[:5] == [200, 200, 200, 429, 200] and codes[-1] == 200


def test_funding_history_is_newest_first_paged_by_after_three_months_back() -> None:
    with FakeOkx(funding_history_limit=100) as fake:
        pages, rows, after = 0, [], None
        while True:
            q = {"instId": "BTC-USDT-SWAP", "limit": 100, **({} if after is None else {"after": after})}
            status, body = get(fake, "/api/v5/public/funding-rate-history", **q)
            assert status == 200 and body["code"] == "0"
            if not body["data"]:
                break
            rows += body["data"]
            after, pages = body["data"][-1]["fundingTime"], pages + 1
        now = int(time.time() * 1000)
        times = [int(r["fundingTime"]) for r in rows]
        assert pages == 3 and len(rows) in (270, 271)  # 90 days of 8 h settlements
        assert {a - b for a, b in itertools.pairwise(times)} == {8 * HOUR}
        assert now - 8 * HOUR < times[0] <= now and times[-1] >= now - 90 * 24 * HOUR
        for r, t in zip(rows, times, strict=True):
            assert set(r) == {"formulaType", "fundingRate", "fundingTime", "instId", "instType", "method",
                              "realizedRate"}
            assert float(r["realizedRate"]) == fake.settled_funding("BTC-USDT-SWAP", t)
            assert r["fundingRate"] != r["realizedRate"]  # predicted, not what was settled
        newer = get(fake, "/api/v5/public/funding-rate-history", instId="BTC-USDT-SWAP", before=times[3])[1]
        assert [int(r["fundingTime"]) for r in newer["data"]] == times[:3]
        bonk = get(fake, "/api/v5/public/funding-rate-history", instId="BONK-USDT-SWAP", limit=5)[1]["data"]
        assert {int(a["fundingTime"]) - int(b["fundingTime"]) for a, b in itertools.pairwise(bonk)} == {HOUR}
        assert get(fake, "/api/v5/public/funding-rate-history", instId="BTC-USDT-SWAP", limit=401)[0] == 400
        assert get(fake, "/api/v5/public/funding-rate-history", instId="NOPE-USDT-SWAP")[1]["code"] == "51001"
        assert get(fake, "/api/v5/public/funding-rate-history")[1]["code"] == "50014"


def test_open_interest_history_pages_by_end_in_bars_of_the_period() -> None:
    with FakeOkx(open_interest_history_limit=100) as fake:
        path = "/api/v5/rubik/stat/contracts/open-interest-history"
        rows: list[list[str]] = []
        end = None
        while True:
            q = {"instId": "PEPE-USDT-SWAP", "period": "1H", **({} if end is None else {"end": end})}
            data = get(fake, path, **q)[1]["data"]
            if not data:
                break
            rows += data
            end = data[-1][0]
        times = [int(r[0]) for r in rows]
        assert len(rows) == 1440  # the latest 1,440 bars
        assert {a - b for a, b in itertools.pairwise(times)} == {HOUR}
        assert times[0] % HOUR == 0 and times[0] <= int(time.time() * 1000) < times[0] + HOUR
        for ts, oi, oi_ccy, oi_usd in rows[:50]:
            assert float(oi_ccy) == fake.open_interest_at("PEPE-USDT-SWAP", int(ts))
            assert Decimal(oi) * Decimal("10000000") == Decimal(oi_ccy) and float(oi_usd) > 0
        begin = times[5]
        newer = get(fake, path, instId="PEPE-USDT-SWAP", period="1H", begin=begin)[1]["data"]
        assert [int(r[0]) for r in newer] == times[:5]
        day = get(fake, path, instId="BTC-USDT-SWAP", period="1D", limit=3)[1]["data"]
        assert [int(r[0]) % (24 * HOUR) for r in day] == [16 * HOUR] * 3  # UTC+8 midnight
        day_utc = get(fake, path, instId="BTC-USDT-SWAP", period="1Dutc", limit=3)[1]["data"]
        assert [int(r[0]) % (24 * HOUR) for r in day_utc] == [0] * 3
        assert len(get(fake, path, instId="BTC-USDT-SWAP")[1]["data"]) == 100  # 5m bars, 100 a page
        assert get(fake, path, instId="BTC-USDT-SWAP", period="7m")[1]["code"] == "51000"
        assert get(fake, path, instId="BTC-USDT-SWAP", limit=101)[0] == 400


def test_listings_change_at_run_time(fake: FakeOkx) -> None:
    fake.add_swap(Swap("WIF-USDT-SWAP", "1", "2.5", "0.0001", funding_interval_h=4))
    fake.set_state("SHIB-USDT-SWAP", "suspend")
    listed = okx.instruments(json.dumps(get(fake, "/api/v5/public/instruments", instType="SWAP")[1]))
    assert "WIF-USDT-SWAP" in listed and "SHIB-USDT-SWAP" not in listed

    async def run() -> tuple[list[dict[str, Any]], int, list[dict[str, Any]]]:
        async with connect(fake.ws_url) as ws:
            await ws.send(sub(("mark-price", "WIF-USDT-SWAP"), ("mark-price", "ETH-USDT-SWAP")))
            await answers(ws, 2)
            await pushes(ws, "mark-price", "ETH-USDT-SWAP", 2)
            fake.delist("ETH-USDT-SWAP")
            n = len(fake.pushes)
            await pushes(ws, "mark-price", "WIF-USDT-SWAP", 10)  # WIF goes on
            after = [p for p in fake.pushes[n:] if p["arg"]["instId"] == "ETH-USDT-SWAP"]
            await ws.send(sub(("mark-price", "ETH-USDT-SWAP")))
            return after, len(fake.pushes), await answers(ws, 1)

    after, _, refused = asyncio.run(run())
    assert after == []  # a delisted swap is pushed no more
    assert refused[0]["code"] == "60018"
    assert "ETH-USDT-SWAP" not in okx.instruments(json.dumps(get(fake, "/api/v5/public/instruments",
                                                                 instType="SWAP")[1]))


def test_the_producer_parser_reads_the_fake_live_frames_into_the_values_the_fake_sent(fake: FakeOkx) -> None:
    instruments = okx.instruments(json.dumps(get(fake, "/api/v5/public/instruments", instType="SWAP")[1]))
    followed = ["BTC-USDT-SWAP", "PEPE-USDT-SWAP"]
    streams = [s for i in followed for s in instruments[i].streams]

    async def run() -> list[str | bytes]:
        async with connect(fake.ws_url) as ws:
            await ws.send(okx.subscribe_message(streams, 1))
            frames: list[str | bytes] = []
            channels: set[str] = set()
            while len(channels) < 4 * len(followed) or len(frames) < 60:
                frame = await asyncio.wait_for(ws.recv(), 10)
                frames.append(frame)
                if okx.is_data_frame(frame):
                    msg = json.loads(frame)
                    channels.add(f"{msg['arg']['channel']}:{msg['arg']['instId']}")
        return frames

    frames = asyncio.run(run())
    parser = okx.Parser()
    parser.set_instruments(instruments)
    acks = [okx.control(f) for f in frames if not okx.is_data_frame(f) and okx.control(f) is not None]
    assert sorted(s for a in acks if isinstance(a, Ack) for s in a.streams) == sorted(streams)
    assert all(isinstance(a, Ack) and a.request_id == 1 and a.error is None for a in acks)
    seen: set[tuple[str, str]] = set()
    for frame in frames:
        if not okx.is_data_frame(frame):
            continue
        for r in parser.parse(frame, 1):
            symbol, metric, value, ts = r["symbol"], r["metric"], r["value"], r["event_time"]
            assert value == expected_value(fake, symbol, metric, ts), (symbol, metric, ts)
            assert r["source"] == "okx_swap"
            seen.add((symbol, metric))
    assert seen == {(s, m) for s in followed for m in (
        Metric.MARK_PRICE, Metric.INDEX_PRICE, Metric.FUNDING_RATE, Metric.NEXT_FUNDING_TIME,
        Metric.OPEN_INTEREST, okx.FUNDING_INTERVAL_HOURS)}
    pepe_interval = {r["value"] for f in frames if okx.is_data_frame(f) for r in parser.parse(f, 1)
                     if r["metric"] == okx.FUNDING_INTERVAL_HOURS and r["symbol"] == "PEPE-USDT-SWAP"}
    assert pepe_interval == {4.0}
