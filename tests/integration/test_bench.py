"""``perpstream bench``: every scenario in a tiny configuration, checked for the
report's structure and its arithmetic (never for speed)."""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import perpstream
from perpstream.bench import ALL_VENUE_SECONDS, SCENARIOS, run_child, run_scenario, scenario_kwargs
from perpstream.bench.render import render
from perpstream.bench.venues import ALL_VENUES_SHARE, LISTED_SYMBOLS, checkout_venues
from perpstream.cli import build_parser

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _args(**kw: Any) -> argparse.Namespace:
    args = build_parser().parse_args([
        "bench", "all", "--seconds", "2", "--warmup", "1", "--steps", "0.05", "--symbols", "40",
        "--frame-seconds", "3", "--consumer-seconds", "4", "--events", "4000", "--rounds", "1",
        "--rss-seconds", "1", "--no-memory", "--frame-symbols", "10", "--frame-rate", "5",
        "--frames-warmup", "0.5", "--frames-venue-symbols", "6"])
    for k, v in kw.items():
        setattr(args, k, v)
    return args


@pytest.fixture(scope="module")
def reports() -> dict[str, dict[str, Any]]:
    """Every scenario, in parallel (no figure here is judged for speed)."""
    args = _args()
    step: list[dict[str, Any]] = []
    lock = threading.Lock()

    def child(kind: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        # e2e and live share one step at 0.05x (one child process), to keep the test short
        if kind != "step":
            return run_child(kind, kwargs)
        with lock:
            if not step:
                step.append(run_child(kind, {**kwargs, "n": 0.05}))
            return {**step[0], "n": kwargs["n"]}

    names = [n for n in SCENARIOS if n != "frames"]  # frames has a fixture of its own
    with ThreadPoolExecutor(len(names)) as pool:
        futures = {name: pool.submit(run_scenario, name, args, child) for name in names}
        return {name: f.result() for name, f in futures.items()}


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=0.02, abs_tol=0.01)


def test_every_row_is_positive_and_its_ratios_are_figure_over_baseline(
        reports: dict[str, dict[str, Any]]) -> None:
    assert set(reports) == set(SCENARIOS) - {"frames"}
    for name, rep in reports.items():
        assert rep["scenario"] == name
        by_name = {r["name"]: r for r in rep["rows"]}
        assert rep["rows"], name
        for r in rep["rows"]:
            if r["events"] == 0:  # a footprint-only row (live's idle floor)
                assert r["cpu_s"] >= 0 and r["peak_rss_mb"] > 0 and r["role"] == "baseline", (name, r)
                continue
            assert r["events"] > 0 and r["wall_s"] > 0 and r["events_per_s"] > 0, (name, r)
            assert r["cpu_s"] > 0 and r["cpu_s_per_million"] > 0, (name, r)
            assert r["peak_rss_mb"] is None or r["peak_rss_mb"] > 0, (name, r)
            assert _close(r["events_per_s"], r["events"] / r["wall_s"]), (name, r)
            assert _close(r["cpu_s_per_million"], r["cpu_s"] / r["events"] * 1e6), (name, r)
            for base, ratio in r["ratios"].items():
                denominator = by_name[base]["events_per_s"] if base in by_name else None
                if denominator is not None:
                    assert _close(ratio, r["events_per_s"] / denominator), (name, r["name"], base)
                assert ratio > 0
            for lat in (r["latency_ms"] or {}).values():
                assert lat["n"] > 0 and lat["p50"] <= lat["p99"] <= lat["max"], (name, lat)
        for t in rep["targets"]:
            assert t["met"] in (True, False) and t["target"], (name, t)
        json.dumps(rep)  # --json prints it as is
        out = io.StringIO()
        render(rep, Console(file=out, width=200))
        assert f"perpstream bench {name}" in out.getvalue()


@pytest.fixture(scope="module")
def frames_report() -> dict[str, Any]:
    """``bench frames`` at 10 symbols x 5 frames/s and 400 all-market symbols, and every other
    venue at 6 symbols and its live rate, 2 s a client. 400, not fewer: the all-market window
    holds two frames, and the producer's CPU is read in 10 ms ticks of the process clock."""
    return run_scenario("frames", _args(symbols=400))


