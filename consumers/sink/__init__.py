"""The ClickHouse sink: MetricPoints from Kafka into ``<database>.metric_points``."""
