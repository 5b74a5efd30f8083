"""The report never waits forever for its state, never loses its output over it, never trusts it blindly:
a busy state lock is waited for a bounded time and names its holder; a read-only, missing or full
state folder means a warning and the full build's report; a saved state that cannot be true (offsets
past the end of a file, a rewritten file, ranges out of order, counts larger than their tables) is
not used, and the report says why."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import threading
from pathlib import Path

import pytest

from meta_supervisor.assemble.report import KillSwitchState, build_report
from meta_supervisor.build.dispatch import build_inputs
from meta_supervisor.build.options import BuildOptions
from meta_supervisor.cli import report as report_cli
from services.pricing import PriceTable
from tests.fixtures.report.otlp_builder import Llm, Run, lines_for

NOW = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
PRICES = PriceTable.load()


def lines(first: int, count: int) -> list[str]:
    runs = [
        Run(["momentum", "meanrev", "analyst"][trace % 3], trace, start_ms=trace * 60_000, duration_ms=5 + trace * 37 % 4000, llm=[Llm()])
        for trace in range(first, first + count)
    ]
    return lines_for(runs, per_line=2)


def cli(tmp_path: Path, *extra: str) -> tuple[int, dict]:
    out = tmp_path / "out"
    code = report_cli.main(
        [
            *("--input", str(tmp_path / "traces.jsonl"), "--out", str(out), "--kill-file", str(tmp_path / "killed.json")),
            *("--audit-log", str(tmp_path / "audit.jsonl"), "--no-alpha-quality", "--format", "json", "--quiet", "--workers", "1"),
            *extra,
        ],
        now=lambda: NOW,
    )
    return code, json.loads((out / "meta_report.json").read_text()) if code == 0 else {}


def full_report(tmp_path: Path) -> dict:
    code, report = cli(tmp_path, "--no-state")
    assert code == 0 and report["inputs"]["state_warnings"] == []
    return report


def without_warnings(report: dict) -> dict:
    report = json.loads(json.dumps(report))
    report["inputs"].pop("state_warnings")
    return report


def table_write_fails(monkeypatch: pytest.MonkeyPatch, error: OSError) -> None:
    """Every state table's write raises ``error`` after part of it (16 bytes) reached the disk."""
    from meta_supervisor.build import state_store

    real_write = state_store._Table.write

    def write_some(table, blob) -> None:
        real_write(table, bytes(memoryview(blob).cast("B")[:16]))
        raise error

    monkeypatch.setattr(state_store._Table, "write", write_some)


# --- the state lock -------------------------------------------------------------------------------


@contextlib.contextmanager
def state_lock_held(lock_path: Path):
    """The state lock held as another build holds it (another open file: flock conflicts), its pid
    4242 written in it, for the ``with`` block (at most 60 s)."""
    held, release = threading.Event(), threading.Event()

    def other_build() -> None:
        with open(lock_path, "r+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            lock.write("4242\n")
            lock.flush()
            held.set()
            release.wait(60)

    holder = threading.Thread(target=other_build)
    holder.start()
    try:
        assert held.wait(60)
        yield
    finally:
        release.set()
        holder.join(60)


def test_a_busy_state_is_waited_for_a_bounded_time_then_names_its_holder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "traces.jsonl").write_text("".join(lines(1, 10)))
    assert cli(tmp_path, "--state-dir", str(tmp_path / "state"))[0] == 0
    (lock_path,) = (tmp_path / "state").glob("report-*.lock")
    with state_lock_held(lock_path):
        monkeypatch.setenv("ALPHATRACE_STATE_LOCK_TIMEOUT", "0.2")
        capsys.readouterr()
        code, _ = cli(tmp_path, "--state-dir", str(tmp_path / "state"))
        err = capsys.readouterr().err
        assert code == 3, err
        assert "note: waiting up to 0.2 s" in err
        assert "error: the incremental state is in use by process 4242, which is no longer running" in err
        assert "--no-state" in err and err.count("error:") == 1
    assert cli(tmp_path, "--state-dir", str(tmp_path / "state"))[0] == 0  # free again


