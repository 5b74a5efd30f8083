"""Open runs stay bounded whatever the order of spans and whatever the roots carry (run_join).

A root without totals closes its run at once (``unchecked``) even when its LLM spans come after it;
LLM spans arriving after their run was closed are resolved without waiting for the end; when more
than ``max_open_runs`` runs are open the oldest are evicted, counted in ``inputs.evicted_open_runs``,
and their runs are ``unchecked`` (never a mismatch, an orphan or a duplicate root). Both readers (the
native core and Python) give the same report; a 200,000-span root-first file without totals is
read in bounded memory (a subprocess, its peak RSS asserted: memory is deterministic enough).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from meta_supervisor.assemble.report import KillSwitchState, build_report
from meta_supervisor.build.dispatch import build_inputs
from meta_supervisor.build.options import BuildOptions
from meta_supervisor.reading.otlp_schema import request_decoder
from meta_supervisor.render.markdown import render_markdown
from meta_supervisor.tally.open_runs import ENV_MAX_OPEN_RUNS
from meta_supervisor.tally.span_aggregator import SpanAggregator
from services.pricing import PriceTable
from tests.fixtures.report.otlp_builder import Llm, Run, llm_span, request, root_span
from tests.report_memory import report_peak_kb

PRICES = PriceTable.load()
NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
ROOT = Path(__file__).resolve().parent.parent
DECODE = request_decoder(True).decode


def runs(count: int, totals: bool = True, calls: int = 1) -> list[Run]:
    return [
        Run(
            ["a", "b", "c"][i % 3],
            i + 1,
            start_ms=i * 1000,
            llm=[Llm(tokens_in=100 + i, tokens_out=10 + k, cached=0) for k in range(calls)],
            totals=totals,
        )
        for i in range(count)
    ]


def write(path: Path, lines: list[list[dict]]) -> Path:
    path.write_text("".join(json.dumps(request(spans), separators=(",", ":")) + "\n" for spans in lines))
    return path


def report(path: Path, bound: int) -> dict:
    data, _ = build_inputs(BuildOptions(inputs=[str(path)], prices=PRICES, workers=1, max_open_runs=bound))
    return build_report(data, PRICES, KillSwitchState(path="k"), NOW)


def both_readers(monkeypatch: pytest.MonkeyPatch, path: Path, bound: int) -> dict:
    """The report with the native core (when installed) and with the Python reader: they must agree."""
    monkeypatch.setenv("ALPHATRACE_NATIVE", "auto")
    native = report(path, bound)
    monkeypatch.setenv("ALPHATRACE_NATIVE", "off")
    python = report(path, bound)
    assert native == python  # the same clock (NOW): even generated_at is equal
    return python


def fleet(result: dict) -> dict:
    return result["fleet"]["consistency"]


def evicted(result: dict) -> dict:
    return result["inputs"]["evicted_open_runs"]


NO_EVICTION = {"roots_waiting_for_llm_spans": 0, "llm_runs_waiting_for_root": 0, "llm_spans_waiting_for_root": 0}


def test_roots_without_totals_before_their_llm_spans_close_at_once(tmp_path: Path) -> None:
    # root-first, no totals: each root is closed as unchecked when read, its LLM spans just counted
    fleet_runs = runs(200, totals=False, calls=2)
    aggregator = SpanAggregator(PRICES, max_open_runs=16)
    most_open = 0
    for run in fleet_runs:
        aggregator.add_request(DECODE(json.dumps(request([root_span(run)])).encode()))
        aggregator.add_request(DECODE(json.dumps(request([llm_span(run, k, c) for k, c in enumerate(run.llm)])).encode()))
        most_open = max(most_open, len(aggregator.pending))
    assert most_open <= 2 * 2 + 1  # resolved every couple of runs (the bound's sweep), never piling up
    aggregator.settle()
    assert aggregator.pending == {}
    consistency = {name: list(tally.consistency) for name, tally in aggregator.agents.items()}
    assert consistency == {"a": [0, 0, 67, 0], "b": [0, 0, 67, 0], "c": [0, 0, 66, 0]}
    assert aggregator.inputs.evicted_roots == aggregator.inputs.evicted_llm_runs == 0


@pytest.mark.parametrize("bound", [8, 1000])
def test_root_first_without_totals_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bound: int) -> None:
    fleet_runs = runs(60, totals=False, calls=2)
    lines = [[root_span(run)] for run in fleet_runs] + [[llm_span(run, k, c) for k, c in enumerate(run.llm)] for run in fleet_runs]
    result = both_readers(monkeypatch, write(tmp_path / "t.jsonl", lines), bound)
    assert fleet(result) == {"checked": 0, "consistent": 0, "mismatched": 0, "unchecked": 60, "orphan_llm_spans": 0}
    assert evicted(result) == NO_EVICTION  # closed at once: nothing waits, nothing to evict
    assert result["fleet"]["llm_calls"] == 120
    assert sum(a["tokens_in"] for a in result["agents"].values()) == sum(2 * (100 + i) for i in range(60))


def test_roots_far_ahead_of_their_llm_spans_are_evicted_as_unchecked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet_runs = runs(40)
    lines = [[root_span(run)] for run in fleet_runs] + [[llm_span(run, 0, run.llm[0])] for run in fleet_runs]
    path = write(tmp_path / "t.jsonl", lines)
    result = both_readers(monkeypatch, path, 8)
    c, e = fleet(result), evicted(result)
    assert e["roots_waiting_for_llm_spans"] > 0 and e["llm_runs_waiting_for_root"] == 0
    assert c["unchecked"] == e["roots_waiting_for_llm_spans"]
    assert c["consistent"] + c["unchecked"] == 40
    assert c["mismatched"] == c["orphan_llm_spans"] == 0 and result["inputs"]["duplicate_run_roots"] == 0
    assert result["fleet"]["llm_calls"] == 40  # an evicted run's LLM spans still count for its agent
    assert "runs left **unchecked**" in render_markdown(result)
    # with room for every run, the same file is fully checked
    roomy = both_readers(monkeypatch, path, 1000)
    assert fleet(roomy)["consistent"] == 40 and evicted(roomy) == NO_EVICTION


def test_llm_spans_far_ahead_of_their_roots_are_evicted_then_unchecked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fleet_runs = runs(40, calls=2)
    lines = [[llm_span(run, k, c) for k, c in enumerate(run.llm)] for run in fleet_runs] + [[root_span(run)] for run in fleet_runs]
    result = both_readers(monkeypatch, write(tmp_path / "t.jsonl", lines), 8)
    c, e = fleet(result), evicted(result)
    assert e["llm_runs_waiting_for_root"] > 0 and e["roots_waiting_for_llm_spans"] == 0
    assert e["llm_spans_waiting_for_root"] == 2 * e["llm_runs_waiting_for_root"]
    # the root of an evicted run is a run (not a duplicate root), and the run is unchecked
    assert result["inputs"]["duplicate_run_roots"] == 0
    assert result["fleet"]["runs"] == 40
    assert c["unchecked"] == e["llm_runs_waiting_for_root"]
    assert c["consistent"] + c["unchecked"] == 40
    assert c["mismatched"] == c["orphan_llm_spans"] == 0


def test_llm_spans_that_never_get_a_root_stay_bounded_and_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # chat spans from an instrumentation that writes no agent roots at all
    fleet_runs = runs(100)
    result = both_readers(monkeypatch, write(tmp_path / "t.jsonl", [[llm_span(run, 0, run.llm[0])] for run in fleet_runs]), 8)
    c, e = fleet(result), evicted(result)
    assert c["orphan_llm_spans"] <= 8  # what is still open at the end
    assert c["orphan_llm_spans"] + e["llm_spans_waiting_for_root"] == 100  # every one accounted for
    assert result["fleet"]["llm_calls"] == 100


def test_late_extra_llm_spans_are_resolved_before_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # every run closed consistent, then a second copy of its LLM span with a new span id (an extra call)
    fleet_runs = runs(30)
    lines = [[llm_span(run, 0, run.llm[0]), root_span(run)] for run in fleet_runs]
    extras = []
    for run in fleet_runs:
        extra = llm_span(run, 0, run.llm[0])
        extra["spanId"] = f"{run.trace:08x}000000ff"
        extras.append([extra])
    aggregator = SpanAggregator(PRICES, max_open_runs=8)
    for spans in lines + extras:
        aggregator.add_request(DECODE(json.dumps(request(spans)).encode()))
    assert len(aggregator.pending) <= 2  # resolved as they came (the bound's sweep), not kept to the end
    result = both_readers(monkeypatch, write(tmp_path / "t.jsonl", lines + extras), 8)
    assert fleet(result)["mismatched"] == 30 and fleet(result)["consistent"] == 0
    assert evicted(result) == NO_EVICTION


@pytest.mark.parametrize("value", ["lots", "10", "-1", "1e99"])
def test_a_bad_bound_is_a_configuration_error(tmp_path: Path, value: str) -> None:
    trace = write(tmp_path / "t.jsonl", [[root_span(run)] for run in runs(2)])
    env = {**os.environ, ENV_MAX_OPEN_RUNS: value}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "meta_supervisor" / "build_meta_report.py"),
            "--input",
            str(trace),
            "--out",
            str(tmp_path / "o"),
            "--no-state",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert ENV_MAX_OPEN_RUNS in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


MEMORY_RUNS = 100_000  # 200,000 spans
MEMORY_BOUND_MB = 64  # the report's memory budget per process; this shape took 104-117 MB before


def _root_first_without_totals(path: Path) -> None:
    """Root-first lines of 256 runs (the roots, then their LLM spans), roots without run totals."""
    with path.open("w") as out:
        for first in range(0, MEMORY_RUNS, 256):
            roots, llms = [], []
            for i in range(first, min(MEMORY_RUNS, first + 256)):
                trace = f"{i + 1:032x}"
                run_id = f"00000000-0000-4000-8000-{i + 1:012x}"
                start = 1_767_225_600_000_000_000 + i * 1_000_000_000
                agent = f"agent-{i % 4}"
                common = (
                    f'{{"key":"gen_ai.agent.name","value":{{"stringValue":"{agent}"}}}},'
                    f'{{"key":"agent.run_id","value":{{"stringValue":"{run_id}"}}}}'
                )
                roots.append(
                    f'{{"traceId":"{trace}","spanId":"{i + 1:08x}00000001","name":"invoke_agent {agent}","kind":1,'
                    f'"startTimeUnixNano":"{start}","endTimeUnixNano":"{start + 50_000_000}","attributes":['
                    f'{{"key":"gen_ai.operation.name","value":{{"stringValue":"invoke_agent"}}}},{common},'
                    f'{{"key":"agent.run.outcome","value":{{"stringValue":"ok"}}}}],"status":{{}}}}'
                )
                llms.append(
                    f'{{"traceId":"{trace}","spanId":"{i + 1:08x}00000002","parentSpanId":"{i + 1:08x}00000001","name":"chat m","kind":3,'
                    f'"startTimeUnixNano":"{start + 1000}","endTimeUnixNano":"{start + 40_000_000}","attributes":['
                    f'{{"key":"gen_ai.operation.name","value":{{"stringValue":"chat"}}}},{common},'
                    f'{{"key":"gen_ai.request.model","value":{{"stringValue":"gpt-4o-mini"}}}},'
                    f'{{"key":"gen_ai.usage.input_tokens","value":{{"intValue":"500"}}}},'
                    f'{{"key":"gen_ai.usage.output_tokens","value":{{"intValue":"50"}}}}],"status":{{}}}}'
                )
            out.write(
                '{"resourceSpans":[{"resource":{"attributes":[]},"scopeSpans":['
                f'{{"scope":{{"name":"a"}},"spans":[{",".join(roots)}]}},{{"scope":{{"name":"b"}},"spans":[{",".join(llms)}]}}]}}]}}\n'
            )


@pytest.mark.parametrize("reader", ["auto", "off"])
def test_root_first_file_without_totals_is_read_in_bounded_memory(tmp_path: Path, reader: str) -> None:
    trace = tmp_path / "traces.jsonl"
    _root_first_without_totals(trace)
    own_kb, workers_kb = report_peak_kb(
        [
            "--input",
            str(trace),
            "--out",
            str(tmp_path / "out"),
            "--no-state",
            "--no-alpha-quality",
            "--quiet",
            "--kill-file",
            str(tmp_path / "kill.json"),
        ],
        reader,
    )
    assert max(own_kb, workers_kb) / 1024 < MEMORY_BOUND_MB, (own_kb, workers_kb)
    result = json.loads((tmp_path / "out" / "meta_report.json").read_text())
    assert result["fleet"]["runs"] == MEMORY_RUNS and result["fleet"]["llm_calls"] == MEMORY_RUNS
    assert result["fleet"]["consistency"]["unchecked"] == MEMORY_RUNS
    assert result["inputs"]["evicted_open_runs"] == NO_EVICTION
