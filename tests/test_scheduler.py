"""The fleet on APScheduler: replay and live cycles, the kill switch before every run, concurrency
that never mixes runs up, and one bad agent stopping nothing."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import httpx2
import pytest

import scheduler
from otel import semconv
from services.fleet_config import AgentSpec
from services.simulated_llm import SimulatedLLMTransport
from tests.fleet_fixtures import build_test_fleet, root_spans

PROJECT_ROOT = Path(scheduler.__file__).resolve().parent


def test_replay_from_the_command_line_writes_every_run_to_the_trace_file(world, monkeypatch):
    trace_file = world["tmp"] / "telemetry" / "traces.jsonl"
    monkeypatch.setenv("ALPHATRACE_TRACE_FILE", str(trace_file))

    assert scheduler.main(["--replay", "--config", str(world["config"])]) == 0

    spans = []
    resources = []
    for line in trace_file.read_text().splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            resources.append({a["key"]: a["value"] for a in rs["resource"]["attributes"]})
            for ss in rs["scopeSpans"]:
                spans.extend(ss["spans"])
    attrs = [{a["key"]: next(iter(a["value"].values())) for a in s.get("attributes", [])} for s in spans]
    roots = [a for a in attrs if a.get("gen_ai.operation.name") == "invoke_agent"]
    chats = [(s, a) for s, a in zip(spans, attrs) if a.get("gen_ai.operation.name") == "chat"]
    assert Counter(a["gen_ai.agent.name"] for a in roots) == {"momentum": 3, "mean_reversion": 3, "llm_analyst": 3, "ensemble": 3}
    expected_days = {d.isoformat() for d in world["calendar"][70:73]}
    assert {a[semconv.AGENT_RUN_AS_OF] for a in roots} == expected_days
    assert all(a[semconv.AGENT_RUN_OUTCOME] == "ok" for a in roots)
    assert len(chats) == 3  # llm_analyst only, one call per run: the ensemble combines recorded signals
    span_by_id = {s["spanId"]: (s, a) for s, a in zip(spans, attrs)}
    for chat, chat_attrs in chats:
        _parent, parent_attrs = span_by_id[chat["parentSpanId"]]
        assert parent_attrs[semconv.AGENT_RUN_ID] == chat_attrs[semconv.AGENT_RUN_ID]
        assert parent_attrs[semconv.RUN_LLM_CALLS] == "1"
    assert all(r["alphatrace.llm.simulated"] == {"boolValue": True} for r in resources)
    assert all(r["service.name"] == {"stringValue": "alphatrace"} for r in resources)
    events = [e for s in spans for e in s.get("events", [])]
    assert Counter(e["name"] for e in events) == {semconv.EVENT_ALPHA_SIGNAL: 24}  # 4 agents x 2 symbols x 3 days


def test_killed_agent_gets_a_killed_root_span_and_makes_no_llm_call(world, telemetry, span_exporter):
    world["kill_file"].write_text(json.dumps({"llm_analyst": {"reason": "too expensive", "by": "alice", "at": ""}}))
    transport = SimulatedLLMTransport()
    fleet = build_test_fleet(world, telemetry, transport)
    fleet.run_cycle(world["calendar"][70])
    fleet.shutdown()
    roots = {s.attributes["gen_ai.agent.name"]: s for s in root_spans(span_exporter)}
    killed = roots["llm_analyst"]
    assert killed.attributes[semconv.AGENT_RUN_OUTCOME] == "killed"
    assert killed.attributes[semconv.KILL_REASON] == "too expensive"
    assert [s for s in span_exporter.get_finished_spans() if s.parent and s.parent.span_id == killed.context.span_id] == []
    assert transport.requests == 0  # killing the analyst stops all LLM spend (the ensemble calls no model)
    assert roots["momentum"].attributes[semconv.AGENT_RUN_OUTCOME] == "ok"


@pytest.mark.parametrize(
    ("bad_edit", "message"),
    [('["momentum", ', "not valid JSON"), ("", "is empty"), (" \n", "is empty"), ('["momentum"]' + " " * (1 << 20), "byte limit")],
    ids=["half-saved", "empty", "whitespace", "oversized"],
)  # a half-saved edit; a truncated one (issue 12: empty revived everyone); one over the size cap
def test_kill_switch_edit_applies_to_the_next_cycle_and_a_bad_edit_is_on_the_span(world, telemetry, span_exporter, bad_edit, message):
    fleet = build_test_fleet(world, telemetry)
    fleet.run_cycle(world["calendar"][70])
    world["kill_file"].write_text('["momentum"]')
    fleet.run_cycle(world["calendar"][71])
    world["kill_file"].write_text(bad_edit)
    fleet.run_cycle(world["calendar"][72])
    fleet.shutdown()
    momentum = [s for s in root_spans(span_exporter) if s.attributes["gen_ai.agent.name"] == "momentum"]
    momentum.sort(key=lambda s: s.attributes[semconv.AGENT_RUN_AS_OF])
    assert [s.attributes[semconv.AGENT_RUN_OUTCOME] for s in momentum] == ["ok", "killed", "killed"]
    (event,) = momentum[2].events
    assert event.name == semconv.EVENT_KILL_SWITCH_ERROR and message in event.attributes[semconv.KILL_SWITCH_ERROR_MESSAGE]


class _Boom:
    name = "boom"

    def run(self, context):
        raise RuntimeError("bad data")


def test_one_failing_agent_stops_nothing(world, telemetry, span_exporter, caplog):
    fleet = build_test_fleet(world, telemetry, agents={"boom": _Boom()})
    fleet.fleet.agents["boom"] = AgentSpec("boom", "tests", 0.05)
    fleet.run_cycle(world["calendar"][70])
    fleet.run_cycle(world["calendar"][71])
    fleet.shutdown()
    outcomes = Counter((s.attributes["gen_ai.agent.name"], s.attributes[semconv.AGENT_RUN_OUTCOME]) for s in root_spans(span_exporter))
    assert outcomes[("boom", "error")] == 2
    assert outcomes[("momentum", "ok")] == 2 and outcomes[("ensemble", "ok")] == 2
    assert "agent boom failed; its schedule goes on" in caplog.text


class _RendezvousTransport(SimulatedLLMTransport):
    """The simulated model, answering only once all ``parties`` requests are in flight together."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self._barrier = threading.Barrier(parties, timeout=30)

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        self._barrier.wait()
        return super().handle_request(request)


