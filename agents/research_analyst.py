"""Research analyst: gives the model tools over the market data (as of the run's date only) and lets
it research the universe before it judges each symbol: the tools of ``services/research_tools.py``
(``price_features(symbol)``, ``recent_closes(symbol, days)``, ``market_regime()``), run by the tool
loop (``services/tool_loop.py``) until the model's final verdict, in the same JSON as the LLM
analyst's (``services.ai_analysis.parse_verdicts``), turned into signals the same way.

Every tool reads the market through ``AgentContext`` (its data view stops at ``as_of``), so the
model cannot see a later bar whatever it asks. A refused argument (a symbol outside the universe,
too many days) is a ``ToolError``: the model is told and may ask again. A run whose model still
asks for tools at the step limit ends as an error (``ToolLoopLimitError``) with no signals.

Parameters (``agents.toml``, declared in ``PARAMS``): ``horizon`` (trading days), ``max_steps`` (model
calls per run, at most), ``stream`` (stream this agent's calls; ``[llm] stream`` streams every call).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agents.base import AgentContext, Param, signal
from agents.features import MIN_HISTORY, price_features
from services.ai_analysis import parse_verdicts
from services.research_tools import (
    MAX_RECENT_DAYS,
    SYMBOLS_MARKER,
    TOOL_MARKET_REGIME,
    TOOL_PRICE_FEATURES,
    TOOL_RECENT_CLOSES,
    TOOL_SPECS,
)
from services.tool_loop import Tool, ToolError

PARAMS = {
    "horizon": Param(int, 5, minimum=1, maximum=250),
    "max_steps": Param(int, 6, minimum=1, maximum=20),
    "stream": Param(bool, False),
}

SYSTEM_PROMPT = (
    "You are a cautious quantitative analyst with tools over daily market data up to the as-of date. "
    "Research the instruments you are given with the tools (several calls at once are fine), then judge "
    "for each whether its price is more likely to be higher or lower after the horizon. When you are done, "
    "answer with JSON only, without calling a tool: "
    '{"signals": [{"symbol": str, "direction": "up"|"down"|"flat", "prob_up": number in [0,1], '
    '"confidence": number in [0,1], "rationale": short str}]}.'
)


def research_messages(as_of: str, horizon: int, symbols: list[str]) -> list[dict[str, Any]]:
    user = f"As-of date: {as_of}. Horizon: {horizon} trading days. Instruments to judge:\n{SYMBOLS_MARKER}\n{json.dumps(symbols)}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


class Agent:
    name = "research_analyst"

    def run(self, context: AgentContext) -> list[dict[str, Any]]:
        if context.tools is None:
            raise RuntimeError("research_analyst needs the tool loop (services.tool_loop) in its context")
        values = context.values(PARAMS)
        features = _universe_features(context)
        if not features:
            return []
        messages = research_messages(context.as_of.isoformat(), values["horizon"], sorted(features))
        answer = context.tools.run(messages, self.tools(context, features), values["max_steps"], stream=values["stream"] or None)
        verdicts = parse_verdicts(answer, set(features))
        out = []
        for symbol, verdict in sorted(verdicts.items()):
            score = 2.0 * verdict.prob_up - 1.0
            out.append(signal(context, symbol, score, verdict.confidence, str(features[symbol]["regime"]), values["horizon"]))
            out[-1]["prob_up"] = verdict.prob_up  # the model's own probability, not the score's mapping
            out[-1]["direction"] = verdict.direction
        return out

    def tools(self, context: AgentContext, features: Mapping[str, Mapping[str, float | str]]) -> list[Tool]:
        """The tools this run offers the model, bound to the run's context (its date and universe)
        and the universe's ``features`` as of that date (computed once a run)."""
        implementations = {
            TOOL_PRICE_FEATURES: lambda arguments: _features_of(context, features, _symbol(context, arguments)),
            TOOL_RECENT_CLOSES: lambda arguments: _recent_closes(context, arguments),
            TOOL_MARKET_REGIME: lambda arguments: _market_regime(context, features),
        }
        return [Tool(name, *TOOL_SPECS[name], run=implementations[name]) for name in TOOL_SPECS]


def _universe_features(context: AgentContext) -> dict[str, dict[str, float | str]]:
    computed = {symbol: price_features(context.closes(symbol, MIN_HISTORY)) for symbol in context.universe}
    return {symbol: values for symbol, values in computed.items() if values is not None}


def _symbol(context: AgentContext, arguments: Mapping[str, Any]) -> str:
    symbol = arguments.get("symbol")
    if symbol not in context.universe:
        raise ToolError(f"symbol must be one of the universe's symbols: {', '.join(context.universe)}")
    return symbol


def _features_of(context: AgentContext, features: Mapping[str, Mapping[str, float | str]], symbol: str) -> dict[str, Any]:
    values = features.get(symbol)
    if values is None:
        raise ToolError(f"{symbol} has fewer than {MIN_HISTORY} daily closes up to the as-of date")
    return {"symbol": symbol, "as_of": context.as_of.isoformat(), **values}


def _recent_closes(context: AgentContext, arguments: Mapping[str, Any]) -> dict[str, Any]:
    symbol = _symbol(context, arguments)
    days = arguments.get("days")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_RECENT_DAYS:
        raise ToolError(f"days must be a whole number from 1 to {MAX_RECENT_DAYS}")
    bars = context.market.closes(symbol, context.as_of, days)
    return {"symbol": symbol, "closes": [{"date": bar.day.isoformat(), "close": round(bar.close, 4)} for bar in bars]}


def _market_regime(context: AgentContext, features: Mapping[str, Mapping[str, float | str]]) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for values in features.values():
        counts[str(values["regime"])] = counts.get(str(values["regime"]), 0) + 1
    rising = sum(1 for values in features.values() if float(values["momentum_60d"]) > 0)
    return {
        "as_of": context.as_of.isoformat(),
        "symbols": len(features),
        "regimes": dict(sorted(counts.items())),
        "breadth": round(rising / len(features), 4) if features else None,
    }
