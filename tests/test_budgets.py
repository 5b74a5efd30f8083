"""Budgets (issue 16): a call that would break a budget is not made and the run ends ``budget_exceeded``
with the budget's name, limit and spend on its root span; a daily budget holds across a scheduler
restart; two runs of the same agent at the edge of a budget cannot both pass (threads, processes),
their first runs included (a call is estimated from its request before it is made, never at $0);
run-cost, run-token and fleet budgets; a corrupt ledger fails closed; an unpriced model fails closed
for a USD budget; one alert per agent, budget and day."""

from __future__ import annotations

import json
import multiprocessing
import threading
from datetime import date
from pathlib import Path

import httpx2
import pytest

import scheduler
from otel import semconv
from otel.run_context import CallEstimate, LLMUsage, RunStopped, RunTelemetry
from services.ai_analysis import build_messages
from services.alerts import ALERT_BUDGET_EXCEEDED, AlertSink
from services.budget_limits import AgentBudget
from services.budgets import FleetBudgets
from services.call_estimate import DEFAULT_OUTPUT_TOKENS, estimate_call
from services.clock import ReplayClock
from services.config_error import ConfigError
from services.fleet_config import parse_fleet_config
from services.pricing import PriceTable
from services.simulated_llm import SIMULATED_BASE_URL, SimulatedLLMTransport
from services.spend_ledger import FileSpendLedger, LedgerUnavailable
from tests import budget_agents
from tests.budget_agents import FEATURES
from tests.fleet_fixtures import build_test_fleet, root_spans

FLEET = """
[fleet]
universe = ["SPX", "WTI"]
{fleet_budget}

[replay]
start = "{start}"

[llm]
provider = "simulated"
model = "{model}"

[agents.spender]
module = "tests.budget_agents"
interval_seconds = 60
params = {{ calls = {calls} }}
{budget}
{other}
"""


class RecordedAlerts(AlertSink):
    def __init__(self) -> None:
        self.sent = []

    def send(self, alert) -> None:
        self.sent.append(alert)


def one_call(as_of: str, model: str = "gpt-4o-mini") -> tuple[float, int]:
    """What one of the spender's calls costs (at gpt-4o-mini's price) and its tokens, from the
    simulated model's own answer to the same request."""
    body = {"model": model, "messages": build_messages(FEATURES, as_of, 5)}
    response = SimulatedLLMTransport().handle_request(httpx2.Request("POST", f"{SIMULATED_BASE_URL}/chat/completions", json=body))
    usage = response.json()["usage"]
    cost = PriceTable.load().cost("gpt-4o-mini", usage["prompt_tokens"], usage["completion_tokens"])
    return cost, usage["prompt_tokens"] + usage["completion_tokens"]


def first_estimate(as_of: str, model: str = "gpt-4o-mini") -> tuple[float, int]:
    """What the check estimates one of the spender's calls at before it is made (its request's
    input tokens and the default output allowance, at the model's price) and its tokens."""
    estimate = estimate_call(build_messages(FEATURES, as_of, 5), {})
    assert estimate.tokens_out == DEFAULT_OUTPUT_TOKENS  # the analyst's request sets no max_tokens
    return PriceTable.load().cost(model, estimate.tokens_in, estimate.tokens_out) or 0.0, estimate.tokens


@pytest.fixture
def day(world):
    return world["calendar"][70]


@pytest.fixture
def call(day):
    return one_call(day.isoformat())


@pytest.fixture
def estimate(day, call):
    usd, tokens = first_estimate(day.isoformat())
    assert usd > 2 * call[0] and tokens > 2 * call[1]  # the output allowance is above what the analyst answers
    return usd, tokens


def configure(world, budget: str = "", fleet_budget: str = "", calls: int = 1, model: str = "gpt-4o-mini", other: bool = False) -> None:
    other_table = '[agents.other]\nmodule = "tests.budget_agents"\ninterval_seconds = 60\n' if other else ""
    world["config"].write_text(
        FLEET.format(
            start=world["calendar"][70].isoformat(),
            fleet_budget=fleet_budget,
            model=model,
            calls=calls,
            budget=budget,
            other=other_table,
        )
    )


