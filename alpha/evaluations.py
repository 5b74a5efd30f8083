"""Each forecast's outcome: which (signal, horizon) pairs have matured, and what each one scored.

``matured_outcomes(signals, returns, horizons, emitted)`` is a pure function: for every signal whose
ids name a span (32 + 16 hex digits: the run span that carries the ``alphatrace.alpha.signal``
event) and every horizon whose forward return is ``scored`` (``alpha.forward_returns``: the exit
close exists and is on or before "today"), an ``Outcome`` unless its key is in ``emitted``; grouped
by run (``RunOutcomes``), so one span per run and build carries them all
(``meta_supervisor/supervisor/evaluation_spans.py`` writes the spans and keeps ``emitted``).

The label is the hit rule of ``alpha.quality`` (written once, here): ``up`` is a hit when the
return is > 0, ``down`` when it is < 0, a zero return is a miss, and a ``flat`` signal makes no
call (label ``flat``). The score value is the forward return itself (a fraction). The explanation
says only what the signal's own fields and the market data say: direction, symbol, as-of date,
return, horizon and the closes it runs between.

Reads no environment variables.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from alpha.forward_returns import ForwardReturns
from alpha.records import SignalRecord
from otel.semconv import LABEL_FLAT, LABEL_HIT, LABEL_MISS

_HEX = frozenset("0123456789abcdef")


def outcome_label(direction: str, forward_return: float) -> str:
    """``hit`` / ``miss`` / ``flat`` (the module doc's rule)."""
    if direction == "up":
        return LABEL_HIT if forward_return > 0 else LABEL_MISS
    if direction == "down":
        return LABEL_HIT if forward_return < 0 else LABEL_MISS
    return LABEL_FLAT


def evaluation_name(horizon: int) -> str:
    """``gen_ai.evaluation.name`` of a horizon's outcome."""
    return f"forward_return_{horizon}d"


def outcome_key(trace_id: str, span_id: str, symbol: str, as_of: date, horizon: int) -> str:
    """What identifies one signal's outcome at one horizon across builds (the emitted record's keys)."""
    return f"{trace_id}{span_id}|{symbol}|{as_of.isoformat()}|{horizon}"


def _is_span(trace_id: str, span_id: str) -> bool:
    return (
        len(trace_id) == 32
        and len(span_id) == 16
        and _HEX.issuperset(trace_id)
        and _HEX.issuperset(span_id)
        and trace_id.strip("0") != ""
        and span_id.strip("0") != ""
    )


@dataclass(frozen=True)
class Outcome:
    symbol: str
    as_of: date
    direction: str
    horizon: int
    value: float  # the forward return
    label: str  # hit | miss | flat
    entry_day: date
    exit_day: date
    key: str

    @property
    def name(self) -> str:
        return evaluation_name(self.horizon)

    @property
    def explanation(self) -> str:
        return (
            f"{self.direction} {self.symbol} as of {self.as_of.isoformat()}: {self.value:+.2%} over {self.horizon} trading "
            f"day{'s' if self.horizon != 1 else ''} ({self.entry_day.isoformat()} to {self.exit_day.isoformat()} close), {self.label}"
        )


@dataclass(frozen=True)
class RunOutcomes:
    """The outcomes that matured for one run's signals: the span the build adds under the run span."""

    agent: str
    trace_id: str
    span_id: str  # the run span's: the evaluation span's parent
    outcomes: tuple[Outcome, ...]


def matured_outcomes(
    signals: Iterable[SignalRecord], returns: ForwardReturns, horizons: Sequence[int], emitted: Container[str]
) -> list[RunOutcomes]:
    """The outcomes not in ``emitted`` whose forward return is scored, by run (sorted by agent,
    trace and span id; within a run by symbol, as-of date and horizon)."""
    runs: dict[tuple[str, str, str], list[Outcome]] = {}
    for signal in signals:
        if not _is_span(signal.trace_id, signal.span_id):
            continue  # a span id we cannot parent a span to
        for horizon in horizons:
            key = outcome_key(signal.trace_id, signal.span_id, signal.symbol, signal.as_of, horizon)
            if key in emitted:
                continue
            result = returns.get(signal.symbol, signal.as_of, horizon)
            if not result.scored:
                continue
            outcome = Outcome(
                signal.symbol,
                signal.as_of,
                signal.direction,
                horizon,
                result.value,
                outcome_label(signal.direction, result.value),
                result.entry_day,
                result.exit_day,
                key,
            )
            runs.setdefault((signal.agent, signal.trace_id, signal.span_id), []).append(outcome)
    return [
        RunOutcomes(agent, trace_id, span_id, tuple(sorted(found, key=lambda o: (o.symbol, o.as_of, o.horizon))))
        for (agent, trace_id, span_id), found in sorted(runs.items())
    ]
