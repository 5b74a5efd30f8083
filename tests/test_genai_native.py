"""The rules for spans of other instrumentations (``meta_supervisor/tally/genai_spans.py``, ``tool_tallies.py``)
and the native core's copy of them (``native/src/kinds.rs``): each case is read by both readers, which
must agree (``tests/test_native_core.py``'s harness), and its outcome is checked on the Python
reader's tallies. Then the hand-written fixtures (``tests/fixtures/genai``) cut into parts and
mutated, as the differential tests do with alphatrace's own spans."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meta_supervisor import native_core
from meta_supervisor.build.dispatch import build_inputs
from meta_supervisor.build.options import BuildOptions
from meta_supervisor.build.python_part import read_part_python
from meta_supervisor.tally.agent_counts import DEFERRED_TOOL, with_deferred
from meta_supervisor.tally.bounds import MAX_DISTINCT, P_DEFERRED, T_CALLS, T_ERRORS
from meta_supervisor.tally.open_runs import MAX_OPEN_RUNS
from meta_supervisor.tally.tool_tallies import SUB_BITS, bucket_high, histogram_items, latency_bucket
from otel import semconv as S
from tests import genai_fixtures
from tests.fixtures.report.otlp_builder import MS, T0
from tests.native_cases import dump, other_span, span_lines, write
from tests.test_native_core import OPTIONS, PRICES, assert_none_or_equal, assert_taken_and_equal, mutate

UNKNOWN = "(unknown agent)"


@pytest.fixture
def native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(native_core.ENV, raising=False)
    if not native_core.available():
        pytest.fail("the native core is not installed: run make native")


def both_read(tmp_path: Path, spans: list[dict], name: str = "traces.jsonl") -> dict:
    """The spans read by both readers, which must agree: the Python reader's snapshot."""
    return assert_taken_and_equal(write(tmp_path, span_lines(spans, per_line=3), name))


def tallies(tmp_path: Path, spans: list[dict]) -> tuple[Any, dict]:
    """(inputs, agents) of the Python reader, once both readers agreed on them."""
    path = write(tmp_path, span_lines(spans, per_line=3), "tallies.jsonl")
    assert_taken_and_equal(path)
    inputs, agents, _, pending, _ = pickle.loads(read_part_python(path, 0, None, OPTIONS).aggregator_state)
    return inputs, with_deferred(agents, pending)  # calls naming no agent, their root unread: (unknown agent)'s


def span(k: int, name: str, values: dict[str, Any], **fields: Any) -> dict:
    """A span of trace 700 + k (its own trace: no run join between the cases)."""
    out = other_span(700 + k, 1, name, values)
    out.update(fields)
    return out


# --- what a span is ------------------------------------------------------------------------------------


def test_classification(native, tmp_path: Path) -> None:
    """The first key whose value the report knows decides; unknown values and other spans are "other"."""
    llm, tool, run, other = "llm", "tool", "run", "other"
    cases = [
        ({S.GEN_AI_OPERATION_NAME: "text_completion"}, llm),
        ({S.GEN_AI_OPERATION_NAME: "generate_content"}, llm),
        ({S.GEN_AI_OPERATION_NAME: "embeddings"}, llm),
        ({S.GEN_AI_OPERATION_NAME: "execute_tool", S.OPENINFERENCE_SPAN_KIND: "LLM"}, tool),  # the GenAI key first
        ({S.GEN_AI_OPERATION_NAME: "create_agent", S.OPENINFERENCE_SPAN_KIND: "TOOL"}, tool),  # an unknown operation: the next key
        ({S.GEN_AI_OPERATION_NAME: "create_agent"}, other),
        ({S.GEN_AI_OPERATION_NAME: "invoke_workflow"}, other),
        ({S.GEN_AI_OPERATION_NAME: 5}, other),  # not a string
        ({S.OPENINFERENCE_SPAN_KIND: "llm"}, other),  # values are compared exactly
        ({S.OPENINFERENCE_SPAN_KIND: "CHAIN"}, other),
        ({S.OPENINFERENCE_SPAN_KIND: "RETRIEVER", S.LLM_REQUEST_TYPE: "chat"}, llm),
        ({S.TRACELOOP_SPAN_KIND: "workflow"}, other),
        ({S.TRACELOOP_SPAN_KIND: "task", S.LLM_REQUEST_TYPE: "embedding"}, llm),
        ({S.TRACELOOP_SPAN_KIND: "tool"}, tool),
        ({S.LLM_REQUEST_TYPE: "rerank"}, other),
        ({S.LLM_REQUEST_TYPE: "unknown"}, other),
        ({S.TRACELOOP_SPAN_KIND: "agent", S.TRACELOOP_ENTITY_NAME: "x"}, run),
        ({S.OPENINFERENCE_SPAN_KIND: "AGENT"}, run),
        ({}, other),
    ]
    for k, (values, expected) in enumerate(cases):
        inputs, agents = tallies(tmp_path, [span(k, f"case {k}", values)])
        (agent,) = agents.values() if agents else (None,)
        seen = (
            llm
            if agent is not None and agent.llm_operations
            else tool
            if agent is not None and agent.tools
            else run
            if agent is not None and agent.outcomes
            else other
        )
        assert seen == expected and inputs.other_spans == (expected == other), (values, seen)


