"""What an agent is given and what it returns.

An agent is a module with a class ``Agent`` whose ``run(context)`` returns signals in the seed's
schema (``symbol``, ``direction``, ``prob_up``, ``confidence``, ``ensemble_score_final``, ``regime``,
plus ``horizon`` and ``as_of``): one dict or a list. ``AgentContext`` hands it the as-of date, a view
of the market data that cannot see past that date, its parameters, the LLM analyst and the book of
other agents' recent signals (``services/signal_book.py``), which an agent combining others reads.

Reads no environment variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

from services.ai_analysis import AIAnalysis
from services.market_data import MarketData
from services.signal_book import SignalBook


@dataclass(frozen=True)
class AgentContext:
    as_of: date
    market: MarketData
    universe: tuple[str, ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    llm: AIAnalysis | None = None
    signals: SignalBook | None = None

    def closes(self, symbol: str, lookback: int) -> list[float]:
        """Closing prices up to and including ``as_of``, oldest first."""
        return [bar.close for bar in self.market.closes(symbol, self.as_of, lookback)]

    def param(self, name: str, default: Any) -> Any:
        return self.params.get(name, default)


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
