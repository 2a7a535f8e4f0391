"""The case "all four venues in one producer" of ``perpstream bench frames``.

What a user runs to follow every venue is one process, ``perpstream produce --venues
binance,bybit,okx,hyperliquid``: its fixed cost (the pump, librdkafka's threads) is
paid once, where the venue cases (:mod:`perpstream.bench.venues`), each venue in a process
of its own, sum it four times. This case starts the four fakes at once, each as its own
case configures it (Binance's all-market stream at ``all_symbols``, the others at their
listed count or ``--frames-venue-symbols``, every one at its live rate), and measures one
producer process that reads them all (:class:`perpstream.bench.clients.Feeds` over the
four feeds).

The fakes run in the bench's process and share its interpreter lock, so they may send less
than their live rate. Each venue's delivered rate is given next to its live rate, and the
share of a core at the live rate is the measured share x the live updates over the
delivered ones (:func:`live_scale`: each venue counted at most at its live rate, so one
venue's surplus never hides another's shortfall; never scaled down). That figure is
judged against :data:`~perpstream.bench.venues.ALL_VENUES_SHARE` when every venue ran at
its listed count (:func:`together_target`). docs/producer.md, "Frame path cost".
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

from perpstream.bench import FRAME_VENUES
from perpstream.bench.clients import (
    BinanceFeed,
    Clients,
    Feed,
    Feeds,
    best,
    frame_row,
    points_published,
    profile_note,
    profile_window,
)
from perpstream.bench.measure import target
from perpstream.bench.venues import (
    ALL_VENUES_SHARE,
    BINANCE_LIVE_RATE,
    CONFLATE_MS,
    LISTED_SYMBOLS,
    VENUE_BENCHES,
    symbols_of,
)
from perpstream.fakes.binance import FakeBinance
from perpstream.local import ensure_topics, free_ports
from perpstream.producer.binance import ALL_MARKET_STREAM

#: Updates a second per symbol at each venue's live rate (what its feed counts as updates:
#: Binance's markPrice updates in the all-market array, Bybit's messages, OKX's pushes,
#: Hyperliquid's pushes).
LIVE_RATES: Final[dict[str, float]] = {"binance": BINANCE_LIVE_RATE,
                                       **{v.name: v.live_rate for v in VENUE_BENCHES.values()}}
#: Below this share of its live rate a fake is said to have fallen behind (a window's edges
#: alone cost Binance's one frame a second up to a frame).
BEHIND: Final = 0.98


def runs_together(chosen: Sequence[str]) -> bool:
    """The case runs when every venue is measured (``--frames-venues all`` or the four named)."""
    return set(FRAME_VENUES) <= set(chosen)


def symbol_counts(all_symbols: int, venue_symbols: int | None) -> dict[str, int]:
    """Symbols of each venue, as its own case runs it: Binance's all-market count, the others'
    ``--frames-venue-symbols`` or their listed count."""
    return {"binance": all_symbols, **{v: venue_symbols or LISTED_SYMBOLS[v] for v in FRAME_VENUES
                                       if v != "binance"}}


def at_listed_counts(counts: Mapping[str, int]) -> bool:
    return dict(counts) == LISTED_SYMBOLS


def delivered(by_feed: Mapping[str, Mapping[str, int]], counts: Mapping[str, int],
              wall_s: float) -> list[dict[str, Any]]:
    """Each venue's updates a second in the window next to its live rate (its symbols x the
    venue's rate per symbol)."""
    out = []
    for venue, n in counts.items():
        live = n * LIVE_RATES[venue]
        got = by_feed[venue]["updates"] / wall_s if wall_s > 0 else 0.0
        out.append({"venue": venue, "symbols": n, "live_per_s": round(live, 3),
                    "delivered_per_s": round(got, 1), "frames": by_feed[venue]["frames"],
                    "updates": by_feed[venue]["updates"],
                    "delivered_share": round(got / live, 4) if live else None})
    return out


