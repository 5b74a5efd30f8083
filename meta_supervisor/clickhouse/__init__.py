"""The ClickHouse path: the meta report's per-agent figures as SQL over the table the collector's
``clickhouse`` exporter writes (``otel_traces``; collector/clickhouse-config.yaml, docs/clickhouse.md).

* ``agent_figures.sql``: the query (runs, outcomes, latency percentiles, LLM calls, tokens, cost, alpha
  counts per agent, named and rounded as in ``meta_report.json``);
* ``queries``: renders it for a database, table and price table;
* ``http``: the one seam to a ClickHouse server (its HTTP interface), and a client for it;
* ``python -m meta_supervisor.clickhouse``: prints the SQL, or runs it and prints the figures as JSON.

Standalone: imports nothing from the rest of ``meta_supervisor`` (the report's rules are restated in
SQL, and tests/test_clickhouse_sql.py holds the two to the same figures for the same spans).
"""
