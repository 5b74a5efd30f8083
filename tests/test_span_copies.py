"""A span written more than once, and a line starting with a UTF-8 byte order mark.

The same (trace id, span id) again with the same content is an exact duplicate (an exporter retry);
with other content it is a conflicting duplicate (two processes wrote the same ids): both are
counted apart and not counted as spans, the first copy read is kept. Every way of reading gives the
same counts: the native core and the Python reader, one process or parts read in parallel (a copy
across the cut), one build or incremental builds (a copy in a later build), one file or several.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import msgspec
import pytest

from meta_supervisor.assemble.report import KillSwitchState, build_report
from meta_supervisor.build.dispatch import build_inputs
from meta_supervisor.build.options import BuildOptions
from meta_supervisor.cli import report as report_cli
from meta_supervisor.reading.otlp_schema import Event, Span
from meta_supervisor.tally.fingerprints import content_check, span_entry, span_fingerprint
from meta_supervisor.tally.span_aggregator import SpanAggregator
from services.pricing import PriceTable
from tests.conftest import count_merges_of
from tests.fixtures.report.otlp_builder import Llm, Run, line, lines_for, spans_of

NOW = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
PRICES = PriceTable.load()
BOM = b"\xef\xbb\xbf"


@pytest.fixture(params=["on", "off"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs with the native core (when installed) and with the Python reader alone."""
    monkeypatch.setenv("ALPHATRACE_NATIVE", "auto" if request.param == "on" else "off")
    return request.param


def cli_build(tmp_path: Path, path: Path, name: str = "out") -> tuple[dict, Path]:
    out = tmp_path / name
    argv = ["--input", str(path), "--out", str(out), "--no-state", "--quiet", "--kill-file", str(tmp_path / "no-kill.json")]
    assert report_cli.main(argv, now=lambda: NOW) == 0
    return json.loads((out / "meta_report.json").read_text(encoding="utf-8")), out


def report(paths: list[Path], workers: int = 1, state_dir: Path | None = None) -> dict:
    options = BuildOptions(inputs=[str(p) for p in paths], prices=PRICES, workers=workers, state_dir=state_dir)
    data, _ = build_inputs(options)
    return build_report(data, PRICES, KillSwitchState(path="k"), NOW)


def counts(result: dict) -> tuple[int, int, int]:
    inputs = result["inputs"]
    return inputs["spans"], inputs["duplicate_spans"], inputs["conflicting_spans"]


def other_process_copy(span: dict, **changes) -> dict:
    """``span`` as another process with the same ids would write it: other times and values."""
    again = copy.deepcopy(span)
    again["startTimeUnixNano"] = str(int(again["startTimeUnixNano"]) + 7)
    again.update(changes)
    return again


# --- byte order marks ----------------------------------------------------------------------------------


def test_lines_starting_with_a_byte_order_mark_are_read(tmp_path: Path, reader: str) -> None:
    lines = [text.encode() for text in lines_for([Run("a", i, llm=[Llm()]) for i in range(1, 7)], per_line=2)]
    marked = tmp_path / "marked" / "traces.jsonl"
    plain = tmp_path / "plain" / "traces.jsonl"
    for path, mark in ((marked, BOM), (plain, b"")):
        path.parent.mkdir()
        # every line marked, a line holding only the mark, the last line unterminated
        path.write_bytes(b"".join(mark + text for text in lines[:-1]) + mark + b"\n" + mark + lines[-1].rstrip(b"\n"))
    result, _ = cli_build(tmp_path, marked)
    assert (result["inputs"]["spans"], result["inputs"]["bad_lines"], result["inputs"]["partial_tails"]) == (12, 0, [])
    assert result["agents"]["a"]["runs"] == 6
    reference, _ = cli_build(tmp_path, plain, "plain-out")
    assert result["agents"] == reference["agents"]
    records = [result["inputs"]["file_details"][0]["records"], reference["inputs"]["file_details"][0]["records"]]
    assert records == [len(lines) + 1] * 2


# --- exact and conflicting duplicates -------------------------------------------------------------------


