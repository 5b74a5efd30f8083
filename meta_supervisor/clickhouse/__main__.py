"""``python -m meta_supervisor.clickhouse``: the report's per-agent figures from ClickHouse.

    python -m meta_supervisor.clickhouse sql      # print the SQL (paste it into clickhouse-client, Grafana, ...)
    python -m meta_supervisor.clickhouse figures  # run it over HTTP, print {agent: figures} as JSON

Options: ``--database`` (else ``ALPHATRACE_CLICKHOUSE_DATABASE``, else ``otel``, as in
collector/clickhouse-config.yaml), ``--table`` (``otel_traces``), ``--price-table FILE`` (else
``ALPHATRACE_PRICE_TABLE``, else services/llm_prices.json); for ``figures``: ``--url`` (else
``ALPHATRACE_CLICKHOUSE_HTTP_URL``, else ``http://127.0.0.1:8123``), ``--user`` (else
``ALPHATRACE_CLICKHOUSE_USERNAME``, else ``default``); the password only from
``ALPHATRACE_CLICKHOUSE_PASSWORD`` (never an argument: it would show in ``ps``).

Exit status: 0, 1 when ClickHouse refused the query or could not be reached, 2 for a bad option
(one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from meta_supervisor.clickhouse.http import ClickHouse, ClickHouseError, HttpClickHouse
from meta_supervisor.clickhouse.queries import DEFAULT_DATABASE, DEFAULT_TABLE, FIGURES, render_agent_figures
from services.config_error import ConfigError
from services.pricing import DEFAULT_PRICE_TABLE, ENV_PRICE_TABLE, PriceTable

ENV_URL = "ALPHATRACE_CLICKHOUSE_HTTP_URL"
ENV_DATABASE = "ALPHATRACE_CLICKHOUSE_DATABASE"
ENV_USERNAME = "ALPHATRACE_CLICKHOUSE_USERNAME"
ENV_PASSWORD = "ALPHATRACE_CLICKHOUSE_PASSWORD"
DEFAULT_URL = "http://127.0.0.1:8123"


def agent_figures(client: ClickHouse, sql: str) -> dict[str, dict[str, Any]]:
    """{agent: figures} from the rows of ``agent_figures.sql`` (agents sorted, keys in ``FIGURES`` order)."""
    return {row["agent"]: {key: row[key] for key in FIGURES} for row in client.rows(sql)}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m meta_supervisor.clickhouse", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("sql", "figures"), help="print the SQL, or run it and print the figures")
    parser.add_argument("--database", help=f"database (env {ENV_DATABASE}, default {DEFAULT_DATABASE})")
    parser.add_argument("--table", default=DEFAULT_TABLE, help=f"traces table (default {DEFAULT_TABLE})")
    parser.add_argument("--price-table", help="price table JSON (env ALPHATRACE_PRICE_TABLE, default services/llm_prices.json)")
    parser.add_argument("--url", help=f"ClickHouse HTTP interface (env {ENV_URL}, default {DEFAULT_URL})")
    parser.add_argument("--user", help=f"user (env {ENV_USERNAME}, default 'default'); the password: env {ENV_PASSWORD}")
    return parser


def _url(raw: str) -> str:
    parts = urllib.parse.urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"ClickHouse URL {raw!r} is not an http:// or https:// URL (e.g. {DEFAULT_URL})")
    if parts.password is not None:
        raise ConfigError(f"put the ClickHouse password in {ENV_PASSWORD}, not in the URL")
    return raw


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None, client: ClickHouse | None = None) -> int:
    """``client`` replaces the HTTP client (tests); ``env`` the environment."""
    env = os.environ if env is None else env
    args = _parser().parse_args(argv)
    try:
        prices = PriceTable.load(args.price_table or env.get(ENV_PRICE_TABLE) or DEFAULT_PRICE_TABLE)
        sql = render_agent_figures(args.database or env.get(ENV_DATABASE) or DEFAULT_DATABASE, args.table, prices)
        if args.command == "sql":
            print(sql, end="")
            return 0
        if client is None:
            url = _url(args.url or env.get(ENV_URL) or DEFAULT_URL)
            client = HttpClickHouse(url, args.user or env.get(ENV_USERNAME) or "default", env.get(ENV_PASSWORD, ""))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        figures = agent_figures(client, sql)
    except ClickHouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(figures, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
