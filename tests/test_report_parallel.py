"""Reading a file in parallel parts gives exactly the report of reading it in one process, including
when a cut falls between a run's LLM spans and its root, when a retried batch repeats spans across
the cut (that part is then read again in the parent), and with bad lines on both sides (line numbers
stay those of the whole file)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from meta_supervisor.assemble.report import KillSwitchState, build_report
from meta_supervisor.build import parallel as parallel_build
from meta_supervisor.build.dispatch import build_inputs
from meta_supervisor.build.options import BuildOptions
from services.market_data import CsvMarketData
from services.pricing import PriceTable
from tests.conftest import count_merges_of
from tests.fixtures.report.otlp_builder import Llm, Run, Signal, lines_for

PRICES = PriceTable.load()
NOW = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
MARKET = CsvMarketData(Path(__file__).parent / "fixtures" / "alpha" / "prices")  # AAA, BBB, GAP in January 2024
AS_OF = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09"]


def report(path: Path, workers: int) -> dict:
    data, _ = build_inputs(BuildOptions(inputs=[str(path)], prices=PRICES, workers=workers))
    return build_report(data, PRICES, KillSwitchState(path="k"), NOW, market=MARKET)


@pytest.fixture(params=["on", "off"])
def count_merges(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Merges of parts read in parallel (the native reader's first part included when it is on)."""
    monkeypatch.setenv("ALPHATRACE_NATIVE", request.param)
    return count_merges_of(monkeypatch)


def runs(count: int) -> list[Run]:
    return [
        Run(
            ["a", "b", "c"][i % 3],
            i + 1,
            start_ms=i * 1000,
            duration_ms=10 + i,
            outcome="error" if i % 7 == 0 else "ok",
            llm=[Llm(tokens_in=10 * i, tokens_out=i) for _ in range(i % 3)],
            signals=[
                ("SPX", "up"),
                # few (symbol, as-of) pairs per agent: later runs, in other parts, supersede earlier ones;
                # every 4th run at one shared event time, where the span decides
                Signal(
                    ["AAA", "BBB", "GAP"][i // 3 % 3],
                    ["up", "down", "flat"][i % 4 % 3],
                    0.1 + (i % 9) / 10,
                    (i * 37 % 23) / 11 - 1,
                    as_of=AS_OF[i % len(AS_OF)],
                    time_ns=1_767_225_600_000_000_000 if i % 4 == 0 else None,
                ),
            ],
            losses=(i // 10, i % 3),  # cumulative: the largest value counts, whichever part reads it
        )
        for i in range(count)
    ]


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_parts_merge_exactly(tmp_path: Path, count_merges: list[bool], workers: int) -> None:
    path = tmp_path / "traces.jsonl"
    lines = lines_for(runs(200), per_line=1)  # one span a line: cuts fall between LLM spans and roots
    lines.insert(37, "corrupt line\n")
    lines.insert(300, "{also corrupt\n")
    path.write_text("".join(lines))
    parallel = report(path, workers)
    assert count_merges and all(count_merges)  # the parts really were read by other processes
    sequential = report(path, 1)
    assert parallel == sequential  # alpha_quality included
    assert [p["line"] for p in parallel["inputs"]["problems"]] == [38, 301]
    losses = parallel["inputs"]["telemetry_losses"]
    assert (losses["processes"], losses["spans_dropped"], losses["spans_export_failed"]) == (1, 19, 2)
    alpha = parallel["alpha_quality"]
    assert alpha["signals"] == 200 and alpha["duplicates_dropped"] > 100
    assert sum(agent["horizons"]["1"]["scored"] for agent in alpha["agents"].values()) > 10


def test_duplicates_across_the_cut_fall_back_to_reading_here(tmp_path: Path, count_merges: list[bool]) -> None:
    path = tmp_path / "traces.jsonl"
    lines = lines_for(runs(60), per_line=4)
    lines = lines + lines[:3]  # a retry of the first batches at the very end
    path.write_text("".join(lines))
    parallel = report(path, 2)
    assert count_merges[-1] is False  # refused: the part repeats spans of the first part
    assert parallel == report(path, 1)
    assert parallel["inputs"]["duplicate_spans"] > 0


def test_split_points_are_line_starts(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"aaaa\nbb\ncccccccc\nd\n")
    points = parallel_build.split_points(path, 0, path.stat().st_size, 3)
    data = path.read_bytes()
    assert points[0] == 0 and points[-1] == len(data)
    assert all(data[p - 1 : p] == b"\n" for p in points[1:-1])
    assert points == sorted(set(points))
