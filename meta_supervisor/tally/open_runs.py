"""The bound on open runs (runs waiting for their root or for LLM spans) a build keeps in memory.

``consistency.ConsistencyCheck.bound_open_runs`` applies it; this module holds only the numbers and the setting,
so that the command can check the setting before importing the reader.

Environment: ``ALPHATRACE_MAX_OPEN_RUNS`` (a whole number from ``SWEEP_EVERY`` to 2^30; a bad value is
a ``ConfigError``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from settings.config_error import env_number

MAX_OPEN_RUNS = 32_768  # runs waiting for their root or LLM spans (about 350 bytes each in Python)
SWEEP_EVERY = 4_096  # new open runs between two bound_open_runs() once this many are open
EVICT_TO_EIGHTHS = 7  # eviction goes down to 7/8 of the bound, so that it happens in batches
ENV_MAX_OPEN_RUNS = "ALPHATRACE_MAX_OPEN_RUNS"


def max_open_runs(environ: Mapping[str, str] = os.environ) -> int:
    """The open-run bound: ``ALPHATRACE_MAX_OPEN_RUNS`` when set, else ``MAX_OPEN_RUNS``."""
    return int(env_number(environ, ENV_MAX_OPEN_RUNS, MAX_OPEN_RUNS, unit="runs", minimum=SWEEP_EVERY, maximum=1 << 30))


def sweep_every(bound: int) -> int:
    """New open runs between two sweeps once that many are open: ``SWEEP_EVERY``, less for a small
    bound (tests use bounds of a few runs)."""
    return max(1, min(SWEEP_EVERY, bound // 8))


def evict_to(bound: int) -> int:
    """How many open runs are kept when the bound is passed."""
    return bound * EVICT_TO_EIGHTHS // 8