def test_frames_prints_cpu_per_frame_and_per_point_next_to_the_floor(frames_report: dict[str, Any]) -> None:
    rep = frames_report
    assert rep["scenario"] == "frames"
    rows = {r["name"]: r for r in rep["rows"]}
    for case in ("per-symbol, plain", "per-symbol, TLS", "all-market, plain", "all-market, TLS"):
        floor, mine = rows[f"{case}: bare websockets client (floor)"], rows[f"{case}: perpstream produce"]
        assert floor["role"] == "baseline"
        for r in (floor, mine):
            assert r["frames"] > 0 and r["events"] >= r["frames"] and r["points"] == 5 * r["events"], r
            assert r["cpu_s"] >= 0 and _close(r["cpu_share"], r["cpu_s"] / r["wall_s"]), r
            assert _close(r["cpu_us_per_frame"], r["cpu_s"] / r["frames"] * 1e6), r
            assert _close(r["cpu_us_per_point"], r["cpu_s"] / r["points"] * 1e6), r
        assert mine["cpu_s"] > 0  # parsing, encoding and producing cost more than a tick
    # the all-market frame carries every symbol: 400 updates a frame
    assert rep["params"]["all_symbols"] == 400
    assert rows["all-market, TLS: perpstream produce"]["events"] == 400 * rows[
        "all-market, TLS: perpstream produce"]["frames"]
    assert any("all-market" in t["name"] for t in rep["targets"])
    out = io.StringIO()
    render(rep, Console(file=out, width=250))
    text = out.getvalue()
    assert "perpstream bench frames" in text and "CPU µs / frame" in text and "CPU µs / point" in text
    assert "per-symbol, TLS: perpstream produce" in text


def test_frames_measures_picows_as_a_second_floor_where_installed(frames_report: dict[str, Any]) -> None:
    rep = frames_report
    has_picows = importlib.util.find_spec("picows") is not None
    assert rep["params"]["floors"] == (["websockets", "picows"] if has_picows else ["websockets"])
    rows = {r["name"]: r for r in rep["rows"]}
    out = io.StringIO()
    render(rep, Console(file=out, width=250))
    text = out.getvalue()
    for case in ("per-symbol, plain", "per-symbol, TLS", "all-market, plain", "all-market, TLS"):
        ws = rows[f"{case}: bare websockets client (floor)"]
        assert ws["floor"] == "websockets" and ws["role"] == "baseline"
        picows = rows.get(f"{case}: bare picows client (floor)")
        if has_picows:
            assert picows is not None and picows["floor"] == "picows" and picows["role"] == "baseline"
            # the same frames reached it: every stream open, the server's count over the window
            assert picows["frames"] > 0 and picows["points"] == 5 * picows["events"], picows
            assert f"{case}: bare picows client (floor)" in text
        else:
            assert picows is None
        note = next(n for n in rep["notes"] if n.startswith(f"{case}: perpstream produce "))
        assert "websockets floor" in note and ("picows floor" in note) is has_picows
    assert ("picows floor: not installed" in text) is not has_picows


#: (venue, its live updates a second a symbol) of the venue cases
VENUE_RATES = {"bybit": 10.0, "okx": 15.35, "hyperliquid": 1.0}


