"""The run that is executing now, and the per-run accounting the root span carries when it ends.

``RunTelemetry`` keeps the seed's name and its ``add_llm_usage``; it now feeds span attributes instead
of a JSONL line. The current run lives in the OpenTelemetry context (so it follows the span into
anything that propagates context), and ``RunAttributesSpanProcessor`` stamps the run's agent name and
run id on every span started inside it.

Reads no environment variables.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import Span as ApiSpan

from otel import semconv

_RUN_KEY = otel_context.create_key("alphatrace.current_run")


@dataclass
class RunTelemetry:
    agent: str
    run_id: str
    span: ApiSpan | None = None
    as_of: str | None = None
    status: str | None = None  # shadow | live, set by the scheduler before the agent runs
    llm_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cached_tokens_in: int = 0
    cost_usd: float = 0.0
    unpriced_llm_calls: int = 0
    alpha_signals: int = 0
    errors: int = 0
    kill_reason: str | None = None
    stale_data: dict[str, Any] | None = None  # the staleness attributes, when the data was stale
    stale_refused: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_llm_usage(
        self,
        tokens_in: int,
        tokens_out: int,
        cost_usd: float | None = 0.0,
        cached_tokens_in: int = 0,
    ) -> None:
        """Count one LLM call; ``cost_usd=None`` means the model had no price (counted, not $0)."""
        with self._lock:
            self.llm_calls += 1
            self.tokens_in += int(tokens_in)
            self.tokens_out += int(tokens_out)
            self.cached_tokens_in += int(cached_tokens_in)
            if cost_usd is None:
                self.unpriced_llm_calls += 1
            else:
                self.cost_usd += cost_usd

    def add_alpha_signals(self, count: int) -> None:
        with self._lock:
            self.alpha_signals += count

    def add_error(self) -> None:
        with self._lock:
            self.errors += 1

    def mark_killed(self, reason: str) -> None:
        """Called by the scheduler when the kill switch says the agent must not run."""
        self.kill_reason = reason or "killed"

    def mark_stale_data(self, attributes: dict[str, Any], refused: bool) -> None:
        """Called by the scheduler when a live run's data is stale: refused, or run on the last bar."""
        self.stale_data = dict(attributes)
        self.stale_refused = refused

    def totals(self) -> dict[str, int | float]:
        with self._lock:
            return {
                semconv.RUN_LLM_CALLS: self.llm_calls,
                semconv.RUN_INPUT_TOKENS: self.tokens_in,
                semconv.RUN_OUTPUT_TOKENS: self.tokens_out,
                semconv.RUN_CACHED_INPUT_TOKENS: self.cached_tokens_in,
                semconv.RUN_COST_USD: round(self.cost_usd, 9),
                semconv.RUN_UNPRICED_LLM_CALLS: self.unpriced_llm_calls,
                semconv.RUN_ALPHA_SIGNALS: self.alpha_signals,
            }


def get_current_run(context: otel_context.Context | None = None) -> RunTelemetry | None:
    return otel_context.get_value(_RUN_KEY, context)


def run_context(run: RunTelemetry | None, context: otel_context.Context | None = None) -> otel_context.Context:
    """``context`` (default: the current one) with ``run`` as its run, to attach."""
    return otel_context.set_value(_RUN_KEY, run, context)


def set_current_run(run: RunTelemetry | None) -> object:
    """Make ``run`` current; returns the token to give to ``reset_current_run``."""
    return otel_context.attach(otel_context.set_value(_RUN_KEY, run))


def reset_current_run(token: object) -> None:
    otel_context.detach(token)


class RunAttributesSpanProcessor(SpanProcessor):
    """Stamps ``gen_ai.agent.name`` and ``agent.run_id`` on every span started inside a run."""

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        run = otel_context.get_value(_RUN_KEY, parent_context)
        if run is not None:
            span.set_attributes({semconv.GEN_AI_AGENT_NAME: run.agent, semconv.AGENT_RUN_ID: run.run_id})

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
