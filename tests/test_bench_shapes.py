"""The benchmark's workload shapes (``bench/generate_workload.Shape``) and its shape matrix
(``bench/report_bench.py --matrix``): each shape is what it says (order, totals, agents, LLM and
tool spans, signals, spans a line, compression), the report reads every shape with the same result
with and without the native core, and the matrix runs end to end at a small span count. Nothing
here measures or asserts a time.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
import zstandard

from bench import generate_workload as gw
from bench import report_bench
from meta_supervisor import native_core
from meta_supervisor.build.dispatch import build_inputs
from meta_supervisor.build.options import BuildOptions
from otel import semconv
from services.pricing import PriceTable
from tests.test_native_core import _tally

PRICES = PriceTable.load()


def _lines(path: Path) -> list[dict]:
    data = path.read_bytes()
    if data[:4] == b"\x28\xb5\x2f\xfd":
        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True).read()
    return [json.loads(line) for line in data.splitlines()]


def _spans(path: Path) -> list[tuple[str, dict]]:
    """(scope name, span) in file order."""
    return [
        (scope["scope"]["name"], span)
        for line in _lines(path)
        for resource in line["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    ]


def _attrs(item: dict) -> dict:
    return {kv["key"]: next(iter(kv["value"].values())) for kv in item.get("attributes", ())}


def _write(tmp_path: Path, shape: gw.Shape, runs: int = 40, profile: str = "issue", name: str = "w") -> Path:
    path = tmp_path / f"{name}.jsonl"
    written = gw.generate(path, runs, seed=3, profile=profile, shape=shape)
    if shape.compression == "none":
        assert written == path.stat().st_size
    return path


def test_the_base_shape_is_the_classic_workload(tmp_path: Path) -> None:
    path = _write(tmp_path, gw.Shape(), runs=300)
    lines = _lines(path)
    assert [sum(len(s["spans"]) for s in line["resourceSpans"][0]["scopeSpans"]) for line in lines] == [512, 88]
    scopes = [[s["scope"]["name"] for s in line["resourceSpans"][0]["scopeSpans"]] for line in lines]
    assert scopes == [["opentelemetry.instrumentation.genai_openai", "alphatrace"]] * 2  # children first
    roots = [_attrs(span) for _, span in _spans(path) if span["name"].startswith("invoke_agent")]
    assert {root["gen_ai.agent.name"] for root in roots} == set(gw.AGENTS)
    assert all(root[semconv.RUN_LLM_CALLS] == "1" and semconv.RUN_COST_USD in root for root in roots)


def test_order_totals_agents_llm_and_tool_spans(tmp_path: Path) -> None:
    shape = gw.Shape(order="root-first", totals=False, agents=1000, llm_spans=8, tool_spans=8, spans_per_line=7)
    path = _write(tmp_path, shape, runs=30)
    spans = _spans(path)
    assert len(spans) == 30 * 17
    by_trace: dict[str, list[dict]] = {}
    for _, span in spans:
        by_trace.setdefault(span["traceId"], []).append(span)
    assert len(by_trace) == 30
    for members in by_trace.values():
        root = members[0]
        assert root["name"].startswith("invoke_agent") and "parentSpanId" not in root  # root-first
        values = _attrs(root)
        assert not {semconv.RUN_LLM_CALLS, semconv.RUN_INPUT_TOKENS, semconv.RUN_COST_USD, semconv.RUN_ALPHA_SIGNALS} & set(
            values
        )  # no totals
        chats = [s for s in members if s["name"] == "chat gpt-4o-mini"]
        tools = [s for s in members if s["name"].startswith("execute_tool ")]
        assert len(chats) == 8 and len(tools) == 8
        for span in chats + tools:
            assert span["parentSpanId"] == root["spanId"]
            assert int(root["startTimeUnixNano"]) <= int(span["startTimeUnixNano"]) < int(span["endTimeUnixNano"])
            assert int(span["endTimeUnixNano"]) <= int(root["endTimeUnixNano"])
            child = _attrs(span)
            assert child["gen_ai.agent.name"] == values["gen_ai.agent.name"] and child[semconv.AGENT_RUN_ID] == values[semconv.AGENT_RUN_ID]
        for tool in tools:
            t = _attrs(tool)
            assert t["gen_ai.operation.name"] == "execute_tool" and t["gen_ai.tool.type"] == "function"
            assert tool["name"] == f"execute_tool {t['gen_ai.tool.name']}" and t["gen_ai.tool.call.id"].startswith("call_")
    for i in range(3):  # the children in the order they end (as the SDK exports them), then the root
        exported = gw.run_spans(i, gw.random.Random(i), False, gw.Shape(llm_spans=8, tool_spans=11))
        children, root = [json.loads(span) for _, span in exported[:-1]], json.loads(exported[-1][1])
        ends = [int(span["endTimeUnixNano"]) for span in children]
        assert ends == sorted(ends) and len(children) == 19 and max(ends) <= int(root["endTimeUnixNano"])
    agents = {_attrs(members[0])["gen_ai.agent.name"] for members in by_trace.values()}
    assert agents == {f"agent_{k:04d}" for k in range(30)}
    # runs over line boundaries: the roots' scope first in every line
    assert all(line["resourceSpans"][0]["scopeSpans"][0]["scope"]["name"] == "alphatrace" for line in _lines(path)[:-1])
    child_first = _spans(_write(tmp_path, gw.Shape(llm_spans=2, tool_spans=1, spans_per_line=1), runs=5, name="cf"))
    names = [span["name"].split(" ")[0] for _, span in child_first]
    assert names[:4] == ["chat", "execute_tool", "chat", "invoke_agent"]


def test_signals_scorable_or_not(tmp_path: Path) -> None:
    for scorable, profile in [(True, "issue"), (False, "contract"), (None, "contract"), (None, "issue")]:
        path = _write(tmp_path, gw.Shape(scorable=scorable), runs=4, profile=profile, name=f"{scorable}-{profile}")
        events = [_attrs(event) for _, span in _spans(path) for event in span.get("events", ())]
        assert len(events) == 12
        expected = scorable if scorable is not None else profile == "contract"
        assert all((semconv.ALPHA_HORIZON in e and semconv.ALPHA_AS_OF in e) == expected for e in events)


@pytest.mark.parametrize("per_line", [1, 3, 4096])
def test_spans_a_line(tmp_path: Path, per_line: int) -> None:
    path = _write(tmp_path, gw.Shape(spans_per_line=per_line), runs=50)
    assert len(_lines(path)) == math.ceil(100 / per_line)


def test_zstd_is_the_same_json_in_one_stream(tmp_path: Path) -> None:
    plain = _write(tmp_path, gw.Shape(llm_spans=3), name="plain")
    compressed = _write(tmp_path, gw.Shape(llm_spans=3, compression="zstd"), name="zstd")
    assert compressed.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    assert compressed.stat().st_size < plain.stat().st_size
    assert _lines(compressed) == _lines(plain)


def test_bad_shapes_are_refused() -> None:
    for bad in [dict(order="sideways"), dict(compression="gzip"), dict(agents=0), dict(spans_per_line=0)]:
        with pytest.raises(ValueError):
            gw.Shape(**bad)
    assert gw.runs_for(1_000_000, gw.Shape(llm_spans=8, tool_spans=8)) == 58_823


@pytest.mark.parametrize("row", [name for name, _, _ in report_bench.MATRIX])
def test_every_matrix_shape_reads_the_same_with_and_without_the_core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, row: str) -> None:
    _, profile, shape = next(entry for entry in report_bench.MATRIX if entry[0] == row)
    runs = gw.runs_for(600, shape)
    path = _write(tmp_path, shape, runs=runs, profile=profile)
    results = []
    for mode in ("on", "off") if native_core.available() else ("off",):
        monkeypatch.setenv(native_core.ENV, mode)
        data, _ = build_inputs(BuildOptions(inputs=[str(path)], prices=PRICES))
        results.append(data)
    for data in results:
        assert data.inputs.spans == runs * shape.spans_per_run and data.inputs.bad_lines == 0
    first = results[0]
    for other in results[1:]:
        assert other.inputs.to_state() == first.inputs.to_state()
        assert list(other.agents) == list(first.agents)
        assert {name: _tally(tally) for name, tally in other.agents.items()} == {
            name: _tally(tally) for name, tally in first.agents.items()
        }
        assert other.pending == first.pending


def test_matrix_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Two rows at 300 spans: generated, built, walked, checked, deleted; JSON and a Markdown table."""
    out = tmp_path / "matrix.json"
    code = report_bench.main(["--matrix", "--spans", "300", "--rows", "base,worst-zstd", "--dir", str(tmp_path), "--json", str(out)])
    assert code == 0
    results = json.loads(out.read_text())
    rows = results["rows"]
    assert [row["row"] for row in rows] == ["base", "worst-zstd"]
    for row in rows:
        assert row["all_spans_counted"] and row["report_spans"] == row["spans"] > 0
        assert row["full_build"]["seconds"] > 0 and row["bare_orjson_walk"]["seconds"] > 0
        assert row["full_build"]["peak_rss_main_mb"] > 0
        reads = row["full_build"]["main_process_reads"]
        assert reads == ({"native": 1, "python": 0} if results["native_core"] else {"native": 0, "python": 0})
        nothing_new = row["nothing_new"]  # built again from the saved state: nothing read
        assert nothing_new["seconds"] > 0 and nothing_new["main_process_reads"] == {"native": 0, "python": 0}
    assert rows[1]["file_bytes"] < rows[1]["json_bytes"] and rows[1]["shape"]["compression"] == "zstd"
    assert not list(tmp_path.glob("matrix-*"))  # each row's workload deleted
    printed = capsys.readouterr().out
    assert "| base | 300 |" in printed and "| worst-zstd | " in printed


