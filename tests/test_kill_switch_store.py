"""The kill switch on a shared store (a real redis-server): one kill reaches every scheduler before its
next run, hand edits reach them through ``sync``, the trust rule holds across hosts, an outage keeps
the last known state and says so on the run span, and the store's password is never shown."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import pytest

import scheduler
from otel import semconv
from services import kill_switch
from services.kill_switch import MAX_KILL_FILE_BYTES, KillStorePublishError, KillSwitch, kill, revive
from services.kill_switch_store import (
    CHANGED_CHANNEL,
    STATE_KEY,
    RedisSource,
    StoreUnavailable,
    budget_on_store_down,
    kill_state_source,
    redact_url,
    store_url,
)
from services.simulated_llm import SimulatedLLMTransport
from tests.fleet_fixtures import build_test_fleet, root_spans
from tests.redis_server import RedisServer, ensure_redis

CANARY = "canary-pw-7f3a9c2e51d8"


@pytest.fixture(scope="module")
def redis_available():
    reason = ensure_redis()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def server(redis_available, tmp_path):
    with RedisServer(tmp_path, password=CANARY) as srv:
        yield srv


def _switch(kill_file: Path, url: str, **options) -> KillSwitch:
    """A scheduler's switch against the store; retries not delayed, so a test needs no sleep."""
    return KillSwitch(kill_file, source=RedisSource(url, local_file=kill_file, retry_after_s=0.0, **options))


def _bump_mtime(path: Path) -> None:
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_a_kill_issued_once_on_the_file_reaches_two_schedulers_before_their_next_run(server, tmp_path, capsys):
    kill_file = tmp_path / "killed_agents.json"
    assert kill_switch.main(["--file", str(kill_file), "--store", server.url, "sync"]) == 0  # the store starts from the file
    first, second = _switch(tmp_path / "host-a.json", server.url), _switch(tmp_path / "host-b.json", server.url)
    assert first.load_strict() == {} and second.load_strict() == {}
    code = kill_switch.main(
        ["--file", str(kill_file), "--store", server.url, "kill", "momentum", "--reason", "drawdown", "--by", "al", "--force"]
    )
    assert code == 0
    for switch in (first, second):
        decision = switch.check("momentum")
        assert decision.killed and decision.entry.reason == "drawdown" and decision.store_error is None
        assert not switch.check("ensemble").killed
    # Their own local files play no part: the store is what a scheduler reads.
    assert not (tmp_path / "host-a.json").exists()
    assert kill_switch.main(["--file", str(kill_file), "--store", server.url, "revive", "momentum", "--by", "al", "--force"]) == 0
    assert not first.check("momentum").killed and not second.check("momentum").killed
    assert CANARY not in capsys.readouterr().out


def test_a_hand_edit_reaches_the_schedulers_after_sync_and_the_change_is_announced(server, tmp_path):
    kill_file = tmp_path / "killed_agents.json"
    kill_file.write_text("[]")
    assert kill_switch.sync(kill_file, server.url) == 1
    switch = _switch(tmp_path / "local.json", server.url)
    switch.load_strict()
    source = RedisSource(server.url)
    pubsub = source._client.pubsub()
    pubsub.subscribe(CHANGED_CHANNEL)
    assert pubsub.get_message(timeout=10)["type"] == "subscribe"
    kill_file.write_text('{"llm_analyst": {"reason": "hand edit", "by": "bo"}}')
    assert not switch.check("llm_analyst").killed  # not published yet: the file is only this host's
    assert kill_switch.sync(kill_file, server.url) == 2
    decision = switch.check("llm_analyst")
    assert decision.killed and decision.entry.reason == "hand edit"
    message = pubsub.get_message(timeout=10)
    assert message["channel"] == CHANGED_CHANNEL and message["data"] == "2"
    state = source._client.hgetall(STATE_KEY)
    assert state["origin"].endswith(str(kill_file.resolve())) and json.loads(state["text"])["llm_analyst"]["by"] == "bo"
    pubsub.close()
    source.close()


def test_a_malformed_hand_edit_is_not_published(server, tmp_path):
    kill_file = tmp_path / "killed_agents.json"
    kill_file.write_text('["momentum"]')
    kill_switch.sync(kill_file, server.url)
    kill_file.write_text('["momentum", ')
    assert kill_switch.main(["--file", str(kill_file), "--store", server.url, "sync"]) == 2
    switch = _switch(tmp_path / "local.json", server.url)
    assert switch.load_strict().keys() == {"momentum"}


