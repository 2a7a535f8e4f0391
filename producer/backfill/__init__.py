"""``perpstream backfill``: a venue's history over REST, published as MetricPoints.

``--venue binance`` (the default) is described below; ``bybit``, ``okx`` and
``hyperliquid`` are one small module each (:mod:`.bybit`, :mod:`.okx`,
:mod:`.hyperliquid`: a :class:`~.spec.VenueHistory` of what the venue serves
and how it pages), run by :mod:`.venue_fetch` with the same guarantees:
checkpoints per venue, symbol and metric, the same identities on every run,
the venue's REST budget, failures sorted (docs/producer.md, ``perpstream
backfill``).

Per symbol, the range ``[since, until)`` is cut into chunks of
:data:`~producer.history.KLINE_LIMIT` minutes. For each chunk it fetches the
1 m mark and index klines (one page each), the open-interest history and the
settled funding, merges them into one list in event-time order, publishes it
through the producer's :class:`~producer.publisher.Publisher` (same topic,
same key = symbol, same encoder as live data), waits until Kafka has
acknowledged all of it, and only then records the chunk in the symbol's
checkpoint (``<data_dir>/backfill/<topic>/<symbol>.json``, written
atomically). So:

- **resume**: a run interrupted at any point (SIGINT, a crash, a fault) and
  started again with the same range starts each symbol after its last
  acknowledged chunk; whatever was published after it is published again, and
  the identity dedup downstream counts it once;
- **idempotent**: a second run of a range already delivered sends nothing;
  with ``--no-resume`` it sends everything again and ``FINAL`` still counts
  each point once (same identities, same values: only closed klines are used);
- **order**: within a symbol the points reach the topic in event-time order,
  before any live point the same process publishes afterwards
  (:func:`run_backfill` returns only when everything is acknowledged), which
  is what lets the snapshot consumer start warm (docs/snapshots.md).

Requests go through one :class:`~producer.rest.RestGate` (the open-interest
poller's: the weight budget per minute, 429/418/403 pauses honoured); the
funding and open-interest-history endpoints have their own request pools at
Binance (500 and 1,000 per 5 minutes) and are spaced to stay inside a share of
them too. Retryable failures are retried with backoff, at most
:data:`MAX_ATTEMPTS` times per request; a symbol Binance refuses (400) fails
that symbol and the others go on; anything permanent stops the run. The exit
status is 0 when every symbol was delivered, 1 with one line per failure
otherwise, 130 when interrupted (the checkpoint holds what was delivered).

The package, by concern: :mod:`.plan` (the range, the chunks, the checkpoint),
:mod:`.requests` (one request retried, paged, interruptible, paced),
:mod:`.fetch` (the fetch-and-deliver loop over symbols and chunks),
:mod:`.spec`, :mod:`.venues` and :mod:`.venue_fetch` (the other venues),
:mod:`.run` (a whole run: the Kafka publisher, the REST session, the stop)
and :mod:`.command` (the ``perpstream backfill`` command).
"""

from perpstream.producer.backfill.command import backfill_main, register
from perpstream.producer.backfill.fetch import EXIT_INTERRUPTED, Backfill, BackfillResult
from perpstream.producer.backfill.plan import Checkpoint, pair_of, resolve_range
from perpstream.producer.backfill.run import backfill, run, run_backfill
from perpstream.producer.backfill.venues import HISTORIES, VENUE_CHOICES, VenuePlan, venue_plan

__all__ = [
    "EXIT_INTERRUPTED", "HISTORIES", "VENUE_CHOICES", "Backfill", "BackfillResult", "Checkpoint", "VenuePlan",
    "backfill", "backfill_main", "pair_of", "register", "resolve_range", "run", "run_backfill", "venue_plan",
]
