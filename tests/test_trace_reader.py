"""The trace readers against files the pinned collector wrote (json, proto, zstd framed, zstd native),
against protobuf made by opentelemetry-proto, and against the framing edge cases: partial tails,
rotation mid-line, corrupt frames."""

from __future__ import annotations

import io
import json
import struct
from datetime import date
from pathlib import Path

import pytest
import zstandard

from meta_supervisor.build.file_reader import read_trace_file
from meta_supervisor.reading.otlp_proto import ProtoError, decode_request
from meta_supervisor.reading.shapes import FORMAT_FRAMED, FORMAT_JSON_LINES, RecordDecoder, read_framed, read_json_lines, sniff
from meta_supervisor.tally.agent_counts import with_deferred
from meta_supervisor.tally.span_aggregator import SpanAggregator
from services.pricing import PriceTable
from tests.fixtures.report.otlp_builder import Llm, Run, Signal, line, lines_for, request, spans_of

COLLECTOR = Path(__file__).parent / "fixtures" / "collector"
SAMPLES = ["traces.json.jsonl", "traces.proto.bin", "traces.zstd.bin", "traces.zstd-native.bin"]


def aggregate(path: Path) -> SpanAggregator:
    aggregator = SpanAggregator(PriceTable.load())
    read_trace_file(path, aggregator)
    aggregator.settle()
    return aggregator


def summary(aggregator: SpanAggregator) -> dict:
    """Everything the report is computed from, as comparable plain data."""
    return {
        "inputs": aggregator.inputs.to_state(),
        "agents": {
            name: (tally.to_state(), list(tally.latencies_ns), tally.signals.records(name), tally.signals.total, tally.signals.unusable)
            for name, tally in sorted(aggregator.agents.items())
        },
        "pending": sorted((key, repr(entry)) for key, entry in aggregator.pending.items()),
    }


@pytest.mark.parametrize("name", SAMPLES)
def test_collector_samples_read_alike(name: str) -> None:
    """Every framing the collector writes gives exactly what its JSON-lines output gives."""
    path = COLLECTOR / name
    if not path.exists():
        pytest.skip(f"collector sample {name} not present")
    reference = aggregate(COLLECTOR / "traces.json.jsonl")
    got = aggregate(path)
    assert got.inputs.bad_lines == 0
    assert got.inputs.spans == 4
    assert summary(got) == summary(reference)


def test_collector_sample_content() -> None:
    aggregator = aggregate(COLLECTOR / "traces.json.jsonl")
    momentum = aggregator.agents["momentum"]
    assert momentum.outcomes == {"ok": 1}
    assert momentum.alpha == {("SPX", "up"): 1}
    [signal] = momentum.signals.records("momentum")  # every field, as scoring reads it
    assert (signal.symbol, signal.as_of, signal.direction, signal.prob_up, signal.horizon) == ("SPX", date(2018, 12, 31), "up", 0.61, 5)
    assert (signal.trace_id, signal.span_id) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    assert signal.time_unix_nano > 0
    assert aggregator.agents["meanrev"].outcomes == {"error": 1}
    # its LLM span names neither agent nor run: it waits for an agent span of its trace, so the report
    # counts it for "(unknown agent)"
    shown = with_deferred(aggregator.agents, aggregator.pending)
    models = {model for (_, model, _) in shown["(unknown agent)"].day_models}
    assert "gpt-4o-mini-2024-07-18" in models


def test_sniff_detects_shapes_from_bytes() -> None:
    assert sniff(b"") == "empty"
    assert sniff(b'{"resourceSpans":[]}\n') == FORMAT_JSON_LINES
    assert sniff(b"garbage first line\n{...}") == FORMAT_JSON_LINES
    assert sniff(b"\x00\x00\x01\x00\x0a") == FORMAT_FRAMED
    assert sniff(b"\x28\xb5\x2f\xfd\x00") == "zstd"
    for name in SAMPLES:
        path = COLLECTOR / name
        if path.exists():
            expected = {
                "traces.json.jsonl": FORMAT_JSON_LINES,
                "traces.proto.bin": FORMAT_FRAMED,
                "traces.zstd.bin": FORMAT_FRAMED,
                "traces.zstd-native.bin": "zstd",
            }[name]
            assert sniff(path.read_bytes()[:64]) == expected


