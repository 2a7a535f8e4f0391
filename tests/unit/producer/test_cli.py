"""`perpstream produce` / `record` flags and start-up errors."""

from __future__ import annotations

import argparse

import pytest

from perpstream.errors import ConfigError
from perpstream.producer import cli
from perpstream.producer.settings import ProducerSettings
from perpstream.runtime import eventloop


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


def test_flags_override_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERPSTREAM_BINANCE_WS_URL", "ws://env/market")
    monkeypatch.setenv("PERPSTREAM_OI_INTERVAL", "5")
    args = parse("produce", "--source", "sim", "--sim-symbols", "7", "--seed", "3", "--duration", "2",
                 "--oi-interval", "2.5", "--bootstrap-servers", "h:1", "--metrics-port", "0")
    s = cli.settings_from_args(args)
    assert (s.source, s.sim_symbols, s.seed, s.duration, s.oi_interval) == ("sim", 7, 3, 2.0, 2.5)
    assert s.kafka_bootstrap_servers == "h:1" and s.metrics_port == 0
    assert s.ws_url == "ws://env/market"
    assert args.func is cli.produce_main


def test_defaults_and_testnet(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PERPSTREAM_BINANCE_WS_URL", "PERPSTREAM_BINANCE_REST_URL"):
        monkeypatch.delenv(var, raising=False)
    s = cli.settings_from_args(parse("produce", "--symbols", "btcusdt, ethusdt"))
    assert s.source == "live" and s.symbol_list == ["BTCUSDT", "ETHUSDT"] and s.sim_symbols == 20
    assert s.ws_url == "wss://fstream.binance.com/market" and s.rest_url == "https://fapi.binance.com"
    t = cli.settings_from_args(parse("produce", "--testnet", "--all"))
    assert t.ws_url == "wss://stream.binancefuture.com" and t.rest_url == "https://testnet.binancefuture.com"
    assert t.all_symbols


def test_no_kafka_is_a_config_error_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    args = parse("produce", "--source", "sim")
    with pytest.raises(ConfigError, match="PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS"):
        args.func(args)


def test_live_needs_symbols(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERPSTREAM_SYMBOLS", raising=False)
    args = parse("produce", "--bootstrap-servers", "h:1")
    with pytest.raises(ConfigError, match="--symbols"):
        args.func(args)


def test_replay_needs_a_file() -> None:
    with pytest.raises(ValueError, match="replay_file"):
        ProducerSettings(source="replay")


def test_record_registered() -> None:
    args = parse("record", "--symbols", "BTCUSDT", "--out", "x.jsonl", "--duration", "1")
    assert args.func is cli.record_main and args.out == "x.jsonl"



def test_exchange_spellings_are_accepted_as_symbols() -> None:
    s = ProducerSettings(symbols="1000pepeusdt,BTCUSDT_261225,币安人生usdt")
    assert s.symbol_list == ["1000PEPEUSDT", "BTCUSDT_261225", "币安人生USDT"]


def test_all_and_many_symbols_read_the_all_market_stream_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERPSTREAM_STREAM_MODE", raising=False)
    assert cli.settings_from_args(parse("produce", "--all")).all_market
    many = ",".join(f"S{i:03d}USDT" for i in range(51))
    assert cli.settings_from_args(parse("produce", "--symbols", many)).all_market
    assert not cli.settings_from_args(parse("produce", "--symbols", many[: many.rindex(",")])).all_market
    assert not cli.settings_from_args(parse("produce", "--all", "--stream-mode", "per_symbol")).all_market
    assert cli.settings_from_args(parse("produce", "--symbols", "BTCUSDT", "--stream-mode",
                                        "all_market")).all_market


def test_event_loop_uvloop_where_missing_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eventloop, "uvloop", None)  # what the import leaves where uvloop is missing
    assert eventloop.loop_factory("auto") is None  # falls back to asyncio's loop
    with pytest.raises(ConfigError, match="PERPSTREAM_EVENT_LOOP"):
        eventloop.loop_factory("uvloop")
