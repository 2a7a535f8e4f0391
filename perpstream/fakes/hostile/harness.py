"""Run one hostile input through a boundary and judge it against the oracle.

Each ``*Harness.run(case)`` feeds the input to the product's public entry
point, observes what it did (published points decoded with the reference
codec, rejection counters, the value handed back), compares that with every
outcome the oracle allows, then feeds a valid input and checks that it still
goes through exactly. Nothing here asserts: a :class:`Verdict` says what
happened, and the tests and the benchmark decide.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from perpstream.consumers.runtime.decoding import row_decoder
from perpstream.fakes.hostile import binance_rules, records, venue_rules
from perpstream.fakes.hostile.frames import (
    BYBIT_BOOK,
    FILTER,
    MAX_FRAME,
    OKX_SWAPS,
    SENTINEL_FRAME,
    T0,
    Burst,
    sentinel_open_interest,
    venue_primer,
    venue_sentinel,
)
from perpstream.fakes.hostile.jsontext import Readings, readings
from perpstream.fakes.hostile.outcomes import (
    Case,
    FrameOutcome,
    Items,
    Observed,
    Point,
    Reject,
    Verdict,
    bits,
    describe_alternatives,
    describe_observed,
    matches,
    point,
)
from perpstream.producer import bybit, hyperliquid, okx
from perpstream.producer.binance import BAD_JSON, DEFAULT_MAX_FRAME_BYTES, REJECT_REASONS, perpetual_listing
from perpstream.producer.encoding import MetricPointEncoder
from perpstream.producer.exceptions import FrameRejected
from perpstream.producer.ingest import Ingest
from perpstream.producer.venue import Ack, FrameParser, Instrument, Pong
from perpstream.producer.venue_ingest import VenueIngest
from perpstream.producer.venues import VENUES, VenueSpec
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas.codec import AvroCodec, metric_point_codec
from perpstream.schemas.exceptions import DecodeError
from perpstream.schemas.models import Metric

INGEST_MS = T0 + 7
#: The valid exchangeInfo judged after every hostile one: one symbol to follow.
_SENTINEL_INFO: dict[str, Any] = {"symbols": [
    {"symbol": "BTCUSDT", "contractType": "PERPETUAL", "status": "TRADING"},
    {"symbol": "BTCUSDT_261225", "contractType": "CURRENT_QUARTER", "status": "TRADING"},
    {"symbol": "OLDUSDT", "contractType": "PERPETUAL", "status": "SETTLING"}]}


class InputTimeout(BaseException):
    """One input ran past its limit (a BaseException: product code catching Exception lets it by)."""


class Deadline:
    """Abort one input after ``seconds`` with :class:`InputTimeout` (SIGALRM: main thread only,
    and only between bytecodes; the benchmark arms faulthandler for what this cannot stop)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

        def fire(_signum: int, _frame: Any) -> None:
            raise InputTimeout(f"input still running after {seconds} s")

        signal.signal(signal.SIGALRM, fire)

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)


@contextlib.contextmanager
def _no_deadline() -> Iterator[None]:
    yield


class RecordingTarget:
    """A PublishTarget that keeps what it was handed."""

    congested = False

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    def publish(self, key: bytes, value: bytes) -> None:
        self.sent.append((key, value))


@dataclass
class _Producer:
    ingest: Ingest
    target: RecordingTarget
    telemetry: Telemetry


def _outcome(obs: Observed) -> str:
    if obs.control:
        return "control"
    if obs.points and obs.rejected:
        return "partial"
    if obs.points:
        return "accepted"
    if obs.rejected:
        return "rejected"
    return "duplicate" if obs.skipped else "nothing"


