"""Spans of other instrumentations as a user sees them in the report: runs, LLM calls (per operation
and by model, with their tokens), tool calls (per tool: calls, errors, latency) and other spans, for
one hand-written fixture per producer shape (``tests/fixtures/genai``), read by the Python reader
and by the native core (``ALPHATRACE_NATIVE``), which must give the same report.

Where a producer's LLM or tool spans carry no ``gen_ai.agent.name`` the per-agent figures below do
not depend on who they are attributed to (the model and tool tables are summed over all agents);
what the report does today with those children is asserted apart, at the end."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from meta_supervisor import native_core
from meta_supervisor.assemble.report import KillSwitchState, build_report
from meta_supervisor.build.dispatch import build_inputs
from meta_supervisor.build.options import BuildOptions
from services.pricing import PriceTable
from tests import genai_fixtures

PRICES = PriceTable.load()
NOW = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
UNKNOWN = "(unknown agent)"
RUN_KEYS = ("runs", "errors", "error_rate", "runs_without_outcome", "outcomes", "p50_latency_ms", "max_latency_ms", "runs_without_latency")


@pytest.fixture(params=["off", "on"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The Python reader, then the native core (required: ``make native``)."""
    monkeypatch.setenv(native_core.ENV, request.param)
    return request.param


def report_of(folder: Path, *names: str, **options: Any) -> dict[str, Any]:
    path = genai_fixtures.write(folder, *names)
    data, _ = build_inputs(BuildOptions(inputs=[str(path)], prices=PRICES, workers=1, **options))
    return build_report(data, PRICES, KillSwitchState(path="killed.json"), NOW)


def runs(agent: dict[str, Any]) -> dict[str, Any]:
    return {key: agent[key] for key in RUN_KEYS}


def model(calls: int, tokens_in: int, tokens_out: int, cached: int = 0, errors: int = 0, cost: float | None = None) -> dict[str, Any]:
    return {
        "calls": calls,
        "simulated_calls": 0,
        "errors": errors,
        "tokens_in": tokens_in,
        "tokens_out": tokens_out,
        "tokens_cached": cached,
        "cost_usd": cost,
        "priced": cost is not None,
    }


def tool(calls: int, errors: int, avg: float, p50: float, p95: float, top: float) -> dict[str, Any]:
    return {
        "calls": calls,
        "errors": errors,
        "error_rate": round(errors / calls, 6),
        "avg_latency_ms": avg,
        "p50_latency_ms": p50,
        "p95_latency_ms": p95,
        "max_latency_ms": top,
        "calls_without_latency": 0,
    }


def over_agents(report: dict[str, Any], section: str) -> dict[str, Any]:
    """``models``, ``tools`` or ``llm_operations`` of every agent together (each key is one agent's
    here): what does not depend on which agent the spans are attributed to."""
    out: dict[str, Any] = {}
    for agent in report["agents"].values():
        for key, value in agent[section].items():
            assert key not in out, f"{key} under two agents"
            out[key] = value
    return out


# --- the fixtures are the collector's format, and say what they follow ----------------------------


