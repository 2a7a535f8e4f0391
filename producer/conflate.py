"""What reaches the publisher of a fast venue: one point per key per interval, and
funding intervals only when they are news.

Bybit pushes a ticker every 100 ms and OKX a mark price every 200 ms; the
contract's readers (ClickHouse rows, snapshot windows) want at most one value per
second per (source, symbol, metric) by default. :class:`Conflator` keeps, for
each key and each whole interval of *event time*, the last value the venue sent
in it, and publishes that value with its own event time: what is stored is
always something the venue said, never an average or a re-stamped value. A
stream that is already one point per interval (Binance's ``markPrice@1s``)
passes unchanged. :class:`FundingIntervals` publishes a symbol's
``funding_interval_hours`` when the symbol is first seen and when the interval
changes, not with every ticker that repeats it. Both are pure: no clock, no
I/O; the caller passes time in. docs/producer.md, "Normalisation".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from perpstream.producer.venue import Record
from perpstream.schemas.models import Metric

FUNDING_INTERVAL_HOURS: Final = Metric.FUNDING_INTERVAL_HOURS

#: Default grace after an interval ends before :meth:`Conflator.due` releases its value:
#: covers the venue's push delay and the offset between its clock and ours.
DEFAULT_GRACE_MS: Final = 500

Key = tuple[str, str, str]


class Conflator:
    """The last value per (source, symbol, metric) and ``conflate_ms`` interval of event time.

    Interval (bucket) of a record: ``event_time // conflate_ms``. For each key and
    bucket the record with the largest event time is published (equal event
    times: the one received last), unchanged. The value of a bucket is known only
    once the bucket is over, so each key holds at most one pending record, which
    is released when

    - a record of the same key in a later bucket arrives (:meth:`add`), or
    - the bucket ended at least ``grace_ms`` before the clock the caller passes
      (:meth:`due`), or
    - the producer stops (:meth:`drain`) or the symbol is delisted (:meth:`forget`).

    A record whose bucket is older than the key's pending bucket or not newer than
    the bucket last released for the key is *late*: it is dropped and counted in
    :attr:`late` (the ``conflate_late`` counter), not published. Publishing it
    would put a second value in a bucket already published, against the one
    point per interval readers rely on; the key has a newer (or as new) value
    published or pending already, so latest-value readers miss nothing; and the
    usual late record is the same frame seen twice while a connection is
    replaced, which the store would deduplicate anyway. A steady ``late`` count
    says ``grace_ms`` is shorter than the venue's delay.

    ``conflate_ms = 0`` publishes every record as it comes. Memory: one pending
    record and one bucket number per key seen, released by :meth:`forget`.
    Counts: ``updates_in == points_out + held + late + superseded``.
    """

    def __init__(self, conflate_ms: int, grace_ms: int = DEFAULT_GRACE_MS) -> None:
        if conflate_ms < 0 or grace_ms < 0:
            raise ValueError("conflate_ms and grace_ms must be >= 0")
        self.conflate_ms = conflate_ms
        self.grace_ms = grace_ms
        #: Records given to :meth:`add`.
        self.updates_in = 0
        #: Records released (published).
        self.points_out = 0
        #: Late records dropped (see the class doc).
        self.late = 0
        #: Records replaced by a later one of the same key and bucket.
        self.superseded = 0
        # key -> the pending record, or None once it is released
        self._pending: dict[Key, Record | None] = {}
        # key -> the last bucket released for it (late records are at or below it)
        self._released: dict[Key, int] = {}
        # bucket -> keys pending in it, in the order their bucket began (due() releases by bucket)
        self._by_bucket: dict[int, dict[Key, None]] = {}
        #: Records pending now (one per key at most).
        self.held = 0

    def add(self, records: Iterable[Record]) -> list[Record]:
        """Take the venue's records; return those whose bucket this closes, in arrival order."""
        if self.conflate_ms == 0:
            out = list(records)
            self.updates_in += len(out)
            self.points_out += len(out)
            return out
        # the venue's every update passes here (Bybit: 10 a second a symbol): locals, the
        # common case (a later value in the held value's interval) first
        out = []
        c, pending_of = self.conflate_ms, self._pending
        n = superseded = 0
        for r in records:
            n += 1
            key: Key = (r["source"], r["symbol"], r["metric"])
            et = r["event_time"]
            bucket = et // c
            pending = pending_of.get(key)
            if pending is None:
                if bucket <= self._released.get(key, bucket - 1):
                    self.late += 1
                else:
                    self._hold(key, r, bucket)
                continue
            held_et = pending["event_time"]
            held_bucket = held_et // c
            if bucket == held_bucket:
                if et >= held_et:
                    pending_of[key] = r
                superseded += 1
            elif bucket > held_bucket:
                out.append(self._release(key, held_bucket))
                self._hold(key, r, bucket)
            else:
                self.late += 1
        self.updates_in += n
        self.superseded += superseded
        return out

    def due(self, now_ms: int) -> list[Record]:
        """Release the records of buckets that ended at least ``grace_ms`` before ``now_ms``.

        ``now_ms`` is the wall clock of a live producer; a replay passes the
        ingest time of the frame it is at, so its buckets close on its own clock."""
        if self.conflate_ms == 0:
            return []
        # bucket b covers [b * c, (b + 1) * c); it is due once (b + 1) * c + grace <= now
        last_due = (now_ms - self.grace_ms) // self.conflate_ms - 1
        return self._release_buckets(b for b in self._by_bucket if b <= last_due)

    def next_due(self) -> int | None:
        """The earliest ``now_ms`` at which :meth:`due` releases something (None: nothing held),
        for a caller that sleeps until then."""
        if not self._by_bucket:
            return None
        return (min(self._by_bucket) + 1) * self.conflate_ms + self.grace_ms

    def drain(self) -> list[Record]:
        """Release everything held (at stop: nothing the venue sent is lost)."""
        return self._release_buckets(list(self._by_bucket))

    def forget(self, symbols: Iterable[str], source: str | None = None) -> list[Record]:
        """Drop the state of ``symbols`` (of ``source`` only, if given), returning their
        pending records to publish: a delisted symbol's last values are still data."""
        names = set(symbols)
        gone = [k for k in self._pending if k[1] in names and (source is None or k[0] == source)]
        out: list[Record] = []
        for key in gone:
            pending = self._pending.pop(key)
            self._released.pop(key, None)
            if pending is not None:
                bucket = pending["event_time"] // self.conflate_ms
                self._unindex(key, bucket)
                self.points_out += 1
                out.append(pending)
        return out

    def _hold(self, key: Key, r: Record, bucket: int) -> None:
        self._pending[key] = r
        self._by_bucket.setdefault(bucket, {})[key] = None
        self.held += 1

    def _release(self, key: Key, bucket: int) -> Record:
        r = self._pending[key]
        assert r is not None
        self._pending[key] = None
        self._released[key] = bucket
        self._unindex(key, bucket)
        self.points_out += 1
        return r

    def _unindex(self, key: Key, bucket: int) -> None:
        self.held -= 1
        keys = self._by_bucket[bucket]
        del keys[key]
        if not keys:
            del self._by_bucket[bucket]

    def _release_buckets(self, buckets: Iterable[int]) -> list[Record]:
        out: list[Record] = []
        for b in sorted(buckets):
            out.extend(self._release(key, b) for key in list(self._by_bucket[b]))
        return out


