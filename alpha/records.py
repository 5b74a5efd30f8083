"""What scoring and the supervisor's policy need from the traces: one record per signal and per run.

``SignalRecord`` is one ``alphatrace.alpha.signal`` event; ``RunRecord`` is one agent run's root span. Scoring
(``alpha.quality``) and the policy (``meta_supervisor.supervisor.policy``) are pure functions over lists of these.
The report builder's reader produces them (``meta_supervisor.build.run_records.read_records`` for the
supervisor; ``meta_supervisor.tally.signal_store`` inside the report), from every file shape the collector
writes, spans seen twice taken once.

Reads no environment variables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True)
class SignalRecord:
    agent: str
    symbol: str
    as_of: date
    direction: str  # up | down | flat
    prob_up: float
    score_final: float
    horizon: int
    tradable: bool | None = None  # None: emitted before agent status existed
    trace_id: str = ""
    span_id: str = ""
    time_unix_nano: int = 0  # when the event was recorded; orders duplicates


@dataclass(frozen=True)
class RunRecord:
    agent: str
    outcome: str  # ok | error | killed
    as_of: date | None  # alphatrace.run.as_of: the market day the run saw
    duration_ms: float
    cost_usd: float = 0.0
    unpriced_llm_calls: int = 0
    status: str = ""  # shadow | live, as the run saw it
    trace_id: str = ""
    span_id: str = ""
    start_unix_nano: int = 0
    llm_calls: int = 0
    simulated: bool = False  # its LLM calls went to the simulated model: not priced, never $0


@dataclass
class Records:
    runs: list[RunRecord] = field(default_factory=list)
    signals: list[SignalRecord] = field(default_factory=list)
    bad_lines: int = 0  # lines (messages) that could not be read
    bad_signals: int = 0  # alphatrace.alpha.signal events lacking what scoring needs
