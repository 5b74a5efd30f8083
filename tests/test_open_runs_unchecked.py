"""Children of a run already closed as unchecked open no entry, and nothing else changes (issue 13).

With root-first lines and roots without run totals, a root closes its run as *unchecked* when it is
read; its LLM and tool spans read after it used to open an entry in ``pending`` that only the next
sweep deleted (up to ``SWEEP_EVERY`` of them a process). Now such a child is resolved at once: its
run is only remembered as a fingerprint (``_dead``) until the next sweep, counted as the entry was
for the sweep's timing, so that sweeps, and so evictions of an over-bound file, come exactly when
they did. Checked here:

* the open-run table stays empty on a root-first file without totals (counts, not time), in the
  Python reader and in the native core;
* the report is the same as with the old rule (``_of_unchecked_run`` patched to open the entry, as
  before) on mixed shapes: runs with and without totals, late extra spans, children naming no
  agent, second roots, roots without a run id, over-bound bounds that evict; and the native core
  gives the same part (its open runs and ``dead`` runs included) and the same report.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import pytest

from meta_supervisor import native_core
from meta_supervisor.build.options import BuildOptions
from meta_supervisor.build.python_part import read_part_python
from meta_supervisor.build.state_store import SavedState
from meta_supervisor.reading.otlp_schema import request_decoder
from meta_supervisor.tally.consistency import ConsistencyCheck
from meta_supervisor.tally.open_runs import MAX_OPEN_RUNS
from meta_supervisor.tally.span_aggregator import SpanAggregator
from otel import semconv as S
from services.pricing import PriceTable
from tests.fixtures.report.otlp_builder import Llm, Run, Tool, llm_span, request, root_span, tool_span
from tests.test_native_core import assert_taken_and_equal
from tests.test_open_runs import report, write  # a file of lines, its report at a bound

PRICES = PriceTable.load()
NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
DECODE = request_decoder(True).decode


def root_first_runs(count: int) -> list[Run]:
    return [
        Run(
            f"agent-{i % 5}",
            i + 1,
            start_ms=i * 1000,
            llm=[Llm(tokens_in=100 + i, tokens_out=10 + k) for k in range(3)],
            tools=[Tool(name=f"t{k}") for k in range(2)],
            totals=False,
        )
        for i in range(count)
    ]


def test_children_of_unchecked_runs_open_no_entry(tmp_path: Path) -> None:
    # 3,000 runs: fewer new open runs than a sweep waits for, so before this change every one of
    # them was still in pending at the end (3,000 entries), none resolved
    aggregator = SpanAggregator(PRICES, max_open_runs=MAX_OPEN_RUNS)
    most_open = most_dead = 0
    for run in root_first_runs(3000):
        children = [llm_span(run, k, c) for k, c in enumerate(run.llm)] + [tool_span(run, k, t) for k, t in enumerate(run.tools)]
        aggregator.add_request(DECODE(json.dumps(request([root_span(run), *children])).encode()))
        most_open = max(most_open, len(aggregator.pending))
        most_dead = max(most_dead, len(aggregator._dead))
    assert most_open == 0
    assert most_dead == 3000  # counted as the entries were (no sweep yet: 3,000 < 4,096), 8 bytes each
    consistency = {name: list(tally.consistency) for name, tally in aggregator.agents.items()}
    assert consistency == {f"agent-{a}": [0, 0, 600, 0] for a in range(5)}
    assert sum(sum(tool[0] for tool in tally.tools.values()) for tally in aggregator.agents.values()) == 6000
    aggregator.settle()
    assert aggregator.pending == {} and not aggregator._dead


def test_native_core_opens_no_entry_either(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(native_core.ENV, raising=False)
    if not native_core.available():
        pytest.fail("the native core is not installed: run make native")
    lines = []
    for run in root_first_runs(600):
        children = [llm_span(run, k, c) for k, c in enumerate(run.llm)] + [tool_span(run, k, t) for k, t in enumerate(run.tools)]
        lines.append(json.dumps(request([root_span(run), *children]), separators=(",", ":")) + "\n")
    path = tmp_path / "t.jsonl"
    path.write_text("".join(lines))
    part = assert_taken_and_equal(path)  # the native part equals the Python part, its dead runs included
    assert part["pending"] == {}
    assert len(part["dead"]) == 600


def _without_run_id(span: dict) -> dict:
    span["attributes"] = [kv for kv in span["attributes"] if kv["key"] != S.AGENT_RUN_ID]
    return span


def mixed_lines(seed: int, count: int = 90) -> list[list[dict]]:
    """Lines of 1-3 spans: runs with and without totals (some mismatched), children far after or
    before their root, children naming no agent, second roots, late extra spans, runs without a
    run id: every path a child of a closed run can take."""
    rng = random.Random(seed)
    slots: list[tuple[float, int, dict]] = []
    order = 0

    def at(slot: float, span: dict) -> None:
        nonlocal order
        slots.append((slot, order, span))
        order += 1

    for i in range(count):
        totals: bool | dict = rng.random() < 0.3
        if totals and rng.random() < 0.3:
            totals = {S.RUN_INPUT_TOKENS: 1}  # a mismatch
        no_run_id = rng.random() < 0.1
        run = Run(
            f"agent-{i % 4}",
            i + 1,
            start_ms=i * 1000,
            llm=[Llm(tokens_in=50 + i, agent=None if rng.random() < 0.25 else "-") for _ in range(rng.randint(0, 3))],
            tools=[Tool(name=f"t{k}", agent=None if rng.random() < 0.25 else "-") for k in range(rng.randint(0, 2))],
            totals=totals,
        )
        root = root_span(run)
        children = [llm_span(run, k, c) for k, c in enumerate(run.llm)] + [tool_span(run, k, t) for k, t in enumerate(run.tools)]
        if no_run_id:
            root = _without_run_id(root)
            children = [_without_run_id(child) for child in children]
        base = float(i)
        root_first = rng.random() < 0.7
        at(base if root_first else base + rng.uniform(0, 30), root)
        for child in children:
            at(base + rng.uniform(0, 30) if root_first else base, child)
        if rng.random() < 0.1:  # a second root of the run, later
            second = json.loads(json.dumps(root))
            second["spanId"] = f"{run.trace:08x}000000fe"  # another span (the same span twice is a copy)
            at(base + rng.uniform(0, 40), second)
        if run.llm and rng.random() < 0.1:  # an extra LLM call after the run closed (a new span id)
            extra = llm_span(run, 0, run.llm[0])
            extra["spanId"] = f"{run.trace:08x}000000ff"
            at(base + rng.uniform(30, 45), _without_run_id(extra) if no_run_id else extra)
    slots.sort(key=lambda item: item[:2])
    spans = [span for _, _, span in slots]
    lines, k = [], 0
    while k < len(spans):
        size = rng.randint(1, 3)
        lines.append(spans[k : k + size])
        k += size
    return lines


def _open_as_before(self, run_key: str) -> bool:
    return False  # the rule before: every child without an entry opens one


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("bound", [8, 16, 1000])
def test_same_report_as_before_on_mixed_shapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, bound: int) -> None:
    path = write(tmp_path / "t.jsonl", mixed_lines(seed))
    monkeypatch.setenv(native_core.ENV, "off")
    now = report(path, bound)
    with monkeypatch.context() as patch:
        patch.setattr(ConsistencyCheck, "_of_unchecked_run", _open_as_before)
        before = report(path, bound)
    assert now == before
    monkeypatch.setenv(native_core.ENV, "auto")
    assert report(path, bound) == now  # the native core agrees (or declined and Python read it)
    if bound == 8 and seed == 0:  # the shapes do reach the cases they are for
        assert now["inputs"]["evicted_open_runs"]["llm_runs_waiting_for_root"] > 0
        assert now["inputs"]["duplicate_run_roots"] > 0
        assert now["fleet"]["consistency"]["mismatched"] > 0


@pytest.mark.parametrize("seed", range(4))
def test_native_part_equals_python_part_on_mixed_shapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    monkeypatch.delenv(native_core.ENV, raising=False)
    path = write(tmp_path / "t.jsonl", mixed_lines(seed))
    for bound in (8, 1000):
        options = (PRICES, None, None, True, bound)
        python = assert_taken_and_equal(path, options=options)
        assert python["pending"] or python["dead"] or bound == 1000  # something is open at the end
    whole = read_part_python(path, 0, None, (PRICES, None, None, True, 8))
    assert whole.records > 0


def test_a_checkpoint_keeps_the_open_unchecked_runs(tmp_path: Path) -> None:
    # a checkpoint is saved mid-build (before the last file): the runs held in _dead then are saved
    # with the open runs, so that a build restored from it sweeps when it did before (their entries)
    aggregator = SpanAggregator(PRICES, max_open_runs=MAX_OPEN_RUNS)
    for run in root_first_runs(50):
        children = [llm_span(run, k, c) for k, c in enumerate(run.llm)]
        aggregator.add_request(DECODE(json.dumps(request([root_span(run), *children])).encode()))
    assert len(aggregator._dead) == 50 and not aggregator.pending
    store = SavedState(tmp_path, "k")
    generation, _, _ = store.write_checkpoint(aggregator, {})
    data = store.load_checkpoint(generation)
    restored = store.load_aggregator(data, BuildOptions(inputs=[], prices=PRICES))
    assert restored._dead == aggregator._dead and restored.pending == {}
    aggregator.settle()
    generation, _, _ = store.write_checkpoint(aggregator, {})
    assert "open_unchecked_runs" not in store.load_checkpoint(generation)  # none after settle(): a state as before
