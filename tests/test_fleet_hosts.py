"""The fleet on several hosts, on loopback: three scheduler shards, each with its agent-mode
collector routing by trace id to two gateway collectors, each gateway writing its own trace file.
The report over both gateways' files equals what the shards ran; a run never straddles two gateways;
a gateway SIGKILLed and restarted loses no run; a shard killed mid-way stops only its own agents."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests import stack

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parent.parent
WAIT = 180.0  # generous: five collectors and three schedulers on a loaded 2-core machine
SHARDS = {"east": ("momentum", "mean_reversion", "llm_analyst", "ensemble"), "west": ("solo",), "north": ("solo_too",)}


@pytest.fixture
def sharded_config(world):
    """The test fleet split in three shards: the ensemble with its members, two single agents."""
    text = world["config"].read_text()
    for agent in SHARDS["east"]:
        text = text.replace(f"[agents.{agent}]\n", f'[agents.{agent}]\nshard = "east"\n')
    text += '\n[agents.solo]\nmodule = "agents.momentum"\ninterval_seconds = 0.05\nshard = "west"\n'
    text += '\n[agents.solo_too]\nmodule = "agents.mean_reversion"\ninterval_seconds = 0.05\nshard = "north"\n'
    world["config"].write_text(text)
    return world["config"]


def _spans_by_file(files: list[Path]) -> dict[Path, list[tuple[dict, dict]]]:
    """(span, resource attributes) per file, complete lines only."""
    out = {}
    for path in files:
        spans = []
        for line in stack.complete_lines(path):
            for rs in json.loads(line).get("resourceSpans", []):
                resource = {a["key"]: next(iter(a["value"].values())) for a in rs["resource"].get("attributes", [])}
                spans += [(span, resource) for ss in rs.get("scopeSpans", []) for span in ss.get("spans", [])]
        out[path] = spans
    return out


def _run_ids(fleet: stack.MultiHost, agents=None) -> set[str]:
    """Distinct root spans (runs) that reached any gateway, of ``agents`` (default: every agent)."""
    return {
        span["spanId"]
        for spans in _spans_by_file(fleet.trace_files()).values()
        for span, _ in spans
        if span["name"].startswith("invoke_agent ") and (agents is None or span["name"].removeprefix("invoke_agent ") in agents)
    }


def _wait_for_runs(fleet: stack.MultiHost, expected: int, agents=None) -> None:
    deadline = time.monotonic() + WAIT
    while len(_run_ids(fleet, agents)) < expected:
        if time.monotonic() > deadline:
            arrived = len(_run_ids(fleet, agents))
            raise AssertionError(f"{arrived} of {expected} runs reached the gateways in {WAIT:.0f}s\n{fleet.log_tails()}")
        time.sleep(0.5)


def _finish(fleet: stack.MultiHost, shard: str, process: subprocess.Popen) -> None:
    try:
        code = process.wait(timeout=WAIT)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"shard {shard} did not finish in {WAIT:.0f}s\n{fleet.shard_log(shard)}") from None
    assert code == 0, fleet.shard_log(shard)


def _report(files: list[Path], out: Path) -> dict:
    args = [sys.executable, "meta_supervisor/build_meta_report.py", "--out", str(out), "--no-state", "--quiet", "--format", "json"]
    for path in files:
        args += ["--input", str(path)]
    done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads((out / "meta_report.json").read_text())


def test_the_report_over_every_gateway_equals_what_the_shards_ran(built, sharded_config, tmp_path):
    days = 5
    with stack.MultiHost(tmp_path / "fleet", SHARDS) as fleet:
        running = {shard: fleet.start_shard(shard, ["--replay", "--days", str(days), "--config", str(sharded_config)]) for shard in SHARDS}
        for shard, process in running.items():
            _finish(fleet, shard, process)
        agents = [agent for members in SHARDS.values() for agent in members]
        _wait_for_runs(fleet, days * len(agents))
        by_file = _spans_by_file(fleet.trace_files())
        report = _report(fleet.trace_files(), tmp_path / "out")

    assert {name: agent["runs"] for name, agent in report["agents"].items()} == dict.fromkeys(agents, days)
    assert all(agent["consistency"]["mismatched"] == 0 for agent in report["agents"].values())
    # the report's per-host figures: each shard (one process) ran its own agents' runs
    assert {row["shard"]: (row["processes"], row["runs"]) for row in report["hosts"]} == {
        shard: (1, days * len(members)) for shard, members in SHARDS.items()
    }
    # Each gateway wrote its own file, and a trace (a run with its LLM spans) sits in one of them.
    traces_per_gateway = []
    for gateway in fleet.gateways:
        traces_per_gateway.append({span["traceId"] for path in gateway.trace_files() for span, _ in by_file[path]})
    assert all(traces_per_gateway) and not set.intersection(*traces_per_gateway)
    # Each shard's spans say which shard and which process (service.instance.id) wrote them.
    shard_of_agent = {agent: shard for shard, members in SHARDS.items() for agent in members}
    instance_of_shard: dict[str, set] = {}
    for spans in by_file.values():
        for span, resource in spans:
            if span["name"].startswith("invoke_agent "):
                agent = span["name"].removeprefix("invoke_agent ")
                assert resource["alphatrace.shard"] == shard_of_agent[agent]
                instance_of_shard.setdefault(resource["alphatrace.shard"], set()).add(resource["service.instance.id"])
    assert all(len(ids) == 1 for ids in instance_of_shard.values()) and len(set.union(*instance_of_shard.values())) == 3


def _exported(fleet: stack.MultiHost, shard: str) -> int:
    """How many spans the shard's SDK handed to its agent collector (its closing log line)."""
    found = re.search(r"(\d+) spans ended, (\d+) exported, 0 failed", fleet.shard_log(shard))
    assert found, fleet.shard_log(shard)
    return int(found.group(2))