def interval_record(source: str, symbol: str, hours: float, event_time: int, ingest_time: int) -> Record:
    """A ``funding_interval_hours`` point: hours between two settlements of ``symbol``."""
    return {"source": source, "symbol": symbol, "metric": FUNDING_INTERVAL_HOURS, "value": float(hours),
            "event_time": event_time, "ingest_time": ingest_time}


class FundingIntervals:
    """Publishes ``funding_interval_hours`` when a symbol is first seen and when it changes.

    Venues repeat the interval in every ticker (Bybit) or answer it on every
    poll (Binance ``fundingInfo``); the interval changes a few times a year, and
    annualising funding needs only its changes. Keyed by
    (source, symbol); :meth:`forget` a delisted symbol so that a relisting
    publishes its interval again."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], float] = {}
        #: Interval points passed on / held back as repeats.
        self.published = 0
        self.repeats = 0

    def observe(self, records: Iterable[Record]) -> list[Record]:
        """Every record, except ``funding_interval_hours`` points that repeat the value
        last passed on for their (source, symbol)."""
        out: list[Record] = []
        for r in records:
            if r["metric"] == FUNDING_INTERVAL_HOURS:
                key = (r["source"], r["symbol"])
                value = r["value"]
                if key in self._last and self._last[key] == value:
                    self.repeats += 1
                    continue
                self._last[key] = value
                self.published += 1
            out.append(r)
        return out

    def last(self, source: str, symbol: str) -> float | None:
        """The interval last passed on for ``symbol`` (None: none yet)."""
        return self._last.get((source, symbol))

    def forget(self, symbols: Iterable[str], source: str | None = None) -> None:
        """Forget ``symbols`` (of ``source`` only, if given)."""
        names = set(symbols)
        for key in [k for k in self._last if k[1] in names and (source is None or k[0] == source)]:
            del self._last[key]
