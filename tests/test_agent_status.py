"""Shadow and live agents: status comes from configuration, a recorded change wins, and a shadow
agent's signals are flagged not tradable."""

from __future__ import annotations

import json
import os
import threading

import pytest

from otel import semconv
from services import agent_status
from services.agent_status import AgentStatusBook, AgentStatusError, load_agent_status, set_agent_status
from services.config_error import ConfigError
from tests.fleet_fixtures import build_test_fleet, root_spans


def test_configured_default_then_recorded_change_wins(tmp_path):
    status_file = tmp_path / "agent_status.json"
    book = AgentStatusBook({"llm_analyst": "shadow"}, status_file)
    assert book.status_of("llm_analyst") == "shadow"
    assert book.status_of("momentum") == "live"
    entry = set_agent_status("llm_analyst", "live", "ic 0.06 over 120 signals", "supervisor", details={"rule": "promote"}, path=status_file)
    assert entry.at.endswith("Z")
    assert book.status_of("llm_analyst") == "live"
    assert json.loads(status_file.read_text())["llm_analyst"]["rule"] == "promote"
    with pytest.raises(ConfigError, match="status must be one of"):
        set_agent_status("x", "retired", "", "me", path=status_file)


def test_malformed_status_file_keeps_last_good_state(tmp_path, caplog):
    status_file = tmp_path / "agent_status.json"
    set_agent_status("llm_analyst", "live", "", "alice", path=status_file)
    book = AgentStatusBook({"llm_analyst": "shadow"}, status_file)
    assert book.status_of("llm_analyst") == "live"
    status_file.write_text('{"llm_analyst": {"status": "maybe"}}')
    assert book.status_of("llm_analyst") == "live"
    assert book.status_of("llm_analyst") == "live"
    assert caplog.text.count('needs "status"') == 1
    with pytest.raises(AgentStatusError):
        load_agent_status(status_file)


def test_shadow_agent_signals_are_not_tradable(world, telemetry, span_exporter, monkeypatch):
    fleet = build_test_fleet(world, telemetry)
    object.__setattr__(fleet.fleet.agents["llm_analyst"], "status", "shadow")
    fleet._statuses = AgentStatusBook({"llm_analyst": "shadow"})
    fleet.run_cycle(world["calendar"][70])
    set_agent_status("llm_analyst", "live", "promoted", "supervisor")
    fleet.run_cycle(world["calendar"][71])
    fleet.shutdown()
    runs = sorted(
        (s for s in root_spans(span_exporter) if s.attributes["gen_ai.agent.name"] == "llm_analyst"),
        key=lambda s: s.attributes[semconv.AGENT_RUN_AS_OF],
    )
    assert [r.attributes[semconv.AGENT_STATUS] for r in runs] == ["shadow", "live"]
    assert {e.attributes[semconv.ALPHA_TRADABLE] for e in runs[0].events} == {False}
    assert {e.attributes[semconv.ALPHA_TRADABLE] for e in runs[1].events} == {True}
    momentum = next(s for s in root_spans(span_exporter) if s.attributes["gen_ai.agent.name"] == "momentum")
    assert momentum.attributes[semconv.AGENT_STATUS] == "live"


@pytest.mark.parametrize("content", ["", " \n"])
def test_empty_status_file_keeps_the_last_good_state_and_is_never_rewritten(tmp_path, caplog, content):
    """Issue 12 (as item 4 for the kill switch): a truncated status file does not drop a person's pin."""
    status_file = tmp_path / "agent_status.json"
    set_agent_status("llm_analyst", "shadow", "not yet", "alice", path=status_file)
    book = AgentStatusBook({"llm_analyst": "live"}, status_file)
    assert book.status_of("llm_analyst") == "shadow"
    status_file.write_text(content)
    assert book.status_of("llm_analyst") == "shadow" and book.status_of("llm_analyst") == "shadow"
    assert caplog.text.count("is empty") == 1
    with pytest.raises(AgentStatusError, match="is empty"):
        set_agent_status("llm_analyst", "live", "promoted", "supervisor", path=status_file)
    assert status_file.read_text() == content


def test_an_oversized_or_odd_status_file_is_refused_unread_and_keeps_the_last_good_state(tmp_path, caplog, monkeypatch):
    status_file = tmp_path / "agent_status.json"
    set_agent_status("llm_analyst", "live", "", "alice", path=status_file)
    book = AgentStatusBook({"llm_analyst": "shadow"}, status_file)
    assert book.status_of("llm_analyst") == "live"
    reads: list[int] = []
    real_read = agent_status.read_small_file
    monkeypatch.setattr(agent_status, "read_small_file", lambda *a: reads.append(1) or real_read(*a))
    status_file.write_text('{"llm_analyst": {"status": "shadow"}}' + " " * agent_status.MAX_STATUS_FILE_BYTES)
    assert book.status_of("llm_analyst") == "live"  # the last good state, not the oversized edit
    assert caplog.text.count("byte limit; it is not read") == 1 and len(reads) == 1
    status_file.unlink()
    os.mkfifo(status_file)  # a FIFO planted at the path: refused without blocking
    assert book.status_of("llm_analyst") == "live"
    assert "is not a regular file" in caplog.text
    with pytest.raises(AgentStatusError, match="not a regular file"):
        load_agent_status(status_file)


def test_runs_never_wait_on_another_runs_read_of_the_status_file(tmp_path, monkeypatch):
    """One reader's parse is held inside a patched loader; other threads asking for a status still
    complete (bounded waits only, no timing assertions)."""
    status_file = tmp_path / "agent_status.json"
    set_agent_status("llm_analyst", "live", "", "alice", path=status_file)
    book = AgentStatusBook({"llm_analyst": "shadow"}, status_file)
    assert book.status_of("llm_analyst") == "live"
    entered, release = threading.Event(), threading.Event()
    real_load = agent_status.load_agent_status
    calls: list[str] = []

    def slow_load(path=None):
        calls.append(threading.current_thread().name)
        if len(calls) == 1:  # only the first read is held
            entered.set()
            release.wait(60)
        return real_load(path)

    set_agent_status("llm_analyst", "shadow", "", "bob", path=status_file)
    monkeypatch.setattr(agent_status, "load_agent_status", slow_load)
    results: dict[str, str] = {}
    held = threading.Thread(target=lambda: results.update(held=book.status_of("llm_analyst")), name="held")
    held.start()
    try:
        assert entered.wait(30)
        other = threading.Thread(target=lambda: results.update(other=book.status_of("llm_analyst")), name="other")
        other.start()
        other.join(30)
        assert not other.is_alive(), "a run waited on another run's read of the status file"
        assert results == {"other": "shadow"}  # it read the edit itself
    finally:
        release.set()
        held.join(30)
    assert results["held"] == "shadow" and not held.is_alive()
    assert book.status_of("llm_analyst") == "shadow"
