"""Incremental builds give exactly the report of a full rebuild: appends in several steps (one ending
mid-line), a collector rotation in the middle, a truncated and a replaced file, a removed backup."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
from pathlib import Path

import pytest

from meta_supervisor.assemble.report import KillSwitchState, build_report
from meta_supervisor.build.dispatch import build_inputs
from meta_supervisor.build.options import BuildOptions, BuildStats
from services.market_data import CsvMarketData
from services.pricing import PriceTable
from tests.fixtures.report.otlp_builder import Llm, Run, Signal, Tool, lines_for

NOW = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
PRICES = PriceTable.load()
MARKET = CsvMarketData(Path(__file__).parent / "fixtures" / "alpha" / "prices")  # AAA, BBB, GAP in January 2024
AS_OF = [f"2024-01-{day:02d}" for day in (2, 3, 4, 5, 6, 8, 9, 10, 11, 12)]


def signals(rng: random.Random) -> list[Signal]:
    """Scorable signals on the hand-made prices; few (symbol, as-of) pairs, so later runs supersede
    earlier ones, some at the very same event time (the span decides)."""
    out = []
    for symbol in rng.sample(["AAA", "BBB", "GAP", "ZZZ"], 2):
        out.append(
            Signal(
                symbol,
                rng.choice(["up", "down", "flat"]),
                prob_up=rng.choice([0.2, 0.5, 0.8]),
                score=rng.uniform(-1, 1),
                as_of=rng.choice(AS_OF),
                tradable=rng.choice([None, True, False]),
                time_ns=rng.choice([None, 1_767_225_600_000_000_000]),
            )
        )
    return out


def workload(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    runs = []
    for trace in range(1, count + 1):
        outcome = rng.choice(["ok", "ok", "ok", "error", "killed"])
        calls = (
            []
            if outcome == "killed"
            else [
                Llm(tokens_in=rng.randint(10, 900), tokens_out=rng.randint(1, 90), cached=rng.choice([None, 5]))
                for _ in range(rng.randint(0, 2))
            ]
        )
        runs.append(
            Run(
                rng.choice(["momentum", "meanrev", "analyst"]),
                trace,
                start_ms=trace * 3_600_000,
                duration_ms=rng.randint(5, 5000),
                outcome=outcome,
                llm=calls,
                signals=[(rng.choice(["SPX", "NDX"]), rng.choice(["up", "down", "flat"])), *signals(rng)] if outcome == "ok" else [],
                totals=outcome != "killed",
                kill_reason="paused" if outcome == "killed" else None,
                losses=(trace // 7, trace % 3),  # loss counters: the largest per process must survive every merge
                tools=tool_calls(random.Random(trace)) if outcome != "killed" else [],
            )
        )
    return lines_for(runs, per_line=3)


def tool_calls(rng: random.Random) -> list[Tool]:
    """execute_tool spans (their own random numbers: the rest of the workload stays as it was)."""
    names = ["get_quote", "compute_var", "place_order"]
    return [Tool(rng.choice(names), error=rng.random() < 0.2, duration_ms=rng.randint(1, 900)) for _ in range(rng.randint(0, 3))]


def build(folder: Path, state_dir: Path | None, workers: int = 1, **options) -> tuple[dict, BuildStats]:
    """The report of the traces in folder (incremental when state_dir is given) and the build's stats."""
    data, stats = build_inputs(BuildOptions(inputs=[str(folder)], prices=PRICES, state_dir=state_dir, workers=workers, **options))
    return build_report(data, PRICES, KillSwitchState(path="k"), NOW, market=MARKET), stats


def one_file(tmp_path: Path, lines: list[str]) -> tuple[Path, Path, Path]:
    """A traces/ folder whose active file holds lines, and the state folder's path (not made)."""
    folder = tmp_path / "traces"
    folder.mkdir()
    active = folder / "traces.jsonl"
    active.write_text("".join(lines))
    return folder, tmp_path / "state", active


def append(path: Path, text: str | list[str]) -> None:
    with open(path, "a") as handle:
        handle.write(text if isinstance(text, str) else "".join(text))


def truncate(path: Path, size: int) -> None:
    """Same inode, fewer bytes (a collector restart without rotation)."""
    with open(path, "r+") as handle:
        handle.truncate(size)


