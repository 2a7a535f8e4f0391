"""The fake Hyperliquid (perpstream.fakes.hyperliquid) behaves as Hyperliquid documents its
API: a plain websocket client and plain HTTP see the documented acks, ctx pushes, pongs,
errors, idle close, meta and funding history pages, and the 429 past the weight limit; and
the producer's parser reads its live pushes into the points the fake's values say."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedOK

from perpstream.fakes.hyperliquid import HOUR_MS, MAX_ROWS, FakeHyperliquid
from perpstream.producer import hyperliquid
from perpstream.producer.exceptions import FrameRejected
from perpstream.producer.hyperliquid import DIALECT, FUNDING_INTERVAL_HOURS, Parser
from perpstream.producer.venue import Ack, Pong
from perpstream.schemas.models import Metric

pytestmark = pytest.mark.integration

PERP_FIELDS = {"funding", "openInterest", "prevDayPx", "dayNtlVlm", "premium", "oraclePx", "markPx",
               "midPx", "impactPxs", "dayBaseVlm"}


@pytest.fixture
def fake() -> Iterator[FakeHyperliquid]:
    with FakeHyperliquid(rate=20.0) as f:
        yield f


def info(fake: FakeHyperliquid, body: Any) -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"{fake.rest_url}/info", data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def status_of(fake: FakeHyperliquid, body: Any) -> int:
    try:
        info(fake, body)
    except urllib.error.HTTPError as exc:
        return exc.code
    return 200


async def recv(ws: ClientConnection) -> dict[str, Any]:
    msg: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return msg


async def recv_control(ws: ClientConnection) -> dict[str, Any]:
    """The next frame that is not a ctx push."""
    while True:
        msg = await recv(ws)
        if msg.get("channel") != "activeAssetCtx":
            return msg


def sub(coin: str, method: str = "SUBSCRIBE") -> str:
    return DIALECT.subscribe([coin], 0, method)


def test_subscribe_is_acked_with_the_subscription_then_ctx_pushes_every_tick(fake: FakeHyperliquid) -> None:
    async def run() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with connect(fake.ws_url) as ws:
            await ws.send(sub("kPEPE"))
            ack = await recv(ws)
            pushes = [await recv(ws) for _ in range(10)]
        return ack, pushes

    ack, pushes = asyncio.run(run())
    assert ack == {"channel": "subscriptionResponse", "data": {
        "method": "subscribe", "subscription": {"type": "activeAssetCtx", "coin": "kPEPE"}}}
    assert DIALECT.control(json.dumps(ack)) == Ack(None, None, streams=("kPEPE",))
    for p in pushes:
        assert set(p) == {"channel", "data"} and p["channel"] == "activeAssetCtx"
        assert set(p["data"]) == {"coin", "ctx"} and p["data"]["coin"] == "kPEPE"
        ctx = p["data"]["ctx"]
        assert set(ctx) == PERP_FIELDS  # the whole perp ctx, not only what the producer reads
        assert all(isinstance(v, str) for k, v in ctx.items() if k != "impactPxs")
        assert len(ctx["impactPxs"]) == 2 and all(isinstance(v, str) for v in ctx["impactPxs"])
    assert len({p["data"]["ctx"]["markPx"] for p in pushes}) > 5  # prices move


def test_unsubscribe_stops_the_pushes_and_errors_name_the_subscription(fake: FakeHyperliquid) -> None:
    async def run() -> list[dict[str, Any]]:
        async with connect(fake.ws_url) as ws:
            out = []
            for msg in (sub("BTC"), sub("BTC"), sub("NOPE"), sub("BTC", "UNSUBSCRIBE"),
                        sub("BTC", "UNSUBSCRIBE"), '{"method":"subscribe"}', "{not json"):
                await ws.send(msg)
                out.append(await recv_control(ws))
            await drain(ws, 0.3)  # pushes already on the wire may still land
            assert fake.subscriptions == 0
            await ws.send(hyperliquid.PING)
            out.append(await recv(ws))  # the next frame is the pong: no push after the unsubscribe
        return out

    ok, twice, unknown, unsub, again, no_sub, garbage, pong = asyncio.run(run())
    assert DIALECT.control(json.dumps(ok)) == Ack(None, None, ("BTC",))
    assert twice["channel"] == "error" and twice["data"].startswith("Already subscribed")
    assert DIALECT.control(json.dumps(twice)) == Ack(None, twice["data"], ("BTC",))
    assert unknown["channel"] == "error" and "NOPE" in unknown["data"]
    assert DIALECT.control(json.dumps(unknown)) == Ack(None, unknown["data"], ("NOPE",))
    assert unsub["data"] == {"method": "unsubscribe",
                             "subscription": {"type": "activeAssetCtx", "coin": "BTC"}}
    assert again["channel"] == "error" and again["data"].startswith("Already unsubscribed")
    assert no_sub["channel"] == "error" and garbage["channel"] == "error"
    assert pong == {"channel": "pong"}


def test_ping_gets_pong(fake: FakeHyperliquid) -> None:
    async def run() -> str:
        async with connect(fake.ws_url) as ws:
            await ws.send(DIALECT.ping or "")
            return str(await asyncio.wait_for(ws.recv(), 10))

    raw = asyncio.run(run())
    assert json.loads(raw) == {"channel": "pong"} and DIALECT.control(raw) == Pong()


async def drain(ws: ClientConnection, seconds: float) -> int:
    """Read for ``seconds`` (pushes in flight, or a stream to count); the frames read."""
    n = 0
    deadline = time.monotonic() + seconds
    with contextlib.suppress(TimeoutError):
        while True:
            await asyncio.wait_for(ws.recv(), max(0.0, deadline - time.monotonic()))
            n += 1
    return n


def test_a_client_silent_past_the_idle_timeout_is_closed_and_pings_keep_it() -> None:
    with FakeHyperliquid(rate=20.0, idle_timeout=1.0) as fake:
        async def run() -> tuple[float, int, int | None]:
            async with connect(fake.ws_url) as pinged, connect(fake.ws_url) as silent:
                await pinged.send(sub("BTC"))
                await silent.send(sub("ETH"))  # one message, then nothing
                t0 = time.monotonic()

                async def until_closed() -> float:
                    async for _ in silent:  # ends when the server closes the connection
                        pass
                    return time.monotonic() - t0

                async def keep_pinging() -> int:
                    pushes = 0
                    for _ in range(6):  # a ping every 0.5 s for three idle timeouts
                        await pinged.send(hyperliquid.PING)
                        pushes += await drain(pinged, 0.5)
                    return pushes

                closed = asyncio.wait_for(until_closed(), 10)
                closed_after, pushes = await asyncio.gather(closed, keep_pinging())
                return closed_after, pushes, pinged.close_code

        closed_after, pushes, pinged_close = asyncio.run(run())
        assert 0.9 <= closed_after <= 2.0 and fake.idle_closed == 1
        assert pinged_close is None and pushes > 20  # the pinged one streamed all along


def test_subscriptions_past_1000_over_all_connections_are_refused() -> None:
    coins = [f"C{i:04d}" for i in range(1001)]
    with FakeHyperliquid(coins, delisted=(), rate=0.2) as fake:
        async def run() -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
            async with connect(fake.ws_url) as a, connect(fake.ws_url) as b:
                acks = []
                for i, coin in enumerate(coins):
                    ws = a if i % 2 else b
                    await ws.send(sub(coin))
                    acks.append(await recv_control(ws))
                await b.send(sub(coins[0], "UNSUBSCRIBE"))  # one freed ...
                await recv_control(b)
                await a.send(sub(coins[-1]))  # ... is one more allowed
                after = await recv_control(a)
                await a.send(sub(coins[0]))
                full = await recv_control(a)
            return acks, after, full

        acks, after, full = asyncio.run(run())
        assert all(a["channel"] == "subscriptionResponse" for a in acks[:1000])
        assert acks[1000]["channel"] == "error" and "1000" in acks[1000]["data"]
        assert DIALECT.control(json.dumps(acks[1000])) == Ack(None, acks[1000]["data"])
        assert after["channel"] == "subscriptionResponse" and full["channel"] == "error"


def test_faults_inject_mute_and_drop(fake: FakeHyperliquid) -> None:
    async def run() -> tuple[int, int]:
        async with connect(fake.ws_url) as ws:
            await ws.send(sub("ETH"))
            await recv(ws)  # ack
            assert fake.inject("{not json", b"\x00\xff") == 1
            got: list[str | bytes] = []
            while b"\x00\xff" not in got:  # the injected frames arrive among the pushes
                got.append(await asyncio.wait_for(ws.recv(), 10))
            assert "{not json" in got
            assert fake.mute_connections() == 1
            k0 = fake.k
            await ws.send(hyperliquid.PING)
            heard = 0
            with contextlib.suppress(TimeoutError):  # muted: no push, no pong
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
                    heard += msg.get("channel") == "pong"  # pushes sent before the mute may be in flight
            ticks = fake.k - k0
            # from another thread, so this loop answers the server's close handshake
            assert await asyncio.to_thread(fake.drop_connections) == 1
            with pytest.raises(ConnectionClosedOK):
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1001
        return heard, ticks

    pongs, ticks_while_muted = asyncio.run(run())
    assert pongs == 0 and ticks_while_muted >= 10  # silent while the clock kept running


def test_meta_lists_k_coins_and_a_delisted_one_and_follows_listing_changes(fake: FakeHyperliquid) -> None:
    meta = info(fake, {"type": "meta"})
    names = [e["name"] for e in meta["universe"]]
    assert names == ["BTC", "ETH", "SOL", "kPEPE", "kSHIB", "kBONK", "LOOM"]
    loom = meta["universe"][-1]
    assert loom["isDelisted"] is True and loom["onlyIsolated"] is True
    assert all({"name", "szDecimals", "maxLeverage"} <= e.keys() for e in meta["universe"])
    assert isinstance(meta["marginTables"], list)
    listing = hyperliquid.listing(meta)
    assert list(listing.instruments) == names[:-1] and listing.delisted == {"LOOM"} and not listing.rejected

    fake.add_coin("kFLOKI")
    fake.delist("SOL")
    again = hyperliquid.listing(info(fake, {"type": "meta"}))
    assert list(again.instruments) == ["BTC", "ETH", "kPEPE", "kSHIB", "kBONK", "kFLOKI"]
    assert again.delisted == {"SOL", "LOOM"}

    both = info(fake, {"type": "metaAndAssetCtxs"})
    assert [e["name"] for e in both[0]["universe"]] == [*names, "kFLOKI"]
    assert len(both[1]) == len(both[0]["universe"]) and all(set(c) == PERP_FIELDS for c in both[1])


def test_a_new_coin_streams_and_a_delisted_one_falls_silent(fake: FakeHyperliquid) -> None:
    async def run() -> tuple[dict[str, Any], set[str], set[str]]:
        async with connect(fake.ws_url) as ws:
            await ws.send(sub("kNEW"))
            refused = await recv_control(ws)
            fake.add_coin("kNEW")
            for coin in ("kNEW", "ETH"):
                await ws.send(sub(coin))
                await recv_control(ws)
            before = {(await recv(ws))["data"]["coin"] for _ in range(6)}
            fake.delist("ETH")
            await drain(ws, 0.3)  # what was in flight
            after = {(await recv(ws))["data"]["coin"] for _ in range(6)}
        return refused, before, after

    refused, before, after = asyncio.run(run())
    assert refused["channel"] == "error"
    assert before == {"kNEW", "ETH"} and after == {"kNEW"}


def test_funding_history_is_hourly_oldest_first_and_pages_by_the_last_time() -> None:
    now = int(time.time() * 1000)
    launch = now - 40 * 86_400_000  # 960 hours of history
    with FakeHyperliquid(rate=1.0, launch_ms=launch, weight_limit=10_000) as fake:
        start = launch + 3 * HOUR_MS
        seen: list[dict[str, Any]] = []
        pages = 0
        cursor = start
        while True:
            rows = info(fake, {"type": "fundingHistory", "coin": "kPEPE", "startTime": cursor})
            pages += 1
            assert len(rows) <= MAX_ROWS
            seen += rows
            if len(rows) < MAX_ROWS:
                break
            cursor = rows[-1]["time"] + 1  # the start is inclusive: past the last row seen
        assert pages == 2
        times = [r["time"] for r in seen]
        assert times == sorted(times) and len(set(times)) == len(times)
        hours = [t // HOUR_MS * HOUR_MS for t in times]
        assert all(b - a == HOUR_MS for a, b in itertools.pairwise(hours))
        assert times[0] >= start and hours[-1] >= now - HOUR_MS - 60_000
        for r, hour in zip(seen, hours, strict=True):
            assert set(r) == {"coin", "fundingRate", "premium", "time"} and r["coin"] == "kPEPE"
            assert r["time"] == fake.funding_time(hour)
            assert float(r["fundingRate"]) == fake.settled_funding("kPEPE", hour)
            assert isinstance(r["fundingRate"], str) and isinstance(r["premium"], str)
        # both ends inclusive
        t = times[10]
        assert [r["time"] for r in info(fake, {"type": "fundingHistory", "coin": "kPEPE",
                                               "startTime": t, "endTime": t})] == [t]
        assert status_of(fake, {"type": "fundingHistory", "coin": "kPEPE"}) == 422  # startTime required
        assert status_of(fake, {"type": "fundingHistory", "startTime": start}) == 422
        assert info(fake, {"type": "fundingHistory", "coin": "NOPE", "startTime": start}) == []
        # the weight of a full page: 20, and 1 per 20 rows
        assert fake.requests[0] == ("fundingHistory", 20 + MAX_ROWS // 20, 200)


def test_past_1200_weight_a_minute_the_answer_is_429(fake: FakeHyperliquid) -> None:
    for _ in range(1200 // 20):
        assert status_of(fake, {"type": "meta"}) == 200
    with pytest.raises(urllib.error.HTTPError) as exc:
        info(fake, {"type": "metaAndAssetCtxs"})
    assert exc.value.code == 429 and exc.value.read() == b"null"
    assert [s for _, _, s in fake.requests] == [200] * 60 + [429]
    assert sum(w for _, w, _ in fake.requests) == 1200
    with pytest.raises(FrameRejected) as rejected:  # what the producer's listing makes of the body
        hyperliquid.instruments(b"null")
    assert rejected.value.reason == "not_object"


def test_bodies_that_are_not_requests_are_refused_as_the_venue_does(fake: FakeHyperliquid) -> None:
    assert status_of(fake, b"{not json") == 400
    assert status_of(fake, {"kind": "meta"}) == 422
    assert status_of(fake, {"type": "nope"}) == 422


def test_the_parser_reads_the_fakes_live_pushes_into_the_expected_points(fake: FakeHyperliquid) -> None:
    async def run() -> list[tuple[str, int]]:
        frames = []
        async with connect(fake.ws_url) as ws:
            for coin in ("BTC", "kPEPE"):
                await ws.send(sub(coin))
            while len(frames) < 30:
                raw = str(await asyncio.wait_for(ws.recv(), 10))
                received = int(time.time() * 1000)
                if DIALECT.is_data_frame(raw):
                    frames.append((raw, received))
                else:
                    assert isinstance(DIALECT.control(raw), Ack)
        return frames

    frames = asyncio.run(run())
    tick_of = {raw: (k, coin) for k, coin, raw in fake.sent}
    parser = Parser()
    stated: set[str] = set()
    for raw, received in frames:
        k, coin = tick_of[raw]
        ctx = fake.ctx(coin, k)
        points = parser.parse(raw, received)
        expected = {
            Metric.MARK_PRICE: float(ctx["markPx"]), Metric.INDEX_PRICE: float(ctx["oraclePx"]),
            Metric.FUNDING_RATE: float(ctx["funding"]), Metric.OPEN_INTEREST: float(ctx["openInterest"]),
            Metric.NEXT_FUNDING_TIME: float((received // HOUR_MS + 1) * HOUR_MS),
        }
        if coin not in stated:
            expected[FUNDING_INTERVAL_HOURS] = 1.0
            stated.add(coin)
        assert {p["metric"]: p["value"] for p in points} == expected
        assert {(p["source"], p["symbol"], p["event_time"], p["ingest_time"]) for p in points} == {
            ("hyperliquid", coin, received, received)}
    assert {tick_of[raw][1] for raw, _ in frames} == {"BTC", "kPEPE"}
