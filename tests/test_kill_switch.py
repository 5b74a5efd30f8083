"""The kill switch: both file forms, hot edits, malformed files, atomic writes and the command line."""

from __future__ import annotations

import json
import logging
import os
import pwd
import threading

import pytest

from services import kill_switch
from services.kill_switch import KillSwitch, KillSwitchError, clear, kill, load_kill_entries, revive


@pytest.fixture
def kill_file(tmp_path):
    return tmp_path / "state" / "killed_agents.json"


def _write(path, content) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    # Make sure an edit within the same mtime tick is still seen as a change.
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_missing_file_kills_nobody(kill_file):
    assert KillSwitch(kill_file).check("momentum").killed is False


def test_seed_list_form(kill_file):
    _write(kill_file, ["momentum", "llm_analyst"])
    switch = KillSwitch(kill_file)
    assert switch.check("momentum").killed
    assert switch.check("llm_analyst").killed
    assert not switch.check("ensemble").killed


def test_rich_form_carries_reason_by_and_at(kill_file):
    _write(kill_file, {"momentum": {"reason": "drawdown", "by": "alice", "at": "2026-11-24T10:00:00Z"}})
    decision = KillSwitch(kill_file).check("momentum")
    assert decision.killed
    assert (decision.entry.reason, decision.entry.by, decision.entry.at) == ("drawdown", "alice", "2026-11-24T10:00:00Z")


def test_hot_edit_takes_effect_on_the_next_check(kill_file):
    switch = KillSwitch(kill_file)
    assert not switch.check("momentum").killed
    _write(kill_file, ["momentum"])
    assert switch.check("momentum").killed
    _write(kill_file, [])
    assert not switch.check("momentum").killed
    _write(kill_file, ["momentum"])
    kill_file.unlink()
    assert not switch.check("momentum").killed


def test_malformed_edit_keeps_last_good_state_and_logs_once(kill_file, caplog):
    _write(kill_file, ["momentum"])
    switch = KillSwitch(kill_file)
    assert switch.check("momentum").killed
    _write(kill_file, '["momentum", ')
    with caplog.at_level(logging.ERROR, logger="services.kill_switch"):
        first = switch.check("momentum")
        second = switch.check("ensemble")
    assert first.killed and not second.killed
    assert "not valid JSON" in first.file_error and first.file_error == second.file_error
    assert len([r for r in caplog.records if "kill switch" in r.getMessage()]) == 1
    _write(kill_file, {"ensemble": {"reason": "fixed file"}})
    healed = switch.check("ensemble")
    assert healed.killed and healed.file_error is None
    assert not switch.check("momentum").killed


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('"momentum"', "expected a list of agent names or an object"),
        ("[1, 2]", "every list item must be an agent name"),
        ('{"momentum": "yes"}', "must be an object with reason/by/at"),
        ('{"momentum": {"reason": 5}}', "'momentum'.reason must be a string"),
        ("", "is empty; write \\[\\] \\(nobody killed\\)"),
        (" \n\t\n", "is empty"),
    ],
)
def test_malformed_at_startup_is_a_clear_error(kill_file, content, message):
    _write(kill_file, content)
    with pytest.raises(KillSwitchError, match=message):
        KillSwitch(kill_file).load_strict()


def test_kill_and_revive_write_the_rich_form_and_keep_other_entries(kill_file):
    _write(kill_file, ["mean_reversion"])
    entry = kill("momentum", "spread too wide", by="bob", path=kill_file)
    assert entry.by == "bob" and entry.at.endswith("Z")
    on_disk = json.loads(kill_file.read_text())
    assert on_disk["momentum"]["reason"] == "spread too wide"
    assert on_disk["mean_reversion"]["reason"] == "listed in kill-switch file"
    revived = revive("momentum", "spread back to normal", by="bob", path=kill_file)
    assert revived.state == "revived" and not revived.killed
    assert json.loads(kill_file.read_text())["momentum"]["state"] == "revived"
    assert KillSwitch(kill_file).check("momentum").killed is False
    assert clear("momentum", path=kill_file) is True
    assert clear("momentum", path=kill_file) is False
    assert set(load_kill_entries(kill_file)) == {"mean_reversion"}


def test_extra_keys_survive_a_rewrite(kill_file):
    _write(kill_file, {"momentum": {"reason": "ic below floor", "by": "supervisor", "at": "t", "rule": "min_ic", "figures": {"ic": -0.02}}})
    kill("ensemble", "manual", by="alice", path=kill_file)
    on_disk = json.loads(kill_file.read_text())
    assert on_disk["momentum"] == {"reason": "ic below floor", "by": "supervisor", "at": "t", "rule": "min_ic", "figures": {"ic": -0.02}}
    assert load_kill_entries(kill_file)["momentum"].by_person is False


