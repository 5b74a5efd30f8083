"""Momentum / trend: long what rose over the last one and three months, short what fell.

Parameters (``agents.toml``, declared in ``PARAMS``): ``horizon`` (trading days), ``scale`` (the
60-day move that counts as a full-strength signal).
"""

from __future__ import annotations

import math
from typing import Any

from agents.base import AgentContext, Param, signal
from agents.features import MIN_HISTORY, price_features

PARAMS = {"horizon": Param(int, 5, minimum=1, maximum=250), "scale": Param(float, 0.08, positive=True)}


class Agent:
    name = "momentum"

    def run(self, context: AgentContext) -> list[dict[str, Any]]:
        params = context.values(PARAMS)
        horizon, scale = params["horizon"], params["scale"]
        out = []
        for symbol in context.universe:
            features = price_features(context.closes(symbol, MIN_HISTORY))
            if features is None:
                continue
            trend = 0.7 * features["momentum_60d"] + 0.3 * features["momentum_20d"]
            score = math.tanh(trend / scale)
            out.append(signal(context, symbol, score, abs(score), features["regime"], horizon))
        return out
