"""The command-line shell and the local infrastructure (embedded broker,
embedded ClickHouse, topic creation) shared by the CLI, tests and benchmarks."""
