"""The report command saves its incremental state in a forked process while it assembles the report
(``build.save_aside``): the same state and report as a save in its own process, the state lock held
until the save has ended, a failed or killed save said in the report with the previous state kept,
a bug in the save raised, and no save outliving a killed build."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.report.otlp_builder import lines_for
from tests.test_report_record import PRICES as MARKET_DATA
from tests.test_report_record import ROOT, World, hand_made_runs
from tests.test_report_state_safety import NOW, lines, table_write_fails, without_warnings

WAIT = 120  # seconds at most for another process's step: bounded, never a timing assertion


def cli(tmp_path: Path, *extra: str) -> tuple[int, dict]:
    """The report command with its state in ``tmp_path/state`` and two processes allowed (the state
    saved aside); ``extra`` comes last (``--workers 1``: saved in the build's process)."""
    from meta_supervisor.cli import report as report_cli

    out = tmp_path / "out"
    code = report_cli.main(
        [
            *("--input", str(tmp_path / "traces.jsonl"), "--out", str(out), "--kill-file", str(tmp_path / "killed.json")),
            *("--audit-log", str(tmp_path / "audit.jsonl"), "--no-alpha-quality", "--format", "json,md,html", "--quiet"),
            *("--state-dir", str(tmp_path / "state"), "--workers", "2", *extra),
        ],
        now=lambda: NOW,
    )
    return code, json.loads((out / "meta_report.json").read_text()) if code == 0 else {}


def saves_seen(monkeypatch: pytest.MonkeyPatch, log: Path, before=None) -> None:
    """Record the pid of each process that saves the state in ``log``; ``before(pid)`` runs first."""
    from meta_supervisor.build import state_store

    real = state_store.SavedState.save

    def save(store, *args, **kwargs):
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        if before is not None:
            before(os.getpid())
        return real(store, *args, **kwargs)

    monkeypatch.setattr(state_store.SavedState, "save", save)


def saver_pids(log: Path) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def state_files(tmp_path: Path) -> list[str]:
    return sorted(path.name for path in (tmp_path / "state").iterdir() if path.suffix not in (".record", ".lock"))


def lock_is_free(tmp_path: Path) -> bool:
    import fcntl

    (lock_path,) = (tmp_path / "state").glob("report-*.lock")
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
    return True


def saved_then_grown(tmp_path: Path) -> list[str]:
    """A state saved for 20 runs' spans, then 5 more runs appended; returns the state's files."""
    (tmp_path / "traces.jsonl").write_text("".join(lines(1, 20)))
    assert cli(tmp_path)[0] == 0
    before = state_files(tmp_path)
    with open(tmp_path / "traces.jsonl", "a") as handle:
        handle.write("".join(lines(21, 5)))
    return before


def test_the_state_saved_aside_is_the_state_saved_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "traces.jsonl").write_text("".join(lines(1, 30)))
    log = tmp_path / "savers.log"
    saves_seen(monkeypatch, log)
    code, aside = cli(tmp_path)
    assert code == 0 and aside["inputs"]["state_warnings"] == []
    assert saver_pids(log) and os.getpid() not in saver_pids(log)  # saved by another process
    assert lock_is_free(tmp_path)
    html = (tmp_path / "out" / "meta_report.html").read_bytes()
    with open(tmp_path / "traces.jsonl", "a") as handle:  # an incremental build continues the saved state
        handle.write("".join(lines(31, 10)))
    code, grown = cli(tmp_path)
    assert code == 0 and grown["inputs"]["state_warnings"] == [] and len(saver_pids(log)) == 2
    in_place = tmp_path / "in-place"
    in_place.mkdir()
    (in_place / "traces.jsonl").write_bytes((tmp_path / "traces.jsonl").read_bytes())
    code, reference = cli(in_place, "--workers", "1")  # saved in the build's process
    assert code == 0 and os.getpid() in saver_pids(log)
    assert grown == json.loads(json.dumps(reference).replace(str(in_place), str(tmp_path)))
    assert html  # the first build wrote every format
    code, again = cli(tmp_path)  # nothing new: the report kept from the saved state's record
    assert code == 0 and again == grown and len(saver_pids(log)) == 3


@pytest.mark.parametrize("fails", ["a table", "the state summary"])
def test_a_full_disk_in_the_saving_process_is_said_and_keeps_the_previous_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, fails: str
) -> None:
    from meta_supervisor.build import state_store

    before = saved_then_grown(tmp_path)
    log = tmp_path / "savers.log"
    saves_seen(monkeypatch, log)
    if fails == "a table":
        table_write_fails(monkeypatch, OSError(28, "No space left on device"))
    else:
        real_atomic = state_store.write_atomically

        def atomic(path: Path, text) -> None:
            if state_store._MAIN_NAME.match(path.name):
                raise OSError(28, "No space left on device", str(path))
            real_atomic(path, text)

        monkeypatch.setattr(state_store, "write_atomically", atomic)
    capsys.readouterr()
    code, report = cli(tmp_path)
    assert code == 0 and os.getpid() not in saver_pids(log)
    (warning,) = report["inputs"]["state_warnings"]
    assert warning.startswith("incremental state not saved ([Errno 28] No space left on device")
    assert warning.endswith("what was written of it is removed, the previous state kept")
    assert f"warning: {warning}" in capsys.readouterr().err
    assert state_files(tmp_path) == before and lock_is_free(tmp_path)
    assert not list((tmp_path / "state").glob("*.record"))  # a report over a state not saved is never kept as is
    monkeypatch.undo()
    reference = cli(tmp_path, "--no-state")[1]
    assert without_warnings(report) == without_warnings(reference)
    code, again = cli(tmp_path)  # disk space back: the previous state is continued
    assert code == 0 and again["inputs"]["state_warnings"] == [] and without_warnings(again) == without_warnings(reference)


