"""The span logic of an agent run: one root span per run, the single choke point every run goes through.

``services/agent_run_wrapper.py`` is the seed's name for it (``run_with_telemetry``, ``AgentRunWrapper``)
and re-exports what is here.

``run_with_telemetry(agent_name, fn, *args, **kwargs)`` keeps the seed's signature. It opens the root
span ``invoke_agent {agent}``, makes the run current (so LLM spans become its children and carry the
run's ids), calls ``fn``, and when ``fn`` returns or raises records the outcome (``ok``, ``error``,
``killed``, ``stale_data`` or ``budget_exceeded``), the run's totals and, for a run that called a
model, the GenAI conventions' provider, model and usage of an ``invoke_agent`` span
(``RunTelemetry.usage_attributes``). A run stopped inside by a check (``RunStopped``, from
``otel.run_context.checkpoint``) ends with the check's outcome, the step it stopped before and the
reason, status unset, and the exception goes on to the caller. Any other exception is recorded on
the span (type, message and traceback through ``otel.redaction.redact``,
and ``http.response.status_code`` when it was an HTTP error of the LLM) and re-raised to the caller,
as the seed does; a failure of the telemetry itself never reaches the agent.

Reads no environment variables.
"""

from __future__ import annotations

import logging
import random
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from otel import semconv
from otel.internal_errors import report_internal_error
from otel.redaction import redact
from otel.run_context import RunStopped, RunTelemetry, run_context
from otel.span_accounting import SpanAccounting

logger = logging.getLogger(__name__)
T = TypeVar("T")


def _qualified_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def new_run_id() -> str:
    """A random (version 4) UUID as text, from the ``random`` module's generator, as the SDK makes
    trace and span ids: ``uuid.uuid4()`` reads ``os.urandom``, a system call on every run that costs
    more and releases the GIL (``otel/export_handoff.py`` says why that matters). ``random``
    reseeds in a forked child, so processes forked from one parent do not repeat ids."""
    value = (_getrandbits(128) & _UUID4_CLEAR) | _UUID4_SET
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_getrandbits = random.getrandbits
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # version and variant bits
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)  # version 4, RFC 4122 variant


class AgentRunWrapper:
    """Opens and closes the root span of each run; the tracer and id source are injected."""

    def __init__(
        self,
        tracer: Tracer,
        new_run_id: Callable[[], str] = new_run_id,
        accounting: SpanAccounting | None = None,
    ) -> None:
        self._tracer = tracer
        self._new_run_id = new_run_id
        self._accounting = accounting

    def run(self, agent_name: str, fn: Callable[..., T], *args: Any, as_of: str | None = None, **kwargs: Any) -> T | None:
        run = RunTelemetry(agent=agent_name, run_id=self._new_run_id(), as_of=as_of, root_pending=True)
        attributes: dict[str, Any] = {
            semconv.GEN_AI_OPERATION_NAME: semconv.OPERATION_INVOKE_AGENT,
            semconv.GEN_AI_AGENT_NAME: agent_name,
            semconv.AGENT_RUN_ID: run.run_id,
        }
        if as_of:
            attributes[semconv.AGENT_RUN_AS_OF] = as_of
        # A fresh context: every run is a root, even when called from inside another span. The run
        # is in it, so the span processor knows this span as the run's root (otel/run_spans.py). The
        # span and the run are made current together (one attach), as start_as_current_span would
        # make the span current, without its two context managers. Its attributes are set right
        # after it starts, or kept for the export thread with the rest (otel/run_spans.py).
        start_context = run_context(run, _EMPTY_CONTEXT)
        span = self._tracer.start_span(
            semconv.root_span_name(agent_name),
            context=start_context,
            kind=SpanKind.INTERNAL,
            record_exception=False,
            set_status_on_exception=False,
        )
        run.root_pending = False  # whether or not a processor saw it start (a sampler may drop it)
        run.span = span
        if run.defers_root:
            run.start_attributes = attributes
        else:
            span.set_attributes(attributes)
        token = otel_context.attach(trace.set_span_in_context(span, start_context))
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            if not isinstance(exc, RunStopped):
                run.add_error()
            _finish(span, run, exc, self._accounting)
            raise
        else:
            _finish(span, run, None, self._accounting)
            return result
        finally:
            otel_context.detach(token)
            span.end()


_EMPTY_CONTEXT = otel_context.Context()


def _finish(span: trace.Span, run: RunTelemetry, exc: BaseException | None, accounting: SpanAccounting | None) -> None:
    """The outcome, the totals and the process's loss counters: set in one call (one lock), or
    kept for the export thread when the run's root is finished there (``otel/run_spans.py``)."""
    try:
        attributes: dict[str, Any] = {}
        if isinstance(exc, RunStopped):
            # Stopped by a check before a step (kill switch, budget): not an error of the agent.
            attributes[semconv.AGENT_RUN_OUTCOME] = exc.outcome
            attributes[semconv.RUN_STOPPED_BEFORE] = exc.step
            attributes[semconv.RUN_STOP_REASON] = redact(exc.reason)
            if exc.outcome == semconv.OUTCOME_KILLED:
                attributes[semconv.KILL_REASON] = redact(exc.reason)
            attributes.update(exc.attributes)  # the check's own (a budget's name, limit, spent)
        elif exc is not None:
            attributes[semconv.AGENT_RUN_OUTCOME] = semconv.OUTCOME_ERROR
            attributes[semconv.ERROR_TYPE] = _qualified_name(exc)
            status_code = getattr(exc, "status_code", None)
            if isinstance(status_code, int) and not isinstance(status_code, bool):
                attributes[semconv.HTTP_RESPONSE_STATUS_CODE] = status_code
            _record_exception(run, exc)
            span.set_status(Status(StatusCode.ERROR, redact(f"{type(exc).__name__}: {exc}")))
        elif run.kill_reason is not None:
            attributes[semconv.AGENT_RUN_OUTCOME] = semconv.OUTCOME_KILLED
            attributes[semconv.KILL_REASON] = run.kill_reason
        elif run.stale_refused:
            attributes[semconv.AGENT_RUN_OUTCOME] = semconv.OUTCOME_STALE_DATA
        else:
            attributes[semconv.AGENT_RUN_OUTCOME] = semconv.OUTCOME_OK
        if run.stale_data:
            attributes.update(run.stale_data)
        attributes.update(run.usage_attributes())
        attributes.update(run.totals())
        if accounting is not None:
            # Cumulative for the process, on every root span: the report takes the largest value per
            # process from whichever roots it reads (a window, a rotated file), so each root carries
            # them. Reading them is two integers; the warning check runs only when they changed
            # (the watchdog checks for stalled exports every few seconds anyway).
            dropped, failed = accounting.losses()
            if dropped + failed != accounting.warned_lost:
                accounting.warn_if_losing()
            attributes[semconv.TELEMETRY_SPANS_DROPPED] = dropped
            attributes[semconv.TELEMETRY_SPANS_EXPORT_FAILED] = failed
        if run.defers_root:
            run.finish_attributes = attributes
        else:
            span.set_attributes(attributes)
    except Exception:
        report_internal_error(logger, "could not record the run outcome")


def _record_exception(run: RunTelemetry, exc: BaseException) -> None:
    """The SDK's ``exception`` event, its message and traceback redacted."""
    stacktrace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    run.add_root_event(
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