def test_twenty_concurrent_runs_each_own_their_llm_span(world, telemetry, span_exporter):
    from agents.llm_analyst import Agent as Analyst

    names = [f"analyst_{i:02d}" for i in range(20)]
    fleet = build_test_fleet(world, telemetry, _RendezvousTransport(20), max_workers=20)
    fleet.agents.clear()
    for name in names:
        agent = Analyst()
        agent.name = name
        fleet.agents[name] = agent
        fleet.fleet.agents[name] = AgentSpec(name, "agents.llm_analyst", 1.0)
    fleet.run_cycle(world["calendar"][70])
    fleet.shutdown()

    spans = span_exporter.get_finished_spans()
    roots = {s.context.span_id: s for s in spans if s.name.startswith("invoke_agent")}
    chats = [s for s in spans if s.name.startswith("chat")]
    assert len(roots) == 20 and len(chats) == 20
    for chat in chats:
        root = roots[chat.parent.span_id]
        assert chat.context.trace_id == root.context.trace_id
        assert chat.attributes[semconv.AGENT_RUN_ID] == root.attributes[semconv.AGENT_RUN_ID]
        assert chat.attributes["gen_ai.agent.name"] == root.attributes["gen_ai.agent.name"]
    starts = sorted(s.start_time for s in roots.values())
    ends = sorted(s.end_time for s in roots.values())
    assert starts[-1] < ends[0]  # the rendezvous held all twenty runs in flight together