class IngestHarness:
    """Boundaries 1 and 2: ``Ingest.on_ws_frame`` / ``on_open_interest`` and ``perpetual_listing``."""

    def __init__(self, max_frame: int = MAX_FRAME, deadline: Deadline | None = None) -> None:
        self.max_frame = max_frame
        self.codec = metric_point_codec()
        self.encoder = MetricPointEncoder(self.codec)
        self.encode = self.encoder.encode
        self.deadline = deadline
        self.sentinels = 0
        self._cache: dict[bytes, Point] = {}
        self._sentinel_alts = {f: self.ws_alternatives(SENTINEL_FRAME, f, binance_rules.Triggers())
                               for f in (False, True)}
        self.reset()

    def reset(self) -> None:
        """Fresh product objects (after a crash or a hang their state is unknown)."""
        self.plain = self._producer(None)
        self.filtered = self._producer(FILTER)
        #: The oracle's view of the last open-interest time published per symbol.
        self.oi_last: dict[str, int] = {}

    def _producer(self, symbols: frozenset[str] | None) -> _Producer:
        target, telemetry = RecordingTarget(), Telemetry()
        ingest = Ingest(target, self.encoder, telemetry, max_frame_bytes=self.max_frame, symbols=symbols)
        return _Producer(ingest, target, telemetry)

    # -- observing ------------------------------------------------------------------------

    @staticmethod
    def _rejections(t: Telemetry) -> Counter[str]:
        return Counter({r: int(t.get("frames_rejected", {"reason": r})) for r in REJECT_REASONS})

    def _decoded(self, key: bytes, value: bytes) -> Point:
        """The reference decode of a published value (cached: the sentinels repeat)."""
        got = self._cache.get(value)
        if got is None:
            if len(self._cache) > 256:
                self._cache.clear()
            got = self._cache[value] = point(b"", self.codec.decode(value))
        return (key, *got[1:])

    def _feed(self, p: _Producer, call: Any, raw: Any, ingest_ms: int) -> tuple[Observed | str, float]:
        """Run one call; the observation, or the failure text."""
        total_before = p.telemetry.total("frames_rejected")
        before = self._rejections(p.telemetry) if total_before else Counter()
        start, points_before, dup_before = len(p.target.sent), p.ingest.points, p.ingest.oi_duplicates
        t0 = time.perf_counter()
        try:
            with (self.deadline or _no_deadline)():
                ret = call(raw, ingest_ms)
        except InputTimeout as exc:
            self.reset()
            return f"hang: {exc}", time.perf_counter() - t0
        except Exception as exc:
            self.reset()
            return f"crash: {type(exc).__name__}: {str(exc)[:200]}", time.perf_counter() - t0
        elapsed = time.perf_counter() - t0
        sent = p.target.sent[start:]
        del p.target.sent[start:]
        total_after = p.telemetry.total("frames_rejected")
        after = self._rejections(p.telemetry) if total_after != total_before else before
        if total_after - total_before != sum((after - before).values()):
            return "mismatch: frames_rejected counted under a reason docs/producer.md does not list", elapsed
        if p.ingest.points - points_before != len(sent):
            return f"mismatch: Ingest.points moved by {p.ingest.points - points_before}, " \
                   f"{len(sent)} points published", elapsed
        pts: Counter[Point] = Counter()
        for key, value in sent:
            try:
                pts[self._decoded(key, value)] += 1
            except DecodeError as exc:
                return f"mismatch: published bytes the codec cannot read: {exc}", elapsed
        if ret is not None and type(ret) is not dict:
            return f"mismatch: on_ws_frame handed back a {type(ret).__name__}", elapsed
        return Observed(pts, +(after - before), ret is not None,
                        p.ingest.oi_duplicates - dup_before), elapsed

    def _judge(self, alts: list[FrameOutcome], got: Observed | str, elapsed: float,
               seen: set[str]) -> Verdict:
        ms = elapsed * 1000
        if isinstance(got, str):
            return Verdict(got.split(":", 1)[0], failure=got, triggers=frozenset(seen), ms=ms)
        v = Verdict(_outcome(got), Counter(got.rejected), triggers=frozenset(seen), ms=ms)
        if not any(matches(a, got) for a in alts):
            v.failure = f"mismatch: allowed {describe_alternatives(alts)}; got {describe_observed(got)}"
        return v

    def _after(self, v: Verdict, p: _Producer, call: Any, raw: str, alts: list[FrameOutcome]) -> Verdict:
        """The valid input after a hostile one must still go through, exactly."""
        got, _ = self._feed(p, call, raw, INGEST_MS)
        if isinstance(got, str) or not any(matches(a, got) for a in alts):
            shown = got if isinstance(got, str) else describe_observed(got)
            v.failure = v.failure or f"mismatch: the valid input after it went wrong: {shown}"
        return v

    # -- boundary 1 -----------------------------------------------------------------------

    def ws_alternatives(self, raw: str | bytes, filtered: bool, seen: binance_rules.Triggers,
                        ingest_ms: int = INGEST_MS) -> list[FrameOutcome]:
        r = readings(raw, self.max_frame)
        seen |= r.triggers
        alts: list[FrameOutcome] = [Reject(frozenset(r.rejects))] if r.rejects else []
        for reading in r.values:
            alts.append(binance_rules.ws_message(reading.value, ingest_ms, seen,
                                                 symbols=FILTER if filtered else None))
        return alts

    def ws(self, case: Case) -> Verdict:
        seen = binance_rules.Triggers()
        alts = self.ws_alternatives(case.data, case.filtered, seen)
        p = self.filtered if case.filtered else self.plain
        got, elapsed = self._feed(p, p.ingest.on_ws_frame, case.data, INGEST_MS)
        v = self._judge(alts, got, elapsed, seen)
        p = self.filtered if case.filtered else self.plain  # reset() may have replaced it
        return self._after(v, p, p.ingest.on_ws_frame, SENTINEL_FRAME, self._sentinel_alts[case.filtered])

    # -- boundary 2 -----------------------------------------------------------------------

    def oi_alternatives(self, raw: str | bytes, seen: binance_rules.Triggers) -> list[FrameOutcome]:
        r = readings(raw, self.max_frame)
        seen |= r.triggers
        alts: list[FrameOutcome] = [Reject(frozenset(r.rejects))] if r.rejects else []
        for reading in r.values:
            alts.append(Items((binance_rules.open_interest(reading.value, INGEST_MS, self.oi_last, seen),)))
        return alts

    def _remember(self, got: Observed | str) -> None:
        if isinstance(got, Observed):
            for (_k, _src, symbol, _m, _v, et, _it), _n in got.points.items():
                self.oi_last[symbol] = et

    def oi(self, case: Case) -> Verdict:
        seen = binance_rules.Triggers()
        alts = self.oi_alternatives(case.data, seen)
        p = self.plain
        got, elapsed = self._feed(p, p.ingest.on_open_interest, case.data, INGEST_MS)
        self._remember(got)
        v = self._judge(alts, got, elapsed, seen)
        p = self.plain  # reset() may have replaced it
        self.sentinels += 1
        raw = sentinel_open_interest(self.sentinels)
        sentinel_alts = self.oi_alternatives(raw, binance_rules.Triggers())
        got, _ = self._feed(p, p.ingest.on_open_interest, raw, INGEST_MS)
        self._remember(got)
        if isinstance(got, str) or not any(matches(a, got) for a in sentinel_alts):
            shown = got if isinstance(got, str) else describe_observed(got)
            v.failure = v.failure or f"mismatch: the valid body after it went wrong: {shown}"
        return v

    def perpetuals(self, case: Case) -> Verdict:
        seen = binance_rules.Triggers()
        expected = binance_rules.perpetuals(case.data, seen)
        t0 = time.perf_counter()
        try:
            with (self.deadline or _no_deadline)():
                got: Any = perpetual_listing(case.data).symbols
        except FrameRejected as exc:
            got = exc
        except InputTimeout as exc:
            return Verdict("hang", failure=f"hang: {exc}", triggers=frozenset(seen))
        except Exception as exc:
            return Verdict("crash", failure=f"crash: {type(exc).__name__}: {str(exc)[:200]}",
                           triggers=frozenset(seen), ms=(time.perf_counter() - t0) * 1000)
        ms = (time.perf_counter() - t0) * 1000
        v = Verdict("accepted", ms=ms)
        if isinstance(expected, binance_rules.Raises):
            if isinstance(got, FrameRejected) and got.reason in expected.reasons:
                v = Verdict("rejected", Counter({got.reason: 1}), ms=ms)
            else:
                v = Verdict("mismatch", failure=f"mismatch: expected {expected}, got {got!r}"[:400],
                            triggers=frozenset(seen), ms=ms)
        elif isinstance(got, FrameRejected) or got != expected:
            shown = got if isinstance(got, FrameRejected) else sorted(set(got) ^ expected)[:5]
            text = f"mismatch: expected {len(expected)} symbols; got {shown!r}"
            v = Verdict("mismatch", failure=text[:400], triggers=frozenset(seen), ms=ms)
        try:  # and a valid listing after it
            again: Any = perpetual_listing(_SENTINEL_INFO).symbols
        except Exception as exc:
            again = exc
        if again != {"BTCUSDT"}:
            v.failure = v.failure or f"mismatch: the valid listing after it went wrong: {again!r}"
        return v


