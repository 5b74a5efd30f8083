"""Mean reversion: fade a close that is far from its 20-day mean, unless the market is in turmoil.

Parameters (``agents.toml``): ``horizon`` (trading days, default 5), ``entry_z`` (z-score of a
full-strength signal, default 2.0).
"""

from __future__ import annotations

import math
from typing import Any

from agents.base import AgentContext, signal
from agents.features import MIN_HISTORY, price_features


class Agent:
    name = "mean_reversion"

    def run(self, context: AgentContext) -> list[dict[str, Any]]:
        horizon = int(context.param("horizon", 5))
        entry_z = float(context.param("entry_z", 2.0))
        out = []
        for symbol in context.universe:
            features = price_features(context.closes(symbol, MIN_HISTORY))
            if features is None:
                continue
            score = -math.tanh(features["zscore_20d"] / entry_z)
            # Stretched prices keep stretching in a high-volatility regime: trust the fade less there.
            confidence = abs(score) * (0.5 if features["regime"] == "high_vol" else 1.0)
            out.append(signal(context, symbol, score, confidence, features["regime"], horizon))
        return out
