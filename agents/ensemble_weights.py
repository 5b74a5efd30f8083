"""The ensemble's members and weights, as a light module: the report reads them (its ``worth``
attribution) without importing ``agents.base``, which loads the ``openai`` client.

Reads no environment variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ENSEMBLE_MODULE = "agents.ensemble"  # the module of agents that combine others' recorded signals
DEFAULT_WEIGHTS = {"momentum": 0.4, "mean_reversion": 0.3, "llm_analyst": 0.3}


def member_weights(params: Mapping[str, Any]) -> dict[str, float]:
    """The members and their positive weights: the ``weights`` table when given, else the defaults."""
    weights = params.get("weights")
    chosen = dict(weights) if isinstance(weights, Mapping) and weights else dict(DEFAULT_WEIGHTS)
    return {str(name): float(weight) for name, weight in chosen.items() if float(weight) > 0}