# -- boundary 1 for the venues read through the venue contract -------------------------------------


@dataclass(frozen=True)
class _VenueSetup:
    spec: VenueSpec
    parser: Callable[[], FrameParser]
    #: The limit frames are judged against on the data path, and by ``Dialect.control``.
    max_frame: int
    control_max: int
    model: Callable[[], venue_rules.VenueModel]


def _okx_parser() -> FrameParser:
    """OKX's parser following the harness's listing, as the venue source sets it."""
    parser = okx.Parser(max_bytes=MAX_FRAME)
    parser.set_instruments({s: Instrument(s, s.split("-")[0], s.split("-")[1], okx.swap_streams(s, index))
                            for s, index in OKX_SWAPS.items()})
    return parser


def _venue_setups() -> dict[str, _VenueSetup]:
    return {
        "bybit": _VenueSetup(VENUES["bybit"], lambda: bybit.Parser(max_bytes=MAX_FRAME), MAX_FRAME,
                             DEFAULT_MAX_FRAME_BYTES, venue_rules.BybitModel),
        "okx": _VenueSetup(VENUES["okx"], _okx_parser, MAX_FRAME, DEFAULT_MAX_FRAME_BYTES,
                           lambda: venue_rules.OkxModel(dict(OKX_SWAPS))),
        "hyperliquid": _VenueSetup(VENUES["hyperliquid"], lambda: hyperliquid.Parser(
            max_bytes=venue_rules.HYPERLIQUID_MAX_FRAME), venue_rules.HYPERLIQUID_MAX_FRAME,
            venue_rules.HYPERLIQUID_MAX_FRAME, venue_rules.HyperliquidModel),
    }


