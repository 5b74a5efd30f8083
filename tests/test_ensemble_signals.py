"""The LLM spend is counted once: the ensemble combines its members' recorded signals of the same
as-of date from the signal book, makes no LLM call, says which members were missing, and runs after
its members in a cycle."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date

import pytest

from agents import ensemble
from agents.base import AgentContext
from otel import semconv
from services.config_error import ConfigError
from services.run_order import run_stages
from services.signal_book import RecentSignals
from tests.fleet_fixtures import build_test_fleet, root_spans

DAY = date(2018, 3, 1)


def _signal(symbol: str, score: float, confidence: float, as_of: date = DAY, regime: str = "trend_up") -> dict:
    return {
        "symbol": symbol,
        "direction": "up" if score > 0.1 else "down" if score < -0.1 else "flat",
        "prob_up": 0.5 + 0.4 * score,
        "confidence": confidence,
        "ensemble_score_final": score,
        "regime": regime,
        "horizon": 5,
        "as_of": as_of.isoformat(),
    }


class _NoMarket:
    """The ensemble must not need market data (nor an LLM): it only reads the book."""

    def closes(self, *args):
        raise AssertionError("the ensemble read market data")


def _run_ensemble(book: RecentSignals, universe=("SPX", "WTI")) -> list[dict]:
    params = {"horizon": 5, "weights": {"momentum": 0.4, "mean_reversion": 0.3, "llm_analyst": 0.3}}
    return ensemble.Agent().run(AgentContext(DAY, _NoMarket(), universe, params, llm=None, signals=book))


def test_ensemble_blends_its_members_recorded_signals_of_the_same_day():
    book = RecentSignals()
    book.record("momentum", [_signal("SPX", 0.5, 0.5), _signal("WTI", -0.5, 0.5)])
    book.record("mean_reversion", [_signal("SPX", -0.2, 0.2), _signal("WTI", 0.0, 0.1)])
    book.record("llm_analyst", [_signal("SPX", 0.3, 0.6), _signal("WTI", -0.1, 0.4)])
    book.record("llm_analyst", [_signal("SPX", -0.9, 0.9, as_of=date(2018, 2, 28))])  # another day: not used

    spx, wti = _run_ensemble(book)

    assert spx["symbol"] == "SPX" and spx["as_of"] == DAY.isoformat()
    assert spx["ensemble_score_final"] == pytest.approx(0.4 * 0.5 + 0.3 * -0.2 + 0.3 * 0.3)
    assert spx["confidence"] == pytest.approx(0.4 * 0.5 + 0.3 * 0.2 + 0.3 * 0.6)
    assert wti["ensemble_score_final"] == pytest.approx(0.4 * -0.5 + 0.3 * -0.1)
    assert spx["members"] == wti["members"] == ["momentum", "mean_reversion", "llm_analyst"]
    assert spx["members_missing"] == wti["members_missing"] == []


def test_a_member_without_a_signal_that_day_is_named_and_the_weights_renormalised():
    book = RecentSignals()
    book.record("momentum", [_signal("SPX", 0.5, 0.5)])
    book.record("mean_reversion", [_signal("SPX", -0.2, 0.2), _signal("WTI", 0.4, 0.3)])

    spx, wti = _run_ensemble(book)

    assert spx["ensemble_score_final"] == pytest.approx((0.4 * 0.5 + 0.3 * -0.2) / 0.7)
    assert spx["members"] == ["momentum", "mean_reversion"] and spx["members_missing"] == ["llm_analyst"]
    assert wti["ensemble_score_final"] == pytest.approx(0.4)
    assert wti["members"] == ["mean_reversion"] and wti["members_missing"] == ["momentum", "llm_analyst"]


def test_no_member_signal_means_no_ensemble_signal():
    assert _run_ensemble(RecentSignals()) == []


def test_the_book_keeps_valid_signals_only_the_latest_per_key_and_a_few_days():
    book = RecentSignals(keep_days=2)
    bad = dict(_signal("WTI", 0.1, 0.1), prob_up=1.5)
    assert book.record("momentum", [_signal("SPX", 0.1, 0.1), bad, "junk"]) == 1
    book.record("momentum", _signal("SPX", 0.7, 0.7))  # later the same day: replaces
    assert {k: v["ensemble_score_final"] for k, v in book.signals_of("momentum", DAY).items()} == {"SPX": 0.7}
    no_as_of = {k: v for k, v in _signal("SPX", 0.2, 0.2).items() if k != "as_of"}
    book.record("momentum", no_as_of, default_as_of=date(2018, 3, 2))
    book.record("momentum", _signal("SPX", 0.3, 0.3, as_of=date(2018, 3, 5)))
    assert book.signals_of("momentum", DAY) == {}  # the oldest of three days is dropped
    assert book.signals_of("momentum", date(2018, 3, 2))["SPX"]["as_of"] == "2018-03-02"
    assert book.signals_of("nobody", DAY) == {}


def test_members_run_before_the_agents_combining_them_and_a_cycle_is_refused():
    agents = {name: object() for name in ("ensemble", "momentum", "llm_analyst", "mean_reversion")}
    agents["ensemble"] = ensemble.Agent()
    params = {"ensemble": {"weights": {"momentum": 0.5, "llm_analyst": 0.5, "not_in_fleet": 1.0, "mean_reversion": 0}}}
    assert run_stages(agents, params) == [["momentum", "llm_analyst", "mean_reversion"], ["ensemble"]]
    loop = {"a": ensemble.Agent(), "b": ensemble.Agent()}
    with pytest.raises(ConfigError, match="in a cycle: a, b"):
        run_stages(loop, {"a": {"weights": {"b": 1}}, "b": {"weights": {"a": 1}}})


def test_replay_makes_one_llm_call_per_analyst_run_and_the_ensemble_blends_what_its_members_emitted(world, telemetry, span_exporter):
    fleet = build_test_fleet(world, telemetry)
    for day in world["calendar"][70:72]:
        fleet.run_cycle(day)
    fleet.shutdown()

    spans = span_exporter.get_finished_spans()
    roots = root_spans(span_exporter)
    chats = [s for s in spans if s.name.startswith("chat")]
    by_agent = Counter(s.attributes["gen_ai.agent.name"] for s in chats)
    assert by_agent == {"llm_analyst": 2}  # was 4: the ensemble called the model with the same prompt
    assert [s.attributes[semconv.RUN_LLM_CALLS] for s in roots if s.attributes["gen_ai.agent.name"] == "ensemble"] == [0, 0]
    weights = {"momentum": 0.4, "mean_reversion": 0.3, "llm_analyst": 0.3}
    for day in world["calendar"][70:72]:
        mine = {s.attributes["gen_ai.agent.name"]: s for s in roots if s.attributes[semconv.AGENT_RUN_AS_OF] == day.isoformat()}
        members = [mine[name] for name in weights]
        assert mine["ensemble"].start_time >= max(s.end_time for s in members)  # members first
        scores = {
            (s.attributes["gen_ai.agent.name"], e.attributes[semconv.ALPHA_SYMBOL]): e.attributes[semconv.ALPHA_SCORE_FINAL]
            for s in members
            for e in s.events
        }
        for event in mine["ensemble"].events:
            symbol = event.attributes[semconv.ALPHA_SYMBOL]
            expected = sum(w * scores[(name, symbol)] for name, w in weights.items())
            assert event.attributes[semconv.ALPHA_SCORE_FINAL] == pytest.approx(expected, abs=1e-6)
            assert event.attributes[semconv.ALPHA_MEMBERS] == ("momentum", "mean_reversion", "llm_analyst")
            assert semconv.ALPHA_MEMBERS_MISSING not in event.attributes


def test_killing_the_llm_analyst_stops_all_llm_spend_and_the_ensemble_says_it_is_missing(world, telemetry, span_exporter):
    world["kill_file"].write_text(json.dumps({"llm_analyst": {"reason": "too expensive", "by": "alice", "at": ""}}))
    fleet = build_test_fleet(world, telemetry)
    fleet.run_cycle(world["calendar"][70])
    fleet.shutdown()

    assert [s for s in span_exporter.get_finished_spans() if s.name.startswith("chat")] == []
    roots = {s.attributes["gen_ai.agent.name"]: s for s in root_spans(span_exporter)}
    assert sum(s.attributes[semconv.RUN_LLM_CALLS] for s in roots.values()) == 0
    events = roots["ensemble"].events
    assert len(events) == 2
    assert {e.attributes[semconv.ALPHA_MEMBERS_MISSING] for e in events} == {("llm_analyst",)}
    assert {e.attributes[semconv.ALPHA_MEMBERS] for e in events} == {("momentum", "mean_reversion")}


def test_combiners_combining_each_other_stop_start_up_with_exit_2(world, capsys, monkeypatch):
    import scheduler

    monkeypatch.setenv("ALPHATRACE_TRACE_FILE", str(world["tmp"] / "traces.jsonl"))
    config = world["config"]
    config.write_text(
        config.read_text()
        + '\n[agents.blend_a]\nmodule = "agents.ensemble"\nparams = { weights = { blend_b = 1.0 } }\n'
        + '\n[agents.blend_b]\nmodule = "agents.ensemble"\nparams = { weights = { blend_a = 1.0 } }\n'
    )
    assert scheduler.main(["--replay", "--config", str(config)]) == 2
    assert "agents combine each other's signals in a cycle: blend_a, blend_b" in capsys.readouterr().err
