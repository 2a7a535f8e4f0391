"""Snapshot consumer group: rolling per-symbol market context (MarketSnapshot).

``engine`` is the pure window aggregation, ``store`` the ClickHouse tables and
state recovery reads, ``app`` the consumer-group member, ``cli`` the commands.
"""