#: Nesting the oracle still reads when its own reader's stack gives out (the product's reader
#: takes 1,024 levels; either reading of a frame nested that deep is allowed).
_DEEP_READ_LIMIT = 5_000


def _venue_readings(raw: str | bytes, max_bytes: int) -> Readings:
    """:func:`readings`, and for a frame nested past the oracle's own stack, its reading at a
    deeper stack with ``bad_json`` allowed beside it."""
    r = readings(raw, max_bytes)
    if "json_recursion" not in r.triggers:
        return r
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, _DEEP_READ_LIMIT))
    try:
        deeper = readings(raw, max_bytes)
    finally:
        sys.setrecursionlimit(old)
    deeper.rejects.add(BAD_JSON)
    deeper.triggers.discard("json_recursion")
    return deeper


def _answer(a: Any) -> venue_rules.Answer | tuple[str, str]:
    """What ``Dialect.control`` answered, as the oracle words answers."""
    if a is None:
        return None
    if isinstance(a, Pong):
        return ("pong",)
    if isinstance(a, Ack):
        return ("ack", a.request_id, a.error is not None, a.streams)
    return ("not a Control", type(a).__name__)


def _answer_allowed(got: Any, allowed: frozenset[venue_rules.Answer]) -> bool:
    for a in allowed:
        if a is None or got is None or a[0] != "ack" or got[0] != "ack":
            if a == got:
                return True
        elif a[1:3] == got[1:3] and (a[3] is None or a[3] == got[3]):
            return True
    return False


