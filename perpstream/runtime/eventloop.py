"""The event loop the producer runs on: uvloop where it is installed, asyncio's own loop
where it is not (Windows, PyPy, a stripped install).

uvloop's loop and TLS transport are written in C (libuv); on the websocket frame path
they take a large share of the producer's CPU per frame off (docs/producer.md, "Frame
path cost"). Nothing in the product depends on which loop runs: both implement the
asyncio API. The ``event_loop`` setting picks one: ``auto`` (uvloop if installed),
``asyncio`` (to rule the loop out when something misbehaves), ``uvloop`` (required).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from types import ModuleType
from typing import Any, TypeVar

from perpstream.errors import ConfigError

uvloop: ModuleType | None
try:  # optional: not built for Windows or PyPy
    import uvloop
except ImportError:  # pragma: no cover - installed wherever the product runs in CI
    uvloop = None

T = TypeVar("T")


def loop_factory(choice: str = "auto") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` for ``auto`` where uvloop is installed and for ``uvloop``;
    None (asyncio's loop) otherwise."""
    if choice == "asyncio":
        return None
    if uvloop is None:
        if choice == "uvloop":
            raise ConfigError("event_loop (PERPSTREAM_EVENT_LOOP) is uvloop, but uvloop "
                              "is not installed here; use auto or asyncio")
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], choice: str = "auto") -> T:
    """``asyncio.run(main)`` on the loop :func:`loop_factory` picks."""
    try:
        factory = loop_factory(choice)
    except ConfigError:
        main.close()  # never awaited: no "coroutine was never awaited" warning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
