"""The measured clients of ``perpstream bench frames``, whichever venue serves them.

Each client (``perpstream produce``, a bare websocket client, the peer) is a child process
of its own, measured over a window against the fake venue that serves it
(docs/producer.md, "Frame path cost"):

- :class:`Feed` is what the bench reads of a fake venue: whether the client has every
  subscription open, the frames and per-symbol updates the server sent so far, whether no
  client is connected. Each fake keeps these its own way, so each has its feed
  (:class:`BinanceFeed` here, the other venues' in :mod:`perpstream.bench.venues`);
  :class:`Feeds` is several at once, for one client that reads several venues, and
  :func:`measure` gives what each of them sent in the window.
- :func:`measure` waits until the client streams everything, lets ``warmup`` pass, and
  takes the CPU-seconds of its process (every thread, ``/proc/<pid>/stat``, 10 ms ticks:
  keep windows long) over what the server sent in the window, and, for a producer, the
  points it published (its own ``points_published`` counter, read from its ``/metrics``
  just outside the window so that serving it is not counted).
- :func:`frame_row`: CPU per frame, per update and per published point, and the share of a
  core; :func:`profile_window`: a py-spy run of a producer and its CPU split.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from perpstream.bench.measure import peak_rss_mb, proc_cpu_s, row
from perpstream.fakes.binance import FakeBinance
from perpstream.local import die_with_parent

READY_TIMEOUT = 60.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: py-spy samples a second: the producer is busy 5-10% of the time at the default load,
#: so py-spy's 100/s would leave too few busy samples in a 20 s window.
PROFILE_RATE = 500


class Feed(Protocol):
    """What the bench reads of the fake venue a client is measured against."""

    def ready(self) -> bool:
        """Every subscription the client needs is open on the server."""
        ...

    def progress(self) -> str:
        """How far the client got, for an error: ``"3 of 10 streams"``."""
        ...

    def sent(self) -> tuple[int, int]:
        """Frames and per-symbol updates the server sent so far (an array frame holds many)."""
        ...

    def idle(self) -> bool:
        """No client is connected (the previous one's sockets are gone)."""
        ...

    def reset(self) -> None:
        """Between clients, with none connected: forget what was kept of the last one."""
        ...


class BinanceFeed:
    """The fake Binance: streams open per connection, frames and markPrice updates counted."""

    def __init__(self, fake: FakeBinance, streams: set[str]) -> None:
        self.fake, self.streams = fake, streams

    def ready(self) -> bool:
        return self.fake.open_streams() == self.streams

    def progress(self) -> str:
        return f"{len(self.fake.open_streams())} of {len(self.streams)} streams"

    def sent(self) -> tuple[int, int]:
        return self.fake.frames_sent, self.fake.updates_sent

    def idle(self) -> bool:
        return not self.fake.conns

    def reset(self) -> None:
        return None


class Feeds:
    """Several fake venues served to one client at once (a producer reading them all): ready
    when every one is, idle when every one is, what they sent summed; each by its name."""

    def __init__(self, feeds: Mapping[str, Feed]) -> None:
        self.feeds = dict(feeds)

    def ready(self) -> bool:
        return all(f.ready() for f in self.feeds.values())

    def progress(self) -> str:
        return "; ".join(f"{name}: {f.progress()}" for name, f in self.feeds.items())

    def sent_by(self) -> dict[str, tuple[int, int]]:
        """Frames and updates each feed sent so far, by its name."""
        return {name: f.sent() for name, f in self.feeds.items()}

    def sent(self) -> tuple[int, int]:
        return summed(self.sent_by())

    def idle(self) -> bool:
        return all(f.idle() for f in self.feeds.values())

    def reset(self) -> None:
        for f in self.feeds.values():
            f.reset()


def summed(by: Mapping[str, tuple[int, int]]) -> tuple[int, int]:
    """Frames and updates of several feeds together."""
    return sum(f for f, _ in by.values()), sum(u for _, u in by.values())


def _sent(feed: Feed) -> tuple[tuple[int, int], dict[str, tuple[int, int]] | None]:
    """What ``feed`` sent so far and, for :class:`Feeds`, each part's, read at one time."""
    if isinstance(feed, Feeds):
        by = feed.sent_by()
        return summed(by), by
    return feed.sent(), None


class Client:
    """One measured child process."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log = log
        # Run in the bench's scratch directory: ``python -m`` puts the current directory first on
        # the import path, so a bench started from a checkout would have every client, the
        # compared checkout's included, import that checkout's modules instead of its own.
        with log.open("ab") as fh:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=fh, env=env,
                                         cwd=log.parent, preexec_fn=die_with_parent)

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


def points_published(port: int) -> float:
    """The ``points_published`` counter of a producer's ``/metrics`` (labels summed)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("perpstream_points_published"):
            total += float(line.rpartition(" ")[2])
    return total


def _wait_ready(feed: Feed, client: Client) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    first = feed.sent()[0]
    while not feed.ready() or feed.sent()[0] == first:
        if not client.alive():
            raise RuntimeError(f"{client.name} exited ({client.proc.returncode}): {client.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{client.name}: its subscriptions were not open and streaming after "
                               f"{READY_TIMEOUT:.0f} s ({feed.progress()}): {client.tail()}")
        time.sleep(0.05)


def measure(feed: Feed, client: Client, seconds: float, warmup: float,
            during: Callable[[int, float], dict[str, Any]] | None = None,
            points: Callable[[], float] | None = None) -> dict[str, Any]:
    """Wait until ``client`` has every subscription open and streaming, then its CPU over the
    window (``during(pid, seconds)`` runs in the window instead of a sleep and adds its keys;
    ``points()``, read before and after, gives the points published in it). For
    :class:`Feeds`, ``by_feed`` holds each feed's frames and updates in the window."""
    _wait_ready(feed, client)
    time.sleep(warmup)
    pid = client.proc.pid
    p0 = points() if points is not None else 0.0
    threads0 = thread_cpu_s(pid)
    ((f0, u0), by0), c0, t0 = _sent(feed), proc_cpu_s(pid), time.perf_counter()
    extra = during(pid, seconds) if during is not None else {}
    if during is None:
        time.sleep(seconds)
    ((f1, u1), by1), c1, t1 = _sent(feed), proc_cpu_s(pid), time.perf_counter()
    if by0 is not None and by1 is not None:
        extra["by_feed"] = {name: {"frames": f - by0[name][0], "updates": u - by0[name][1]}
                            for name, (f, u) in by1.items()}
    threads = {k: round(v - threads0.get(k, 0.0), 3) for k, v in thread_cpu_s(pid).items()}
    rss = peak_rss_mb(pid)
    if points is not None:
        extra["points"] = round(points() - p0)
    if not client.alive() or not feed.ready():
        raise RuntimeError(f"{client.name} lost its subscriptions during the window "
                           f"({feed.progress()}): {client.tail()}")
    return {"frames": f1 - f0, "updates": u1 - u0, "cpu_s": c1 - c0, "wall_s": t1 - t0, "peak_rss_mb": rss,
            "threads_cpu_s": threads, **extra}


class Clients:
    """The clients of one case, one after the other against one fake venue."""

    def __init__(self, feed: Feed, env: dict[str, str], work: str, seconds: float, warmup: float) -> None:
        self.feed, self.env, self.work = feed, env, work
        self.seconds, self.warmup = seconds, warmup

    def client(self, name: str, argv: list[str], env: dict[str, str] | None = None, feed: Feed | None = None,
               during: Callable[[int, float], dict[str, Any]] | None = None,
               points: Callable[[], float] | None = None) -> dict[str, Any]:
        feed = feed or self.feed
        # the previous client's sockets must be gone: its frames would count as this one's
        deadline = time.monotonic() + READY_TIMEOUT
        while not feed.idle() and time.monotonic() < deadline:
            time.sleep(0.05)
        feed.reset()
        c = Client(name, argv, env or self.env, Path(self.work, f"{name}.log"))
        try:
            return measure(feed, c, self.seconds, self.warmup, during, points)
        finally:
            c.stop()


#: Where a sampled stack's CPU goes: the first frame from the leaf up that matches a rule
#: (substrings of py-spy's "function (file:line)"; native frames name their C source or
#: library). Frames of the interpreter itself and of libc match none, so their samples go
#: to the caller that does.
PROFILE_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("TLS", ("libssl", "libcrypto", "/ssl.py", "sslproto", "_ssl.", "_ssl__", "SSLProtocol", "SSLObject",
             "SSL_read", "SSL_write")),
    ("perpstream: parse", ("load_json", "orjson", "/json/")),
    ("perpstream: conflate", ("/producer/conflate.py",)),
    ("perpstream: normalise", ("mark_price_updates", "/producer/binance.py", "/producer/bybit.py",
                               "/producer/okx.py", "/producer/hyperliquid.py")),
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


def frame_row(name: str, m: dict[str, Any], role: str | None = None, *,
              points_per_update: float | None = None, **more: Any) -> dict[str, Any]:
    """A measured client as a row: CPU per frame, per update and per point, share of a core.
    The points are what the client published in the window (``m["points"]``, a producer's
    own count), else ``points_per_update`` per update, else none (a bare client)."""
    frames, updates, cpu = m["frames"], m["updates"], m["cpu_s"]
    points = m.get("points")
    if points is None and points_per_update is not None:
        points = round(updates * points_per_update)
    extra: dict[str, Any] = {"role": role, **more} if role else dict(more)
    return row(name, updates, m["wall_s"], cpu, m["peak_rss_mb"], cpu_of=f"{name} process", frames=frames,
               points=points,
               cpu_us_per_frame=round(cpu / frames * 1e6, 2) if frames else None,
               cpu_us_per_update=round(cpu / updates * 1e6, 2) if updates else None,
               cpu_us_per_point=round(cpu / points * 1e6, 3) if points else None,
               cpu_share=round(cpu / m["wall_s"], 4), threads_cpu_s=m.get("threads_cpu_s"), **extra)


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the least CPU per frame."""
    return min(runs, key=lambda m: m["cpu_s"] / m["frames"] if m["frames"] else float("inf"))


def compare(rows: list[dict[str, Any]], floor: dict[str, Any] | None, peer: dict[str, Any] | None) -> None:
    """CPU per frame of each row over the reference floor's and the peer's (same case, same run)."""
    for r in rows:
        if floor is not None and r is not floor and floor["cpu_s"] and r["frames"] and floor["frames"]:
            r["cpu_vs_floor"] = round(r["cpu_s"] / r["frames"] / (floor["cpu_s"] / floor["frames"]), 2)
        if peer is not None and r is not peer and peer["cpu_us_per_frame"] and r["cpu_us_per_frame"]:
            r["cpu_vs_peer"] = round(r["cpu_us_per_frame"] / peer["cpu_us_per_frame"], 3)


def us(r: dict[str, Any]) -> str:
    return f"{r['cpu_us_per_frame']:g} µs" if r["cpu_us_per_frame"] is not None else "-"


def floors_note(name: str, rows: list[dict[str, Any]], mine: dict[str, Any]) -> str:
    """CPU per frame of each floor and the producer's above each: what a cheaper websocket
    library could take off at most, and what perpstream's own work costs."""
    parts = []
    for r in rows:
        if "floor" in r and r["cpu_us_per_frame"] is not None and mine["cpu_us_per_frame"]:
            above = mine["cpu_us_per_frame"] - r["cpu_us_per_frame"]
            parts.append(f"{r['floor']} floor {us(r)} (produce {above:+.1f} µs above it)")
    return f"{name}: perpstream produce {us(mine)} per frame; " + ("; ".join(parts) or "no floor measured")


def profile_note(name: str, m: dict[str, Any], mine: dict[str, Any]) -> str:
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
