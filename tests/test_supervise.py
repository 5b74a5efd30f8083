"""The supervisor command: --dry-run prints and writes nothing; --apply retires and promotes through the
state files, keeps every entry a person wrote, honours a person's revive, audits and emits
``supervisor.decide`` spans; concurrent --apply and manual kills never lose an entry."""

from __future__ import annotations

import errno
import io
import json
import math
import os
import subprocess
import sys
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from meta_supervisor.assemble.decisions import decisions_section
from meta_supervisor.cli import supervise
from meta_supervisor.render.decisions import render_decisions_html, render_decisions_markdown
from meta_supervisor.supervisor import actions
from meta_supervisor.supervisor.audit import read_audit
from meta_supervisor.supervisor.policy import Policy, decide_one
from otel import semconv
from otel.otlp_json import encode_attributes
from services.agent_status import load_agent_status, set_agent_status
from services.alerts import WebhookAlerts
from services.kill_switch import clear, kill, load_kill_entries, revive
from services.market_data import CsvMarketData
from tests.fleet_fixtures import business_days
from tests.webhook_sink import URL_SECRET, Sink

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SYMBOLS = ["S1", "S2", "S3", "S4", "S5", "S6"]
DAYS = 30

POLICY_YAML = """
window: {days: 60}
scoring: {horizons: [1], primary_horizon: 1, ic_kind: cross_sectional, min_cross_section: 5}
retire: {min_runs: 10, min_scored_signals: 50, ic_below: -0.5, ic_t_stat_below: null}
promote: {min_runs: 10, min_scored_signals: 50, ic_at_least: 0.5, ic_t_stat_at_least: null, hit_rate_at_least: 0.9, brier_at_most: 0.05}
"""

FLEET_TOML = """
[fleet]
universe = ["S1", "S2", "S3", "S4", "S5", "S6"]
[agents.oracle]
status = "shadow"
[agents.contrarian]
[agents.steady]
[agents.revived]
"""


def one_day_return(i: int, k: int) -> float:
    return 0.01 * math.sin(1.7 * i + 2.3 * k + 0.5) + 0.001 * (k + 1)


