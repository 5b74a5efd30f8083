"""Budgets: a call that would break one is not made, and the run ends with outcome ``budget_exceeded``.

The limits come from ``agents/agents.toml`` (``services/budget_limits.py``): per agent ``run_cost_usd``,
``day_cost_usd`` and ``run_tokens``; for the fleet ``[fleet.budget] day_cost_usd``. ``FleetBudgets``
holds them for a scheduler process; ``open_run`` gives a run its ``RunBudget``, whose ``check`` the
scheduler adds to the run's checkpoints (run before every LLM call, ``otel.run_context.checkpoint``)
and whose ``record`` to its usage listeners (called by ``RunTelemetry.add_llm_usage`` after every
call, whoever made it). A check that says stop raises ``RunStopped(OUTCOME_BUDGET_EXCEEDED, ...)``
with the budget's name, limit, what was spent and the next call's estimate as root-span attributes
(``alphatrace.budget.*``), and sends one ``budget.exceeded`` alert per agent, budget and day.

What counts as spend (the rules, docs/telemetry-contract.md "Budgets"):

* a priced call: its cost from the price table (cache reads, cache writes and reasoning tokens
  each at their rate, ``services/pricing.py``);
* a simulated call: the price of the model it stands in for (the configured model), marked as an
  estimate (``alphatrace.budget.estimated``), so budgets behave in the demo as they would for real;
* a real model missing from the price table: its tokens count toward ``run_tokens``, but a USD
  budget cannot be checked for it, so the check fails closed: the call is not made (the configured
  model is looked up before each call; a response from an unpriced model stops the run's next call).
  Unpriced spend is never counted as $0.

Before a call, its cost is not known, so the check adds an estimate: the larger of the call's own
estimate and the largest call of the agent seen so far (by this process, or recorded in the ledger
that day). The call's own estimate is what the request about to be sent would cost at the configured
model's price (a simulated call's stand-in): its input tokens counted from its messages (about four
characters a token) and its output allowance (``max_completion_tokens``/``max_tokens``, else
``services.call_estimate.DEFAULT_OUTPUT_TOKENS``, 1,000), left on the run by the LLM wrapper just
before the checkpoint (``RunTelemetry.next_call``); a check that sees no request (a caller of
``checkpoint`` other than the wrapper) takes the output allowance alone. So even an agent's very
first call is estimated at what it may cost, never $0. Token budgets do the same in tokens. Day budgets (the agent's and the fleet's) are
checked and the estimate reserved in one atomic step of the spend ledger (``services/spend_ledger.py``:
files under a lock, or the shared store), and the reservation is settled to the call's cost after
it: two runs of the same agent at the edge of a budget cannot both pass, and a restart loses nothing
(the day's spend is in the ledger, not in the process).

A ledger that cannot be read or written stops the call (fail closed) and says why on the run span
(``alphatrace.budget.ledger.error``); for the shared store, ``ALPHATRACE_BUDGET_ON_STORE_DOWN=open``
lets calls through unchecked instead, and the run says so (``alphatrace.budget.unchecked``).

Environment: ``ALPHATRACE_BUDGET_ON_STORE_DOWN`` (``services/kill_switch_store.py``),
``ALPHATRACE_SPEND_DIR`` (``services/spend_ledger.py``), both read by ``build_budgets``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from otel import semconv
from otel.run_context import CallEstimate, LLMUsage, RunStopped, RunTelemetry
from services.alerts import ALERT_BUDGET_EXCEEDED, Alert, AlertSink, NoAlerts, stamp
from services.budget_limits import AgentBudget
from services.call_estimate import DEFAULT_OUTPUT_TOKENS
from services.clock import Clock
from services.config_error import ConfigError
from services.kill_switch_store import FAIL_CLOSED, FAIL_OPEN, FLEET_SPEND, budget_on_store_down
from services.pricing import PriceTable
from services.spend_ledger import AGENT_LIMIT, LedgerUnavailable, SpendLedger, ledger_for, would_pass
from services.terminal_text import term

logger = logging.getLogger("alphatrace.budgets")
MAX_ALERTED = 10_000  # (agent, budget, day) already alerted, remembered by this process


@dataclass(frozen=True)
class _Stop:
    budget: str
    limit: float
    spent: float | None
    unit: str
    next_call: float
    why: str = ""


class FleetBudgets:
    """The fleet's budgets in one scheduler process. ``model``: the model the agents call (a simulated
    run's stand-in); ``ledger``: where day spend lives (needed when a day budget is set)."""

    def __init__(
        self,
        agents: Mapping[str, AgentBudget],
        fleet_day_cost_usd: float | None,
        clock: Clock,
        prices: PriceTable,
        model: str,
        ledger: SpendLedger | None = None,
        alerts: AlertSink | None = None,
        on_store_down: str = FAIL_CLOSED,
        simulated: bool = False,
    ) -> None:
        needs_ledger = fleet_day_cost_usd is not None or any(b.day_cost_usd is not None for b in agents.values())
        if needs_ledger and ledger is None:
            raise ValueError("a day budget needs a spend ledger")
        self.agents = dict(agents)
        self.fleet_day_cost_usd = fleet_day_cost_usd
        self.clock = clock
        self.prices = prices
        self.model = model
        self.ledger = ledger
        self.alerts = alerts or NoAlerts()
        self.on_store_down = on_store_down
        self.simulated = simulated  # every call is simulated: all spend is an estimate
        self._lock = threading.Lock()
        self._largest: dict[str, tuple[float, int]] = {}  # agent -> its largest call seen (USD, tokens)
        self._alerted: set[tuple[str, str, str]] = set()

    def describe(self) -> str:
        limited = sorted(name for name, budget in self.agents.items() if budget.limited)
        parts = [f"agents {', '.join(limited) or 'none'}"]
        if self.fleet_day_cost_usd is not None:
            parts.append(f"fleet {self.fleet_day_cost_usd:g} USD a day")
        if self.ledger is not None:
            parts.append(f"day spend in {self.ledger.describe()}")
        return "; ".join(parts)

    def open_run(self, run: RunTelemetry) -> RunBudget | None:
        """The run's budget, or ``None`` when nothing limits this agent's calls."""
        budget = self.agents.get(run.agent, AgentBudget())
        if not budget.limited and self.fleet_day_cost_usd is None:
            return None
        return RunBudget(self, run, budget)

    def day(self) -> str:
        return self.clock.now().astimezone(UTC).date().isoformat()

    def largest(self, agent: str) -> tuple[float, int]:
        with self._lock:
            return self._largest.get(agent, (0.0, 0))

    def call_estimate(self, call: CallEstimate | None) -> tuple[float, int]:
        """What the call about to be made may cost (USD at the configured model's price; 0 for an
        unpriced model, which a USD budget refuses anyway) and use in tokens (the module's docstring)."""
        call = call or CallEstimate(0, DEFAULT_OUTPUT_TOKENS)
        usd = self.prices.cost(self.model, call.tokens_in, call.tokens_out)
        return usd or 0.0, call.tokens

    def saw_call(self, agent: str, usd: float | None, tokens: int) -> None:
        with self._lock:
            old_usd, old_tokens = self._largest.get(agent, (0.0, 0))
            self._largest[agent] = (max(old_usd, usd or 0.0), max(old_tokens, tokens))

    def first_alert(self, agent: str, budget: str, day: str) -> bool:
        """True once per (agent, budget, day) in this process (the webhook deduplicates again)."""
        with self._lock:
            key = (agent, budget, day)
            if key in self._alerted:
                return False
            if len(self._alerted) >= MAX_ALERTED:
                self._alerted.clear()
            self._alerted.add(key)
            return True