def test_every_venue_case_gives_cpu_per_frame_per_published_point_and_per_1000_symbols(
        frames_report: dict[str, Any]) -> None:
    rep = frames_report
    assert rep["params"]["venues"] == ["binance", "bybit", "okx", "hyperliquid"]
    rows = {r["name"]: r for r in rep["rows"]}
    for venue, rate in VENUE_RATES.items():
        case = f"{venue}, 6 symbols x {rate:g}/s"
        floor, mine = rows[f"{case}: bare websockets client (floor)"], rows[f"{case}: perpstream produce"]
        assert floor["role"] == "baseline" and floor["points"] is None  # a bare client publishes nothing
        for r in (floor, mine):
            assert r["venue"] == venue and r["symbols"] == 6 and r["live_rate"] == rate, r
            assert r["frames"] > 0 and r["events"] == r["frames"], r  # one symbol a message
            assert _close(r["cpu_us_per_frame"], r["cpu_s"] / r["frames"] * 1e6), r
            assert _close(r["cpu_share_per_1000"], r["cpu_s"] / r["events"] * rate * 1000), r
        # the fake kept the venue's rate: 6 symbols x the rate over the window, a tick either side
        expected = 6 * rate * mine["wall_s"]
        assert abs(mine["frames"] - expected) <= 2 * 6 + 0.15 * expected, (mine, expected)
        assert mine["cpu_s"] > 0 and mine["points"] > 0, mine
        assert _close(mine["cpu_us_per_point"], mine["cpu_s"] / mine["points"] * 1e6), mine
    # conflation: one point per metric a second, however many messages carried it
    bybit, okx, hyperliquid = (rows[f"{v}, 6 symbols x {r:g}/s: perpstream produce"]
                               for v, r in VENUE_RATES.items())
    assert bybit["points"] < bybit["frames"] and okx["points"] < okx["frames"]
    assert hyperliquid["points"] > hyperliquid["frames"]  # five values a push, one push a second
    # Binance's all-market case is Binance's line, at one update a symbol a second
    allm = rows["all-market, plain: perpstream produce"]
    assert _close(allm["cpu_share_per_1000"], allm["cpu_s"] / allm["events"] * 1000), allm
    out = io.StringIO()
    render(rep, Console(file=out, width=250))
    text = out.getvalue()
    assert "% of a core / 1,000 symbols" in text and "bybit, 6 symbols x 10/s: perpstream produce" in text


def test_the_total_takes_every_venue_at_its_listed_count_against_a_third_of_a_core(
        frames_report: dict[str, Any]) -> None:
    rep = frames_report
    lines = {v["venue"]: v for v in rep["venues"]}
    assert list(lines) == ["binance", "bybit", "okx", "hyperliquid"]
    for venue, v in lines.items():
        assert v["listed_symbols"] == LISTED_SYMBOLS[venue]
        assert _close(v["cpu_share_listed"], v["cpu_share_per_1000"] * LISTED_SYMBOLS[venue] / 1000), v
    assert lines["binance"]["case"] == "all-market, plain: perpstream produce"
    total = rep["venues_total"]
    assert total["missing"] == []
    assert _close(total["cpu_share"], sum(v["cpu_share_listed"] for v in lines.values()))
    assert total["met"] is (total["cpu_share"] < ALL_VENUES_SHARE)
    goal = next(t for t in rep["targets"] if t["name"].startswith("every venue at its listed symbols"))
    assert goal["value"] == total["cpu_share"] and goal["met"] is total["met"]
    assert "binance 700 + bybit 500 + okx 250 + hyperliquid 200" in goal["name"]
    out = io.StringIO()
    render(rep, Console(file=out, width=250))
    text = out.getvalue()
    assert "every venue at its live rate" in text and "all venues" in text


def test_the_four_venues_run_in_one_producer_and_each_fake_says_what_it_delivered(
        frames_report: dict[str, Any]) -> None:
    rep = frames_report
    together = rep["venues_together"]
    counts = {"binance": 400, "bybit": 6, "okx": 6, "hyperliquid": 6}
    assert together["symbols"] == counts and together["listed"] is False
    row = next(r for r in rep["rows"] if r["name"] == together["case"])
    assert row["name"].startswith("all four venues in one producer")
    assert row["cpu_s"] > 0 and row["points"] > 0 and row["frames"] > 0, row
    lines = {v["venue"]: v for v in together["venues"]}
    assert list(lines) == list(counts)
    for venue, line in lines.items():
        rate = 1.0 if venue in ("binance", "hyperliquid") else VENUE_RATES[venue]
        assert _close(line["live_per_s"], counts[venue] * rate), line
        assert line["updates"] > 0 and line["delivered_per_s"] > 0, line
    assert sum(v["updates"] for v in lines.values()) == row["events"]
    assert together["scale"] >= 1.0
    assert _close(together["cpu_share_live"], row["cpu_share"] * together["scale"])
    # not the listed counts: reported, not judged; the sum of separate processes is judged
    goal = next(t for t in rep["targets"] if "one producer process" in t["name"])
    assert goal["met"] is None and "not judged" in goal["name"]
    assert rep["venues_total"]["judged"] is True and rep["venues_total"]["met"] is not None
    out = io.StringIO()
    render(rep, Console(file=out, width=250))
    text = out.getvalue()
    assert "all four venues in one producer process" in text and "delivered updates/s" in text


