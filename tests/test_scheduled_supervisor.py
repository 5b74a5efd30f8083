"""The supervisor as a job of the scheduler (``[supervisor]`` in agents.toml): configured and checked
at start-up, run on its interval in live mode with the scheduler's own telemetry (its spans beside the
agents'), and a failing pass logged while the agents keep running."""

from __future__ import annotations

import logging
import threading

import pytest

import scheduler
from meta_supervisor.scheduled import SupervisorJobError, supervise_once
from otel import semconv
from services.config_error import ConfigError
from services.fleet_config import SupervisorSchedule, for_shard, load_fleet_config
from tests.fleet_fixtures import build_test_fleet, root_spans

WAIT = 60.0


def _with_supervisor(config, table: str) -> None:
    config.write_text(config.read_text() + "\n[supervisor]\n" + table + "\n")


def test_the_schedule_is_read_from_the_fleet_file(world):
    assert load_fleet_config(world["config"]).supervisor is None
    _with_supervisor(world["config"], 'every_seconds = 900\nmode = "apply"')
    assert load_fleet_config(world["config"]).supervisor == SupervisorSchedule(900.0, "apply", True, None)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("every_seconds = 0", "supervisor.every_seconds must be a positive number of seconds, got 0"),
        ('every_seconds = 60\nmode = "aply"', "supervisor.mode must be one of dry-run, apply, got 'aply'"),
        ("every_seconds = 60\nreport = 1", "supervisor.report must be true or false"),
        ("every_second = 60", "unknown key 'every_second'; did you mean 'every_seconds'?"),
    ],
)
def test_a_bad_schedule_is_a_config_error(world, table, message):
    _with_supervisor(world["config"], table)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        load_fleet_config(world["config"])


def test_on_a_sharded_fleet_only_the_named_shard_runs_it(world):
    text = world["config"].read_text()
    for agent in ("momentum", "mean_reversion", "llm_analyst", "ensemble"):
        text = text.replace(f"[agents.{agent}]\n", f'[agents.{agent}]\nshard = "east"\n')
    world["config"].write_text(text + '\n[agents.solo]\nmodule = "agents.momentum"\nshard = "west"\n')
    _with_supervisor(world["config"], 'every_seconds = 60\nshard = "west"')
    fleet = load_fleet_config(world["config"])
    assert fleet.supervisor.runs_on(None)  # one host: always
    assert not for_shard(fleet, "east").supervisor.runs_on("east")
    assert for_shard(fleet, "west").supervisor.runs_on("west")


def test_live_scheduler_runs_the_supervisor_on_its_interval_and_survives_a_failing_pass(world, telemetry, span_exporter, caplog):
    _with_supervisor(world["config"], "every_seconds = 0.1")
    passes: list[int] = []
    two_passes = threading.Event()

    def supervise() -> None:
        passes.append(len(passes))
        if len(passes) >= 2:
            two_passes.set()
        if len(passes) == 1:
            raise SupervisorJobError("the scheduled report exited 2: no trace file")

    fleet = build_test_fleet(world, telemetry, supervisor=load_fleet_config(world["config"]).supervisor)
    fleet._supervise = supervise
    with caplog.at_level(logging.INFO, logger="alphatrace.scheduler"):
        fleet.start(stop_after=3)
        assert two_passes.wait(WAIT)
        assert fleet.all_done.wait(WAIT)
        fleet.shutdown()
    assert any("scheduled supervisor failed" in r.getMessage() for r in caplog.records)
    assert any(r.getMessage() == "supervisor: every 0.1 s (dry-run)" for r in caplog.records)
    runs = [s.attributes["gen_ai.agent.name"] for s in root_spans(span_exporter)]
    assert {name: runs.count(name) for name in set(runs)} == dict.fromkeys(["momentum", "mean_reversion", "llm_analyst", "ensemble"], 3)


def test_a_pass_builds_the_report_and_emits_its_spans_with_the_schedulers_telemetry(world, telemetry, span_exporter, monkeypatch, caplog):
    trace_file = world["tmp"] / "telemetry" / "traces.jsonl"
    monkeypatch.setenv("ALPHATRACE_TRACE_FILE", str(trace_file))
    monkeypatch.setenv("ALPHATRACE_REPORT_DIR", str(world["tmp"] / "reports"))
    monkeypatch.setenv("ALPHATRACE_REPORT_STATE_DIR", str(world["tmp"] / "report-state"))
    monkeypatch.setenv("ALPHATRACE_SUPERVISOR_AUDIT_FILE", str(world["tmp"] / "audit.jsonl"))
    assert scheduler.main(["--replay", "--days", "5", "--config", str(world["config"])]) == 0
    with caplog.at_level(logging.INFO, logger="alphatrace.supervisor.scheduled"):
        supervise_once(SupervisorSchedule(60.0, "apply"), telemetry, str(world["config"]))
    assert (world["tmp"] / "reports" / "meta_report.json").is_file()
    names = [s.name for s in span_exporter.get_finished_spans()]
    assert names.count(semconv.SPAN_SUPERVISOR_RUN) == 1 and names.count(semconv.SPAN_SUPERVISOR_DECIDE) == 4
    assert any(r.getMessage().startswith("supervisor apply:") for r in caplog.records)


def test_a_pass_that_cannot_read_its_input_raises_with_the_reason(world, telemetry, monkeypatch):
    monkeypatch.setenv("ALPHATRACE_TRACE_FILE", str(world["tmp"] / "missing.jsonl"))
    with pytest.raises(SupervisorJobError, match=r"the scheduled supervisor exited 2: error: trace file .*missing.jsonl does not exist"):
        supervise_once(SupervisorSchedule(60.0, "dry-run", report=False), telemetry, str(world["config"]))