def run_fleet(world, telemetry, day, cycles: int = 1, **options) -> SimulatedLLMTransport:
    """A new scheduler over the world's config (as after a restart) running ``cycles`` cycles on
    ``day``; returns its model's transport, which counts the requests that reached it."""
    transport = SimulatedLLMTransport()
    fleet = build_test_fleet(world, telemetry, transport, **options)
    for _ in range(cycles):
        fleet.run_cycle(day)
    fleet.shutdown()
    return transport


def runs_of(span_exporter, agent: str = "spender"):
    return [s for s in root_spans(span_exporter) if s.attributes[semconv.GEN_AI_AGENT_NAME] == agent]


def budget_attributes(span) -> dict:
    keys = (
        semconv.AGENT_RUN_OUTCOME,
        semconv.RUN_STOPPED_BEFORE,
        semconv.BUDGET_NAME,
        semconv.BUDGET_LIMIT,
        semconv.BUDGET_SPENT,
        semconv.BUDGET_UNIT,
        semconv.BUDGET_NEXT_CALL,
        semconv.BUDGET_ESTIMATED,
        semconv.RUN_LLM_CALLS,
    )
    return {key: span.attributes[key] for key in keys if key in span.attributes}


def test_a_daily_budget_holds_across_a_scheduler_restart(world, telemetry, span_exporter, day, call, estimate):
    cost, tokens = call
    limit = estimate[0] + cost * 1.5  # two calls spent and a third's estimate pass it
    configure(world, budget=f"budget = {{ day_cost_usd = {limit!r} }}")
    alerts = RecordedAlerts()
    assert run_fleet(world, telemetry, day, cycles=4, alerts=alerts).requests == 2  # the third run's call would have passed the budget
    outcomes = [s.attributes[semconv.AGENT_RUN_OUTCOME] for s in runs_of(span_exporter)]
    assert outcomes == ["ok", "ok", "budget_exceeded", "budget_exceeded"]
    stopped = runs_of(span_exporter)[2]
    assert budget_attributes(stopped) == {
        semconv.AGENT_RUN_OUTCOME: semconv.OUTCOME_BUDGET_EXCEEDED,
        semconv.RUN_STOPPED_BEFORE: semconv.STEP_LLM_CALL,
        semconv.BUDGET_NAME: semconv.BUDGET_DAY_COST,
        semconv.BUDGET_LIMIT: limit,
        semconv.BUDGET_SPENT: pytest.approx(2 * cost),
        semconv.BUDGET_UNIT: semconv.BUDGET_UNIT_USD,
        semconv.BUDGET_NEXT_CALL: pytest.approx(estimate[0]),  # the request's estimate, above the largest call
        semconv.BUDGET_ESTIMATED: True,  # a simulated fleet: its spend is priced as gpt-4o-mini
        semconv.RUN_LLM_CALLS: 0,
    }
    assert "day_cost" in stopped.attributes[semconv.RUN_STOP_REASON]
    # one alert for the agent, budget and day, however many runs it stops
    assert [(a.cause, a.agent, a.dedup) for a in alerts.sent] == [(ALERT_BUDGET_EXCEEDED, "spender", f"day_cost:{day.isoformat()}")]
    assert alerts.sent[0].figures["limit"] == limit

    ledger_file = world["tmp"] / "spend" / f"spend-{day.isoformat()}.json"
    entry = json.loads(ledger_file.read_text())["agents"]["spender"]
    assert entry["calls"] == 2 and entry["tokens"] == 2 * tokens
    assert entry["usd"] == pytest.approx(2 * cost) and entry["estimated_usd"] == pytest.approx(2 * cost)

    # A restart: a new scheduler over the same ledger. No request reaches the model.
    span_exporter.clear()
    assert run_fleet(world, telemetry, day).requests == 0
    (run,) = runs_of(span_exporter)
    assert run.attributes[semconv.AGENT_RUN_OUTCOME] == semconv.OUTCOME_BUDGET_EXCEEDED
    assert run.attributes[semconv.BUDGET_SPENT] == pytest.approx(2 * cost)


