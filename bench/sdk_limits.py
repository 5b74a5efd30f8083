"""The OpenTelemetry Python SDK's behaviour with the collector unreachable, measured, next to what
alphatrace does about it (docs/reliability.md).

    .venv/bin/python bench/sdk_limits.py

Exports to a loopback port where nothing listens. Reads no environment variables.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel.provider import configure_telemetry

DEAD = "http://127.0.0.1:9/v1/traces"


def _timed(label: str, fn) -> float:
    start = time.monotonic()
    result = fn()
    took = time.monotonic() - start
    print(f"{label:<62} {took:6.2f} s  (returned {result})")
    return took


def main() -> int:
    logging.disable(logging.WARNING)  # the SDK's retry warnings; the timings are the point here
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=DEAD)))
    tracer = provider.get_tracer("limits")
    with tracer.start_as_current_span("one"):
        pass
    exporter = OTLPSpanExporter(endpoint=DEAD)
    memory = InMemorySpanExporter()
    side = TracerProvider()
    side.add_span_processor(SimpleSpanProcessor(memory))
    with side.get_tracer("x").start_as_current_span("direct"):
        pass
    spans_for_direct = memory.get_finished_spans()
    _timed("SDK: one OTLP/HTTP export to a dead port (retries, then FAILURE)", lambda: exporter.export(spans_for_direct))
    _timed("SDK: force_flush(timeout_millis=1000) with the collector down", lambda: provider.force_flush(1000))
    with tracer.start_as_current_span("two"):
        pass
    _timed("SDK: TracerProvider.shutdown() with the collector down", provider.shutdown)

    ours = configure_telemetry(env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, instrument_openai=False)
    with ours.tracer().start_as_current_span("three"):
        pass
    _timed("alphatrace: Telemetry.shutdown(timeout_seconds=10)", lambda: ours.shutdown(timeout_seconds=10))
    ours = configure_telemetry(env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, instrument_openai=False)
    with ours.tracer().start_as_current_span("four"):
        pass
    _timed("alphatrace: Telemetry.shutdown(timeout_seconds=2)", lambda: ours.shutdown(timeout_seconds=2))
    print(f"alphatrace accounting after it: {ours.accounting.snapshot().describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