def test_matrix_without_the_bare_walk_reports_memory_and_no_ratio(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``--no-bare`` (peak RSS at 5 M spans without a minute-long walk): the build is measured and
    checked as ever; the walk and the ratio are absent, not zero, and the table says so."""
    out = tmp_path / "matrix.json"
    code = report_bench.main(["--matrix", "--spans", "300", "--rows", "no-totals", "--no-bare", "--dir", str(tmp_path), "--json", str(out)])
    assert code == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["all_spans_counted"] and row["report_spans"] == row["spans"] > 0
    assert row["full_build"]["peak_rss_main_mb"] > 0
    assert row["bare_orjson_walk"] is None and row["ratio_full_build_vs_bare_walk"] is None
    printed = capsys.readouterr().out
    assert "no bare walk (--no-bare)" in printed and "| not run | - |" in printed


def test_old_names_write_the_same_runs_under_the_names_of_before_the_namespace(tmp_path: Path) -> None:
    now = _spans(_write(tmp_path, gw.Shape(), runs=20, name="now"))
    old = _spans(_write(tmp_path, gw.Shape(old_names=True), runs=20, name="old"))
    assert len(old) == len(now) == 40
    for (_, new_span), (_, old_span) in zip(now, old):
        renamed = {semconv.LEGACY_NAMES.get(key, key): value for key, value in _attrs(old_span).items()}
        assert renamed == _attrs(new_span) and not any(key.startswith(semconv.PROJECT_PREFIX + "run.") for key in _attrs(old_span))
        events = [
            (semconv.LEGACY_NAMES[e["name"]], {semconv.LEGACY_NAMES[k]: v for k, v in _attrs(e).items()})
            for e in old_span.get("events", ())
        ]
        assert events == [(e["name"], _attrs(e)) for e in new_span.get("events", ())]


@pytest.mark.parametrize("spans_per_line", [1, 512, 4096])
def test_the_size_estimate_of_each_line_shape(tmp_path: Path, spans_per_line: int) -> None:
    """``inputs.expected_spans`` (what the build's fingerprint tables are sized for) is within 20% of
    the spans' count with its headroom: from all the whole lines of the file's start (one span a
    line: an LLM span's short line, then its root's long one), or the whole first line when it is
    longer than that start (a batch starts with one kind of span: its LLM spans)."""
    from meta_supervisor.reading.inputs import SPAN_HEADROOM, expected_spans

    path = _write(tmp_path, gw.Shape(spans_per_line=spans_per_line), runs=6000)
    assert len(path.read_bytes().split(b"\n", 1)[0]) > (2 << 20) or spans_per_line < 4096
    assert abs(expected_spans(path) * SPAN_HEADROOM / 12000 - 1) < 0.2