def test_two_concurrent_runs_of_an_agent_at_the_edge_of_its_budget_only_one_passes(world, telemetry, span_exporter, day, call, estimate):
    cost, _ = call
    configure(world, budget=f"budget = {{ day_cost_usd = {estimate[0] + cost * 1.5!r} }}")
    transport = SimulatedLLMTransport()
    fleet = build_test_fleet(world, telemetry, transport)
    fleet.run_cycle(day)  # spent: one call; room for one more
    agent = fleet.agents["spender"]
    agent.barrier = threading.Barrier(2)  # both runs reach their check together
    _two_runs_at_once(fleet, day)
    assert transport.requests == 2  # the first cycle's and exactly one of the two
    outcomes = sorted(s.attributes[semconv.AGENT_RUN_OUTCOME] for s in runs_of(span_exporter)[1:])
    assert outcomes == ["budget_exceeded", "ok"]


def _two_runs_at_once(fleet, day) -> None:
    """Two runs of ``spender`` started together (its barrier holds both until they reach their
    check), then the fleet stopped; both finish within a generous bound."""
    threads = [threading.Thread(target=fleet._job, args=("spender", day)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    fleet.shutdown()
    assert not any(thread.is_alive() for thread in threads)


@pytest.mark.parametrize("which", ["agent", "fleet"])
def test_two_concurrent_first_runs_of_an_agent_where_one_call_fits_only_one_passes(
    world, telemetry, span_exporter, day, call, estimate, which
):
    """No call of the agent seen yet (no history in the process or the ledger): the first call is
    still estimated from its request, so two first runs cannot both pass a day budget or the cap."""
    cost, _ = call
    limit = estimate[0] + cost * 0.5  # one call's estimate fits, two do not (nor one spent and one estimated)
    budget = f"budget = {{ day_cost_usd = {limit!r} }}"
    configure(world, **({"budget": budget} if which == "agent" else {"fleet_budget": budget}))
    transport = SimulatedLLMTransport()
    fleet = build_test_fleet(world, telemetry, transport)
    fleet.agents["spender"].barrier = threading.Barrier(2)  # both runs reach their check together
    _two_runs_at_once(fleet, day)
    assert transport.requests == 1
    runs = sorted(runs_of(span_exporter), key=lambda s: s.attributes[semconv.AGENT_RUN_OUTCOME])
    assert [s.attributes[semconv.AGENT_RUN_OUTCOME] for s in runs] == ["budget_exceeded", "ok"]
    stopped = runs[0]
    assert stopped.attributes[semconv.BUDGET_NAME] == (semconv.BUDGET_DAY_COST if which == "agent" else semconv.BUDGET_FLEET_DAY_COST)
    assert stopped.attributes[semconv.BUDGET_LIMIT] == limit
    assert stopped.attributes[semconv.BUDGET_NEXT_CALL] == pytest.approx(estimate[0])
    # what the other run had reserved (its call in flight) or spent (its call settled)
    assert stopped.attributes[semconv.BUDGET_SPENT] in (pytest.approx(estimate[0]), pytest.approx(cost))
    assert stopped.attributes[semconv.RUN_LLM_CALLS] == 0
    ledger_file = world["tmp"] / "spend" / f"spend-{day.isoformat()}.json"
    entry = json.loads(ledger_file.read_text())["agents"]["spender"]
    assert entry["calls"] == 1 and entry["usd"] == pytest.approx(cost)  # the one call, every reservation settled


def test_a_calls_estimate_is_its_requests_input_and_output_allowance_at_the_models_price():
    messages = [{"role": "system", "content": "x" * 40}, {"role": "user", "content": "y" * 41}]
    # 40 chars: 10 tokens, 41: 11; 4 a message
    assert estimate_call(messages, {}) == CallEstimate(10 + 4 + 11 + 4, DEFAULT_OUTPUT_TOKENS)
    assert estimate_call(messages, {"max_tokens": 300}).tokens_out == 300
    assert estimate_call(messages, {"max_tokens": 300, "max_completion_tokens": 200}).tokens_out == 200
    tools = [{"type": "function", "function": {"name": "f"}}]  # 45 characters as compact JSON: 12 tokens
    assert estimate_call(messages, {"tools": tools}).tokens_in == 29 + 12
    tool_turn = {"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}  # [{"id":"c"}]: 12 chars, 3 tokens
    assert estimate_call([tool_turn], {}).tokens_in == 3 + 4

    prices = PriceTable.from_dict({"version": "2026-01-01", "models": {"m": {"input": 2.0, "output": 10.0}}})
    budgets = FleetBudgets({"a": AgentBudget(run_cost_usd=1.0)}, None, ReplayClock(date(2026, 3, 2)), prices, "m")
    assert budgets.call_estimate(CallEstimate(1_000, 500)) == (pytest.approx((1_000 * 2.0 + 500 * 10.0) / 1e6), 1_500)
    # a check that sees no request: the output allowance alone, never $0
    assert budgets.call_estimate(None) == (pytest.approx(DEFAULT_OUTPUT_TOKENS * 10.0 / 1e6), DEFAULT_OUTPUT_TOKENS)

    # later calls: the larger of the request's estimate and the largest call so far
    # (the request, each call's cost, the next call's estimate, spent when stopped): $0.007 wins after one
    # call of $0.004; $0.001 loses to $0.004 and a second call is made
    for request, each_call, expected, spent in (
        (CallEstimate(1_000, 500), 0.004, 0.007, 0.004),
        (CallEstimate(0, 100), 0.004, 0.004, 0.008),
    ):
        budgets = FleetBudgets({"a": AgentBudget(run_cost_usd=0.01)}, None, ReplayClock(date(2026, 3, 2)), prices, "m")
        run = RunTelemetry("a", "run-1", next_call=request)
        run_budget = budgets.open_run(run)
        with pytest.raises(RunStopped) as stop:
            for _ in range(3):
                run_budget.check(run, semconv.STEP_LLM_CALL)
                run_budget.record(run, LLMUsage(100, 10, each_call, spend_usd=each_call))
        assert stop.value.attributes[semconv.BUDGET_NEXT_CALL] == pytest.approx(expected)
        assert stop.value.attributes[semconv.BUDGET_SPENT] == pytest.approx(spent)


def test_two_processes_over_the_file_ledger_cannot_both_pass(tmp_path, call):
    cost, tokens = call
    ledger = FileSpendLedger(tmp_path / "spend")
    ledger.settle("2026-03-02", "spender", 0.0, cost, tokens, False)  # one call spent, the largest
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    args = (str(tmp_path / "spend"), "2026-03-02", 0.0, cost * 2.5, barrier, results)
    processes = [context.Process(target=budget_agents.reserve_in_process, args=args) for _ in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0, 0]
    assert sorted(results.get(timeout=10) for _ in processes) == [False, True]
    entry = json.loads((tmp_path / "spend" / "spend-2026-03-02.json").read_text())["agents"]["spender"]
    assert entry["usd"] == pytest.approx(2 * cost)  # the call spent and the one reservation


@pytest.mark.parametrize("budget_name", ["run_tokens", "run_cost"])
def test_a_run_budget_stops_a_run_mid_way(world, telemetry, span_exporter, day, call, estimate, budget_name):
    cost, tokens = call
    # two calls spent and a third's estimate pass it
    limit = estimate[1] + int(tokens * 1.5) if budget_name == "run_tokens" else estimate[0] + cost * 1.5
    key = "run_tokens" if budget_name == "run_tokens" else "run_cost_usd"
    configure(world, budget=f"budget = {{ {key} = {limit!r} }}", calls=3)
    assert run_fleet(world, telemetry, day).requests == 2
    (run,) = runs_of(span_exporter)
    spent, unit = (2 * tokens, semconv.BUDGET_UNIT_TOKENS) if budget_name == "run_tokens" else (2 * cost, semconv.BUDGET_UNIT_USD)
    assert budget_attributes(run) == {
        semconv.AGENT_RUN_OUTCOME: semconv.OUTCOME_BUDGET_EXCEEDED,
        semconv.RUN_STOPPED_BEFORE: semconv.STEP_LLM_CALL,
        semconv.BUDGET_NAME: budget_name,
        semconv.BUDGET_LIMIT: float(limit),
        semconv.BUDGET_SPENT: pytest.approx(spent),
        semconv.BUDGET_UNIT: unit,
        semconv.BUDGET_NEXT_CALL: pytest.approx(estimate[1] if budget_name == "run_tokens" else estimate[0]),
        semconv.BUDGET_ESTIMATED: True,  # simulated calls, priced as gpt-4o-mini
        semconv.RUN_LLM_CALLS: 2,
    }
    children = [s.name for s in span_exporter.get_finished_spans() if s.parent and s.parent.span_id == run.context.span_id]
    assert children == ["chat gpt-4o-mini", "chat gpt-4o-mini"]
    assert not (world["tmp"] / "spend").exists()  # run budgets need no ledger


def test_the_fleet_day_cap_stops_every_agent(world, telemetry, span_exporter, day, call, estimate):
    cost, _ = call
    configure(world, fleet_budget=f"budget = {{ day_cost_usd = {estimate[0] + cost * 0.5!r} }}", other=True)
    # the first cycle (the two agents at once): one call fits, whichever agent reserves it first; in
    # the second, one call spent and another's estimate would pass the cap
    assert run_fleet(world, telemetry, day, cycles=2).requests == 1
    firsts = sorted(runs_of(span_exporter, agent)[0].attributes[semconv.AGENT_RUN_OUTCOME] for agent in ("spender", "other"))
    assert firsts == [semconv.OUTCOME_BUDGET_EXCEEDED, semconv.OUTCOME_OK]
    for agent in ("spender", "other"):
        _, second = runs_of(span_exporter, agent)
        assert second.attributes[semconv.BUDGET_NAME] == semconv.BUDGET_FLEET_DAY_COST
        assert second.attributes[semconv.BUDGET_SPENT] == pytest.approx(cost)


def test_a_corrupt_ledger_fails_closed_and_is_left_as_it_was(world, telemetry, span_exporter, day, call):
    cost, _ = call
    configure(world, budget=f"budget = {{ day_cost_usd = {cost * 10!r} }}")
    ledger_file = world["tmp"] / "spend" / f"spend-{day.isoformat()}.json"
    ledger_file.parent.mkdir()
    ledger_file.write_text('{"format": 1, "day": "trunc')
    assert run_fleet(world, telemetry, day).requests == 0
    (run,) = runs_of(span_exporter)
    assert run.attributes[semconv.AGENT_RUN_OUTCOME] == semconv.OUTCOME_BUDGET_EXCEEDED
    assert run.attributes[semconv.BUDGET_NAME] == semconv.BUDGET_DAY_COST
    assert semconv.BUDGET_SPENT not in run.attributes  # unknown: the ledger could not be read
    error = run.attributes[semconv.BUDGET_LEDGER_ERROR]
    assert str(ledger_file) in error and "move it aside" in error
    assert ledger_file.read_text() == '{"format": 1, "day": "trunc'


def test_a_real_model_missing_from_the_price_table_fails_a_usd_budget_closed(world, telemetry, span_exporter, day):
    configure(world, budget="budget = { day_cost_usd = 5.0 }", model="local-llama-3")
    assert run_fleet(world, telemetry, day).requests == 0
    (run,) = runs_of(span_exporter)
    assert run.attributes[semconv.BUDGET_NAME] == semconv.BUDGET_DAY_COST
    assert "local-llama-3 has no price" in run.attributes[semconv.RUN_STOP_REASON]


def test_an_unpriced_model_still_counts_its_tokens(world, telemetry, span_exporter, day):
    _, tokens = one_call(day.isoformat(), model="local-llama-3")
    _, estimated = first_estimate(day.isoformat(), model="local-llama-3")
    configure(world, budget=f"budget = {{ run_tokens = {estimated + tokens // 2} }}", model="local-llama-3", calls=3)
    assert run_fleet(world, telemetry, day).requests == 1
    (run,) = runs_of(span_exporter)
    assert run.attributes[semconv.BUDGET_NAME] == semconv.BUDGET_RUN_TOKENS
    assert run.attributes[semconv.BUDGET_SPENT] == tokens


def test_a_call_answered_by_an_unpriced_model_stops_the_next_call():
    """The configured model is priced, the server answered with another: never $0, the run stops."""
    clock = ReplayClock(date(2026, 3, 2))
    budgets = FleetBudgets({"a": AgentBudget(run_cost_usd=1.0)}, None, clock, PriceTable.load(), "gpt-4o-mini")
    run = RunTelemetry("a", "run-1")
    run_budget = budgets.open_run(run)
    run_budget.check(run, semconv.STEP_LLM_CALL)
    run_budget.record(run, LLMUsage(100, 10, None, spend_usd=None, model="mystery-model"))
    with pytest.raises(RunStopped) as stop:
        run_budget.check(run, semconv.STEP_LLM_CALL)
    assert stop.value.attributes[semconv.BUDGET_NAME] == semconv.BUDGET_RUN_COST
    assert "mystery-model has no price" in stop.value.reason
    run_budget.check(run, semconv.STEP_TOOL_STEP)  # a tool step spends nothing: not checked


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("[agents.a.budget]\nday_cost_usd = -1", "agents.a.budget.day_cost_usd must be a positive number of USD"),
        ("[agents.a.budget]\nrun_tokens = 2.5", "agents.a.budget.run_tokens must be a positive whole number"),
        ("[agents.a.budget]\nday_cost = 1.0", "unknown key 'day_cost'"),
        ("[fleet.budget]\nday_cost_usd = true", "fleet.budget.day_cost_usd must be a positive number of USD"),
    ],
)
def test_a_bad_budget_is_a_config_error_naming_the_key(table, message):
    import tomllib

    text = '[fleet]\nuniverse = ["SPX"]\n[agents.a]\nmodule = "agents.momentum"\n' + table
    with pytest.raises(ConfigError, match=message):
        parse_fleet_config(tomllib.loads(text), "agents.toml")


def test_a_bad_budget_exits_2_with_one_line(world, capsys):
    configure(world, budget="budget = { day_cost_usd = 0 }")
    assert scheduler.main(["--config", str(world["config"]), "--once"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "agents.spender.budget.day_cost_usd must be a positive number" in err


def test_budgets_in_the_config_parse_and_none_means_unlimited(world):
    configure(
        world, budget="budget = { run_cost_usd = 0.5, day_cost_usd = 2, run_tokens = 9000 }", fleet_budget="budget = { day_cost_usd = 20 }"
    )
    from services.fleet_config import load_fleet_config

    fleet = load_fleet_config(world["config"])
    assert fleet.agents["spender"].budget == AgentBudget(0.5, 2.0, 9000)
    assert fleet.fleet_day_cost_usd == 20.0 and fleet.has_budgets
    configure(world)
    plain = load_fleet_config(world["config"])
    assert plain.agents["spender"].budget == AgentBudget() and not plain.has_budgets


def test_the_file_ledger_keeps_a_bounded_number_of_days(tmp_path):
    ledger = FileSpendLedger(tmp_path, keep_days=3)
    for n in range(1, 7):
        ledger.settle(f"2026-03-0{n}", "a", 0.0, 0.01, 10, False)
    assert sorted(p.name for p in tmp_path.glob("spend-*.json")) == [f"spend-2026-03-0{n}.json" for n in (4, 5, 6)]


def test_an_unreadable_ledger_file_is_a_clear_error(tmp_path):
    ledger = FileSpendLedger(tmp_path)
    (tmp_path / "spend-2026-03-02.json").write_text(json.dumps({"format": 1, "day": "2026-03-02", "agents": {"a": {"usd": "x"}}}))
    with pytest.raises(LedgerUnavailable, match="not a valid day file"):
        ledger.reserve("2026-03-02", "a", 0.0, 1.0, None)
    assert not Path(tmp_path / "spend-2026-03-02.json.tmp").exists()
