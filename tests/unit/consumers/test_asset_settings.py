"""``perpstream assets`` and the pipeline: flags over the environment, the engine's
parameters, the topic the pipeline creates, the group beside sink and snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest

from perpstream.cli import build_parser
from perpstream.consumers.assets.cli import settings_from
from perpstream.consumers.assets.engine import AssetEngineConfig
from perpstream.pipeline import QueryServerSettings, build_spec
from perpstream.pipeline.root import CONSUMERS
from perpstream.producer.settings import ProducerSettings
from perpstream.schemas.topics import ASSETS_GROUP, ASSETS_TOPIC, SNAPSHOTS_TOPIC


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERPSTREAM_ASSET_LATENESS_MS", "9000")
    monkeypatch.setenv("PERPSTREAM_ASSET_QUOTES", '["USDT"]')
    s = settings_from(build_parser().parse_args(["assets", "--bootstrap-servers", "k:9092"]))
    assert s.engine_config() == AssetEngineConfig(lateness_ms=9000, quotes=frozenset({"USDT"}))
    assert (s.group_id, s.snapshots_topic, s.assets_topic) == (ASSETS_GROUP, SNAPSHOTS_TOPIC, ASSETS_TOPIC)
    s = settings_from(build_parser().parse_args(
        ["assets", "--bootstrap-servers", "k:9092", "--lateness-ms", "20000", "--quotes", "USDT, USDC",
         "--group-id", "g2"]))
    assert s.engine_config() == AssetEngineConfig(lateness_ms=20000, quotes=frozenset({"USDT", "USDC"}))
    assert s.group_id == "g2"


def test_an_empty_quote_list_is_refused() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["assets", "--quotes", " , "])


def test_the_pipeline_runs_the_asset_group_and_creates_its_topic(tmp_path: Path) -> None:
    root = QueryServerSettings(data_dir=str(tmp_path))
    spec = build_spec(root, ProducerSettings(data_dir=str(tmp_path)), broker="tansu", partitions=None,
                      serve_queries=False)
    assert ASSETS_TOPIC in spec.topics and SNAPSHOTS_TOPIC in spec.topics
    assert spec.assets.group_id == ASSETS_GROUP
    bound = spec.bound("127.0.0.1:1234")
    assert bound.assets.kafka_bootstrap_servers == "127.0.0.1:1234"
    assert bound.assets.clickhouse_dsn == spec.snapshots.clickhouse_dsn
    assert "assets" in CONSUMERS