class VenueHarness:
    """Boundary 1 for a venue read through the venue contract, one frame at a time, as the
    websocket state machine hands it over: ``Dialect.control`` (an answer, or None: data),
    then ``VenueIngest.on_ws_frame`` with ``conflate_ms=0``, so every update is published
    and the oracle's points compare exactly. Bybit's merged book is compared with the
    oracle's after every frame (a rejected frame must leave it as it was)."""

    def __init__(self, venue: str, deadline: Deadline | None = None) -> None:
        self.venue = venue
        self.setup = _venue_setups()[venue]
        self.source = self.setup.spec.source
        self.max_frame = self.setup.max_frame
        self.codec = metric_point_codec()
        self.encoder = MetricPointEncoder(self.codec)
        self.deadline = deadline
        self._cache: dict[bytes, Point] = {}
        self._sentinel = venue_sentinel(venue)
        self.reset()

    def reset(self) -> None:
        """Fresh product objects and oracle model, primed (after a crash their state is unknown)."""
        self.target, self.telemetry = RecordingTarget(), Telemetry()
        self.parser = self.setup.parser()
        self.ingest = VenueIngest(self.target, self.encoder, self.telemetry, source=self.source,
                                  parser=self.parser, conflate_ms=0)
        self.model = self.setup.model()
        for raw in venue_primer(self.venue):
            v = self._frame(raw)
            if v.failure is not None or v.outcome != "accepted":
                raise RuntimeError(f"{self.venue} primer not read: {v.failure or v.outcome}")

    # -- observing ------------------------------------------------------------------------

    def _rejections(self) -> Counter[tuple[str, str]]:
        series = self.telemetry.snapshot().get("frames_rejected", {})
        out: Counter[tuple[str, str]] = Counter()
        for key, n in series.items():
            labels = dict(key)
            out[(labels.get("source", ""), labels.get("reason", ""))] += int(n)
        return out

    def _decoded(self, key: bytes, value: bytes) -> Point:
        got = self._cache.get(value)
        if got is None:
            if len(self._cache) > 256:
                self._cache.clear()
            got = self._cache[value] = point(b"", self.codec.decode(value))
        return (key, *got[1:])

    def _feed(self, raw: str | bytes) -> tuple[Observed | str, float]:
        """``on_ws_frame`` once; the observation, or the failure text."""
        total_before = self.telemetry.total("frames_rejected")
        before = self._rejections() if total_before else Counter()
        start, points_before = len(self.target.sent), self.ingest.points
        t0 = time.perf_counter()
        try:
            with (self.deadline or _no_deadline)():
                ret = self.ingest.on_ws_frame(raw, INGEST_MS)
        except InputTimeout as exc:
            return f"hang: {exc}", time.perf_counter() - t0
        except Exception as exc:
            failure = f"crash: on_ws_frame raised {type(exc).__name__}: {str(exc)[:200]}"
            return failure, time.perf_counter() - t0
        elapsed = time.perf_counter() - t0
        sent = self.target.sent[start:]
        del self.target.sent[start:]
        new = self._rejections() - before if self.telemetry.total("frames_rejected") != total_before \
            else Counter()
        wrong = [k for k in new if k[0] != self.source or k[1] not in venue_rules.VENUE_REASONS]
        if wrong:
            return f"mismatch: frames_rejected counted under {wrong[0]}, not a documented reason of " \
                   f"{self.source}", elapsed
        if self.ingest.points - points_before != len(sent) or ret is not None:
            return f"mismatch: VenueIngest.points moved by {self.ingest.points - points_before} for " \
                   f"{len(sent)} points published, on_ws_frame handed back {ret!r}"[:300], elapsed
        pts: Counter[Point] = Counter()
        for key, value in sent:
            try:
                pts[self._decoded(key, value)] += 1
            except DecodeError as exc:
                return f"mismatch: published bytes the codec cannot read: {exc}", elapsed
        return Observed(pts, Counter({reason: n for (_, reason), n in new.items()}), False), elapsed

    def _control(self, raw: str | bytes) -> tuple[Any, str | None]:
        try:
            with (self.deadline or _no_deadline)():
                return _answer(self.setup.spec.dialect.control(raw)), None
        except InputTimeout as exc:
            return None, f"hang: Dialect.control: {exc}"
        except Exception as exc:
            return None, f"crash: Dialect.control raised {type(exc).__name__}: {str(exc)[:200]}"

    def _answers(self, raw: str | bytes) -> frozenset[venue_rules.Answer]:
        r = _venue_readings(raw, self.setup.control_max)
        allowed: set[venue_rules.Answer] = {None} if r.rejects else set()
        for msg in [*(x.value for x in r.values), *([None] if not r.values else [])]:
            allowed |= self.model.answers(raw, msg)
        return frozenset(allowed)

    def _book_problem(self, values: list[Any]) -> str | None:
        """Bybit: the parser's merged book against the oracle's, for the symbols this frame names."""
        if not isinstance(self.model, venue_rules.BybitModel):
            return None
        named = {d["symbol"] for v in values if type(v) is dict and type(d := v.get("data")) is dict
                 and type(d.get("symbol")) is str and len(d["symbol"]) <= 64}
        for symbol in sorted(named | set(BYBIT_BOOK)):
            got = {str(m): bits(x) for m, x in self.parser.book.current(symbol).items()}  # type: ignore[attr-defined]
            want = {str(m): bits(x) for m, x in self.model.current(symbol).items()}
            if got != want:
                return f"mismatch: the book of {symbol} holds {got}, the oracle's {want}"[:400]
        return None

    # -- judging --------------------------------------------------------------------------

    def _frame(self, raw: str | bytes) -> Verdict:
        r = _venue_readings(raw, self.max_frame)
        alts = [venue_rules.Alternative(Reject(frozenset(r.rejects)))] if r.rejects else []
        for reading in r.values:
            alts += [a for a in self.model.alternatives(reading.value, INGEST_MS) if a not in alts]
        answered, failure = self._control(raw)
        allowed = self._answers(raw)
        if failure is None and not _answer_allowed(answered, allowed):
            failure = f"mismatch: Dialect.control answered {answered!r}; allowed {sorted(map(repr, allowed))}"
        got, elapsed = self._feed(raw)
        if isinstance(got, str):
            self.reset()
            return Verdict(got.split(":", 1)[0], failure=failure or got, ms=elapsed * 1000)
        # an answer never reaches the data path live; that path is still judged, not tallied
        v = Verdict("control", failure=failure, ms=elapsed * 1000) if answered is not None else \
            Verdict(_outcome(got), Counter(got.rejected), failure=failure, ms=elapsed * 1000)
        match = next((a for a in alts if matches(a.outcome, got)), None)
        if match is None:
            shown = describe_alternatives([a.outcome for a in alts])
            v.failure = v.failure or f"mismatch: allowed {shown}; got {describe_observed(got)}"
        else:
            self.model.commit(match.effect)
        v.failure = v.failure or self._book_problem([x.value for x in r.values])
        return v

    def run(self, case: Case) -> Verdict:
        """One case (a frame, or a burst judged frame by frame), then the sentinel."""
        frames = case.data if isinstance(case.data, Burst) else (case.data,)
        verdict = Verdict("nothing")
        for raw in frames:
            v = self._frame(raw)
            verdict = Verdict(v.outcome, verdict.reasons + v.reasons, verdict.failure or v.failure,
                              ms=verdict.ms + v.ms)
        after = self._frame(self._sentinel)
        if after.failure is not None or after.outcome != "accepted":
            verdict.failure = verdict.failure or \
                f"mismatch: the valid frame after it went wrong: {after.failure or after.outcome}"
        return verdict