@pytest.fixture
def world(tmp_path, monkeypatch):
    """Six symbols over 31 weekdays; four agents with one run per day and six signals per run:
    oracle (shadow) scores the coming return, contrarian and revived score its opposite, steady is noise."""
    calendar = business_days(date(2024, 1, 1), DAYS + 1)
    (tmp_path / "data").mkdir()
    for k, symbol in enumerate(SYMBOLS):
        close, rows = 100.0, ["date,open,high,low,close,volume"]
        for i, day in enumerate(calendar):
            rows.append(f"{day},,,,{close!r},")
            close *= 1 + one_day_return(i, k)
        (tmp_path / "data" / f"{symbol}.csv").write_text("\n".join(rows) + "\n")
    scores = {
        "oracle": lambda i, k: one_day_return(i, k),
        "contrarian": lambda i, k: -one_day_return(i, k),
        "revived": lambda i, k: -one_day_return(i, k),
        "steady": lambda i, k: math.sin(7.1 * i * (k + 1)),
    }
    lines = []
    for agent, score in scores.items():
        for i, day in enumerate(calendar[:DAYS]):
            events = []
            for k, symbol in enumerate(SYMBOLS):
                s = score(i, k)
                events.append(
                    {
                        "timeUnixNano": "1",
                        "name": semconv.EVENT_ALPHA_SIGNAL,
                        "attributes": encode_attributes(
                            {
                                semconv.ALPHA_SYMBOL: symbol,
                                semconv.ALPHA_DIRECTION: "up" if s > 0 else "down",
                                semconv.ALPHA_PROB_UP: 0.9 if s > 0 else 0.1,
                                semconv.ALPHA_SCORE_FINAL: s,
                                semconv.ALPHA_HORIZON: 1,
                                semconv.ALPHA_AS_OF: day.isoformat(),
                                semconv.ALPHA_TRADABLE: agent != "oracle",
                            }
                        ),
                    }
                )
            span = {
                "traceId": f"{len(lines) + 1:032x}",
                "spanId": f"{len(lines) + 1:016x}",
                "name": f"invoke_agent {agent}",
                "startTimeUnixNano": "1000000000",
                "endTimeUnixNano": str(1_000_000_000 + 20_000_000),
                "attributes": encode_attributes(
                    {
                        semconv.GEN_AI_OPERATION_NAME: "invoke_agent",
                        semconv.GEN_AI_AGENT_NAME: agent,
                        semconv.AGENT_RUN_OUTCOME: "ok",
                        semconv.AGENT_RUN_AS_OF: day.isoformat(),
                        semconv.RUN_COST_USD: 0.01,
                    }
                ),
                "events": events,
            }
            lines.append(json.dumps({"resourceSpans": [{"resource": {}, "scopeSpans": [{"scope": {"name": "t"}, "spans": [span]}]}]}))
    (tmp_path / "traces.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "policy.yaml").write_text(POLICY_YAML)
    (tmp_path / "agents.toml").write_text(FLEET_TOML)
    for name, value in {
        "TRACE_FILE": "traces.jsonl",
        "POLICY_FILE": "policy.yaml",
        "FLEET_CONFIG": "agents.toml",
        "KILL_SWITCH_FILE": "killed.json",
        "AGENT_STATUS_FILE": "status.json",
        "SUPERVISOR_AUDIT_FILE": "audit.jsonl",
        "MARKET_DATA": "data",
    }.items():
        monkeypatch.setenv(f"ALPHATRACE_{name}", str(tmp_path / value))
    return tmp_path


def run_cli(argv, telemetry=None, now=NOW, alerts=None) -> tuple[int, str]:
    out = io.StringIO()
    code = supervise.main(argv, now=lambda: now, telemetry=telemetry, market=CsvMarketData(), out=out, alerts=alerts)
    return code, out.getvalue()


def test_dry_run_prints_every_decision_with_figures_and_writes_nothing(world):
    revive("revived", "trust me", by="dave", path=world / "killed.json", now=lambda: NOW)
    before = (world / "killed.json").read_text()
    code, text = run_cli(["--dry-run"])
    assert code == 0
    lines = text.splitlines()
    assert lines[0].startswith("supervisor dry run:") and "window 2023-12-12..2024-02-09 (60 days)" in lines[0]
    decisions = {line.split()[1]: line.split()[0] for line in lines if line and not line.startswith(" ") and line.split()[0].isupper()}
    assert decisions == {"contrarian": "RETIRE", "oracle": "PROMOTE", "revived": "HOLD", "steady": "KEEP"}
    contrarian = text[text.index("RETIRE   contrarian") :]
    assert "rule retire.ic_below: ic -1 < -0.5\n" in contrarian
    assert "runs 30, errors 0 (0.0%), cost $0.3000 = $0.0100/day over 30 days, p95 20.0 ms" in contrarian
    assert "1d signals scored 180 (pending 0), IC -1.0000 (cross_sectional" in contrarian
    assert "held by dave (revived" in text
    assert "2 decision(s) would change something" in text
    assert (world / "killed.json").read_text() == before
    assert not (world / "status.json").exists() and not (world / "audit.jsonl").exists()


# Issue 15: the judged Newey-West t-stat is printed and recorded beside the plain one.
def test_decisions_show_the_hac_t_stat_beside_the_plain_one(world):
    _, text = run_cli(["--json"])
    steady = {d["agent"]: d for d in json.loads(text)}["steady"]["figures"]
    assert steady["ic_hac_lags"] == 0  # one-day returns do not overlap: 0 lags, the HAC t is the plain t
    assert steady["ic_t_stat_hac"] == pytest.approx(steady["ic_t_stat"])
    _, text = run_cli(["--dry-run"])
    shown = f"t {steady['ic_t_stat']:+.2f}, HAC t {steady['ic_t_stat_hac']:+.2f} with 0 lags, n {steady['ic_n']})"
    assert shown in text[text.index("KEEP     steady") :]


def test_json_output_is_the_decisions(world):
    _, text = run_cli(["--json"])
    decisions = {d["agent"]: d for d in json.loads(text)}
    assert decisions["oracle"]["action"] == "promote" and decisions["oracle"]["dry_run"] is True
    assert decisions["contrarian"]["figures"]["ic"] == pytest.approx(-1.0)
    assert decisions["steady"]["result"] == "no change"


def test_apply_retires_promotes_keeps_persons_entries_audits_and_traces(world, telemetry, span_exporter):
    kill("other", "manual stop", by="alice", path=world / "killed.json", now=lambda: NOW)
    revive("revived", "trust me", by="dave", path=world / "killed.json", now=lambda: NOW)
    set_agent_status("steady", "live", "by hand", "erin", path=world / "status.json", now=lambda: NOW)
    code, text = run_cli(["--apply"], telemetry)
    assert code == 0
    assert "-> written" in text and "-> held" not in text  # revived's hold is decided before any write
    entries = load_kill_entries(world / "killed.json")
    assert set(entries) == {"other", "revived", "contrarian"}
    assert (entries["other"].by, entries["other"].reason, entries["other"].killed) == ("alice", "manual stop", True)
    assert (entries["revived"].by, entries["revived"].state) == ("dave", "revived")
    retired = entries["contrarian"]
    assert (retired.by, retired.at, retired.killed) == ("supervisor", "2026-11-24T12:00:00Z", True)
    assert retired.details["rule"] == "retire.ic_below"
    assert retired.details["thresholds"] == {"retire.ic_below": -0.5}
    assert retired.details["figures"]["ic"] == pytest.approx(-1.0) and retired.details["figures"]["runs"] == 30
    assert retired.details["window"] == {"first": "2023-12-12", "last": "2024-02-09"}
    statuses = load_agent_status(world / "status.json")
    assert (statuses["oracle"].status, statuses["oracle"].by, statuses["oracle"].details["rule"]) == ("live", "supervisor", "promote.bar")
    assert statuses["steady"].by == "erin"
    audit = read_audit(world / "audit.jsonl")
    assert [(a["agent"], a["action"], a["applied"], a["result"]) for a in audit] == [
        ("contrarian", "retire", True, "written"),
        ("oracle", "promote", True, "written"),
        ("revived", "hold", False, "no change"),
        ("steady", "keep", False, "no change"),
    ]
    assert audit[2]["held_by"]["by"] == "dave" and audit[2]["would"] == "retire"
    spans = span_exporter.get_finished_spans()
    run_span = next(s for s in spans if s.name == semconv.SPAN_SUPERVISOR_RUN)
    decide = [s for s in spans if s.name == semconv.SPAN_SUPERVISOR_DECIDE]
    assert [s.attributes[semconv.SUPERVISOR_AGENT] for s in decide] == ["contrarian", "oracle", "revived", "steady"]
    assert all(s.parent.span_id == run_span.context.span_id for s in decide)
    first = decide[0]
    assert (first.attributes[semconv.SUPERVISOR_ACTION], first.attributes[semconv.SUPERVISOR_RULE]) == ("retire", "retire.ic_below")
    assert first.attributes[semconv.SUPERVISOR_FIGURE_PREFIX + "ic"] == pytest.approx(-1.0)
    assert semconv.GEN_AI_AGENT_NAME not in first.attributes  # never counted as one of the agent's own spans
    assert first.links[0].context.trace_id == 60  # contrarian's runs are lines 31-60 of the file
    assert decide[2].attributes[semconv.SUPERVISOR_HELD_BY] == "dave"
    section = decisions_section(audit, {name: e.to_json() for name, e in entries.items()})
    markdown, html_text = render_decisions_markdown(section), render_decisions_html(section)
    assert "hold (policy: retire)" in markdown and "revived by dave" in markdown
    assert "hold (policy: retire)" in html_text
    # issue 15: the judged Newey-West t-stat beside the plain one, on the span and in the report's pages
    steady = {k.removeprefix(semconv.SUPERVISOR_FIGURE_PREFIX): v for k, v in decide[3].attributes.items()}
    assert steady["ic_hac_lags"] == 0 and steady["ic_t_stat_hac"] == pytest.approx(steady["ic_t_stat"])
    hac = f"HAC t {audit[3]['figures']['ic_t_stat_hac']:+.2f}"
    assert hac in markdown and hac in html_text


def test_apply_sends_one_alert_per_decision_written_with_its_figures_and_a_jaeger_link(world, telemetry, span_exporter, monkeypatch):
    monkeypatch.setenv("ALPHATRACE_JAEGER_URL", "http://jaeger.internal:16686")
    sink = Sink()
    try:
        alerts = WebhookAlerts(sink.url)
        assert run_cli(["--apply"], telemetry, alerts=alerts)[0] == 0
        bodies = sink.wait_for(3)
        assert run_cli(["--apply"], telemetry, now=NOW + timedelta(hours=1), alerts=WebhookAlerts(sink.url))[0] == 0
    finally:
        sink.close()
    assert len(sink.bodies) == 3  # the second --apply wrote nothing, so it alerted nothing
    run_span = next(s for s in span_exporter.get_finished_spans() if s.name == semconv.SPAN_SUPERVISOR_RUN)
    link = f"http://jaeger.internal:16686/trace/{run_span.context.trace_id:032x}"
    by_agent = {b["agent"]: b for b in bodies}
    assert set(by_agent) == {"contrarian", "oracle", "revived"}  # steady's keep is not news
    retired = by_agent["contrarian"]
    assert (retired["cause"], retired["jaeger_url"], retired["at"]) == ("supervisor.retire", link, "2026-11-24T12:00:00Z")
    assert retired["summary"].startswith("retire (retire.ic_below): ")
    assert retired["figures"]["runs"] == 30 and retired["figures"]["ic"] == pytest.approx(-1.0)
    assert by_agent["oracle"]["cause"] == "supervisor.promote"
    assert URL_SECRET not in json.dumps(bodies)


def test_second_apply_changes_nothing_already_done(world, telemetry):
    run_cli(["--apply"], telemetry)
    first = load_kill_entries(world / "killed.json")["contrarian"]
    code, text = run_cli(["--apply"], telemetry, now=NOW + timedelta(hours=1))
    assert code == 0 and "KEEP     contrarian" in text and "already killed by supervisor" in text
    assert load_kill_entries(world / "killed.json")["contrarian"].at == first.at


def test_clearing_a_persons_revive_lets_the_policy_act(world, telemetry):
    revive("revived", "trust me", by="dave", path=world / "killed.json")
    run_cli(["--apply"], telemetry)
    assert load_kill_entries(world / "killed.json")["revived"].state == "revived"
    clear("revived", world / "killed.json")
    run_cli(["--apply"], telemetry)
    assert load_kill_entries(world / "killed.json")["revived"].by == "supervisor"


def test_bad_configuration_exits_2_with_the_reason(world, capsys):
    (world / "policy.yaml").write_text("retire: {ic_below: low}\n")
    assert run_cli(["--dry-run"])[0] == 2
    assert "retire.ic_below must be a number" in capsys.readouterr().err
    (world / "policy.yaml").write_text(POLICY_YAML)
    assert run_cli(["--traces", str(world / "missing.jsonl")])[0] == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("window: {days: 1000000}\n", "window.days must be a whole number from 1 to 36500, got 1000000"),
        ("retire: {ic_below: 5}\n", "retire.ic_below must be a number from -1 to 1"),
        ("retire: {min_runs: 0, error_rate_above: -0.1}\n", "retire.min_runs must be a whole number >= 1, got 0"),
        ("retire: {ic_below: -0.5}\nretire: {ic_below: 5}\n", "retire is given twice (lines 1 and 2)"),
    ],
)
def test_absurd_policy_exits_2_with_one_line_and_retires_nobody(world, capsys, policy, message):
    (world / "policy.yaml").write_text(policy)
    assert run_cli(["--apply"])[0] == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("error: policy file ")
    assert not (world / "killed.json").exists() and not (world / "audit.jsonl").exists()


