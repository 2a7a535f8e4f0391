"""``perpstream backfill --venue bybit|hyperliquid`` against the fake venues: exactly the venue's
history on a real Kafka topic.

The fakes' history is a function of time (``settled_funding``, ``open_interest_at``), so the
test knows every (symbol, metric, event_time) -> value the topic must carry:

- nine days of three symbols (two chunks each, several pages of funding newest first and of
  open interest by cursor) publish exactly those points, as ``bybit_linear``, keyed by symbol;
- the checkpoints are per metric: a run of funding only, then a run of both, publishes the open
  interest and nothing of the funding again; a run over a longer range publishes only what is
  new; a run of a delivered range sends nothing (0 requests); ``--no-resume`` sends the same
  identities with the same values again;
- as a command, past the fake's IP limit (HTTP 403, waited out) and with a symbol Bybit does
  not know: the others are delivered, the unknown one is named, exit 1;
- Hyperliquid: the hourly settlements of listed and delisted coins, spelled as ``meta`` spells
  them (``kPEPE``), over two chunks; a coin ``meta`` does not name fails alone (the venue would
  answer it with no rows); open interest is said not to be backfilled; a run of the delivered
  range sends nothing;
- ``--all`` reads each venue's listing (Bybit's instruments, OKX's live linear swaps, Hyperliquid's
  listed coins) and backfills every symbol on it;
- OKX: the realized rate of swaps settling every 8, 4 and 1 h
  and the coin figure of open interest, clipped to the 1,440 bars OKX keeps with a note naming
  the limit, past its per-2-s limits (HTTP 429, waited out), an unknown swap failing alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from perpstream.fakes.bybit import FakeBybit
from perpstream.fakes.hyperliquid import FakeHyperliquid
from perpstream.fakes.okx import FakeOkx
from perpstream.producer.backfill import run
from perpstream.producer.settings import ProducerSettings
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas.models import Metric
from tests.fakes import read_topic

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ["1000PEPEUSDT", "BTCUSDT", "ETHUSDT"]
OI_MS = 300_000
Key = tuple[str, str, int]


def _until() -> int:
    now = int(time.time() * 1000)
    return now - now % 60_000 - 10 * 60_000


def expected(fake: FakeBybit, symbols: list[str], since: int, until: int) -> dict[Key, float]:
    """Every settled funding and open-interest point of ``[since, until)``, with its value."""
    out: dict[Key, float] = {}
    period = fake.funding_interval_min * 60_000
    for sym in symbols:
        for t in range(-(-since // period) * period, until, period):
            out[(sym, Metric.FUNDING_RATE_SETTLED, t)] = float(f"{fake.settled_funding(sym, t):.8f}")
        for t in range(-(-since // OI_MS) * OI_MS, until, OI_MS):
            out[(sym, Metric.OPEN_INTEREST, t)] = float(f"{fake.open_interest_at(sym, t):.8f}")
    return out


def published(bootstrap: str, topic: str, expect: int) -> list[tuple[bytes, dict[str, Any]]]:
    return read_topic(bootstrap, topic, expect=expect, timeout=120)


def as_map(records: list[tuple[bytes, dict[str, Any]]]) -> dict[Key, float]:
    return {(r["symbol"], r["metric"], r["event_time"]): r["value"] for _, r in records}


def settings(fake: FakeBybit, bootstrap: str, topic: str, data_dir: Path, since: int, until: int,
             **kw: Any) -> ProducerSettings:
    return ProducerSettings(
        kafka_bootstrap_servers=bootstrap, metrics_topic=topic, bybit_rest_url=fake.rest_url,
        bybit_symbols=",".join(SYMBOLS), backfill_since=str(since), backfill_until=str(until),
        data_dir=str(data_dir), backoff_initial=0.05, backoff_cap=0.5, **kw)


def test_bybit_history_is_exact_resumes_per_metric_and_is_idempotent(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path,
) -> None:
    topic = topic_factory(3)
    until = _until()
    since = until - 9 * 86_400_000 + 12_345  # off the minute on purpose
    mid = until - 20 * 3_600_000 - 7
    never = threading.Event()
    # funding every 30 min: 400 rows in a 200 h chunk, two pages newest first
    with FakeBybit(SYMBOLS, funding_interval_min=30) as fake:
        early = settings(fake, kafka_bootstrap, topic, tmp_path, since, mid)
        funding = run(early, Telemetry(), never, venue="bybit", metrics="funding_rate_settled")
        assert funding.exit_code == 0, funding.failures
        both = run(early, Telemetry(), never, venue="bybit")
        assert both.exit_code == 0, both.failures
        later = run(settings(fake, kafka_bootstrap, topic, tmp_path, since, until), Telemetry(), never,
                    venue="bybit")
        assert later.exit_code == 0, later.failures
        again = run(settings(fake, kafka_bootstrap, topic, tmp_path, since, until), Telemetry(), never,
                    venue="bybit")
        want = expected(fake, SYMBOLS, since, until)
        want_early = expected(fake, SYMBOLS, since, mid)
        fresh = run(settings(fake, kafka_bootstrap, topic, tmp_path, since, until, backfill_resume=False),
                    Telemetry(), never, venue="bybit")
        assert fresh.exit_code == 0, fresh.failures
        paths = Counter(path for path, _, _ in fake.rest_requests)

    funding_early = {k: v for k, v in want_early.items() if k[1] == Metric.FUNDING_RATE_SETTLED}
    assert funding.points == len(funding_early)
    assert both.points == len(want_early) - len(funding_early)  # the funding was delivered already
    assert later.points == len(want) - len(want_early)
    assert (again.exit_code, again.points, again.requests) == (0, 0, 0)
    assert again.chunks_skipped == 2 * len(SYMBOLS)
    assert fresh.points == len(want)
    assert paths["/v5/market/funding/history"] > 2 * len(SYMBOLS)  # pages beyond one per chunk

    records = published(kafka_bootstrap, topic, 2 * len(want))
    assert {r["source"] for _, r in records} == {"bybit_linear"}
    assert all(key == r["symbol"].encode() for key, r in records)
    counts = Counter((r["symbol"], r["metric"], r["event_time"]) for _, r in records)
    assert set(counts.values()) == {2}  # once by the resumed runs, once more with --no-resume
    assert as_map(records) == want
    # one symbol, one partition: the --no-resume run's points arrive in event-time order
    for sym in SYMBOLS:
        times = [r["event_time"] for _, r in records if r["symbol"] == sym]
        last_run = times[-sum(1 for k in want if k[0] == sym):]
        assert last_run == sorted(last_run)


def test_bybit_command_waits_out_the_ip_limit_and_names_an_unknown_symbol(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path,
) -> None:
    topic = topic_factory(3)
    until = _until()
    since = until - 86_400_000
    good = ["BTCUSDT", "ETHUSDT"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPSTREAM_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONIOENCODING="utf-8", PERPSTREAM_LOG_FORMAT="json",
               PERPSTREAM_BACKOFF_INITIAL="0.05", PERPSTREAM_BACKOFF_CAP="0.5")
    with FakeBybit(good, rest_limit=4) as fake:
        cmd = [sys.executable, "-m", "perpstream.cli", "backfill", "--venue", "bybit",
               "--since", str(since), "--until", str(until), "--symbols", "BTCUSDT,NOPEUSDT,ETHUSDT",
               "--bybit-rest-url", fake.rest_url, "--bootstrap-servers", kafka_bootstrap, "--topic", topic,
               "--data-dir", str(tmp_path)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        statuses = Counter(status for _, _, status in fake.rest_requests)
        want = expected(fake, good, since, until)

    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("perpstream backfill: error: bybit: not everything was delivered (NOPEUSDT: ")
    assert "Symbol Invalid" in last and "BTCUSDT" not in last and "ETHUSDT" not in last
    assert statuses[403] >= 1, "the fake's IP limit was never reached"
    records = published(kafka_bootstrap, topic, len(want))
    assert len(records) == len(want)
    assert as_map(records) == want


def test_hyperliquid_funding_history_is_exact_and_an_unknown_coin_fails_alone(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path,
) -> None:
    topic = topic_factory(3)
    until = _until()
    since = until - 25 * 86_400_000 + 777  # 600 hours: two chunks of 500
    coins = ["BTC", "LOOM", "kPEPE"]  # LOOM is delisted: its history stays
    never = threading.Event()
    with FakeHyperliquid(("BTC", "ETH", "kPEPE"), delisted=("LOOM",)) as fake:
        s = ProducerSettings(
            kafka_bootstrap_servers=kafka_bootstrap, metrics_topic=topic, hyperliquid_rest_url=fake.rest_url,
            hyperliquid_symbols="kPEPE,NOPE,BTC,LOOM", backfill_since=str(since), backfill_until=str(until),
            data_dir=str(tmp_path), backoff_initial=0.05, backoff_cap=0.5)
        first = run(s, Telemetry(), never, venue="hyperliquid")
        again = run(s.model_copy(update={"hyperliquid_symbols": "BTC,LOOM,kPEPE"}), Telemetry(), never,
                    venue="hyperliquid")
    want: dict[Key, float] = {}
    for coin in coins:
        for hour in range(since // 3_600_000 * 3_600_000, until, 3_600_000):
            t = fake.funding_time(hour)
            if since <= t < until:
                rate = fake.settled_funding(coin, hour)
                want[(coin, Metric.FUNDING_RATE_SETTLED, t)] = float(f"{rate:.10f}")

    assert first.exit_code == 1 and first.failures == {"NOPE": "Hyperliquid lists no such symbol"}
    assert first.points == len(want) and first.chunks == 2 * len(coins)
    assert any(n.startswith("open_interest is not backfilled: Hyperliquid keeps no open-interest history")
               for n in first.notes)
    assert (again.exit_code, again.points, again.requests) == (0, 0, 0)
    records = published(kafka_bootstrap, topic, len(want))
    assert {r["source"] for _, r in records} == {"hyperliquid"}
    assert len(records) == len(want) and as_map(records) == want


def test_okx_history_is_exact_clipped_to_what_okx_keeps_and_past_its_limits(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path,
) -> None:
    topic = topic_factory(3)
    until = _until()
    since = until - 8 * 86_400_000 + 999  # older than the 1,440 bars of 5 m open interest OKX keeps
    swaps = ["BONK-USDT-SWAP", "BTC-USDT-SWAP", "PEPE-USDT-SWAP"]  # settling every 1, 8 and 4 h
    never = threading.Event()
    with FakeOkx(swaps, open_interest_history_limit=2) as fake:
        s = ProducerSettings(
            kafka_bootstrap_servers=kafka_bootstrap, metrics_topic=topic, okx_rest_url=fake.rest_url,
            okx_symbols=",".join([*swaps, "NOPE-USDT-SWAP"]), backfill_since=str(since),
            backfill_until=str(until), data_dir=str(tmp_path), backoff_initial=0.05, backoff_cap=0.5)
        result = run(s, Telemetry(), never, venue="okx")
        statuses = Counter(status for *_, status in fake.rest_requests)
        records = [r for _, r in published(kafka_bootstrap, topic, result.points)]
        values = {(r["symbol"], r["metric"], r["event_time"]): (fake.settled_funding if r["metric"] ==
                  Metric.FUNDING_RATE_SETTLED else fake.open_interest_at)(r["symbol"], r["event_time"])
                  for r in records}

    assert result.exit_code == 1 and list(result.failures) == ["NOPE-USDT-SWAP"]
    assert "51001" in result.failures["NOPE-USDT-SWAP"]
    assert statuses[429] >= 1, "the fake's per-2-s limit was never reached"
    assert as_map([(b"", r) for r in records]) == values and len(records) == len(values)
    assert {r["source"] for r in records} == {"okx_swap"}
    oldest_kept = int(time.time() * 1000) - 1440 * OI_MS  # the bars OKX keeps (now: after the run)
    for sym in swaps:
        period = fake.swaps[sym].funding_period_ms
        funding = sorted(r["event_time"] for r in records
                         if r["symbol"] == sym and r["metric"] == Metric.FUNDING_RATE_SETTLED)
        assert funding == list(range(-(-since // period) * period, until, period))
        oi = sorted(r["event_time"] for r in records
                    if r["symbol"] == sym and r["metric"] == Metric.OPEN_INTEREST)
        assert oi == list(range(oi[0], until, OI_MS))  # every bar from the first to the end
        margin = oi[0] - oldest_kept  # an hour, less the run's seconds, rounded up to a bar
        assert 3_600_000 - 180_000 < margin <= 3_600_000 + OI_MS
    assert any(n.startswith("OKX serves the latest 1,440 bars of open-interest history")
               for n in result.notes)


@pytest.mark.parametrize("venue", ["bybit", "okx", "hyperliquid"])
def test_all_reads_the_venue_listing(
    venue: str, kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path,
) -> None:
    topic = topic_factory(3)
    until = _until()
    since = until - 86_400_000  # a day: a settlement of every symbol, whatever its interval
    fake: FakeBybit | FakeOkx | FakeHyperliquid
    if venue == "bybit":
        fake = FakeBybit(["BTCUSDT", "ETHUSDT", "1000PEPEUSDT"])
        listed = set(fake.listing)
    elif venue == "okx":
        fake = FakeOkx()  # with an inverse and a suspended swap, which are not followed
        listed = {s.inst_id for s in fake.swaps.values() if s.ct_type == "linear" and s.state == "live"}
    else:
        fake = FakeHyperliquid()  # with a delisted coin, which --all leaves out
        listed = set(fake.listed)
    with fake:
        s = ProducerSettings(
            kafka_bootstrap_servers=kafka_bootstrap, metrics_topic=topic, all_symbols=True,
            backfill_since=str(since), backfill_until=str(until), data_dir=str(tmp_path),
        ).model_copy(update={f"{venue}_rest_url": fake.rest_url})
        result = run(s, Telemetry(), threading.Event(), venue=venue, metrics="funding_rate_settled")
    assert result.exit_code == 0, result.failures
    assert result.symbols == len(listed) >= 3
    records = published(kafka_bootstrap, topic, result.points)
    assert {r["symbol"] for _, r in records} == listed
    assert {r["metric"] for _, r in records} == {Metric.FUNDING_RATE_SETTLED}
