"""Ensemble: a confidence-weighted blend of other agents' signals per symbol, producing the seed's
``ensemble_score_final``.

It combines its members' *recorded* signals of the same as-of date from the signal book
(``services/signal_book.py``, ``context.signals``); it computes nothing itself and makes no LLM call,
so the LLM analyst's cost is paid once, in the analyst's own run, and killing the analyst stops all
LLM spend. The scheduler runs members before combiners (``services/run_order.py``, from these
weights). A member with no signal for the date (killed, failed, not run yet) is left out and the
remaining weights renormalised; every signal names the members it blended (``members``) and those
missing (``members_missing``). With no member signal for a symbol there is no signal for it.

Parameters (``agents.toml``, declared in ``PARAMS``): ``horizon`` (default 5) and ``weights`` (member
agent name -> weight; default momentum 0.4, mean_reversion 0.3, llm_analyst 0.3). Every member must be
an agent of the fleet: a name that is not is an error at start-up ("did you mean ...?").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents.base import AgentContext, Param, signal
from agents.ensemble_weights import DEFAULT_WEIGHTS, member_weights

__all__ = ["DEFAULT_WEIGHTS", "PARAMS", "Agent", "member_weights"]
PARAMS = {
    "horizon": Param(int, 5, minimum=1, maximum=250),
    "weights": Param(dict, DEFAULT_WEIGHTS, minimum=0, keys=None),  # members: agents of the fleet (run_order)
}


class Agent:
    name = "ensemble"

    def members(self, params: Mapping[str, Any]) -> list[str]:
        """The agents whose signals this one combines: the scheduler runs them first."""
        return list(member_weights(params))

    def run(self, context: AgentContext) -> list[dict[str, Any]]:
        if context.signals is None:
            raise RuntimeError("ensemble needs the signal book (services.signal_book) in its context")
        horizon = int(context.param("horizon", 5))
        weights = member_weights(context.params)
        recorded = {name: context.signals.signals_of(name, context.as_of) for name in weights}
        out = []
        for symbol in sorted(context.universe):
            parts = [(weights[name], recorded[name][symbol]) for name in weights if symbol in recorded[name]]
            total = sum(weight for weight, _ in parts)
            if not parts or total <= 0:
                continue
            score = sum(weight * float(item["ensemble_score_final"]) for weight, item in parts) / total
            confidence = sum(weight * float(item["confidence"]) for weight, item in parts) / total
            item = signal(context, symbol, score, confidence, str(parts[0][1]["regime"]), horizon)
            item["members"] = [name for name in weights if symbol in recorded[name]]
            item["members_missing"] = [name for name in weights if symbol not in recorded[name]]
            out.append(item)
        return out