def test_apply_on_an_emptied_kill_file_exits_2_and_never_overwrites_it(world, capsys):
    """Issue 12, item 4: a truncated kill file (a person's revive in it) is not "nobody killed"."""
    (world / "killed.json").write_text("  \n")
    assert run_cli(["--apply"])[0] == 2
    assert "is empty" in capsys.readouterr().err
    assert (world / "killed.json").read_text() == "  \n" and not (world / "audit.jsonl").exists()


# --- issue 12, item 8: names from spans and state files never reach the terminal raw -------------------

HOSTILE = "evil\x1b[2J\rRETIRE   forged          rule retire.ic_below: fake\n\u202e"


def _lines_are_clean(text: str) -> list[str]:
    lines = text.split("\n")
    assert all(ch.isprintable() for line in lines for ch in line), [line for line in lines if not line.isprintable()]
    return lines


def test_terminal_lines_escape_control_characters_from_spans_and_the_kill_file(world, telemetry, capsys):
    line = json.loads((world / "traces.jsonl").read_text().splitlines()[0])
    span = line["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["traceId"], span["spanId"], span["name"] = "f" * 32, "f" * 16, "invoke_agent x"
    for attribute in span["attributes"]:
        if attribute["key"] == semconv.GEN_AI_AGENT_NAME:
            attribute["value"] = {"stringValue": HOSTILE}
    with open(world / "traces.jsonl", "a") as handle:
        handle.write(json.dumps(line) + "\n")
    revive("revived", "fine\x1b[31m\nRETIRE   forged", by="dave\x07", path=world / "killed.json", now=lambda: NOW)
    for argv in (["--dry-run"], ["--apply"]):
        code, text = run_cli(argv, telemetry)
        assert code == 0
        lines = _lines_are_clean(text)
        heads = [line.split()[1] for line in lines if line[:1].isupper() and line.split()[0] in ("KEEP", "RETIRE", "PROMOTE", "HOLD")]
        assert sorted(heads) == sorted(["contrarian", "oracle", "revived", "steady", "evil\\x1b[2J\\rRETIRE"])
        assert not any(line.startswith("RETIRE   forged") for line in lines)
        assert "held by dave\\x07 (revived at 2026-11-24T12:00:00Z: fine\\x1b[31m\\nRETIRE   forged)" in text
    code, text = run_cli(["--json"])
    assert HOSTILE in {d["agent"] for d in json.loads(text)}  # JSON escapes by itself, and keeps the name exact
    _lines_are_clean(text)
    hostile_policy = world / "p\x1b]0;owned\x07.yaml"
    hostile_policy.write_text("retire: {ic_below: 5}\n")
    assert run_cli(["--policy", str(hostile_policy)])[0] == 2
    err = capsys.readouterr().err
    _lines_are_clean(err.rstrip("\n"))
    assert "\\x1b]0;owned\\x07.yaml" in err


# --- issue 12, item 5: no change is applied without its audit record -----------------------------------


def _fd_path(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


def _state_before_apply(world) -> dict[str, bytes]:
    kill("other", "manual stop", by="alice", path=world / "killed.json", now=lambda: NOW)
    set_agent_status("steady", "live", "by hand", "erin", path=world / "status.json", now=lambda: NOW)
    return {name: (world / name).read_bytes() for name in ("killed.json", "status.json")}


def test_apply_fsyncs_the_audit_before_writing_the_kill_switch_or_status_file(world, telemetry, monkeypatch):
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync " + Path(_fd_path(fd)).name)
        return real_fsync(fd)

    def replace(src, dst, *args, **kwargs):
        events.append("replace " + Path(dst).name)
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    assert run_cli(["--apply"], telemetry)[0] == 0
    audit_synced = events.index("fsync audit.jsonl")
    assert audit_synced < events.index("replace killed.json") and audit_synced < events.index("replace status.json")
    assert [a["result"] for a in read_audit(world / "audit.jsonl")] == ["written", "written", "written", "no change"]


def test_audit_log_that_is_a_folder_means_nothing_is_applied(world, telemetry, span_exporter, capsys):
    before = _state_before_apply(world)
    (world / "audit.jsonl").mkdir()
    code, text = run_cli(["--apply"], telemetry)
    assert code == 1 and text == ""
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write the audit log" in err and "nothing was applied" in err
    assert {name: (world / name).read_bytes() for name in before} == before
    assert span_exporter.get_finished_spans() == ()


@pytest.mark.parametrize("failing", ["fsync", "write"])
def test_a_full_disk_under_the_audit_log_means_nothing_is_applied_and_no_torn_line(world, telemetry, monkeypatch, capsys, failing):
    before = _state_before_apply(world)
    (world / "audit.jsonl").write_text('{"agent": "earlier", "action": "keep"}\n')
    log_before = (world / "audit.jsonl").read_bytes()
    real = getattr(os, failing)

    def full_disk(fd, *args):
        if _fd_path(fd).endswith("audit.jsonl"):
            if failing == "write":
                real(fd, bytes(args[0])[:40])  # part of the record reaches the file first
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, *args)

    monkeypatch.setattr(os, failing, full_disk)
    assert run_cli(["--apply"], telemetry)[0] == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "nothing was applied" in err
    assert {name: (world / name).read_bytes() for name in before} == before
    assert (world / "audit.jsonl").read_bytes() == log_before


# --- concurrency: --apply and people editing the same file -----------------------------------------


def retire_decision(agent: str):
    figures = {
        "runs": 100,
        "errors": 50,
        "error_rate": 0.5,
        "cost_per_day_usd": 0.0,
        "p95_latency_ms": 1.0,
        "scored_signals": 0,
        "ic": None,
        "ic_t_stat": None,
        "ic_t_stat_hac": None,
        "hit_rate": None,
        "brier": None,
    }
    return decide_one(agent, figures, Policy(), "live", None, None)


def test_concurrent_apply_and_manual_kills_never_lose_an_entry(tmp_path):
    path = tmp_path / "killed.json"
    barrier = threading.Barrier(8)

    def person(i: int) -> None:
        barrier.wait()
        for j in range(15):
            kill(f"person-{i}-{j}", "by hand", by=f"user{i}", path=path)

    def supervisor(i: int) -> None:
        barrier.wait()
        for j in range(15):
            actions.apply_retirements([retire_decision(f"policy-{i}-{j}")], Policy(), path, lambda: NOW)

    threads = [threading.Thread(target=person, args=(i,)) for i in range(4)] + [
        threading.Thread(target=supervisor, args=(i,)) for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = load_kill_entries(path)
    assert len(entries) == 120
    assert all(entries[f"person-{i}-{j}"].by == f"user{i}" for i in range(4) for j in range(15))
    assert all(entries[f"policy-{i}-{j}"].by == "supervisor" for i in range(4) for j in range(15))


def test_a_racing_revive_always_wins_over_the_policy(tmp_path):
    for round_ in range(20):
        path = tmp_path / f"killed-{round_}.json"
        barrier = threading.Barrier(2)

        def person(path=path, barrier=barrier) -> None:
            barrier.wait()
            revive("x", "mine", by="alice", path=path)

        def policy(path=path, barrier=barrier) -> None:
            barrier.wait()
            actions.apply_retirements([retire_decision("x")], Policy(), path, lambda: NOW)

        threads = [threading.Thread(target=person), threading.Thread(target=policy)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        entry = load_kill_entries(path)["x"]
        assert (entry.by, entry.state) == ("alice", "revived")


def test_concurrent_apply_commands_and_kills(world, telemetry):
    errors: list[BaseException] = []

    def apply() -> None:
        try:
            run_cli(["--apply"], telemetry)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def person(i: int) -> None:
        kill(f"manual-{i}", "by hand", by="ops", path=world / "killed.json")

    threads = [threading.Thread(target=apply) for _ in range(3)] + [threading.Thread(target=person, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    entries = load_kill_entries(world / "killed.json")
    assert set(entries) == {"contrarian", "revived", *(f"manual-{i}" for i in range(5))}
    assert len(read_audit(world / "audit.jsonl")) == 12  # three commands, four decisions each, no line torn


def test_promotion_rechecks_a_persons_status_entry_under_the_lock(tmp_path):
    figures = {
        "runs": 100,
        "errors": 0,
        "error_rate": 0.0,
        "cost_per_day_usd": 0.0,
        "p95_latency_ms": 1.0,
        "scored_signals": 1000,
        "ic": 0.5,
        "ic_t_stat": 5.0,
        "ic_t_stat_hac": 5.0,
        "hit_rate": 0.9,
        "brier": 0.1,
    }
    decision = decide_one("x", figures, Policy(), "shadow", None, None)
    assert decision.action == "promote"
    path = tmp_path / "status.json"
    set_agent_status("x", "shadow", "wait", "frank", path=path)  # written after the decision was made
    assert actions.apply_promotions([decision], Policy(), path, lambda: NOW) == {
        "x": "held: set to shadow by frank at " + load_agent_status(path)["x"].at
    }
    assert load_agent_status(path)["x"].by == "frank"


def test_module_entry_point(world):
    env = {**os.environ}
    result = subprocess.run(
        [sys.executable, "-m", "meta_supervisor.supervise", "--dry-run"],
        cwd=Path(__file__).parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "RETIRE   contrarian" in result.stdout and "PROMOTE  oracle" in result.stdout


# --- the report's reader, and the report reading what --apply wrote ----------------------------------


def test_reads_rotated_and_compressed_traces_like_one_file(world):
    import zstandard

    _, expected = run_cli(["--json"])
    lines = (world / "traces.jsonl").read_text().splitlines(keepends=True)
    # the collector rotated twice: an older backup compressed as one zstd stream, a newer one plain
    backup = world / "traces-2026-11-20T10-00-00.000-size.jsonl"
    backup.write_bytes(zstandard.ZstdCompressor().compress("".join(lines[:40]).encode()))
    (world / "traces-2026-11-21T10-00-00.000-size.jsonl").write_text("".join(lines[40:70]))
    (world / "traces.jsonl").write_text("".join(lines[70:] + lines[:5]))  # and a retried batch
    code, text = run_cli(["--json"])
    assert code == 0 and json.loads(text) == json.loads(expected)
    _, dry = run_cli(["--dry-run"])
    assert "120 runs and 720 signals in" in dry and "(+2 rotated)" in dry


def test_report_counts_decision_spans_apart_and_shows_the_hold(world, tmp_path):
    from meta_supervisor.cli import report as report_cli

    revive("revived", "trust me", by="dave", path=world / "killed.json", now=lambda: NOW)
    code, _ = run_cli(["--apply"])  # no telemetry handed in: the spans go into the trace file itself
    assert code == 0
    out = tmp_path / "report"
    assert report_cli.main(["--input", str(world / "traces.jsonl"), "--out", str(out), "--no-state", "--quiet"], now=lambda: NOW) == 0
    report = json.loads((out / "meta_report.json").read_text())
    assert report["inputs"]["supervisor_spans"] == 5  # one supervisor.run, four supervisor.decide
    assert report["inputs"]["other_spans"] == 0
    assert set(report["agents"]) == {"contrarian", "oracle", "revived", "steady"}  # no "(unknown agent)"
    assert report["fleet"]["runs"] == 120
    section = report["supervisor"]
    assert section["agents"]["revived"]["action"] == "hold" and section["agents"]["revived"]["held_by"]["by"] == "dave"
    assert section["agents"]["contrarian"]["result"] == "written"
    assert section["kill_switch"]["revived"]["state"] == "revived" and section["kill_switch"]["contrarian"]["by"] == "supervisor"
    assert section["held"] == ["revived"]
    # the report scores the same signals as the supervisor: one-day IC of the contrarian is -1
    contrarian = report["alpha_quality"]["agents"]["contrarian"]["horizons"]["1"]
    assert contrarian["scored"] == 180 and contrarian["ic_cross_sectional"]["mean"] == pytest.approx(-1.0)
    page = (out / "meta_report.html").read_text()
    assert "hold (policy: retire)" in page and "dave (revived" in page


def test_apply_never_appends_json_spans_to_a_compressed_file(world, capsys):
    import zstandard

    packed = world / "traces.zst"
    packed.write_bytes(zstandard.ZstdCompressor().compress((world / "traces.jsonl").read_bytes()))
    code, text = run_cli(["--dry-run", "--traces", str(packed)])
    assert code == 0 and "120 runs and 720 signals" in text  # read like the JSON lines
    before = packed.read_bytes()
    assert run_cli(["--apply", "--traces", str(packed)])[0] == 2
    assert "would append its decision spans as JSON lines" in capsys.readouterr().err
    assert packed.read_bytes() == before and not (world / "killed.json").exists()


# Issue 15: a simulated (or unpriced) LLM bill never reads "$0.0000" in the supervisor's lines.
def test_simulated_llm_calls_are_shown_as_not_priced_never_as_zero_dollars(world, telemetry):
    lines = []
    for line in (world / "traces.jsonl").read_text().splitlines():
        request = json.loads(line)
        [resource_spans] = request["resourceSpans"]
        [span] = resource_spans["scopeSpans"][0]["spans"]
        if span["name"] == "invoke_agent steady":
            resource_spans["resource"] = {"attributes": encode_attributes({semconv.RESOURCE_LLM_SIMULATED: True})}
            span["attributes"] = [a for a in span["attributes"] if a["key"] != semconv.RUN_COST_USD]
            span["attributes"] += encode_attributes({semconv.RUN_COST_USD: 0.0, semconv.RUN_LLM_CALLS: 2})
        lines.append(json.dumps(request))
    (world / "traces.jsonl").write_text("\n".join(lines) + "\n")
    code, text = run_cli(["--dry-run"])
    assert code == 0
    steady = text[text.index("KEEP     steady") :]
    assert "cost $0 = $0/day (60 simulated LLM calls, not priced) over 30 days" in steady
    assert "$0.0000" not in text
    assert "cost $0.3000 = $0.0100/day over 30 days" in text[text.index("RETIRE   contrarian") :]
    code, _ = run_cli(["--apply"], telemetry=telemetry)
    assert code == 0
    [record] = [json.loads(line) for line in (world / "audit.jsonl").read_text().splitlines() if '"steady"' in line]
    assert record["figures"]["simulated_llm_calls"] == 60
    page = render_decisions_markdown(decisions_section(read_audit(world / "audit.jsonl")))
    assert "cost \\$0/day (60 simulated LLM calls, not priced)" in page and "0.0000" not in page  # $ escaped for GitHub
