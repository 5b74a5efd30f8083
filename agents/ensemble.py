"""Ensemble: a confidence-weighted blend of momentum, mean reversion and the LLM analyst per symbol,
producing the seed's ``ensemble_score_final``.

Parameters (``agents.toml``, declared in ``PARAMS``): ``horizon`` and ``weights`` (a table with
``momentum``, ``mean_reversion``, ``llm_analyst``; default 0.4 / 0.3 / 0.3; any other name is an error
at start-up). Components are computed in-process, so one ensemble run makes one LLM call.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agents import llm_analyst, mean_reversion, momentum
from agents.base import AgentContext, Param, signal

DEFAULT_WEIGHTS = {"momentum": 0.4, "mean_reversion": 0.3, "llm_analyst": 0.3}
PARAMS = {
    "horizon": Param(int, 5, minimum=1, maximum=250),
    "weights": Param(dict, DEFAULT_WEIGHTS, minimum=0, keys=tuple(DEFAULT_WEIGHTS), key_kind="agent"),
}


class Agent:
    name = "ensemble"

    def run(self, context: AgentContext) -> list[dict[str, Any]]:
        horizon = int(context.param("horizon", 5))
        weights = {**DEFAULT_WEIGHTS, **dict(context.param("weights", {}))}
        components = {"momentum": momentum.Agent(), "mean_reversion": mean_reversion.Agent()}
        if context.llm is not None:
            components["llm_analyst"] = llm_analyst.Agent()
        inner = replace(context, params={"horizon": horizon})
        blended: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        for name, component in components.items():
            for item in component.run(inner):
                blended.setdefault(item["symbol"], []).append((float(weights[name]), item))
        out = []
        for symbol, parts in sorted(blended.items()):
            total = sum(weight for weight, _ in parts)
            if total <= 0:
                continue
            score = sum(weight * item["ensemble_score_final"] for weight, item in parts) / total
            confidence = sum(weight * item["confidence"] for weight, item in parts) / total
            out.append(signal(context, symbol, score, confidence, parts[0][1]["regime"], horizon))
        return out