class RunBudget:
    """One run's budget state: its spend and tokens so far, and the day reservations not yet settled."""

    def __init__(self, budgets: FleetBudgets, run: RunTelemetry, budget: AgentBudget) -> None:
        self._budgets = budgets
        self._run = run
        self._budget = budget
        self._lock = threading.Lock()
        self.spent_usd = 0.0
        self.tokens = 0
        self.estimated = False
        self.unpriced_model: str | None = None
        self._largest_usd = 0.0
        self._largest_tokens = 0
        self._pending: list[tuple[str, float]] = []  # (day, reserved USD) per call checked, not yet recorded
        self.uses_ledger = budget.day_cost_usd is not None or budgets.fleet_day_cost_usd is not None

    @property
    def in_usd(self) -> bool:
        return self._budget.in_usd or self._budgets.fleet_day_cost_usd is not None

    # --- before each call -------------------------------------------------------------------

    def check(self, run: RunTelemetry, step: str) -> None:
        """The run's checkpoint: before an LLM call, every budget; raises ``RunStopped`` to stop."""
        if step != semconv.STEP_LLM_CALL:
            return  # only model calls spend
        self._settle_unrecorded()
        stop = self._run_limits()
        if stop is None and self.in_usd:
            stop = self._unpriced()
        if stop is None and self.uses_ledger:
            stop = self._day_limits()
        if stop is not None:
            self._stop(step, stop)

    def _estimates(self) -> tuple[float, int]:
        agent_usd, agent_tokens = self._budgets.largest(self._run.agent)
        call_usd, call_tokens = self._budgets.call_estimate(self._run.next_call)
        with self._lock:
            return max(agent_usd, self._largest_usd, call_usd), max(agent_tokens, self._largest_tokens, call_tokens)

    def _run_limits(self) -> _Stop | None:
        next_usd, next_tokens = self._estimates()
        with self._lock:
            spent, tokens = self.spent_usd, self.tokens
        limit = self._budget.run_tokens
        if would_pass(tokens, next_tokens, limit):
            return _Stop(semconv.BUDGET_RUN_TOKENS, float(limit), float(tokens), semconv.BUDGET_UNIT_TOKENS, float(next_tokens))
        limit_usd = self._budget.run_cost_usd
        if would_pass(spent, next_usd, limit_usd):
            return _Stop(semconv.BUDGET_RUN_COST, limit_usd, spent, semconv.BUDGET_UNIT_USD, next_usd)
        return None

    def _first_usd_budget(self) -> tuple[str, float]:
        for name, limit in (
            (semconv.BUDGET_RUN_COST, self._budget.run_cost_usd),
            (semconv.BUDGET_DAY_COST, self._budget.day_cost_usd),
            (semconv.BUDGET_FLEET_DAY_COST, self._budgets.fleet_day_cost_usd),
        ):
            if limit is not None:
                return name, limit
        raise AssertionError("no USD budget")

    def _unpriced(self) -> _Stop | None:
        """A USD budget cannot be checked for a model without a price: it fails closed."""
        model = self.unpriced_model
        if model is None and self._budgets.prices.price_for(self._budgets.model) is None:
            model = self._budgets.model
        if model is None:
            return None
        name, limit = self._first_usd_budget()
        why = (
            f"model {model} has no price in the price table ({self._budgets.prices.version}), so a USD budget cannot be "
            "checked and fails closed; add the model to the table (ALPHATRACE_PRICE_TABLE)"
        )
        return _Stop(name, limit, None, semconv.BUDGET_UNIT_USD, 0.0, why)

    def _day_limits(self) -> _Stop | None:
        budgets = self._budgets
        day = budgets.day()
        floor, _ = self._estimates()
        try:
            answer = budgets.ledger.reserve(day, self._run.agent, floor, self._budget.day_cost_usd, budgets.fleet_day_cost_usd)
        except LedgerUnavailable as exc:
            return self._ledger_down(exc)
        if answer.passed:
            with self._lock:
                self._pending.append((day, answer.estimate))
            return None
        if answer.refused_by == AGENT_LIMIT:
            return _Stop(semconv.BUDGET_DAY_COST, self._budget.day_cost_usd, answer.agent_spent, semconv.BUDGET_UNIT_USD, answer.estimate)
        return _Stop(
            semconv.BUDGET_FLEET_DAY_COST, budgets.fleet_day_cost_usd, answer.fleet_spent, semconv.BUDGET_UNIT_USD, answer.estimate
        )

    def _ledger_down(self, exc: LedgerUnavailable) -> _Stop | None:
        message = str(exc)
        self._mark(semconv.BUDGET_LEDGER_ERROR, message)
        if exc.shared and self._budgets.on_store_down == FAIL_OPEN:
            self._mark(semconv.BUDGET_UNCHECKED, True)
            logger.warning(
                "Agent %s: day budget not checked, the store is down (budget_on_store_down=open): %s", self._run.agent, term(message)
            )
            return None
        name = semconv.BUDGET_DAY_COST if self._budget.day_cost_usd is not None else semconv.BUDGET_FLEET_DAY_COST
        limit = self._budget.day_cost_usd if self._budget.day_cost_usd is not None else self._budgets.fleet_day_cost_usd
        why = f"the spend ledger cannot be read ({message}); the day budget fails closed"
        return _Stop(name, limit, None, semconv.BUDGET_UNIT_USD, 0.0, why)

    def _mark(self, key: str, value: Any) -> None:
        span = self._run.span
        if span is not None:
            span.set_attribute(key, value)

    def _stop(self, step: str, stop: _Stop) -> None:
        attributes: dict[str, Any] = {
            semconv.BUDGET_NAME: stop.budget,
            semconv.BUDGET_LIMIT: float(stop.limit),
            semconv.BUDGET_UNIT: stop.unit,
            semconv.BUDGET_NEXT_CALL: float(stop.next_call),
            semconv.BUDGET_ESTIMATED: self.estimated or self._budgets.simulated,
        }
        if stop.spent is not None:
            attributes[semconv.BUDGET_SPENT] = float(stop.spent)
        reason = stop.why or (
            f"{stop.budget}: {stop.spent:.10g} of {stop.limit:.10g} {stop.unit} spent; "
            f"the next call (estimated {stop.next_call:.10g}) would pass it"
        )
        agent = self._run.agent
        logger.warning("Agent %s stopped by its budget before its %s (%s)", agent, step, term(reason))
        day = self._budgets.day()
        if self._budgets.first_alert(agent, stop.budget, day):
            figures = {
                "budget": stop.budget,
                "limit": stop.limit,
                "spent": stop.spent,
                "unit": stop.unit,
                "day": day,
                "run_id": self._run.run_id,
            }
            span = self._run.span
            if span is not None and span.get_span_context().is_valid:
                figures["trace_id"] = format(span.get_span_context().trace_id, "032x")
            summary = f"{stop.budget} budget stopped a run before its next LLM call: {reason}"
            self._budgets.alerts.send(Alert(ALERT_BUDGET_EXCEEDED, agent, summary, figures, at=stamp(), dedup=f"{stop.budget}:{day}"))
        raise RunStopped(semconv.OUTCOME_BUDGET_EXCEEDED, step, reason, attributes)

    # --- after each call --------------------------------------------------------------------

    def record(self, run: RunTelemetry, usage: LLMUsage) -> None:
        """The run's usage listener: count the call and settle its day reservation to its cost."""
        spend = usage.spend_usd
        with self._lock:
            self.tokens += usage.tokens
            self._largest_tokens = max(self._largest_tokens, usage.tokens)
            if spend is None:
                self.unpriced_model = self.unpriced_model or usage.model or self._budgets.model
            else:
                self.spent_usd += spend
                self._largest_usd = max(self._largest_usd, spend)
                self.estimated = self.estimated or usage.estimated
            pending = self._pending.pop(0) if self._pending else None
        self._budgets.saw_call(run.agent, spend, usage.tokens)
        if not self.uses_ledger:
            return
        day, reserved = pending if pending is not None else (self._budgets.day(), 0.0)
        # An unpriced call keeps its reservation as its cost: never counted as $0.
        actual = reserved if spend is None else spend
        self._settle(day, reserved, actual, usage.tokens, usage.estimated)

    def _settle(self, day: str, reserved: float, actual: float, tokens: int, estimated: bool) -> None:
        try:
            self._budgets.ledger.settle(day, self._run.agent, reserved, actual, tokens, estimated)
        except LedgerUnavailable as exc:
            self._mark(semconv.BUDGET_LEDGER_ERROR, str(exc))
            logger.warning("Agent %s: a call's spend could not be recorded in the ledger: %s", self._run.agent, term(str(exc)))

    def _settle_unrecorded(self) -> None:
        """Reservations of calls that were checked but never counted (the agent gave up before the
        call): released before the next check."""
        with self._lock:
            pending, self._pending = self._pending, []
        for day, reserved in pending:
            self._settle(day, reserved, 0.0, 0, False)

    def close(self) -> None:
        """The run ended: release what it reserved and never spent."""
        if self.uses_ledger:
            self._settle_unrecorded()


