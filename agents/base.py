"""What an agent is given and what it returns.

An agent is a module with a class ``Agent`` whose ``run(context)`` returns signals in the seed's
schema (``symbol``, ``direction``, ``prob_up``, ``confidence``, ``ensemble_score_final``, ``regime``,
plus ``horizon`` and ``as_of``): one dict or a list. ``AgentContext`` hands it the as-of date, a view
of the market data that cannot see past that date, its parameters, the LLM analyst, the tool loop
(``services/tool_loop.py``) and the book of other agents' recent signals
(``services/signal_book.py``), which an agent combining others reads.

An agent module declares its parameters in ``PARAMS``, a dict of name to ``Param`` (type, default,
range); ``services.fleet_config.load_agent`` checks the ``params`` of its ``[agents.NAME]`` table
against it at start-up (``check_params``): an unknown name, a wrong type or a value out of range is a
``ConfigError``, never a silent default. ``context.values(PARAMS)`` gives the run its parameters, the
configured values over the declared defaults.

Reads no environment variables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

from services.ai_analysis import AIAnalysis
from services.config_error import ConfigError, check_known
from services.market_data import MarketData
from services.signal_book import SignalBook
from services.tool_loop import ToolLoop

_KIND_NAMES = {int: "a whole number", float: "a number", str: "a string", bool: "true or false", dict: "a table"}


@dataclass(frozen=True)
class Param:
    """One declared parameter. ``kind`` is ``int``, ``float``, ``str``, ``bool`` or ``dict``; numbers must lie in
    [``minimum``, ``maximum``] (and be above zero with ``positive``). A ``dict`` is a table of numbers
    keyed by ``keys`` (each number checked against the same range); ``key_kind`` names what a key is
    in the error for an unknown one (``"agent"``: "unknown agent 'x'; did you mean ...?")."""

    kind: type
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False
    keys: tuple[str, ...] | None = ()  # None: any names (checked elsewhere, e.g. members against the fleet)
    key_kind: str = "name"

    def describe(self) -> str:
        what = _KIND_NAMES[self.kind]
        if self.kind is dict:
            what = "a table of numbers" + (f" keyed by {', '.join(self.keys)}" if self.keys is not None else "")
        limits = [
            text
            for given, text in (
                (self.positive, "> 0"),
                (self.minimum is not None, f">= {self.minimum}"),
                (self.maximum is not None, f"<= {self.maximum}"),
            )
            if given
        ]
        return f"{what}{' ' + ' and '.join(limits) if limits else ''} (default {self.default!r})"

    def _number(self, value: Any, where: str) -> float:
        whole = self.kind is int
        if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where} = {value!r}: must be {self.describe()}")
        if (
            (self.positive and value <= 0)
            or (self.minimum is not None and value < self.minimum)
            or (self.maximum is not None and value > self.maximum)
        ):
            raise ConfigError(f"{where} = {value!r}: must be {self.describe()}")
        return value if whole else float(value)

    def check(self, value: Any, where: str) -> Any:
        """The value as the agent uses it, or ``ConfigError`` naming ``where``, the value and the rule."""
        if self.kind in (str, bool):
            if not isinstance(value, self.kind):
                raise ConfigError(f"{where} = {value!r}: must be {self.describe()}")
            return value
        if self.kind is not dict:
            return self._number(value, where)
        if not isinstance(value, dict):
            raise ConfigError(f"{where} = {value!r}: must be {self.describe()}")
        if self.keys is not None:
            check_known(value, self.keys, where, self.key_kind)
        return {key: self._number(item, f"{where}.{key}") for key, item in value.items()}


def check_params(declared: Mapping[str, Param], given: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``given`` checked against ``declared`` (``where`` names the table, e.g. ``agents.x.params``),
    defaults filled in; ``ConfigError`` for an undeclared name, a wrong type or an out-of-range value."""
    check_known(given, declared, where, "parameter")
    return {name: param.check(given[name], f"{where}.{name}") if name in given else param.default for name, param in declared.items()}


@dataclass(frozen=True)
class AgentContext:
    as_of: date
    market: MarketData
    universe: tuple[str, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    llm: AIAnalysis | None = None
    signals: SignalBook | None = None
    tools: ToolLoop | None = None  # the tool loop over ``llm``, for an agent that offers the model tools

    def closes(self, symbol: str, lookback: int) -> list[float]:
        """Closing prices up to and including ``as_of``, oldest first."""
        return [bar.close for bar in self.market.closes(symbol, self.as_of, lookback)]

    def param(self, name: str, default: Any) -> Any:
        return self.params.get(name, default)

    def values(self, declared: Mapping[str, Param]) -> dict[str, Any]:
        """The run's parameters: the configured ones (checked at start-up) over ``declared``'s defaults."""
        return {name: self.params.get(name, param.default) for name, param in declared.items()}


class Agent(Protocol):
    name: str

    def run(self, context: AgentContext) -> list[dict[str, Any]]: ...


def signal(context: AgentContext, symbol: str, score: float, confidence: float, regime: str, horizon: int) -> dict[str, Any]:
    """A signal in the seed's schema from a score in [-1, 1]: up/down beyond +-0.1, flat between."""
    score = max(-1.0, min(1.0, score))
    direction = "up" if score > 0.1 else "down" if score < -0.1 else "flat"
    return {
        "symbol": symbol,
        "direction": direction,
        "prob_up": round(0.5 + 0.4 * score, 6),
        "confidence": round(max(0.0, min(1.0, confidence)), 6),
        "ensemble_score_final": round(score, 6),
        "regime": regime,
        "horizon": horizon,
        "as_of": context.as_of.isoformat(),
    }
