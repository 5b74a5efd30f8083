"""The saved summary read an agent at a time gives the very report a full build gives.

``state_store.summary_text`` leaves each agent's tally as its JSON text (``msgspec.Raw``) until the
tally is made, and ``alpha_cache`` makes the agents' repeated values once: the reports written from
them (nothing new, made again with its record removed; an incremental build after an append;
the cached alpha-quality section) are byte for byte the full build's. A summary msgspec does not
read (a NaN, which ``json`` writes) is read as ``json`` reads it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import msgspec
import pytest

import bench.generate_workload as workload
from meta_supervisor.build import alpha_cache
from meta_supervisor.build.state_store import SavedState, decoded, summary_text
from meta_supervisor.cli import report as report_cli
from services.state_files import json_pieces

NOW = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
AGENTS = 40
DAYS = 12
RUNS = 1200
OUTPUTS = ("meta_report.json", "meta_report.md", "meta_report.html")


@pytest.fixture(scope="module")
def trace_lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """40 agents over 12 days (per-day tables of 12 rows an agent), scorable signals as-of each run's day."""
    path = tmp_path_factory.mktemp("many-days") / "all.jsonl"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(workload, "RUN_EVERY_NS", DAYS * 86_400 * 10**9 // RUNS)
        workload.generate(path, RUNS, seed=3, profile="contract", shape=workload.Shape(agents=AGENTS, spans_per_line=16))
    return path.read_bytes().splitlines(keepends=True)


def report_files(tmp_path: Path, *extra: str) -> dict[str, str]:
    """The CLI's outputs for ``tmp_path/traces.jsonl``, made again whatever the state: the record
    that lets a build keep the last report (``cli.report_record``) is removed first."""
    kill = tmp_path / "killed.json"
    kill.write_text("{}")
    for record in (tmp_path / "state").glob("*.record"):
        record.unlink()
    out = tmp_path / "out"
    code = report_cli.main(
        [
            *("--input", str(tmp_path / "traces.jsonl"), "--out", str(out), "--kill-file", str(kill)),
            *("--audit-log", str(tmp_path / "audit.jsonl"), "--state-dir", str(tmp_path / "state"), "--quiet", "--workers", "1"),
            *extra,
        ],
        now=lambda: NOW,
    )
    assert code == 0
    return {name: (out / name).read_text(encoding="utf-8") for name in OUTPUTS}


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What each build took from the saved state: "tallies" (nothing new), "aggregator"
    (incremental), "alpha" (the cached alpha-quality section)."""
    seen: list[str] = []
    for name, what in (("light_tallies", "tallies"), ("load_aggregator", "aggregator")):
        original = getattr(SavedState, name)
        monkeypatch.setattr(SavedState, name, lambda self, *args, _f=original, _w=what: seen.append(_w) or _f(self, *args))
    original_load = alpha_cache.load_sections
    monkeypatch.setattr(alpha_cache, "load_sections", lambda *args: ((found := original_load(*args))[0] and seen.append("alpha")) or found)
    return seen


def test_reports_from_the_saved_state_are_the_full_builds(tmp_path: Path, trace_lines: list[bytes], loads: list[str]) -> None:
    traces = tmp_path / "traces.jsonl"
    traces.write_bytes(b"".join(trace_lines[:-3]))
    first = report_files(tmp_path)  # a full build, its state saved (and the alpha section's cache)
    report = json.loads(first["meta_report.json"])
    assert len(report["agents"]) == AGENTS and report["alpha_quality"]["agents"]["agent_0000"]["signals"]
    assert report_files(tmp_path) == first  # nothing new: the tallies and the cached section from the state
    assert report_files(tmp_path, "--no-state") == first
    assert loads == ["tallies", "alpha"]

    with open(traces, "ab") as handle:
        handle.write(b"".join(trace_lines[-3:]))
    loads.clear()
    appended = report_files(tmp_path)  # incremental: the saved tallies loaded, the appended runs read
    assert appended != first
    assert appended == report_files(tmp_path, "--no-state")
    assert report_files(tmp_path) == appended  # nothing new on the state the incremental build saved
    assert loads == ["aggregator", "tallies", "alpha"]


def saved_summary(tmp_path: Path, trace_lines: list[bytes]) -> bytes:
    (tmp_path / "traces.jsonl").write_bytes(b"".join(trace_lines))
    report_files(tmp_path)
    (path,) = (tmp_path / "state").glob("report-????????????????.json")
    return path.read_bytes()


def plain(data):
    """``data`` with every agent's fields decoded (as ``json.loads`` makes them)."""
    return {**data, "agents": {name: {key: decoded(value) for key, value in entry.items()} for name, entry in data["agents"].items()}}


def test_a_summary_read_an_agent_at_a_time_is_the_summary(tmp_path: Path, trace_lines: list[bytes]) -> None:
    text = saved_summary(tmp_path, trace_lines)
    data = summary_text(text)
    tallies = [entry["tally"] for entry in data["agents"].values()]
    assert len(tallies) == AGENTS and all(type(tally) is msgspec.Raw for tally in tallies)  # not decoded yet
    assert plain(data) == json.loads(text)
    assert any(tally["day_runs"] and tally["asof_runs"] for tally in map(decoded, tallies))


def test_a_summary_with_a_nan_is_read_as_json_reads_it(tmp_path: Path, trace_lines: list[bytes]) -> None:
    data = json.loads(saved_summary(tmp_path, trace_lines))
    first = data["agent_order"][0]
    data["agents"][first]["latency"]["p50_ns"] = math.nan  # json writes it (allow_nan), msgspec does not read it
    text = json.dumps(data, allow_nan=True).encode()
    read = summary_text(text)
    assert type(read["agents"][first]["tally"]) is dict and math.isnan(read["agents"][first]["latency"]["p50_ns"])
    assert json.dumps(plain(read)) == json.dumps(json.loads(text))


def test_the_alpha_cache_makes_repeated_values_once() -> None:
    section = {
        "horizons": [1, 5],
        "agents": {f"agent_{k}": {"signals": k, "horizons": {"1": {"scored": 0, "daily": {}}}, "symbols": [k % 2]} for k in range(6)},
        "daily_omitted": 0,
    }
    text = "".join(json_pieces({"key": "k", "section": section}, depth=3)).encode()
    read = alpha_cache._decoded(text)
    assert read == json.loads(text) and list(read["section"]) == list(section)
    agents = list(read["section"]["agents"].values())
    assert all(agent["horizons"] is agents[0]["horizons"] for agent in agents)  # one object, as when computed
    assert agents[0]["symbols"] is agents[2]["symbols"] and agents[0]["symbols"] is not agents[1]["symbols"]
    section["agents"]["agent_3"]["horizons"]["1"]["mean"] = math.nan  # json writes it: read by json
    text = "".join(json_pieces({"key": "k", "section": section}, depth=3)).encode()
    assert json.dumps(alpha_cache._decoded(text)) == json.dumps(json.loads(text))


def test_a_damaged_tally_found_as_it_is_made_means_a_rebuild_that_says_why(tmp_path: Path, trace_lines: list[bytes]) -> None:
    data = json.loads(saved_summary(tmp_path, trace_lines))
    del data["agents"][data["agent_order"][-1]]["tally"]["asof_runs"]  # only the tally's own reading finds it
    (path,) = (tmp_path / "state").glob("report-????????????????.json")
    path.write_text(json.dumps(data))
    again = json.loads(report_files(tmp_path)["meta_report.json"])  # nothing new, but the state is not used
    (warning,) = again["inputs"].pop("state_warnings")
    assert warning.startswith("incremental state not trusted, everything read again: saved state unreadable"), warning
    full = json.loads(report_files(tmp_path, "--no-state")["meta_report.json"])
    assert full["inputs"].pop("state_warnings") == [] and again == full
