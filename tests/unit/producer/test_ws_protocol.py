"""The websocket connection state machine, driven by hand on fake time: no
sockets, no sleeping. Each test is a sequence of events a real connection
would see and the actions a user would notice (what is sent, what reaches
the data path, when a socket is replaced)."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator

import pytest

from perpstream.producer import bybit
from perpstream.producer.ws_protocol import (
    Action,
    Close,
    Connect,
    ConnectionProtocol,
    Deliver,
    Fail,
    Send,
    SocketState,
)
from perpstream.runtime.telemetry import Telemetry


def doubling() -> Iterator[float]:
    """Deterministic backoff: 1, 2, 4, ... (a new generator starts over)."""
    d = 1.0
    while True:
        yield d
        d *= 2


def streams(n: int) -> list[str]:
    return [f"s{i:04d}usdt@markPrice@1s" for i in range(n)]


def data(symbol: str = "BTCUSDT", e: int = 1_790_000_000_000) -> str:
    return json.dumps({"stream": f"{symbol.lower()}@markPrice@1s", "data": {
        "e": "markPriceUpdate", "E": e, "s": symbol, "p": "1", "i": "1", "P": "1", "r": "0", "T": 0}})


def make(n_streams: int = 3, **kw: float) -> tuple[ConnectionProtocol, Telemetry]:
    telemetry = Telemetry()
    opts: dict[str, float] = {"silence_timeout": 10.0, "max_lifetime": 1000.0, "max_messages_per_second": 5.0}
    opts.update(kw)
    p = ConnectionProtocol("ws-1", streams(n_streams), backoff=doubling, telemetry=telemetry, **opts)
    return p, telemetry


def sent_params(actions: list[Action], socket: int | None = None) -> list[tuple[str, list[str]]]:
    out = []
    for a in actions:
        if isinstance(a, Send) and (socket is None or a.socket == socket):
            msg = json.loads(a.text)
            out.append((msg["method"], msg["params"]))
    return out


def run_timers(p: ConnectionProtocol, until: float, now: float = 0.0) -> list[tuple[float, Action]]:
    """Advance fake time from deadline to deadline up to ``until``; (time, action) pairs."""
    out: list[tuple[float, Action]] = []
    while True:
        due = p.next_deadline()
        if due is None or due > until:
            return out
        now = max(now, due)
        out.extend((now, a) for a in p.tick(now))


def open_first(p: ConnectionProtocol, now: float = 0.0) -> list[Action]:
    assert p.start(now) == [Connect(1, 0.0, "initial")]
    return p.connected(1, now)


# -- pacing -------------------------------------------------------------------------------------


def test_eleven_subscribe_chunks_spread_over_more_than_a_second() -> None:
    p, _ = make(1100, max_messages_per_second=10.0)  # 11 chunks of 100 streams
    first = open_first(p)
    timed = [(0.0, a) for a in first] + run_timers(p, until=5.0)
    sends = [(t, a) for t, a in timed if isinstance(a, Send)]
    assert len(sends) == 11
    times = [t for t, _ in sends]
    assert times[-1] - times[0] >= 1.0
    assert all(b - a >= 0.1 for a, b in itertools.pairwise(times))
    # never more than 10 in any one-second window
    assert max(sum(1 for t in times if start <= t < start + 1.0) for start in times) <= 10
    subscribed = [s for _, a in sends for s in json.loads(a.text)["params"]]  # type: ignore[union-attr]
    assert sorted(subscribed) == streams(1100)
    assert {json.loads(a.text)["method"] for _, a in sends} == {"SUBSCRIBE"}  # type: ignore[union-attr]


def test_subscription_changes_share_the_pacing() -> None:
    p, _ = make(100, max_messages_per_second=5.0)
    open_first(p)  # one SUBSCRIBE at t=0
    assert p.add(["new1@markPrice@1s"], 0.05) == []  # too soon: waits for its slot
    assert p.remove([streams(100)[0]], 0.06) == []
    timed = run_timers(p, until=2.0)
    sends = [(t, sent_params([a])[0]) for t, a in timed if isinstance(a, Send)]
    assert [m for _, m in sends] == [("SUBSCRIBE", ["new1@markPrice@1s"]),
                                     ("UNSUBSCRIBE", [streams(100)[0]])]
    assert [t for t, _ in sends] == pytest.approx([0.201, 0.402])  # 1/5 s (+1 ms) apart


# -- control frames -----------------------------------------------------------------------------


def test_acks_and_errors_never_reach_the_data_path(caplog: pytest.LogCaptureFixture) -> None:
    p, telemetry = make(3)
    first = open_first(p)
    rid = json.loads(first[0].text)["id"]  # type: ignore[union-attr]
    assert p.received(1, json.dumps({"result": None, "id": rid}), 0.1) == []
    assert p.received(1, b'{"result":null,"id":99}', 0.1) == []
    refused = [a for a in p.add(["bad@stream"], 1.0) if isinstance(a, Send)]
    bad_id = json.loads(refused[0].text)["id"]  # type: ignore[union-attr]
    with caplog.at_level(logging.ERROR, logger="perpstream.producer.ws_protocol"):
        answer = {"error": {"code": 2, "msg": "Invalid request"}, "id": bad_id}
        assert p.received(1, json.dumps(answer), 1.5) == []
    assert telemetry.get("subscribe_errors") == 1
    line = next(r for r in caplog.records if r.message == "websocket request refused")
    assert line.streams == ["bad@stream"] and line.request == "SUBSCRIBE"  # type: ignore[attr-defined]
    # data, a raw payload and garbage all go to the data path (which counts rejects)
    for frame in (data(), '{"e":"markPriceUpdate","s":"BTCUSDT"}', "{not json", "[1,2]"):
        assert p.received(1, frame, 2.0) == [Deliver(1, frame)]
    # acks do not count as data for the silence watchdog
    p2, _ = make(3)
    open_first(p2)
    p2.received(1, '{"result":null,"id":1}', 9.0)
    assert Close(1, "silence") in p2.tick(10.0)


def test_data_answers_none_only_where_delivering_is_all_there_is_to_do() -> None:
    """The read loop's shortcut: None means "deliver it"; anything else is what received() says."""
    p, _ = make(3, silence_timeout=10.0)
    open_first(p)
    first = data()
    assert p.data(1, first, 1.0) == [Deliver(1, first)]  # the socket's first data: it now streams
    assert p.data(1, "{not json", 5.0) == [Deliver(1, "{not json")]
    assert p.data(1, data(e=1_790_000_001_000), 9.0) is None
    assert p.data(1, '{"result":null,"id":99}', 9.5) == []  # an ack is never delivered
    assert p.tick(18.9) == []  # the frame at 9.0 reset the silence watchdog like received() does
    assert p.tick(19.0) == [Close(1, "silence")]
    assert p.data(7, first, 19.5) == [Deliver(7, first)]  # an unknown socket: received()'s answer