def test_a_saving_process_that_is_killed_is_said_and_keeps_the_previous_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from meta_supervisor.build import state_store

    before = saved_then_grown(tmp_path)
    build = os.getpid()
    real_table = state_store._Table.write

    def killed_midway(table, blob) -> None:  # killed (out of memory, say) with half its tables written
        real_table(table, blob)
        if os.getpid() != build:
            os.kill(os.getpid(), signal.SIGKILL)

    monkeypatch.setattr(state_store._Table, "write", killed_midway)
    capsys.readouterr()
    code, report = cli(tmp_path)
    assert code == 0
    assert report["inputs"]["state_warnings"] == [
        "incremental state not saved ([Errno 5] the process saving the state was killed by signal 9); "
        "what was written of it is removed, the previous state kept"
    ]
    assert state_files(tmp_path) == before and lock_is_free(tmp_path)
    monkeypatch.undo()
    code, again = cli(tmp_path)
    assert code == 0 and again["inputs"]["state_warnings"] == []
    assert without_warnings(again) == without_warnings(report) == without_warnings(cli(tmp_path, "--no-state")[1])


def test_a_bug_in_the_saving_process_fails_the_build_as_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from meta_supervisor.build import state_store

    (tmp_path / "traces.jsonl").write_text("".join(lines(1, 20)))

    def broken(table, blob) -> None:
        raise KeyError("a bug in the save")

    monkeypatch.setattr(state_store._Table, "write", broken)
    with pytest.raises(RuntimeError, match=r"(?s)saving the state failed in its process:.*KeyError: 'a bug in the save'"):
        cli(tmp_path)
    assert lock_is_free(tmp_path)
    assert [name for name in state_files(tmp_path) if name.startswith("report-")] == []  # nothing of the generation left


PROBE = """
import fcntl, pathlib, sys, time
marker, lock, result, go = map(pathlib.Path, sys.argv[1:])
deadline = time.monotonic() + {wait}
while not marker.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
with open(lock, "a") as handle:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result.write_text("free")
    except BlockingIOError:
        result.write_text("held")
go.write_text("go")
"""


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + WAIT
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_the_state_lock_is_held_until_the_saving_process_has_ended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another build probing the lock while the state is being saved aside finds it held."""
    saved_then_grown(tmp_path)
    marker, result, go = tmp_path / "saving", tmp_path / "probe-result", tmp_path / "go"
    (lock_path,) = (tmp_path / "state").glob("report-*.lock")

    def wait_for_the_probe(pid: int) -> None:
        marker.with_suffix(".tmp").write_text(str(pid))
        marker.with_suffix(".tmp").rename(marker)  # whole when the probe sees it
        wait_for(go)

    saves_seen(monkeypatch, tmp_path / "savers.log", wait_for_the_probe)
    probe = subprocess.Popen([sys.executable, "-c", PROBE.format(wait=WAIT), str(marker), str(lock_path), str(result), str(go)])
    try:
        code, report = cli(tmp_path)
    finally:
        probe.wait(WAIT)
    assert code == 0 and report["inputs"]["state_warnings"] == []
    assert int(marker.read_text()) != os.getpid() and result.read_text() == "held"
    assert lock_is_free(tmp_path)


DRIVER = """
import datetime as dt, os, pathlib, sys, time
from meta_supervisor.build import state_store
from meta_supervisor.cli import report as report_cli
marker = pathlib.Path(sys.argv[1])
real = state_store.SavedState.save
def save(store, *args, **kwargs):
    marker.with_suffix(".tmp").write_text(str(os.getpid()))
    marker.with_suffix(".tmp").rename(marker)  # whole when seen
    time.sleep({wait})  # the build is killed meanwhile
    return real(store, *args, **kwargs)
