"""Scenario ``frames``: the whole websocket frame path, frames on a socket -> points to Kafka.

The fake exchanges (:mod:`perpstream.fakes`) run in this process and stream frames at a
stated rate; each measured client runs in a child process of its own, one after the other,
against the same server (:mod:`perpstream.bench.clients`):

- ``perpstream produce`` (the real command: websocket, parsing, Avro, librdkafka to a
  broker), with open interest polled only once an hour so that the figure is the frame
  path's;
- the floors: a bare client that only receives the same frames, on the producer's event
  loop (:mod:`perpstream.bench.wsfloor`): websockets (the producer's library) and, where it
  is installed, picows (a Cython client, never a dependency of the product); ``--floor``
  names them, ``auto`` (the default) takes picows when it can be imported and says "not
  installed" otherwise;
- the peer, where installed: cryptofeed's Binance USD-M funding feed
  (:mod:`perpstream.bench.peer_cryptofeed`), per-symbol streams only, with an
  interpreter named by ``--peer-python`` / ``PERPSTREAM_BENCH_PEER_PYTHON`` (or this one,
  when it can import cryptofeed);
- optionally ``perpstream produce`` of another checkout (``--compare-checkout DIR``,
  imported from ``DIR``), for before/after figures in one run. It runs the cases its
  producer knows: every Binance case, and the venue cases of the venues its
  ``perpstream.producer.venues`` lists (none for a checkout from before that module).

With ``--rounds N`` the producers (this checkout's and the compared one) run N times in
turn and each row shows its round with the least CPU per frame: on a shared machine the
load of others changes from one client's window to the next, and alternating rounds
give both producers the same chances.

With ``--profile`` each case runs the producer once more under ``py-spy record
--native`` (not one of the measured rounds: py-spy pauses it for every sample); the
notes give its CPU split: the main thread's busy samples by
:data:`~perpstream.bench.clients.PROFILE_RULES` (event loop, TLS, websockets,
perpstream's parse, conflate, normalise, encode, produce), weighed by the threads' CPU of
the best measured round.

Binance cases (``--frames-venues`` names ``binance``): per-symbol streams
(``--frame-symbols`` x ``--frame-rate`` frames/s each) and the all-market stream
(``!markPrice@arr@1s`` with ``--symbols`` symbols, one frame a second; the producer
follows them with ``--all``), each plain (``ws://``) and TLS (``wss://``, a self-signed
certificate made with the ``openssl`` command, trusted through ``SSL_CERT_FILE``; the TLS
cases are skipped where ``openssl`` is missing). Points are 5 per markPrice update (every
symbol is a perpetual: mark, index, settle, funding rate, next funding time).

Venue cases (the other venues ``--frames-venues`` names): ``perpstream produce --venues X``
against that venue's fake at its live rate, plain (:mod:`perpstream.bench.venues`), each
with its share of one core per 1,000 symbols; one line sums every venue at its listed
symbol count (Binance from the all-market case), each in a process of its own.

With all four venues chosen, one more case (:mod:`perpstream.bench.together`): one
``perpstream produce --venues binance,bybit,okx,hyperliquid`` process against the four
fakes at once, each venue's delivered rate next to its live rate, and its share of a
core at the live rate. That share, at the listed counts, is the one held to a third of
one core; the sum of separate processes is judged only when the one-process case did not
run at the listed counts.

Each client is measured over ``seconds`` (venue cases: ``venue_seconds``) after it
subscribed everything and ``warmup`` seconds passed: CPU-seconds of its process over the
frames and updates the server sent in the window. docs/producer.md, "Frame path cost".
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from perpstream.bench import FLOORS, FRAME_VENUES
from perpstream.bench.clients import (
    PROFILE_RULES,
    BinanceFeed,
    Clients,
    best,
    compare,
    floors_note,
    frame_row,
    profile_note,
    profile_split,
    profile_window,
    us,
)
from perpstream.bench.e2e import _broker
from perpstream.bench.measure import report, target
from perpstream.bench.together import run_together, runs_together
from perpstream.bench.venues import (
    BINANCE_LIVE_RATE,
    LISTED_SYMBOLS,
    VENUE_BENCHES,
    case_notes,
    checkout_venues,
    run_case,
    share_per_1000,
    summary,
    symbols_of,
    total,
)
from perpstream.fakes.binance import FakeBinance
from perpstream.local import ensure_topics
from perpstream.producer.binance import ALL_MARKET_STREAM, mark_price_stream
from perpstream.producer.venues import VENUES

# Where py-spy's samples go, and how they are sorted: kept importable from here.
__all__ = ["PROFILE_RULES", "floor_plan", "profile_split", "run", "venue_plan"]

POINTS_PER_UPDATE = 5
#: The issue's targets: per-symbol CPU per frame at most a quarter of the peer's; the
#: all-market stream on the live listing under 2% of one core.
PEER_FACTOR = 4.0
ALL_MARKET_SHARE = 0.02
PEER_ENV = "PERPSTREAM_BENCH_PEER_PYTHON"
#: The floor every ratio ("x floor") is taken against: the producer's own library.
REFERENCE_FLOOR = "websockets"


def installed(lib: str) -> bool:
    return importlib.util.find_spec(lib) is not None


def floor_plan(spec: str, is_installed: Callable[[str], bool] = installed) -> tuple[list[str], list[str]]:
    """The floor libraries to measure for ``--floor`` (``auto`` or names, comma-separated)
    and the notes on those left out: a floor library that is not installed is named as
    such, never an error, since none of them but websockets is a dependency."""
    names = list(FLOORS) if spec == "auto" else [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in FLOORS]
    if unknown or not names:
        raise ValueError(f"--floor: {', '.join(unknown) or spec!r} is not one of auto, {', '.join(FLOORS)}")
    run = [n for n in dict.fromkeys(names) if is_installed(n)]
    notes = [f"{n} floor: not installed (pip install {n}, or the bench extra: pip install "
             f"'perpstream[bench]')" for n in dict.fromkeys(names) if n not in run]
    return run, notes


def venue_plan(spec: str) -> tuple[list[str], list[str]]:
    """The venues whose cases run for ``--frames-venues`` (``all`` or names, comma-separated),
    in :data:`~perpstream.bench.FRAME_VENUES` order, and the notes on those this checkout
    cannot measure (no fake of the venue, or a producer that does not read it)."""
    names = list(FRAME_VENUES) if spec == "all" else [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in FRAME_VENUES]
    if unknown or not names:
        raise ValueError(f"--frames-venues: {', '.join(unknown) or spec!r} is not one of all, "
                         f"{', '.join(FRAME_VENUES)}")
    run, notes = [], []
    for n in (v for v in FRAME_VENUES if v in names):
        if n != "binance" and n not in VENUE_BENCHES:
            notes.append(f"{n}: not measured: this checkout has no fake {n} to run it against")
        elif n != "binance" and n not in VENUES:
            notes.append(f"{n}: not measured: this checkout's producer does not read it")
        else:
            run.append(n)
    return run, notes


@contextlib.contextmanager
def tls_files() -> Iterator[tuple[ssl.SSLContext, str] | None]:
    """A server context and the certificate file a client trusts (None without openssl)."""
    if shutil.which("openssl") is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
                        "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        yield ctx, str(cert)


def peer_python(explicit: str | None) -> str | None:
    """The interpreter that runs the peer: the option, the environment, or this one when it
    has cryptofeed; None when none does."""
    for candidate in (explicit, os.environ.get(PEER_ENV)):
        if candidate:
            return candidate
    try:
        import cryptofeed  # noqa: F401
    except ImportError:
        return None
    return sys.executable


class _Case(Clients):
    """One Binance case (stream layout x plain/TLS) against one fake exchange: its clients."""

    def __init__(self, fake: FakeBinance, layout: str, listing: list[str], streams: set[str],
                 env: dict[str, str], bootstrap: str, work: str, seconds: float, warmup: float) -> None:
        super().__init__(BinanceFeed(fake, streams), env, work, seconds, warmup)
        self.fake, self.layout, self.listing, self.streams = fake, layout, listing, streams
        self.bootstrap = bootstrap

    def produce(self, name: str, pythonpath: str | None = None,
                during: Callable[[int, float], dict[str, Any]] | None = None) -> dict[str, Any]:

        topic = f"bench-frames-{uuid.uuid4().hex[:8]}"
        ensure_topics(self.bootstrap, {topic: 1})
        who = ["--all"] if self.layout == "all_market" else ["--symbols", ",".join(self.listing)]
        argv = [sys.executable, "-m", "perpstream.cli", "produce", "--source", "live", *who,
                "--stream-mode", self.layout, "--ws-url", self.fake.ws_url, "--rest-url", self.fake.rest_url,
                "--oi-interval", "3600", "--bootstrap-servers", self.bootstrap, "--topic", topic]
        return self.client(name, argv, dict(self.env, PYTHONPATH=pythonpath) if pythonpath else None,
                           during=during)

    def floor(self, lib: str) -> dict[str, Any]:
        return self.client(f"floor-{lib}", [sys.executable, "-m", "perpstream.bench.wsfloor", "--lib", lib,
                                            f"{self.fake.ws_url}/stream", *sorted(self.streams)])

    def peer(self, python: str) -> dict[str, Any]:
        script = str(Path(__file__).resolve().with_name("peer_cryptofeed.py"))
        return self.client("peer", [python, script, self.fake.ws_url, *self.listing],
                           feed=BinanceFeed(self.fake, {f"{s.lower()}@markPrice" for s in self.listing}))


class _Run:
    """What one ``frames`` run gathers: rows, targets, notes, profiles, venue summaries."""

    def __init__(self, notes: list[str]) -> None:
        self.rows: list[dict[str, Any]] = []
        self.targets: list[dict[str, Any]] = []
        self.notes = notes
        self.profiles: dict[str, dict[str, Any]] = {}
        self.venues: list[dict[str, Any]] = []


def run(frame_symbols: int = 200, frame_rate: float = 10.0, all_symbols: int = 700, seconds: float = 20.0,
        warmup: float = 3.0, tls: str = "both", peer: str | None = None,
        compare_checkout: str | None = None, rounds: int = 1, floors: str = "auto",
        profile: bool = False, venues: str = "all", venue_symbols: int | None = None,
        venue_seconds: float | None = None) -> dict[str, Any]:

    peer_py = peer_python(peer)
    libs, notes = floor_plan(floors)
    chosen, venue_notes = venue_plan(venues)
    out = _Run([*notes, *venue_notes])
    modes = {"both": (False, True), "plain": (False,), "tls": (True,)}[tls]
    env = dict(os.environ, PYTHONUNBUFFERED="1", PERPSTREAM_LOG_LEVEL="WARNING")
    with _broker() as (bootstrap, _), tls_files() as tls_ctx, \
            tempfile.TemporaryDirectory(prefix="bench-frames-") as tmp:
        if tls_ctx is None and True in modes:
            out.notes.append("TLS cases skipped: no openssl command to make a certificate")
            modes = tuple(m for m in modes if not m)
        if "binance" in chosen:
            for layout in ("per_symbol", "all_market"):
                for secure in modes:
                    n = frame_symbols if layout == "per_symbol" else all_symbols
                    case_env = dict(env, SSL_CERT_FILE=tls_ctx[1]) if secure and tls_ctx is not None else env
                    with FakeBinance(symbols_of(n), tick=1.0 / frame_rate if layout == "per_symbol" else 1.0,
                                     ping_interval=20.0, record=False,
                                     ssl=tls_ctx[0] if secure and tls_ctx else None) as fake:
                        _binance_case(out, fake, layout, secure, env=case_env, bootstrap=bootstrap, work=tmp,
                                      seconds=seconds, warmup=warmup, libs=libs, rounds=rounds,
                                      compare_checkout=compare_checkout, peer_py=peer_py, profile=profile)
        others = [VENUE_BENCHES[v] for v in chosen if v != "binance"]
        _venue_cases(out, others, venue_symbols, env=env, bootstrap=bootstrap, work=tmp,
                     seconds=venue_seconds or seconds, warmup=warmup, libs=libs, rounds=rounds,
                     compare_checkout=compare_checkout, profile=profile)
        together = (run_together(all_symbols, venue_symbols, rounds, env, bootstrap, tmp,
                                 venue_seconds or seconds, warmup, profile, compare_checkout)
                    if runs_together(chosen) else None)
    if "binance" in chosen:
        out.notes.extend(_run_notes(peer_py, frame_symbols, frame_rate, all_symbols, seconds, warmup, rounds))
    out.notes.extend(case_notes(others, venue_symbols, venue_seconds or seconds))
    judged_together = together is not None and together.summary["listed"]
    venues_total, total_target = total(out.venues, judged=not judged_together)
    out.targets.append(total_target)
    if together is not None:
        out.rows.append(together.row)
        out.targets.append(together.target)
        out.notes.extend(together.notes)
        if together.profile is not None:
            out.profiles[together.row["name"]] = together.profile
    return report("frames", {"frame_symbols": frame_symbols, "frame_rate": frame_rate,
                             "all_symbols": all_symbols, "seconds": seconds, "warmup": warmup, "tls": tls,
                             "peer": peer_py, "compare_checkout": compare_checkout, "rounds": rounds,
                             "floors": libs, "profile": profile, "venues": chosen,
                             "venue_symbols": venue_symbols, "venue_seconds": venue_seconds or seconds},
                  out.rows, out.targets, out.notes, profiles=out.profiles, venues=out.venues,
                  venues_total=venues_total, venues_together=together.summary if together else None)


def _binance_case(out: _Run, fake: FakeBinance, layout: str, secure: bool, *, env: dict[str, str],
                  bootstrap: str, work: str, seconds: float, warmup: float, libs: list[str], rounds: int,
                  compare_checkout: str | None, peer_py: str | None, profile: bool) -> None:
    """One Binance case: its rows, its targets, its notes; the all-market plain case (TLS where
    only TLS ran) is Binance's line of the venue total."""
    listing = fake.listing
    n = len(listing)
    name = f"{'per-symbol' if layout == 'per_symbol' else 'all-market'}, {'TLS' if secure else 'plain'}"
    streams = {mark_price_stream(s) for s in listing} if layout == "per_symbol" else {ALL_MARKET_STREAM}
    case = _Case(fake, layout, listing, streams, env, bootstrap, work, seconds, warmup)
    # cryptofeed takes wss:// only
    peer_here = peer_py if layout == "per_symbol" and secure else None
    case_rows, mine, peer_row = _measure_case(case, name, libs, rounds, compare_checkout, peer_here)
    if profile:  # a run of its own: py-spy pauses the process for each sample
        spy_out = Path(work, f"profile-{layout}-{secure}.txt")
        prof = case.produce("profile", during=partial(profile_window, out=spy_out))
        out.profiles[name] = prof
        out.notes.append(profile_note(name, prof, mine))
    out.rows.extend(case_rows)
    out.notes.append(floors_note(name, case_rows, mine))
    if peer_row is not None and mine["cpu_us_per_frame"]:
        factor = peer_row["cpu_us_per_frame"] / mine["cpu_us_per_frame"]
        out.targets.append(target(f"{name}: peer CPU per frame / perpstream's", round(factor, 2),
                                  f">= {PEER_FACTOR:g}", factor >= PEER_FACTOR))
        out.notes.append(_peer_note(name, case_rows, peer_row))
    if layout == "all_market":
        for r in case_rows:
            r.update(venue="binance", symbols=n, live_rate=BINANCE_LIVE_RATE,
                     cpu_share_per_1000=share_per_1000(r, BINANCE_LIVE_RATE))
        out.targets.append(target(f"{name}, {n} symbols: producer CPU (share of one core)",
                                  mine["cpu_share"], f"< {ALL_MARKET_SHARE}",
                                  mine["cpu_share"] < ALL_MARKET_SHARE))
        if not any(v["venue"] == "binance" for v in out.venues):  # plain runs first
            out.venues.append(summary("binance", mine, n, BINANCE_LIVE_RATE))


