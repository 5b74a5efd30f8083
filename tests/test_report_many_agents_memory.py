"""A report of 1,000 agents is built in bounded memory (issue 13's 1000-agents row), in a fresh
process, with every section and output on: alpha quality, the incremental state, JSON, Markdown
and HTML.

Before, the main process's peak grew with the agents, not the spans: the JSON text made whole by the
encoder (~100 MB of pieces for a 15 MB report), every agent's alpha-quality section, the state's and
the cache's JSON as whole strings, a worker's tallies unpickled all at once (~150 MB at this size).
The peak is read from ``/proc/self/status`` (``VmHWM``: Linux carries ``ru_maxrss`` across exec, so
that would include pytest's own); the bound is a few MB above what is measured (57-60 MB here, both
readers, after the second round of this work in ``docs/benchmarks.md``; 61-65 MB before it).
Nothing here measures a time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.generate_workload import Shape, generate, runs_for
from tests.report_memory import report_peak_kb

ROOT = Path(__file__).resolve().parent.parent
AGENTS = 1000
SPANS = 100_000  # ~135 MB of JSON: split across two processes (parallel_build.MIN_SPLIT_BYTES)
MEMORY_BOUND_MB = 64


@pytest.fixture(scope="module")
def many_agents(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("many-agents") / "traces.jsonl"
    shape = Shape(agents=AGENTS)
    generate(path, runs_for(SPANS, shape), seed=1, shape=shape)
    return path


@pytest.mark.parametrize("reader", ["auto", "off"])
def test_a_report_of_1000_agents_stays_in_bounded_memory(many_agents: Path, tmp_path: Path, reader: str) -> None:
    out = tmp_path / "out"
    own_kb, workers_kb = report_peak_kb(
        [
            "--input",
            str(many_agents),
            "--out",
            str(out),
            "--state-dir",
            str(tmp_path / "state"),
            "--workers",
            "2",
            "--quiet",
            "--kill-file",
            str(tmp_path / "kill.json"),
            "--audit-log",
            str(tmp_path / "audit.jsonl"),
        ],
        reader,
    )
    assert max(own_kb, workers_kb) / 1024 < MEMORY_BOUND_MB, (own_kb, workers_kb)
    report = json.loads((out / "meta_report.json").read_text(encoding="utf-8"))
    runs = runs_for(SPANS, Shape(agents=AGENTS))
    assert report["fleet"]["agents"] == AGENTS and report["fleet"]["runs"] == runs
    assert report["inputs"]["spans"] == SPANS and report["inputs"]["bad_lines"] == 0
    quality = report["alpha_quality"]
    assert len(quality["agents"]) == AGENTS  # every agent's section, though none has a scorable signal
    first = quality["agents"]["agent_0000"]
    assert first["signals"] == 0 and first["cost"]["cost_usd"] > 0
    assert set(first["horizons"]) == {"1", "5", "10"} and first["horizons"]["5"]["scored"] == 0
    assert (out / "meta_report.md").stat().st_size and (out / "meta_report.html").stat().st_size