def test_llm_operations_per_agent(native, tmp_path: Path) -> None:
    spans = [
        span(1, "chat m", {S.GEN_AI_OPERATION_NAME: "chat", S.GEN_AI_AGENT_NAME: "a"}),
        span(2, "x", {S.GEN_AI_OPERATION_NAME: "text_completion", S.GEN_AI_AGENT_NAME: "a"}),
        span(3, "x", {S.GEN_AI_OPERATION_NAME: "generate_content", S.GEN_AI_AGENT_NAME: "a"}),
        span(4, "x", {S.OPENINFERENCE_SPAN_KIND: "EMBEDDING", S.GEN_AI_AGENT_NAME: "a"}),
        span(5, "x", {S.OPENINFERENCE_SPAN_KIND: "LLM", S.GEN_AI_AGENT_NAME: "a"}),
        span(6, "x", {S.LLM_REQUEST_TYPE: "completion", S.GEN_AI_AGENT_NAME: "a"}),
        span(7, "x", {S.LLM_REQUEST_TYPE: "chat"}),
    ]
    _, agents = tallies(tmp_path, spans)
    assert agents["a"].llm_operations == {"chat": 1, "text_completion": 2, "generate_content": 1, "embeddings": 1, "llm": 1}
    assert agents[UNKNOWN].llm_operations == {"chat": 1}


def test_token_and_model_keys_first_present_counts(native, tmp_path: Path) -> None:
    """Current GenAI keys first, then the deprecated and the producers' keys; the first key present
    counts even when its value is not an integer (then 0), as the first model key present does."""
    chat = {S.GEN_AI_OPERATION_NAME: "chat", S.GEN_AI_AGENT_NAME: "a"}
    cases = [
        (
            {
                S.GEN_AI_REQUEST_MODEL: "m1",
                S.GEN_AI_USAGE_INPUT_TOKENS: 10,
                S.GEN_AI_USAGE_PROMPT_TOKENS: 99,
                S.OPENINFERENCE_TOKENS_PROMPT: 77,
            },
            "m1",
            (10, 0, 0),
        ),
        ({S.GEN_AI_REQUEST_MODEL: "m2", S.GEN_AI_USAGE_PROMPT_TOKENS: 20, S.GEN_AI_USAGE_COMPLETION_TOKENS: 5}, "m2", (20, 5, 0)),
        (
            {
                S.OPENINFERENCE_MODEL_NAME: "m3",
                S.OPENINFERENCE_TOKENS_PROMPT: 30,
                S.OPENINFERENCE_TOKENS_COMPLETION: 6,
                S.OPENINFERENCE_TOKENS_CACHE_READ: 4,
            },
            "m3",
            (30, 6, 4),
        ),
        ({S.GEN_AI_REQUEST_MODEL: "m4", S.GEN_AI_USAGE_INPUT_TOKENS: "x", S.GEN_AI_USAGE_PROMPT_TOKENS: 50}, "m4", (0, 0, 0)),
        ({S.GEN_AI_REQUEST_MODEL: "m5", S.GEN_AI_USAGE_INPUT_TOKENS: 9, S.TRACELOOP_CACHE_READ_INPUT_TOKENS: 3}, "m5", (9, 0, 3)),
        ({S.GEN_AI_REQUEST_MODEL: "req", S.OPENINFERENCE_MODEL_NAME: "oi"}, "req", (0, 0, 0)),
        (
            {S.OPENINFERENCE_RESPONSE_MODEL_NAME: "resp", S.OPENINFERENCE_MODEL_NAME: "oi", S.OPENINFERENCE_REQUEST_MODEL_NAME: "rq"},
            "resp",
            (0, 0, 0),
        ),
        ({S.OPENINFERENCE_REQUEST_MODEL_NAME: "rq", S.OPENINFERENCE_EMBEDDING_MODEL_NAME: "emb"}, "rq", (0, 0, 0)),
        ({S.OPENINFERENCE_EMBEDDING_MODEL_NAME: "emb", S.GEN_AI_USAGE_PROMPT_TOKENS: 8}, "emb", (8, 0, 0)),
        ({S.GEN_AI_RESPONSE_MODEL: "", S.GEN_AI_REQUEST_MODEL: "never"}, "(unknown model)", (0, 0, 0)),  # present, empty
        ({S.OPENINFERENCE_TOKENS_PROMPT: 5, S.OPENINFERENCE_TOKENS_CACHE_READ: 9}, "(unknown model)", (5, 0, 5)),  # clamped
    ]
    spans = [span(k, "chat", {**chat, **values}) for k, (values, _, _) in enumerate(cases)]
    _, agents = tallies(tmp_path, spans)
    rows: dict[str, list[int]] = {}
    for (_, model, _), counts in agents["a"].day_models.items():
        rows.setdefault(model, [0, 0, 0])
        rows[model] = [a + b for a, b in zip(rows[model], (counts[2], counts[4], counts[3]))]
    expected: dict[str, list[int]] = {}
    for _, model, tokens in cases:
        expected[model] = [a + b for a, b in zip(expected.get(model, [0, 0, 0]), tokens)]
    assert rows == expected
    assert agents["a"].bad_token_values == 1


