"""The report's per-agent figures as SQL over the collector's ClickHouse table: rendering the query.

``agent_figures.sql`` (beside this module) is the query; this module fills in the table and the price
table (``services.pricing.PriceTable``: the file argument, else ``ALPHATRACE_PRICE_TABLE``, else the
shipped ``services/llm_prices.json``), so the SQL prices tokens exactly as the report does, and the
names of before the project namespace (``otel.semconv.LEGACY_NAMES``), so it reads old files as the
report does. The
figures' names are the report's (``docs/report-schema.md``, ``agents.<name>``); ``FIGURES`` lists them.

Reads no environment variables itself (``PriceTable.load`` reads ``ALPHATRACE_PRICE_TABLE``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from string import Template

from otel import semconv
from services.config_error import ConfigError
from services.pricing import PriceTable

SQL_FILE = Path(__file__).with_name("agent_figures.sql")
DEFAULT_DATABASE = "otel"  # collector/clickhouse-config.yaml's default
DEFAULT_TABLE = "otel_traces"  # the exporter's default `traces_table_name`

# The report's keys the query returns per agent (and `agent`), in its column order.
FIGURES = (
    "runs",
    "errors",
    "error_rate",
    "skipped_killed",
    "skipped_stale_data",
    "outcomes",
    "runs_without_outcome",
    "avg_latency_ms",
    "p50_latency_ms",
    "p95_latency_ms",
    "p99_latency_ms",
    "max_latency_ms",
    "runs_without_latency",
    "llm_calls",
    "llm_errors",
    "simulated_llm_calls",
    "unpriced_llm_calls",
    "unpriced_models",
    "tokens_in",
    "tokens_out",
    "tokens_cached",
    "tokens",
    "bad_token_values",
    "cost_usd",
    "llm_operations",
    "alpha_signals",
    "alpha_by_symbol",
    "invalid_signals",
    "kill_switch_errors_seen",
    "first_run_at",
    "last_run_at",
)


def quote_identifier(name: str, what: str) -> str:
    """A database or table name as a ClickHouse identifier (backquoted); empty is a ``ConfigError``."""
    if not name or "\x00" in name:
        raise ConfigError(f"the ClickHouse {what} name must be a non-empty string without NUL characters, not {name!r}")
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def string_literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def float_literal(value: float) -> str:
    """``repr``: the shortest text that reads back as the same double (ClickHouse parses it exactly)."""
    if not math.isfinite(value):  # PriceTable refuses these; never render one
        raise ConfigError(f"price {value!r} is not a finite number")
    return repr(float(value))


def render_agent_figures(database: str = DEFAULT_DATABASE, table: str = DEFAULT_TABLE, prices: PriceTable | None = None) -> str:
    """The per-agent query for ``database``.``table``, priced with ``prices`` (default: ``PriceTable.load()``)."""
    prices = prices if prices is not None else PriceTable.load()
    models = list(prices.models.items())
    return Template(SQL_FILE.read_text(encoding="utf-8")).substitute(
        table=f"{quote_identifier(database, 'database')}.{quote_identifier(table, 'table')}",
        price_models=string_array(name for name, _ in models),
        price_input=f"CAST([{', '.join(float_literal(price.input) for _, price in models)}] AS Array(Float64))",
        price_cached=f"CAST([{', '.join(float_literal(price.cached_input) for _, price in models)}] AS Array(Float64))",
        price_output=f"CAST([{', '.join(float_literal(price.output) for _, price in models)}] AS Array(Float64))",
        legacy_old=string_array(semconv.LEGACY_NAMES),
        legacy_new=string_array(semconv.LEGACY_NAMES.values()),
        supervisor_span_prefixes=string_array((semconv.SUPERVISOR_SPAN_PREFIX, semconv.LEGACY_SUPERVISOR_SPAN_PREFIX)),
    )


def string_array(texts: Iterable[str]) -> str:
    return f"CAST([{', '.join(string_literal(text) for text in texts)}] AS Array(String))"
