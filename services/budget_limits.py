"""Budget limits as ``agents/agents.toml`` states them, checked at start-up.

Per agent, ``[agents.NAME.budget]`` (or ``budget = { ... }`` in the agent's table):

* ``run_cost_usd``: what one run may spend on LLM calls, USD;
* ``day_cost_usd``: what the agent may spend in one UTC day (the clock's day), USD;
* ``run_tokens``: input plus output tokens one run may use.

Fleet-wide, ``[fleet.budget]``: ``day_cost_usd``, what every agent together may spend in one UTC day.

Every limit is optional: absent means unlimited (the default, so a fleet without budgets runs as
before). A value must be a positive finite number (``run_tokens`` a positive whole number); anything
else, and any other key, is a ``ConfigError`` naming the key. ``services/budgets.py`` enforces them.

Reads no environment variables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from services.config_error import ConfigError, check_known

AGENT_BUDGET_KEYS = ("run_cost_usd", "day_cost_usd", "run_tokens")
FLEET_BUDGET_KEYS = ("day_cost_usd",)


@dataclass(frozen=True)
class AgentBudget:
    """An agent's limits; ``None``: unlimited."""

    run_cost_usd: float | None = None
    day_cost_usd: float | None = None
    run_tokens: int | None = None

    @property
    def limited(self) -> bool:
        return any(value is not None for value in (self.run_cost_usd, self.day_cost_usd, self.run_tokens))

    @property
    def in_usd(self) -> bool:
        return self.run_cost_usd is not None or self.day_cost_usd is not None


def _usd(table: dict[str, Any], key: str, where: str) -> float | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{where}.{key} must be a positive number of USD (leave it out for no limit), got {value!r}")
    return float(value)


def _table(value: Any, where: str, known: tuple[str, ...]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table such as {{ {known[0]} = 1.0 }}")
    check_known(value, known, f"[{where}]", "key")
    return value


def parse_agent_budget(value: Any, where: str) -> AgentBudget:
    """``value``: the agent's ``budget`` table (``None``: none); ``where``: ``source: agents.NAME.budget``."""
    table = _table(value, where, AGENT_BUDGET_KEYS)
    tokens = table.get("run_tokens")
    if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1):
        raise ConfigError(f"{where}.run_tokens must be a positive whole number of tokens (leave it out for no limit), got {tokens!r}")
    return AgentBudget(_usd(table, "run_cost_usd", where), _usd(table, "day_cost_usd", where), tokens)


def parse_fleet_budget(value: Any, where: str) -> float | None:
    """The fleet's daily cap in USD from ``[fleet.budget]`` (``None``: none)."""
    return _usd(_table(value, where, FLEET_BUDGET_KEYS), "day_cost_usd", where)