@pytest.mark.parametrize("value", ["soon", "-1", "nan", "inf"])
def test_a_bad_lock_timeout_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, value: str
) -> None:
    (tmp_path / "traces.jsonl").write_text("".join(lines(1, 2)))
    monkeypatch.setenv("ALPHATRACE_STATE_LOCK_TIMEOUT", value)
    assert cli(tmp_path, "--state-dir", str(tmp_path / "state"))[0] == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ALPHATRACE_STATE_LOCK_TIMEOUT=") and err.count("\n") == 1


# --- a state folder that cannot be used or written --------------------------------------------------


def read_only(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Opening anything in ``folder`` for writing fails as on a read-only file system (the tests may
    run as root, whom permissions do not stop)."""
    real_open = os.open
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def guarded(path, flags, *args, **kwargs):
        if flags & writing and Path(os.fsdecode(path)).resolve().is_relative_to(folder.resolve()):
            raise OSError(errno.EROFS, "Read-only file system", os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded)


@pytest.mark.parametrize("how", ["not a folder", "read-only"])
def test_an_unusable_state_folder_still_gives_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, how: str
) -> None:
    traces = tmp_path / "traces.jsonl"
    traces.write_text("".join(lines(1, 10)))
    state = tmp_path / "state"
    if how == "not a folder":
        state.write_text("a file where the state folder should be")
    else:
        assert cli(tmp_path, "--state-dir", str(state))[0] == 0
        with open(traces, "a") as handle:
            handle.write("".join(lines(11, 5)))
        read_only(monkeypatch, state)
    capsys.readouterr()
    code, report = cli(tmp_path, "--state-dir", str(state))
    assert code == 0
    (warning,) = report["inputs"]["state_warnings"]
    assert warning.startswith(f"incremental state in {state} not used (") and "nothing saved" in warning
    assert f"warning: {warning}" in capsys.readouterr().err
    monkeypatch.undo()
    assert without_warnings(report) == without_warnings(full_report(tmp_path))


@pytest.mark.parametrize("fails", ["a table", "the checkpoint summary", "the state summary"])
def test_a_full_disk_while_saving_keeps_the_report_and_the_previous_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, fails: str
) -> None:
    from meta_supervisor.build import state_store

    traces = tmp_path / "traces.jsonl"
    (tmp_path / "traces-2026-01-01T00-00-00.000.jsonl").write_text("".join(lines(1, 10)))  # a checkpoint is written before the last file
    traces.write_text("".join(lines(11, 10)))
    state = tmp_path / "state"
    inputs = ("--input", str(tmp_path / "traces-2026-01-01T00-00-00.000.jsonl"), "--state-dir", str(state))
    assert cli(tmp_path, *inputs)[0] == 0
    before = sorted(path.name for path in state.iterdir() if path.suffix != ".record")  # the report's record: cli.report_record
    with open(traces, "a") as handle:
        handle.write("".join(lines(21, 5)))
    no_space = OSError(errno.ENOSPC, "No space left on device")
    if fails == "a table":
        table_write_fails(monkeypatch, no_space)
    else:
        real_atomic = state_store.write_atomically
        target = "checkpoint.json" if fails == "the checkpoint summary" else ".json"

        def atomic(path: Path, text) -> None:
            if path.name.endswith(target) and (target != ".json" or state_store._MAIN_NAME.match(path.name)):
                raise no_space
            real_atomic(path, text)

        monkeypatch.setattr(state_store, "write_atomically", atomic)
    capsys.readouterr()
    code, report = cli(tmp_path, "--full", *inputs)
    assert code == 0
    warnings = report["inputs"]["state_warnings"]
    assert warnings and all("not saved ([Errno 28] No space left on device)" in warning for warning in warnings)
    assert "warning: " in capsys.readouterr().err
    after = sorted(path.name for path in state.iterdir() if path.suffix != ".record")
    if fails == "the checkpoint summary":  # the state itself was saved, without a checkpoint
        (main,) = state.glob("report-????????????????.json")
        summary = json.loads(main.read_text())
        assert summary["checkpoint"] is None and all(summary["generation"] in name for name in after if name.endswith(".bin"))
        from meta_supervisor.build.state_checks import SPILLED_TABLES

        # the previous checkpoint (4 tables, their spilled tiers, a summary) went with its state
        assert len(after) == len(before) - 5 - len(SPILLED_TABLES)
    else:
        assert after == before  # nothing half-written left, the previous state kept
    monkeypatch.undo()
    reference = cli(tmp_path, "--no-state", "--input", str(tmp_path / "traces-2026-01-01T00-00-00.000.jsonl"))[1]
    assert without_warnings(report) == without_warnings(reference)
    code, again = cli(tmp_path, *inputs)  # disk space back: the previous state is continued
    assert code == 0 and again["inputs"]["state_warnings"] == [] and without_warnings(again) == without_warnings(reference)


@pytest.mark.parametrize("disk_full", [False, True])
def test_what_killed_saves_left_is_removed_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, disk_full: bool) -> None:
    """Temp files and tables of generations no summary names (a build killed while saving) go before
    a new state is written, so they neither pile up nor keep a full disk full."""
    from meta_supervisor.build import state_store

    (tmp_path / "traces.jsonl").write_text("".join(lines(1, 5)))
    state = tmp_path / "state"
    assert cli(tmp_path, "--state-dir", str(state))[0] == 0
    (key,) = [path.name[len("report-") : -len(".json")] for path in state.glob("report-????????????????.json")]
    named = sorted(path.name for path in state.iterdir() if path.suffix != ".record")  # the report's record: cli.report_record
    left = [
        state / f".report-{key}.json.x1y2.tmp",
        state / f".report-{key}-0123456789ab.checkpoint.json.z.tmp",
        state / f"report-{key}-0123456789ab.seen.bin",
        state / f"report-{key}-0123456789ab.latencies.bin",
    ]
    for path in left:
        path.write_text("half")
    if disk_full:

        def no_space(table, blob) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(state_store._Table, "write", no_space)
    code, report = cli(tmp_path, "--state-dir", str(state), "--full")
    assert code == 0 and bool(report["inputs"]["state_warnings"]) == disk_full
    assert not any(path.exists() for path in left)
    if disk_full:
        assert sorted(path.name for path in state.iterdir() if path.suffix != ".record") == named  # the previous state, as it was


# --- a state that cannot be true ------------------------------------------------------------------


def build(folder: Path, state: Path | None) -> tuple[dict, object]:
    data, stats = build_inputs(BuildOptions(inputs=[str(folder)], prices=PRICES, state_dir=state, workers=1, alpha_signals=False))
    return build_report(data, PRICES, KillSwitchState(path="k"), NOW), stats


def edit_summary(state: Path, change) -> None:
    (path,) = state.glob("report-????????????????.json")
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def offset_past_the_end(data: dict) -> None:
    data["files"][-1]["offset"] = data["files"][-1]["size"] + 700


def latencies_swapped(data: dict) -> None:
    first, second = data["agent_order"][:2]
    agents = data["agents"]
    agents[first]["latency_bytes"], agents[second]["latency_bytes"] = agents[second]["latency_bytes"], agents[first]["latency_bytes"]


def too_many_spans(data: dict) -> None:
    data["seen_count"] = data["digests"]["seen"][0] // 8 + 1


def one_file_twice(data: dict) -> None:
    data["files"].insert(0, dict(data["files"][-1], path=data["files"][-1]["path"] + ".old"))


def tally_not_an_object(data: dict) -> None:  # read an agent at a time (state_store.summary_text): checked first
    data["agents"][data["agent_order"][1]]["tally"] = [1, 2]


def tally_field_missing(data: dict) -> None:  # found as the agent's tally is made
    del data["agents"][data["agent_order"][-1]]["tally"]["day_runs"]


def tally_field_of_another_shape(data: dict) -> None:  # found as the agent's tally is decoded (TallyState)
    data["agents"][data["agent_order"][0]]["tally"]["day_runs"] = {"20480": [1, 0, 0, 0, 0]}


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (offset_past_the_end, "is past the end of the file"),
        (latencies_swapped, "do not follow the previous agent's"),
        (too_many_spans, "do not fit the seen table"),
        (one_file_twice, "two saved cursors are for one file"),
        (tally_not_an_object, "the tally of 'analyst' is not an object"),
        (tally_field_missing, "saved state unreadable"),
        (tally_field_of_another_shape, "Expected `array`, got `object` - at `$.day_runs`"),
    ],
)
def test_a_state_that_cannot_be_true_is_rebuilt_and_the_report_says_why(tmp_path: Path, damage, why: str) -> None:
    folder, state = tmp_path / "traces", tmp_path / "state"
    folder.mkdir()
    active = folder / "traces.jsonl"
    active.write_text("".join(lines(1, 30)))
    build(folder, state)
    edit_summary(state, damage)
    with open(active, "a") as handle:
        handle.write("".join(lines(31, 20)))
    report, stats = build(folder, state)
    full, _ = build(folder, None)
    assert without_warnings(report) == without_warnings(full)
    assert stats.mode == "full"
    (warning,) = report["inputs"]["state_warnings"]
    assert warning.startswith("incremental state not trusted, everything read again: ") and why in warning, warning
    again, stats = build(folder, state)  # and the state saved then is trusted
    assert stats.mode == "unchanged" and again == full


def test_a_file_rewritten_with_its_size_and_time_kept_is_read_again(tmp_path: Path) -> None:
    """Its identity is also its first bytes: not "unchanged" because inode, size and mtime are."""
    folder, state = tmp_path / "traces", tmp_path / "state"
    folder.mkdir()
    active = folder / "traces.jsonl"
    active.write_text("".join(lines(1, 30)))
    build(folder, state)
    before = active.stat()
    with open(active, "r+") as handle:  # the same inode, as many bytes, other agents
        handle.write(active.read_text().replace("meanrev", "meanrew"))
    os.utime(active, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert active.stat().st_size == before.st_size and active.stat().st_ino == before.st_ino
    report, stats = build(folder, state)
    assert report == build(folder, None)[0] and "meanrew" in report["agents"]
    assert "other first bytes" in stats.rebuild_reason


def test_a_checkpoint_further_than_the_state_after_it_is_not_used(tmp_path: Path) -> None:
    folder, state = tmp_path / "traces", tmp_path / "state"
    folder.mkdir()
    backup, active = folder / "traces-2026-01-01T00-00-00.000.jsonl", folder / "traces.jsonl"
    backup.write_text("".join(lines(1, 10)))
    active.write_text("".join(lines(11, 10)))
    build(folder, state)
    (checkpoint,) = state.glob("report-*.checkpoint.json")
    data = json.loads(checkpoint.read_text())
    data["files"][0]["offset"] += 10_000
    data["files"][0]["size"] += 10_000
    checkpoint.write_text(json.dumps(data))
    with open(active, "r+") as handle:  # truncated: the checkpoint would be restored
        handle.truncate(100)
    report, stats = build(folder, state)
    assert without_warnings(report) == without_warnings(build(folder, None)[0])
    (warning,) = report["inputs"]["state_warnings"]
    assert stats.mode == "full" and "further" in warning and "than the state after it" in warning


def test_a_file_that_grew_while_it_was_read_is_continued_without_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The collector appends while a build reads: the build reads past the size it took first. Its
    state must still hold (offset <= size), so the next build continues it and warns of nothing."""
    from meta_supervisor.build import file_reader as trace_files
    from meta_supervisor.reading import inputs as trace_inputs

    folder, state = tmp_path / "traces", tmp_path / "state"
    folder.mkdir()
    active = folder / "traces.jsonl"
    active.write_text("".join(lines(1, 30)))

    def taken_earlier(path):  # the size as it was a moment before the last 500 bytes came
        ident = trace_inputs.identity_of(path)
        return trace_inputs.FileIdentity(ident.device, ident.inode, ident.size - 500, ident.mtime_ns - 1)

    monkeypatch.setattr(trace_files, "identity_of", taken_earlier)
    build(folder, state)
    monkeypatch.undo()
    with open(active, "a") as handle:
        handle.write("".join(lines(31, 10)))
    report, stats = build(folder, state)
    assert stats.mode == "incremental" and stats.warnings == []
    assert report == build(folder, None)[0]
