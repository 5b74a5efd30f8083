"""``build_report(..., spend_tallies=True)`` (what the CLI does without evaluation spans): each agent's
tally is let go, but for its alpha signals, as soon as its section is made. The report is the same
as with the tallies kept, the alpha-quality and worth sections included (they read the signals after
the agents' sections), also when open runs' deferred calls make the report's copy of the tallies
(``with_deferred``)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from meta_supervisor import native_core
from meta_supervisor.assemble.report import KillSwitchState, build_report
from meta_supervisor.build.dispatch import build_inputs
from meta_supervisor.build.options import BuildOptions
from meta_supervisor.tally.aggregates import AgentTally
from services.pricing import PriceTable
from tests import genai_fixtures
from tests.fixtures.report.otlp_builder import lines_for
from tests.test_report_parallel import MARKET, runs

PRICES = PriceTable.load()
NOW = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)


@pytest.fixture(params=["off", "on"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(native_core.ENV, request.param)
    return request.param


def both_reports(path: Path) -> tuple[dict, dict, dict]:
    """(the report with the tallies kept, the report spending them, the spent build's agents)."""
    kept_data, _ = build_inputs(BuildOptions(inputs=[str(path)], prices=PRICES, workers=1))
    kept = build_report(kept_data, PRICES, KillSwitchState(path="k"), NOW, market=MARKET)
    assert all(isinstance(tally, AgentTally) for tally in kept_data.agents.values())  # not spent by default
    spent_data, _ = build_inputs(BuildOptions(inputs=[str(path)], prices=PRICES, workers=1))
    signals = {name: tally.signals for name, tally in spent_data.agents.items()}
    spent = build_report(spent_data, PRICES, KillSwitchState(path="k"), NOW, market=MARKET, spend_tallies=True)
    assert {name: tally.signals for name, tally in spent_data.agents.items()} == signals  # the same stores, kept
    return kept, spent, spent_data.agents


def test_spent_tallies_give_the_same_report(reader: str, tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_text("".join(lines_for(runs(120), per_line=3)))
    kept, spent, agents = both_reports(path)
    assert spent == kept
    assert sorted(agents) == ["a", "b", "c"]
    assert not any(isinstance(tally, AgentTally) for tally in agents.values())  # let go, but for the signals
    assert spent["alpha_quality"]["signals"] == 120 and spent["worth"] is not None
    assert sum(agent["runs"] for agent in spent["agents"].values()) == 120


def test_spent_tallies_with_deferred_calls(reader: str, tmp_path: Path) -> None:
    """Children whose agent span never comes: their calls count for "(unknown agent)" in the report's
    own copy of the tallies, which is let go of as well."""
    path = genai_fixtures.write(tmp_path, "openllmetry")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(line for line in lines if '"news_analyst.agent"' not in line) + "".join(lines_for(runs(30))))
    kept, spent, agents = both_reports(path)
    assert spent == kept
    assert kept["agents"]["(unknown agent)"]["llm_operations"]  # the deferred calls are in the report
    assert not any(isinstance(tally, AgentTally) for tally in agents.values())
