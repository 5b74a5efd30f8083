"""The report's caches live in a folder of their own (``meta_supervisor/cache/``), apart from the files
people and the supervisor edit (``meta_supervisor/state/``). Caches an older version left in
``state/`` are removed by a build using the default folder (never one a running build holds), the
people's files stay, and the build is a full one whose report equals a build without any state."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from meta_supervisor import locations
from meta_supervisor.build.state_store import remove_old_location
from meta_supervisor.cli import report as report_cli
from services.state_files import exclusive_lock
from tests.fixtures.report.otlp_builder import Llm, Run, lines_for

NOW = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
KEY, OTHER = "0123456789abcdef", "fedcba9876543210"
PEOPLES_FILES = ("killed_agents.json", "agent_status.json", "supervisor_audit.jsonl", ".gitkeep", "report-notes.txt")


def old_state_folder(folder: Path) -> None:
    """A state folder as an older version left it: people's files beside two keys' caches."""
    folder.mkdir(parents=True)
    for name in PEOPLES_FILES:
        (folder / name).write_text("{}\n")
    for key in (KEY, OTHER):
        for name in (f"report-{key}.json", f"report-{key}-g1.seen.bin", f"report-{key}-g1.alpha.bin", f"report-{key}-g0.checkpoint.json"):
            (folder / name).write_bytes(b"x")
        (folder / f"report-{key}.lock").write_text("123\n")
    (folder / f".report-{KEY}.json.tmp").write_bytes(b"half")


def test_the_default_cache_folder_is_not_the_state_folder() -> None:
    assert report_cli.DEFAULT_STATE_DIR == locations.DEFAULT_CACHE_DIR == locations.PACKAGE_DIR / "cache"
    assert locations.OLD_CACHE_DIR == locations.STATE_DIR == locations.PACKAGE_DIR / "state"


def test_old_caches_are_removed_and_peoples_files_kept(tmp_path: Path) -> None:
    old = tmp_path / "state"
    old_state_folder(old)
    assert remove_old_location(old) == 2
    assert sorted(path.name for path in old.iterdir()) == sorted(PEOPLES_FILES)
    assert remove_old_location(old) == 0
    assert remove_old_location(tmp_path / "missing") == 0


def test_a_set_whose_lock_is_held_is_left_alone(tmp_path: Path) -> None:
    old = tmp_path / "state"
    old_state_folder(old)
    with exclusive_lock(old / f"report-{OTHER}.lock", timeout=0):  # an older checkout's build, running
        remove_old_location(old)
    left = sorted(path.name for path in old.iterdir() if path.name not in PEOPLES_FILES)
    names = (".json", "-g1.seen.bin", "-g1.alpha.bin", "-g0.checkpoint.json", ".lock")
    assert left == sorted(f"report-{OTHER}{name}" for name in names)


def _build(tmp_path: Path, *extra: str) -> tuple[int, dict]:
    out = tmp_path / "out"
    argv = [
        *("--input", str(tmp_path / "traces.jsonl"), "--out", str(out), "--kill-file", str(tmp_path / "killed.json")),
        *("--audit-log", str(tmp_path / "audit.jsonl"), "--no-alpha-quality", "--format", "json", "--quiet", "--workers", "1"),
        *extra,
    ]
    code = report_cli.main(argv, now=lambda: NOW)
    return code, json.loads((out / "meta_report.json").read_text()) if code == 0 else {}


def test_a_build_with_the_default_folder_tidies_the_old_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = [Run("momentum", trace, start_ms=trace * 60_000, duration_ms=5 + trace, llm=[Llm()]) for trace in range(1, 20)]
    (tmp_path / "traces.jsonl").write_text("".join(lines_for(runs, per_line=2)))
    old, new = tmp_path / "state", tmp_path / "cache"
    old_state_folder(old)
    monkeypatch.setattr(report_cli, "DEFAULT_STATE_DIR", new)
    monkeypatch.setattr(report_cli, "OLD_CACHE_DIR", old)
    monkeypatch.delenv(report_cli.ENV_STATE_DIR, raising=False)

    code, report = _build(tmp_path)
    assert code == 0
    assert sorted(path.name for path in old.iterdir()) == sorted(PEOPLES_FILES)
    assert any(path.name.startswith("report-") for path in new.iterdir())
    code, without_state = _build(tmp_path, "--no-state")
    assert code == 0 and report == without_state


def test_a_folder_named_by_the_user_is_never_tidied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ALPHATRACE_REPORT_STATE_DIR (or --state-dir) naming the old folder keeps using it as it is."""
    runs = [Run("momentum", trace, start_ms=trace * 60_000, duration_ms=5 + trace, llm=[Llm()]) for trace in range(1, 5)]
    (tmp_path / "traces.jsonl").write_text("".join(lines_for(runs, per_line=2)))
    old = tmp_path / "state"
    old_state_folder(old)
    before = sorted(path.name for path in old.iterdir())
    monkeypatch.setattr(report_cli, "OLD_CACHE_DIR", old)
    monkeypatch.setenv(report_cli.ENV_STATE_DIR, os.fspath(tmp_path / "elsewhere"))
    assert _build(tmp_path)[0] == 0
    monkeypatch.delenv(report_cli.ENV_STATE_DIR)
    assert _build(tmp_path, "--state-dir", str(tmp_path / "elsewhere"))[0] == 0
    assert sorted(path.name for path in old.iterdir()) == before
