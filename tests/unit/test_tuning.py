"""Start-up tuning of the garbage collector (``gc_threshold``)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from perpstream.runtime.settings import CommonSettings
from perpstream.runtime.tuning import tune_gc


@pytest.fixture
def gc_state() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_threshold_applies_and_startup_objects_are_frozen(gc_state: None) -> None:
    _, t1, t2 = gc.get_threshold()
    tune_gc(50_000)
    assert gc.get_threshold() == (50_000, t1, t2)
    assert gc.get_freeze_count() > 0  # start-up objects are skipped by every later collection


def test_zero_keeps_the_interpreter_defaults(gc_state: None) -> None:
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    tune_gc(0)
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen


def test_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CommonSettings().gc_threshold == 50_000
    monkeypatch.setenv("PERPSTREAM_GC_THRESHOLD", "0")
    assert CommonSettings().gc_threshold == 0
    monkeypatch.setenv("PERPSTREAM_GC_THRESHOLD", "-1")
    with pytest.raises(ValueError, match="gc_threshold"):
        CommonSettings()
