"""The in-process venue frame benchmark reads every frame it builds, and publishes what
conflation leaves."""

from __future__ import annotations

import pytest

from benchmarks import venue_frames_bench as bench
from perpstream.producer import bybit, okx


def test_every_frame_is_read_and_conflation_publishes_one_point_a_second_per_metric(
        capsys: pytest.CaptureFixture[str]) -> None:
    frames = bench.bybit_frames(3, 2)
    assert len(frames) == 3 + 3 * 20
    row = bench.measure("bybit", bybit.SOURCE, bybit.Parser, frames, repeat=1)
    # per symbol and second, the last value of each metric it carried (drained at the end):
    # the first second has the snapshot's next funding time besides mark, index, open
    # interest and funding rate; the second has those four
    assert row["frames"] == 63
    assert row["points"] == 3 * (5 + 4)
    listing = bench.okx_listing(2)

    def parser() -> okx.Parser:
        p = okx.Parser()
        p.set_instruments(listing)
        return p

    row = bench.measure("okx", okx.SOURCE, parser, bench.okx_frames(2, 1), repeat=1)
    assert row["frames"] == 2 * (10 + 5 + 1)
    # one second of index and mark, one open interest, per swap
    assert row["points"] == 2 * 3
    assert bench.main(["--symbols", "2", "--swaps", "2", "--seconds", "1", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "bybit" in out and "okx" in out and "x JSON" in out


def test_a_count_below_one_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.main(["--repeat", "0"])
    assert exc.value.code == 2
    assert "--repeat: 0 is not at least 1" in capsys.readouterr().err