def test_live_mode_runs_each_agent_on_its_interval_until_the_bound(world, telemetry, span_exporter):
    fleet = build_test_fleet(world, telemetry)
    fleet.start(stop_after=2)
    assert fleet.all_done.wait(30)
    fleet.shutdown()
    counts = Counter(s.attributes["gen_ai.agent.name"] for s in root_spans(span_exporter))
    assert all(counts[name] >= 2 for name in ("momentum", "mean_reversion", "llm_analyst", "ensemble"))


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("kill", "kill-switch file"),
        ("openai", "OPENAI_API_KEY is not set"),
        ("exporter", "OTEL_TRACES_EXPORTER='jaeger' is not supported"),
        ("config", "not valid TOML"),
        ("fifo", "is a FIFO (named pipe), not a regular file"),
    ],
)
def test_bad_configuration_stops_start_up_with_exit_2(world, monkeypatch, capsys, setup, message):
    config = world["config"]
    if setup == "kill":
        world["kill_file"].write_text("{broken")
    elif setup == "openai":
        monkeypatch.setenv("ALPHATRACE_LLM_PROVIDER", "openai")
    elif setup == "exporter":
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaeger")
    elif setup == "fifo":  # a trace file nobody drains would stall the exporter
        os.mkfifo(world["tmp"] / "traces.jsonl")
        monkeypatch.setenv("ALPHATRACE_TRACE_FILE", str(world["tmp"] / "traces.jsonl"))
    else:
        config.write_text("[fleet\nuniverse=")
    assert scheduler.main(["--once", "--config", str(config)]) == 2
    assert message in capsys.readouterr().err


def test_the_kill_reason_and_a_configuration_error_reach_the_terminal_escaped(world, telemetry, monkeypatch, caplog, capsys):
    # The kill file is a person's edit: an ANSI escape or a newline in its reason must not recolour the
    # terminal or forge a second log line (issue 12, item 8).
    world["kill_file"].write_text(json.dumps({"llm_analyst": {"reason": "cost\x1b[2J\nINFO forged line", "by": "a", "at": ""}}))
    fleet = build_test_fleet(world, telemetry, SimulatedLLMTransport())
    with caplog.at_level("WARNING", logger="scheduler"):
        fleet.run_cycle(world["calendar"][70])
    fleet.shutdown()
    [line] = [r.getMessage() for r in caplog.records if "disabled by kill-switch" in r.getMessage()]
    assert "\x1b" not in line and "\n" not in line
    assert "cost\\x1b[2J\\nINFO forged line" in line

    world["kill_file"].write_text('{"llm_analyst": \x1b[31m')
    assert scheduler.main(["--once", "--config", str(world["config"])]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and err.count("\n") == 1


# --- issue 15: mistakes stop start-up with one line (exit 2), before any agent runs ----------------


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err  # one line naming the setting, the value and the fix; no traceback
    assert lines[0].startswith("alphatrace: configuration error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda t: t.replace('["SPX", "WTI"]', '["SPX", "WTI", "SPY"]'),
            ["fleet.universe lists 'SPY'", "no SPY.csv", "did you mean 'SPX'?"],
        ),
        (
            lambda t: t.replace("[agents.momentum]\ninterval_seconds", "[agents.momentum]\nintervall_seconds"),
            ["[agents.momentum]", "unknown key 'intervall_seconds'", "did you mean 'interval_seconds'?"],
        ),
        (lambda t: t + "\n[flet]\nmax_workers = 2\n", ["unknown table 'flet'", "did you mean 'fleet'?"]),
        (
            lambda t: t.replace("[agents.momentum]\n", "[agents.momentum]\nparams = { horizn = 5 }\n"),
            ["agents.momentum.params", "unknown parameter 'horizn'", "did you mean 'horizon'?"],
        ),
        (
            lambda t: t.replace("[agents.momentum]\n", "[agents.momentum]\nparams = { horizon = 0 }\n"),
            ["agents.momentum.params.horizon = 0", ">= 1"],
        ),
        (
            lambda t: t.replace("[agents.ensemble]\n", "[agents.ensemble]\nparams = { weights = { momentun = 0.5 } }\n"),
            ["agents.ensemble.params", "unknown agent 'momentun'", "did you mean 'momentum'?"],
        ),
    ],
    ids=["universe-symbol-without-data", "interval-typo", "unknown-table", "unknown-param", "param-out-of-range", "ensemble-weight-typo"],
)
def test_a_config_mistake_stops_start_up_with_one_line_before_any_run(world, monkeypatch, capsys, edit, expected):
    trace_file = world["tmp"] / "traces.jsonl"
    monkeypatch.setenv("ALPHATRACE_TRACE_FILE", str(trace_file))
    config = world["config"]
    config.write_text(edit(config.read_text()))
    assert scheduler.main(["--once", "--config", str(config)]) == 2
    line = _one_line_error(capsys)
    assert str(config) in line
    for text in expected:
        assert text in line
    assert not trace_file.exists()  # nothing ran


