"""The run that is executing now, and the per-run accounting the root span carries when it ends.

``RunTelemetry`` keeps the seed's name and its ``add_llm_usage``; it now feeds span attributes instead
of a JSONL line. The current run lives in the OpenTelemetry context (so it follows the span into
anything that propagates context), and ``RunAttributesSpanProcessor`` stamps the run's agent name and
run id on every span started inside it (``otel/run_spans.py``'s ``RunSpanProcessor`` does the same
where spans are exported).

Checkpoints: a run carries the checks to pass before each of its steps (``checkpoints``: the kill
switch, the budgets; the scheduler adds them). ``checkpoint(step)`` runs them for the current run;
the LLM wrapper calls it before every LLM call and a tool loop before every tool step. A check that
says stop raises ``RunStopped``; the run wrapper then ends the run with that outcome, the step it
stopped before, the reason and the stop's own attributes (``otel/agent_runs.py``), and no further
call is made.

The next call: just before its checkpoint the LLM wrapper leaves the call it is about to make on the
run (``next_call``, a ``CallEstimate``: tokens only, no content), so a check can estimate what the call
will cost without ``checkpoint`` seeing the request (the budgets do, ``services/budgets.py``).

Usage listeners: ``add_llm_usage`` is the one place an LLM call is counted; after counting it hands
the call's ``LLMUsage`` to each of the run's ``usage_listeners`` (the budgets record their spend
there, ``services/budgets.py``), so any code that counts a call through it (the analyst, a tool loop)
feeds the budgets without knowing of them.

The run also learns the provider and model of its LLM calls as they are counted (``add_llm_usage``),
so the root span carries what the GenAI conventions recommend on an ``invoke_agent`` span for a run
that called a model (``usage_attributes``), whichever agent made the calls.

What a run puts on its own root span (its first attributes, alpha signals, the exception, the
outcome and totals) goes through ``start_attributes``, ``add_root_event`` and ``finish_attributes``.
When the provider's processor can finish the root span on the export thread (``RunSpanProcessor``
calls ``defer_root`` as the root starts), they are kept here as plain values and attached there;
otherwise they go on the span at once. Either way the exported span is the same.

Reads no environment variables.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from time import time_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import Span as ApiSpan

from otel import semconv
from otel.internal_errors import report_internal_error

logger = logging.getLogger(__name__)
_RUN_KEY = otel_context.create_key("alphatrace.current_run")


class RunStopped(Exception):
    """A check before a step of a run said stop: the step is not taken and the run ends.

    ``outcome`` is the run's (``semconv.OUTCOME_KILLED``, ``OUTCOME_BUDGET_EXCEEDED``), ``step`` the
    step not taken (``semconv.STEPS``), ``reason`` why, for people (no content, no secrets)."""

    def __init__(self, outcome: str, step: str, reason: str, attributes: dict[str, Any] | None = None) -> None:
        super().__init__(f"run stopped before {step} ({outcome}): {reason}")
        self.outcome = outcome
        self.step = step
        self.reason = reason
        self.attributes = dict(attributes or {})  # what the check adds to the root span (semconv keys)


_SAME_AS_COST = object()


@dataclass(frozen=True)
class LLMUsage:
    """One LLM call as the run counted it, for the run's ``usage_listeners``. ``cost_usd`` is the
    priced cost (``None``: the model has no price); ``spend_usd`` what budgets count (the cost, or a
    simulated call's estimate at its stand-in model's price, ``estimated``; ``None``: no price)."""

    tokens_in: int
    tokens_out: int
    cost_usd: float | None
    cached_tokens_in: int = 0
    spend_usd: float | None = None
    estimated: bool = False
    model: str | None = None  # the model that answered, when the caller said

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out


@dataclass(frozen=True)
class CallEstimate:
    """The LLM call a run is about to make, in tokens: its input as estimated from the request and
    its output allowance (``services/call_estimate.py``). No content: only counts."""

    tokens_in: int
    tokens_out: int

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out


@dataclass
class RunTelemetry:
    agent: str
    run_id: str
    span: ApiSpan | None = None
    as_of: str | None = None
    status: str | None = None  # shadow | live, set by the scheduler before the agent runs
    llm_calls: int = 0
    tool_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cached_tokens_in: int = 0
    cost_usd: float = 0.0
    unpriced_llm_calls: int = 0
    alpha_signals: int = 0
    errors: int = 0
    provider: str | None = None  # of the run's first LLM call
    request_model: str | None = None
    kill_reason: str | None = None
    stale_data: dict[str, Any] | None = None  # the staleness attributes, when the data was stale
    stale_refused: bool = False
    # The LLM call about to be made, set by the LLM wrapper just before its checkpoint (None: unknown).
    next_call: CallEstimate | None = None
    # Called with (run, step) before every step (``checkpoint``); each may raise ``RunStopped``.
    checkpoints: list[Callable[[RunTelemetry, str], None]] = field(default_factory=list, repr=False)
    # Called with (run, usage) after every LLM call is counted (``add_llm_usage``); must not raise.
    usage_listeners: list[Callable[[RunTelemetry, LLMUsage], None]] = field(default_factory=list, repr=False)
    # True from the wrapper's creating the run until its root span has started: the span started
    # then, without a parent, is the run's root (not stamped, maybe deferred).
    root_pending: bool = False
    # The root span's first attributes (agent, run id, as-of) and its last (the outcome and totals),
    # when it is finished on the export thread.
    start_attributes: dict[str, Any] | None = field(default=None, repr=False)
    finish_attributes: dict[str, Any] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    # (name, attributes, timestamp) of the root span's events, when it is finished on the export thread.
    _root_events: list[tuple[str, dict[str, Any], int]] | None = field(default=None, repr=False)

    def add_llm_usage(
        self,
        tokens_in: int,
        tokens_out: int,
        cost_usd: float | None = 0.0,
        cached_tokens_in: int = 0,
        spend_usd: Any = _SAME_AS_COST,
        estimated: bool = False,
        model: str | None = None,
        provider: str | None = None,
        request_model: str | None = None,
    ) -> None:
        """Count one LLM call; ``cost_usd=None`` means the model had no price (counted, not $0).
        ``spend_usd`` (default: the cost) and ``estimated`` are what the budgets count (``LLMUsage``,
        ``model`` the model priced); the run's listeners get the call after it is counted.
        ``provider`` and ``request_model`` (``gen_ai.provider.name``, ``gen_ai.request.model``) of the
        run's first call go on its root span."""
        with self._lock:
            if self.llm_calls == 0:
                self.provider, self.request_model = provider, request_model
            self.llm_calls += 1
            self.tokens_in += int(tokens_in)
            self.tokens_out += int(tokens_out)
            self.cached_tokens_in += int(cached_tokens_in)
            if cost_usd is None:
                self.unpriced_llm_calls += 1
            else:
                self.cost_usd += cost_usd
        if self.usage_listeners:
            spend = cost_usd if spend_usd is _SAME_AS_COST else spend_usd
            usage = LLMUsage(int(tokens_in), int(tokens_out), cost_usd, int(cached_tokens_in), spend, estimated, model)
            for listener in list(self.usage_listeners):
                try:
                    listener(self, usage)
                except Exception:
                    report_internal_error(logger, "a usage listener of the run failed")

    def add_tool_call(self) -> None:
        """Count one tool step executed (its ``execute_tool`` span is the tool loop's)."""
        with self._lock:
            self.tool_calls += 1

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

    def defer_root(self) -> None:
        """Called by the span processor as the root span starts: it will attach the root's events
        and ``finish_attributes`` when the span is exported (``otel/run_spans.py``)."""
        self._root_events = []

    @property
    def defers_root(self) -> bool:
        return self._root_events is not None

    def add_root_event(self, name: str, attributes: dict[str, Any]) -> None:
        """An event on the run's root span: kept for the export thread when deferred (with the time
        now, as ``Span.add_event`` stamps it), else added to the span now."""
        events = self._root_events
        if events is not None:
            events.append((name, attributes, time_ns()))
        elif self.span is not None:
            self.span.add_event(name, attributes)

    def take_root_updates(self) -> tuple[tuple[tuple[str, dict[str, Any], int], ...], dict[str, Any] | None, dict[str, Any] | None]:
        """The deferred events, start and finish attributes, once, as the root span ends; later
        events go to the (ended) span, which refuses them as the SDK does."""
        events = self._root_events
        self._root_events = None
        return (tuple(events) if events else ()), self.start_attributes, self.finish_attributes

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
                semconv.RUN_TOOL_CALLS: self.tool_calls,
            }

    def usage_attributes(self) -> dict[str, int | str]:
        """The GenAI conventions' recommended attributes of an ``invoke_agent`` span: the provider
        and model of the run's first LLM call and the usage summed over its calls; none for a run
        that called no model (a rule-based agent, a run refused before its call). The LLM spans
        carry the same usage per call: a backend summing usage over every span counts it twice."""
        with self._lock:
            if not self.llm_calls:
                return {}
            attributes: dict[str, int | str] = {
                semconv.GEN_AI_USAGE_INPUT_TOKENS: self.tokens_in,
                semconv.GEN_AI_USAGE_OUTPUT_TOKENS: self.tokens_out,
                semconv.GEN_AI_USAGE_CACHED_INPUT_TOKENS: self.cached_tokens_in,
            }
            if self.provider:
                attributes[semconv.GEN_AI_PROVIDER_NAME] = self.provider
            if self.request_model:
                attributes[semconv.GEN_AI_REQUEST_MODEL] = self.request_model
            return attributes


