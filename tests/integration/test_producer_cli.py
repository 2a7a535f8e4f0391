"""`perpstream produce` as users run it: a process, a metrics port, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable

import pytest

from perpstream.local import free_port
from tests.fakes import read_topic

pytestmark = pytest.mark.integration


def _scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return resp.read().decode()
    except OSError:
        return ""


def test_sigterm_drains_and_exits_zero(kafka_bootstrap: str, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(3)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPSTREAM_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "perpstream.cli", "produce", "--source", "sim", "--sim-symbols", "10",
         "--sim-rate", "20", "--bootstrap-servers", kafka_bootstrap, "--topic", topic,
         "--metrics-port", str(port)],
        env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        text = ""
        while "perpstream_points_delivered " not in text and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
            text = _scrape(port)
        assert "perpstream_frames_received{kind=\"mark_price\"}" in text
        assert "perpstream_buffer_fill" in text and "perpstream_last_event_age_seconds{symbol=" in text
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    stopped = [json.loads(line) for line in err.splitlines()
               if line.startswith("{") and '"producer stopped"' in line]
    assert stopped, err[-2000:]
    delivered = int(stopped[-1]["points_delivered"])
    assert delivered == stopped[-1]["points_published"] > 0
    assert len(read_topic(kafka_bootstrap, topic, expect=delivered)) == delivered


def test_no_bootstrap_servers_is_a_clear_error() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPSTREAM_")}
    out = subprocess.run([sys.executable, "-m", "perpstream.cli", "produce", "--source", "sim"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS" in out.stderr and "--bootstrap-servers" in out.stderr