def live_scale(lines: Sequence[Mapping[str, Any]]) -> float | None:
    """What the measured share is multiplied by to be the share at the live rate: the live
    updates over the delivered ones, each venue counted at most at its live rate (a surplus
    of one never hides another's shortfall), never below 1. None when nothing was delivered."""
    live = sum(line["live_per_s"] for line in lines)
    got = sum(min(line["delivered_per_s"], line["live_per_s"]) for line in lines)
    if got <= 0:
        return None
    return max(1.0, live / got)


def together_target(share_live: float | None, counts: Mapping[str, int]) -> dict[str, Any]:
    """The one-process figure against a third of a core, judged only at the listed counts."""
    parts = " + ".join(f"{v} {n}" for v, n in counts.items())
    wanted = f"< {ALL_VENUES_SHARE:.3f} (a third)"
    if at_listed_counts(counts):
        met = share_live < ALL_VENUES_SHARE if share_live is not None else None
        return target(f"every venue at its listed symbols, one producer process ({parts}): producer CPU "
                      "at the live rate (share of one core)", share_live, wanted, met)
    return target(f"every venue in one producer process at {parts} symbols, not the listed counts "
                  "(share of one core at the live rate): not judged", share_live, wanted, None)


class TogetherCase(Clients):
    """One producer process reading the four fakes at once."""

    def __init__(self, binance: FakeBinance, fakes: Mapping[str, Any], counts: Mapping[str, int],
                 env: dict[str, str], bootstrap: str, work: str, seconds: float, warmup: float) -> None:
        feeds: dict[str, Feed] = {"binance": BinanceFeed(binance, {ALL_MARKET_STREAM})}
        feeds.update({v: VENUE_BENCHES[v].feed(fake, counts[v]) for v, fake in fakes.items()})
        super().__init__(Feeds(feeds), env, work, seconds, warmup)
        self.binance, self.fakes, self.bootstrap = binance, dict(fakes), bootstrap

    def argv(self, topic: str, port: int) -> list[str]:
        """``perpstream produce`` of every venue, Binance's flags as its all-market case passes them."""
        b = self.binance
        venue_urls = [a for v, fake in self.fakes.items()
                      for a in (f"--{v}-ws-url", fake.ws_url, f"--{v}-rest-url", fake.rest_url)]
        return [sys.executable, "-m", "perpstream.cli", "produce", "--source", "live",
                "--venues", ",".join(["binance", *self.fakes]),
                "--all", "--stream-mode", "all_market", "--ws-url", b.ws_url, "--rest-url", b.rest_url,
                "--oi-interval", "3600", *venue_urls, "--conflate-ms", str(CONFLATE_MS),
                "--bootstrap-servers", self.bootstrap, "--topic", topic, "--metrics-port", str(port)]

    def produce(self, name: str,
                during: Callable[[int, float], dict[str, Any]] | None = None) -> dict[str, Any]:
        topic = f"bench-frames-{uuid.uuid4().hex[:8]}"
        ensure_topics(self.bootstrap, {topic: 1})
        port = free_ports(1)[0]
        return self.client(f"together-{name}", self.argv(topic, port), during=during,
                           points=partial(points_published, port))


@dataclass
class TogetherResult:
    """The case's row (the best round), its summary (``venues_together``), target and notes."""

    row: dict[str, Any]
    summary: dict[str, Any]
    target: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    profile: dict[str, Any] | None = None


def case_name(counts: Mapping[str, int]) -> str:
    return ("all four venues in one producer (" + ", ".join(f"{v} {n}" for v, n in counts.items())
            + "): perpstream produce")