def _proto_request(runs: list[Run]) -> bytes:
    """The same spans as the JSON builder, serialized by opentelemetry-proto's own classes."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    document = request([span for run in runs for span in spans_of(run)])
    for resource_spans in document["resourceSpans"]:
        for scope in resource_spans["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):  # protobuf's JSON mapping wants base64 bytes
                    if key in span:
                        import base64

                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    message = json_format.ParseDict(document, ExportTraceServiceRequest())
    return message.SerializeToString()


def test_proto_decoder_matches_json() -> None:
    runs = [
        Run("momentum", 1, llm=[Llm(tokens_in=120, tokens_out=7, cached=20)], signals=[("SPX", "up")]),
        Run("momentum", 4, signals=[Signal("SPX", "down", 0.25, -0.5, tradable=False), ("NDX", "flat")], as_of="2024-01-05"),
        Run("meanrev", 2, outcome="error", error_type="ValueError", message="bad \u00e9", invalid=["NaN prob_up"]),
        Run("momentum", 3, outcome="killed", totals=False, kill_reason="drawdown"),
    ]
    from_json = SpanAggregator(PriceTable.load())
    decoder = RecordDecoder(from_json, "json")
    for text in lines_for(runs, per_line=10):
        decoder.json_record(text.encode(), 1)
    from_proto = SpanAggregator(PriceTable.load())
    from_proto.add_request(decode_request(_proto_request(runs)))
    assert summary(from_proto) == summary(from_json)
    assert from_proto.inputs.spans == 5
    assert len(from_proto.agents["momentum"].signals) == 2  # the doubles, int, bool and event time came through protobuf


def test_proto_decoder_rejects_garbage() -> None:
    with pytest.raises(ProtoError):
        decode_request(b"\x0a\xff\xff\xff\xff\x0f")  # a length past the end
    with pytest.raises(ProtoError):
        decode_request(b"\x0b")  # wire type 3 (groups) is not used by OTLP


def _framed(messages: list[bytes]) -> bytes:
    return b"".join(struct.pack(">I", len(m)) + m for m in messages)


def test_framed_reader_partial_tail_and_bad_frame(tmp_path: Path) -> None:
    runs = [Run("a", i, llm=[Llm()]) for i in range(1, 4)]
    payloads = [_proto_request([run]) for run in runs]
    data = _framed(payloads)
    aggregator = SpanAggregator(PriceTable.load())
    result = read_framed(io.BytesIO(data[:-5]), RecordDecoder(aggregator, "f"), 0)
    assert (result.records, result.partial_tail) == (2, len(payloads[-1]) + 4 - 5)
    assert result.consumed == len(data) - len(payloads[-1]) - 4
    assert aggregator.inputs.spans == 4 and aggregator.inputs.bad_lines == 0
    # a corrupt message is one bad record, with its number; the next one is still read
    broken = _framed([payloads[0], b"\x0a\x05\x01", payloads[2]])
    aggregator = SpanAggregator(PriceTable.load())
    result = read_framed(io.BytesIO(broken), RecordDecoder(aggregator, "f"), 0)
    assert aggregator.inputs.bad_lines == 1
    assert aggregator.inputs.bad_line_examples[0][1] == 2
    assert aggregator.inputs.spans == 4


def test_zstd_framed_json_and_native_stream(tmp_path: Path) -> None:
    runs = [Run("a", i, llm=[Llm()], signals=[("SPX", "up")]) for i in range(1, 5)]
    texts = lines_for(runs, per_line=3)
    compressor = zstandard.ZstdCompressor()
    framed = tmp_path / "framed.bin"
    framed.write_bytes(_framed([compressor.compress(t.rstrip("\n").encode()) for t in texts]))
    native = tmp_path / "native.bin"
    native.write_bytes(b"".join(compressor.compress(t.encode()) for t in texts))  # one frame per write
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(texts))
    reference = summary(aggregate(plain))
    assert summary(aggregate(framed)) == reference
    assert summary(aggregate(native)) == reference
    cursor = read_trace_file(native, SpanAggregator(PriceTable.load()))
    assert cursor.format == "zstd+json-lines"
    assert cursor.offset == len(plain.read_bytes())


def test_json_lines_partial_tail_and_collector_two_writes(tmp_path: Path) -> None:
    runs = [Run("a", i, llm=[Llm()]) for i in range(1, 4)]
    texts = lines_for(runs, per_line=2)
    complete = "".join(texts[:-1])
    # the file being written: half of the last line
    path = tmp_path / "traces.jsonl"
    path.write_text(complete + texts[-1][:40])
    aggregator = SpanAggregator(PriceTable.load())
    cursor = read_trace_file(path, aggregator)
    assert cursor.offset == len(complete.encode())
    assert cursor.partial_tail_bytes == 40
    assert aggregator.inputs.bad_lines == 0
    # the collector wrote the line but not yet its newline: the line is complete and counted
    path.write_text(complete + texts[-1].rstrip("\n"))
    aggregator = SpanAggregator(PriceTable.load())
    cursor = read_trace_file(path, aggregator)
    assert cursor.partial_tail_bytes == 0
    assert aggregator.inputs.spans == 6
    # a rotated file may start with the lone newline of the previous file's last line
    path.write_text("\n" + complete)
    aggregator = SpanAggregator(PriceTable.load())
    read_trace_file(path, aggregator)
    assert aggregator.inputs.bad_lines == 0


def test_lines_longer_than_the_read_buffer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from meta_supervisor.reading import shapes as trace_reader

    monkeypatch.setattr(trace_reader, "BLOCK_SIZE", 1024)
    runs = [Run("a" * 3000, i, llm=[Llm()]) for i in range(1, 6)]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(lines_for(runs, per_line=3)))
    aggregator = SpanAggregator(PriceTable.load())
    with open(path, "rb") as handle:
        result = read_json_lines(handle, RecordDecoder(aggregator, "t"), 0)
    assert aggregator.inputs.spans == 10
    assert result.partial_tail == 0 and result.consumed == path.stat().st_size


def test_line_numbers_of_bad_lines(tmp_path: Path) -> None:
    good = line(spans_of(Run("a", 1)))
    path = tmp_path / "t.jsonl"
    path.write_text(good + "{broken\n" + good + '{"resourceSpans": 5}\n' + "\n" + "[1, 2]\n")
    aggregator = SpanAggregator(PriceTable.load())
    read_trace_file(path, aggregator)
    assert aggregator.inputs.bad_lines == 3
    assert [example[1] for example in aggregator.inputs.bad_line_examples] == [2, 4, 6]
    assert json.dumps(aggregator.inputs.bad_line_examples)  # plain data