class DecoderHarness:
    """Boundary 3: ``row_decoder(metric_point_codec())``, one long-lived decoder (its caches too)."""

    def __init__(self, deadline: Deadline | None = None) -> None:
        self.deadline = deadline
        self.ref_codec: AvroCodec = metric_point_codec()
        self.reset()
        self._sentinel = records.codec().encode({
            "source": "binance_usdm", "symbol": "BTCUSDT", "metric": Metric.MARK_PRICE,
            "value": 64240.38272864, "event_time": T0, "ingest_time": T0 + 3})
        self._sentinel_row = records.reference(self._sentinel, self.ref_codec)

    def reset(self) -> None:
        self.decode = row_decoder(metric_point_codec())

    def _call(self, data: bytes) -> tuple[records.Result | str, float]:
        t0 = time.perf_counter()
        try:
            with (self.deadline or _no_deadline)():
                got: records.Result = self.decode(data)
        except DecodeError as exc:
            got = (type(exc), exc.reason)
        except InputTimeout as exc:
            self.reset()
            return f"hang: {exc}", time.perf_counter() - t0
        except Exception as exc:
            self.reset()
            return f"crash: {type(exc).__name__}: {str(exc)[:200]}", time.perf_counter() - t0
        return got, time.perf_counter() - t0

    def run(self, case: Case) -> Verdict:
        data: bytes = case.data
        ref = records.reference(data, self.ref_codec)
        spec = records.strict(data)
        seen = records.triggers(data)
        got, elapsed = self._call(data)
        ms = elapsed * 1000
        if isinstance(got, str):
            return Verdict(got.split(":", 1)[0], failure=got, triggers=seen, ms=ms)
        is_row = not isinstance(got[0], type)
        v = Verdict("accepted" if is_row else "rejected",
                    Counter() if is_row else Counter({str(got[1]): 1}), triggers=seen, ms=ms)
        ref_row = not isinstance(ref[0], type)
        if is_row != ref_row or (is_row and not records.same_row(got, ref)) or (not is_row and got != ref):
            v.failure = f"mismatch: reference gave {_show(ref)}, row decoder {_show(got)}"
        elif isinstance(spec, str) == is_row or (
                not isinstance(spec, str) and not records.same_row(got, spec)):
            v.failure = (f"mismatch: the schema and the contract say {_show(spec)}, "
                         f"both decoders {_show(got)}")
        again, _ = self._call(self._sentinel)
        if isinstance(again, str) or not records.same_row(again, self._sentinel_row):
            v.failure = v.failure or f"mismatch: the valid record after it went wrong: {again}"
        return v


