"""A fleet on several hosts: each scheduler process runs one named shard of agents/agents.toml
(`--shard` or ALPHATRACE_SHARD), its spans say which shard and host, and a mistake in the
assignment stops start-up with one line before any run."""

from __future__ import annotations

import json
import socket
from collections import Counter

import pytest

import scheduler
from services.config_error import ConfigError
from services.fleet_config import for_shard, load_fleet_config, resolve_shard


def _assign(config, shards: dict[str, str]) -> None:
    text = config.read_text()
    for agent, shard in shards.items():
        text = text.replace(f"[agents.{agent}]\n", f'[agents.{agent}]\nshard = "{shard}"\n')
    config.write_text(text)


def _roots_and_resources(trace_file):
    roots, resources = [], []
    for line in trace_file.read_text().splitlines():
        for rs in json.loads(line)["resourceSpans"]:
            resources.append({a["key"]: next(iter(a["value"].values())) for a in rs["resource"]["attributes"]})
            for ss in rs["scopeSpans"]:
                for span in ss["spans"]:
                    attrs = {a["key"]: next(iter(a["value"].values())) for a in span.get("attributes", [])}
                    if attrs.get("gen_ai.operation.name") == "invoke_agent":
                        roots.append(attrs["gen_ai.agent.name"])
    return Counter(roots), resources


def test_each_shard_runs_only_its_agents_and_says_so_on_its_spans(world, monkeypatch):
    # The ensemble combines the other three, so they share its shard; a second momentum-like agent
    # runs alone on the other shard.
    _assign(world["config"], {"momentum": "east", "mean_reversion": "east", "llm_analyst": "east", "ensemble": "east"})
    text = world["config"].read_text()
    world["config"].write_text(text + '\n[agents.solo]\nmodule = "agents.momentum"\ninterval_seconds = 0.05\nshard = "west"\n')
    files = {}
    for shard in ("east", "west"):
        files[shard] = world["tmp"] / f"{shard}.jsonl"
        monkeypatch.setenv("ALPHATRACE_TRACE_FILE", str(files[shard]))
        assert scheduler.main(["--replay", "--days", "2", "--config", str(world["config"]), "--shard", shard]) == 0
    east, east_resources = _roots_and_resources(files["east"])
    west, west_resources = _roots_and_resources(files["west"])
    assert east == {"momentum": 2, "mean_reversion": 2, "llm_analyst": 2, "ensemble": 2}
    assert west == {"solo": 2}
    assert {(r["alphatrace.shard"], r["host.name"]) for r in east_resources} == {("east", socket.gethostname())}
    assert {r["alphatrace.shard"] for r in west_resources} == {"west"}
    # one id per process (both shards ran in this test's process; separate processes: tests/test_fleet_hosts.py)
    assert len({r["service.instance.id"] for r in east_resources + west_resources}) == 1


def test_the_shard_comes_from_the_environment_when_not_given(world, monkeypatch):
    _assign(world["config"], {"momentum": "a", "mean_reversion": "a", "llm_analyst": "a", "ensemble": "a"})
    fleet = load_fleet_config(world["config"])
    assert resolve_shard(None, env={"ALPHATRACE_SHARD": "a"}) == "a"
    assert resolve_shard("b", env={"ALPHATRACE_SHARD": "a"}) == "b"
    assert resolve_shard(None, env={}) is None
    assert for_shard(fleet, None) is fleet
    assert set(for_shard(fleet, "a").agents) == {"momentum", "mean_reversion", "llm_analyst", "ensemble"}
    assert fleet.shards == ("a",)


def _one_line_error(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("alphatrace: configuration error: ")
    return lines[0]


@pytest.mark.parametrize(
    ("shards", "argv", "expected"),
    [
        ({"momentum": "east"}, ["--shard", "eats"], ["unknown shard 'eats'", "did you mean 'east'?"]),
        ({}, ["--shard", "east"], ["unknown shard 'east'", "none"]),
        ({"momentum": "east"}, ["--shard", "east/1"], ["shard 'east/1' must be 1-64 letters"]),
        (
            {"momentum": "east", "mean_reversion": "east", "llm_analyst": "east", "ensemble": "west"},
            ["--shard", "west"],
            ["agents.ensemble combines 'momentum', which is assigned to shard 'east'", "must share a shard"],
        ),
    ],
    ids=["shard-typo", "no-shards-assigned", "bad-shard-name", "ensemble-apart-from-its-members"],
)
def test_a_shard_mistake_stops_start_up_with_one_line_before_any_run(world, monkeypatch, capsys, shards, argv, expected):
    trace_file = world["tmp"] / "traces.jsonl"
    monkeypatch.setenv("ALPHATRACE_TRACE_FILE", str(trace_file))
    _assign(world["config"], shards)
    assert scheduler.main(["--once", "--config", str(world["config"]), *argv]) == 2
    line = _one_line_error(capsys)
    for text in expected:
        assert text in line
    assert not trace_file.exists()


def test_a_bad_shard_value_in_the_file_names_the_agent(world):
    world["config"].write_text(world["config"].read_text().replace("[agents.momentum]\n", "[agents.momentum]\nshard = 3\n"))
    with pytest.raises(ConfigError, match=r"agents\.momentum\.shard must be 1-64 letters.*got 3"):
        load_fleet_config(world["config"])