def without_state_warnings(report: dict, stats: BuildStats, warned: bool) -> dict:
    """The report less ``inputs.state_warnings`` (the only part a full build without state lacks),
    after checking they are the build's warnings, and there are some only when expected."""
    warnings = report["inputs"].pop("state_warnings")
    assert warnings == stats.warnings and bool(warnings) == warned, warnings
    return report


def assert_same_as_full(folder: Path, state_dir: Path, warned: bool = False) -> str:
    incremental, stats = build(folder, state_dir)
    full, full_stats = build(folder, None)
    assert without_state_warnings(incremental, stats, warned) == without_state_warnings(full, full_stats, False)  # alpha_quality included
    assert incremental["alpha_quality"] is not None
    return stats.mode


def test_appends_rotation_and_nothing_new(tmp_path: Path) -> None:
    lines = workload(120)
    chunks = [lines[:10], lines[10:17], lines[17:30], lines[30:]]
    folder, state, active = one_file(tmp_path, chunks[0])
    assert assert_same_as_full(folder, state) == "full"
    assert assert_same_as_full(folder, state) == "unchanged"
    # an append that ends in the middle of a line (the exporter is writing)
    text = "".join(chunks[1])
    append(active, text[: len(text) // 2])
    assert assert_same_as_full(folder, state) == "incremental"
    append(active, text[len(text) // 2 :])
    assert assert_same_as_full(folder, state) == "incremental"
    # rotation: the active file is renamed to a backup (more was written to it first), a new one starts
    append(active, chunks[2][:5])
    os.rename(active, folder / "traces-2026-11-20T10-00-00.000-size.jsonl")
    active.write_text("\n" + "".join(chunks[2][5:]))
    assert assert_same_as_full(folder, state) == "incremental"
    append(active, chunks[3])
    assert assert_same_as_full(folder, state) == "incremental"
    assert assert_same_as_full(folder, state) == "unchanged"
    final, _ = build(folder, state)
    assert final["fleet"]["runs"] + final["fleet"]["skipped_killed"] == 120
    alpha = final["alpha_quality"]  # the section compared above is not a trivial one
    assert alpha["duplicates_dropped"] > 20 and alpha["unusable_signals"] > 50
    scored = sum(agent["horizons"]["1"]["scored"] for agent in alpha["agents"].values())
    no_data = sum(agent["horizons"]["1"]["no_data"] for agent in alpha["agents"].values())
    assert scored > 20 and no_data > 0


def two_files(tmp_path: Path, seed: int = 3, runs: int = 80) -> tuple[Path, Path, Path, Path, list[str]]:
    """A rotated backup and an active file (state folder apart); the first full build done."""
    lines = workload(runs, seed=seed)
    folder, state, active = one_file(tmp_path, lines[12:18])
    backup = folder / "traces-2026-11-20T10-00-00.000.jsonl"
    backup.write_text("".join(lines[:12]))
    stats = same_as_full(folder, state)
    assert stats.mode == "full" and stats.checkpoint.startswith("written")
    return folder, state, backup, active, lines


def same_as_full(folder: Path, state_dir: Path, warned: bool = False):
    """The incremental build's stats, after checking its report equals a full rebuild's (and that it
    warns about the state only when ``warned``)."""
    incremental, stats = build(folder, state_dir)
    full, full_stats = build(folder, None)
    assert without_state_warnings(incremental, stats, warned) == without_state_warnings(full, full_stats, False)
    return stats


def assert_only_active_read_again(stats, active: Path) -> None:
    assert stats.mode == "incremental"
    assert stats.rebuild_reason.startswith("only the last input's share read again, from the checkpoint before it: ")
    assert stats.files_read == 1 and stats.bytes_read == active.stat().st_size  # the backup is not read


def replace_active(active: Path, text: str, how: str) -> None:
    if how == "truncated":  # text: the prefix the file keeps
        truncate(active, len(text.encode()))
    elif how == "new inode":  # written beside it and renamed over it
        fresh = active.with_name("fresh.tmp")
        fresh.write_text(text)
        os.replace(fresh, active)
    elif how == "rewritten":  # the same inode, other content, more bytes than before
        with open(active, "r+") as handle:
            handle.write(text)
    else:  # removed and written again (make demo)
        active.unlink()
        active.write_text(text)


@pytest.mark.parametrize("how", ["truncated", "new inode", "rewritten", "removed and rewritten"])
def test_changed_active_file_reads_only_its_share_again(tmp_path: Path, how: str) -> None:
    folder, state, _backup, active, lines = two_files(tmp_path)
    append(active, lines[18:22])  # an append first: the checkpoint is kept, not rewritten
    stats = same_as_full(folder, state)
    assert (stats.mode, stats.checkpoint, stats.files_read) == ("incremental", "kept", 1)
    text = "".join(lines[12:14]) if how == "truncated" else "".join(lines[30:40])
    replace_active(active, text, how)
    stats = same_as_full(folder, state)
    assert_only_active_read_again(stats, active)
    assert "traces.jsonl" in stats.rebuild_reason and stats.checkpoint == "kept"
    # the state after it is a normal one: appends continue it, another truncation restores again
    append(active, lines[40:])
    stats = same_as_full(folder, state)
    assert stats.mode == "incremental" and stats.rebuild_reason == ""
    truncate(active, 13_464)  # part-way through its third line, however it was replaced
    assert_only_active_read_again(same_as_full(folder, state), active)


def test_removed_active_file_then_a_new_one(tmp_path: Path) -> None:
    folder, state, _backup, active, lines = two_files(tmp_path)
    active.unlink()
    stats = same_as_full(folder, state)  # the report falls back to the backup alone, nothing is read
    assert (stats.mode, stats.files_read, stats.bytes_read) == ("incremental", 0, 0)
    assert stats.checkpoint.startswith("none")
    # the backup is the last input now and has no checkpoint before it: replacing it rebuilds
    # (none is needed for a new active file: the state before it is the last state)
    active.write_text("".join(lines[20:30]))
    stats = same_as_full(folder, state)
    assert stats.mode == "incremental" and stats.checkpoint == "the previous state, kept as the checkpoint"
    replace_active(active, "".join(lines[20:23]), "truncated")
    assert_only_active_read_again(same_as_full(folder, state), active)


def test_the_only_input_removed_and_written_again_says_so(tmp_path: Path) -> None:
    """What `make demo` does to telemetry/traces.jsonl on every run."""
    lines = workload(30)
    folder, state, active = one_file(tmp_path, lines[:20])
    assert same_as_full(folder, state).mode == "full"
    fresh = tmp_path / "fresh.jsonl"
    fresh.write_text("".join(lines[10:]))
    os.replace(fresh, active)  # a new inode (a removed file's inode may come back: that reads as truncated)
    stats = same_as_full(folder, state)
    assert stats.mode == "full" and stats.bytes_read == active.stat().st_size
    assert stats.rebuild_reason == f"{active} was replaced by a new file of the same name: it is the only input, read again from the start"


@pytest.mark.parametrize("how", ["truncated", "rewritten", "removed"])
def test_changed_backup_rebuilds_everything(tmp_path: Path, how: str) -> None:
    folder, state, backup, _active, lines = two_files(tmp_path)
    if how == "truncated":
        truncate(backup, len("".join(lines[:3]).encode()))
    elif how == "rewritten":
        backup.write_text("".join(lines[40:60]))
    else:
        backup.unlink()
    stats = same_as_full(folder, state)
    assert stats.mode == "full"
    assert stats.rebuild_reason.startswith(f"rebuild: {backup}") and "only the last input" in stats.rebuild_reason
    assert stats.bytes_read == sum(path.stat().st_size for path in folder.iterdir())


@pytest.mark.parametrize("grown_before_rename", [True, False])
def test_appends_rotation_then_truncated_active_file(tmp_path: Path, grown_before_rename: bool) -> None:
    """The checkpoint moves forward at a rotation: written when the renamed file grew first (the
    aggregator holds exactly the backups then), the previous state itself otherwise."""
    lines = workload(100, seed=11)
    folder, state, active = one_file(tmp_path, lines[:10])
    assert same_as_full(folder, state).checkpoint == "empty (one input file)"
    for step in (slice(10, 15), slice(15, 22)):
        append(active, lines[step])
        assert same_as_full(folder, state).checkpoint == "kept"
    if grown_before_rename:
        append(active, lines[22:26])
    os.rename(active, folder / "traces-2026-11-20T10-00-00.000-size.jsonl")
    active.write_text("".join(lines[26:34]))
    stats = same_as_full(folder, state)
    assert stats.mode == "incremental"
    expected = "written" if grown_before_rename else "the previous state, kept as the checkpoint"
    assert stats.checkpoint.startswith(expected)
    append(active, lines[34:50])
    assert same_as_full(folder, state).checkpoint == "kept"
    replace_active(active, "".join(lines[26:30]), "truncated")
    assert_only_active_read_again(same_as_full(folder, state), active)
    # only two state generations are left: the last state and its checkpoint
    assert len({path.name.split(".")[0] for path in state.glob("report-*-*.bin")}) == 2


def test_duplicate_span_in_backup_and_replaced_active_counts_once(tmp_path: Path) -> None:
    folder, state, backup, active, lines = two_files(tmp_path)
    # the replacement repeats lines of the backup (an exporter retry across a rotation) and its own
    replace_active(active, "".join([*lines[8:12], *lines[30:34], *lines[30:32]]), "new inode")
    stats = same_as_full(folder, state)
    assert_only_active_read_again(stats, active)
    result, _ = build(folder, state)
    once = tmp_path / "once"  # the same spans without the repeats
    once.mkdir()
    (once / "traces.jsonl").write_text(backup.read_text() + "".join(lines[30:34]))
    reference, _ = build(once, None)
    assert result["inputs"]["spans"] == reference["inputs"]["spans"]
    repeated = sum(
        len(scope["spans"])
        for line in [*lines[8:12], *lines[30:32]]
        for rs in json.loads(line)["resourceSpans"]
        for scope in rs["scopeSpans"]
    )
    assert repeated > 0
    assert result["inputs"]["duplicate_spans"] == reference["inputs"]["duplicate_spans"] + repeated


@pytest.mark.parametrize("damage", ["summary missing", "summary corrupt", "table missing", "table flipped", "table short"])
def test_damaged_checkpoint_rebuilds_in_full(tmp_path: Path, damage: str) -> None:
    folder, state, _backup, active, lines = two_files(tmp_path)
    summary = json.loads(next(state.glob("report-????????????????.json")).read_text())
    generation = summary["checkpoint"]
    checkpoint = next(state.glob(f"report-*-{generation}.checkpoint.json"))
    table = next(state.glob(f"report-*-{generation}.seen.bin"))
    if damage == "summary missing":
        checkpoint.unlink()
    elif damage == "summary corrupt":
        checkpoint.write_text(checkpoint.read_text()[:-10])
    elif damage == "table missing":
        table.unlink()
    elif damage == "table flipped":  # same size, one byte changed: only the digest can tell
        raw = bytearray(table.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        table.write_bytes(bytes(raw))
    else:
        table.write_bytes(table.read_bytes()[:-8])
    replace_active(active, "".join(lines[12:14]), "truncated")
    stats = same_as_full(folder, state, warned=True)
    assert stats.mode == "full" and "the checkpoint before" in stats.rebuild_reason and "unusable" in stats.rebuild_reason


def test_crash_while_saving_leaves_the_previous_state_usable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from meta_supervisor.build import state_store

    folder, state, _backup, active, lines = two_files(tmp_path)
    real = state_store.write_atomically

    def crash_on_main_json(path: Path, text: str) -> None:
        if state_store._MAIN_NAME.match(path.name):
            raise KeyboardInterrupt("killed mid-save")
        real(path, text)

    # a rotation (a new checkpoint is written), killed before the state's JSON is replaced
    append(active, lines[18:20])
    os.rename(active, folder / "traces-2026-11-21T10-00-00.000.jsonl")
    active.write_text("".join(lines[20:30]))
    monkeypatch.setattr(state_store, "write_atomically", crash_on_main_json)
    with pytest.raises(KeyboardInterrupt):
        build(folder, state)
    monkeypatch.setattr(state_store, "write_atomically", real)
    stats = same_as_full(folder, state)  # the previous state and its checkpoint are still there
    assert stats.mode == "incremental" and stats.checkpoint.startswith("written")
    replace_active(active, "".join(lines[20:22]), "truncated")
    assert_only_active_read_again(same_as_full(folder, state), active)


def test_state_of_an_older_format_is_rebuilt_and_removed(tmp_path: Path) -> None:
    from meta_supervisor.build import state_store

    folder, state, _active = one_file(tmp_path, workload(10))
    state.mkdir()
    options = BuildOptions(inputs=[str(folder)], prices=PRICES, state_dir=state, workers=1)
    old_key = state_store.state_key(options, state_store.STATE_FORMAT - 1)
    (state / f"report-{old_key}.json").write_text(json.dumps({"format": state_store.STATE_FORMAT - 1, "key": old_key}))
    (state / f"report-{old_key}-abc.seen.bin").write_bytes(b"\x00" * 64)
    stats = same_as_full(folder, state)
    assert stats.mode == "full" and "older format" in stats.rebuild_reason
    assert not list(state.glob(f"report-{old_key}*"))


def test_state_is_per_options_and_survives_damage(tmp_path: Path) -> None:
    folder, state, active = one_file(tmp_path, workload(30))
    build(folder, state)
    since = dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC)
    windowed, stats = build(folder, state, since=since)
    assert stats.mode == "full"  # another window, another state
    assert windowed == build(folder, None, since=since)[0]
    # without alpha signals: another state, and no section
    plain, stats = build(folder, state, alpha_signals=False)
    assert stats.mode == "full" and plain["alpha_quality"] is None
    # a damaged binary state file: the build notices and rebuilds
    append(active, workload(5, seed=99))
    for blob in state.glob("*.seen.bin"):
        blob.write_bytes(b"\x00" * 7)
    assert assert_same_as_full(folder, state, warned=True) == "full"
    # a damaged JSON state: same
    for summary in state.glob("report-*.json"):
        summary.write_text("{not json")
    assert assert_same_as_full(folder, state, warned=True) == "full"


@pytest.mark.parametrize("workers", [2, 3])
def test_incremental_with_parallel_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    from meta_supervisor.build import parallel as parallel_build

    monkeypatch.setattr(parallel_build, "MIN_SPLIT_BYTES", 1)
    monkeypatch.setattr(parallel_build, "fork_is_safe", lambda: True)  # the child only reads and decodes
    lines = workload(90, seed=5)
    folder, state, active = one_file(tmp_path, lines[:20])

    def both():
        parallel, stats = build(folder, state, workers=workers)
        assert parallel == build(folder, None)[0]
        assert parallel["alpha_quality"]["duplicates_dropped"] > 0
        return stats

    both()
    append(active, lines[20:])
    both()
    # rotated, then the new active file truncated: its share is read again in parallel parts
    os.rename(active, folder / "traces-2026-11-20T10-00-00.000.jsonl")
    active.write_text("".join(lines[:40]))  # repeats the backup's first spans
    assert both().checkpoint == "the previous state, kept as the checkpoint"
    replace_active(active, "".join(lines[:30]), "truncated")
    assert_only_active_read_again(both(), active)


def test_state_of_unused_option_sets_is_pruned(tmp_path: Path) -> None:
    """Least recently used option sets go with their checkpoints, unless a build holds their lock;
    the set in use keeps its checkpoint."""
    import fcntl

    from meta_supervisor.build import incremental as incremental_state

    state = tmp_path / "state"
    keys = []
    for k in range(incremental_state.KEEP_STATES + 3):
        folder = tmp_path / f"inputs-{k}"
        folder.mkdir()
        (folder / "traces-2026-11-20T10-00-00.000.jsonl").write_text("".join(workload(3, seed=k)))
        (folder / "traces.jsonl").write_text("".join(workload(2, seed=k + 100)))
        keys.append(incremental_state.state_key(BuildOptions(inputs=[str(folder)], prices=PRICES, state_dir=state)))
        build(folder, state)
        if k == 0:  # a build of set 0 is running from now on
            busy = open(state / f"report-{keys[0]}.lock", "a+")
            fcntl.flock(busy, fcntl.LOCK_EX)
    busy.close()
    main = sorted(path.name[len("report-") : -len(".json")] for path in state.glob("report-????????????????.json"))
    assert main == sorted([keys[0], *keys[-incremental_state.KEEP_STATES :]])  # set 0 was busy: kept
    for key in main:  # each left with its state and its checkpoint, nothing else
        assert len(list(state.glob(f"report-{key}-*.seen.bin"))) == 2
        assert len(list(state.glob(f"report-{key}-*.checkpoint.json"))) == 1
    assert len(list(state.glob("report-*.seen.bin"))) == 2 * len(main)