def test_a_checkout_from_before_the_venues_is_measured_in_the_cases_it_knows_only(tmp_path: Any) -> None:
    here = str(Path(perpstream.__file__).resolve().parent.parent)
    assert checkout_venues(here) >= {"bybit", "okx", "hyperliquid"}
    before = tmp_path / "before"  # a checkout without perpstream.producer.venues
    (before / "perpstream" / "producer").mkdir(parents=True)
    (before / "perpstream" / "__init__.py").write_text("")
    (before / "perpstream" / "producer" / "__init__.py").write_text("")
    assert checkout_venues(str(before)) == frozenset()
    assert checkout_venues(str(tmp_path / "nothing")) == frozenset()

    rep = run_scenario("frames", _args(scenario="frames", frames_venues="bybit", floor="websockets",
                                       compare_checkout=str(before)))
    assert [r["name"] for r in rep["rows"]] == ["bybit, 6 symbols x 10/s: bare websockets client (floor)",
                                                "bybit, 6 symbols x 10/s: perpstream produce"]
    said = f"bybit: {before} not measured: its producer does not read this venue (only this checkout's runs)"
    assert said in rep["notes"]
    assert rep["venues_total"]["missing"] == ["binance", "okx", "hyperliquid"]
    assert rep["venues_total"]["met"] is None