def test_conflicting_copies_are_counted_apart_and_reported(tmp_path: Path, reader: str) -> None:
    llm, root = spans_of(Run("a", 1, llm=[Llm(tokens_in=100)]))
    path = tmp_path / "traces.jsonl"
    first = line([llm, root])
    clash = [other_process_copy(root), other_process_copy(llm)]
    clash[1]["attributes"] = [kv for kv in clash[1]["attributes"] if kv["key"] != "gen_ai.usage.input_tokens"]
    path.write_text(first + first + line(clash) + line([root]) + line([other_process_copy(root, name="x")]))
    result, out = cli_build(tmp_path, path)
    assert counts(result) == (2, 3, 3)  # 2 spans; the retried line and the root again; three other copies
    agent = result["agents"]["a"]
    assert agent["runs"] == 1 and agent["llm_calls"] == 1 and agent["tokens_in"] == 100  # the first copies kept
    attention = [item for item in result["needs_attention"] if item["kind"] == "conflicting_spans"]
    assert attention and attention[0]["value"] == 3 and "other content" in attention[0]["why"]
    assert "3 conflicting duplicates (same ids, other content) dropped" in (out / "meta_report.md").read_text()
    assert "3 conflicting duplicates (same ids, other content) dropped" in (out / "meta_report.html").read_text()
    ids = [{"trace_id": root["traceId"], "span_id": span["spanId"]} for span in (root, llm)]
    assert result["inputs"]["conflicting_span_examples"] == sorted(ids, key=lambda e: (e["trace_id"], e["span_id"]))
    assert f"trace {root['traceId']} span {root['spanId']}" in (out / "meta_report.md").read_text()
    assert f"<code>{llm['spanId']}</code>" in (out / "meta_report.html").read_text()


def test_readers_agree_on_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spans = [span for i in range(1, 30) for span in spans_of(Run("a", i, llm=[Llm()]))]
    copies = [other_process_copy(span) if i % 3 else copy.deepcopy(span) for i, span in enumerate(spans[::4])]
    path = tmp_path / "traces.jsonl"
    path.write_text("".join(line(spans[i : i + 5]) for i in range(0, len(spans), 5)) + line(copies))
    results = []
    for mode in ("auto", "off"):
        monkeypatch.setenv("ALPHATRACE_NATIVE", mode)
        results.append(report([path]))
    assert results[0] == results[1]
    assert counts(results[0]) == (58, 5, 10)


def test_a_conflicting_copy_across_a_parallel_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str) -> None:
    merges = count_merges_of(monkeypatch)
    spans = [span for i in range(1, 61) for span in spans_of(Run("a", i, llm=[Llm()]))]
    path = tmp_path / "traces.jsonl"
    retry = [copy.deepcopy(spans[0]), other_process_copy(spans[1]), other_process_copy(spans[2])]
    path.write_text("".join(line(spans[i : i + 4]) for i in range(0, len(spans), 4)) + line(retry))
    parallel = report([path], workers=2)
    assert merges[-1] is False  # the second part repeats ids of the first: read again here, in order
    assert parallel == report([path], workers=1)
    assert counts(parallel) == (120, 1, 2)


def test_a_conflicting_copy_in_a_later_file_and_a_later_build(tmp_path: Path, reader: str) -> None:
    spans = [span for i in range(1, 11) for span in spans_of(Run("a", i, llm=[Llm()]))]
    folder = tmp_path / "traces"
    folder.mkdir()
    backup = folder / "traces-2026-01-01T00-00-00.000.jsonl"
    backup.write_text("".join(line(spans[i : i + 4]) for i in range(0, len(spans), 4)))
    active = folder / "traces.jsonl"
    active.write_text(line([other_process_copy(spans[0])]))
    state = tmp_path / "state"
    assert counts(report([folder], state_dir=state)) == (20, 0, 1)
    with open(active, "a") as handle:  # the next build reads only this line: the saved entries tell
        handle.write(line([copy.deepcopy(spans[3]), other_process_copy(spans[5])]))
    incremental = report([folder], state_dir=state)
    assert counts(incremental) == (20, 1, 2)
    assert incremental == report([folder])


def test_the_span_set_holds_each_span_s_entry() -> None:
    """The aggregator's inlined dedup keeps ``span_entry(span_fingerprint(ids), content_check(...))``."""
    spans = [span for i in range(1, 5) for span in spans_of(Run("a", i, llm=[Llm()]))]
    spans[0]["status"] = {"code": 2, "message": "bad"}
    spans[1].pop("status", None)
    aggregator = SpanAggregator()
    decoded = msgspec.convert(spans, list[Span[Event]])
    aggregator.add_spans(decoded, False, (None, None, None, None))
    expected = {
        span_entry(span_fingerprint(s.traceId, s.spanId), content_check(int(s.startTimeUnixNano), int(s.endTimeUnixNano), s))
        for s in decoded
    }
    assert set(aggregator.seen.values()) == expected and len(expected) == len(spans)
