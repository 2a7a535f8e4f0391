"""The pipeline of ``perpstream run`` and ``perpstream up``: its spec, the one composition
root that starts and stops it, the data directory's lock, and the run/topics/broker commands.

- :mod:`.spec`: :class:`PipelineSpec`, built once from the command line and the settings;
- :mod:`.root`: :class:`Pipeline` (``start``, ``drain``, ``stop``) under a supervision policy;
- :mod:`.broker`: the local broker handle; :mod:`.lock`: one owner per data directory;
- :mod:`.commands`: ``perpstream run`` (the pipeline, fail fast), ``topics``, ``broker``.
"""

from __future__ import annotations

from perpstream.pipeline.commands import register
from perpstream.pipeline.lock import AlreadyRunningError, already_running, locked_data_dir
from perpstream.pipeline.root import CATCH_UP_TIMEOUT, Pipeline, catch_up
from perpstream.pipeline.spec import (
    CLUSTER_PARTITIONS,
    EMBEDDED_PARTITIONS,
    RUN_FLAGS,
    PipelineSpec,
    QueryServerSettings,
    build_spec,
    new_topic_partitions,
    standard_topics,
)

__all__ = [
    "CATCH_UP_TIMEOUT", "CLUSTER_PARTITIONS", "EMBEDDED_PARTITIONS", "RUN_FLAGS", "AlreadyRunningError",
    "Pipeline", "PipelineSpec", "QueryServerSettings", "already_running", "build_spec", "catch_up",
    "locked_data_dir", "new_topic_partitions", "register", "standard_topics",
]