def _ids(document: dict, convert) -> None:
    for resource_spans in document["resourceSpans"]:
        for scope in resource_spans["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = convert(span[key])


@pytest.mark.parametrize("name", genai_fixtures.FIXTURES + genai_fixtures.ALPHATRACE_FIXTURES)
def test_fixture_lines_are_exactly_otlp_json(name: str) -> None:
    """Each line parses strictly as an OTLP ExportTraceServiceRequest (opentelemetry-proto's own
    classes: no unknown field, no wrong type) and prints back to the same JSON: the canonical OTLP/JSON
    encoding the collector's file exporter writes (hex ids, integers as strings, enums as numbers)."""
    lines = genai_fixtures.lines(name)
    assert lines
    for line in lines:
        document = json.loads(line)
        as_proto = copy.deepcopy(document)
        _ids(as_proto, lambda hex_id: base64.b64encode(bytes.fromhex(hex_id)).decode())  # protobuf's JSON mapping: base64 bytes
        message = json_format.ParseDict(as_proto, ExportTraceServiceRequest())
        back = json_format.MessageToDict(message, use_integers_for_enums=True)
        _ids(back, lambda b64: base64.b64decode(b64).hex())
        assert back == document
    header = genai_fixtures.header(name)
    assert "Written by hand" in header and "convention" in header


# --- one fixture per producer shape -------------------------------------------------------------------


def test_genai_tool_calling_run(reader: str, tmp_path: Path) -> None:
    """The GenAI conventions, every span stamped with its agent: one run, 8 chat calls (one failed,
    one with the deprecated token keys), 6 tool calls (one failed), 2 other spans."""
    report = report_of(tmp_path, "genai_tool_calling")
    assert list(report["agents"]) == ["portfolio-planner"]
    agent = report["agents"]["portfolio-planner"]
    assert runs(agent) == {
        "runs": 1,
        "errors": 0,
        "error_rate": 0.0,
        "runs_without_outcome": 1,  # no agent.run.outcome: ok from its status
        "outcomes": {"ok": 1},
        "p50_latency_ms": 9500.0,
        "max_latency_ms": 9500.0,
        "runs_without_latency": 0,
    }
    assert (agent["llm_calls"], agent["llm_errors"], agent["llm_operations"]) == (8, 1, {"chat": 8})
    assert agent["models"] == {
        "gpt-4o-2024-08-06": model(1, 2300, 410, cost=0.00985),
        "gpt-4o-mini": model(1, 0, 0, errors=1, cost=0.0),  # the rate-limited call: no response, its request model
        # 1200 + 1450 + 1610 + 1790 + 1850 (the deprecated keys) + 2480 in; cached 1024 + 1024 + 1536 + 2048
        "gpt-4o-mini-2024-07-18": model(6, 10380, 507, cached=5632, cost=0.0014388),
    }
    assert (agent["tokens_in"], agent["tokens_out"], agent["tokens_cached"], agent["tokens"]) == (12680, 917, 5632, 13597)
    assert agent["cost_usd"] == 0.0112888 and agent["unpriced_models"] == []
    assert (agent["tool_calls"], agent["tool_errors"]) == (6, 1)
    assert agent["tools"] == {
        "compute_var": tool(1, 0, 480.0, 480.0, 480.0, 480.0),
        "fetch_news": tool(1, 0, 170.0, 170.0, 170.0, 170.0),
        # 180, 230 and 430 ms: the median is read from its histogram bucket (at most 1/32 above it)
        "get_quote": tool(3, 0, 280.0, 230.687, 430.0, 430.0),
        "place_order": tool(1, 1, 260.0, 260.0, 260.0, 260.0),
    }
    assert agent["consistency"]["unchecked"] == 1  # a root without alphatrace's run totals: nothing to check
    inputs = report["inputs"]
    assert (inputs["spans"], inputs["other_spans"], inputs["bad_lines"], inputs["bad_spans"]) == (17, 2, 0, 0)  # create_agent, GET
    fleet = report["fleet"]
    assert (fleet["tool_calls"], fleet["tool_errors"], fleet["llm_operations"]) == (6, 1, {"chat": 8})


def test_util_genai_shape(reader: str, tmp_path: Path) -> None:
    """util-genai: a workflow (other), a named and an unnamed invoke_agent run, chat and embeddings
    calls (input tokens only), execute_tool calls; the agent span's own usage is not an LLM call."""
    report = report_of(tmp_path, "util_genai")
    assert sorted(report["agents"]) == [UNKNOWN, "research-assistant"]
    assert runs(report["agents"]["research-assistant"]) == {
        "runs": 1,
        "errors": 0,
        "error_rate": 0.0,
        "runs_without_outcome": 1,
        "outcomes": {"ok": 1},
        "p50_latency_ms": 11850.0,
        "max_latency_ms": 11850.0,
        "runs_without_latency": 0,
    }
    unnamed = report["agents"][UNKNOWN]  # "invoke_agent" with no agent name: its run
    assert runs(unnamed) == {
        "runs": 1,
        "errors": 1,
        "error_rate": 1.0,
        "runs_without_outcome": 1,  # status ERROR: an error run
        "outcomes": {"error": 1},
        "p50_latency_ms": 3000.0,
        "max_latency_ms": 3000.0,
        "runs_without_latency": 0,
    }
    (failing,) = unnamed["failing_runs"]
    assert (failing["error_type"], failing["message"]) == ("openai.APITimeoutError", "Request timed out.")
    # the LLM and tool spans name no agent: each counts for the agent span of its trace
    named = report["agents"]["research-assistant"]
    assert named["models"] == {
        "gpt-4.1-mini-2025-04-14": model(2, 5520, 640, cached=2048, cost=0.0026176),
        "text-embedding-3-small": model(1, 320, 0),  # embeddings: input tokens only; not in the price table
    }
    assert named["llm_operations"] == {"chat": 2, "embeddings": 1}
    assert named["tools"] == {"web_search": tool(2, 1, 3300.0, 1610.613, 5000.0, 5000.0)}
    assert unnamed["models"] == {"gpt-4.1-mini": model(1, 0, 0, errors=1, cost=0.0)}  # the timed-out call of its trace
    assert (unnamed["llm_operations"], unnamed["tools"]) == ({"chat": 1}, {})
    assert (report["inputs"]["spans"], report["inputs"]["other_spans"]) == (9, 1)  # invoke_workflow
    assert (report["fleet"]["llm_calls"], report["fleet"]["tokens_in"], report["fleet"]["tokens_out"]) == (4, 5840, 640)


def test_openllmetry_shape(reader: str, tmp_path: Path) -> None:
    """OpenLLMetry: the agent decorator's span is a run named by traceloop.entity.name; chat,
    completion and embedding requests are LLM calls with the deprecated token keys; tool spans are
    tool calls; workflow, task and rerank spans are other."""
    report = report_of(tmp_path, "openllmetry")
    agent = report["agents"]["news_analyst"]
    assert runs(agent) == {
        "runs": 1,
        "errors": 0,
        "error_rate": 0.0,
        "runs_without_outcome": 1,
        "outcomes": {"ok": 1},
        "p50_latency_ms": 19700.0,
        "max_latency_ms": 19700.0,
        "runs_without_latency": 0,
    }
    assert over_agents(report, "models") == {
        "gpt-3.5-turbo-instruct": model(1, 50, 20),  # unpriced: not in the table
        "gpt-4o-2024-08-06": model(2, 2300, 305, cached=512, cost=0.00816),  # cached from gen_ai.usage.cache_read_input_tokens
        "text-embedding-3-small": model(1, 64, 0),
    }
    assert over_agents(report, "llm_operations") == {"chat": 2, "embeddings": 1, "text_completion": 1}
    assert over_agents(report, "tools") == {
        "fetch_headlines": tool(2, 1, 1600.0, 1207.96, 2000.0, 2000.0),
        "score_sentiment": tool(1, 0, 400.0, 400.0, 400.0, 400.0),
    }
    assert (report["inputs"]["spans"], report["inputs"]["other_spans"]) == (11, 3)  # workflow, task, rerank
    assert report["fleet"]["runs"] == 1


def test_openinference_shape(reader: str, tmp_path: Path) -> None:
    """OpenInference: AGENT spans are runs (named by agent.name, else by the span), LLM and
    EMBEDDING spans LLM calls with llm.token_count.*, TOOL spans tool calls (named by tool.name, else
    by the span), CHAIN and RETRIEVER spans other."""
    report = report_of(tmp_path, "openinference")
    assert runs(report["agents"]["macro_strategist"]) == {
        "runs": 1,
        "errors": 0,
        "error_rate": 0.0,
        "runs_without_outcome": 1,
        "outcomes": {"ok": 1},
        "p50_latency_ms": 14000.0,
        "max_latency_ms": 14000.0,
        "runs_without_latency": 0,
    }
    hedging = report["agents"]["hedging_agent"]
    assert runs(hedging) == {
        "runs": 1,
        "errors": 1,
        "error_rate": 1.0,
        "runs_without_outcome": 1,
        "outcomes": {"error": 1},
        "p50_latency_ms": 2500.0,
        "max_latency_ms": 2500.0,
        "runs_without_latency": 0,
    }
    assert hedging["failing_runs"][0]["message"] == "ValueError: no hedge found"
    assert over_agents(report, "models") == {
        "claude-3-5-sonnet-20241022": model(1, 2200, 300),
        "gpt-4o-mini-2024-07-18": model(1, 1500, 230, cached=1024, cost=0.0002862),
        "text-embedding-3-large": model(1, 42, 0),
    }
    assert over_agents(report, "llm_operations") == {"embeddings": 1, "llm": 2}
    assert over_agents(report, "tools") == {
        "lookup_rates": tool(2, 1, 1750.0, 503.316, 3000.0, 3000.0),
        "price_option": tool(1, 0, 250.0, 250.0, 250.0, 250.0),  # no tool.name: the span's name
    }
    assert (report["inputs"]["spans"], report["inputs"]["other_spans"]) == (10, 2)  # CHAIN, RETRIEVER


def test_all_shapes_in_one_file_add_up(reader: str, tmp_path: Path) -> None:
    """The four producers' spans in one file: each one's figures, unchanged, side by side."""
    apart = {}
    for name in genai_fixtures.FIXTURES:
        (tmp_path / name).mkdir()
        apart[name] = report_of(tmp_path / name, name)
    together = report_of(tmp_path, *genai_fixtures.FIXTURES)
    assert together["inputs"]["spans"] == sum(r["inputs"]["spans"] for r in apart.values()) == 47
    assert together["inputs"]["other_spans"] == 8
    named = {name: agent for r in apart.values() for name, agent in r["agents"].items() if name != UNKNOWN}
    assert {name: together["agents"][name] for name in named} == named
    for key in ("runs", "errors", "llm_calls", "llm_errors", "tokens_in", "tokens_out", "tokens_cached", "tool_calls", "tool_errors"):
        assert together["fleet"][key] == sum(r["fleet"][key] for r in apart.values()), key
    assert together["fleet"]["llm_operations"] == {"chat": 13, "embeddings": 3, "llm": 2, "text_completion": 1}


def test_pages_show_tools_and_operations(tmp_path: Path) -> None:
    from meta_supervisor.render.html import render_html
    from meta_supervisor.render.markdown import render_markdown

    report = report_of(tmp_path, *genai_fixtures.FIXTURES)
    markdown = render_markdown(report)
    assert "### Tool calls" in markdown and "- 14 tool calls, 4 failed" in markdown
    assert "| portfolio-planner | get\\_quote | 3 | 0 | 0.0% | 230.7 | 430.0 | 430.0 |" in markdown
    assert "| portfolio-planner | place\\_order | 1 | 1 | 100.0% | 260.0 | 260.0 | 260.0 |" in markdown
    assert "| 4 (chat 2, embeddings 1, text\\_completion 1) |" in markdown  # news_analyst's, from its trace
    assert "| portfolio-planner | 1 | 0 | 0.0% | 9,500.0 | 9,500.0 | 9,500.0 | 9,500.0 | 8 |" in markdown
    page = render_html(report)
    assert "<b>14 (4 failed)</b><span>tool calls</span>" in page
    assert "<h3>Tool calls</h3>" in page and "<td>get_quote</td>" in page
    assert "<td>lookup_rates</td><td class=n>2</td><td class=n>1</td><td class=n>50.0%</td>" in page


def _reversed_lines(folder: Path, *names: str) -> Path:
    """The fixtures' spans one per line, in the opposite order: every root before its children."""
    path = genai_fixtures.write(folder, *names)
    documents = [json.loads(line) for line in path.read_text().splitlines()]
    single = []
    for document in documents:
        for resource_spans in document["resourceSpans"]:
            for scope in resource_spans["scopeSpans"]:
                for span in scope["spans"]:
                    single.append({"resourceSpans": [{**resource_spans, "scopeSpans": [{**scope, "spans": [span]}]}]})
    path.write_text("".join(json.dumps(d) + "\n" for d in reversed(single)))
    return path


ATTRIBUTED = {  # agent -> (LLM calls by operation, tools) of the fixtures' children, which name no agent
    "research-assistant": ({"chat": 2, "embeddings": 1}, {"web_search"}),
    UNKNOWN: ({"chat": 1}, set()),  # util-genai's invoke_agent without a name: its own trace's call
    "news_analyst": ({"chat": 2, "embeddings": 1, "text_completion": 1}, {"fetch_headlines", "score_sentiment"}),
    "macro_strategist": ({"embeddings": 1, "llm": 2}, {"lookup_rates"}),
    "hedging_agent": ({}, {"price_option"}),
}


@pytest.mark.parametrize("order", ["as written", "roots first"])
def test_children_without_an_agent_name_count_for_their_runs_agent(reader: str, tmp_path: Path, order: str) -> None:
    """util-genai, OpenLLMetry and OpenInference write no gen_ai.agent.name on LLM and tool spans: each
    counts for the agent span of its run (its trace), whether it comes before its root (as the SDKs
    export) or after it (tail sampling, a re-sorted file); nothing is left waiting."""
    names = ("util_genai", "openllmetry", "openinference")
    if order == "as written":
        path = genai_fixtures.write(tmp_path, *names)
    else:
        path = _reversed_lines(tmp_path, *names)
    data, _ = build_inputs(BuildOptions(inputs=[str(path)], prices=PRICES, workers=1))
    report = build_report(data, PRICES, KillSwitchState(path="killed.json"), NOW)
    got = {name: (agent["llm_operations"], set(agent["tools"])) for name, agent in report["agents"].items()}
    assert got == ATTRIBUTED
    assert report["fleet"]["consistency"]["orphan_llm_spans"] == 0 and data.pending == {}


def test_children_whose_agent_span_never_comes_count_for_the_unknown_agent(reader: str, tmp_path: Path) -> None:
    """The same children without their agent spans: they wait for a root; in the report they count for
    "(unknown agent)" (their calls and tools), as orphans, and the open runs stay in the state for a
    later build, where the root's arrival moves them to its agent."""
    path = _reversed_lines(tmp_path, "openllmetry")  # one span a line
    lines = path.read_text().splitlines()
    roots = [line for line in lines if '"news_analyst.agent"' in line]
    assert len(roots) == 1
    path.write_text("".join(line + "\n" for line in lines if line not in roots))
    state = tmp_path / "state"
    data, _ = build_inputs(BuildOptions(inputs=[str(path)], prices=PRICES, workers=1, state_dir=state))
    report = build_report(data, PRICES, KillSwitchState(path="killed.json"), NOW)
    unknown = report["agents"][UNKNOWN]
    assert unknown["llm_operations"] == {"chat": 2, "embeddings": 1, "text_completion": 1}
    assert set(unknown["tools"]) == {"fetch_headlines", "score_sentiment"}
    assert unknown["consistency"]["orphan_llm_spans"] == 4 and report["fleet"]["runs"] == 0
    # the agent span arrives: an incremental build attributes everything to it
    with path.open("a") as out:
        out.write(roots[0] + "\n")
    data, stats = build_inputs(BuildOptions(inputs=[str(path)], prices=PRICES, workers=1, state_dir=state))
    assert stats.mode == "incremental"
    report = build_report(data, PRICES, KillSwitchState(path="killed.json"), NOW)
    assert UNKNOWN not in report["agents"]
    agent = report["agents"]["news_analyst"]
    assert agent["llm_operations"] == {"chat": 2, "embeddings": 1, "text_completion": 1}
    assert set(agent["tools"]) == {"fetch_headlines", "score_sentiment"} and agent["consistency"]["orphan_llm_spans"] == 0


def test_several_agent_spans_in_one_trace_are_several_runs(reader: str, tmp_path: Path) -> None:
    """Another instrumentation's multi-agent trace (no agent.run_id): each agent span is a run, none a
    duplicate root; calls naming no agent count for the first agent span read."""
    path = genai_fixtures.write(tmp_path, "openinference")
    text = path.read_text().replace("7d3c5e9a0b1f42c6a8e7d6c5b4a39282", "7d3c5e9a0b1f42c6a8e7d6c5b4a39281")
    assert text != path.read_text()
    path.write_text(text)
    data, _ = build_inputs(BuildOptions(inputs=[str(path)], prices=PRICES, workers=1))
    report = build_report(data, PRICES, KillSwitchState(path="killed.json"), NOW)
    assert report["fleet"]["runs"] == 2 and report["inputs"]["duplicate_run_roots"] == 0
    assert {name: agent["runs"] for name, agent in report["agents"].items()} == {"hedging_agent": 1, "macro_strategist": 1}
    assert report["fleet"]["tool_calls"] == 3 and report["fleet"]["llm_calls"] == 3