def test_run_agent_names(native, tmp_path: Path) -> None:
    spans = [
        span(1, "invoke_agent named", {S.GEN_AI_OPERATION_NAME: "invoke_agent"}),
        span(2, "invoke_agent", {S.GEN_AI_OPERATION_NAME: "invoke_agent"}),  # util-genai's span of an unnamed agent
        span(3, "invoke_agent x", {S.GEN_AI_OPERATION_NAME: "invoke_agent", S.OPENINFERENCE_AGENT_NAME: "from agent.name"}),
        span(4, "y.agent", {S.TRACELOOP_SPAN_KIND: "agent"}),
        span(5, "y.agent", {S.TRACELOOP_SPAN_KIND: "agent", S.TRACELOOP_ENTITY_NAME: "entity"}),
        span(6, "Agent run", {S.OPENINFERENCE_SPAN_KIND: "AGENT", S.OPENINFERENCE_AGENT_NAME: ""}),
        span(7, "", {S.OPENINFERENCE_SPAN_KIND: "AGENT"}),
        span(8, ".agent", {S.TRACELOOP_SPAN_KIND: "agent"}),
        span(9, "z", {S.OPENINFERENCE_SPAN_KIND: "AGENT", S.GEN_AI_AGENT_NAME: "stamped", S.OPENINFERENCE_AGENT_NAME: "not read"}),
    ]
    _, agents = tallies(tmp_path, spans)
    runs = {name: sum(tally.outcomes.values()) for name, tally in agents.items()}
    assert runs == {"named": 1, UNKNOWN: 3, "from agent.name": 1, "y": 1, "entity": 1, "Agent run": 1, "stamped": 1}


def test_tool_names_errors_and_latencies(native, tmp_path: Path) -> None:
    tool = {S.GEN_AI_OPERATION_NAME: "execute_tool", S.GEN_AI_AGENT_NAME: "a"}
    spans = [
        span(1, "execute_tool", tool),  # no name anywhere
        span(2, "execute_tool lookup", tool),
        span(3, "execute_tool x", {**tool, S.GEN_AI_TOOL_NAME: "gen", S.OPENINFERENCE_TOOL_NAME: "oi"}),
        span(4, "t.tool", {S.TRACELOOP_SPAN_KIND: "tool", S.GEN_AI_AGENT_NAME: "a"}),
        span(
            5,
            "t.tool",
            {S.TRACELOOP_SPAN_KIND: "tool", S.GEN_AI_AGENT_NAME: "a", S.OPENINFERENCE_TOOL_NAME: "", S.TRACELOOP_ENTITY_NAME: "e"},
        ),
        span(6, "plain", {S.OPENINFERENCE_SPAN_KIND: "TOOL", S.GEN_AI_AGENT_NAME: "a"}),
        # errors: error.type alone, status ERROR alone, an empty error.type
        span(7, "execute_tool lookup", {**tool, S.ERROR_TYPE: "TimeoutError"}),
        span(8, "execute_tool lookup", tool, status={"code": 2, "message": "boom"}),
        span(9, "execute_tool lookup", {**tool, S.ERROR_TYPE: ""}, status={"code": 1}),
        # latencies: reversed, no start, the largest one kept, one past it
        span(10, "execute_tool timing", tool, startTimeUnixNano=str(T0 + 10), endTimeUnixNano=str(T0)),
        span(11, "execute_tool timing", tool, startTimeUnixNano="0", endTimeUnixNano=str(T0)),
        span(12, "execute_tool timing", tool, startTimeUnixNano="1", endTimeUnixNano=str(2**63)),
        span(13, "execute_tool timing", tool, startTimeUnixNano="1", endTimeUnixNano=str(2**63 + 1)),
        span(14, "execute_tool timing", tool, startTimeUnixNano=str(T0), endTimeUnixNano=str(T0)),  # 0 ns
    ]
    _, agents = tallies(tmp_path, spans)
    tools = agents["a"].tools
    assert sorted(tools) == ["(unknown tool)", "e", "gen", "lookup", "plain", "t", "timing"]
    assert tools["lookup"][T_CALLS] == 4 and tools["lookup"][T_ERRORS] == 2
    assert tools["timing"][:6] == [5, 0, 2, 2**63 - 1, 0, 2**63 - 1]  # calls, errors, timed, sum, min, max
    assert dict(histogram_items(tools["timing"][6])) == {0: 1, latency_bucket(2**63 - 1): 1}


