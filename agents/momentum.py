"""Momentum / trend: long what rose over the last one and three months, short what fell.

Parameters (``agents.toml``): ``horizon`` (trading days, default 5), ``scale`` (the 60-day move that
counts as a full-strength signal, default 0.08).
"""

from __future__ import annotations

import math
from typing import Any

from agents.base import AgentContext, signal
from agents.features import MIN_HISTORY, price_features


class Agent:
    name = "momentum"

    def run(self, context: AgentContext) -> list[dict[str, Any]]:
        horizon = int(context.param("horizon", 5))
        scale = float(context.param("scale", 0.08))
        out = []
        for symbol in context.universe:
            features = price_features(context.closes(symbol, MIN_HISTORY))
            if features is None:
                continue
            trend = 0.7 * features["momentum_60d"] + 0.3 * features["momentum_20d"]
            score = math.tanh(trend / scale)
            out.append(signal(context, symbol, score, abs(score), features["regime"], horizon))
        return out