def _span_ids(fleet: stack.MultiHost) -> set[str]:
    return {span["spanId"] for spans in _spans_by_file(fleet.trace_files()).values() for span, _ in spans}


def test_a_gateway_killed_and_restarted_loses_no_span_its_agent_collector_accepted(built, sharded_config, tmp_path):
    with stack.MultiHost(tmp_path / "fleet", {"east": SHARDS["east"]}) as fleet:
        # live runs every 0.05 s, exported every 0.2 s: the gateway dies while spans keep coming (the
        # test's market data ends years ago: live runs use its last bar instead of refusing stale data)
        argv = ["--cycles", "100", "--config", str(sharded_config)]
        process = fleet.start_shard("east", argv, env={"OTEL_BSP_SCHEDULE_DELAY": "200", "ALPHATRACE_ON_STALE": "last_bar"})
        victim = fleet.gateways[1]
        deadline = time.monotonic() + WAIT
        while not victim.trace_lines():  # the gateway has taken part before it dies
            assert time.monotonic() < deadline and process.poll() is None, fleet.shard_log("east")
            time.sleep(0.05)
        assert victim.kill_collector() == -signal.SIGKILL
        time.sleep(2.0)  # runs go on meanwhile; the traces routed to this gateway wait in the agent's queue
        still_running = process.poll() is None
        victim.start_collector()
        _finish(fleet, "east", process)
        exported = _exported(fleet, "east")
        deadline = time.monotonic() + WAIT
        while len(_span_ids(fleet)) < exported:
            assert time.monotonic() < deadline, f"{len(_span_ids(fleet))} of {exported} spans\n{fleet.log_tails()}"
            time.sleep(0.5)
        report = _report(fleet.trace_files(), tmp_path / "out")
    assert still_running  # the kill happened while the shard was exporting
    assert len(_span_ids(fleet)) == exported
    assert {name: agent["runs"] for name, agent in report["agents"].items()} == dict.fromkeys(SHARDS["east"], 100)
    # every LLM span of every run arrived (the run totals match their spans)
    assert all(agent["consistency"]["mismatched"] == 0 for agent in report["agents"].values())
    assert report["agents"]["llm_analyst"]["llm_calls"] == 100


def test_a_shard_killed_mid_way_leaves_the_other_shards_schedule_untouched(built, sharded_config, tmp_path):
    days = 8
    with stack.MultiHost(tmp_path / "fleet", {"east": SHARDS["east"], "west": SHARDS["west"]}) as fleet:
        argv = ["--replay", "--days", str(days), "--config", str(sharded_config)]
        east = fleet.start_shard("east", argv)
        # live runs every 0.05 s with no end (the test's data is old: the last bar's date), killed below
        live = {"OTEL_BSP_SCHEDULE_DELAY": "200", "ALPHATRACE_ON_STALE": "last_bar"}
        west = fleet.start_shard("west", ["--cycles", "1000000", "--config", str(sharded_config)], env=live)
        deadline = time.monotonic() + WAIT
        while not any(span["name"] == "invoke_agent solo" for spans in _spans_by_file(fleet.trace_files()).values() for span, _ in spans):
            assert time.monotonic() < deadline and west.poll() is None, fleet.shard_log("west")
            time.sleep(0.2)
        west.send_signal(signal.SIGKILL)
        assert west.wait(timeout=WAIT) == -signal.SIGKILL
        _finish(fleet, "east", east)
        _wait_for_runs(fleet, days * len(SHARDS["east"]), SHARDS["east"])  # the killed shard's runs are not awaited
        report = _report(fleet.trace_files(), tmp_path / "out")
    runs = {name: agent["runs"] for name, agent in report["agents"].items()}
    assert {name: runs[name] for name in SHARDS["east"]} == dict.fromkeys(SHARDS["east"], days)
    assert 1 <= runs["solo"] < 1000000
    assert Counter(agent["consistency"]["mismatched"] for agent in report["agents"].values()) == {0: len(runs)}
