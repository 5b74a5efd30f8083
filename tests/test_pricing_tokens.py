"""Pricing of cache-write and reasoning tokens (each billed once, at its rate), the price table's date
and source per model, and the report's warning when the table is older than its allowed age."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from otel.run_context import RunTelemetry, reset_current_run, set_current_run
from services.ai_analysis import AIAnalysis, LLMSettings, account_llm_call, build_openai_client, usage_counts
from services.config_error import ConfigError
from services.pricing import PriceTable, max_age_days
from tests.llm_transports import ScriptedTransport, chat_completion, ok, verdict_json

TABLE = {
    "version": "2026-01-10",
    "source": "test table",
    "models": {
        "cachy": {
            "input": 3.0,
            "cached_input": 0.3,
            "output": 15.0,
            "cache_write_input": 3.75,
            "date": "2026-01-10",
            "source": "vendor page",
        },
        "thinker": {"input": 1.0, "output": 4.0, "reasoning_output": 8.0},
    },
}


def test_cache_write_and_reasoning_tokens_are_priced_once_at_their_rates():
    prices = PriceTable.from_dict(TABLE)
    # 1,000 input of which 200 cache reads and 300 cache writes; 400 output of which 100 reasoning
    expected = (500 * 3.0 + 200 * 0.3 + 300 * 3.75 + 400 * 15.0) / 1e6
    assert prices.cost("cachy", 1000, 400, 200, 300, 100) == pytest.approx(expected)
    # reasoning at its own rate, the rest of the output at the output rate: never both
    assert prices.cost("thinker", 0, 400, reasoning_output_tokens=100) == pytest.approx((300 * 4.0 + 100 * 8.0) / 1e6)
    # without their own rates: cache writes as input, reasoning as output (no double count)
    shipped = PriceTable.load()
    assert shipped.cost("gpt-4o-mini", 1000, 400, 200, 300, 100) == pytest.approx((800 * 0.15 + 200 * 0.075 + 400 * 0.60) / 1e6)
    # shares larger than their totals are capped
    assert prices.cost("cachy", 100, 10, 80, 80, 50) == pytest.approx((80 * 0.3 + 20 * 3.75 + 10 * 15.0) / 1e6)


def test_usage_counts_read_openai_and_anthropic_compatible_usage():
    openai_usage = {
        "prompt_tokens": 1000,
        "completion_tokens": 400,
        "prompt_tokens_details": {"cached_tokens": 200, "cache_write_tokens": 300},
        "completion_tokens_details": {"reasoning_tokens": 100},
    }
    counts = usage_counts(openai_usage)
    assert (counts.tokens_in, counts.tokens_out, counts.cached, counts.cache_write, counts.reasoning) == (1000, 400, 200, 300, 100)
    anthropic_compatible = {"prompt_tokens": 1000, "completion_tokens": 10, "cache_creation_input_tokens": 600}
    assert usage_counts(anthropic_compatible).cache_write == 600
    assert usage_counts(None).tokens_in == 0


def test_a_real_call_with_cache_writes_and_reasoning_is_priced_on_the_run(telemetry):
    body = chat_completion(verdict_json("SPX"), model="cachy", prompt_tokens=1000, completion_tokens=400, cached_tokens=200)
    body["usage"]["prompt_tokens_details"]["cache_write_tokens"] = 300
    body["usage"]["completion_tokens_details"]["reasoning_tokens"] = 100
    transport = ScriptedTransport(ok(body))
    settings = LLMSettings(provider="openai", model="cachy", base_url="http://llm.test/v1", api_key="sk-test-pricing-0000", max_retries=0)
    llm = AIAnalysis(build_openai_client(settings, transport=transport), settings, PriceTable.from_dict(TABLE))
    run = RunTelemetry("a", "run-1")
    token = set_current_run(run)
    try:
        llm.analyze({"SPX": {"momentum_20d": 0.01}}, "2026-01-12", 5)
    finally:
        reset_current_run(token)
    assert run.cost_usd == pytest.approx((500 * 3.0 + 200 * 0.3 + 300 * 3.75 + 400 * 15.0) / 1e6)
    assert (run.tokens_in, run.tokens_out, run.cached_tokens_in) == (1000, 400, 200)


def test_a_simulated_call_costs_the_run_nothing_and_the_budgets_its_stand_in_price():
    run = RunTelemetry("a", "run-1")
    seen = []
    run.usage_listeners.append(lambda _run, usage: seen.append(usage))
    settings = LLMSettings(provider="simulated", model="gpt-4o-mini")
    account_llm_call(run, {"prompt_tokens": 1000, "completion_tokens": 100}, "gpt-4o-mini", settings, PriceTable.load())
    assert run.cost_usd == 0.0 and run.unpriced_llm_calls == 0
    (usage,) = seen
    assert usage.estimated and usage.spend_usd == pytest.approx((1000 * 0.15 + 100 * 0.60) / 1e6)


def test_every_model_states_its_date_and_source():
    shipped = PriceTable.load()
    for name, price in shipped.models.items():
        assert dt.date.fromisoformat(price.date) and price.source.startswith("https://"), name
    table = PriceTable.from_dict(TABLE)
    assert (table.models["cachy"].date, table.models["cachy"].source) == ("2026-01-10", "vendor page")
    assert (table.models["thinker"].date, table.models["thinker"].source) == ("2026-01-10", "test table")  # the table's
    with pytest.raises(ConfigError, match="model 'x': 'date' must be the ISO date"):
        PriceTable.from_dict({"version": "v1", "models": {"x": {"input": 1, "output": 1, "date": "last spring"}}})
    # a table of before per-model dates still loads, and is warned about when its version is no date
    undated = PriceTable.from_dict({"version": "v1", "models": {"x": {"input": 1, "output": 1}}})
    assert (undated.models["x"].date, undated.models["x"].source) == ("", "")
    assert "states no date for x's prices" in undated.age_warning(dt.date(2026, 1, 1), 90)


def test_the_age_warning_and_its_setting():
    table = PriceTable.from_dict(TABLE)
    assert table.age_warning(dt.date(2026, 4, 10), 90) is None  # 90 days: still fine
    warning = table.age_warning(dt.date(2026, 4, 11), 90)
    assert warning.startswith("the LLM price table (2026-01-10) is 91 days old") and "ALPHATRACE_PRICE_TABLE_MAX_AGE_DAYS" in warning
    assert max_age_days({}) == 90 and max_age_days({"ALPHATRACE_PRICE_TABLE_MAX_AGE_DAYS": "30"}) == 30
    with pytest.raises(ConfigError, match="ALPHATRACE_PRICE_TABLE_MAX_AGE_DAYS"):
        max_age_days({"ALPHATRACE_PRICE_TABLE_MAX_AGE_DAYS": "soon"})


@pytest.mark.parametrize(("max_age", "warned"), [("30", True), ("400", False)])
def test_the_report_warns_in_json_markdown_and_html_when_the_table_is_old(tmp_path, monkeypatch, capsys, max_age, warned):
    from meta_supervisor.cli import report as report_cli
    from tests.test_report_golden import small_input

    traces = tmp_path / "traces.jsonl"
    traces.write_text(small_input())
    table = tmp_path / "prices.json"
    table.write_text(json.dumps(TABLE))
    monkeypatch.setenv("ALPHATRACE_PRICE_TABLE_MAX_AGE_DAYS", max_age)
    argv = ["--input", str(traces), "--out", str(tmp_path / "out"), "--format", "json,md,html", "--no-state", "--quiet"]
    argv += ["--price-table", str(table), "--no-alpha-quality", "--kill-file", str(tmp_path / "killed.json")]
    assert report_cli.main(argv, now=lambda: dt.datetime(2026, 3, 1, tzinfo=dt.UTC)) == 0
    report = json.loads((tmp_path / "out" / "meta_report.json").read_text())
    line = "the LLM price table (2026-01-10) is 50 days old"
    assert report["prices"]["max_age_days"] == int(max_age)
    assert (report["prices"]["warning"] or "").startswith(line) is warned
    assert (line in (tmp_path / "out" / "meta_report.md").read_text()) is warned
    assert (line in (tmp_path / "out" / "meta_report.html").read_text()) is warned
    assert (line in capsys.readouterr().err) is warned
