"""`python -m meta_supervisor.clickhouse`: prints the SQL, runs it (over the HTTP seam) and prints the
figures, and says in one line what is wrong with its options or the server."""

from __future__ import annotations

import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest

from meta_supervisor.clickhouse.__main__ import main
from meta_supervisor.clickhouse.http import ClickHouseError, HttpClickHouse
from meta_supervisor.clickhouse.queries import FIGURES
from tests.clickhouse_rows import ChdbClickHouse
from tests.fixtures.report.otlp_builder import Llm, Run, lines_for


def test_sql_prints_the_query_for_the_database_table_and_price_table(tmp_path, capsys):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"version": "2026-01-01", "models": {"house-model": {"input": 1.5, "output": 3}}}))
    assert main(["sql", "--database", "traces`db", "--table", "spans", "--price-table", str(prices)], env={}) == 0
    sql = capsys.readouterr().out
    assert "FROM `traces\\`db`.`spans`" in sql
    assert "CAST(['house-model'] AS Array(String)) AS price_models" in sql
    assert "CAST([1.5] AS Array(Float64)) AS price_cached" in sql  # cached_input defaults to input
    code = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    assert re.search(r"\$[a-z_]", code) is None and "'-[0-9]{4}-[0-9]{2}-[0-9]{2}$'" in code  # every placeholder filled


def test_figures_runs_the_query_and_prints_each_agent_s_figures(capsys):
    clickhouse = ChdbClickHouse()
    clickhouse.load(lines_for([Run("momentum", 1, llm=[Llm(tokens_in=1000, tokens_out=100)]), Run("momentum", 2, outcome="error")]))
    assert main(["figures", "--database", clickhouse.database], env={}, client=clickhouse) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == ["momentum"] and list(printed["momentum"]) == list(FIGURES)
    momentum = printed["momentum"]
    assert (momentum["runs"], momentum["errors"], momentum["error_rate"], momentum["llm_calls"]) == (2, 1, 0.5, 1)
    assert momentum["cost_usd"] == round((1000 * 0.15 + 100 * 0.60) / 1e6, 8)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["figures", "--url", "127.0.0.1:8123"], {}, "is not an http:// or https:// URL"),
        (["figures", "--url", "http://default:pw@127.0.0.1:8123"], {}, "not in the URL"),
        (["sql", "--table", ""], {}, "table name must be a non-empty string"),
        (["sql"], {"ALPHATRACE_PRICE_TABLE": "/nonexistent/prices.json"}, "does not exist"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(argv, env, message, capsys):
    assert main(argv, env=env) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


class _FakeClickHouse(BaseHTTPRequestHandler):
    """ClickHouse's HTTP interface as far as the client uses it: a POSTed query, JSONEachRow back."""

    seen: ClassVar[list[dict]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.seen.append(
            {"path": self.path, "user": self.headers["X-ClickHouse-User"], "key": self.headers["X-ClickHouse-Key"], "body": body}
        )
        if "boom" in body:
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"Code: 62. DB::Exception: Syntax error:\nfailed at position 1")
            return
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"agent":"a","n":1}\n{"agent":"b","n":2}\n')

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_server():
    server = HTTPServer(("127.0.0.1", 0), _FakeClickHouse)
    _FakeClickHouse.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=30)


def test_the_http_client_posts_the_query_with_the_password_in_a_header(fake_server):
    client = HttpClickHouse(fake_server, user="reader", password="pw-in-header")
    assert client.rows("SELECT 1") == [{"agent": "a", "n": 1}, {"agent": "b", "n": 2}]
    (request,) = _FakeClickHouse.seen
    assert request["body"] == "SELECT 1" and request["user"] == "reader" and request["key"] == "pw-in-header"
    assert "pw-in-header" not in request["path"] and "readonly=2" in request["path"] and "default_format=JSONEachRow" in request["path"]
    with pytest.raises(
        ClickHouseError, match=r"refused the query \(HTTP 500\): Code: 62. DB::Exception: Syntax error: failed at position 1"
    ):
        client.rows("boom")


def test_an_unreachable_server_is_exit_1_with_one_line(capsys):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["figures", "--url", f"http://127.0.0.1:{port}"], env={}) == 1
    err = capsys.readouterr().err
    assert f"cannot reach ClickHouse at http://127.0.0.1:{port}/" in err and err.count("\n") == 1