def test_world_writable_file_cannot_revive(kill_file, caplog):
    _write(kill_file, {"momentum": {"reason": "manual", "by": "alice"}})
    switch = KillSwitch(kill_file)
    assert switch.check("momentum").killed
    os.chmod(kill_file, 0o666)
    _write(kill_file, {"momentum": {"reason": "sneaky", "by": "mallory", "state": "revived"}})
    with caplog.at_level(logging.WARNING, logger="services.kill_switch"):
        decision = switch.check("momentum")
        switch.check("momentum")
    assert decision.killed
    assert "group- or world-writable" in decision.file_error and "chmod go-w" in decision.file_error
    assert len([r for r in caplog.records if "refusing to honour the revive" in r.getMessage()]) == 1
    _write(kill_file, {})  # removing the entry is a revive too
    assert switch.check("momentum").killed
    _write(kill_file, {"ensemble": {"reason": "kills are honoured"}})
    assert switch.check("ensemble").killed
    os.chmod(kill_file, 0o644)
    _write(kill_file, {})
    assert not switch.check("momentum").killed


def test_writes_refuse_to_overwrite_a_malformed_file(kill_file):
    _write(kill_file, "[oops")
    with pytest.raises(KillSwitchError):
        kill("momentum", "x", path=kill_file)
    assert kill_file.read_text() == "[oops"


def test_concurrent_writers_lose_no_entry_and_readers_never_see_half_a_file(kill_file):
    names = [f"agent_{i}" for i in range(40)]
    stop = threading.Event()
    reader_errors: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                load_kill_entries(kill_file)
            except KillSwitchError as exc:
                reader_errors.append(str(exc))

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in readers:
        t.start()
    writers = [threading.Thread(target=kill, args=(name, "load test"), kwargs={"path": kill_file}) for name in names]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert reader_errors == []
    assert set(load_kill_entries(kill_file)) == set(names)


def test_seed_is_killed_reads_the_path_from_the_environment(kill_file, monkeypatch):
    monkeypatch.setenv("ALPHATRACE_KILL_SWITCH_FILE", str(kill_file))
    _write(kill_file, ["momentum"])
    assert kill_switch.is_killed("momentum") is True
    assert kill_switch.is_killed("ensemble") is False


def test_command_line_kill_list_revive(kill_file, capsys):
    assert kill_switch.main(["--file", str(kill_file), "kill", "momentum", "--reason", "manual stop", "--by", "carol"]) == 0
    assert "killed momentum" in capsys.readouterr().out
    assert kill_switch.main(["--file", str(kill_file), "list"]) == 0
    assert "momentum\tkilled\treason='manual stop'\tby=carol" in capsys.readouterr().out
    assert kill_switch.main(["--file", str(kill_file), "revive", "momentum", "--by", "carol"]) == 0
    assert kill_switch.main(["--file", str(kill_file), "list"]) == 0
    assert "momentum\trevived" in capsys.readouterr().out
    assert kill_switch.main(["--file", str(kill_file), "clear", "momentum"]) == 0
    assert kill_switch.main(["--file", str(kill_file), "list"]) == 0
    assert "no agent is killed" in capsys.readouterr().out
    _write(kill_file, "{")
    assert kill_switch.main(["--file", str(kill_file), "list"]) == 2
    assert "not valid JSON" in capsys.readouterr().err


# --- issue 12: an empty file, a huge file, and a read that holds no lock the runs wait on -------------


@pytest.mark.parametrize("content", ["", "   \n\t\n"])
def test_empty_edit_keeps_the_last_good_state_and_logs_once(kill_file, caplog, content):
    _write(kill_file, {"momentum": {"reason": "manual", "by": "alice"}, "ensemble": {"by": "bob", "state": "revived"}})
    switch = KillSwitch(kill_file)
    assert switch.check("momentum").killed
    _write(kill_file, content)  # a truncated save: not "nobody killed"
    with caplog.at_level(logging.WARNING, logger="services.kill_switch"):
        first, second = switch.check("momentum"), switch.check("ensemble")
    assert first.killed and first.entry.by == "alice"
    assert not second.killed and second.entry.state == "revived"
    assert "is empty" in first.file_error and first.file_error == second.file_error
    assert len([r for r in caplog.records if "is empty" in r.getMessage()]) == 1