def build_budgets(
    fleet: Any,
    clock: Clock,
    prices: PriceTable,
    model: str,
    kill_source: object,
    alerts: AlertSink | None = None,
    ledger: SpendLedger | None = None,
    env: Mapping[str, str] | None = None,
    simulated: bool = False,
) -> FleetBudgets | None:
    """The fleet's budgets at start-up (``None`` when it has none): the ledger is the shared store
    when the kill switch reads one, else the files in ``ALPHATRACE_SPEND_DIR``. A fleet on the store
    with an agent named ``fleet`` is a ``ConfigError`` (the name of the fleet's total)."""
    agents = {name: spec.budget for name, spec in fleet.agents.items()}
    if not fleet.has_budgets:
        return None
    on_store_down = budget_on_store_down(None, env)
    needs_ledger = fleet.fleet_day_cost_usd is not None or any(b.day_cost_usd is not None for b in agents.values())
    if needs_ledger and ledger is None:
        ledger = ledger_for(kill_source, env)
    if ledger is not None and ledger.shared and FLEET_SPEND in fleet.agents:
        raise ConfigError(
            f"{fleet.source}: an agent named {FLEET_SPEND!r} cannot have its spend in the shared store (the fleet total's key); rename it"
        )
    if prices.price_for(model) is None and (fleet.fleet_day_cost_usd is not None or any(b.in_usd for b in agents.values())):
        logger.warning("model %s has no price in the price table: every call checked against a USD budget will be refused", model)
    return FleetBudgets(agents, fleet.fleet_day_cost_usd, clock, prices, model, ledger, alerts, on_store_down, simulated)
