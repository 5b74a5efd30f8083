"""LLM analyst: sends the computed features of the whole universe to the model in one call and
turns its verdict per symbol into ``prob_up`` and a score.

Parameters (``agents.toml``, declared in ``PARAMS``): ``horizon`` (trading days).
"""

from __future__ import annotations

from typing import Any

from agents.base import AgentContext, Param, signal
from agents.features import MIN_HISTORY, price_features

PARAMS = {"horizon": Param(int, 5, minimum=1, maximum=250)}


class Agent:
    name = "llm_analyst"

    def run(self, context: AgentContext) -> list[dict[str, Any]]:
        if context.llm is None:
            raise RuntimeError("llm_analyst needs the LLM analyst (services.ai_analysis) in its context")
        horizon = context.values(PARAMS)["horizon"]
        features = {}
        for symbol in context.universe:
            computed = price_features(context.closes(symbol, MIN_HISTORY))
            if computed is not None:
                features[symbol] = computed
        if not features:
            return []
        verdicts = context.llm.analyze(features, context.as_of.isoformat(), horizon)
        out = []
        for symbol, verdict in sorted(verdicts.items()):
            score = 2.0 * verdict.prob_up - 1.0
            out.append(signal(context, symbol, score, verdict.confidence, str(features[symbol]["regime"]), horizon))
            out[-1]["prob_up"] = verdict.prob_up  # the model's own probability, not the score's mapping
            out[-1]["direction"] = verdict.direction
        return out
