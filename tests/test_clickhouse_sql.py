"""The ClickHouse path: the report's per-agent figures as SQL over the collector's `clickhouse` exporter
table equal the file reader's for the same spans.

The spans go into the exporter's own DDL (tests/fixtures/clickhouse, contrib v0.161.0) in ClickHouse's
engine in-process (chDB), mapped as the exporter maps them (tests/clickhouse_rows.py); the file
reader's figures come from the report's public CLI (`build_meta_report.py --format json`)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import scheduler
from meta_supervisor.clickhouse.queries import FIGURES, render_agent_figures
from otel import semconv
from tests.clickhouse_rows import ChdbClickHouse
from tests.fixtures.report.otlp_builder import Llm, Run, lines_for, spans_of
from tests.legacy_files import mixed_lines, old_lines
from tests.native_cases import kill_switch_event, other_span, signal_events, span_lines

REPO = Path(__file__).resolve().parent.parent


def file_report(trace_file: Path, out: Path) -> dict:
    args = [sys.executable, "meta_supervisor/build_meta_report.py", "--input", str(trace_file), "--out", str(out)]
    args += ["--no-state", "--quiet", "--format", "json", "--no-alpha-quality"]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads((out / "meta_report.json").read_text())


def sql_figures(lines: list[str]) -> tuple[dict, int]:
    clickhouse = ChdbClickHouse()
    inserted = clickhouse.load(lines)
    sql = render_agent_figures(clickhouse.database, clickhouse.table)
    return {row["agent"]: {key: row[key] for key in FIGURES} for row in clickhouse.rows(sql)}, inserted


def report_figures(report: dict) -> dict:
    return {agent: {key: figures[key] for key in FIGURES} for agent, figures in report["agents"].items()}


def assert_same_figures(tmp_path: Path, lines: list[str]) -> tuple[dict, dict]:
    """SQL over ClickHouse == the report over the file, for every agent and every figure in FIGURES."""
    trace_file = tmp_path / "traces.jsonl"
    trace_file.write_text("".join(line if line.endswith("\n") else line + "\n" for line in lines))
    report = file_report(trace_file, tmp_path / "report")
    from_sql, inserted = sql_figures(lines)
    from_file = report_figures(report)
    assert sorted(from_sql) == sorted(from_file)
    for agent in from_file:
        sql, report_ = from_sql[agent], from_file[agent]
        differences = {key: (sql[key], report_[key]) for key in FIGURES if sql[key] != report_[key]}
        assert differences == {}, f"{agent}: (sql, report) differ"
    # every row inserted is a span the report read (counted, or dropped as a duplicate)
    assert inserted == report["inputs"]["spans"] + report["inputs"]["duplicate_spans"]
    return from_sql, report


# --- the fleet, through the project's own telemetry path ---------------------------------------------


def test_a_replayed_fleet_gives_the_same_figures_in_sql_as_from_the_file(world, tmp_path, monkeypatch):
    trace_file = tmp_path / "fleet" / "traces.jsonl"
    monkeypatch.setenv("ALPHATRACE_TRACE_FILE", str(trace_file))
    assert scheduler.main(["--replay", "--days", "3", "--config", str(world["config"])]) == 0
    # the kill switch stops the LLM analyst: its next runs are `killed` root spans without children
    world["kill_file"].write_text(json.dumps({"llm_analyst": {"reason": "too expensive", "by": "alice", "at": ""}}))
    assert scheduler.main(["--replay", "--days", "2", "--config", str(world["config"])]) == 0
    lines = trace_file.read_text().splitlines(keepends=True)
    # an exporter retry: the first batches delivered twice (ClickHouse stores them twice)
    lines += lines[:2]

    from_sql, report = assert_same_figures(tmp_path, lines)

    assert report["inputs"]["duplicate_spans"] > 0
    assert set(from_sql) == {"ensemble", "llm_analyst", "mean_reversion", "momentum"}
    analyst = from_sql["llm_analyst"]
    assert analyst["skipped_killed"] > 0 and analyst["llm_calls"] >= analyst["runs"] > 0
    assert analyst["simulated_llm_calls"] == analyst["llm_calls"] and analyst["cost_usd"] is None
    assert all(figures["alpha_signals"] > 0 for figures in from_sql.values())
    assert all(figures["p95_latency_ms"] is not None for figures in from_sql.values())


# --- shapes the fleet does not produce on its own --------------------------------------------------


def _shapes() -> list[str]:
    mini, nano = Llm(tokens_in=1001, tokens_out=33, cached=7), Llm(model="gpt-4.1-nano", tokens_in=17, cached=9)
    runs = [
        Run("alpha", 1, duration_ms=120.0625, llm=[mini, Llm(model="gpt-4o", tokens_in=5, cached=1)]),
        Run("alpha", 2, start_ms=500, duration_ms=80.5, llm=[Llm(model="gpt-4o-mini-2024-07-18", tokens_in=333, cached=3)]),
        Run("alpha", 3, start_ms=900, outcome="error", error_type="RuntimeError", message="boom", llm=[Llm(error=True, tokens_in=0)]),
        Run("alpha", 4, start_ms=1000, outcome="killed", kill_reason="budget", llm=[], totals=False),
        Run("alpha", 5, start_ms=1100, duration_ms=-5, signals=[("SPX", "up"), ("SPX", "down"), ("WTI", "up")]),  # end before start
        Run("beta", 6, duration_ms=0.0005, llm=[Llm(model="mystery-model", tokens_in=10), nano]),
        Run("beta", 7, start_ms=10, duration_ms=3.25, outcome=None, signals=[("SPX", "flat")], invalid=["prob_up outside [0, 1]"]),
        Run("beta", 8, start_ms=20, outcome="stale_data", totals=False),
        # bad token values: more cached than input, negative output
        Run("gamma", 9, llm=[Llm(tokens_in=5, cached=9), Llm(tokens_in=40, tokens_out=-3)], totals=False),
        # LLM calls that name no agent: counted for their run's agent (joined by agent.run_id)
        Run("gamma", 10, start_ms=30, duration_ms=7, llm=[Llm(agent=None, tokens_in=11, cached=5), Llm(agent=None, model="o4-mini")]),
    ]
    lines = lines_for(runs, per_line=3)
    simulated = lines_for([Run("delta", 11, llm=[Llm(), Llm()]), Run("delta", 12, start_ms=40, duration_ms=9.999999)], simulated=True)
    return lines + simulated + lines[:2]  # a retried delivery: two lines stored twice


def test_error_killed_unpriced_simulated_and_duplicate_spans_give_the_same_figures(tmp_path):
    from_sql, report = assert_same_figures(tmp_path, _shapes())
    alpha, beta, gamma, delta = (from_sql[name] for name in ("alpha", "beta", "gamma", "delta"))
    assert report["inputs"]["duplicate_spans"] > 0
    assert alpha["outcomes"] == {"error": 1, "killed": 1, "ok": 3} and alpha["runs_without_latency"] == 1
    assert alpha["cost_usd"] is not None and alpha["alpha_by_symbol"] == {"SPX": {"down": 1, "up": 1}, "WTI": {"up": 1}}
    assert beta["unpriced_models"] == ["mystery-model"] and beta["runs_without_outcome"] == 1 and beta["skipped_stale_data"] == 1
    assert beta["invalid_signals"] == 1
    assert gamma["bad_token_values"] == 2 and gamma["llm_calls"] == 4
    assert delta["simulated_llm_calls"] == 2 and delta["cost_usd"] is None


def test_seeded_random_workloads_give_the_same_latency_percentiles_and_costs(tmp_path):
    """Latencies to the nanosecond and token counts that make half-way cases for the rounding."""
    rng = random.Random(18)
    models = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-nano", "gpt-5-nano", "o4-mini", "unknown-model"]
    runs = []
    for trace in range(1, 401):
        calls = []
        for _ in range(rng.randrange(0, 4)):
            tokens = rng.randrange(0, 4000)
            cached, tokens_out = rng.randrange(0, tokens + 1), rng.randrange(0, 900)
            calls.append(Llm(model=rng.choice(models), tokens_in=tokens, cached=cached, tokens_out=tokens_out))
        outcome = rng.choice(["ok", "ok", "ok", "error", "killed"])
        duration_ms = rng.choice([rng.randrange(1, 10**9) / 1e6, rng.randrange(1, 2000) * 0.0625, rng.randrange(1, 10**4) / 2])
        agent = f"agent-{trace % 7}"
        runs.append(Run(agent, trace, start_ms=trace * 10.0, duration_ms=duration_ms, outcome=outcome, llm=calls, totals=False))
    from_sql, _ = assert_same_figures(tmp_path, lines_for(runs, per_line=5))
    assert len(from_sql) == 7
    assert all(figures["p99_latency_ms"] is not None and figures["cost_usd"] is not None for figures in from_sql.values())


# --- the SQL and the schema -----------------------------------------------------------------------


def test_the_sql_reads_the_keys_the_report_reads_in_the_same_order():
    sql = render_agent_figures()
    for keys in (semconv.LLM_MODEL_KEYS, semconv.INPUT_TOKEN_KEYS, semconv.OUTPUT_TOKEN_KEYS, semconv.CACHED_TOKEN_KEYS):
        positions = [sql.index(f"'{key}'") for key in keys]
        assert positions == sorted(positions), keys
    for key in (semconv.GEN_AI_AGENT_NAME, semconv.AGENT_RUN_ID, semconv.AGENT_RUN_OUTCOME, semconv.RESOURCE_LLM_SIMULATED):
        assert f"'{key}'" in sql
    for name in (semconv.EVENT_ALPHA_SIGNAL, semconv.EVENT_ALPHA_SIGNAL_INVALID, semconv.ALPHA_SYMBOL, semconv.ALPHA_DIRECTION):
        assert f"'{name}'" in sql


def test_the_exporter_schema_is_created_with_its_ttl_and_read_as_the_sql_expects():
    clickhouse = ChdbClickHouse(ttl_days=90)
    created = clickhouse.execute(f"SHOW CREATE TABLE {clickhouse.database}.otel_traces")
    assert "TTL toDateTime(Timestamp) + toIntervalDay(90)" in created
    columns = dict(line.split("\t")[:2] for line in clickhouse.execute(f"DESCRIBE TABLE {clickhouse.database}.otel_traces").splitlines())
    assert columns["SpanAttributes"] == columns["ResourceAttributes"] == "Map(LowCardinality(String), String)"
    assert columns["Events.Name"] == "Array(LowCardinality(String))"
    assert columns["Duration"] == "UInt64" and columns["Timestamp"] == "DateTime64(9)"
    # an empty table: no agents, no error
    assert clickhouse.rows(render_agent_figures(clickhouse.database, clickhouse.table)) == []


def test_a_file_of_before_the_namespace_gives_the_same_figures_as_one_written_now(tmp_path):
    """Old names (``agent.run_id``, ``alpha.signal``, ``supervisor.run``, ``kill_switch.error``):
    the query renames them as it reads, as the report does, for an old file and for one mixing both."""
    supervisor = other_span(
        90, 1, semconv.SPAN_SUPERVISOR_DECIDE, {semconv.GEN_AI_AGENT_NAME: "alpha"}, events=signal_events([("SPX", "up")])
    )
    *children, root = spans_of(Run("beta", 91, start_ms=50))
    root["events"] = [kill_switch_event()]
    lines = _shapes() + span_lines([supervisor, *children, root])
    for name in ("now", "old", "mixed"):
        (tmp_path / name).mkdir()
    now, _ = assert_same_figures(tmp_path / "now", lines)
    old, _ = assert_same_figures(tmp_path / "old", old_lines(lines))
    mixed, _ = assert_same_figures(tmp_path / "mixed", mixed_lines(lines))
    assert old == now and mixed == now
    assert now["beta"]["kill_switch_errors_seen"] == 1 and now["alpha"]["alpha_signals"] == 3  # not the supervisor's span's
