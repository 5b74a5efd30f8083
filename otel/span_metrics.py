"""The agent metrics a fleet operator watches, derived from the spans as they are exported.

Each finished run root (``invoke_agent {agent}`` with an outcome) counts its run by outcome, its
duration, its LLM cost, its alpha signals by direction, its invalid signals and, when a budget stopped
it, the budget; the process's span losses are observed from ``SpanAccounting``. Names, units and
attributes are in ``otel/semconv.py`` (``METRIC_*``) and ``docs/telemetry-contract.md``.

Why at export: the values are the root span's own (the run's totals, outcome and events), complete
only once the root is finished, which for alphatrace's runs happens on the export thread
(``otel/run_spans.py``); recording there costs the agent's thread nothing. ``SpanMetricsExporter``
wraps the exporter chain; a failure to record is reported (``otel/internal_errors.py``) and never
keeps a span from its exporter.

Attribute cardinality is bounded: agent names (as the fleet has them), outcomes, the three
directions, budget names and models; past ``MAX_LABELS`` distinct values of one attribute the rest are
recorded as ``(other)``. No run ids, no symbols.

Reads no environment variables.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel import semconv
from otel.internal_errors import report_internal_error

logger = logging.getLogger(__name__)

MAX_LABELS = 1000  # distinct values per attribute before "(other)"
OTHER = "(other)"
# The conventions' bucket boundaries for GenAI durations (seconds), as opentelemetry-util-genai uses.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)


class _Labels:
    """Bounded distinct values of one attribute."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: object, missing: str) -> str:
        text = value if isinstance(value, str) and value else missing
        if text in self._seen:
            return text
        with self._lock:
            if len(self._seen) >= MAX_LABELS:
                return OTHER
            self._seen.add(text)
        return text


