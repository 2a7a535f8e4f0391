"""The venue cases of ``perpstream bench frames``: what reading each venue costs.

Each case runs ``perpstream produce --venues X`` against that venue's fake
(:mod:`perpstream.fakes`) serving ``symbols`` perpetuals at the venue's live rate, with the
producer's default conflation (``--conflate-ms 1000``), next to the bare websocket clients
that only receive the same frames (:mod:`perpstream.bench.wsfloor`, speaking the venue's
dialect). docs/producer.md, "Frame path cost".

- **Bybit**: ``tickers.{symbol}``, 10 messages a second per symbol (Bybit pushes every
  100 ms): a snapshot with every field, then deltas of the fields that changed. The fake
  moves mark and index every message, open interest every third, the funding rate every
  tenth; conflation keeps one point per metric a second.
- **OKX**: four streams a swap, each pushed at its documented rate when its value moved
  (:data:`OKX_INTERVALS_MS`): ``mark-price`` every 200 ms, the swap's index
  (``index-tickers``) every 100 ms, ``open-interest`` every 3 s, ``funding-rate`` every 60 s
  (OKX: 30 to 90 s): 15.35 pushes a second a swap.
- **Hyperliquid**: ``activeAssetCtx``, one push a second per coin (the fake's ``rate``
  is pushes per subscribed coin per second), every field each time.

Figures per case: CPU µs per frame (one symbol's message), per published point (the
producer's own ``points_published`` over the window), and the share of one core per 1,000
symbols at the live rate: CPU per update x the live updates per symbol per second x 1,000
(the measured share scaled, and the same figure when the fake kept its rate). The line
that sums the venues takes each at its listed count (:data:`LISTED_SYMBOLS`), each in a
process of its own, against :data:`ALL_VENUES_SHARE`; when the four also ran in one
producer process (:mod:`perpstream.bench.together`), that case is the one judged. The
fakes serve plain ``ws://`` only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

from perpstream.bench.clients import (
    Clients,
    Feed,
    best,
    compare,
    floors_note,
    frame_row,
    points_published,
    profile_note,
    profile_window,
)
from perpstream.bench.e2e import LIVE_SYMBOLS
from perpstream.bench.measure import target
from perpstream.fakes.bybit import FakeBybit
from perpstream.fakes.hyperliquid import FakeHyperliquid
from perpstream.fakes.okx import FakeOkx
from perpstream.local import ensure_topics, free_ports
from perpstream.producer import okx
from perpstream.producer.bybit import tickers_topic

#: Perpetuals each venue lists, approximately: what a producer following every listed
#: perpetual subscribes (Binance ``exchangeInfo`` PERPETUAL and TRADING, Bybit
#: ``instruments-info`` LinearPerpetual and Trading, OKX ``instruments`` linear SWAP and live,
#: Hyperliquid ``meta`` not delisted), rounded; Binance's is the live load of every other
#: scenario (:data:`perpstream.bench.e2e.LIVE_SYMBOLS`). Never fetched by the bench: the
#: four-venue total is taken at these counts, so update them as the listings grow.
LISTED_SYMBOLS: Final[dict[str, int]] = {"binance": LIVE_SYMBOLS, "bybit": 500, "okx": 250,
                                         "hyperliquid": 200}
#: The target: every venue at its listed count under a third of one core.
ALL_VENUES_SHARE: Final = 1 / 3
#: The producer's default conflation, stated on its command line.
CONFLATE_MS: Final = 1000
#: Binance's all-market stream: one update per symbol a second.
BINANCE_LIVE_RATE: Final = 1.0


class BybitFeed:
    """The fake Bybit: topics that got their snapshot, and its ``cs`` (one per message sent)."""

    def __init__(self, fake: FakeBybit, symbols: int) -> None:
        self.fake, self.symbols = fake, symbols

    def _streaming(self) -> int:
        fake = self.fake
        return int(fake.call(lambda: sum(1 for c in fake.conns for v in c.topics.values() if v is not None)))

    def ready(self) -> bool:
        return self._streaming() == self.symbols

    def progress(self) -> str:
        return f"{self._streaming()} of {self.symbols} tickers topics"

    def sent(self) -> tuple[int, int]:
        return self.fake.cs, self.fake.cs  # one symbol a message

    def idle(self) -> bool:
        return not self.fake.conns

    def reset(self) -> None:
        return None


class OkxFeed:
    """The fake OKX: args pushed at least once, and its pushes, counted and cleared as they are
    read (kept decoded while ``record``: cleared, the list holds a window's at most)."""

    def __init__(self, fake: FakeOkx, symbols: int) -> None:
        self.fake = fake
        self.streams = len(set(okx_streams(list(fake.swaps)[:symbols])))
        self.pushes = 0

    def _streaming(self) -> int:
        fake = self.fake
        return int(fake.call(lambda: sum(1 for c in fake.conns for v in c.args.values() if v is not None)))

    def ready(self) -> bool:
        return self._streaming() == self.streams

    def progress(self) -> str:
        return f"{self._streaming()} of {self.streams} channel args"

    def sent(self) -> tuple[int, int]:
        def take() -> int:
            n = len(self.fake.pushes)
            self.fake.pushes.clear()
            return n

        self.pushes += int(self.fake.call(take))
        return self.pushes, self.pushes  # one swap (or index) a push

    def idle(self) -> bool:
        return not self.fake.conns

    def reset(self) -> None:
        self.fake.call(self.fake.pushes.clear)


class HyperliquidFeed:
    """The fake Hyperliquid: its subscriptions, and the pushes it keeps (cleared between clients)."""

    def __init__(self, fake: FakeHyperliquid, symbols: int) -> None:
        self.fake, self.symbols = fake, symbols

    def _subscribed(self) -> int:
        return int(self.fake.call(lambda: self.fake.subscriptions))

    def ready(self) -> bool:
        return self._subscribed() == self.symbols

    def progress(self) -> str:
        return f"{self._subscribed()} of {self.symbols} activeAssetCtx subscriptions"

    def sent(self) -> tuple[int, int]:
        n = len(self.fake.sent)
        return n, n  # one coin a push

    def idle(self) -> bool:
        return not self.fake.conns

    def reset(self) -> None:
        self.fake.call(self.fake.sent.clear)


@dataclass(frozen=True)
class VenueBench:
    """How the bench reads one venue: its fake at the live rate, what a bare client subscribes."""

    #: As ``--venues`` names it.
    name: str
    #: Messages a second per symbol at the venue's live rate, and what they are.
    live_rate: float
    rate_note: str
    #: ``n`` symbols as the venue spells them.
    symbols: Callable[[int], list[str]]
    #: The streams a bare client subscribes for those symbols (the venue's dialect names).
    streams: Callable[[Sequence[str]], list[str]]
    #: The fake serving those symbols at the live rate (a context manager, started on enter).
    fake: Callable[[list[str]], Any]
    feed: Callable[[Any, int], Feed]


def symbols_of(n: int) -> list[str]:
    """``n`` symbols as Binance and Bybit spell them."""
    return [f"SYM{i:04d}USDT" for i in range(n)]


def _bybit_fake(symbols: list[str]) -> FakeBybit:
    return FakeBybit(symbols, rate=BYBIT.live_rate, record=False)


def okx_streams(swaps: Sequence[str]) -> list[str]:
    """Every stream of these linear swaps: their own three channels and their index's tickers."""
    return [s for inst in swaps for s in okx.swap_streams(inst, inst.removesuffix("-SWAP"))]


#: OKX's documented push intervals, as the fake OKX takes them (every value moves each interval).
OKX_INTERVALS_MS: Final = {"mark_interval_ms": 200, "index_interval_ms": 100, "oi_interval_ms": 3_000,
                           "funding_push_ms": 60_000}


def _okx_fake(symbols: list[str]) -> FakeOkx:
    # every push is kept decoded (their count is the frames sent), cleared as it is counted
    ms = OKX_INTERVALS_MS
    return FakeOkx(symbols, mark_interval_ms=ms["mark_interval_ms"],
                   index_interval_ms=ms["index_interval_ms"], oi_interval_ms=ms["oi_interval_ms"],
                   funding_push_ms=ms["funding_push_ms"])


def _hyperliquid_fake(symbols: list[str]) -> FakeHyperliquid:
    # every push is kept (its count is the frames sent), cleared between clients
    return FakeHyperliquid(symbols, delisted=(), rate=HYPERLIQUID.live_rate)


BYBIT: Final = VenueBench(
    name="bybit", live_rate=10.0,
    rate_note="10 tickers messages a second a symbol (a snapshot, then deltas of the changed fields; Bybit "
    "pushes every 100 ms)",
    symbols=symbols_of,
    streams=lambda symbols: [tickers_topic(s) for s in symbols],
    fake=lambda symbols: _bybit_fake(symbols), feed=BybitFeed,
)
OKX: Final = VenueBench(
    name="okx", live_rate=round(sum(1000 / ms for ms in OKX_INTERVALS_MS.values()), 3),
    rate_note="15.35 pushes a second a swap (mark-price every 200 ms, index-tickers every 100 ms, "
    "open-interest every 3 s, funding-rate every 60 s, each when its value moved)",
    symbols=lambda n: [f"SYM{i:04d}-USDT-SWAP" for i in range(n)],
    streams=okx_streams, fake=_okx_fake, feed=OkxFeed,
)
HYPERLIQUID: Final = VenueBench(
    name="hyperliquid", live_rate=1.0,
    rate_note="1 activeAssetCtx push a second a coin (every field each time)",
    symbols=lambda n: [f"COIN{i:04d}" for i in range(n)],
    streams=list,
    fake=lambda symbols: _hyperliquid_fake(symbols), feed=HyperliquidFeed,
)
#: The venues other than Binance that the bench has a fake for, by the name ``--venues`` takes.
VENUE_BENCHES: Final[dict[str, VenueBench]] = {v.name: v for v in (BYBIT, OKX, HYPERLIQUID)}


def checkout_venues(checkout: str) -> frozenset[str]:
    """The venues other than Binance the producer of another checkout reads: what its
    ``perpstream.producer.venues.VENUES`` lists, asked of that checkout in a child process
    (never imported here: it is another version of the same modules). None for a checkout
    that predates the module, or whose ``perpstream`` would not be its own."""
    root = Path(checkout).resolve()
    if not (root / "perpstream").is_dir():
        return frozenset()
    code = ("import json, perpstream, perpstream.producer.venues as v; "
            "print(json.dumps([perpstream.__file__, sorted(v.VENUES)]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                          env=dict(os.environ, PYTHONPATH=str(root)))
    if done.returncode != 0 or not done.stdout.strip():
        return frozenset()
    where, names = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(where).resolve().is_relative_to(root):
        return frozenset()
    return frozenset(str(n) for n in names)


class VenueCase(Clients):
    """One venue's clients, one after the other, against its fake."""

    def __init__(self, venue: VenueBench, fake: Any, listing: list[str], env: dict[str, str],
                 bootstrap: str, work: str, seconds: float, warmup: float) -> None:
        super().__init__(venue.feed(fake, len(listing)), env, work, seconds, warmup)
        self.venue, self.fake, self.listing, self.bootstrap = venue, fake, listing, bootstrap

    def produce(self, name: str, pythonpath: str | None = None,
                during: Callable[[int, float], dict[str, Any]] | None = None) -> dict[str, Any]:
        topic = f"bench-frames-{uuid.uuid4().hex[:8]}"
        ensure_topics(self.bootstrap, {topic: 1})
        v, port = self.venue.name, free_ports(1)[0]
        argv = [sys.executable, "-m", "perpstream.cli", "produce", "--source", "live", "--venues", v,
                f"--{v}-ws-url", self.fake.ws_url, f"--{v}-rest-url", self.fake.rest_url,
                "--conflate-ms", str(CONFLATE_MS), "--bootstrap-servers", self.bootstrap, "--topic", topic,
                "--metrics-port", str(port)]
        return self.client(f"{v}-{name}", argv, dict(self.env, PYTHONPATH=pythonpath) if pythonpath else None,
                           during=during, points=partial(points_published, port))

    def floor(self, lib: str) -> dict[str, Any]:
        v = self.venue.name
        argv = [sys.executable, "-m", "perpstream.bench.wsfloor", "--lib", lib, "--venue", v,
                self.fake.ws_url, *self.venue.streams(self.listing)]
        return self.client(f"{v}-floor-{lib}", argv)


@dataclass
class VenueResult:
    """A venue case's rows, its producer's row (the best round), its summary and notes."""

    rows: list[dict[str, Any]]
    mine: dict[str, Any]
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    profile: dict[str, Any] | None = None


def case_name(venue: VenueBench, n: int) -> str:
    return f"{venue.name}, {n} symbols x {venue.live_rate:g}/s"


def share_per_1000(r: dict[str, Any], live_rate: float) -> float | None:
    """Share of one core per 1,000 symbols at ``live_rate`` updates a second per symbol."""
    return round(r["cpu_s"] / r["events"] * live_rate * 1000, 5) if r["events"] else None


def summary(venue: str, r: dict[str, Any], symbols: int, live_rate: float) -> dict[str, Any]:
    """One venue's line: its producer's figures, the share per 1,000 symbols and at its listed count."""
    per_1000 = share_per_1000(r, live_rate)
    listed = LISTED_SYMBOLS[venue]
    return {"venue": venue, "case": r["name"], "symbols": symbols, "live_rate": live_rate,
            "cpu_us_per_frame": r["cpu_us_per_frame"], "cpu_us_per_point": r["cpu_us_per_point"],
            "cpu_share": r["cpu_share"], "cpu_share_per_1000": per_1000, "listed_symbols": listed,
            "cpu_share_listed": round(per_1000 * listed / 1000, 5) if per_1000 is not None else None}


def total(summaries: list[dict[str, Any]], judged: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sum of every measured venue's share at its listed count, each venue in a producer
    process of its own, and the target it is held to: met only when all four were measured,
    and not judged (``judged`` False) when the four venues ran in one producer process
    (:mod:`perpstream.bench.together`), the figure the target is judged on then."""
    measured = {s["venue"]: s for s in summaries if s["cpu_share_listed"] is not None}
    missing = [v for v in LISTED_SYMBOLS if v not in measured]
    share = round(sum(s["cpu_share_listed"] for s in measured.values()), 5)
    parts = " + ".join(f"{v} {LISTED_SYMBOLS[v]}" for v in LISTED_SYMBOLS if v in measured)
    name = (f"every venue at its listed symbols ({parts or 'none measured'}): producer CPU, the sum of "
            "separate processes, one a venue (share of one core)"
            + (f"; not measured: {', '.join(missing)}" if missing else ""))
    met = share < ALL_VENUES_SHARE if not missing and judged else None
    wanted = f"< {ALL_VENUES_SHARE:.3f} (a third)" + ("" if judged else "; judged on one process")
    out = {"cpu_share": share, "target": round(ALL_VENUES_SHARE, 4), "venues": list(measured),
           "missing": missing, "met": met, "judged": judged}
    return out, target(name, share, wanted, met)


def _rounds(case: VenueCase, name: str, rounds: int,
            compare_checkout: str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """This checkout's producer and the compared one's in turn; a compared producer that does
    not run (another version of the command line) is a note, and is not tried again."""
    mine: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    notes: list[str] = []
    for _ in range(max(1, rounds)):
        mine.append(case.produce("produce"))
        if compare_checkout is not None and not notes:
            try:
                other.append(case.produce("compare", compare_checkout))
            except RuntimeError as exc:
                notes.append(f"{name}: perpstream produce of {compare_checkout} did not run: {exc}")
    return mine, other, notes


def run_case(venue: VenueBench, n: int, libs: list[str], rounds: int, compare_checkout: str | None,
             env: dict[str, str], bootstrap: str, work: str, seconds: float, warmup: float,
             profile: bool) -> VenueResult:
    """One venue's case: each floor, then this checkout's producer (and the compared one's when
    it reads the venue: ``compare_checkout`` is None otherwise) over alternating rounds, best shown."""
    name = case_name(venue, n)
    listing = venue.symbols(n)
    with venue.fake(listing) as fake:
        case = VenueCase(venue, fake, listing, env, bootstrap, work, seconds, warmup)
        floor_rows = [frame_row(f"{name}: bare {lib} client (floor)", case.floor(lib), "baseline", floor=lib)
                      for lib in libs]
        mine_runs, other_runs, notes = _rounds(case, name, rounds, compare_checkout)
        prof = None
        if profile:  # a run of its own: py-spy pauses the process for each sample
            out = Path(work, f"profile-{venue.name}.txt")
            prof = case.produce("profile", during=partial(profile_window, out=out))
    mine = frame_row(f"{name}: perpstream produce", best(mine_runs))
    rows = [*floor_rows, mine]
    if other_runs:
        rows.append(frame_row(f"{name}: perpstream produce of {compare_checkout}", best(other_runs)))
    for r in rows:
        r.update(venue=venue.name, symbols=n, live_rate=venue.live_rate,
                 cpu_share_per_1000=share_per_1000(r, venue.live_rate))
    reference = next((r for r in floor_rows if r["floor"] == "websockets"),
                     floor_rows[0] if floor_rows else None)
    compare(rows, reference, None)
    notes.append(floors_note(name, rows, mine))
    if prof is not None:
        notes.append(profile_note(name, prof, mine))
    return VenueResult(rows, mine, summary(venue.name, mine, n, venue.live_rate), notes, prof)


def case_notes(venues: list[VenueBench], n: int | None, seconds: float) -> list[str]:
    """What each venue case ran: its load, its rate, how the points are counted."""
    out = [f"{v.name}: {n or LISTED_SYMBOLS[v.name]} symbols, {v.rate_note}; plain ws:// (the fake serves "
           f"no TLS); --conflate-ms {CONFLATE_MS}" for v in venues]
    if venues:
        out.append(f"venue cases: window {seconds:g} s; points = the producer's points_published over the "
                   "window (its /metrics, read just outside it); share per 1,000 symbols = CPU per update x "
                   "the live updates a second per symbol x 1,000; the total takes each venue at its listed "
                   f"count ({', '.join(f'{k} {v}' for k, v in LISTED_SYMBOLS.items())}), each in a producer "
                   "process of its own, so each process's fixed cost (its timers, librdkafka's threads) is "
                   "counted once per venue (the sum of separate processes)")
    return out
