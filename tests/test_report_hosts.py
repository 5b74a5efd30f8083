"""Per-host figures (issue 18): spans from several scheduler processes on several hosts, in one file,
give one row per host and shard (runs, errors, LLM calls, spans, cost, telemetry losses), the same
from the Python reader and the native core, exact when the file is read in parallel parts, and
bounded: processes past the cap fold into "(other)"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import scheduler
from meta_supervisor import native_core
from meta_supervisor.assemble.report import KillSwitchState, build_report
from meta_supervisor.build.dispatch import build_inputs
from meta_supervisor.build.options import BuildOptions
from meta_supervisor.render.html import render_html
from meta_supervisor.render.markdown import render_markdown
from meta_supervisor.tally import aggregates
from otel import semconv
from tests.conftest import count_merges_of
from tests.test_genai_shapes import NOW, PRICES

SHARDS = {"east": ("momentum", "mean_reversion", "llm_analyst", "ensemble"), "west": ("solo",)}
DAYS = 3
RUN_COST = 0.125  # USD, on host-b's runs


@pytest.fixture(params=["off", "on"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(native_core.ENV, request.param)
    return request.param


def _as_host(path: Path, host: str, instance: str, run_cost: float | None = None) -> list[str]:
    """The file's lines as written by a process ``instance`` on ``host`` (its resource says so);
    with ``run_cost``, every run says it cost that (the simulated model's runs cost $0)."""
    out = []
    for line in path.read_text().splitlines():
        request = json.loads(line)
        for resource_spans in request["resourceSpans"]:
            for kv in resource_spans["resource"]["attributes"]:
                if kv["key"] == semconv.HOST_NAME:
                    kv["value"] = {"stringValue": host}
                elif kv["key"] == semconv.SERVICE_INSTANCE_ID:
                    kv["value"] = {"stringValue": instance}
            for span in (span for scope in resource_spans["scopeSpans"] for span in scope["spans"]):
                for kv in span["attributes"] if run_cost is not None else ():
                    if kv["key"] == semconv.RUN_COST_USD:
                        kv["value"] = {"doubleValue": run_cost}
        out.append(json.dumps(request, separators=(",", ":")))
    return out


@pytest.fixture
def three_hosts(world, monkeypatch) -> Path:
    """One file holding three processes' spans: shard east on host-a, shard west on host-b and
    (a restart elsewhere) on host-c; the replays run here, their resources renamed per host."""
    text = world["config"].read_text()
    for agent in SHARDS["east"]:
        text = text.replace(f"[agents.{agent}]\n", f'[agents.{agent}]\nshard = "east"\n')
    world["config"].write_text(text + '\n[agents.solo]\nmodule = "agents.momentum"\ninterval_seconds = 0.05\nshard = "west"\n')
    lines = []
    for shard, host, start in (("east", "host-a", 0), ("west", "host-b", 0), ("west", "host-c", DAYS)):
        path = world["tmp"] / f"{shard}-{host}.jsonl"
        monkeypatch.setenv("ALPHATRACE_TRACE_FILE", str(path))
        argv = ["--replay", "--days", str(DAYS), "--start", world["calendar"][60 + start].isoformat()]
        assert scheduler.main([*argv, "--config", str(world["config"]), "--shard", shard]) == 0
        lines += _as_host(path, host, f"instance-{host}", RUN_COST if host == "host-b" else None)
    fleet = world["tmp"] / "fleet.jsonl"
    fleet.write_text("\n".join(lines) + "\n")
    return fleet


def _report(path: Path, **options) -> dict:
    data, _ = build_inputs(BuildOptions(inputs=[str(path)], prices=PRICES, **{"workers": 1, **options}))
    return build_report(data, PRICES, KillSwitchState(path="killed.json"), NOW)


def test_each_host_and_shard_gets_its_runs_calls_spans_and_cost(reader, three_hosts):
    report = _report(three_hosts)
    rows = {(row["host"], row["shard"]): row for row in report["hosts"]}
    assert list(rows) == [("host-a", "east"), ("host-b", "west"), ("host-c", "west")]  # the most runs first
    runs = {("host-a", "east"): 4 * DAYS, ("host-b", "west"): DAYS, ("host-c", "west"): DAYS}
    assert {key: row["runs"] for key, row in rows.items()} == runs
    assert all(row["processes"] == 1 and row["errors"] == 0 for row in rows.values())
    # the LLM calls are llm_analyst's, on east; the hosts' spans and calls add up to the fleet's
    assert rows[("host-a", "east")]["llm_calls"] == report["agents"]["llm_analyst"]["llm_calls"] == DAYS
    assert rows[("host-b", "west")]["llm_calls"] == rows[("host-c", "west")]["llm_calls"] == 0
    assert sum(row["spans"] for row in rows.values()) == report["inputs"]["spans"]
    assert sum(row["runs"] for row in rows.values()) == sum(agent["runs"] for agent in report["agents"].values())
    assert all(row["spans_dropped"] == row["spans_export_failed"] == 0 for row in rows.values())
    # the cost the runs recorded: host-b's, none elsewhere (the simulated model costs $0)
    assert {key: row["cost_usd"] for key, row in rows.items()} == {**dict.fromkeys(runs, 0.0), ("host-b", "west"): RUN_COST * DAYS}
    markdown = render_markdown(report)
    assert "## Hosts" in markdown and "| host-a | east |" in markdown
    page = render_html(report)
    assert "<h2>Hosts</h2>" in page and "<td>host-a</td><td>east</td><td class=n>1</td>" in page


def test_both_readers_and_parallel_parts_give_the_same_rows(three_hosts, monkeypatch):
    monkeypatch.setenv(native_core.ENV, "off")
    python = _report(three_hosts)["hosts"]
    monkeypatch.setenv(native_core.ENV, "on")
    assert _report(three_hosts)["hosts"] == python
    merges = count_merges_of(monkeypatch)
    monkeypatch.setenv(native_core.ENV, "off")
    assert _report(three_hosts, workers=2)["hosts"] == python
    assert merges and all(merges)  # the parts were merged, not read again in order


def test_processes_past_the_cap_fold_into_other(three_hosts, monkeypatch):
    monkeypatch.setenv(native_core.ENV, "off")
    monkeypatch.setattr(aggregates, "MAX_HOST_PROCESSES", 1)
    rows = {(row["host"], row["shard"]): row["runs"] for row in _report(three_hosts)["hosts"]}
    assert rows == {("host-a", "east"): 4 * DAYS, ("(other)", "(other)"): 2 * DAYS}