def test_empty_file_is_never_rewritten_so_a_persons_entries_are_not_lost(kill_file, capsys):
    _write(kill_file, "")
    with pytest.raises(KillSwitchError, match="is empty"):
        kill("momentum", "x", path=kill_file)
    assert kill_switch.main(["--file", str(kill_file), "list"]) == 2
    assert "is empty" in capsys.readouterr().err
    assert kill_file.read_text() == ""


def test_a_switch_with_no_good_state_treats_an_unreadable_file_as_killing_everyone(kill_file):
    _write(kill_file, "")
    decision = KillSwitch(kill_file).check("momentum")
    assert decision.killed and "no last good state" in decision.entry.reason and "is empty" in decision.file_error
    kill_file.unlink()  # a missing file is still nobody killed
    assert not KillSwitch(kill_file).check("momentum").killed


def _oversized() -> str:
    names = [f"agent_{i:07d}" for i in range(kill_switch.MAX_KILL_FILE_BYTES // 10)]
    return json.dumps(names)  # valid JSON, just too large


def test_oversized_file_is_refused_unread_keeping_the_last_good_state(kill_file, caplog, capsys, monkeypatch):
    _write(kill_file, ["momentum"])
    switch = KillSwitch(kill_file)
    assert switch.check("momentum").killed
    _write(kill_file, _oversized())
    assert kill_file.stat().st_size > kill_switch.MAX_KILL_FILE_BYTES
    parsed: list[int] = []
    real_parse = kill_switch.parse_kill_file
    monkeypatch.setattr(kill_switch, "parse_kill_file", lambda text, source="": parsed.append(len(text)) or real_parse(text, source))
    with caplog.at_level(logging.WARNING, logger="services.kill_switch"):
        decisions = [switch.check("momentum"), switch.check("agent_0000001")]
    assert decisions[0].killed and not decisions[1].killed
    assert "byte limit" in decisions[0].file_error and decisions[0].file_error == decisions[1].file_error
    assert len([r for r in caplog.records if "byte limit" in r.getMessage()]) == 1
    assert parsed == []  # never read, never parsed
    with pytest.raises(KillSwitchError, match="byte limit"):
        KillSwitch(kill_file).load_strict()
    assert kill_switch.main(["--file", str(kill_file), "kill", "momentum", "--reason", "r"]) == 2
    assert "byte limit" in capsys.readouterr().err


def test_runs_never_wait_on_another_runs_read_of_the_file(kill_file, monkeypatch):
    """One check's parse is held inside a patched parser; checks and ``is_killed`` calls in other
    threads still complete (bounded waits only, no timing assertions)."""
    monkeypatch.setenv("ALPHATRACE_KILL_SWITCH_FILE", str(kill_file))
    _write(kill_file, ["momentum"])
    switch = KillSwitch(kill_file)
    assert switch.check("momentum").killed and kill_switch.is_killed("momentum")
    entered, release = threading.Event(), threading.Event()
    calls: list[str] = []
    real_parse = kill_switch.parse_kill_file

    def slow_parse(text: str, source: str = "") -> dict:
        calls.append(threading.current_thread().name)
        if len(calls) == 1:  # only the first read is held
            entered.set()
            release.wait(60)
        return real_parse(text, source)

    monkeypatch.setattr(kill_switch, "parse_kill_file", slow_parse)
    _write(kill_file, ["momentum", "ensemble"])
    results: dict[str, bool] = {}
    held = threading.Thread(target=lambda: results.update(held=switch.check("ensemble").killed), name="held")
    held.start()
    try:
        assert entered.wait(30)
        others = [
            threading.Thread(target=lambda: results.update(check=switch.check("ensemble").killed), name="check"),
            threading.Thread(target=lambda: results.update(seed=kill_switch.is_killed("ensemble")), name="seed"),
        ]
        for t in others:
            t.start()
        for t in others:
            t.join(30)
        assert not any(t.is_alive() for t in others), "a check waited on another check's read of the file"
        assert results == {"check": True, "seed": True}  # each read the edit itself
    finally:
        release.set()
        held.join(30)
    assert results["held"] is True and not held.is_alive()
    assert switch.check("momentum").killed and switch.check("ensemble").killed


HOSTILE = "evil\x1b[2J\rmomentum\tkilled\n\u202e"


def test_kill_switch_command_line_escapes_what_the_file_says(kill_file, capsys):
    kill_file.parent.mkdir(parents=True, exist_ok=True)
    kill_file.write_text(
        json.dumps({HOSTILE: {"reason": "r\x1b[1A\nmomentum\tkilled", "by": "x\u2028y", "at": "\x9b2J"}, "ok": {"reason": "fine"}})
    )
    assert kill_switch.main(["--file", str(kill_file), "list"]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert lines[-1] == "" and len(lines) == 3  # one line per entry, nothing forged
    for line in lines[:-1]:
        assert all(ch.isprintable() or ch == "\t" for ch in line) and line.count("\t") == 4
    assert kill_switch.main(["--file", str(kill_file), "kill", "a\x1b[2Jb", "--reason", "why\nKILLED all", "--force"]) == 0
    assert kill_switch.main(["--file", str(kill_file), "revive", "a\x1b[2Jb", "--force"]) == 0
    assert kill_switch.main(["--file", str(kill_file), "clear", "z\x1b"]) == 0
    assert all(ch.isprintable() for line in capsys.readouterr().out.rstrip("\n").split("\n") for ch in line)
    kill_file.write_text('{"\\u001b[2J": 5}')
    assert kill_switch.main(["--file", str(kill_file), "list"]) == 2
    assert all(ch.isprintable() for ch in capsys.readouterr().err.rstrip("\n"))


# --- issue 15: a name the fleet does not have is refused; entries say who wrote them ----------------


def test_kill_refuses_a_name_that_is_not_an_agent_of_the_fleet(kill_file, capsys):
    assert kill_switch.main(["--file", str(kill_file), "kill", "momentun", "--reason", "typo"]) == 2
    err = capsys.readouterr().err
    assert "'momentun' is not an agent of the fleet" in err and "did you mean 'momentum'?" in err and "--force" in err
    assert len(err.strip().splitlines()) == 1
    assert not kill_file.exists()  # nothing recorded: the real agent would have kept running
    assert kill_switch.main(["--file", str(kill_file), "revive", "nosuchagent"]) == 2
    assert not kill_file.exists()
    capsys.readouterr()
    assert kill_switch.main(["--file", str(kill_file), "kill", "nosuchagent", "--reason", "not added yet", "--force", "--by", "al"]) == 0
    assert "killed nosuchagent" in capsys.readouterr().out
    assert load_kill_entries(kill_file)["nosuchagent"].killed


def test_kill_checks_names_against_the_fleet_config_it_is_given(kill_file, tmp_path, monkeypatch, capsys):
    config = tmp_path / "fleet.toml"
    config.write_text('[fleet]\nuniverse = ["SPX"]\n[agents.alpha_one]\nmodule = "agents.momentum"\n')
    assert kill_switch.main(["--file", str(kill_file), "--config", str(config), "kill", "momentum", "--reason", "r"]) == 2
    assert f"not an agent of the fleet in {config} (alpha_one)" in capsys.readouterr().err
    monkeypatch.setenv("ALPHATRACE_FLEET_CONFIG", str(config))
    assert kill_switch.main(["--file", str(kill_file), "kill", "alpha_one", "--reason", "r", "--by", "al"]) == 0


def test_revive_and_kill_record_the_login_user_when_no_by_is_given(kill_file, monkeypatch):
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    login = pwd.getpwuid(os.getuid()).pw_name
    assert kill_switch.main(["--file", str(kill_file), "kill", "momentum", "--reason", "r"]) == 0
    assert load_kill_entries(kill_file)["momentum"].by == login
    assert kill_switch.main(["--file", str(kill_file), "revive", "momentum"]) == 0
    assert load_kill_entries(kill_file)["momentum"].by == login
    monkeypatch.setenv("LOGNAME", "dana")
    assert kill_switch.main(["--file", str(kill_file), "revive", "momentum"]) == 0
    assert load_kill_entries(kill_file)["momentum"].by == "dana"
    assert kill_switch.main(["--file", str(kill_file), "revive", "momentum", "--by", "erin"]) == 0
    assert load_kill_entries(kill_file)["momentum"].by == "erin"


def test_with_no_login_name_at_all_by_is_required(kill_file, monkeypatch, capsys):
    def nobody() -> str:
        raise OSError("no username")

    monkeypatch.setattr(kill_switch.getpass, "getuser", nobody)
    assert kill_switch.main(["--file", str(kill_file), "revive", "momentum"]) == 2
    assert "pass --by NAME" in capsys.readouterr().err
    assert not kill_file.exists()
    assert kill_switch.main(["--file", str(kill_file), "revive", "momentum", "--by", "erin"]) == 0