class AgentMetrics:
    """The instruments, made once per meter; ``record_root`` takes one finished run root."""

    def __init__(self, meter: Meter, losses: Callable[[], tuple[int, int]] | None = None) -> None:
        self.runs = meter.create_counter(semconv.METRIC_AGENT_RUNS, unit="{run}", description="Agent runs by outcome")
        self.duration = meter.create_histogram(
            semconv.METRIC_INVOKE_AGENT_DURATION,
            unit="s",
            description="Duration of an agent run (invoke_agent)",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.cost = meter.create_counter(semconv.METRIC_LLM_COST, unit="USD", description="Priced LLM cost of agent runs")
        self.tokens = meter.create_counter(semconv.METRIC_LLM_TOKENS, unit="{token}", description="LLM tokens of agent runs")
        self.unpriced = meter.create_counter(
            semconv.METRIC_LLM_UNPRICED_CALLS, unit="{call}", description="LLM calls with no price (simulated or not in the price table)"
        )
        self.signals = meter.create_counter(semconv.METRIC_ALPHA_SIGNALS, unit="{signal}", description="Alpha signals by direction")
        self.invalid = meter.create_counter(semconv.METRIC_ALPHA_SIGNALS_INVALID, unit="{signal}", description="Rejected alpha signals")
        self.budget_stops = meter.create_counter(semconv.METRIC_BUDGET_STOPS, unit="{run}", description="Runs stopped by a budget")
        self._agents = _Labels()
        self._models = _Labels()
        self._budgets = _Labels()
        self._outcomes = _Labels()
        self._errors = _Labels()
        if losses is not None:

            def dropped(options: CallbackOptions) -> Iterable[Observation]:
                yield Observation(losses()[0])

            def failed(options: CallbackOptions) -> Iterable[Observation]:
                yield Observation(losses()[1])

            meter.create_observable_counter(
                semconv.METRIC_SPANS_DROPPED, [dropped], unit="{span}", description="Spans dropped before export (queue full)"
            )
            meter.create_observable_counter(
                semconv.METRIC_SPANS_EXPORT_FAILED, [failed], unit="{span}", description="Spans the exporter failed to deliver"
            )

    def record_root(self, span: ReadableSpan) -> None:
        attributes = span.attributes or {}
        agent = self._agents(attributes.get(semconv.GEN_AI_AGENT_NAME), "(unknown agent)")
        outcome = self._outcomes(attributes.get(semconv.AGENT_RUN_OUTCOME), "(none)")
        self.runs.add(1, {semconv.GEN_AI_AGENT_NAME: agent, semconv.AGENT_RUN_OUTCOME: outcome})
        if span.start_time and span.end_time and span.end_time >= span.start_time:
            timing = {semconv.GEN_AI_OPERATION_NAME: semconv.OPERATION_INVOKE_AGENT, semconv.GEN_AI_AGENT_NAME: agent}
            error_type = attributes.get(semconv.ERROR_TYPE)
            if outcome == semconv.OUTCOME_ERROR and isinstance(error_type, str):
                timing[semconv.ERROR_TYPE] = self._errors(error_type, "_OTHER")
            self.duration.record((span.end_time - span.start_time) / 1e9, timing)
        by_agent = {semconv.GEN_AI_AGENT_NAME: agent}
        by_model = {
            semconv.GEN_AI_AGENT_NAME: agent,
            semconv.GEN_AI_REQUEST_MODEL: self._models(attributes.get(semconv.GEN_AI_REQUEST_MODEL), "(none)"),
        }
        cost = attributes.get(semconv.RUN_COST_USD)
        if isinstance(cost, (int, float)) and not isinstance(cost, bool) and cost > 0:
            self.cost.add(float(cost), by_model)
        for key, token_type in (
            (semconv.RUN_INPUT_TOKENS, semconv.TOKEN_TYPE_INPUT),
            (semconv.RUN_OUTPUT_TOKENS, semconv.TOKEN_TYPE_OUTPUT),
        ):
            tokens = attributes.get(key)
            if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens > 0:
                self.tokens.add(tokens, {**by_model, semconv.GEN_AI_TOKEN_TYPE: token_type})
        unpriced = attributes.get(semconv.RUN_UNPRICED_LLM_CALLS)
        if isinstance(unpriced, int) and not isinstance(unpriced, bool) and unpriced > 0:
            self.unpriced.add(unpriced, by_agent)
        if outcome == semconv.OUTCOME_BUDGET_EXCEEDED:
            budget = self._budgets(attributes.get(semconv.BUDGET_NAME), "(unknown budget)")
            self.budget_stops.add(1, {semconv.GEN_AI_AGENT_NAME: agent, semconv.BUDGET_NAME: budget})
        for event in span.events:
            if event.name == semconv.EVENT_ALPHA_SIGNAL:
                direction = (event.attributes or {}).get(semconv.ALPHA_DIRECTION)
                direction = direction if direction in semconv.DIRECTIONS else OTHER
                self.signals.add(1, {semconv.GEN_AI_AGENT_NAME: agent, semconv.ALPHA_DIRECTION: direction})
            elif event.name == semconv.EVENT_ALPHA_SIGNAL_INVALID:
                self.invalid.add(1, by_agent)


def is_run_root(span: ReadableSpan) -> bool:
    attributes = span.attributes or {}
    return (
        span.parent is None
        and attributes.get(semconv.GEN_AI_OPERATION_NAME) == semconv.OPERATION_INVOKE_AGENT
        and semconv.AGENT_RUN_OUTCOME in attributes
    )


class SpanMetricsExporter(SpanExporter):
    """Records ``AgentMetrics`` from each batch, then hands it on unchanged."""

    def __init__(self, inner: SpanExporter, metrics: AgentMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            for span in spans:
                if is_run_root(span):
                    self._metrics.record_root(span)
        except Exception:
            report_internal_error(logger, "could not record agent metrics")
        return self._inner.export(spans)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self._inner.shutdown()
