"""Scenario ``frames``: the whole websocket frame path, frames on a socket -> points to Kafka.

The fake exchange (:mod:`perpstream.fakes.binance`) runs in this process and streams
markPrice frames at a stated rate; each measured client runs in a child process of its
own, one after the other, against the same server:

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
  imported from ``DIR``), for before/after figures in one run.

With ``--rounds N`` the producers (this checkout's and the compared one) run N times in
turn and each row shows its round with the least CPU per frame: on a shared machine the
load of others changes from one client's window to the next, and alternating rounds
give both producers the same chances.

With ``--profile`` each case runs the producer once more under ``py-spy record
--native`` (not one of the measured rounds: py-spy pauses it for every sample); the
notes give its CPU split: the main thread's busy samples by :data:`PROFILE_RULES`
(event loop, TLS, websockets, perpstream's parse, normalise, encode, produce), weighed
by the threads' CPU of the best measured round.

Cases: per-symbol streams (``--frame-symbols`` x ``--frame-rate`` frames/s each) and
the all-market stream (``!markPrice@arr@1s`` with ``--symbols`` symbols, one frame a
second; the producer follows them with ``--all``), each plain (``ws://``) and TLS
(``wss://``, a self-signed certificate made with the ``openssl`` command, trusted
through ``SSL_CERT_FILE``; the TLS cases are skipped where ``openssl`` is missing).

Each client is measured over ``seconds`` after it subscribed everything and
``warmup`` seconds passed: CPU-seconds of its process (every thread, ``/proc/<pid>/stat``,
10 ms ticks: keep windows long) over the frames and markPrice updates the server sent
in the window. Points are 5 per update (every symbol is a perpetual: mark, index,
settle, funding rate, next funding time). docs/producer.md, "Frame path cost".
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from perpstream.bench import FLOORS
from perpstream.bench.e2e import _broker
from perpstream.bench.measure import peak_rss_mb, proc_cpu_s, report, row, target
from perpstream.fakes.binance import FakeBinance
from perpstream.local import die_with_parent, ensure_topics
from perpstream.producer.binance import ALL_MARKET_STREAM, mark_price_stream

POINTS_PER_UPDATE = 5
#: The issue's targets: per-symbol CPU per frame at most a quarter of the peer's; the
#: all-market stream on the live listing under 2% of one core.
PEER_FACTOR = 4.0
ALL_MARKET_SHARE = 0.02
READY_TIMEOUT = 60.0
PEER_ENV = "PERPSTREAM_BENCH_PEER_PYTHON"
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: py-spy samples a second: the producer is busy 5-10% of the time at the default load,
#: so py-spy's 100/s would leave too few busy samples in a 20 s window.
PROFILE_RATE = 500
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


def symbols_of(n: int) -> list[str]:
    return [f"SYM{i:04d}USDT" for i in range(n)]


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


class Client:
    """One measured child process."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:

        self.name = name
        self.log = log
        with log.open("ab") as fh:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh, env=env,
                                         preexec_fn=die_with_parent)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-8:])
        return ""

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def measure(fake: FakeBinance, client: Client, streams: set[str], seconds: float,
            warmup: float, during: Callable[[int, float], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Wait until ``client`` has every stream open, then its CPU over the window
    (``during(pid, seconds)`` runs in the window instead of a sleep and adds its keys)."""
    deadline = time.monotonic() + READY_TIMEOUT
    sent = fake.frames_sent
    while fake.open_streams() != streams or fake.frames_sent == sent:
        if not client.alive():
            raise RuntimeError(f"{client.name} exited ({client.proc.returncode}): {client.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{client.name}: its streams were not open and streaming after "
                               f"{READY_TIMEOUT:.0f} s "
                               f"({len(fake.open_streams())} of {len(streams)}): {client.tail()}")
        time.sleep(0.05)
    time.sleep(warmup)
    pid = client.proc.pid
    threads0 = thread_cpu_s(pid)
    f0, u0, c0, t0 = fake.frames_sent, fake.updates_sent, proc_cpu_s(pid), time.perf_counter()
    extra = during(pid, seconds) if during is not None else {}
    if during is None:
        time.sleep(seconds)
    f1, u1, c1, t1 = fake.frames_sent, fake.updates_sent, proc_cpu_s(pid), time.perf_counter()
    threads = {k: round(v - threads0.get(k, 0.0), 3) for k, v in thread_cpu_s(pid).items()}
    rss = peak_rss_mb(pid)
    if not client.alive() or fake.open_streams() != streams:
        raise RuntimeError(f"{client.name} lost its streams during the window: {client.tail()}")
    return {"frames": f1 - f0, "updates": u1 - u0, "cpu_s": c1 - c0, "wall_s": t1 - t0, "peak_rss_mb": rss,
            "threads_cpu_s": threads, **extra}


#: Where a sampled stack's CPU goes: the first frame from the leaf up that matches a rule
#: (substrings of py-spy's "function (file:line)"; native frames name their C source or
#: library). Frames of the interpreter itself and of libc match none, so their samples go
#: to the caller that does.
PROFILE_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("TLS", ("libssl", "libcrypto", "/ssl.py", "sslproto", "_ssl.", "_ssl__", "SSLProtocol", "SSLObject",
             "SSL_read", "SSL_write")),
    ("perpstream: parse", ("load_json", "orjson", "/json/")),
    ("perpstream: normalise", ("mark_price_updates", "/producer/binance.py")),
    ("perpstream: encode", ("/producer/encoding.py", "/schemas/", "MetricPointEncoder", "fastavro")),
    ("perpstream: produce", ("/producer/publisher.py", "confluent_kafka", "Producer_", "dr_msg_cb",
                             "rd_kafka")),
    ("perpstream: other", ("/producer/", "/perpstream/")),
    ("websockets", ("/websockets/",)),
    ("event loop", ("uvloop", "/asyncio/", "_asynciomodule", "libuv", "uv_", "selectors.py")),
)
#: A leaf in these waits in the kernel for the socket: py-spy's native mode reports the
#: loop's thread as running there, but it spends no CPU.
IDLE_LEAVES = ("epoll_wait", "epoll_pwait")


def profile_split(raw: str) -> tuple[dict[str, float], int]:
    """Share of the busy samples of py-spy's raw (collapsed) output per :data:`PROFILE_RULES`
    category, ``other`` for stacks none matches, and the number of busy samples. Each line
    is ``frame;frame;... count``, the root first; stacks ending in :data:`IDLE_LEAVES` are
    left out."""
    counts: dict[str, int] = {}
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")
        if any(frames[-1].startswith(leaf + " ") for leaf in IDLE_LEAVES):
            continue
        cat = next((c for f in reversed(frames) for c, keys in PROFILE_RULES
                    if any(k in f for k in keys)), "other")
        counts[cat] = counts.get(cat, 0) + int(n)
    total = sum(counts.values())
    shares = {c: round(v / total, 4) for c, v in sorted(counts.items(), key=lambda kv: -kv[1])}
    return shares, total


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU-seconds of a process's threads by name (digits dropped: ``rdk:broker``); the
    first one (the event loop's) as ``main`` (user time, what py-spy samples) and ``kernel``
    (its system time: socket reads and writes, epoll; py-spy counts a thread in a system
    call as idle)."""
    out: dict[str, float] = {"main": 0.0, "kernel": 0.0}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                if task.name == str(pid):
                    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                    out["main"] += int(fields[11]) / CLK_TCK
                    out["kernel"] += int(fields[12]) / CLK_TCK
                    continue
                kind = (task / "comm").read_text().strip().rstrip("0123456789/-") or "?"
                out[kind] = out.get(kind, 0.0) + proc_cpu_s(f"{pid}/task/{task.name}")
    return out


def py_spy() -> str | None:
    """The py-spy command (the dev extra): beside this interpreter, or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def profile_window(pid: int, seconds: float, out: Path) -> dict[str, Any]:
    """``py-spy record --native`` of ``pid`` over the window: the main thread's split."""
    spy = py_spy()
    if spy is None:
        return {"profile_error": "py-spy not installed (the dev extra)"}
    done = subprocess.run([spy, "record", "--native", "--full-filenames", "-p", str(pid), "-d",
                           str(max(1, round(seconds))), "-r", str(PROFILE_RATE), "-f", "raw", "-o", str(out)],
                          capture_output=True, text=True)
    if done.returncode != 0 or not out.exists():
        return {"profile_error": f"py-spy failed: {done.stderr.strip()[-200:]}"}
    split, samples = profile_split(out.read_text())
    return {"split": split, "busy_samples": samples}


def _row(name: str, m: dict[str, Any], role: str | None = None, **more: Any) -> dict[str, Any]:
    frames, updates, cpu = m["frames"], m["updates"], m["cpu_s"]
    extra: dict[str, Any] = {"role": role, **more} if role else dict(more)
    return row(name, updates, m["wall_s"], cpu, m["peak_rss_mb"], cpu_of=f"{name} process", frames=frames,
               points=updates * POINTS_PER_UPDATE,
               cpu_us_per_frame=round(cpu / frames * 1e6, 2) if frames else None,
               cpu_us_per_update=round(cpu / updates * 1e6, 2) if updates else None,
               cpu_us_per_point=round(cpu / (updates * POINTS_PER_UPDATE) * 1e6, 3) if updates else None,
               cpu_share=round(cpu / m["wall_s"], 4), threads_cpu_s=m.get("threads_cpu_s"), **extra)


class _Case:
    """One case (stream layout x plain/TLS) against one fake exchange: its clients, one after the other."""

    def __init__(self, fake: FakeBinance, layout: str, listing: list[str], streams: set[str],
                 env: dict[str, str], bootstrap: str, work: str, seconds: float, warmup: float) -> None:
        self.fake, self.layout, self.listing, self.streams = fake, layout, listing, streams
        self.env, self.bootstrap, self.work = env, bootstrap, work
        self.seconds, self.warmup = seconds, warmup

    def client(self, name: str, argv: list[str], env: dict[str, str] | None = None,
               streams: set[str] | None = None,
               during: Callable[[int, float], dict[str, Any]] | None = None) -> dict[str, Any]:
        # the previous client's sockets must be gone: its streams would count as this one's
        deadline = time.monotonic() + READY_TIMEOUT
        while self.fake.conns and time.monotonic() < deadline:
            time.sleep(0.05)
        c = Client(name, argv, env or self.env, Path(self.work, f"{name}.log"))
        try:
            return measure(self.fake, c, streams or self.streams, self.seconds, self.warmup, during)
        finally:
            c.stop()

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
                           streams={f"{s.lower()}@markPrice" for s in self.listing})


def run(frame_symbols: int = 200, frame_rate: float = 10.0, all_symbols: int = 700, seconds: float = 20.0,
        warmup: float = 3.0, tls: str = "both", peer: str | None = None,
        compare_checkout: str | None = None, rounds: int = 1, floors: str = "auto",
        profile: bool = False) -> dict[str, Any]:

    peer_py = peer_python(peer)
    libs, notes = floor_plan(floors)
    rows: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    profiles: dict[str, dict[str, Any]] = {}
    modes = {"both": (False, True), "plain": (False,), "tls": (True,)}[tls]
    with _broker() as (bootstrap, _), tls_files() as tls_ctx, \
            tempfile.TemporaryDirectory(prefix="bench-frames-") as tmp:
        if tls_ctx is None and True in modes:
            notes.append("TLS cases skipped: no openssl command to make a certificate")
            modes = tuple(m for m in modes if not m)
        for layout in ("per_symbol", "all_market"):
            for secure in modes:
                n = frame_symbols if layout == "per_symbol" else all_symbols
                listing = symbols_of(n)
                name = (f"{'per-symbol' if layout == 'per_symbol' else 'all-market'}, "
                        f"{'TLS' if secure else 'plain'}")
                streams = ({mark_price_stream(s) for s in listing} if layout == "per_symbol"
                           else {ALL_MARKET_STREAM})
                env = dict(os.environ, PYTHONUNBUFFERED="1", PERPSTREAM_LOG_LEVEL="WARNING")
                if secure and tls_ctx is not None:
                    env["SSL_CERT_FILE"] = tls_ctx[1]
                with FakeBinance(listing, tick=1.0 / frame_rate if layout == "per_symbol" else 1.0,
                                 ping_interval=20.0, record=False,
                                 ssl=tls_ctx[0] if secure and tls_ctx else None) as fake:
                    case = _Case(fake, layout, listing, streams, env, bootstrap, tmp, seconds, warmup)
                    # cryptofeed takes wss:// only
                    peer_here = peer_py if layout == "per_symbol" and secure else None
                    case_rows, mine, peer_row = _measure_case(case, name, libs, rounds, compare_checkout,
                                                              peer_here)
                    if profile:  # a run of its own: py-spy pauses the process for each sample
                        out = Path(tmp, f"profile-{layout}-{secure}.txt")
                        profiles[name] = case.produce("profile", during=partial(profile_window, out=out))
                        notes.append(_profile_note(name, profiles[name], mine))
                rows.extend(case_rows)
                notes.append(_floors_note(name, case_rows, mine))
                if peer_row is not None and mine["cpu_us_per_frame"]:
                    factor = peer_row["cpu_us_per_frame"] / mine["cpu_us_per_frame"]
                    targets.append(target(f"{name}: peer CPU per frame / perpstream's", round(factor, 2),
                                          f">= {PEER_FACTOR:g}", factor >= PEER_FACTOR))
                    notes.append(_peer_note(name, case_rows, peer_row))
                if layout == "all_market":
                    targets.append(target(f"{name}, {n} symbols: producer CPU (share of one core)",
                                          mine["cpu_share"], f"< {ALL_MARKET_SHARE}",
                                          mine["cpu_share"] < ALL_MARKET_SHARE))
    notes.extend(_run_notes(peer_py, frame_symbols, frame_rate, all_symbols, seconds, warmup, rounds))
    return report("frames", {"frame_symbols": frame_symbols, "frame_rate": frame_rate,
                             "all_symbols": all_symbols, "seconds": seconds, "warmup": warmup, "tls": tls,
                             "peer": peer_py, "compare_checkout": compare_checkout, "rounds": rounds,
                             "floors": libs, "profile": profile},
                  rows, targets, notes, profiles=profiles)


def _measure_case(case: _Case, name: str, libs: list[str], rounds: int, compare_checkout: str | None,
                  peer_py: str | None) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any] | None]:
    """One case's rows: each floor, this checkout's producer (and the compared one's) over
    alternating rounds, best shown, and the peer where it runs."""
    floor_rows = [_row(f"{name}: bare {lib} client (floor)", case.floor(lib), "baseline", floor=lib)
                  for lib in libs]
    mine_runs: list[dict[str, Any]] = []
    other_runs: list[dict[str, Any]] = []
    for _ in range(max(1, rounds)):
        mine_runs.append(case.produce("produce"))
        if compare_checkout:
            other_runs.append(case.produce("compare", compare_checkout))
    mine = _row(f"{name}: perpstream produce", _best(mine_runs))
    case_rows = [*floor_rows, mine]
    if compare_checkout:
        case_rows.append(_row(f"{name}: perpstream produce of {compare_checkout}", _best(other_runs)))
    peer_row = _row(f"{name}: cryptofeed (peer)", case.peer(peer_py), "peer") if peer_py else None
    if peer_row is not None:
        case_rows.append(peer_row)
    reference = next((r for lib, r in zip(libs, floor_rows, strict=True) if lib == REFERENCE_FLOOR),
                     floor_rows[0] if floor_rows else None)
    _compare(case_rows, reference, peer_row)
    return case_rows, mine, peer_row


