"""``perpstream bench frames``, the case "all four venues in one producer": the composite
feed, what each fake delivered against its live rate, the share at the live rate, the target
it is judged on, and when the case runs (docs/producer.md, "Frame path cost"). No figure is
measured here; the measured run is tests/integration/test_bench.py."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from perpstream.bench.clients import Client, Feeds, measure
from perpstream.bench.frames import venue_plan
from perpstream.bench.render import render
from perpstream.bench.together import (
    BEHIND,
    LIVE_RATES,
    TogetherCase,
    delivered,
    judge,
    live_scale,
    runs_together,
    symbol_counts,
    together_target,
)
from perpstream.bench.venues import ALL_VENUES_SHARE, LISTED_SYMBOLS, total
from perpstream.cli import build_parser

LISTED_LIVE = {"binance": 700.0, "bybit": 5000.0, "okx": 250 * 15.35, "hyperliquid": 200.0}


class StubFeed:
    """A fake venue as the bench reads it: each ``sent()`` moves on by ``step``."""

    def __init__(self, step: tuple[int, int], ready: bool = True, idle: bool = True) -> None:
        self.step, self.calls = step, 0
        self.is_ready, self.is_idle, self.resets = ready, idle, 0

    def ready(self) -> bool:
        return self.is_ready

    def progress(self) -> str:
        return f"{self.calls} calls"

    def sent(self) -> tuple[int, int]:
        self.calls += 1
        return self.calls * self.step[0], self.calls * self.step[1]

    def idle(self) -> bool:
        return self.is_idle

    def reset(self) -> None:
        self.resets += 1


def test_the_composite_feed_is_ready_and_idle_only_when_every_venue_is_and_sums_what_they_sent() -> None:
    a, b = StubFeed((1, 700)), StubFeed((50, 50))
    feeds = Feeds({"binance": a, "bybit": b})
    assert feeds.ready() and feeds.idle()
    assert feeds.sent() == (1 + 50, 700 + 50)
    assert feeds.sent_by() == {"binance": (2, 1400), "bybit": (100, 100)}
    b.is_ready = False
    assert not feeds.ready()
    a.is_idle = False
    assert not feeds.idle()
    assert feeds.progress() == "binance: 2 calls; bybit: 2 calls"
    feeds.reset()
    assert (a.resets, b.resets) == (1, 1)


def test_measure_gives_each_venue_its_frames_and_updates_of_the_window(tmp_path: Path) -> None:
    a, b = StubFeed((1, 5)), StubFeed((2, 7))
    client = Client("stub", [sys.executable, "-c", "import time; time.sleep(60)"], {}, tmp_path / "stub.log")
    try:
        m = measure(Feeds({"binance": a, "okx": b}), client, seconds=0.0, warmup=0.0)
    finally:
        client.stop()
    # one read at the window's start, one at its end: one step of each
    assert m["by_feed"] == {"binance": {"frames": 1, "updates": 5}, "okx": {"frames": 2, "updates": 7}}
    assert (m["frames"], m["updates"]) == (3, 12)


def test_a_single_feed_has_no_breakdown(tmp_path: Path) -> None:
    client = Client("stub", [sys.executable, "-c", "import time; time.sleep(60)"], {}, tmp_path / "stub.log")
    try:
        m = measure(StubFeed((1, 5)), client, seconds=0.0, warmup=0.0)
    finally:
        client.stop()
    assert "by_feed" not in m and (m["frames"], m["updates"]) == (1, 5)


def _window(share_of_live: dict[str, float], wall_s: float = 10.0,
            counts: dict[str, int] | None = None) -> dict[str, dict[str, int]]:
    """What each fake sent over ``wall_s`` at these shares of its live rate."""
    counts = counts or LISTED_SYMBOLS
    return {v: {"frames": 1, "updates": round(counts[v] * LIVE_RATES[v] * wall_s * share_of_live.get(v, 1.0))}
            for v in counts}


def test_live_rates_are_the_venues_updates_a_second() -> None:
    lines = delivered(_window({}), LISTED_SYMBOLS, 10.0)
    assert {line["venue"]: line["live_per_s"] for line in lines} == pytest.approx(LISTED_LIVE)
    assert {line["venue"]: line["delivered_per_s"] for line in lines} == pytest.approx(LISTED_LIVE, abs=0.1)
    assert all(line["delivered_share"] == pytest.approx(1.0, abs=1e-4) for line in lines)


def test_the_share_is_scaled_up_when_the_fakes_fell_behind_and_never_down() -> None:
    at_rate = delivered(_window({}), LISTED_SYMBOLS, 10.0)
    assert live_scale(at_rate) == pytest.approx(1.0)
    ahead = delivered(_window({"binance": 1.1, "bybit": 1.2}), LISTED_SYMBOLS, 10.0)
    assert live_scale(ahead) == 1.0  # never scaled down
    behind = delivered(_window({"bybit": 0.8}), LISTED_SYMBOLS, 10.0)
    live = sum(LISTED_LIVE.values())
    assert live_scale(behind) == pytest.approx(live / (live - 1000.0), rel=1e-4)
    # a surplus of one venue does not hide another's shortfall
    mixed = delivered(_window({"bybit": 0.8, "okx": 1.3}), LISTED_SYMBOLS, 10.0)
    assert live_scale(mixed) == pytest.approx(live_scale(behind))
    assert live_scale(delivered(_window({v: 0.0 for v in LISTED_SYMBOLS}), LISTED_SYMBOLS, 10.0)) is None


def test_judged_on_the_share_at_the_live_rate_at_the_listed_counts() -> None:
    row = {"name": "all four", "cpu_share": 0.30, "wall_s": 10.0}
    summary, goal, notes = judge(row, _window({}), LISTED_SYMBOLS)
    assert summary["listed"] and summary["behind"] == [] and notes == []
    assert summary["cpu_share_live"] == pytest.approx(0.30, rel=1e-3)
    assert goal["met"] is True and summary["met"] is True
    assert goal["name"].startswith("every venue at its listed symbols, one producer process")

    # the same CPU while Bybit delivered half its rate: at the live rate it is over the target
    summary, goal, notes = judge(row, _window({"bybit": 0.5}), LISTED_SYMBOLS)
    live = sum(LISTED_LIVE.values())
    assert summary["scale"] == pytest.approx(live / (live - 2500.0), rel=1e-3)
    assert summary["cpu_share_live"] == pytest.approx(0.30 * summary["scale"], rel=1e-3)
    assert summary["cpu_share_live"] > ALL_VENUES_SHARE and goal["met"] is False
    assert goal["value"] == summary["cpu_share_live"]
    assert summary["behind"] == ["bybit"]
    assert len(notes) == 1 and "fell behind" in notes[0]
    assert "bybit 2,500 of 5,000 updates/s (50%)" in notes[0]


def test_a_fake_just_short_of_its_rate_is_not_called_behind_but_still_scales() -> None:
    row = {"name": "all four", "cpu_share": 0.10, "wall_s": 10.0}
    summary, _, notes = judge(row, _window({"okx": (1 + BEHIND) / 2}), LISTED_SYMBOLS)
    assert summary["behind"] == [] and notes == []
    assert summary["scale"] > 1.0 and summary["cpu_share_live"] > 0.10


def test_at_other_symbol_counts_the_case_is_not_judged() -> None:
    counts = symbol_counts(700, 6)
    assert counts == {"binance": 700, "bybit": 6, "okx": 6, "hyperliquid": 6}
    assert symbol_counts(700, None) == LISTED_SYMBOLS
    summary, goal, notes = judge({"name": "x", "cpu_share": 0.01, "wall_s": 10.0}, _window({}, counts=counts),
                                 counts)
    assert not summary["listed"] and goal["met"] is None and summary["met"] is None
    assert "not judged" in goal["name"] and not goal["name"].startswith("every venue at its listed symbols")
    assert any("not at the listed counts" in n for n in notes)
    assert together_target(0.5, symbol_counts(40, None))["met"] is None  # Binance's --symbols too


def test_the_target_is_a_third_of_a_core() -> None:
    assert together_target(ALL_VENUES_SHARE - 0.001, LISTED_SYMBOLS)["met"] is True
    assert together_target(ALL_VENUES_SHARE, LISTED_SYMBOLS)["met"] is False
    assert together_target(None, LISTED_SYMBOLS)["met"] is None


def test_the_sum_of_separate_processes_is_judged_only_when_the_one_process_case_is_not() -> None:
    lines = [{"venue": v, "cpu_share_listed": 0.05} for v in LISTED_SYMBOLS]
    out, goal = total(lines)
    assert out["met"] is True and goal["met"] is True and out["judged"]
    out, goal = total(lines, judged=False)
    assert out["met"] is None and goal["met"] is None and goal["value"] == pytest.approx(0.2)
    assert "sum of separate processes" in goal["name"]


@pytest.mark.parametrize(("spec", "together"), [
    ("all", True),
    ("hyperliquid,okx,bybit,binance", True),
    ("binance,bybit,okx", False),
    ("bybit,okx,hyperliquid", False),
    ("binance", False),
])
def test_the_case_runs_when_every_venue_is_chosen(spec: str, together: bool) -> None:
    chosen, _ = venue_plan(spec)
    assert runs_together(chosen) is together


def test_one_producer_reads_every_venue_with_binance_flags_as_its_all_market_case() -> None:
    def fake(name: str, **more: Any) -> Any:
        return SimpleNamespace(ws_url=f"ws://{name}", rest_url=f"http://{name}", **more)

    counts = symbol_counts(700, 3)
    fakes = {"bybit": fake("bybit"), "okx": fake("okx", swaps={f"S{i}-USDT-SWAP": None for i in range(3)}),
             "hyperliquid": fake("hyperliquid")}
    case = TogetherCase(fake("binance"), fakes, counts, {}, "127.0.0.1:9092", "/tmp", 1.0, 0.0)
    assert list(case.feed.feeds) == ["binance", "bybit", "okx", "hyperliquid"]  # type: ignore[attr-defined]
    argv = case.argv("topic-x", 9100)
    assert argv[1:4] == ["-m", "perpstream.cli", "produce"]
    args = build_parser().parse_args(argv[3:])  # every flag is one produce takes
    assert args.venues == "binance,bybit,okx,hyperliquid" and args.all and args.stream_mode == "all_market"
    assert (args.ws_url, args.rest_url, args.oi_interval) == ("ws://binance", "http://binance", 3600)
    for v in ("bybit", "okx", "hyperliquid"):
        assert getattr(args, f"{v}_ws_url") == f"ws://{v}" and getattr(args, f"{v}_rest_url") == f"http://{v}"
    assert (args.conflate_ms, args.topic, args.metrics_port) == (1000, "topic-x", 9100)
    assert args.bootstrap_servers == "127.0.0.1:9092" and args.source[0] == "live"


def test_the_report_shows_both_lines_and_the_delivered_rates() -> None:
    row = {"name": "all four", "cpu_share": 0.2, "wall_s": 10.0}
    summary, goal, _ = judge(row, _window({"okx": 0.5}), LISTED_SYMBOLS)
    sums, sum_goal = total([{"venue": v, "cpu_share_listed": 0.1} for v in LISTED_SYMBOLS], judged=False)
    venues = [{"venue": v, "symbols": n, "live_rate": LIVE_RATES[v], "cpu_us_per_frame": 1.0,
               "cpu_us_per_point": 1.0, "cpu_share": 0.01, "cpu_share_per_1000": 0.1, "listed_symbols": n,
               "cpu_share_listed": 0.1} for v, n in LISTED_SYMBOLS.items()]
    rep = {"scenario": "frames", "rows": [], "targets": [sum_goal, goal], "notes": [], "venues": venues,
           "venues_total": sums, "venues_together": summary}
    out = io.StringIO()
    render(rep, Console(file=out, width=400))  # no line wrapped inside a cell
    text = out.getvalue()
    assert "all venues, the sum of separate processes" in text
    assert "not judged against the target 33.3%: the one-process case is" in text
    assert "all four venues in one producer process" in text
    assert "1,918.8" in text and "50.0% (behind)" in text  # OKX delivered half its 3,837.5
    assert f"{summary['cpu_share_live']:.1%}" in text
