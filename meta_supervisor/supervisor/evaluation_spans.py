"""Each forecast's outcome on its own trace: the report build adds, under every run whose signals'
horizons matured since the last build, one ``alphatrace.evaluation`` span (same trace id, parent the
run span) with a ``gen_ai.evaluation.result`` event per (signal, horizon) (``alpha.evaluations``
says which and how they score; ``docs/telemetry-contract.md`` lists the keys).

Exactly once, across repeated and incremental builds: the record ``evaluation_spans.json`` in the
report's state folder lists every outcome key emitted. A build, holding the record's lock, reads it,
emits the outcomes not in it, flushes the exporter and only then writes the record with the new keys
(``write_atomically``). So:

* a build that emits nothing new writes nothing (a second build over the same file adds no span);
* an export that fails (the flush times out, or the exporter reports a failed batch) records
  nothing: the next build emits those outcomes again (a batch the exporter half-wrote may then be
  there twice; the embedded file exporter never half-writes one);
* a crash (or kill) after the flush and before the record's rename emits that build's outcomes
  again at the next build: at most one build's new outcomes appear twice, never more;
* two builds at once wait for each other on the record's lock (``ALPHATRACE_STATE_LOCK_TIMEOUT``).

The record is kept apart from the incremental state: ``--full`` rebuilds and state resets never
forget what was emitted. The spans go through ``otel.provider.configure_telemetry`` like the
agents' (the embedded file exporter to ``$ALPHATRACE_TRACE_FILE``, or OTLP to the collector).

Environment: ``ALPHATRACE_EVALUATION_SPANS`` = ``off`` (default) or ``on``; the report's
``--evaluation-spans`` / ``--no-evaluation-spans`` win over it. Off by default because it turns the
report build, a reader, into a writer of the traces it reads (an archive, a CI copy, a fixture):
that is asked for, never assumed. ``make demo`` turns it on.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from alpha.evaluations import RunOutcomes, matured_outcomes
from alpha.forward_returns import ForwardReturns
from alpha.quality import DEFAULT_HORIZONS
from alpha.records import SignalRecord
from otel import semconv
from services.state_files import SmallFileError, exclusive_lock, json_pieces, read_small_file, write_atomically
from settings.config_error import ConfigError

if TYPE_CHECKING:  # OpenTelemetry is loaded by the build that emits, not by whoever imports this
    from opentelemetry.trace import Tracer

    from otel.provider import Telemetry
    from services.market_data import MarketData

ENV_EVALUATION_SPANS = "ALPHATRACE_EVALUATION_SPANS"
SETTINGS = {"on": True, "off": False}
RECORD_FILE = "evaluation_spans.json"
LOCK_FILE = "evaluation_spans.lock"
RECORD_FORMAT = 1
MAX_RECORD_BYTES = 512 * 1024 * 1024  # ~90 bytes an outcome: millions of signals and horizons
FLUSH_SECONDS = 30.0


def evaluation_spans_enabled(flag: bool | None, env: Mapping[str, str] | None = None) -> bool:
    """The setting: the command-line flag (None: not given), else ``ALPHATRACE_EVALUATION_SPANS``, else off."""
    if flag is not None:
        return flag
    value = (os.environ if env is None else env).get(ENV_EVALUATION_SPANS, "").strip().lower() or "off"
    if value not in SETTINGS:
        raise ConfigError(f"{ENV_EVALUATION_SPANS}={value!r}: expected on or off")
    return SETTINGS[value]


# --- the record of what was emitted --------------------------------------------------------------


def load_record(path: Path) -> set[str]:
    """The outcome keys emitted so far (none when the record does not exist yet); a record that
    cannot be read is a ``ConfigError``: emitting without it could repeat every outcome."""
    try:
        text = read_small_file(path, MAX_RECORD_BYTES, "the evaluation-span record")
    except SmallFileError as exc:
        raise ConfigError(str(exc)) from None
    if text is None:
        return set()
    try:
        data = json.loads(text)
        if data.get("format") != RECORD_FORMAT or not isinstance(data.get("emitted"), list):
            raise ValueError(f"not a format-{RECORD_FORMAT} record")
        return {str(key) for key in data["emitted"]}
    except (ValueError, AttributeError) as exc:
        raise ConfigError(f"the evaluation-span record {path} is unusable ({exc}); move it away to emit every outcome again") from None


def save_record(path: Path, keys: Iterable[str]) -> None:
    write_atomically(path, json_pieces({"format": RECORD_FORMAT, "emitted": sorted(keys)}, depth=1))


# --- the spans -----------------------------------------------------------------------------------


def emit_outcome_spans(tracer: Tracer, runs: Sequence[RunOutcomes]) -> int:
    """One ``alphatrace.evaluation`` span per run, a child of its run span, with its outcomes as
    ``gen_ai.evaluation.result`` events; returns the number of events."""
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

    events = 0
    for run in runs:
        parent = SpanContext(int(run.trace_id, 16), int(run.span_id, 16), is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
        attributes = {semconv.EVALUATION_AGENT: run.agent, semconv.EVALUATION_RESULTS: len(run.outcomes)}
        span = tracer.start_span(semconv.SPAN_EVALUATION, context=set_span_in_context(NonRecordingSpan(parent)), attributes=attributes)
        for outcome in run.outcomes:
            span.add_event(
                semconv.EVENT_GEN_AI_EVALUATION_RESULT,
                {
                    semconv.GEN_AI_EVALUATION_NAME: outcome.name,
                    semconv.GEN_AI_EVALUATION_SCORE_VALUE: outcome.value,
                    semconv.GEN_AI_EVALUATION_SCORE_LABEL: outcome.label,
                    semconv.GEN_AI_EVALUATION_EXPLANATION: outcome.explanation,
                    semconv.ALPHA_SYMBOL: outcome.symbol,
                    semconv.ALPHA_DIRECTION: outcome.direction,
                    semconv.ALPHA_AS_OF: outcome.as_of.isoformat(),
                    semconv.EVALUATION_HORIZON_DAYS: outcome.horizon,
                    semconv.EVALUATION_EXIT_DAY: outcome.exit_day.isoformat(),
                },
            )
        span.end()
        events += len(run.outcomes)
    return events


@dataclass(frozen=True)
class Published:
    spans: int  # evaluation spans emitted by this build
    results: int  # gen_ai.evaluation.result events on them
    recorded: bool  # the record now lists them (False: the export failed; the next build tries again)


def publish_outcomes(
    signals: Iterable[SignalRecord],
    market: MarketData,
    today: date,
    state_dir: Path,
    telemetry: Callable[[], Telemetry],
    lock_timeout: float | None = None,
    horizons: Sequence[int] = DEFAULT_HORIZONS,
) -> Published:
    """Emit every matured outcome not emitted before (the module doc's order: emit, flush, record).
    ``telemetry`` makes the handle to emit through (called only when there is something to emit;
    the caller owns it and shuts it down)."""
    record = Path(state_dir) / RECORD_FILE
    with exclusive_lock(Path(state_dir) / LOCK_FILE, lock_timeout):
        emitted = load_record(record)
        runs = matured_outcomes(signals, ForwardReturns(market, today), horizons, emitted)
        if not runs:
            return Published(0, 0, True)
        handle = telemetry()
        failed_before = handle.accounting.snapshot().export_failed
        results = emit_outcome_spans(handle.tracer(), runs)
        flushed = handle.force_flush(FLUSH_SECONDS)
        if not flushed or handle.accounting.snapshot().export_failed > failed_before:
            return Published(len(runs), results, False)
        save_record(record, emitted.union(outcome.key for run in runs for outcome in run.outcomes))
        return Published(len(runs), results, True)
