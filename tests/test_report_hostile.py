"""Hostile input: truncated, corrupt, duplicate, rotated and compressed files, unicode and HTML in names,
huge attribute values, missing fields, wrong types, a malformed kill-switch file, empty and missing
inputs. The build never fails on them, counts what it had to skip, and says where."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import zstandard

from meta_supervisor.cli import report as report_cli
from meta_supervisor.render.html import render_html
from meta_supervisor.render.markdown import render_markdown
from otel import semconv
from tests.fixtures.report.otlp_builder import Llm, Run, attrs, line, lines_for, request, spans_of

NOW = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)


def build(tmp_path: Path, *inputs: Path | str, extra: list[str] | None = None) -> tuple[int, dict, Path]:
    out = tmp_path / "out"
    argv = [arg for path in inputs for arg in ("--input", str(path))]
    argv += ["--out", str(out), "--no-state", "--quiet", "--kill-file", str(tmp_path / "no-kill-file.json"), *(extra or [])]
    code = report_cli.main(argv, now=lambda: NOW)
    report = json.loads((out / "meta_report.json").read_text(encoding="utf-8")) if code == 0 else {}
    return code, report, out


def test_a_named_input_that_does_not_exist_is_an_error_and_the_report_is_untouched(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "meta_report.json").write_text("the previous report")
    code, _, _ = build(tmp_path, tmp_path / "nope.jsonl")
    assert code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"error: --input {tmp_path / 'nope.jsonl'} does not exist; check the path, or leave --input out to read the default trace file"
    ]
    assert (out / "meta_report.json").read_text() == "the previous report" and not (out / "meta_report.md").exists()
    code, _, _ = build(tmp_path, tmp_path / "traces.jsonl", tmp_path / "nope-*.jsonl")  # a pattern may match nothing yet
    assert code == 2 and "traces.jsonl does not exist" in capsys.readouterr().err


def test_missing_default_and_empty_inputs_give_a_valid_empty_report(tmp_path: Path, monkeypatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("ALPHATRACE_TRACE_FILE", str(tmp_path / "telemetry" / "traces.jsonl"))  # not written yet
    code, report, out = build(tmp_path)
    assert code == 0
    assert report["agents"] == {} and report["inputs"]["spans"] == 0
    assert any("does not exist" in m for m in report["inputs"]["messages"])
    assert any("empty" in m for m in report["inputs"]["messages"])
    assert "does not exist (no spans have been written yet?)" in capsys.readouterr().err
    assert (out / "meta_report.md").exists() and (out / "meta_report.html").exists()
    code, report, _ = build(tmp_path, tmp_path / "nope-*.jsonl")
    assert code == 0 and any("matches no files" in m for m in report["inputs"]["messages"])
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    code, report, _ = build(tmp_path, empty)
    assert code == 0 and report["inputs"]["spans"] == 0 and report["fleet"]["runs"] == 0
    folder = tmp_path / "folder"
    folder.mkdir()
    code, report, _ = build(tmp_path, folder)
    assert code == 0 and any("no trace files" in m for m in report["inputs"]["messages"])


def test_default_input_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    traces = tmp_path / "t" / "traces.jsonl"
    traces.parent.mkdir()
    traces.write_text("".join(lines_for([Run("a", 1)])))
    (traces.parent / "traces-2026-01-01T00-00-00.000.jsonl").write_text("".join(lines_for([Run("a", 2)])))
    monkeypatch.setenv("ALPHATRACE_TRACE_FILE", str(traces))
    monkeypatch.setenv("ALPHATRACE_REPORT_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("ALPHATRACE_REPORT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("ALPHATRACE_JAEGER_URL", "https://jaeger.example/")
    monkeypatch.setenv("ALPHATRACE_KILL_SWITCH_FILE", str(tmp_path / "killed.json"))
    assert report_cli.main(["--quiet"], now=lambda: NOW) == 0
    report = json.loads((tmp_path / "reports" / "meta_report.json").read_text())
    assert report["agents"]["a"]["runs"] == 2  # the rotated backup is read too
    assert report["agents"]["a"]["slowest_runs"][0]["jaeger_url"].startswith("https://jaeger.example/trace/")
    assert report["inputs"]["messages"] == []


def test_corrupt_truncated_and_duplicate_lines(tmp_path: Path) -> None:
    good = lines_for([Run("a", i, llm=[Llm()]) for i in range(1, 4)], per_line=2)
    path = tmp_path / "traces.jsonl"
    data = good[0].encode() + b"\x00\xff\xfe garbage\n" + good[1].encode() + good[1].encode() + "\u00e9\u00e9\u00e9 not json\n".encode()
    data += good[2].encode() + b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"ab'  # being written
    path.write_bytes(data)
    code, report, _ = build(tmp_path, path)
    assert code == 0
    inputs = report["inputs"]
    assert inputs["spans"] == 6
    assert inputs["duplicate_spans"] == 2
    assert inputs["bad_lines"] == 2
    assert [p["line"] for p in inputs["problems"]] == [2, 5]
    assert inputs["partial_tails"] == [{"file": str(path), "bytes": len(b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"ab')}]
    assert report["agents"]["a"]["runs"] == 3


def test_wrong_types_lose_only_the_bad_spans(tmp_path: Path) -> None:
    good_run = spans_of(Run("a", 1, llm=[Llm()]))
    bad_span = {"traceId": "ff" * 16, "spanId": "ee" * 8, "attributes": {"not": "a list"}}
    wrong_time = dict(spans_of(Run("a", 2))[0], startTimeUnixNano=1.5e18)
    lines = [
        json.dumps(request([*good_run[:1], bad_span, *good_run[1:]])),  # one bad span among good ones
        json.dumps({"resourceSpans": 5}),
        json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": None}]}]}),
        json.dumps(request([wrong_time])),
        json.dumps([1, 2, 3]),
        json.dumps("just a string"),
    ]
    path = tmp_path / "traces.jsonl"
    path.write_text("\n".join(lines) + "\n")
    code, report, _ = build(tmp_path, path)
    assert code == 0
    inputs = report["inputs"]
    assert report["agents"]["a"]["llm_calls"] == 1
    assert inputs["bad_spans"] >= 2
    assert inputs["bad_lines"] == 3  # the number, the list and the string
    assert {p["line"] for p in inputs["problems"]} >= {1, 2, 3, 5, 6}
    assert all(len(p["error"]) <= 300 for p in inputs["problems"])


def test_missing_fields_and_odd_values(tmp_path: Path) -> None:
    root = spans_of(Run("a", 1, llm=[Llm(tokens_in=-5, tokens_out=3)], outcome=None, totals={semconv.RUN_COST_USD: float("nan")}))
    no_ids = {"name": "invoke_agent ghost", "attributes": attrs({"gen_ai.operation.name": "invoke_agent"})}
    no_times = dict(spans_of(Run("b", 2))[0])
    no_times.pop("startTimeUnixNano")
    no_times.pop("endTimeUnixNano")
    weird = spans_of(Run("c", 3, llm=[Llm(model="")]))
    for span in weird:
        for kv in span["attributes"]:
            if kv["key"] == "gen_ai.usage.input_tokens":
                kv["value"] = {"intValue": "12abc"}
    path = tmp_path / "traces.jsonl"
    path.write_text(line(root) + line([no_ids, no_times]) + line(weird) + line([{}]))
    code, report, _ = build(tmp_path, path)
    assert code == 0
    agents = report["agents"]
    assert agents["a"]["runs"] == 1 and agents["a"]["runs_without_outcome"] == 1
    assert agents["a"]["bad_token_values"] == 1
    assert agents["a"]["consistency"]["mismatched"] == 1  # NaN cost on the root
    assert agents["ghost"]["runs"] == 1  # agent from the span name
    assert agents["b"]["runs_without_latency"] == 1 and agents["b"]["p50_latency_ms"] is None
    assert "(unknown model)" in agents["c"]["models"]
    assert agents["c"]["tokens_in"] == 0
    assert report["inputs"]["spans_without_id"] == 2
    json.dumps(report, allow_nan=False)  # no NaN leaks into the report


def test_unicode_html_and_huge_values(tmp_path: Path) -> None:
    huge = "x" * 2_000_000
    names = ["<script>alert(1)</script>", "\u65e5\u672c\u8a9e \U0001f680", "a|b*c_d[e](f)", "\u202eevil", huge]
    runs = [
        Run(name, i + 1, outcome="error", message=f"<img src=x onerror=alert({i})> " + huge, error_type=huge, signals=[(huge, "<b>up</b>")])
        for i, name in enumerate(names)
    ]
    path = tmp_path / "traces.jsonl"
    path.write_text("".join(lines_for(runs, per_line=2)), encoding="utf-8")
    code, report, out = build(tmp_path, path)
    assert code == 0
    agents = report["agents"]
    assert "<script>alert(1)</script>" in agents
    assert "\u65e5\u672c\u8a9e \U0001f680" in agents
    assert max(len(name) for name in agents) <= 200
    assert all(len(r["message"]) <= 300 and len(r["error_type"]) <= 200 for a in agents.values() for r in a["failing_runs"])
    assert (out / "meta_report.json").stat().st_size < 200_000
    html_text = (out / "meta_report.html").read_text(encoding="utf-8")
    assert "<script>" not in html_text and "&lt;script&gt;alert(1)&lt;/script&gt;" in html_text
    assert "<img" not in html_text and "<b>up" not in html_text
    md_text = (out / "meta_report.md").read_text(encoding="utf-8")
    assert "<script>" not in md_text and "<img" not in md_text
    assert "a\\|b\\*c\\_d\\[e\\](f)" in md_text  # cannot break the table or make a link
    assert len(md_text) < 65_536


def test_hostile_loss_counters_and_process_names(tmp_path: Path) -> None:
    huge = "<script>alert(2)</script>" + "y" * 100_000
    bad_values = [(-5, 3), (10**30, 1), (2, -1)]
    runs = [Run("a", i + 1, losses=pair) for i, pair in enumerate(bad_values)]
    text = "".join(line(spans_of(run), instance=huge) for run in runs)
    odd = spans_of(Run("a", 9))
    odd[-1]["attributes"] += attrs({"alphatrace.telemetry.spans_dropped": "many", "alphatrace.telemetry.spans_export_failed": 1.5})
    text += line(odd, instance="\u202eodd")
    path = tmp_path / "traces.jsonl"
    path.write_text(text, encoding="utf-8")
    code, report, out = build(tmp_path, path)
    assert code == 0 and report["fleet"]["runs"] == 4
    losses = report["inputs"]["telemetry_losses"]
    # negative, absurd and non-integer counters read as 0; the rest is the maximum per process
    assert (losses["processes"], losses["spans_dropped"], losses["spans_export_failed"]) == (2, 2, 3)
    [process] = losses["by_process"]
    assert len(process["service_instance_id"]) <= 200
    html_text = (out / "meta_report.html").read_text(encoding="utf-8")
    assert "<script>alert(2)" not in html_text and "&lt;script&gt;alert(2)" in html_text


def test_malformed_kill_switch_file_is_reported_not_fatal(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_text("".join(lines_for([Run("a", 1)])))
    kill = tmp_path / "killed.json"
    kill.write_text("{broken")
    out = tmp_path / "out"
    code = report_cli.main(["--input", str(path), "--out", str(out), "--no-state", "--quiet", "--kill-file", str(kill)], now=lambda: NOW)
    assert code == 0
    report = json.loads((out / "meta_report.json").read_text())
    assert report["kill_switch"]["ok"] is False and "not valid JSON" in report["kill_switch"]["error"]
    assert report["agents"]["a"]["killed"] is None
    assert any(item["kind"] == "kill_switch_unreadable" for item in report["needs_attention"])
    assert "kill-switch" in capsys.readouterr().err
    kill.write_text('{"a": {"reason": "<b>drawdown</b>", "by": "bob", "at": "2026-01-01T00:00:00Z"}, "never-ran": {}}')
    assert (
        report_cli.main(["--input", str(path), "--out", str(out), "--no-state", "--quiet", "--kill-file", str(kill)], now=lambda: NOW) == 0
    )
    report = json.loads((out / "meta_report.json").read_text())
    assert report["agents"]["a"]["killed"] is True and report["agents"]["a"]["killed_by"] == "bob"
    assert report["agents"]["never-ran"]["killed"] is True and report["agents"]["never-ran"]["runs"] == 0


def test_since_until_window_and_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    day = 86_400_000
    path = tmp_path / "traces.jsonl"
    path.write_text("".join(lines_for([Run("a", i, start_ms=i * day) for i in range(5)], per_line=1)))
    code, report, _ = build(tmp_path, path, extra=["--since", "2026-01-02", "--until", "2026-01-04T00:00:00Z"])
    assert code == 0
    assert report["agents"]["a"]["runs"] == 2
    assert report["inputs"]["spans_outside_window"] == 3
    assert [d["date"] for d in report["days"]] == ["2026-01-02", "2026-01-03"]
    assert report["window"]["since"].startswith("2026-01-02")
    with pytest.raises(SystemExit):
        report_cli.main(["--since", "yesterday"])
    assert "not an ISO date" in capsys.readouterr().err
    assert report_cli.main(["--input", str(path), "--since", "2026-01-03", "--until", "2026-01-02", "--no-state"]) == 2


def test_bad_price_table_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "prices.json"
    bad.write_text("{}")
    assert report_cli.main(["--input", str(tmp_path), "--price-table", str(bad), "--no-state", "--out", str(tmp_path / "o")]) == 2
    assert "price table" in capsys.readouterr().err


def test_too_many_agents_fold_into_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from meta_supervisor.tally import span_aggregator

    monkeypatch.setattr(span_aggregator, "MAX_AGENTS", 3)
    path = tmp_path / "traces.jsonl"
    path.write_text("".join(lines_for([Run(f"agent-{i}", i + 1) for i in range(6)], per_line=3)))
    code, report, _ = build(tmp_path, path)
    assert code == 0
    assert len(report["agents"]) == 4 and report["agents"]["(other)"]["runs"] == 3
    assert report["fleet"]["runs"] == 6


def test_compressed_and_rotated_inputs_in_one_folder(tmp_path: Path) -> None:
    folder = tmp_path / "traces"
    folder.mkdir()
    runs = [Run("a", i, llm=[Llm()]) for i in range(1, 7)]
    texts = lines_for(runs, per_line=4)  # two runs a line
    (folder / "traces-2026-01-01T00-00-00.000-size.jsonl").write_text(texts[0])
    (folder / "traces-2026-01-01T01-00-00.000.jsonl").write_bytes(zstandard.ZstdCompressor().compress(texts[1].encode()))
    (folder / "traces.jsonl").write_text(texts[2] + texts[0])  # a retry written again after rotation
    code, report, _ = build(tmp_path, folder)
    assert code == 0
    assert report["agents"]["a"]["runs"] == 6
    assert report["inputs"]["duplicate_spans"] == 4
    formats = sorted(f["format"] for f in report["inputs"]["file_details"])
    assert formats == ["json-lines", "json-lines", "zstd+json-lines"]


def test_renderers_survive_an_empty_report(tmp_path: Path) -> None:
    (tmp_path / "nothing").write_bytes(b"")
    code, report, _ = build(tmp_path, tmp_path / "nothing")
    assert code == 0
    assert "No agent runs" in render_markdown(report)
    assert "<html" in render_html(report)


def test_absurd_numbers_and_deep_nesting(tmp_path: Path) -> None:
    huge_tokens = spans_of(Run("a", 1, llm=[Llm(tokens_in=10**400, tokens_out=5)], totals={semconv.RUN_INPUT_TOKENS: 10**400}, price=None))
    far_future = spans_of(Run("b", 2))[0]
    far_future["startTimeUnixNano"] = "9" * 4000
    far_future["endTimeUnixNano"] = "9" * 4001
    deep = '{"resourceSpans":' + "[" * 50_000 + "]" * 50_000 + "}"
    deep_object = '{"resourceSpans":[{"scopeSpans":[{"spans":[' + '{"a":' * 50_000 + "1" + "}" * 50_000 + "]}]}]}"
    path = tmp_path / "traces.jsonl"
    path.write_text(line(huge_tokens) + line([far_future]) + deep + "\n" + deep_object + "\n")
    code, report, _ = build(tmp_path, path)
    assert code == 0
    a = report["agents"]["a"]
    assert a["bad_token_values"] == 1 and a["tokens_in"] == 0 and a["cost_usd"] == pytest.approx(3e-6)
    assert report["agents"]["b"]["runs_without_latency"] == 1 and report["agents"]["b"]["first_run_at"] is None
    assert report["inputs"]["bad_lines"] + report["inputs"]["bad_spans"] >= 2
    json.dumps(report, allow_nan=False)


def test_a_run_longer_than_64_bits_of_nanoseconds_has_no_latency(tmp_path: Path) -> None:
    """Start 1 ns after the epoch, end at the last fixed64 nanosecond: counted as a run without a
    latency (it crashed the build before: the latencies array holds signed 64-bit values)."""
    spans = spans_of(Run("a", 1, llm=[Llm()]))
    spans[-1]["startTimeUnixNano"], spans[-1]["endTimeUnixNano"] = "1", str((1 << 64) - 1)
    path = tmp_path / "traces.jsonl"
    path.write_text(line(spans))
    code, report, _ = build(tmp_path, path)
    assert code == 0
    assert report["agents"]["a"]["runs"] == 1 and report["agents"]["a"]["runs_without_latency"] == 1


def test_zstd_bomb_is_one_bad_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import struct

    from meta_supervisor.reading import shapes as trace_reader

    monkeypatch.setattr(trace_reader, "MAX_FRAME", 1 << 20)
    bomb = zstandard.ZstdCompressor().compress(b"{" + b" " * (4 << 20))
    good = zstandard.ZstdCompressor().compress(lines_for([Run("a", 1)], per_line=2)[0].encode())
    path = tmp_path / "traces.zstd"
    path.write_bytes(b"".join(struct.pack(">I", len(m)) + m for m in (bomb, good)))
    code, report, _ = build(tmp_path, path)
    assert code == 0
    assert report["inputs"]["bad_lines"] == 1 and "bad zstd frame" in report["inputs"]["problems"][0]["error"]
    assert report["agents"]["a"]["runs"] == 1


def test_integer_too_large_for_a_float_reads_as_no_number(tmp_path: Path) -> None:
    """A root's cost and a signal's prob_up and score written as integers beyond a float's range: the
    report and the supervisor's reader count the run, read the cost as absent and the signal as unusable."""
    from meta_supervisor.build.run_records import read_records

    huge = 10**400
    run = Run("a", 1, llm=[Llm()], totals={semconv.RUN_COST_USD: huge}, as_of="2026-01-01", signals=[("AAA", "up"), ("BBB", "down")])
    spans = spans_of(run)
    for kv in spans[-1]["events"][0]["attributes"]:
        if kv["key"] in (semconv.ALPHA_PROB_UP, semconv.ALPHA_SCORE_FINAL):
            kv["value"] = {"intValue": str(huge)}
    assert {"key": semconv.RUN_COST_USD, "value": {"intValue": str(huge)}} in spans[-1]["attributes"]
    path = tmp_path / "traces.jsonl"
    path.write_text(line(spans))
    code, report, _ = build(tmp_path, path)
    assert code == 0
    a = report["agents"]["a"]
    assert a["runs"] == 1 and a["consistency"]["consistent"] == 1  # an unreadable cost is not compared
    assert a["cost_usd"] == pytest.approx((100 * 0.15 + 10 * 0.60) / 1e6)  # priced from the LLM span
    json.dumps(report, allow_nan=False)
    records = read_records([str(path)]).records
    assert [(r.agent, r.cost_usd) for r in records.runs] == [("a", 0.0)]
    assert [s.symbol for s in records.signals] == ["BBB"] and records.bad_signals == 1