def _venue_cases(out: _Run, venues: list[Any], venue_symbols: int | None, *, env: dict[str, str],
                 bootstrap: str, work: str, seconds: float, warmup: float, libs: list[str], rounds: int,
                 compare_checkout: str | None, profile: bool) -> None:
    """Every venue case other than Binance; the compared checkout runs those its producer reads."""
    if not venues:
        return
    known = checkout_venues(compare_checkout) if compare_checkout else frozenset()
    skipped = [v.name for v in venues if v.name not in known]
    if compare_checkout and skipped:
        which = "this venue" if len(skipped) == 1 else "these venues"
        out.notes.append(f"{', '.join(skipped)}: {compare_checkout} not measured: its producer does not "
                         f"read {which} (only this checkout's runs)")
    for v in venues:
        n = venue_symbols or LISTED_SYMBOLS[v.name]
        res = run_case(v, n, libs, rounds, compare_checkout if v.name in known else None, env, bootstrap,
                       work, seconds, warmup, profile)
        out.rows.extend(res.rows)
        out.notes.extend(res.notes)
        out.venues.append(res.summary)
        if res.profile is not None:
            out.profiles[res.summary["case"]] = res.profile


def _measure_case(case: _Case, name: str, libs: list[str], rounds: int, compare_checkout: str | None,
                  peer_py: str | None) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any] | None]:
    """One case's rows: each floor, this checkout's producer (and the compared one's) over
    alternating rounds, best shown, and the peer where it runs."""
    floor_rows = [frame_row(f"{name}: bare {lib} client (floor)", case.floor(lib), "baseline", floor=lib,
                            points_per_update=POINTS_PER_UPDATE) for lib in libs]
    mine_runs: list[dict[str, Any]] = []
    other_runs: list[dict[str, Any]] = []
    for _ in range(max(1, rounds)):
        mine_runs.append(case.produce("produce"))
        if compare_checkout:
            other_runs.append(case.produce("compare", compare_checkout))
    mine = frame_row(f"{name}: perpstream produce", best(mine_runs), points_per_update=POINTS_PER_UPDATE)
    case_rows = [*floor_rows, mine]
    if compare_checkout:
        case_rows.append(frame_row(f"{name}: perpstream produce of {compare_checkout}", best(other_runs),
                                   points_per_update=POINTS_PER_UPDATE))
    peer_row = (frame_row(f"{name}: cryptofeed (peer)", case.peer(peer_py), "peer",
                          points_per_update=POINTS_PER_UPDATE) if peer_py else None)
    if peer_row is not None:
        case_rows.append(peer_row)
    reference = next((r for lib, r in zip(libs, floor_rows, strict=True) if lib == REFERENCE_FLOOR),
                     floor_rows[0] if floor_rows else None)
    compare(case_rows, reference, peer_row)
    return case_rows, mine, peer_row


