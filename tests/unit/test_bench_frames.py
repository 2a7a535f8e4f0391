"""``perpstream bench frames``: which websocket floors run and what the report says of a
floor library that is not installed (docs/producer.md, "Frame path cost"). No figure is
judged here; the measured run is tests/integration/test_bench.py."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

import pytest

from perpstream.bench import FLOORS, SCENARIOS, run_scenario, scenario_kwargs
from perpstream.bench.frames import floor_plan
from perpstream.cli import build_parser


def test_auto_measures_every_installed_floor_and_names_the_missing_one() -> None:
    libs, notes = floor_plan("auto", lambda lib: lib != "picows")
    assert libs == ["websockets"]
    assert len(notes) == 1 and notes[0].startswith("picows floor: not installed")
    assert "perpstream[bench]" in notes[0]

    libs, notes = floor_plan("auto", lambda lib: True)
    assert libs == list(FLOORS) == ["websockets", "picows"] and notes == []


def test_named_floors_keep_their_order_and_a_missing_one_is_a_note_not_an_error() -> None:
    libs, notes = floor_plan("picows,websockets", lambda lib: True)
    assert libs == ["picows", "websockets"] and notes == []
    libs, notes = floor_plan("picows", lambda lib: False)
    assert libs == [] and notes[0].startswith("picows floor: not installed")


def test_this_environment_decides_by_what_imports() -> None:
    libs, notes = floor_plan("auto")
    has_picows = importlib.util.find_spec("picows") is not None
    assert libs == (["websockets", "picows"] if has_picows else ["websockets"])
    assert bool(notes) is not has_picows


def test_an_unknown_floor_is_refused() -> None:
    with pytest.raises(ValueError, match="aiohttp"):
        floor_plan("websockets,aiohttp", lambda lib: True)


def test_floor_option_reaches_the_scenario_and_a_wrong_name_is_a_usage_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(["bench", "frames"])
    assert scenario_kwargs("frames", args)["floors"] == "auto"
    args = parser.parse_args(["bench", "frames", "--floor", "websockets, picows"])
    assert scenario_kwargs("frames", args)["floors"] == "websockets,picows"
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["bench", "frames", "--floor", "websockets,nope"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--floor" in err and "'websockets,nope'" in err and "Traceback" not in err


def test_bench_all_runs_frames_with_its_floor_option() -> None:
    args = build_parser().parse_args(["bench", "all", "--floor", "websockets"])
    seen: dict[str, Mapping[str, Any]] = {}

    def child(kind: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        seen[kind] = kwargs
        return {"scenario": kind}

    for name in SCENARIOS:
        if name not in ("e2e", "live"):
            run_scenario(name, args, child)
    assert "frames" in SCENARIOS and seen["frames"]["floors"] == "websockets"


def test_profile_split_gives_each_busy_sample_to_the_first_known_frame_from_the_leaf() -> None:
    from perpstream.bench.frames import profile_split

    root = ("main (/w/perpstream/cli.py:50);run_forever (/project/uvloop/loop.c:33192);"
            "uv__io_poll (/project/build/libuv-x86_64/src/unix/linux.c:1452)")
    read = (f"{root};Connection.data_received (/v/site-packages/websockets/asyncio/connection.py:1);"
            "SSLProtocol__do_read (/project/uvloop/loop.c:1);SSL_read_ex (/usr/lib/libssl.so.3)")
    raw = "\n".join([
        f"{root};epoll_pwait (/usr/lib/x86_64-linux-gnu/libc.so.6) 50",  # waiting: no CPU
        f"{read};malloc (/usr/lib/x86_64-linux-gnu/libc.so.6) 3",  # libc: its caller's
        f"{root};Frame.parse (/v/site-packages/websockets/frames.py:1) 2",
        f"{root};Ingest.on_ws_frame (/w/producer/ingest.py:1);load_json (/w/producer/binance.py:1);"
        "loads (orjson.so) 4",
        f"{root};Ingest.on_ws_frame (/w/producer/ingest.py:1);Publisher.publish_many "
        "(/w/producer/publisher.py:1);Producer_produce (/confluent_kafka/src/Producer.c:1) 1",
        "garbage line",
    ])
    split, samples = profile_split(raw)
    assert samples == 10
    assert split == {"perpstream: parse": 0.4, "TLS": 0.3, "websockets": 0.2, "perpstream: produce": 0.1}
    assert profile_split("") == ({}, 0)