# -- silence ------------------------------------------------------------------------------------


def test_silent_socket_is_replaced_and_resubscribed() -> None:
    p, telemetry = make(3, silence_timeout=10.0)
    open_first(p)
    assert p.received(1, data(), 1.0) == [Deliver(1, data())]
    assert p.tick(10.9) == []
    assert p.next_deadline() == 11.0
    assert p.tick(11.0) == [Close(1, "silence")]
    assert p.state(1) is SocketState.CLOSING
    again = p.closed(1, 11.5, code=1000)
    assert again == [Connect(2, 1.0, "reconnect")]  # the socket had data: backoff starts over
    assert telemetry.get("reconnects", {"reason": "silence"}) == 1
    assert sent_params(p.connected(2, 13.0)) == [("SUBSCRIBE", streams(3))]


def test_no_streams_no_silence_watchdog() -> None:
    p = ConnectionProtocol("ws-1", [], backoff=doubling, silence_timeout=1.0)
    open_first(p)
    assert p.next_deadline() == 1000 * 23.5 * 3.6  # only the rotation is scheduled
    assert p.tick(50.0) == []
    p.add(["a@markPrice@1s"], 60.0)  # the silence clock starts with the first stream
    assert p.tick(60.5) == []
    assert p.tick(61.0) == [Close(1, "silence")]


# -- reconnect and resubscribe --------------------------------------------------------------------


def test_streams_are_remembered_across_reconnects() -> None:
    p, telemetry = make(2)
    open_first(p)
    p.received(1, data(), 0.5)
    p.add(["new@markPrice@1s"], 1.0)
    p.remove([streams(2)[0]], 1.0)
    run_timers(p, until=2.0)
    assert p.closed(1, 3.0, code=1001) == [Connect(2, 1.0, "reconnect")]
    assert telemetry.get("reconnects", {"reason": "closed"}) == 1
    assert telemetry.get("ws_closes", {"code": "1001"}) == 1
    actions = p.connected(2, 4.0) + [a for _, a in run_timers(p, until=6.0, now=4.0)]
    assert sent_params(actions) == [("SUBSCRIBE", sorted([streams(2)[1], "new@markPrice@1s"]))]


