"""An agent that calls the model several times a run, for the budget tests (this module holds no tests).

``Agent``: ``calls`` LLM calls a run on fixed features, each after waiting at ``barrier`` when one is
set (two runs then reach their check together). ``reserve_in_process``: one process's check-and-reserve
on a file ledger, for the two-process test (a module-level function, so ``spawn`` can run it).
"""

from __future__ import annotations

import threading
from pathlib import Path

from agents.base import Param

FEATURES = {"SPX": {"momentum_20d": 0.01, "momentum_60d": 0.02, "zscore_20d": 0.1, "regime": "trend"}}
PARAMS = {"calls": Param(int, 1, minimum=1, maximum=20)}


class Agent:
    name = "spender"
    barrier: threading.Barrier | None = None

    def run(self, context):
        for _ in range(context.values(PARAMS)["calls"]):
            if self.barrier is not None:
                self.barrier.wait(timeout=60)
            context.llm.analyze(FEATURES, context.as_of.isoformat(), 5)
        return []


def reserve_in_process(folder: str, day: str, floor: float, limit: float, barrier, results) -> None:
    from services.spend_ledger import FileSpendLedger

    ledger = FileSpendLedger(Path(folder))
    barrier.wait(timeout=60)
    answer = ledger.reserve(day, "spender", floor, limit, None)
    results.put(answer.passed)
