"""``perpstream up`` pieces a user notices without a broker: supervision, the
prerequisites report, ``--source`` and the second-instance message."""

from __future__ import annotations

import argparse
import http.server
import os
import threading
from pathlib import Path

import pytest

from perpstream.errors import PerpstreamError
from perpstream.pipeline import AlreadyRunningError, already_running, locked_data_dir
from perpstream.producer.cli import source_option
from perpstream.runtime.endpoint import DataDirBusyError, DataDirLock, write_endpoint
from perpstream.runtime.settings import CommonSettings
from perpstream.runtime.supervisor import RestartWithBackoff, Supervisor
from perpstream.runtime.telemetry import Telemetry
from perpstream.up import (
    Check,
    PrerequisiteError,
    check_prerequisites,
    component_notes,
    report_prerequisites,
)
from tests.waiting import wait_for


@pytest.mark.parametrize("text, expected", [
    ("live", ("live", None)), ("sim", ("sim", None)),
    ("replay:/tmp/x.jsonl", ("replay", "/tmp/x.jsonl")), ("replay:a:b", ("replay", "a:b")),
])
def test_source(text: str, expected: tuple[str, str | None]) -> None:
    """One --source syntax for produce, run and up (producer.cli.source_option)."""
    assert source_option("live", "sim")(text) == expected


@pytest.mark.parametrize("text", ["replay:", "binance", "", "rest"])
def test_bad_source(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="live, sim, replay:FILE"):
        source_option("live", "sim")(text)


def test_replay_without_its_file_says_how_to_give_it() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="--source replay:FILE"):
        source_option("live", "sim")("replay")


def _producer(**kw: object) -> argparse.Namespace:
    venues = str(kw.pop("venues", "binance")).split(",")
    return argparse.Namespace(**{"source": "sim", "replay_file": None, "rest_url": "", "venue_list": venues,
                                 **kw})


def test_prerequisites_name_what_is_missing_and_what_to_do(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    common = CommonSettings(data_dir=str(blocked / "state"))  # under a file: cannot be created
    checks = check_prerequisites(common, _producer(source="replay", replay_file=str(tmp_path / "none")))
    with pytest.raises(PrerequisiteError) as err:
        report_prerequisites(checks, None)
    assert "data directory" in str(err.value) and "replay file" in str(err.value)
    out = capsys.readouterr().out
    assert "[FAIL] data directory" in out and "--data-dir" in out
    assert "[FAIL] replay file" in out and "perpstream record" in out
    assert "[ok  ] ClickHouse engine" in out


def _serve(status: int) -> tuple[http.server.HTTPServer, str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"{}")

        do_POST = do_GET  # Hyperliquid's REST is POST /info

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.mark.parametrize("status, ok, words", [
    (200, True, ""), (418, False, "banned"), (429, False, "rate limited"), (503, False, "HTTP 503"),
])
def test_the_live_source_checks_the_exchange_answers(tmp_path: Path, status: int, ok: bool,
                                                    words: str) -> None:
    server, url = _serve(status)
    try:
        checks = check_prerequisites(CommonSettings(data_dir=str(tmp_path)), _producer(source="live",
                                                                                      rest_url=url))
    finally:
        server.shutdown()
    rest = next(c for c in checks if c.what == "Binance REST")
    assert rest.ok is ok and words in rest.detail


def test_an_unreachable_exchange_suggests_the_simulated_market(tmp_path: Path) -> None:
    server, url = _serve(200)
    server.shutdown()
    server.server_close()  # nothing listens there any more
    checks = check_prerequisites(CommonSettings(data_dir=str(tmp_path)), _producer(source="live",
                                                                                  rest_url=url))
    rest = next(c for c in checks if c.what == "Binance REST")
    assert not rest.ok and "unreachable" in rest.detail and "--source sim" in rest.fix


def test_a_warning_does_not_stop_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    report_prerequisites([Check("disk space", True, "0.5 GiB free", "free some space", warning=True)], None)
    assert "[warn] disk space: 0.5 GiB free -> free some space" in capsys.readouterr().out


def test_one_owner_per_data_directory_and_what_a_second_one_is_told(tmp_path: Path) -> None:
    with DataDirLock(tmp_path):
        with pytest.raises(DataDirBusyError) as busy:
            DataDirLock(tmp_path).acquire()
        assert busy.value.pid == os.getpid()
        write_endpoint(tmp_path, "http://127.0.0.1:8123")
        text = already_running(tmp_path, busy.value.pid)
        assert f"pid {os.getpid()}" in text and "http://127.0.0.1:8123" in text
        assert f"kill -INT {os.getpid()}" in text
        with pytest.raises(AlreadyRunningError) as refused:  # what run and up both answer (exit 1)
            locked_data_dir(tmp_path)
        assert str(refused.value) == text
    DataDirLock(tmp_path).acquire().release()  # released: the next owner takes it


def test_the_view_says_which_component_is_being_restarted_and_why() -> None:
    calls: list[int] = []

    def body(stop: threading.Event) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise PerpstreamError("ClickHouse unreachable")
        stop.wait()
        return 0

    sup = Supervisor(RestartWithBackoff(delays=lambda: iter([0.0])), telemetry=Telemetry())
    c = sup.add("sink", body)
    c.start()
    wait_for(lambda: len(calls) == 2, 10, "the restart")
    assert component_notes({"sink": c}, None) == [
        "sink: running again after 1 restart(s); last: ClickHouse unreachable"]
    c.stop()
    c.join(5)


def test_each_venue_read_live_has_its_rest_checked(tmp_path: Path) -> None:
    ok_server, ok_url = _serve(200)
    limited, limited_url = _serve(403)  # Bybit's IP limit answers 403
    try:
        producer = _producer(source="live", venues="bybit,hyperliquid", bybit_rest_url=limited_url,
                             hyperliquid_rest_url=ok_url)
        checks = {c.what: c for c in check_prerequisites(CommonSettings(data_dir=str(tmp_path)), producer)}
    finally:
        ok_server.shutdown()
        limited.shutdown()
    assert "Binance REST" not in checks  # not a venue of this run
    assert checks["Hyperliquid REST"].ok
    assert not checks["Bybit REST"].ok and "rate limited" in checks["Bybit REST"].detail