def test_backoff_grows_while_failing_and_restarts_after_data() -> None:
    p, telemetry = make(1)
    p.start(0.0)
    assert p.connect_failed(1, 0.1, status=503, kind="InvalidStatus") == [Connect(2, 1.0, "reconnect")]
    assert p.connect_failed(2, 1.2, kind="ConnectionRefusedError") == [Connect(3, 2.0, "reconnect")]
    assert p.connect_failed(3, 3.3, kind="TimeoutError") == [Connect(4, 4.0, "reconnect")]
    assert telemetry.total("ws_connect_failures") == 3
    p.connected(4, 8.0)
    assert p.closed(4, 9.0) == [Connect(5, 8.0, "reconnect")]  # no data: keeps growing
    p.connected(5, 20.0)
    p.received(5, data(), 20.5)
    assert p.closed(5, 21.0) == [Connect(6, 1.0, "reconnect")]  # it streamed: starts over


def test_rate_limited_handshake_waits_for_retry_after() -> None:
    p, _ = make(1)
    p.start(0.0)
    [c] = p.connect_failed(1, 0.0, status=429, kind="InvalidStatus", retry_after=30.0)
    assert isinstance(c, Connect) and c.delay == 30.0
    [c] = p.connect_failed(c.socket, 30.0, status=418, kind="InvalidStatus")
    assert isinstance(c, Connect) and c.delay == 60.0  # no Retry-After: at least a minute


@pytest.mark.parametrize("status,kind", [(404, "InvalidStatus"), (451, "InvalidStatus"),
                                         (400, "InvalidStatus"), (None, "InvalidURI")])
def test_permanent_handshake_failure_stops_instead_of_looping(status: int | None, kind: str) -> None:
    p, _ = make(1)
    p.start(0.0)
    actions = p.connect_failed(1, 0.0, status=status, kind=kind, detail="nope")
    assert len(actions) == 1 and isinstance(actions[0], Fail)
    assert (f"http_{status}" if status else kind) in actions[0].cause
    assert p.stopped and p.failure == actions[0].cause
    assert p.tick(100.0) == [] and p.next_deadline() is None


# -- rotation -------------------------------------------------------------------------------------


def test_rotation_opens_the_successor_and_closes_the_old_socket_after_its_first_data() -> None:
    p, telemetry = make(3, max_lifetime=100.0)
    open_first(p)
    p.received(1, data(e=1), 1.0)
    for t in range(10, 100, 9):  # streaming keeps the watchdog quiet
        p.received(1, data(e=t), float(t))
    assert p.tick(99.0) == []
    assert p.next_deadline() == 100.0
    assert p.tick(100.0) == [Connect(2, 0.0, "rotation")]
    assert sent_params(p.connected(2, 100.2)) == [("SUBSCRIBE", streams(3))]
    # both sockets stream during the overlap; nothing is closed yet
    assert p.received(1, data(e=100), 100.5) == [Deliver(1, data(e=100))]
    assert p.state(1) is SocketState.OPEN
    assert p.received(2, data(e=100), 100.6) == [Deliver(2, data(e=100)), Close(1, "rotated")]
    assert telemetry.get("ws_rotations") == 1
    assert p.closed(1, 101.0, code=1000) == []  # closed by us: no reconnect
    assert telemetry.total("reconnects") == 0
    assert p.primary == 2 and p.next_deadline() == 100.6 + 10.0  # the new socket's watchdog
    p.received(2, data(e=150), 150.0)
    p.received(2, data(e=199), 199.0)
    assert p.tick(200.2) == [Connect(3, 0.0, "rotation")]  # lifetime counted from its opening


def test_silent_successor_is_dropped_and_rotation_retried() -> None:
    p, telemetry = make(3, max_lifetime=100.0, silence_timeout=10.0)
    open_first(p)
    for t in range(1, 130, 3):
        p.received(1, data(e=t), float(t))
        if t == 100:
            assert p.tick(100.0) == [Connect(2, 0.0, "rotation")]
            p.connected(2, 100.0)
        if t == 109:
            assert p.tick(110.0) == [Close(2, "rotation_failed")]
            assert p.primary == 1 and p.successor is None
    assert telemetry.get("ws_rotations") == 0
    assert p.closed(2, 110.5) == []
    assert p.next_deadline() == 111.0  # the retry: min(60, backoff) later
    assert p.tick(111.0) == [Connect(3, 0.0, "rotation")]


