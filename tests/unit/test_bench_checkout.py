"""A compared checkout is measured on its own code, wherever the bench is started from."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from perpstream.bench.clients import Client
from perpstream.bench.venues import checkout_venues

REPO = Path(__file__).resolve().parents[2]


def _checkout(root: Path, venues: list[str]) -> Path:
    """A stand-in checkout whose ``perpstream`` says where it is and which venues it reads."""
    pkg = root / "perpstream"
    (pkg / "producer").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "producer" / "__init__.py").write_text("")
    (pkg / "producer" / "venues.py").write_text(f"VENUES = {dict.fromkeys(venues)!r}\n")
    return root


def test_a_client_imports_its_pythonpath_not_the_directory_the_bench_runs_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = _checkout(tmp_path / "other", ["okx"])
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(REPO)  # started from this checkout, whose perpstream python -m would find first
    c = Client("probe", [sys.executable, "-c", "import perpstream; print(perpstream.__file__)"],
               {"PYTHONPATH": str(other), "PATH": "/usr/bin:/bin"}, work / "probe.log")
    assert c.proc.wait(30) == 0
    assert Path(c.log.read_text().strip()).resolve() == (other / "perpstream" / "__init__.py").resolve()


def test_the_venues_of_a_checkout_are_its_own_from_any_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = _checkout(tmp_path / "other", ["hyperliquid"])
    monkeypatch.chdir(REPO)
    assert checkout_venues(str(other)) == frozenset({"hyperliquid"})
