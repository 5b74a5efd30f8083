"""Budgets over the shared store (a real redis-server): the day's spend holds across schedulers and
restarts, two hosts at the edge of a budget cannot both pass, and a store that is down stops calls
(``budget_on_store_down=closed``, the default) or lets them through and says so (``open``)."""

# ruff: noqa: F811 (the store's fixtures, imported from the kill-switch store tests, are test arguments here)
from __future__ import annotations

import threading

import pytest

from otel import semconv
from services.kill_switch_store import RedisSource
from services.simulated_llm import SimulatedLLMTransport
from services.spend_ledger import LedgerUnavailable, RedisSpendLedger
from tests.fleet_fixtures import build_test_fleet
from tests.test_budgets import configure, first_estimate, one_call, run_fleet, runs_of
from tests.test_kill_switch_store import CANARY, redis_available, server  # noqa: F401 (the store's fixtures)


def _ledger(server) -> RedisSpendLedger:
    return RedisSpendLedger(RedisSource(server.url, retry_after_s=0.0))


def test_a_daily_budget_on_the_store_holds_across_a_restart(server, world, telemetry, span_exporter):
    day = world["calendar"][70]
    cost, _ = one_call(day.isoformat())
    estimate, _ = first_estimate(day.isoformat())
    configure(world, budget=f"budget = {{ day_cost_usd = {estimate + cost * 1.5!r} }}")  # two calls fit, not a third
    assert run_fleet(world, telemetry, day, cycles=3, ledger=_ledger(server)).requests == 2
    assert [s.attributes[semconv.AGENT_RUN_OUTCOME] for s in runs_of(span_exporter)] == ["ok", "ok", "budget_exceeded"]
    # another scheduler (a restart, or another host) with its own connection to the store
    assert run_fleet(world, telemetry, day, ledger=_ledger(server)).requests == 0
    last = runs_of(span_exporter)[-1]
    assert last.attributes[semconv.BUDGET_NAME] == semconv.BUDGET_DAY_COST
    assert last.attributes[semconv.BUDGET_SPENT] == pytest.approx(2 * cost)
    assert not (world["tmp"] / "spend").exists()  # the store, not files


def test_two_hosts_at_the_edge_of_a_budget_cannot_both_pass(server):
    hosts = [_ledger(server), _ledger(server)]
    hosts[0].settle("2026-03-02", "spender", 0.0, 0.001, 900, False)  # one call spent, the largest
    barrier = threading.Barrier(2)
    answers = []

    def check(ledger: RedisSpendLedger) -> None:
        barrier.wait(timeout=60)
        answers.append(ledger.reserve("2026-03-02", "spender", 0.0, 0.0025, None).passed)

    threads = [threading.Thread(target=check, args=(host,)) for host in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(answers) == [False, True]
    refused = hosts[1].reserve("2026-03-02", "spender", 0.0, 0.0025, None)
    assert (refused.passed, refused.agent_spent, refused.fleet_spent, refused.estimate) == (False, 0.002, 0.002, 0.001)


def test_the_fleet_cap_counts_every_agent_on_the_store(server):
    ledger = _ledger(server)
    ledger.settle("2026-03-02", "a", 0.0, 0.004, 100, False)
    answer = ledger.reserve("2026-03-02", "b", 0.002, None, 0.005)
    assert (answer.passed, answer.refused_by, answer.fleet_spent) == (False, "fleet", 0.004)


@pytest.mark.parametrize("mode", ["closed", "open"])
def test_a_store_that_is_down_stops_calls_or_lets_them_through_and_says_so(server, world, telemetry, span_exporter, monkeypatch, mode):
    day = world["calendar"][70]
    configure(world, budget="budget = { day_cost_usd = 5.0 }")
    if mode == "open":
        monkeypatch.setenv("ALPHATRACE_BUDGET_ON_STORE_DOWN", "open")
    transport = SimulatedLLMTransport()
    fleet = build_test_fleet(world, telemetry, transport, ledger=_ledger(server))
    server.kill()
    fleet.run_cycle(day)
    fleet.shutdown()
    (run,) = runs_of(span_exporter)
    error = run.attributes[semconv.BUDGET_LEDGER_ERROR]
    assert "store redis://***@" in error and CANARY not in error
    if mode == "closed":
        assert transport.requests == 0
        assert run.attributes[semconv.AGENT_RUN_OUTCOME] == semconv.OUTCOME_BUDGET_EXCEEDED
        assert "fails closed" in run.attributes[semconv.RUN_STOP_REASON]
    else:
        assert transport.requests == 1
        assert run.attributes[semconv.AGENT_RUN_OUTCOME] == semconv.OUTCOME_OK
        assert run.attributes[semconv.BUDGET_UNCHECKED] is True


def test_the_ledger_says_when_the_store_is_unreachable(server):
    ledger = _ledger(server)
    server.kill()
    with pytest.raises(LedgerUnavailable) as down:
        ledger.reserve("2026-03-02", "a", 0.0, 1.0, None)
    assert down.value.shared and CANARY not in str(down.value)