def _peer_note(name: str, rows: list[dict[str, Any]], peer: dict[str, Any]) -> str:
    """What the peer target asks for in µs per frame, next to the floors: the whole
    producer would have to cost a quarter of the peer's."""
    floors = [f"{r['floor']} {us(r)}" for r in rows if "floor" in r]
    return (f"{name}: {PEER_FACTOR:g}x less CPU per frame than the peer ({us(peer)}) = at most "
            f"{peer['cpu_us_per_frame'] / PEER_FACTOR:.1f} µs per frame for the whole producer, socket and "
            f"library included; the bare receive alone costs {', '.join(floors) or '-'}")


def _run_notes(peer_py: str | None, frame_symbols: int, frame_rate: float, all_symbols: int,
               seconds: float, warmup: float, rounds: int) -> list[str]:
    notes = []
    if peer_py is None:
        notes.append(f"peer not measured: no interpreter with cryptofeed (--peer-python or {PEER_ENV})")
    else:
        notes.append(f"peer: cryptofeed run by {peer_py}, FUNDING channel with a callback that does "
                     "nothing (it keeps 3 of the 5 values, publishes nothing); per-symbol TLS case only "
                     "(it refuses ws://)")
    notes.append(f"per-symbol: {frame_symbols} symbols x {frame_rate:g} frames/s each; all-market: "
                 f"{all_symbols} symbols in one frame a second; window {seconds:g} s after {warmup:g} s "
                 f"of warm-up; producers: the best of {max(1, rounds)} alternating round(s); CPU of each "
                 "client's process (every thread); perpstream produce publishes to a broker (its CPU "
                 "apart), open interest polled once an hour; floors on the producer's event loop, "
                 f"x floor = CPU per frame over the {REFERENCE_FLOOR} floor's")
    return notes