def _us(r: dict[str, Any]) -> str:
    return f"{r['cpu_us_per_frame']:g} µs" if r["cpu_us_per_frame"] is not None else "-"


def _floors_note(name: str, rows: list[dict[str, Any]], mine: dict[str, Any]) -> str:
    """CPU per frame of each floor and the producer's above each: what a cheaper websocket
    library could take off at most, and what perpstream's own work costs."""
    parts = []
    for r in rows:
        if "floor" in r and r["cpu_us_per_frame"] is not None and mine["cpu_us_per_frame"]:
            above = mine["cpu_us_per_frame"] - r["cpu_us_per_frame"]
            parts.append(f"{r['floor']} floor {_us(r)} (produce {above:+.1f} µs above it)")
    return f"{name}: perpstream produce {_us(mine)} per frame; " + ("; ".join(parts) or "no floor measured")


def _peer_note(name: str, rows: list[dict[str, Any]], peer: dict[str, Any]) -> str:
    """What the peer target asks for in µs per frame, next to the floors: the whole
    producer would have to cost a quarter of the peer's."""
    floors = [f"{r['floor']} {_us(r)}" for r in rows if "floor" in r]
    return (f"{name}: {PEER_FACTOR:g}x less CPU per frame than the peer ({_us(peer)}) = at most "
            f"{peer['cpu_us_per_frame'] / PEER_FACTOR:.1f} µs per frame for the whole producer, socket and "
            f"library included; the bare receive alone costs {', '.join(floors) or '-'}")


