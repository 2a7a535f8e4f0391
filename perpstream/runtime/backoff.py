"""Jittered exponential backoff, one generator for every reconnect and retry.

Shaped like python-websockets' reconnect delays: the first delay is random
(so a fleet restarted together does not reconnect in lockstep), each next one
grows by ``factor`` up to ``cap``. The caller makes a new generator after a
good connection, which is what "resets after a good connection" means. Tests
inject a generator with tiny delays.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

BackoffFactory = Callable[[], Iterator[float]]


def backoff(
    initial: float = 1.0, factor: float = 1.618, cap: float = 60.0, *, rng: random.Random | None = None,
) -> Iterator[float]:
    """Endless delays: ``uniform(0, initial)``, then ``initial``, ``initial*factor``...,
    each with ±20 % jitter, never above ``cap``."""
    rnd = rng or random.Random()
    yield rnd.uniform(0, initial)
    delay = initial
    while True:
        yield min(cap, delay * rnd.uniform(0.8, 1.2))
        delay = min(cap, delay * factor)


def factory(initial: float = 1.0, factor: float = 1.618, cap: float = 60.0) -> BackoffFactory:
    return lambda: backoff(initial, factor, cap)