def test_venue_options_reach_the_scenario_and_bench_all_shortens_the_venue_windows(
        capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    kw = scenario_kwargs("frames", parser.parse_args(["bench", "frames", "--seconds", "30"]))
    assert kw["venues"] == "all" and kw["venue_symbols"] is None and kw["venue_seconds"] is None
    kw = scenario_kwargs("frames", parser.parse_args(["bench", "all", "--seconds", "30",
                                                      "--frames-venues", "OKX, bybit",
                                                      "--frames-venue-symbols", "40"]))
    assert kw["venues"] == "okx,bybit" and kw["venue_symbols"] == 40
    assert kw["venue_seconds"] == ALL_VENUE_SECONDS < 30
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["bench", "frames", "--frames-venues", "bybit,kraken"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--frames-venues" in err and "'bybit,kraken'" in err and "Traceback" not in err


def test_each_scenario_has_its_baselines(reports: dict[str, dict[str, Any]]) -> None:
    produce = {r["name"]: r for r in reports["produce"]["rows"]}
    assert "raw confluent-kafka + fastavro" in produce["producer pipeline (Ingest)"]["ratios"]
    sink = reports["sink"]["rows"][-1]
    assert len(sink["ratios"]) == 2  # the direct insert and the ceiling
    assert sink["rows"] == sink["committed"] == 4000
    assert reports["snapshots"]["rows"][0]["role"] == "baseline"
    assert "engine alone (SnapshotEngine.add)" in reports["snapshots"]["rows"][1]["ratios"]


def test_e2e_steps_up_until_not_held_and_live_reports_every_process(
        reports: dict[str, dict[str, Any]]) -> None:
    e2e = reports["e2e"]
    ns = [s["n"] for s in e2e["steps"]]
    assert ns == [0.05]
    held = [s for s in e2e["steps"] if s["held"]]
    assert e2e["held_n"] == (held[-1]["n"] if held else None)
    for s in e2e["steps"]:
        lat = s["latency_ms"]["event_to_clickhouse"]
        assert lat and lat["n"] > 0 and s["stored_per_s"] > 0 and s["offered_per_s"] > 0
        assert s["latency_ms"]["ingest_to_clickhouse"]["n"] == lat["n"]
    live = reports["live"]
    procs = live["step"]["processes"]
    assert "perpstream" in procs
    assert all(p["cpu_share"] > 0 and p["peak_rss_mb"] > 0 for p in procs.values())
    assert _close(live["cpu_share"], sum(p["cpu_share"] for p in procs.values()))
    assert {t["name"] for t in live["targets"]} >= {"p99 event -> ClickHouse (ms)"}


@pytest.fixture(scope="module")
def processes_reports() -> dict[str, dict[str, Any]]:
    """e2e and live in the processes layout, sharing one step at 0.05x (one child process)."""
    args = _args(layout="processes")
    step: list[dict[str, Any]] = []

    def child(kind: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        if kind != "step":
            return run_child(kind, kwargs)
        assert kwargs["layout"] == "processes"
        if not step:
            step.append(run_child(kind, {**kwargs, "n": 0.05}))
        return {**step[0], "n": kwargs["n"]}

    return {name: run_scenario(name, args, child) for name in ("e2e", "live")}


def test_processes_layout_reports_every_process_and_the_held_criteria(
        processes_reports: dict[str, dict[str, Any]]) -> None:
    from perpstream.bench.e2e import HELD_P99_MS, HELD_RATE

    e2e = processes_reports["e2e"]
    assert e2e["params"]["layout"] == "processes"
    assert [s["n"] for s in e2e["steps"]] == [0.05]
    s = e2e["steps"][0]
    assert s["layout"] == "processes" and s["failed"] == []
    assert s["offered_per_s"] > 0 and s["published_per_s"] > 0
    assert s["stored_per_s"] > 0 and s["snapshot_records_per_s"] > 0
    lat = s["latency_ms"]["event_to_clickhouse"]
    assert lat and lat["n"] == round(s["stored_per_s"] * s["seconds"])
    assert s["latency_ms"]["ingest_to_clickhouse"]["n"] == lat["n"]
    assert s["held"] == (s["stored_per_s"] >= HELD_RATE * s["offered_per_s"]
                         and s["snapshot_records_per_s"] >= HELD_RATE * s["offered_per_s"]
                         and lat["p99"] <= HELD_P99_MS)
    procs = s["processes"]
    assert {"producer", "sink", "snapshots"} <= set(procs) <= {"producer", "sink", "snapshots", "broker"}
    assert len({p["pid"] for p in procs.values()}) == len(procs)  # each its own OS process
    for name, p in procs.items():
        assert p["cpu_s"] >= 0 and p["peak_rss_mb"] > 0 and p["rss_mb"] > 0, (name, p)
        assert _close(p["cpu_share"], p["cpu_s"] / s["wall_s"]), (name, p)
        assert p["run_queue_wait_share"] >= 0, (name, p)
    assert sum(p["cpu_s"] for p in procs.values()) > 0
    assert _close(s["total"]["cpu_s"], sum(p["cpu_s"] for p in procs.values()))
    assert _close(s["total"]["peak_rss_mb"], sum(p["peak_rss_mb"] for p in procs.values()))
    assert s["exit_codes"] == {"producer": {"producer": 0}, "sink": {"sink": 0},
                               "snapshots": {"snapshots": 0}}
    row = e2e["rows"][0]
    assert row["layout"] == "processes" and _close(row["cpu_s"], s["total"]["cpu_s"])
    assert "sink process" in row["cpu_of"] and "snapshots process" in row["cpu_of"]

    live = processes_reports["live"]
    assert live["params"]["layout"] == "processes"
    assert {r["name"].split(" (pid")[0] for r in live["rows"]} >= {
        f"process: {name}" for name in ("producer", "sink", "snapshots")}
    assert _close(live["cpu_share"], sum(p["cpu_share"] for p in procs.values()))
    for rep in processes_reports.values():
        json.dumps(rep)  # --json prints it as is
        out = io.StringIO()
        render(rep, Console(file=out, width=250))
        assert f"perpstream bench {rep['scenario']}" in out.getvalue()
    out = io.StringIO()
    render(e2e, Console(file=out, width=250))
    assert "CPU snapshots" in out.getvalue() and "processes layout" in out.getvalue()