def test_an_empty_market_data_folder_stops_start_up(world, monkeypatch, capsys):
    empty = world["tmp"] / "empty"
    empty.mkdir()
    monkeypatch.setenv("ALPHATRACE_MARKET_DATA", str(empty))
    assert scheduler.main(["--once", "--config", str(world["config"])]) == 2
    line = _one_line_error(capsys)
    assert f"ALPHATRACE_MARKET_DATA={empty} has no <SYMBOL>.csv files" in line and "unset it" in line


def test_a_malformed_market_data_file_stops_start_up_not_every_run(world, monkeypatch, capsys):
    monkeypatch.setenv("ALPHATRACE_TRACE_FILE", str(world["tmp"] / "traces.jsonl"))
    wti = world["tmp"] / "data" / "WTI.csv"
    wti.write_text(wti.read_text().replace(",,,,", ",,,,oops", 1))
    assert scheduler.main(["--once", "--config", str(world["config"])]) == 2
    assert f"{wti}:2: bad date or close" in _one_line_error(capsys)
    assert not (world["tmp"] / "traces.jsonl").exists()


def test_a_trace_file_that_cannot_be_written_stops_start_up(world, monkeypatch, capsys):
    blocker = world["tmp"] / "blocker"
    blocker.write_text("a file where the folder should be")
    monkeypatch.setenv("ALPHATRACE_TRACE_FILE", str(blocker / "telemetry" / "traces.jsonl"))
    assert scheduler.main(["--once", "--config", str(world["config"])]) == 2
    line = _one_line_error(capsys)
    assert f"trace file {blocker}/telemetry/traces.jsonl cannot be written" in line and "set ALPHATRACE_TRACE_FILE" in line


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--once", "--start", "2018-04-02"], "--start 2018-04-02 applies only to a replay; add --replay"),
        (["--once", "--days", "5"], "--days 5 applies only to a replay; add --replay"),
        (["--replay", "--days", "0"], "--days 0: must be at least 1"),
        (["--cycles", "0"], "--cycles 0: must be at least 1"),
    ],
)
def test_replay_options_without_replay_or_zero_days_stop_start_up(world, monkeypatch, capsys, argv, expected):
    trace_file = world["tmp"] / "traces.jsonl"
    monkeypatch.setenv("ALPHATRACE_TRACE_FILE", str(trace_file))
    assert scheduler.main([*argv, "--config", str(world["config"])]) == 2
    assert expected in _one_line_error(capsys)
    assert not trace_file.exists()


def test_a_bad_log_level_is_one_line_and_exit_2_not_a_traceback(world):
    # A subprocess: in-process, pytest's own log handlers make logging.basicConfig skip the level.
    env = {**os.environ, "ALPHATRACE_LOG_LEVEL": "LOUD", "ALPHATRACE_TRACE_FILE": str(world["tmp"] / "traces.jsonl")}
    proc = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "scheduler.py"), "--once", "--config", str(world["config"])],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=world["tmp"],
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "alphatrace: configuration error: ALPHATRACE_LOG_LEVEL='LOUD' is not a log level; "
        "use one of DEBUG, INFO, WARNING, ERROR, CRITICAL or unset it (INFO)"
    ]


def test_cycles_says_at_start_how_long_the_run_will_take(world, monkeypatch, caplog):
    monkeypatch.setenv("ALPHATRACE_TRACE_FILE", str(world["tmp"] / "traces.jsonl"))
    config = world["config"]
    config.write_text(config.read_text().replace("[agents.ensemble]\ninterval_seconds = 0.05", "[agents.ensemble]\ninterval_seconds = 0.5"))
    caplog.set_level(logging.INFO, logger="alphatrace.scheduler")
    assert scheduler.main(["--cycles", "3", "--config", str(config)]) == 0
    lines = [r.getMessage() for r in caplog.records if "--cycles" in r.getMessage()]
    assert lines == [
        "--cycles 3: every agent runs 3 time(s), the first now, then once per interval_seconds; that takes "
        "about 1 s (the slowest, ensemble, runs every 0.5 s)"
    ]
