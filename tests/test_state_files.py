"""The one atomic write (durable: the folder is fsynced after the rename) and the one lock helper
(bounded wait, names its holder, never inherited by a forked child)."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from services import state_files


def record_fsyncs(monkeypatch: pytest.MonkeyPatch, target: Path) -> list[tuple[str, str | None]]:
    """Every ``os.fsync``: ("dir", the target's content then) or ("file", None)."""
    calls: list[tuple[str, str | None]] = []
    real = os.fsync

    def recording(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            assert os.path.samefile(f"/proc/self/fd/{fd}", target.parent)
            calls.append(("dir", target.read_text() if target.exists() else None))
        else:
            calls.append(("file", None))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    return calls


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_write_atomically_fsyncs_the_file_then_the_folder_after_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "sub" / "state.json"
    calls = record_fsyncs(monkeypatch, target)
    state_files.write_atomically(target, "one")
    assert calls == [("file", None), ("dir", "one")]  # the folder synced once the new name is in it
    target.chmod(0o600)
    state_files.write_atomically(target, "two")
    assert calls[2:] == [("file", None), ("dir", "two")]
    assert target.stat().st_mode & 0o777 == 0o600  # the mode is kept
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]  # no temp file left


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_every_state_writer_uses_the_durable_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The report files and the report's incremental state go through the same write."""
    from meta_supervisor.build import alpha_cache, state_store
    from meta_supervisor.render import outputs as report_outputs

    assert report_outputs.write_atomically is state_store.write_atomically is alpha_cache.write_atomically
    assert report_outputs.write_atomically is state_files.write_atomically
    target = tmp_path / "out" / report_outputs.REPORT_JSON
    calls = record_fsyncs(monkeypatch, target)
    report_outputs.write_report({"x": 1}, target.parent, ("json",))
    assert calls[-1] == ("dir", '{\n  "x": 1\n}\n')


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_the_report_files_share_one_folder_fsync_after_the_last_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build with nothing new writes only the three report files: each is fsynced, the folder once,
    when all three new names are in it (four fsyncs, not six)."""
    from meta_supervisor.render import html, markdown
    from meta_supervisor.render import outputs as report_outputs

    monkeypatch.setattr(markdown, "render_markdown", lambda report: "# report\n")  # a full report's rendering is not the point
    monkeypatch.setattr(html, "html_pieces", lambda report: iter(["<html>", "</html>"]))
    target = tmp_path / "out" / report_outputs.REPORT_HTML
    calls = record_fsyncs(monkeypatch, target)
    written = report_outputs.write_report({"x": 1}, target.parent)
    assert [kind for kind, _ in calls] == ["file", "file", "file", "dir"]
    assert calls[-1][1] == target.read_text() and all(path.exists() for path in written) and len(written) == 3
    assert sorted(p.name for p in target.parent.iterdir()) == sorted(path.name for path in written)  # no temp file left


def test_a_failed_write_leaves_the_old_content_and_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "state.json"
    state_files.write_atomically(target, "old")

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError):
        state_files.write_atomically(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_pieces_are_written_as_they_come_and_a_failure_while_making_them_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    big = {"agents": {f"a{i}": {"x": [i, 1.5, None, "\u00e9\u2028"], "y": {}} for i in range(3000)}, "n": float("nan")}
    state_files.write_atomically(target, state_files.json_pieces(big, depth=3, allow_nan=True))
    assert target.read_text(encoding="utf-8") == json.dumps(big, separators=(",", ":"), allow_nan=True)
    for depth in range(4):  # any depth: the text json.dumps makes
        assert "".join(state_files.json_pieces(big, depth, allow_nan=True)) == json.dumps(big, separators=(",", ":"), allow_nan=True)
    assert "".join(state_files.json_pieces({1: 2, "a": {}})) == json.dumps({1: 2, "a": {}}, separators=(",", ":"))

    def failing():
        yield "{"
        raise ValueError("Out of range float values are not JSON compliant")

    with pytest.raises(ValueError):
        state_files.write_atomically(target, failing())
    assert json.loads(target.read_text(encoding="utf-8"))["agents"]["a7"]["x"][0] == 7
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_values_made_by_default_as_the_json_is_written_are_the_text_json_dumps_makes() -> None:
    """A state's tallies are made as its JSON is written (``default``: ``state_store._encoded``); an
    entry holding one is written as json.dumps writes it, whether orjson (vouched for by the native
    core's check) or json writes the value ``default`` gives."""
    from meta_supervisor.native_core import json_check

    def later(value):
        return lambda: value

    def default(item):
        if callable(item):
            return item()
        raise TypeError(f"Object of type {type(item).__name__} is not JSON serializable")

    made = {"a": 1, "b": [1.5, -0.0, "\u00e9", None, 2**70], "c": {"d": float("inf")}}
    big = {"agents": {f"a{i}": {"tally": later(made), "n": i, "x": [i]} for i in range(70)}, "top": later([1, 2]), "t": True}
    text = json.dumps(big, separators=(",", ":"), allow_nan=True, default=default)
    for plain in (json_check(), None):
        for depth in range(4):
            assert "".join(state_files.json_pieces(big, depth, plain=plain, allow_nan=True, default=default)) == text
    with pytest.raises(TypeError):
        "".join(state_files.json_pieces({"a": {"b": object()}}, 1, plain=json_check(), default=default))


def test_the_report_json_written_in_pieces_is_the_text_json_dumps_makes(tmp_path: Path) -> None:
    from meta_supervisor.render import outputs as report_outputs

    report = {"agents": {f"agent_{i:04d}": {"runs": i, "latency": [0.5, None], "name": "\u00e9"} for i in range(2000)}, "e": []}
    report_outputs.write_report(report, tmp_path, ("json",))
    expected = json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    assert (tmp_path / "meta_report.json").read_text(encoding="utf-8") == expected == report_outputs.report_json(report)


def test_lock_times_out_naming_its_holder(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    waits: list[str] = []
    with state_files.exclusive_lock(lock):
        assert lock.read_text().split() == [str(os.getpid())]
        with pytest.raises(state_files.LockTimeout) as caught:
            with state_files.exclusive_lock(lock, timeout=0.2, on_wait=waits.append):
                pytest.fail("the lock is held")  # pragma: no cover
    assert f"process {os.getpid()}" in str(caught.value) and waits == [f"process {os.getpid()}"]
    with state_files.exclusive_lock(lock, timeout=0):  # released
        pass


def test_a_forked_child_does_not_keep_the_lock(tmp_path: Path) -> None:
    """The child of a build that holds the lock outlives it: the lock must still be free then."""
    lock = tmp_path / "x.lock"
    read_end, write_end = os.pipe()
    with state_files.exclusive_lock(lock):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child: waits until the parent lets it go
            os.close(write_end)
            os.read(read_end, 1)
            os._exit(0)
    os.close(read_end)
    try:
        with state_files.exclusive_lock(lock, timeout=5):  # the parent released it; the child still runs
            pass
    finally:
        os.close(write_end)
        os.waitpid(pid, 0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_the_report_state_is_on_disk_before_the_summary_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every table of a new state is fsynced before its summary is written; the folder after that."""
    from meta_supervisor.build.dispatch import build_inputs
    from meta_supervisor.build.options import BuildOptions
    from services.pricing import PriceTable
    from tests.fixtures.report.otlp_builder import Run, lines_for

    (tmp_path / "traces.jsonl").write_text("".join(lines_for([Run("a", trace) for trace in range(1, 5)])))
    synced: list[str] = []
    real = os.fsync

    def recording(fd: int) -> None:
        synced.append(os.path.basename(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    state = tmp_path / "state"
    build_inputs(BuildOptions(inputs=[str(tmp_path / "traces.jsonl")], prices=PriceTable.load(), state_dir=state, workers=1))
    (summary,) = state.glob("report-????????????????.json")
    tables = [path.name for path in state.glob("report-*.bin")]
    assert tables and all(name in synced for name in tables)
    summary_write = max(index for index, name in enumerate(synced) if name.startswith(f".{summary.name}."))  # its temp file
    assert all(synced.index(name) < summary_write for name in tables)
    assert synced[summary_write + 1] == "state"  # the folder, once the summary has its name


def test_a_lock_file_removed_while_waited_for_is_not_a_lock(tmp_path: Path) -> None:
    """The last holder of a pruned state set removes its lock file: a build that waited on that file
    locks the one there now, so no two builds ever hold "the" lock at once."""
    import threading

    lock = tmp_path / "x.lock"
    waiting, got, release = threading.Event(), threading.Event(), threading.Event()

    def waiter() -> None:
        with state_files.exclusive_lock(lock, timeout=60, on_wait=lambda holder: waiting.set()):
            got.set()
            release.wait(60)

    thread = threading.Thread(target=waiter)
    with state_files.exclusive_lock(lock):
        thread.start()
        assert waiting.wait(60)
        lock.unlink()
    try:
        assert got.wait(60)
        with pytest.raises(state_files.LockTimeout):  # the waiter holds the lock at the path
            with state_files.exclusive_lock(lock, timeout=0):
                pytest.fail("two holders")  # pragma: no cover
    finally:
        release.set()
        thread.join()
