"""Incremental builds give exactly the report of a full rebuild: appends in several steps (one ending
mid-line), a collector rotation in the middle, a truncated and a replaced file, a removed backup."""

from __future__ import annotations

import datetime as dt
import os
import random
from pathlib import Path

import pytest

from meta_supervisor.report_build import BuildOptions, build_inputs
from meta_supervisor.report_model import KillSwitchState, build_report
from services.market_data import CsvMarketData
from services.pricing import PriceTable
from tests.fixtures.report.otlp_builder import Llm, Run, Signal, lines_for

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
            )
        )
    return lines_for(runs, per_line=3)


def report(folder: Path, state_dir: Path | None) -> tuple[dict, str]:
    data, stats = build_inputs(BuildOptions(inputs=[str(folder)], prices=PRICES, state_dir=state_dir, workers=1))
    result = build_report(data, PRICES, KillSwitchState(path="k"), NOW, market=MARKET)
    return result, stats.mode


def assert_same_as_full(folder: Path, state_dir: Path) -> str:
    incremental, mode = report(folder, state_dir)
    full, _ = report(folder, None)
    assert incremental == full  # alpha_quality included
    assert incremental["alpha_quality"] is not None
    return mode


def test_appends_rotation_and_nothing_new(tmp_path: Path) -> None:
    folder = tmp_path / "traces"
    folder.mkdir()
    state = tmp_path / "state"
    lines = workload(120)
    active = folder / "traces.jsonl"
    chunks = [lines[:10], lines[10:17], lines[17:30], lines[30:]]
    active.write_text("".join(chunks[0]))
    assert assert_same_as_full(folder, state) == "full"
    assert assert_same_as_full(folder, state) == "unchanged"
    # an append that ends in the middle of a line (the exporter is writing)
    text = "".join(chunks[1])
    with open(active, "a") as handle:
        handle.write(text[: len(text) // 2])
    assert assert_same_as_full(folder, state) == "incremental"
    with open(active, "a") as handle:
        handle.write(text[len(text) // 2 :])
    assert assert_same_as_full(folder, state) == "incremental"
    # rotation: the active file is renamed to a backup (more was written to it first), a new one starts
    with open(active, "a") as handle:
        handle.write("".join(chunks[2][:5]))
    os.rename(active, folder / "traces-2026-11-20T10-00-00.000-size.jsonl")
    active.write_text("\n" + "".join(chunks[2][5:]))
    assert assert_same_as_full(folder, state) == "incremental"
    with open(active, "a") as handle:
        handle.write("".join(chunks[3]))
    assert assert_same_as_full(folder, state) == "incremental"
    assert assert_same_as_full(folder, state) == "unchanged"
    final, _ = report(folder, state)
    assert final["fleet"]["runs"] + final["fleet"]["skipped_killed"] == 120
    alpha = final["alpha_quality"]  # the section compared above is not a trivial one
    assert alpha["duplicates_dropped"] > 20 and alpha["unusable_signals"] > 50
    scored = sum(agent["horizons"]["1"]["scored"] for agent in alpha["agents"].values())
    no_data = sum(agent["horizons"]["1"]["no_data"] for agent in alpha["agents"].values())
    assert scored > 20 and no_data > 0


def test_truncated_replaced_and_removed_files_rebuild(tmp_path: Path) -> None:
    folder = tmp_path / "traces"
    folder.mkdir()
    state = tmp_path / "state"
    lines = workload(60, seed=3)
    backup = folder / "traces-2026-11-20T10-00-00.000.jsonl"
    active = folder / "traces.jsonl"
    backup.write_text("".join(lines[:8]))
    active.write_text("".join(lines[8:14]))
    assert assert_same_as_full(folder, state) == "full"
    # truncated in place (same inode, fewer bytes)
    with open(active, "r+") as handle:
        handle.truncate(len("".join(lines[8:10])))
    assert assert_same_as_full(folder, state) == "full"
    # replaced: same size, other content
    replacement = "".join(lines[14:16])
    active.write_text(replacement)
    assert assert_same_as_full(folder, state) == "full"
    # rewritten in place with more bytes than before: the first bytes changed
    with open(active, "r+") as handle:
        handle.write("".join(lines[16:20]))
    assert assert_same_as_full(folder, state) == "full"
    # a backup removed (max_backups): its spans leave the report
    backup.unlink()
    assert assert_same_as_full(folder, state) == "full"
    with open(active, "a") as handle:
        handle.write("".join(lines[20:]))
    assert assert_same_as_full(folder, state) == "incremental"


def test_state_is_per_options_and_survives_damage(tmp_path: Path) -> None:
    folder = tmp_path / "traces"
    folder.mkdir()
    state = tmp_path / "state"
    (folder / "traces.jsonl").write_text("".join(workload(30)))
    report(folder, state)
    windowed = BuildOptions(
        inputs=[str(folder)], prices=PRICES, state_dir=state, workers=1, since=dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC)
    )
    data, stats = build_inputs(windowed)
    assert stats.mode == "full"  # another window, another state
    full_windowed, _ = build_inputs(BuildOptions(inputs=[str(folder)], prices=PRICES, since=windowed.since, workers=1))
    kill = KillSwitchState(path="k")
    assert build_report(data, PRICES, kill, NOW, market=MARKET) == build_report(full_windowed, PRICES, kill, NOW, market=MARKET)
    # without alpha signals: another state, and no section
    plain, stats = build_inputs(BuildOptions(inputs=[str(folder)], prices=PRICES, state_dir=state, workers=1, alpha_signals=False))
    assert stats.mode == "full" and build_report(plain, PRICES, kill, NOW, market=MARKET)["alpha_quality"] is None
    # a damaged binary state file: the build notices and rebuilds
    with open(folder / "traces.jsonl", "a") as handle:
        handle.write("".join(workload(5, seed=99)))
    for blob in state.glob("*.seen.bin"):
        blob.write_bytes(b"\x00" * 7)
    assert assert_same_as_full(folder, state) == "full"
    # a damaged JSON state: same
    for summary in state.glob("report-*.json"):
        summary.write_text("{not json")
    assert assert_same_as_full(folder, state) == "full"


@pytest.mark.parametrize("workers", [2, 3])
def test_incremental_with_parallel_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    from meta_supervisor import parallel_build

    monkeypatch.setattr(parallel_build, "MIN_SPLIT_BYTES", 1)
    monkeypatch.setattr(parallel_build, "fork_is_safe", lambda: True)  # the child only reads and decodes
    folder = tmp_path / "traces"
    folder.mkdir()
    state = tmp_path / "state"
    lines = workload(90, seed=5)
    active = folder / "traces.jsonl"
    active.write_text("".join(lines[:20]))

    def both() -> None:
        data, _ = build_inputs(BuildOptions(inputs=[str(folder)], prices=PRICES, state_dir=state, workers=workers))
        full, _ = build_inputs(BuildOptions(inputs=[str(folder)], prices=PRICES, workers=1))
        kill = KillSwitchState(path="k")
        parallel = build_report(data, PRICES, kill, NOW, market=MARKET)
        assert parallel == build_report(full, PRICES, kill, NOW, market=MARKET)
        assert parallel["alpha_quality"]["duplicates_dropped"] > 0

    both()
    with open(active, "a") as handle:
        handle.write("".join(lines[20:]))
    both()


def test_state_of_unused_option_sets_is_pruned(tmp_path: Path) -> None:
    from meta_supervisor import incremental_state

    state = tmp_path / "state"
    for k in range(incremental_state.KEEP_STATES + 3):
        folder = tmp_path / f"inputs-{k}"
        folder.mkdir()
        (folder / "traces.jsonl").write_text("".join(workload(3, seed=k)))
        report(folder, state)
    assert len(list(state.glob("report-*.json"))) == incremental_state.KEEP_STATES
    assert len(list(state.glob("report-*.seen.bin"))) == incremental_state.KEEP_STATES