def test_sync_watch_publishes_each_change_of_the_file(server, tmp_path):
    kill_file = tmp_path / "killed_agents.json"
    kill_file.write_text("[]")
    stop = threading.Event()
    watcher = threading.Thread(target=kill_switch.watch, args=(kill_file, server.url, 0.05, stop))
    watcher.start()
    try:
        switch = _switch(tmp_path / "local.json", server.url)
        _wait_for(lambda: _reads(switch), "the watcher's first publish")
        kill_file.write_text('["ensemble"]')
        _bump_mtime(kill_file)
        _wait_for(lambda: switch.check("ensemble").killed, "the watcher to publish the edit")
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert not watcher.is_alive()


def _reads(switch: KillSwitch) -> bool:
    try:
        switch.load_strict()
    except Exception:
        return False
    return True


def _wait_for(condition, what: str, timeout_s: float = 30.0) -> None:
    """A bounded, generous wait (no timing is asserted)."""
    done = threading.Event()
    deadline = 0.0
    while deadline < timeout_s:
        if condition():
            return
        done.wait(0.05)
        deadline += 0.05
    raise AssertionError(f"timed out waiting for {what}")


def test_a_revive_from_a_world_writable_file_is_refused_on_every_host(server, tmp_path):
    kill_file = tmp_path / "killed_agents.json"
    kill(agent_name="momentum", reason="drawdown", by="al", path=kill_file, store=server.url)
    switch = _switch(tmp_path / "local.json", server.url)
    assert switch.load_strict()["momentum"].killed
    os.chmod(kill_file, 0o666)
    revive("momentum", "someone on the box", by="mallory", path=kill_file, store=server.url)
    os.chmod(kill_file, 0o666)  # the atomic write made a new file: make the new one writable by all too
    kill_switch.sync(kill_file, server.url)
    decision = switch.check("momentum")
    assert decision.killed and "revive refused" in decision.entry.reason
    assert "group- or world-writable" in decision.file_error and f"chmod go-w {kill_file.resolve()}" in decision.file_error
    # A fresh scheduler on another host refuses it too: the store carries the file's mode.
    other = _switch(tmp_path / "other.json", server.url)
    assert other.load_strict()["momentum"].killed


def test_the_store_down_keeps_the_last_state_on_the_span_then_its_return_brings_the_new_state(
    server, tmp_path, world, telemetry, span_exporter, caplog
):
    """SIGKILL the store: the last known state holds, each run span says so, the outage is logged once;
    a kill written meanwhile is in the file and the command fails naming `sync`; the store comes back
    empty (no persistence) and the state holds until `sync` publishes the file, which the next run sees."""
    kill_file = world["kill_file"]
    kill(agent_name="llm_analyst", reason="too expensive", by="al", path=kill_file, store=server.url)
    switch = _switch(tmp_path / "scheduler-host.json", server.url)
    assert switch.load_strict().keys() == {"llm_analyst"}
    fleet = build_test_fleet(world, telemetry, SimulatedLLMTransport())
    fleet._kill_switch = switch
    caplog.set_level(logging.INFO)
    fleet.run_cycle(world["calendar"][70])
    server.kill()
    fleet.run_cycle(world["calendar"][71])
    fleet.run_cycle(world["calendar"][72])
    with pytest.raises(KillStorePublishError, match="sync"):
        kill(agent_name="momentum", reason="drawdown", by="al", path=kill_file, store=server.url)
    assert json.loads(kill_file.read_text()).keys() == {"llm_analyst", "momentum"}  # written here, not yet shared
    assert kill_switch.main(["--file", str(kill_file), "--store", server.url, "kill", "ensemble", "--reason", "x", "--by", "al"]) == 2
    fleet.run_cycle(world["calendar"][73])
    server.start()  # back, and empty: a restart without persistence lost the state
    fleet.run_cycle(world["calendar"][74])
    assert kill_switch.main(["--file", str(kill_file), "--store", server.url, "sync"]) == 0
    fleet.run_cycle(world["calendar"][75])
    fleet.shutdown()

    def outcomes(agent):
        spans = sorted(
            (s for s in root_spans(span_exporter) if s.attributes["gen_ai.agent.name"] == agent),
            key=lambda s: s.attributes[semconv.AGENT_RUN_AS_OF],
        )
        return [(s.attributes[semconv.AGENT_RUN_OUTCOME], s.attributes.get(semconv.KILL_SWITCH_STATE_STALE, False)) for s in spans]

    assert outcomes("llm_analyst") == [("killed", False)] + [("killed", True)] * 4 + [("killed", False)]
    assert outcomes("momentum") == [("ok", False)] + [("ok", True)] * 4 + [("killed", False)]
    assert outcomes("ensemble") == [("ok", False)] + [("ok", True)] * 4 + [("killed", False)]
    stale = [s for s in root_spans(span_exporter) if s.attributes.get(semconv.KILL_SWITCH_STATE_STALE)]
    errors = {s.attributes[semconv.KILL_SWITCH_STORE_ERROR] for s in stale}
    assert any("ConnectionError" in e for e in errors) and any("holds no kill-switch state" in e for e in errors)
    outage_lines = [r for r in caplog.records if r.name == "services.kill_switch" and "keeping the last known state" in r.getMessage()]
    assert len(outage_lines) == 1  # once per outage: the down store, then the empty one, then back
    assert any("answers again" in r.getMessage() for r in caplog.records)
    # The canary: the password is in the URL every call used, and nowhere a person or a collector sees.
    every_text = [r.getMessage() for r in caplog.records] + [str(dict(s.attributes)) for s in span_exporter.get_finished_spans()]
    assert all(CANARY not in text for text in every_text)
    assert all("***@127.0.0.1" in e for e in errors)


