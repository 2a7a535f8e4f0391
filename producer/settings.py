"""``ProducerSettings``: everything ``perpstream produce`` can be told, from
``PERPSTREAM_*`` env vars or CLI flags (flags win). Built once at the edge."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from perpstream.errors import ConfigError
from perpstream.producer import binance, bybit
from perpstream.producer.timespec import parse_instant
from perpstream.producer.venues import VENUE_NAMES
from perpstream.runtime.settings import CommonSettings
from perpstream.schemas.rules import symbol_problem

_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class ProducerSettings(CommonSettings):
    source: Literal["live", "replay", "sim", "rest"] = Field(
        default="live",
        description="live Binance websocket + REST, REST polling only (rest), a replay file, "
        "or a simulated market",
    )
    symbols: str | None = Field(default=None, description="comma-separated symbols (live source)")
    all_symbols: bool = Field(default=False, description="follow every PERPETUAL/TRADING symbol")
    stream_mode: Literal["auto", "per_symbol", "all_market"] = Field(
        default="auto",
        description="per_symbol = <s>@markPrice@1s sharded over connections; all_market = !markPrice@arr@1s; "
        f"auto = all_market with --all or more than {binance.ALL_MARKET_ABOVE} symbols",
    )

    sim_symbols: int = Field(default=20, ge=1, le=100_000, description="number of simulated symbols")
    seed: int = Field(default=1, description="seed of the simulated market (the same seed, the same market)")
    sim_rate: float = Field(
        default=1.0, ge=0, description="simulated seconds per wall second; 0 = as fast as possible",
    )
    sim_start_ms: int | None = Field(
        default=None, description="event time of the first simulated tick; unset = now",
    )
    replay_file: str | None = Field(
        default=None,
        description="file written by perpstream record (replay); on the command line --source replay:FILE",
    )
    replay_rate: float = Field(default=0.0, ge=0, description="replay speed; 0 = as fast as possible")
    duration: float | None = Field(default=None, gt=0, description="stop cleanly after this many seconds")

    binance_ws_url: str | None = Field(default=None, description="websocket base, default the routed /market")
    binance_rest_url: str | None = Field(default=None, description="REST base, default https://fapi.binance.com")
    testnet: bool = Field(default=False, description="use the Binance futures testnet URLs")

    # -- venues (docs/producer.md, "Venues") ------------------------------------------------------
    venues: str = Field(
        default="binance",
        description="comma-separated venues to read: binance, bybit, okx, hyperliquid, or all",
    )
    bybit_ws_url: str = Field(default=bybit.LIVE_WS_URL, description="Bybit v5 public linear websocket")
    bybit_rest_url: str = Field(default=bybit.LIVE_REST_URL, description="Bybit REST base (paths appended)")
    bybit_symbols: str | None = Field(
        default=None, description="Bybit symbols as Bybit spells them; unset = every listed perpetual",
    )
    okx_ws_url: str = Field(default="wss://ws.okx.com:8443/ws/v5/public", description="OKX public websocket")
    okx_rest_url: str = Field(default="https://www.okx.com", description="OKX REST base (v5 paths appended)")
    okx_symbols: str | None = Field(
        default=None, description="OKX swaps as OKX spells them (BTC-USDT-SWAP); unset = every live swap",
    )
    hyperliquid_ws_url: str = Field(default="wss://api.hyperliquid.xyz/ws", description="websocket endpoint")
    hyperliquid_rest_url: str = Field(
        default="https://api.hyperliquid.xyz", description="Hyperliquid REST base (POST /info)",
    )
    hyperliquid_symbols: str | None = Field(
        default=None, description="Hyperliquid coins as meta spells them (BTC, kPEPE); unset = every coin",
    )
    conflate_ms: int = Field(
        default=1000, ge=0,
        description="publish the last value of each such span of event time per symbol and metric; "
        "0 = every update",
    )

    oi_interval: float = Field(default=10.0, gt=0, description="open-interest poll period per symbol, s")
    rest_weight_limit: int = Field(
        default=binance.REST_WEIGHT_LIMIT, gt=0, description="Binance's REST request weight per minute",
    )
    rest_weight_share: float = Field(default=0.5, gt=0, le=1, description="share of the weight limit we use")
    rest_timeout: float = Field(default=10.0, gt=0, description="timeout of one REST request, s")
    rest_concurrency: int = Field(default=8, ge=1, description="open-interest requests in flight at most")
    exchange_info_interval: float = Field(default=300.0, gt=0, description="symbol list refresh period, s")

    ws_streams_per_connection: int = Field(
        default=binance.MAX_STREAMS_PER_CONNECTION, ge=1, le=1024,
        description="streams subscribed on one websocket connection; more symbols open more connections",
    )
    ws_silence_timeout: float = Field(default=10.0, gt=0, description="reconnect after this long silent")
    ws_max_lifetime: float = Field(
        default=23.5 * 3600, gt=0, description="rotate connections before Binance's 24 h limit, s",
    )
    ws_max_messages_per_second: float = Field(
        default=5.0, gt=0, le=10,
        description="(un)subscribe messages sent per connection per second (Binance allows 10)",
    )
    ws_compression: Literal["none", "deflate"] = Field(
        default="none",
        description="permessage-deflate on the websockets: deflate saves bandwidth, costs CPU per frame",
    )
    ws_open_timeout: float = Field(default=10.0, gt=0, description="websocket opening handshake timeout, s")
    backoff_initial: float = Field(
        default=1.0, gt=0, description="first reconnect / retry wait of the websocket and REST, s (jittered)",
    )
    backoff_cap: float = Field(default=60.0, gt=0, description="longest reconnect / retry wait, s")
    max_frame_bytes: int = Field(
        default=binance.DEFAULT_MAX_FRAME_BYTES, gt=0,
        description="larger websocket frames and REST bodies are rejected (too_large)",
    )

    kafka_compression: Literal["zstd", "lz4", "snappy", "gzip", "none"] = Field(
        default="zstd", description="librdkafka compression.type of the MetricPoint batches",
    )
    kafka_linger_ms: int = Field(default=20, ge=0, description="librdkafka linger.ms, the longest batch wait")
    kafka_batch_size: int = Field(default=1_000_000, gt=0, description="librdkafka batch.size, bytes")
    kafka_delivery_timeout_ms: int = Field(
        default=120_000, gt=0,
        description="librdkafka delivery.timeout.ms; a point not acknowledged by then is re-enqueued",
    )
    buffer_max_messages: int = Field(
        default=100_000, ge=10, description="librdkafka queue: messages not yet acked",
    )
    overflow_max_points: int = Field(
        default=100_000, ge=0, description="points held here when the librdkafka queue is full",
    )
    flush_timeout: float = Field(default=15.0, gt=0, description="bounded drain on stop, s")
    event_loop: Literal["auto", "uvloop", "asyncio"] = Field(
        default="auto",
        description="auto = uvloop where installed, else asyncio's loop; uvloop requires it",
    )
    summary_interval: float = Field(default=30.0, gt=0, description="one-line summary log period, s")

    # -- REST polling (--source rest, --once) and history (perpstream backfill) ---------------------
    once: bool = Field(
        default=False,
        description="one REST round (premiumIndex + openInterest per symbol), flushed, then exit",
    )
    rest_poll_interval: float = Field(
        default=10.0, gt=0, description="--source rest: period of the premiumIndex + openInterest rounds, s",
    )
    backfill_since: str | None = Field(
        default=None,
        description="backfill: first event time (ISO-8601, epoch ms, or a duration ago: 90m, 6h, 7d)",
    )
    backfill_until: str | None = Field(
        default=None, description="backfill: end of the range, exclusive (same forms); unset = now",
    )
    backfill_resume: bool = Field(
        default=True, description="backfill: skip what a checkpoint in --data-dir says was delivered",
    )
    backfill_oi_period: Literal["5m", "15m", "30m", "1h", "2h", "4h", "6h", "12h", "1d"] = Field(
        default="5m", description="backfill: period of the open-interest history",
    )

    @field_validator("backfill_since", "backfill_until")
    @classmethod
    def _instant(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        parse_instant(v)  # ValueError names what is wrong
        return v.strip()

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        # ASCII letters are upper-cased for convenience (btcusdt -> BTCUSDT); other
        # scripts are kept as typed ("ß".upper() is "SS", not a listed symbol).
        out = [s.strip().translate(_ASCII_UPPER) for s in v.split(",") if s.strip()]
        for symbol in out:
            problem = symbol_problem(symbol)
            if problem is not None:
                raise ValueError(problem)
        return ",".join(out)

    @field_validator("venues")
    @classmethod
    def _venues(cls, v: str) -> str:
        names = [n.strip().lower() for n in v.split(",") if n.strip()]
        if names == ["all"]:
            return ",".join(VENUE_NAMES)
        unknown = [n for n in names if n not in VENUE_NAMES]
        if unknown or not names:
            raise ValueError(f"unknown venue {', '.join(unknown) or '(none)'}: choose from "
                             f"{', '.join(VENUE_NAMES)} or all")
        return ",".join(n for n in VENUE_NAMES if n in names)

    @field_validator("bybit_symbols", "okx_symbols", "hyperliquid_symbols")
    @classmethod
    def _venue_symbols(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        out = [x.strip() for x in v.split(",") if x.strip()]  # kept as typed: the venue's spelling
        for symbol in out:
            if not symbol.isprintable() or any(c.isspace() for c in symbol) or len(symbol.encode()) > 64:
                raise ValueError(f"{symbol!r} is not a symbol")
        return ",".join(out)

    @property
    def venue_list(self) -> list[str]:
        return self.venues.split(",")

    def venue_symbols(self, name: str) -> frozenset[str] | None:
        value: str | None = getattr(self, f"{name}_symbols")
        return frozenset(value.split(",")) if value else None

    @model_validator(mode="after")
    def _consistent(self) -> ProducerSettings:
        if self.once and self.source in ("sim", "replay"):
            raise ValueError(f"once (--once / PERPSTREAM_ONCE) polls Binance over REST; it does not go "
                             f"with source={self.source} (--source / PERPSTREAM_SOURCE)")
        if self.venues != "binance" and (self.source in ("rest", "replay") or self.once):
            raise ValueError(f"venues={self.venues} (--venues / PERPSTREAM_VENUES): only the live source and "
                             "the simulated market read venues other than Binance")
        if self.source == "replay" and not self.replay_file:
            raise ValueError("source=replay needs replay_file "
                             "(--source replay:FILE / PERPSTREAM_REPLAY_FILE)")
        if self.source == "replay" and self.replay_file and not Path(self.replay_file).is_file():
            raise ValueError(
                f"replay_file (--source replay:FILE / PERPSTREAM_REPLAY_FILE): "
                f"no such file: {self.replay_file}"
            )
        return self

    @property
    def polls_rest(self) -> bool:
        """REST polling instead of the websocket: ``--source rest``, or ``--once`` (one round)."""
        return self.source == "rest" or (self.once and self.source == "live")

    @property
    def all_market(self) -> bool:
        """Whether the live source reads ``!markPrice@arr@1s`` (see ``stream_mode``): one frame a
        second for every symbol costs less than a frame per symbol once the producer follows
        many (docs/producer.md, "Frame path cost")."""
        if self.stream_mode == "auto":
            return self.all_symbols or len(self.symbol_list) > binance.ALL_MARKET_ABOVE
        return self.stream_mode == "all_market"

    @property
    def symbol_list(self) -> list[str]:
        return self.symbols.split(",") if self.symbols else []

    @property
    def ws_url(self) -> str:
        if self.binance_ws_url:
            return self.binance_ws_url
        return binance.TESTNET_WS_URL if self.testnet else binance.LIVE_WS_URL

    @property
    def rest_url(self) -> str:
        if self.binance_rest_url:
            return self.binance_rest_url
        return binance.TESTNET_REST_URL if self.testnet else binance.LIVE_REST_URL

    def require_live_symbols(self) -> None:
        if "binance" in self.venue_list and not self.all_symbols and not self.symbol_list:
            raise ConfigError("the live source needs --symbols A,B (PERPSTREAM_SYMBOLS) or --all")

    def require_kafka(self) -> str:
        if not self.kafka_bootstrap_servers:
            raise ConfigError(
                "no Kafka cluster configured: set PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS or pass "
                "--bootstrap-servers (`perpstream run` starts an embedded broker instead)"
            )
        return self.kafka_bootstrap_servers
