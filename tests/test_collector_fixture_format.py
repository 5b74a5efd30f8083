"""Fast, no-Go check that the embedded exporter writes what the real collector wrote: the spans the
collector turned into tests/fixtures/collector/traces.json.jsonl (made by make_samples.py with fixed
ids and times) encode, through otel/otlp_json.py (the reference) and otel/otlp_json_compiled.py (what
the file exporter writes), to the same content."""

from __future__ import annotations

import json
from pathlib import Path

from otel import otlp_json_compiled
from otel.otlp_json import encode_line, encode_request
from tests.fixtures.collector.make_samples import make_spans
from tests.test_collector_roundtrip import spans_by_id

FIXTURE = Path(__file__).parent / "fixtures" / "collector" / "traces.json.jsonl"


def test_embedded_encoding_matches_the_collector_written_fixture():
    from_collector = spans_by_id([json.loads(line) for line in FIXTURE.read_text().splitlines()])
    ours = spans_by_id([encode_request(make_spans())])
    assert from_collector.keys() == ours.keys()
    for span_id, span in ours.items():
        assert from_collector[span_id] == span, span["name"]


def test_the_compiled_encoder_writes_the_reference_line_for_the_collector_fixture():
    spans = make_spans()
    line = otlp_json_compiled.encode_line(spans)
    assert line == encode_line(spans)
    from_collector = spans_by_id([json.loads(line) for line in FIXTURE.read_text().splitlines()])
    assert spans_by_id([json.loads(line)]) == from_collector
