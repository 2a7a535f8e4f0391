"""The process runtime every long-running perpstream command shares.

Settings base and configuration errors, telemetry (counters, Prometheus
endpoint, structured logs), signal handling, backoff delays and GC tuning.
It knows nothing of Binance, Kafka topics or ClickHouse tables: the roles
(``producer``, ``consumers``) build on it and on the contract (``schemas``);
the shell (``perpstream``) builds on the roles.
"""