def _show(x: Any) -> str:
    if isinstance(x, str):
        return f"reject ({x})"
    if isinstance(x[0], type):
        return f"{x[0].__name__}({x[1]})"
    return f"row {x!r}"[:200]


@dataclass
class Tally:
    """Figures of one boundary over many inputs."""

    name: str
    inputs: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    families: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    known: Counter[str] = field(default_factory=Counter)
    samples: list[tuple[str, Case, Verdict]] = field(default_factory=list)
    #: Failures no known bug accounts for, in all and by kind.
    new: int = 0
    new_kinds: Counter[str] = field(default_factory=Counter)
    #: Failures a known bug accounts for: kind -> bug -> inputs.
    known_kinds: dict[str, Counter[str]] = field(default_factory=dict)
    slowest_ms: float = 0.0
    slowest: str = ""

    def add(self, case: Case, v: Verdict, label: str = "") -> None:
        self.inputs += 1
        self.outcomes[v.outcome] += 1
        self.reasons.update(v.reasons)
        self.families[case.family] += 1
        if v.ms > self.slowest_ms:
            self.slowest_ms, self.slowest = v.ms, f"{case.family} {label}".strip()
        if v.failure is not None:
            kind = v.kind or "?"
            self.failures[kind] += 1
            if v.explained:
                self.known.update(v.triggers)
                self.known_kinds.setdefault(kind, Counter()).update(v.triggers)
            else:
                self.new += 1
                self.new_kinds[kind] += 1
            if len(self.samples) < 12 and (not v.explained or len(self.samples) < 6):
                self.samples.append((label, case, v))

    def report(self) -> str:
        lines = [f"{self.name}: {self.inputs} inputs, outcomes {dict(self.outcomes)}, "
                 f"failures {dict(self.failures)} ({self.new} new), known bugs {dict(self.known)}"]
        for label, case, v in self.samples:
            lines.append(f"  [{label}] {case.family}: {v.failure}\n      input {case.short()}")
        return "\n".join(lines)