state_store.SavedState.save = save
sys.exit(report_cli.main(sys.argv[2:], now=lambda: dt.datetime(2026, 2, 1, tzinfo=dt.UTC)))
"""


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")  # a zombie has ended
    except (OSError, IndexError):
        return True


def test_a_killed_build_takes_its_saving_process_with_it(tmp_path: Path) -> None:
    before = saved_then_grown(tmp_path)
    marker = tmp_path / "saving"
    argv = ["--input", str(tmp_path / "traces.jsonl"), "--out", str(tmp_path / "out2"), "--state-dir", str(tmp_path / "state")]
    argv += ["--no-alpha-quality", "--quiet", "--workers", "2", "--kill-file", str(tmp_path / "killed.json")]
    build = subprocess.Popen([sys.executable, "-c", DRIVER.format(wait=WAIT), str(marker), *argv], cwd=Path(__file__).parents[1])
    try:
        wait_for(marker)
        saver = int(marker.read_text())
        assert saver != build.pid
    finally:
        build.send_signal(signal.SIGKILL)
        build.wait(WAIT)
    deadline = time.monotonic() + WAIT
    while not gone(saver) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gone(saver)
    assert state_files(tmp_path) == before and lock_is_free(tmp_path)  # the previous state, whole
    code, report = cli(tmp_path)
    assert code == 0 and without_warnings(report) == without_warnings(cli(tmp_path, "--no-state")[1])


def test_a_report_that_fails_to_assemble_lets_the_save_end_and_frees_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from meta_supervisor.cli import report as report_cli

    (tmp_path / "traces.jsonl").write_text("".join(lines(1, 20)))
    log = tmp_path / "savers.log"
    saves_seen(monkeypatch, log)

    def broken(*args, **kwargs):
        raise ValueError("a bug in the assembly")

    monkeypatch.setattr(report_cli, "build_report", broken)
    with pytest.raises(ValueError, match="a bug in the assembly"):
        cli(tmp_path)
    assert saver_pids(log) and os.getpid() not in saver_pids(log) and lock_is_free(tmp_path)
    monkeypatch.undo()
    code, report = cli(tmp_path)  # the state saved meanwhile is whole: used, nothing read again
    assert code == 0 and report["inputs"]["state_warnings"] == []
    assert without_warnings(report) == without_warnings(cli(tmp_path, "--no-state")[1])


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_save_that_fails_after_naming_its_state_keeps_that_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: str) -> None:
    """The summary renamed, then the folder's fsync fails: "not saved" is said, but the state the
    summary names is whole and is not removed (the next build continues it without a warning)."""
    from meta_supervisor.build import state_store

    (tmp_path / "traces.jsonl").write_text("".join(lines(1, 20)))
    real_atomic = state_store.write_atomically

    def then_fails(path: Path, text) -> None:
        real_atomic(path, text)
        if state_store._MAIN_NAME.match(path.name):
            raise OSError(5, "Input/output error", str(path.parent))

    monkeypatch.setattr(state_store, "write_atomically", then_fails)
    code, report = cli(tmp_path, "--workers", workers)
    assert code == 0 and report["inputs"]["state_warnings"][0].startswith("incremental state not saved ([Errno 5] Input/output error")
    monkeypatch.undo()
    with open(tmp_path / "traces.jsonl", "a") as handle:
        handle.write("".join(lines(21, 5)))
    code, again = cli(tmp_path, "--workers", workers)
    assert code == 0 and again["inputs"]["state_warnings"] == []
    assert without_warnings(again) == without_warnings(cli(tmp_path, "--no-state")[1])


@pytest.mark.parametrize("saved", [True, False])
def test_the_alpha_sections_cached_beside_the_save_go_with_its_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, saved: bool) -> None:
    """The alpha-quality and worth sections are cached under the new state's name while a forked
    process still saves that state: kept with it, removed with it when it is not saved."""
    from meta_supervisor.build import state_store

    (tmp_path / "prices").mkdir()
    for csv in MARKET_DATA.glob("*.csv"):
        shutil.copy(csv, tmp_path / "prices" / csv.name)
    shutil.copy(ROOT / "services" / "llm_prices.json", tmp_path / "prices.json")
    shutil.copy(ROOT / "agents" / "agents.toml", tmp_path / "agents.toml")
    (tmp_path / "traces.jsonl").write_text("".join(lines_for(hand_made_runs(), per_line=2)), encoding="utf-8")
    world = World(tmp_path, extra=["--workers", "2", "--full"])
    log = tmp_path / "savers.log"
    saves_seen(monkeypatch, log)
    if not saved:
        real_atomic = state_store.write_atomically

        def atomic(path: Path, text) -> None:
            if state_store._MAIN_NAME.match(path.name):
                raise OSError(28, "No space left on device")
            real_atomic(path, text)

        monkeypatch.setattr(state_store, "write_atomically", atomic)
    assert world.build() == 0 and os.getpid() not in saver_pids(log)
    cached = sorted(path.name for path in (tmp_path / "state").glob("*.alpha.bin"))
    summaries = list((tmp_path / "state").glob("report-????????????????.json"))
    if saved:
        (summary,) = summaries
        generation = json.loads(summary.read_text())["generation"]
        assert cached == [f"{summary.stem}-{generation}.alpha.bin"]
        report = json.loads((tmp_path / "out" / "meta_report.json").read_text())
        assert report["alpha_quality"] and report["inputs"]["state_warnings"] == []
    else:
        assert summaries == [] and cached == []