def _profile_note(name: str, m: dict[str, Any], mine: dict[str, Any]) -> str:
    """The process's CPU split: its threads' CPU in the measured round (py-spy's pauses
    would inflate every thread's), the main thread's by the profile's categories."""
    if "profile_error" in m:
        return f"{name}: no profile: {m['profile_error']}"
    threads = mine.get("threads_cpu_s") or {"main": 1.0}
    total = sum(threads.values()) or 1.0
    main = threads.get("main", 0.0) / total
    parts = [f"{cat} {share * main:.0%}" for cat, share in m["split"].items()]
    parts += [f"{'main thread in the kernel' if k == 'kernel' else 'thread ' + k} {v / total:.0%}"
              for k, v in sorted(threads.items(), key=lambda kv: -kv[1]) if k != "main" and v > 0]
    return (f"{name}: py-spy --native of perpstream produce over {m['wall_s']:.0f} s (a run of its own, "
            f"{m['busy_samples']} busy samples of the main thread), share of the process CPU: "
            + ", ".join(parts))


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


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the least CPU per frame."""
    return min(runs, key=lambda m: m["cpu_s"] / m["frames"] if m["frames"] else float("inf"))


def _compare(rows: list[dict[str, Any]], floor: dict[str, Any] | None, peer: dict[str, Any] | None) -> None:
    """CPU per frame of each row over the reference floor's and the peer's (same case, same run)."""
    for r in rows:
        if floor is not None and r is not floor and floor["cpu_s"] and r["frames"] and floor["frames"]:
            r["cpu_vs_floor"] = round(r["cpu_s"] / r["frames"] / (floor["cpu_s"] / floor["frames"]), 2)
        if peer is not None and r is not peer and peer["cpu_us_per_frame"] and r["cpu_us_per_frame"]:
            r["cpu_vs_peer"] = round(r["cpu_us_per_frame"] / peer["cpu_us_per_frame"], 3)