def test_tool_alpha_events_count_for_its_agent(native, tmp_path: Path) -> None:
    """A tool span's alpha events count for its agent, as they did when such a span was "other"."""
    from tests.native_cases import signal_events

    values = {S.GEN_AI_OPERATION_NAME: "execute_tool", S.GEN_AI_TOOL_NAME: "score"}
    spans = [
        span(1, "execute_tool score", {**values, S.GEN_AI_AGENT_NAME: "a"}, events=signal_events([("AAA", "up"), ("BBB", "down")])),
        span(2, "execute_tool score", values, events=signal_events([("AAA", "up")])),  # no agent: its events are not counted
    ]
    inputs, agents = tallies(tmp_path, spans)
    assert agents["a"].alpha == {("AAA", "up"): 1, ("BBB", "down"): 1} and agents[UNKNOWN].alpha == {}
    assert agents[UNKNOWN].tools["score"][T_CALLS] == 1 and inputs.other_spans == 0


def test_tools_fold_past_the_limit_in_both_readers(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """More than MAX_DISTINCT tools for one agent: read in order, the rest fold into "(other)" (the
    core folds as Python does); split across two files, the second part's merge is refused so that
    the same happens."""
    tool = {S.GEN_AI_OPERATION_NAME: "execute_tool", S.GEN_AI_AGENT_NAME: "a"}
    spans = [span(k, f"execute_tool t{k}", tool) for k in range(MAX_DISTINCT + 5)]
    python = both_read(tmp_path, spans)
    tools = python["agents"]["a"]["tools"]
    assert len(tools) == MAX_DISTINCT + 1 and tools[-1][0] == "(other)" and tools[-1][1] == 5
    first = write(tmp_path, span_lines(spans[:600], per_line=50), "a.jsonl")
    second = write(tmp_path, span_lines(spans[600:], per_line=50), "b.jsonl")
    results = []
    for mode in ("on", "off"):
        monkeypatch.setenv(native_core.ENV, mode)
        data, _ = build_inputs(BuildOptions(inputs=[str(first), str(second)], prices=PRICES))
        results.append({name: entry[T_CALLS] for name, entry in data.agents["a"].tools.items()})
    assert results[0] == results[1] and len(results[0]) == MAX_DISTINCT + 1 and results[0]["(other)"] == 5


def test_latency_buckets() -> None:
    """Each latency lies in its bucket, whose upper bound is at most 1/32 above it; buckets are in order."""
    values = [*range(0, 300), *(2**e + d for e in range(6, 63) for d in (-1, 0, 1, 2**e // 3)), 2**63 - 1]
    last = -1
    for ns in sorted(values):
        bucket = latency_bucket(ns)
        assert bucket >= last and ns <= bucket_high(bucket) <= ns + ns // (1 << SUB_BITS)
        assert latency_bucket(bucket_high(bucket)) == bucket
        last = bucket
    assert latency_bucket(2**63 - 1) == (63 - SUB_BITS) * (1 << SUB_BITS) + (1 << SUB_BITS) - 1


# --- the fixtures, cut into parts and mutated ---------------------------------------------------------


@pytest.mark.parametrize("name", genai_fixtures.FIXTURES)
def test_fixture_parts_are_taken_and_equal(native, tmp_path: Path, name: str) -> None:
    """Every range of whole lines of a fixture, as a parallel build cuts a file, reads alike."""
    lines = genai_fixtures.lines(name)
    path = write(tmp_path, lines)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line.encode()))
    for first in range(len(lines)):
        for last in range(first + 1, len(lines) + 1):
            python = assert_taken_and_equal(path, starts[first], starts[last] if last < len(lines) else None, first_number=first)
            assert python["records"] == last - first


def _documents(name: str) -> list[dict]:
    return [json.loads(line) for line in genai_fixtures.lines(name)]


@st.composite
def fixture_documents(draw) -> list[dict]:
    """One or more fixtures' requests, some of their spans' times moved (so that mutations of one
    copy do not collide with another's ids)."""
    names = draw(st.lists(st.sampled_from(genai_fixtures.FIXTURES), min_size=1, max_size=3, unique=True))
    documents = [copy.deepcopy(document) for name in names for document in _documents(name)]
    shift = draw(st.integers(0, 3)) * 86_400_000 * MS
    for document in documents:
        for resource_spans in document["resourceSpans"]:
            for scope in resource_spans["scopeSpans"]:
                for one in scope["spans"]:
                    for key in ("startTimeUnixNano", "endTimeUnixNano"):
                        one[key] = str(int(one[key]) + shift)
    return draw(st.permutations(documents))


def test_mutated_fixture_lines_are_declined_or_equal(native, tmp_path: Path) -> None:
    counts = {"plain": 0, "plain_taken": 0, "mutated": 0, "mutated_taken": 0}
    folder = tmp_path / "examples"
    folder.mkdir()

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(documents=fixture_documents(), data=st.data())
    def check(documents: list[dict], data: st.DataObject) -> None:
        plain = write(folder, [dump(document) for document in documents], "plain.jsonl")
        counts["plain"] += 1
        counts["plain_taken"] += assert_none_or_equal(plain)
        mutated = write(folder, [dump(document) for document in mutate(documents, data)], "mutated.jsonl")
        counts["mutated"] += 1
        counts["mutated_taken"] += assert_none_or_equal(mutated)
        collect = data.draw(st.booleans(), label="collect_signals")
        assert_none_or_equal(mutated, options=(PRICES if collect else None, None, None, collect, MAX_OPEN_RUNS))

    check()
    assert counts["plain"] >= 20 and counts["plain_taken"] == counts["plain"], counts  # the fixtures as written: always taken
    assert counts["mutated_taken"] > 0, counts


def test_tool_timings_beyond_the_fixtures(native, tmp_path: Path) -> None:
    """Tool spans with many latencies, names and kinds, per agent: the histograms agree bucket for bucket."""
    spans = []
    for k in range(400):
        start = T0 + k * 7919 * MS
        duration = (k * k * 104_729) % (1 << (k % 60 + 1)) if k % 9 else k
        kind = [
            {S.GEN_AI_OPERATION_NAME: "execute_tool", S.GEN_AI_TOOL_NAME: f"tool-{k % 13}"},
            {S.OPENINFERENCE_SPAN_KIND: "TOOL", S.OPENINFERENCE_TOOL_NAME: f"tool-{k % 7}"},
            {S.TRACELOOP_SPAN_KIND: "tool", S.TRACELOOP_ENTITY_NAME: "\u00e9t\u00e9 <b>" + "x" * (k % 250)},
        ][k % 3]
        values = {**kind, S.GEN_AI_AGENT_NAME: ["a", "b", ""][k % 3 if k % 5 else 0]}
        if k % 11 == 0:
            values[S.ERROR_TYPE] = "E"
        spans.append(span(k, f"s{k}", values, startTimeUnixNano=str(start), endTimeUnixNano=str(start + duration)))
    python = both_read(tmp_path, spans)
    timed = sum(row[3] for agent in python["agents"].values() for row in agent["tools"])
    # a tool span naming no agent, in a trace without an agent span: deferred, waiting for its root
    deferred = [record for entry in python["pending"].values() for record in entry[P_DEFERRED] or ()]
    assert all(record[0] == DEFERRED_TOOL for record in deferred)
    assert len(deferred) == len([k for k in range(400) if not ["a", "b", ""][k % 3 if k % 5 else 0]])
    assert timed + len(deferred) == 400 and any(len(row[7]) > 5 for agent in python["agents"].values() for row in agent["tools"])
    assert all(len(row[0]) <= 200 for agent in python["agents"].values() for row in agent["tools"])
    assert sorted(python["agents"]) == ["a", "b"]
