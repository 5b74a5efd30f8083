"""The one redaction rule (``otel/redaction.py``) and where it is applied on its own: the log filter,
the exporter wrapper, the HTTP seam's error summary and the report's error texts."""

from __future__ import annotations

import logging
from io import StringIO

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from otel.redacting_exporter import RedactingSpanExporter, redact_span
from otel.redaction import REDACTED, RedactingFilter, content_capture_enabled, install_log_redaction, redact, register_secret
from services.llm_http import error_summary

KEY = "sk-proj-CANARYq7Lx2Vb9Tn4Rm8Kc1Wd6Hs3Jf5Gz0Py"
LOCAL_KEY = "lmstudio-CANARY-0b1c2d3e4f5a6b7c"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Incorrect API key provided: {KEY}.", f"Incorrect API key provided: {REDACTED}."),
        (f"Incorrect API key provided: {KEY[:8]}{'*' * 36}{KEY[-4:]}. You can", f"Incorrect API key provided: {REDACTED}. You can"),
        (f"key {KEY[:3]}...{KEY[-4:]} revoked", f"key {REDACTED} revoked"),
        (f"key {KEY[:8]}xxxxxxxxxxxxxxxx{KEY[-4:]}", f"key {REDACTED}"),
        (f"truncated {KEY[:20]}\u2026", f"truncated {REDACTED}\u2026"),
        ("Authorization: Bearer abc.def-ghi", f"Authorization: Bearer {REDACTED}"),
        ("authorization: bearer abcdefgh12==", f"authorization: bearer {REDACTED}"),
        ("the bearer of bad news", "the bearer of bad news"),
        ("via https://team:s3cr3t-pass@gateway.example/v1", f"via https://team:{REDACTED}@gateway.example/v1"),
        ("mail ops@example.com at http://host:8080/v1", "mail ops@example.com at http://host:8080/v1"),
        ("GET /v1?api-key=zzzz1234&x=1", f"GET /v1?api-key={REDACTED}&x=1"),
        ('{"api_key": "zzzz1234"}', f'{{"api_key": "{REDACTED}"}}'),
        ("another key sk-ant-api03-abcdefghijklmnop here", f"another key {REDACTED} here"),
        ("risk-free rate, sk-learn, desk-top, task-force", "risk-free rate, sk-learn, desk-top, task-force"),
        ("waiting... done; 3 ... 4; momentum_60d 0.05", "waiting... done; 3 ... 4; momentum_60d 0.05"),
        ("", ""),
    ],
)
def test_the_rule_redacts_the_key_its_masks_bearer_and_sk_secrets_and_nothing_else(text, expected):
    assert redact(text, (KEY,)) == expected


@pytest.mark.parametrize(
    "form",
    [LOCAL_KEY, f"{LOCAL_KEY[:8]}{'*' * 12}{LOCAL_KEY[-4:]}", f"{LOCAL_KEY[:4]}***", f"...{LOCAL_KEY[-4:]}", LOCAL_KEY[:14]],
)
def test_a_configured_key_of_any_shape_is_redacted_with_its_masked_forms(form):
    assert REDACTED in redact(f"denied ({form})", (LOCAL_KEY,))
    assert LOCAL_KEY[-6:] not in redact(f"denied ({form})", (LOCAL_KEY,))


