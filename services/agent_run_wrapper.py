"""The single choke point every agent run goes through: one root span per run.

``run_with_telemetry(agent_name, fn, *args, **kwargs)`` keeps the seed's signature. It opens the root
span ``invoke_agent {agent}``, makes the run current (so LLM spans become its children and carry the
run's ids), calls ``fn``, and when ``fn`` returns or raises records the outcome (``ok``, ``error`` or
``killed`` or ``stale_data``) and the run's totals. An exception is recorded on the span (type, message and traceback
through ``otel.redaction.redact``, and ``http.response.status_code`` when it was an HTTP error of the
LLM) and re-raised to the caller, as the seed does; a failure of the telemetry itself never reaches
the agent.

Reads no environment variables.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from otel import semconv
from otel.internal_errors import report_internal_error
from otel.redaction import redact
from otel.run_context import RunTelemetry, reset_current_run, set_current_run
from otel.span_accounting import SpanAccounting

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _qualified_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


class AgentRunWrapper:
    """Opens and closes the root span of each run; the tracer and id source are injected."""

    def __init__(
        self,
        tracer: Tracer,
        new_run_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        accounting: SpanAccounting | None = None,
    ) -> None:
        self._tracer = tracer
        self._new_run_id = new_run_id
        self._accounting = accounting

    def run(self, agent_name: str, fn: Callable[..., T], *args: Any, as_of: str | None = None, **kwargs: Any) -> T | None:
        run = RunTelemetry(agent=agent_name, run_id=self._new_run_id(), as_of=as_of)
        attributes: dict[str, Any] = {
            semconv.GEN_AI_OPERATION_NAME: semconv.OPERATION_INVOKE_AGENT,
            semconv.GEN_AI_AGENT_NAME: agent_name,
            semconv.AGENT_RUN_ID: run.run_id,
        }
        if as_of:
            attributes[semconv.AGENT_RUN_AS_OF] = as_of
        # A fresh context: every run is a root, even when called from inside another span.
        with self._tracer.start_as_current_span(
            semconv.root_span_name(agent_name),
            context=otel_context.Context(),
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            run.span = span
            token = set_current_run(run)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                run.add_error()
                _finish(span, run, exc, self._accounting)
                raise
            else:
                _finish(span, run, None, self._accounting)
                return result
            finally:
                reset_current_run(token)


def _finish(span: trace.Span, run: RunTelemetry, exc: BaseException | None, accounting: SpanAccounting | None) -> None:
    try:
        if exc is not None:
            span.set_attribute(semconv.AGENT_RUN_OUTCOME, semconv.OUTCOME_ERROR)
            span.set_attribute(semconv.ERROR_TYPE, _qualified_name(exc))
            status_code = getattr(exc, "status_code", None)
            if isinstance(status_code, int) and not isinstance(status_code, bool):
                span.set_attribute(semconv.HTTP_RESPONSE_STATUS_CODE, status_code)
            _record_exception(span, exc)
            span.set_status(Status(StatusCode.ERROR, redact(f"{type(exc).__name__}: {exc}")))
        elif run.kill_reason is not None:
            span.set_attribute(semconv.AGENT_RUN_OUTCOME, semconv.OUTCOME_KILLED)
            span.set_attribute(semconv.KILL_REASON, run.kill_reason)
        elif run.stale_refused:
            span.set_attribute(semconv.AGENT_RUN_OUTCOME, semconv.OUTCOME_STALE_DATA)
        else:
            span.set_attribute(semconv.AGENT_RUN_OUTCOME, semconv.OUTCOME_OK)
        if run.stale_data:
            span.set_attributes(run.stale_data)
        span.set_attributes(run.totals())
        if accounting is not None:
            losses = accounting.warn_if_losing()
            span.set_attribute(semconv.TELEMETRY_SPANS_DROPPED, losses.dropped)
            span.set_attribute(semconv.TELEMETRY_SPANS_EXPORT_FAILED, losses.export_failed)
    except Exception:
        report_internal_error(logger, "could not record the run outcome")


def _record_exception(span: trace.Span, exc: BaseException) -> None:
    """The SDK's ``exception`` event, its message and traceback redacted."""
    stacktrace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    span.add_event(
        semconv.EVENT_EXCEPTION,
        {
            semconv.EXCEPTION_TYPE: _qualified_name(exc),
            semconv.EXCEPTION_MESSAGE: redact(str(exc)),
            semconv.EXCEPTION_STACKTRACE: redact(stacktrace),
            semconv.EXCEPTION_ESCAPED: "False",
        },
    )


def run_with_telemetry(agent_name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """The seed's entry point, on the globally registered tracer provider."""
    return AgentRunWrapper(trace.get_tracer("alphatrace")).run(agent_name, fn, *args, **kwargs)
