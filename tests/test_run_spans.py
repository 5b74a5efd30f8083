"""A run's root span finished on the export thread (``otel/run_spans.py``) is the span the direct
way gives: the same attributes in the same order, the same events in the same order, the same limits
and dropped counts; and a failure to finish it there is reported, still exports the span and never
reaches the run."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from alpha.emit import emit_alpha_signal
from otel import run_spans, semconv
from otel.provider import configure_telemetry
from otel.run_context import RunAttributesSpanProcessor, get_current_run
from otel.run_spans import RunRootSpan, RunSpanProcessor
from otel.span_accounting import SpanAccounting
from services.agent_run_wrapper import AgentRunWrapper
from tests.conftest import SequentialIds

SIGNAL = {
    "symbol": "SPX",
    "direction": "up",
    "prob_up": 0.62,
    "confidence": 0.4,
    "ensemble_score_final": 0.31,
    "regime": "trend_up",
    "horizon": 5,
    "as_of": "2018-03-01",
}
BLEND = {**SIGNAL, "symbol": "IXIC", "members": ["momentum", "mean_reversion"], "members_missing": ["llm_analyst"]}
INVALID = {**SIGNAL, "symbol": "WTI", "prob_up": 1.5}


def _agent(tracer, fail: bool):
    def agent() -> str:
        run = get_current_run()
        # What the scheduler does on the root span directly, before the agent's own work.
        run.span.add_event("alphatrace.kill_switch.error", {"alphatrace.kill_switch.error.message": "unreadable"})
        run.span.set_attribute(semconv.AGENT_STATUS, "live")
        run.status = "live"
        with tracer.start_as_current_span("chat gpt-4o-mini", attributes={"gen_ai.operation.name": "chat"}) as child:
            child.set_attribute("gen_ai.usage.input_tokens", 120)
        run.add_llm_usage(tokens_in=120, tokens_out=30, cost_usd=0.000036)
        emit_alpha_signal([SIGNAL, BLEND, INVALID], "momentum")
        if fail:
            raise ValueError("no close for WTI")
        return "done"

    return agent


def _deferred_pipeline() -> tuple[object, InMemorySpanExporter, object]:
    exporter = InMemorySpanExporter()
    handle = configure_telemetry(
        exporter=exporter, processor_factory=SimpleSpanProcessor, id_generator=SequentialIds(), instrument_openai=False, env={}
    )
    return handle.tracer_provider, exporter, handle


def _direct_pipeline() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(id_generator=SequentialIds(), shutdown_on_exit=False)
    provider.add_span_processor(RunAttributesSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _seen(span: ReadableSpan) -> dict:
    """What an exporter reads of a span, timestamps of events aside (two runs differ there)."""
    return {
        "name": span.name,
        "ids": (span.context.trace_id, span.context.span_id, span.parent.span_id if span.parent else None),
        "kind": span.kind,
        "status": (span.status.status_code, span.status.description),
        "attributes": list(span.attributes.items()),
        "dropped_attributes": span.dropped_attributes,
        "events": [(e.name, list(e.attributes.items()), e.dropped_attributes) for e in span.events],
        "dropped_events": span.dropped_events,
    }


def _run_both(fail: bool) -> tuple[list[ReadableSpan], list[ReadableSpan]]:
    provider, deferred_exporter, handle = _deferred_pipeline()
    direct_provider, direct_exporter = _direct_pipeline()
    try:
        for tracer_provider in (provider, direct_provider):
            tracer = tracer_provider.get_tracer("test")
            wrapper = AgentRunWrapper(tracer, new_run_id=lambda: "run-1")
            if fail:
                with pytest.raises(ValueError):
                    wrapper.run("momentum", _agent(tracer, fail), as_of="2018-03-01")
            else:
                assert wrapper.run("momentum", _agent(tracer, fail), as_of="2018-03-01") == "done"
        return list(deferred_exporter.get_finished_spans()), list(direct_exporter.get_finished_spans())
    finally:
        handle.shutdown()
        direct_provider.shutdown()


@pytest.mark.parametrize("fail", [False, True], ids=["ok", "error"])
def test_root_finished_on_export_is_the_span_set_directly(fail):
    deferred, direct = _run_both(fail)

    assert [_seen(span) for span in deferred] == [_seen(span) for span in direct]
    child, root = deferred
    assert child.attributes["gen_ai.agent.name"] == "momentum" and child.attributes[semconv.AGENT_RUN_ID] == "run-1"
    names = [event.name for event in root.events]
    expected = ["alphatrace.kill_switch.error", semconv.EVENT_ALPHA_SIGNAL, semconv.EVENT_ALPHA_SIGNAL, semconv.EVENT_ALPHA_SIGNAL_INVALID]
    assert names == expected + (["exception"] if fail else [])
    assert root.events[2].attributes[semconv.ALPHA_MEMBERS] == ("momentum", "mean_reversion")
    assert root.attributes[semconv.AGENT_RUN_OUTCOME] == ("error" if fail else "ok")
    assert root.attributes[semconv.RUN_ALPHA_SIGNALS] == 2
    assert list(root.attributes)[-1] == semconv.RUN_TOOL_CALLS  # the totals come last, as set at the end
    stamps = [event.timestamp for event in root.events]
    assert stamps == sorted(stamps) and root.start_time <= stamps[0] and stamps[-1] <= root.end_time


def test_limits_and_dropped_counts_are_the_sdks(monkeypatch):
    monkeypatch.setenv("OTEL_SPAN_EVENT_COUNT_LIMIT", "2")
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "7")
    monkeypatch.setenv("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "3")
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "4")

    deferred, direct = _run_both(fail=False)

    assert [_seen(span) for span in deferred] == [_seen(span) for span in direct]
    root = deferred[-1]
    assert len(root.events) == 2 and root.dropped_events == 2
    assert len(root.attributes) == 7 and root.dropped_attributes > 0
    assert [event.name for event in root.events] == [semconv.EVENT_ALPHA_SIGNAL, semconv.EVENT_ALPHA_SIGNAL_INVALID]  # the last two kept
    assert root.events[0].dropped_attributes > 0 and root.events[1].dropped_attributes == 0
    assert all(len(value) <= 4 for event in root.events for value in event.attributes.values() if isinstance(value, str))


class _Recording(SpanProcessor):
    def __init__(self) -> None:
        self.ended: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)


def test_the_agent_thread_hands_on_the_root_with_its_updates_kept():
    inner = _Recording()
    provider = TracerProvider(id_generator=SequentialIds(), shutdown_on_exit=False)
    provider.add_span_processor(RunSpanProcessor(inner, SpanAccounting()))
    tracer = provider.get_tracer("test")
    seen_during_run = {}

    def agent() -> None:
        emit_alpha_signal(SIGNAL, "momentum")
        seen_during_run["live events"] = len(get_current_run().span.events)

    AgentRunWrapper(tracer, new_run_id=lambda: "run-1").run("momentum", agent, as_of="2018-03-01")

    (root,) = inner.ended
    assert isinstance(root, RunRootSpan)
    assert seen_during_run == {"live events": 0}  # kept for the export thread, not on the live span
    assert [event.name for event in root.events] == [semconv.EVENT_ALPHA_SIGNAL]
    assert root.attributes[semconv.AGENT_RUN_OUTCOME] == "ok" and root.attributes[semconv.RUN_ALPHA_SIGNALS] == 1
    assert f'"{semconv.AGENT_RUN_OUTCOME}": "ok"' in root.to_json()


def test_a_root_without_updates_is_handed_on_as_it_ended():
    inner = _Recording()
    provider = TracerProvider(id_generator=SequentialIds(), shutdown_on_exit=False)
    provider.add_span_processor(RunSpanProcessor(inner, SpanAccounting()))
    tracer = provider.get_tracer("test")

    with tracer.start_as_current_span("not a run"):
        pass

    (span,) = inner.ended
    assert type(span) is ReadableSpan
    assert dict(span.attributes) == {}


def test_emitting_after_the_run_ended_records_nothing(caplog):
    inner = _Recording()
    provider = TracerProvider(id_generator=SequentialIds(), shutdown_on_exit=False)
    provider.add_span_processor(RunSpanProcessor(inner, SpanAccounting()))
    kept = {}

    def agent() -> None:
        kept["run"] = get_current_run()

    AgentRunWrapper(provider.get_tracer("test"), new_run_id=lambda: "run-1").run("momentum", agent)
    run = kept["run"]
    assert not run.defers_root
    with caplog.at_level(logging.WARNING):
        assert emit_alpha_signal(SIGNAL, "momentum", span=run.span) == 0
    (root,) = inner.ended
    assert root.events == ()


def test_a_failure_attaching_is_reported_and_the_span_exported_as_it_ended(monkeypatch, caplog):
    monkeypatch.delenv("PYTEST_CURRENT_TEST")  # the forgiving path users get

    def broken(*args, **kwargs):
        raise RuntimeError("attach failed")

    monkeypatch.setattr(run_spans, "complete", broken)
    provider, exporter, handle = _deferred_pipeline()
    try:
        with caplog.at_level(logging.ERROR):
            result = AgentRunWrapper(provider.get_tracer("test"), new_run_id=lambda: "run-1").run(
                "momentum", lambda: emit_alpha_signal(SIGNAL, "momentum"), as_of="2018-03-01"
            )
    finally:
        handle.shutdown()

    assert result == 1
    (root,) = exporter.get_finished_spans()
    # Exported as it ended: its name, ids, times and status, without what the run kept for it.
    assert root.name == "invoke_agent momentum" and root.parent is None and root.end_time >= root.start_time
    assert dict(root.attributes) == {} and root.events == ()
    assert "could not attach a run's deferred events" in caplog.text


values = st.one_of(
    st.text(max_size=6),
    st.integers(min_value=-3, max_value=3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.text(max_size=3), max_size=3),
    st.tuples(st.integers(), st.integers()),
)
attribute_dicts = st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e", ""]), values, max_size=6)
limit_values = st.one_of(st.none(), st.integers(min_value=1, max_value=5))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first=attribute_dicts, live=attribute_dicts, last=attribute_dicts, event=attribute_dicts, limits=st.tuples(limit_values, limit_values)
)
def test_attaching_gives_what_the_sdk_gives(first, live, last, event, limits, caplog):
    """Any attributes (lists, None, too long, too many, empty keys): ``complete`` leaves the span
    as ``start_span(attributes=...)``, ``set_attributes`` and ``add_event`` on a real span do."""
    count, length = limits
    # Attributes set on the live span during the run are checked there, against what it holds then
    # (the root's own first attributes are kept aside): with a count limit, the same only while
    # they do not overflow it (a root span holds about 20 of the 128 allowed).
    assume(not live or count is None or len(first) + len(live) + len(last) <= count)
    span_limits = SpanLimits(
        max_span_attributes=count, max_event_attributes=count, max_span_attribute_length=length, max_attribute_length=length
    )
    tracer = TracerProvider(span_limits=span_limits, shutdown_on_exit=False).get_tracer("test")
    with caplog.at_level(logging.ERROR):  # the SDK warns about every value it changes, both ways
        direct = tracer.start_span("root", attributes=first)
        direct.set_attributes(live)
        direct.add_event(semconv.EVENT_ALPHA_SIGNAL, event, timestamp=5)
        direct.set_attributes(last)
        direct.end()
        started = tracer.start_span("root")
        started.set_attributes(live)
        started.end()
        attributes, events = run_spans.complete(
            started._attributes, started._events, [(semconv.EVENT_ALPHA_SIGNAL, event, 5)], first, last, span_limits
        )
    done = ReadableSpan("root", attributes=attributes, events=events)
    assert list(done.attributes.items()) == list(direct.attributes.items())
    assert done.dropped_attributes == direct.dropped_attributes
    assert [(e.name, e.timestamp, list(e.attributes.items()), e.dropped_attributes) for e in done.events] == [
        (e.name, e.timestamp, list(e.attributes.items()), e.dropped_attributes) for e in direct.events
    ]