def test_the_key_in_the_environment_and_a_registered_one_are_known(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", LOCAL_KEY)
    assert redact(f"bad key {LOCAL_KEY}") == f"bad key {REDACTED}"
    register_secret("gw_live_REGISTERED_0123456789")
    assert redact("bad key gw_live_REGISTERED_0123456789") == f"bad key {REDACTED}"
    register_secret("short")  # too short to be a secret worth mangling text for
    assert redact("a short story") == "a short story"


@pytest.mark.parametrize(
    ("value", "enabled"),
    [
        (None, False),
        ("", False),
        ("no_content", False),
        ("true", False),
        ("span_only", True),
        ("EVENT_ONLY", True),
        ("span_and_event", True),
    ],
)
def test_content_capture_follows_the_instrumentations_modes(value, enabled):
    env = {} if value is None else {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": value}
    assert content_capture_enabled(env) is enabled


def test_the_log_filter_redacts_message_arguments_and_traceback():
    stream = StringIO()
    logger = logging.getLogger("alphatrace.test_redaction")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.propagate = False
    install_log_redaction(logger)
    install_log_redaction(logger)  # idempotent
    try:
        try:
            raise RuntimeError(f"upstream said Bearer {KEY}")
        except RuntimeError:
            logger.exception("call failed with %s", KEY)
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1
    assert "call failed with [REDACTED]" in text and "RuntimeError: upstream said Bearer [REDACTED]" in text
    assert KEY not in text and KEY[:12] not in text


def test_the_exporter_wrapper_redacts_status_attributes_and_events_and_passes_clean_spans_as_they_are():
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(memory)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("clean", attributes={"n": 1, "s": "fine"}) as clean:
        pass
    with tracer.start_as_current_span("dirty", attributes={"s": f"key {KEY}", "list": ["ok", f"Bearer {KEY}"], "n": 2}) as span:
        span.add_event("exception", {"exception.message": f"bad {KEY}", "exception.stacktrace": f"Traceback\nError: {KEY}"})
        span.set_status(Status(StatusCode.ERROR, f"AuthenticationError: {KEY[:8]}****{KEY[-4:]}"))
    provider.shutdown()
    exported_clean, dirty = memory.get_finished_spans()
    assert exported_clean.attributes == clean.attributes
    assert redact_span(exported_clean, (KEY,)) is exported_clean  # nothing to redact: not copied
    assert dirty.attributes["s"] == f"key {REDACTED}" and dirty.attributes["n"] == 2
    assert tuple(dirty.attributes["list"]) == ("ok", f"Bearer {REDACTED}")
    assert dirty.events[0].attributes["exception.message"] == f"bad {REDACTED}"
    assert dirty.status.status_code is StatusCode.ERROR and dirty.status.description == f"AuthenticationError: {REDACTED}"
    assert dirty.context == span.get_span_context() and dirty.name == "dirty"


def test_the_error_summary_keeps_identifiers_not_text():
    body = f'{{"error": {{"message": "Incorrect API key provided: {KEY}", "type": "invalid_request_error", "code": "{KEY}"}}}}'.encode()
    summary = error_summary(401, body)["error"]
    assert summary["type"] == "invalid_request_error" and summary["code"] is None
    assert str(len(body)) in summary["message"] and KEY[:8] not in str(summary)
    assert error_summary(502, b"<html>Bad gateway</html>")["error"]["type"] is None


def test_the_report_and_its_state_redact_error_texts_from_files_written_by_older_versions():
    from meta_supervisor.assemble.agents import agent_report
    from meta_supervisor.tally.aggregates import AgentTally
    from meta_supervisor.tally.latency import latency_summary
    from services.pricing import PriceTable

    tally = AgentTally()
    tally.outcomes["error"] = 1
    tally.failing.append((1, "ab" * 16, "run-1", "openai.AuthenticationError", f"Incorrect API key provided: {KEY}"))
    state = tally.to_state()
    report = agent_report("llm_analyst", tally, latency_summary([]), PriceTable.load(), None, False, "http://127.0.0.1:16686", 0, [])
    (failing,) = report["failing_runs"]
    assert failing["message"] == f"Incorrect API key provided: {REDACTED}"
    assert failing["error_type"] == "openai.AuthenticationError"
    assert KEY[:12] not in repr(state) and KEY[:12] not in repr(report)


def test_a_span_that_cannot_be_redacted_is_exported_with_its_strings_replaced(monkeypatch):
    import otel.redacting_exporter as redacting

    monkeypatch.delenv("PYTEST_CURRENT_TEST")  # the forgiving path users get (pytest itself re-raises)
    monkeypatch.setattr(redacting, "redact_span", lambda span, secrets=None: 1 / 0)
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(memory)))
    with provider.get_tracer("test").start_as_current_span("odd", attributes={"s": f"key {KEY}", "n": 3}) as span:
        span.add_event("exception", {"exception.message": f"bad {KEY}"})
        span.set_status(Status(StatusCode.ERROR, f"bad {KEY}"))
    provider.shutdown()
    (exported,) = memory.get_finished_spans()
    assert dict(exported.attributes) == {"s": REDACTED, "n": 3}
    assert exported.events[0].attributes["exception.message"] == REDACTED
    assert exported.status.description == REDACTED and exported.name == "odd"
