"""Hostile inputs for every boundary of the pipeline, and their oracles.

- :mod:`perpstream.fakes.hostile.frames`: websocket frames, open-interest bodies and
  exchangeInfo objects for the producer (boundaries 1 and 2);
  :mod:`perpstream.fakes.hostile.records`: MetricPoint records for the consumers'
  row decoder (boundary 3) and the topic test (boundary 4).
- :mod:`perpstream.fakes.hostile.jsontext`, :mod:`perpstream.fakes.hostile.binance_rules`: the
  oracle's own reading of a frame and of the producer's contract.
- :mod:`perpstream.fakes.hostile.harness`: feeds one input to the product's entry point,
  judges it, then checks that a valid input after it still goes through.
- :mod:`perpstream.fakes.hostile.known_bugs`: bugs found and reported, each pinned by a
  strict xfail test.

Generators are pure functions of a ``random.Random``: the unit tests drive
them with hypothesis (``st.randoms``, derandomized, so failures shrink), the
benchmark (``python -m benchmarks.hostile_bench``) with seeded generators for
100,000+ inputs per boundary.

They ship beside the fake exchange, not under ``tests/``, because the
benchmark runs them too: the generators, the oracles, the harness and the
list of known bugs are all either of them needs, and none of it imports pytest
or hypothesis. What only the tests need (hypothesis strategies, the xfail
marks) stays in ``tests/``. Nothing in the product imports this package
(docs/layout.md).
"""
