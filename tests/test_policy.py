"""The supervisor's policy: the file (defaults, malformed), the figures over a window, and decisions
at and around every threshold, with minimum evidence, a person's revive and a person's status."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import pytest

from alpha.records import RunRecord, SignalRecord
from meta_supervisor.supervisor.policy import (
    DEFAULT_POLICY_FILE,
    HOLD,
    KEEP,
    PROMOTE,
    RETIRE,
    Policy,
    PromoteRules,
    RetireRules,
    agent_figures,
    decide,
    decide_one,
    load_policy,
    parse_policy,
    percentile,
)
from otel import semconv
from services.agent_status import StatusEntry
from services.config_error import ConfigError
from services.kill_switch import KillEntry
from services.market_data import CsvMarketData

PRICES = Path(__file__).parent / "fixtures" / "alpha" / "prices"


# --- the file --------------------------------------------------------------------------------


def test_shipped_policy_file_is_the_documented_defaults():
    assert replace(load_policy(DEFAULT_POLICY_FILE), source="defaults") == Policy()


def test_policy_path_argument_beats_env(tmp_path, monkeypatch):
    (tmp_path / "env.yaml").write_text("window: {days: 7}\n")
    (tmp_path / "arg.yaml").write_text("window: {days: 9}\n")
    monkeypatch.setenv("ALPHATRACE_POLICY_FILE", str(tmp_path / "env.yaml"))
    assert load_policy().window_days == 7
    assert load_policy(tmp_path / "arg.yaml").window_days == 9


def test_missing_keys_take_defaults_and_null_switches_a_rule_off():
    policy = parse_policy({"retire": {"ic_below": None, "min_runs": 3}, "scoring": {"horizons": [10, 1], "primary_horizon": 10}})
    assert policy.retire == replace(RetireRules(), ic_below=None, min_runs=3)
    assert (policy.horizons, policy.primary_horizon, policy.promote) == ((1, 10), 10, PromoteRules())
    assert parse_policy(None) == Policy(source="policy")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"retire": {"error_rate_abvoe": 0.2}}, "unknown key retire.error_rate_abvoe"),
        ({"retier": {}}, "unknown key 'retier'"),
        ({"retire": {"error_rate_above": "high"}}, r"retire.error_rate_above must be a number from 0 to 1 \(error_rate\), or null"),
        ({"retire": {"p95_latency_ms_above": True}}, "retire.p95_latency_ms_above must be a number"),
        ({"promote": {"min_runs": -1}}, "promote.min_runs must be a whole number >= 1"),
        ({"promote": {"min_scored_signals": 2.5}}, "promote.min_scored_signals must be a whole number"),
        ({"promote": [1, 2]}, "promote must be a mapping"),
        ({"window": {"days": 0}}, "window.days must be a whole number from 1 to 36500, got 0"),
        ({"scoring": {"horizons": []}}, "scoring.horizons must be a non-empty list"),
        ({"scoring": {"horizons": [1, "5"]}}, r"scoring.horizons\[\] must be a whole number"),
        ({"scoring": {"primary_horizon": 20}}, "scoring.primary_horizon 20 must be one of scoring.horizons"),
        ({"scoring": {"ic_kind": "pearson"}}, "scoring.ic_kind must be auto, cross_sectional or time_series"),
        ({"version": 2}, "version must be 1"),
        ([1, 2], "expected a mapping"),
    ],
)
def test_malformed_policy_is_a_config_error_naming_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_policy(raw)


# Issue 12, item 6: values that would retire the whole fleet (or crash the window) are refused, naming the
# key, the value and the allowed range.
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"retire": {"error_rate_above": -0.1}},
            r"retire.error_rate_above must be a number from 0 to 1 \(error_rate\), or null \(rule off\); got -0.1",
        ),
        ({"retire": {"error_rate_above": 1.5}}, "retire.error_rate_above must be a number from 0 to 1"),
        ({"retire": {"cost_per_day_usd_above": -1}}, "retire.cost_per_day_usd_above must be a number >= 0 .*got -1"),
        ({"retire": {"p95_latency_ms_above": -5.0}}, "retire.p95_latency_ms_above must be a number >= 0"),
        ({"retire": {"ic_below": 5}}, r"retire.ic_below must be a number from -1 to 1 \(ic\), or null \(rule off\); got 5"),
        ({"retire": {"ic_below": -1.01}}, "retire.ic_below must be a number from -1 to 1"),
        ({"retire": {"ic_t_stat_below": float("inf")}}, "retire.ic_t_stat_below must be a number finite"),
        ({"retire": {"min_runs": 0, "error_rate_above": -0.5}}, "retire.min_runs must be a whole number >= 1, got 0"),
        ({"retire": {"min_runs": 0}}, "retire.min_runs must be a whole number >= 1, got 0"),
        ({"retire": {"min_scored_signals": 0}}, "retire.min_scored_signals must be a whole number >= 1, got 0"),
        ({"promote": {"ic_at_least": 2}}, "promote.ic_at_least must be a number from -1 to 1"),
        ({"promote": {"hit_rate_at_least": 1.5}}, "promote.hit_rate_at_least must be a number from 0 to 1"),
        ({"promote": {"brier_at_most": -0.1}}, "promote.brier_at_most must be a number from 0 to 1"),
        ({"promote": {"error_rate_at_most": -0.01}}, "promote.error_rate_at_most must be a number from 0 to 1"),
        ({"promote": {"cost_per_day_usd_at_most": -3}}, "promote.cost_per_day_usd_at_most must be a number >= 0"),
        ({"window": {"days": 1_000_000}}, "window.days must be a whole number from 1 to 36500, got 1000000"),
    ],
)
def test_absurd_values_are_config_errors_naming_key_value_and_range(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_policy(raw)


def test_range_edges_are_accepted():
    policy = parse_policy(
        {
            "window": {"days": 36500},
            "retire": {"min_runs": 1, "error_rate_above": 0, "ic_below": -1, "ic_t_stat_below": -50},
            "promote": {
                "error_rate_at_most": 1,
                "ic_at_least": 1,
                "hit_rate_at_least": 0,
                "brier_at_most": 1,
                "cost_per_day_usd_at_most": 0,
            },
        }
    )
    assert (policy.window_days, policy.retire.min_runs, policy.retire.ic_below, policy.promote.brier_at_most) == (36500, 1, -1.0, 1.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("retire:\n  ic_below: -0.05\n  min_runs: 5\n  ic_below: 0.5\n", r"retire.ic_below is given twice \(lines 2 and 4\)"),
        ("retire: {min_runs: 5}\nwindow: {days: 9}\nretire: {min_runs: 50}\n", r"retire is given twice \(lines 1 and 3\)"),
        ("promote: {min_runs: 5, min_runs: 6}\n", r"promote.min_runs is given twice \(lines 1 and 1\)"),
    ],
)
def test_a_repeated_yaml_key_is_a_config_error_not_silently_the_last(tmp_path, text, message):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_policy(path)
    assert "\n" not in str(caught.value)


def test_yaml_merge_keys_and_plain_files_still_load(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("retire: &r {min_runs: 7}\npromote:\n  <<: *r\n  min_runs: 9\n")  # a merged key may be overridden
    policy = load_policy(path)
    assert (policy.retire.min_runs, policy.promote.min_runs) == (7, 9)


def test_invalid_yaml_and_missing_file_are_config_errors(tmp_path):
    bad = tmp_path / "policy.yaml"
    bad.write_text("retire: {error_rate_above: [\n")
    with pytest.raises(ConfigError, match="not valid YAML") as caught:
        load_policy(bad)
    assert "\n" not in str(caught.value)  # one line on stderr
    with pytest.raises(ConfigError, match="does not exist"):
        load_policy(tmp_path / "nope.yaml")


# --- figures ---------------------------------------------------------------------------------


def test_percentile_is_numpy_linear():
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)  # position 2.85
    assert percentile([5.0], 95) == 5.0
    assert percentile([], 95) is None


def run(agent, day, outcome="ok", ms=10.0, cost=0.0, span="0000000000000001"):
    return RunRecord(agent, outcome, day, ms, cost, 0, "live", "0" * 31 + "1", span, 0)


def test_figures_over_the_window_by_hand():
    end = date(2024, 1, 12)
    policy = Policy(window_days=5, horizons=(1,), primary_horizon=1)  # 8 .. 12 January
    runs = [
        run("a", date(2024, 1, 7), "error", 999.0, 100.0),  # before the window
        run("a", date(2024, 1, 8), "ok", 10.0, 1.0),
        run("a", date(2024, 1, 8), "error", 20.0, 0.5),
        run("a", date(2024, 1, 9), "ok", 30.0, 0.0),
        run("a", date(2024, 1, 11), "killed", 0.1, 0.0),  # skipped by the kill switch: not a run
        run("a", date(2024, 1, 10), "stale_data", 0.1, 0.0),  # refused on stale data: not a run, not killed
        run("a", date(2024, 1, 10), semconv.OUTCOME_BUDGET_EXCEEDED, 5000.0, 0.25),  # stopped by a budget: its cost counts
        run("a", date(2024, 1, 10), semconv.OUTCOME_KILLED, 6000.0, 0.25),  # stopped mid-run: its cost counts
        run("a", end, "ok", 40.0, 1.5, span="00000000000000ff"),
    ]
    signals = [
        SignalRecord("a", "AAA", date(2024, 1, 8), "up", 0.9, 1.0, 1),  # 90 -> 100: hit
        SignalRecord("a", "AAA", date(2024, 1, 5), "up", 0.9, 1.0, 1),  # before the window
        SignalRecord("a", "AAA", end, "up", 0.9, 1.0, 1),  # last day of data: pending
    ]
    figures = agent_figures(runs, signals, CsvMarketData(PRICES), policy, today=date(2030, 1, 1))["a"]
    assert (figures["window_first"], figures["window_last"]) == ("2024-01-08", "2024-01-12")
    assert (figures["runs"], figures["errors"], figures["killed_runs"], figures["budget_stops"]) == (4, 1, 2, 1)
    assert figures["error_rate"] == 0.25  # neither stop is an error, nor a judged run
    assert figures["run_days"] == 3
    assert figures["cost_usd"] == pytest.approx(3.5)
    assert figures["cost_per_day_usd"] == pytest.approx(3.5 / 3)
    assert figures["p95_latency_ms"] == pytest.approx(30 + 0.85 * 10)  # of 10, 20, 30, 40
    assert (figures["scored_signals"], figures["pending_signals"], figures["hit_rate"]) == (1, 1, 1.0)
    assert figures["brier"] == pytest.approx(0.01)
    assert figures["last_run"] == {"trace_id": "0" * 31 + "1", "span_id": "00000000000000ff"}
    assert agent_figures([], signals, CsvMarketData(PRICES), policy) == {}


def test_window_until_moves_the_end():
    runs = [run("a", date(2024, 1, d)) for d in (2, 3, 4, 5)]
    policy = Policy(window_days=2, horizons=(1,), primary_horizon=1)
    figures = agent_figures(runs, [], CsvMarketData(PRICES), policy, until=date(2024, 1, 3))["a"]
    assert (figures["window_first"], figures["window_last"], figures["runs"]) == ("2024-01-02", "2024-01-03", 2)


# --- decisions at and around every threshold -----------------------------------------------------

NEUTRAL = {  # a live agent no rule objects to and a shadow agent that clears every bar
    "runs": 100,
    "errors": 0,
    "error_rate": 0.01,
    "cost_per_day_usd": 1.0,
    "p95_latency_ms": 1000.0,
    "scored_signals": 1000,
    "ic": 0.05,
    "ic_kind": "cross_sectional",
    "ic_t_stat": 3.0,
    "ic_t_stat_hac": 3.0,
    "hit_rate": 0.55,
    "brier": 0.24,
}
POLICY = Policy()
EPS = 1e-9


def judge(status="live", kill=None, status_entry=None, **changes):
    return decide_one("agent", {**NEUTRAL, **changes}, POLICY, status, kill, status_entry)


@pytest.mark.parametrize(
    ("figure", "threshold", "rule"),
    [
        ("error_rate", POLICY.retire.error_rate_above, "retire.error_rate_above"),
        ("cost_per_day_usd", POLICY.retire.cost_per_day_usd_above, "retire.cost_per_day_usd_above"),
        ("p95_latency_ms", POLICY.retire.p95_latency_ms_above, "retire.p95_latency_ms_above"),
    ],
)
def test_run_rules_retire_strictly_above_the_threshold(figure, threshold, rule):
    assert judge(**{figure: threshold - EPS}).action == KEEP
    assert judge(**{figure: threshold}).action == KEEP
    above = judge(**{figure: threshold + EPS})
    assert (above.action, above.rule) == (RETIRE, rule)
    assert f"{figure} " in above.reason
    # too few runs: not judged, whatever the figure
    assert judge(runs=POLICY.retire.min_runs - 1, **{figure: threshold * 10}).action == KEEP
    assert judge(runs=POLICY.retire.min_runs, **{figure: threshold + EPS}).action == RETIRE


def test_ic_rule_needs_both_the_ic_and_its_t_stat_below():
    ic, t = POLICY.retire.ic_below, POLICY.retire.ic_t_stat_below
    assert judge(ic=ic, ic_t_stat_hac=t - 1).action == KEEP  # at the IC threshold
    assert judge(ic=ic - EPS, ic_t_stat_hac=t).action == KEEP  # at the t threshold
    fired = judge(ic=ic - EPS, ic_t_stat_hac=t - EPS)
    assert (fired.action, fired.rule) == (RETIRE, "retire.ic_below")
    assert "ic_t_stat_hac" in fired.reason
    assert judge(ic=ic - 1, ic_t_stat_hac=t - EPS, scored_signals=POLICY.retire.min_scored_signals - 1).action == KEEP
    assert judge(ic=ic - 1, ic_t_stat_hac=t - EPS, scored_signals=POLICY.retire.min_scored_signals).action == RETIRE
    assert judge(ic=None, ic_t_stat_hac=None).action == KEEP
    ic_alone = Policy(retire=replace(RetireRules(), ic_t_stat_below=None))
    assert decide_one("a", {**NEUTRAL, "ic": ic - EPS, "ic_t_stat_hac": 0.0}, ic_alone, "live", None, None).action == RETIRE


# Issue 15: daily ICs of overlapping 5-day returns inflate the plain t-stat; the t-stat rules judge the
# Newey-West one (ic_t_stat_hac), the plain one is only shown.
def test_the_t_stat_rules_judge_the_hac_t_stat_not_the_inflated_plain_one():
    ic, t = POLICY.retire.ic_below, POLICY.retire.ic_t_stat_below
    assert judge(ic=ic - 0.1, ic_t_stat=t - 1, ic_t_stat_hac=t + 0.5).action == KEEP  # only the plain t is beyond
    fired = judge(ic=ic - 0.1, ic_t_stat=t + 1, ic_t_stat_hac=t - 0.5)
    assert (fired.action, fired.rule) == (RETIRE, "retire.ic_below")
    assert [c.figure for c in fired.checks if c.met] == ["ic", "ic_t_stat_hac"]
    assert judge(ic=ic - 0.1, ic_t_stat=t - 1, ic_t_stat_hac=None).action == KEEP  # too few dates for a HAC t: not judged
    bar = POLICY.promote.ic_t_stat_at_least
    short = judge("shadow", ic_t_stat=bar + 1, ic_t_stat_hac=bar - 0.5)
    assert short.action == KEEP and "ic_t_stat_hac" in short.reason
    assert judge("shadow", ic_t_stat=bar - 1, ic_t_stat_hac=bar).action == PROMOTE


def test_first_crossed_rule_decides_and_all_are_in_the_reason():
    decision = judge(error_rate=0.9, p95_latency_ms=10**7)
    assert decision.rule == "retire.error_rate_above"
    assert "p95_latency_ms" in decision.reason


@pytest.mark.parametrize(
    ("figure", "threshold", "worse"),
    [
        ("error_rate", POLICY.promote.error_rate_at_most, +EPS),
        ("cost_per_day_usd", POLICY.promote.cost_per_day_usd_at_most, +EPS),
        ("p95_latency_ms", POLICY.promote.p95_latency_ms_at_most, +EPS),
        ("ic", POLICY.promote.ic_at_least, -EPS),
        ("ic_t_stat_hac", POLICY.promote.ic_t_stat_at_least, -EPS),
        ("hit_rate", POLICY.promote.hit_rate_at_least, -EPS),
        ("brier", POLICY.promote.brier_at_most, +EPS),
    ],
)
def test_promotion_bar_is_cleared_at_the_threshold(figure, threshold, worse):
    at = judge("shadow", **{figure: threshold})
    assert (at.action, at.rule) == (PROMOTE, "promote.bar")
    short = judge("shadow", **{figure: threshold + worse})
    assert short.action == KEEP and figure in short.reason
    assert judge("shadow", **{figure: threshold - 10 * worse}).action == PROMOTE


def test_promotion_needs_evidence_and_only_applies_to_shadow_agents():
    assert judge("shadow", runs=POLICY.promote.min_runs - 1).action == KEEP
    assert judge("shadow", runs=POLICY.promote.min_runs).action == PROMOTE
    assert judge("shadow", scored_signals=POLICY.promote.min_scored_signals - 1).action == KEEP
    assert judge("shadow", scored_signals=POLICY.promote.min_scored_signals).action == PROMOTE
    assert judge("live").action == KEEP
    assert judge("shadow", error_rate=0.9).action == RETIRE  # retirement beats promotion


def test_a_persons_revive_holds_a_retirement_until_it_is_cleared():
    revived = KillEntry("agent", "false alarm", "alice", "2024-01-01T00:00:00Z", "revived")
    held = judge(kill=revived, error_rate=0.9)
    assert (held.action, held.would, held.rule) == (HOLD, RETIRE, "retire.error_rate_above")
    assert held.held_by == {"by": "alice", "at": "2024-01-01T00:00:00Z", "reason": "false alarm", "state": "revived"}
    assert judge(kill=None, error_rate=0.9).action == RETIRE
    killed = judge(kill=KillEntry("agent", "drawdown", "bob"), error_rate=0.9)
    assert (killed.action, killed.killed) == (KEEP, True) and "already killed by bob" in killed.reason


def test_a_persons_status_entry_holds_a_promotion():
    pinned = StatusEntry("agent", "shadow", "not yet", "carol", "2024-01-02T00:00:00Z")
    held = judge("shadow", status_entry=pinned)
    assert (held.action, held.would, held.held_by["by"]) == (HOLD, PROMOTE, "carol")
    by_supervisor = StatusEntry("agent", "shadow", "", "supervisor")
    assert judge("shadow", status_entry=by_supervisor).action == PROMOTE


def test_decide_gives_one_decision_per_agent_in_name_order():
    figures = {"b": {**NEUTRAL, "error_rate": 0.9}, "a": dict(NEUTRAL)}
    decisions = decide(figures, POLICY, {"a": "shadow"}, {})
    assert [(d.agent, d.action, d.status) for d in decisions] == [("a", PROMOTE, "shadow"), ("b", RETIRE, "live")]
    assert decisions[0].to_json()["checks"][0] == {
        "rule": "retire.error_rate_above",
        "figure": "error_rate",
        "value": 0.01,
        "op": ">",
        "threshold": 0.25,
        "met": False,
        "judged": True,
    }


def test_window_bounds_use_calendar_days():
    runs = [run("a", date(2024, 1, 12) - timedelta(days=n)) for n in range(10)]
    figures = agent_figures(runs, [], CsvMarketData(PRICES), Policy(window_days=3, horizons=(1,), primary_horizon=1))["a"]
    assert (figures["window_first"], figures["runs"]) == ("2024-01-10", 3)