def test_failed_rotation_handshake_keeps_the_old_socket() -> None:
    p, _ = make(1, max_lifetime=100.0)
    open_first(p)
    p.received(1, data(), 95.0)
    assert p.tick(100.0) == [Connect(2, 0.0, "rotation")]
    assert p.connect_failed(2, 100.1, status=503, kind="InvalidStatus") == []
    assert p.primary == 1 and p.state(1) is SocketState.OPEN


def test_old_socket_closing_mid_rotation_hands_over_to_the_successor() -> None:
    p, telemetry = make(1, max_lifetime=100.0)
    open_first(p)
    p.received(1, data(), 99.0)
    p.tick(100.0)
    p.connected(2, 100.1)
    assert p.closed(1, 100.2, code=1001) == []  # no reconnect: the successor is subscribed
    assert p.primary == 2 and telemetry.get("reconnects", {"reason": "closed"}) == 1


def test_stop_closes_every_socket_and_never_reconnects() -> None:
    p, _ = make(1, max_lifetime=100.0)
    open_first(p)
    p.received(1, data(), 99.0)
    p.tick(100.0)  # a successor is connecting
    assert sorted(p.stop(100.05), key=lambda a: a.socket) == [  # type: ignore[union-attr]
        Close(1, "stopped"), Close(2, "stopped")]
    assert p.closed(1, 101.0) == [] and p.connect_failed(2, 101.0, status=503) == []
    assert p.connected(3, 101.0) == [Close(3, "stopped")]


# -- dialects: Bybit's heartbeat, acks and refusals ---------------------------------------------


def bybit_data(symbol: str = "BTCUSDT") -> str:
    return json.dumps({"topic": f"tickers.{symbol}", "type": "delta", "data": {"symbol": symbol},
                       "cs": 1, "ts": 1_790_000_000_000})


def test_a_dialect_with_a_heartbeat_pings_every_open_socket_on_time() -> None:
    p = ConnectionProtocol("bybit-1", ["tickers.BTCUSDT"], backoff=doubling, dialect=bybit.DIALECT,
                           silence_timeout=1000.0)
    first = open_first(p)
    assert [json.loads(a.text) for a in first if isinstance(a, Send)] == [
        {"op": "subscribe", "args": ["tickers.BTCUSDT"], "req_id": "1"}]
    pings = [(t, a) for t, a in run_timers(p, 65.0) if isinstance(a, Send)]
    assert pings == [(20.0, Send(1, '{"op":"ping"}')), (40.0, Send(1, '{"op":"ping"}')),
                     (60.0, Send(1, '{"op":"ping"}'))]
    # the pong is a control answer: never delivered, and not data for the silence watchdog
    assert p.received(1, '{"success":true,"ret_msg":"pong","conn_id":"c","op":"ping"}', 61.0) == []
    assert p.received(1, bybit_data(), 62.0) == [Deliver(1, bybit_data())]


def test_binance_never_pings_the_server_pings_it() -> None:
    p, _ = make(3)
    open_first(p)
    assert not [a for _, a in run_timers(p, 9.0) if isinstance(a, Send)]


def test_a_refusal_in_another_dialect_is_counted_and_names_its_streams(
        caplog: pytest.LogCaptureFixture) -> None:
    telemetry = Telemetry()
    p = ConnectionProtocol("bybit-1", ["tickers.BTCUSDT"], backoff=doubling, dialect=bybit.DIALECT,
                           telemetry=telemetry)
    open_first(p)
    ack = '{"success":true,"ret_msg":"","conn_id":"c","req_id":"1","op":"subscribe"}'
    assert p.received(1, ack, 0.1) == []
    sent = [a for a in p.add(["tickers.NOPEUSDT"], 1.0) if isinstance(a, Send)]
    rid = json.loads(sent[0].text)["req_id"]
    with caplog.at_level(logging.ERROR, logger="perpstream.producer.ws_protocol"):
        refusal = {"success": False, "ret_msg": "Invalid symbol :[tickers.NOPEUSDT]", "conn_id": "c",
                   "req_id": rid, "op": "subscribe"}
        assert p.received(1, json.dumps(refusal), 1.5) == []
    assert telemetry.get("subscribe_errors") == 1
    line = next(r for r in caplog.records if r.message == "websocket request refused")
    assert line.streams == ["tickers.NOPEUSDT"]  # type: ignore[attr-defined]
    assert "Invalid symbol" in line.error  # type: ignore[attr-defined]
