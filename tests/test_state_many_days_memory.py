"""The saved state of 1,000 agents over 30 days is loaded in bounded memory (issue 13's 1000-agents
row: its build with nothing new at 5 M spans peaked at 76.7 MB).

Each agent's per-day tables grow with the days the file covers (30 rows a table an agent here): the
summary is ~4.2 MB of JSON, ~30 MB of Python objects when ``json.loads`` made it whole, and the
alpha-quality cache's 1,000 copies of one empty horizons section another ~12 MB. A build that finds
nothing new but writes the report again (the kill switch changed: its record removed here) and a build of a small append (the
saved aggregator loaded, the new runs read, the state saved) are each run in a fresh process; their
peak (``VmHWM``) measured 49 and 53 MB here, 69 and 71 MB before the summary was read an agent at a
time (``state_store.summary_text``) and the cache's repeated values made once (``alpha_cache``).
The bound leaves ~9 MB above the larger. Nothing here measures a time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench.generate_workload as workload
from tests.report_memory import report_peak_kb

AGENTS = 1000
DAYS = 30
RUNS = AGENTS * DAYS  # one run an agent a day: every agent has a row a day in each table
EXTRA_RUNS = 512  # after the first 30 days: the appended lines hold them (and a few of the days' last runs)
APPENDED_LINES = 3  # 256 runs a line (512 spans)
MEMORY_BOUND_MB = 62


@pytest.fixture(scope="module")
def thirty_days(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """(the file's first part, the lines appended to it later): ~90 MB of JSON."""
    path = tmp_path_factory.mktemp("thirty-days") / "all.jsonl"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(workload, "RUN_EVERY_NS", DAYS * 86_400 * 10**9 // RUNS)
        workload.generate(path, RUNS + EXTRA_RUNS, seed=1, shape=workload.Shape(agents=AGENTS))
    lines = path.read_bytes().splitlines(keepends=True)
    path.unlink()
    return b"".join(lines[:-APPENDED_LINES]), b"".join(lines[-APPENDED_LINES:])


def peak_mb(tmp_path: Path) -> float:
    """The report command's own peak, the report made again whatever the state: the record that
    lets a build with nothing new keep the last report (``cli.report_record``) is removed first,
    as when the kill switch or the day changed since."""
    (tmp_path / "kill.json").write_text("{}")
    for record in (tmp_path / "state").glob("*.record"):
        record.unlink()
    args = [
        *("--input", str(tmp_path / "traces.jsonl"), "--out", str(tmp_path / "out"), "--state-dir", str(tmp_path / "state")),
        *("--workers", "2", "--quiet", "--kill-file", str(tmp_path / "kill.json"), "--audit-log", str(tmp_path / "audit.jsonl")),
    ]
    own_kb, _ = report_peak_kb(args, "auto")
    return own_kb / 1024


def test_the_state_of_1000_agents_over_30_days_loads_in_bounded_memory(tmp_path: Path, thirty_days: tuple[bytes, bytes]) -> None:
    first, appended = thirty_days
    traces = tmp_path / "traces.jsonl"
    traces.write_bytes(first)
    peak_mb(tmp_path)  # the full build: its state saved, and the alpha-quality section's cache
    runs = json.loads((tmp_path / "out" / "meta_report.json").read_text(encoding="utf-8"))["fleet"]["runs"]
    (summary,) = (tmp_path / "state").glob("report-????????????????.json")
    saved = json.loads(summary.read_bytes())
    assert len(saved["agents"]) == AGENTS
    assert all(len(entry["tally"]["day_runs"]) >= DAYS - 1 for entry in saved["agents"].values())  # ~30 days, 31 dates
    del saved

    written = (tmp_path / "out" / "meta_report.json").stat()
    nothing_new = peak_mb(tmp_path)
    again = (tmp_path / "out" / "meta_report.json").stat()
    assert (again.st_ino, again.st_mtime_ns) != (written.st_ino, written.st_mtime_ns)  # made again, not kept
    report = json.loads((tmp_path / "out" / "meta_report.json").read_text(encoding="utf-8"))
    assert report["fleet"]["agents"] == AGENTS and report["fleet"]["runs"] == runs
    assert list(tmp_path.glob("state/*.alpha.bin"))  # the section came from its cache

    with open(traces, "ab") as handle:
        handle.write(appended)
    small_append = peak_mb(tmp_path)
    report = json.loads((tmp_path / "out" / "meta_report.json").read_text(encoding="utf-8"))
    assert report["fleet"]["runs"] == RUNS + EXTRA_RUNS
    assert max(nothing_new, small_append) < MEMORY_BOUND_MB, (nothing_new, small_append)
