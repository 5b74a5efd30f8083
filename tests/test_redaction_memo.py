"""Redaction at export remembers its answers (otel.redaction.RedactionMemo) and stays complete: the
memo answers exactly what ``redact`` answers, a key that appears after the first export is still
redacted (a new memo for new secrets), and a str subclass is never answered from the memo."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel.redacting_exporter import RedactingSpanExporter
from otel.redaction import REDACTED, RedactionMemo, redact

KEY = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789wxyz"
PIECES = [KEY, KEY[:8] + "****" + KEY[-4:], KEY[:12], f"Bearer {KEY}", "sk-live-abcdef", "api_key=s3cr3t", "https://u:pw@h", "ok", " ", "…"]
texts = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=8)), max_size=4).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(texts, min_size=1, max_size=12))
def test_the_memo_answers_what_redact_answers_every_time(batch):
    memo = RedactionMemo((KEY,), max_entries=4)  # small: cleared often
    for text in batch + batch:  # each text twice: the second answer may come from the memo
        assert memo(text) == redact(text, (KEY,))


def test_a_key_set_after_the_first_export_is_redacted_from_then_on(monkeypatch):
    gateway_key = "gw_live_7fQ2mZk9XrT4bN8cLpV3"  # no generic rule matches it: only the key itself
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(memory)))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("before", attributes={"s": gateway_key}):
        pass  # not a known secret yet: exported as it is, and remembered as clean
    monkeypatch.setenv("OPENAI_API_KEY", gateway_key)
    with tracer.start_as_current_span("after", attributes={"s": gateway_key, "t": f"{gateway_key[:12]}..."}):
        pass
    provider.shutdown()
    before, after = memory.get_finished_spans()
    assert before.attributes["s"] == gateway_key
    assert after.attributes["s"] == REDACTED and gateway_key[:12] not in after.attributes["t"]


def test_a_str_subclass_is_never_answered_from_the_memo():
    class Sly(str):
        def __hash__(self) -> int:
            return hash("ok")

        def __eq__(self, other: object) -> bool:
            return True

    memo = RedactionMemo((KEY,))
    assert memo("ok") == "ok"
    assert memo(Sly(f"the key {KEY}")) == f"the key {REDACTED}"