def judge(row: dict[str, Any], by_feed: Mapping[str, Mapping[str, int]],
          counts: Mapping[str, int]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The summary of a measured run: delivered rates, the share at the live rate, the target."""
    lines = delivered(by_feed, counts, row["wall_s"])
    scale = live_scale(lines)
    share_live = round(row["cpu_share"] * scale, 5) if scale is not None else None
    goal = together_target(share_live, counts)
    behind = [line for line in lines
              if line["delivered_share"] is not None and line["delivered_share"] < BEHIND]
    summary = {"case": row["name"], "symbols": dict(counts), "listed": at_listed_counts(counts),
               "venues": lines, "cpu_share": row["cpu_share"],
               "scale": round(scale, 4) if scale is not None else None, "cpu_share_live": share_live,
               "target": round(ALL_VENUES_SHARE, 4), "met": goal["met"],
               "behind": [line["venue"] for line in behind]}
    notes = []
    if behind:
        said = ", ".join(f"{line['venue']} {line['delivered_per_s']:,.0f} of {line['live_per_s']:,.0f} "
                         f"updates/s ({line['delivered_share']:.0%})" for line in behind)
        notes.append(f"all four venues in one producer: the fakes fell behind their live rates (they share "
                     f"the bench process's interpreter lock): {said}; the share at the live rate is the "
                     f"measured {row['cpu_share']:.1%} x {scale:.3f} = {share_live:.1%}")
    if not summary["listed"]:
        notes.append("all four venues in one producer: not at the listed counts ("
                     + ", ".join(f"{v} {n}" for v, n in LISTED_SYMBOLS.items())
                     + "), so not judged against the target; the sum of separate processes is")
    return summary, goal, notes


def run_together(all_symbols: int, venue_symbols: int | None, rounds: int, env: dict[str, str],
                 bootstrap: str, work: str, seconds: float, warmup: float, profile: bool,
                 compare_checkout: str | None = None) -> TogetherResult:
    """The four fakes at once and one producer reading them, best of ``rounds`` (and one more
    run under py-spy with ``profile``)."""
    counts = symbol_counts(all_symbols, venue_symbols)
    with contextlib.ExitStack() as stack:
        binance = stack.enter_context(FakeBinance(symbols_of(counts["binance"]), tick=1.0, ping_interval=20.0,
                                                  record=False))
        fakes = {v: stack.enter_context(VENUE_BENCHES[v].fake(VENUE_BENCHES[v].symbols(counts[v])))
                 for v in counts if v != "binance"}
        case = TogetherCase(binance, fakes, counts, env, bootstrap, work, seconds, warmup)
        runs = [case.produce("produce") for _ in range(max(1, rounds))]
        prof = None
        if profile:  # a run of its own: py-spy pauses the process for each sample
            spy_out = Path(work, "profile-together.txt")
            prof = case.produce("profile", during=partial(profile_window, out=spy_out))
    mine = best(runs)
    row = frame_row(case_name(counts), mine, venue="all", symbols=sum(counts.values()))
    summary, goal, notes = judge(row, mine["by_feed"], counts)
    row["cpu_share_live"] = summary["cpu_share_live"]
    notes.insert(0, case_note(counts, seconds, rounds))
    if compare_checkout:
        notes.append(f"all four venues in one producer: {compare_checkout} not measured in this case "
                     "(this checkout's producer only)")
    if prof is not None:
        notes.append(profile_note(row["name"], prof, row))
    return TogetherResult(row, summary, goal, notes, prof)


def case_note(counts: Mapping[str, int], seconds: float, rounds: int) -> str:
    loads = ", ".join(f"{v} {n} x {LIVE_RATES[v]:g}/s" for v, n in counts.items())
    return (f"all four venues in one producer: one perpstream produce --venues {','.join(counts)} process "
            f"(Binance's all-market stream, --conflate-ms {CONFLATE_MS}) against the four fakes at once "
            f"({loads}), plain ws://, window {seconds:g} s, the best of {max(1, rounds)} round(s), no floor; "
            "the fakes share the bench process's interpreter lock, so each venue's delivered rate is given; "
            "share at the live rate = the measured share x the live updates over the delivered ones (each "
            "venue counted at most at its live rate, never scaled down)")