def test_a_scheduler_that_starts_with_the_store_down_refuses_unless_told_to_start_from_the_file(server, world, monkeypatch, capsys):
    world["kill_file"].write_text('["momentum"]')
    server.kill()
    monkeypatch.setenv("ALPHATRACE_KILL_SWITCH_STORE", server.url)
    assert scheduler.main(["--once", "--config", str(world["config"])]) == 2
    err = capsys.readouterr().err
    assert "does not start without the fleet's kill list" in err and "ALPHATRACE_KILL_SWITCH_OFFLINE_START=file" in err
    assert len(err.strip().splitlines()) == 1 and CANARY not in err
    switch = KillSwitch(world["kill_file"], source=kill_state_source(world["kill_file"], MAX_KILL_FILE_BYTES, offline="file"))
    assert switch.load_strict().keys() == {"momentum"}
    decision = switch.check("momentum")
    assert decision.killed and "unreachable" in decision.store_error and CANARY not in decision.store_error


def test_a_store_never_published_to_refuses_start_up_naming_sync(server, tmp_path):
    switch = _switch(tmp_path / "local.json", server.url)
    with pytest.raises(Exception, match="holds no kill-switch state") as info:
        switch.load_strict()
    assert "services.kill_switch sync" in str(info.value) and CANARY not in str(info.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://127.0.0.1:6379", "scheme must be one of"),
        ("redis://:secretpw99@127.0.0.1:notaport/0", "is not a URL"),
        ("redis://:secretpw99@127.0.0.1:6379/zero", "must be a number"),
        ("redis:///0", "names no host"),
    ],
)
def test_a_bad_store_setting_stops_start_up_with_one_line_and_no_password(world, monkeypatch, capsys, value, message):
    monkeypatch.setenv("ALPHATRACE_KILL_SWITCH_STORE", value)
    assert scheduler.main(["--once", "--config", str(world["config"])]) == 2
    err = capsys.readouterr().err
    assert message in err and "secretpw99" not in err and len(err.strip().splitlines()) == 1


def test_settings_argument_beats_the_variable_and_passwords_are_redacted():
    env = {"ALPHATRACE_KILL_SWITCH_STORE": "redis://env-host:6379/0"}
    assert store_url("redis://arg-host:6379/1", env) == "redis://arg-host:6379/1"
    assert store_url(None, env) == "redis://env-host:6379/0"
    assert store_url(None, {}) is None
    assert redact_url("redis://user:pw@host:6380/2") == "redis://***@host:6380/2"
    assert redact_url("redis://host:6380/2") == "redis://host:6380/2"
    assert budget_on_store_down(None, {}) == "closed"
    assert budget_on_store_down("open", {}) == "open"


def test_spend_adds_atomically_across_writers_per_agent_and_fleet_with_a_ttl(server):
    writers = [RedisSource(server.url) for _ in range(4)]

    def spend(source):
        for _ in range(50):
            source.add_spend("llm_analyst", "2026-11-24", 0.01)

    threads = [threading.Thread(target=spend, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    agent_total, fleet_total = writers[0].add_spend("momentum", "2026-11-24", 0.5)
    assert agent_total == pytest.approx(0.5) and fleet_total == pytest.approx(2.5)
    ttl = writers[0]._client.ttl("alphatrace:budget:spend:2026-11-24:llm_analyst")
    assert 0 < ttl <= 8 * 24 * 3600
    server.kill()
    with pytest.raises(StoreUnavailable) as info:
        writers[0].add_spend("momentum", "2026-11-24", 0.5)
    assert CANARY not in str(info.value)
    for w in writers:
        w.close()