def checkpoint(step: str) -> None:
    """Before a step of the current run (``semconv.STEPS``): run its checks, which raise
    ``RunStopped`` to stop it. Outside a run, nothing to check."""
    run = otel_context.get_value(_RUN_KEY)
    if run is not None:
        for check in run.checkpoints:
            check(run, step)


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


def stamp_run_attributes(span: Span, parent_context: otel_context.Context | None) -> RunTelemetry | None:
    """Stamp the run's agent name and run id on ``span``, started inside a run; the run's own root
    (which has them already) is returned instead, and ``root_pending`` cleared."""
    run = otel_context.get_value(_RUN_KEY, parent_context)
    if run is None:
        return None
    if run.root_pending and span.parent is None:
        run.root_pending = False
        return run
    # Two set_attribute calls cost less than one set_attributes of a dict (its check of the dict
    # itself is two abstract-class isinstance calls); the span ends up the same.
    span.set_attribute(semconv.GEN_AI_AGENT_NAME, run.agent)
    span.set_attribute(semconv.AGENT_RUN_ID, run.run_id)
    return None


class RunAttributesSpanProcessor(SpanProcessor):
    """Stamps ``gen_ai.agent.name`` and ``alphatrace.run.id`` on every span started inside a run."""

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        stamp_run_attributes(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
