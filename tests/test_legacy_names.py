"""Trace files written before the project namespace read as files written now.

alphatrace once wrote ``agent.run_id``, ``agent.run.*``, ``alpha.signal``, ``supervisor.*``,
``kill_switch.*``; it writes ``alphatrace.*`` now (``otel.semconv.LEGACY_NAMES``). Every canonical
input of the native core's differential tests is written three ways (today's names, the old names, a
file mixing both line by line): the Python reader and the native core must read all three alike, and
the ClickHouse query must give the report's figures for an old file. The native core's list of old
names must be the Python one.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from meta_supervisor.build.python_part import read_part_python
from meta_supervisor.reading import legacy_names
from otel import semconv
from tests.fixtures.report.otlp_builder import Llm, Run, Signal, lines_for
from tests.legacy_files import mixed_lines, old_lines
from tests.native_cases import CANONICAL, write
from tests.test_native_core import OPTIONS, differences, native, native_read, snapshot  # noqa: F401 (native: a fixture)

REPO = Path(__file__).resolve().parent.parent


def _meaning(part) -> dict:
    """A part's snapshot without its byte count and its spans' content checks (low 8 bits, which hash
    the span name's length: old names are shorter)."""
    meaning = {key: value for key, value in snapshot(part).items() if key != "consumed"}
    meaning["span_fps"] = sorted(entry >> 8 for entry in meaning["span_fps"])
    return meaning


def test_the_native_core_lists_the_same_old_names_as_python() -> None:
    source = (REPO / "native" / "src" / "legacy.rs").read_text(encoding="utf-8")
    pairs = dict(re.findall(r'^\s*"([^"]+)" => "([^"]+)",$', source, re.M))
    assert pairs == semconv.LEGACY_NAMES
    prefix = re.search(r'OLD_SUPERVISOR_SPAN_PREFIX: &str = "([^"]+)"', source)
    assert prefix is not None and prefix.group(1) == semconv.LEGACY_SUPERVISOR_SPAN_PREFIX


def test_old_names_are_the_pre_namespace_keys_and_new_names_are_namespaced() -> None:
    assert all(new.startswith(semconv.PROJECT_PREFIX) for new in semconv.LEGACY_NAMES.values())
    assert not any(old.startswith(semconv.PROJECT_PREFIX) for old in semconv.LEGACY_NAMES)
    assert len(set(semconv.LEGACY_NAMES.values())) == len(semconv.LEGACY_NAMES)  # one old name per name
    assert legacy_names.current_name("agent.run_id") == semconv.AGENT_RUN_ID
    assert legacy_names.current_name(semconv.AGENT_RUN_ID) == semconv.AGENT_RUN_ID


def _renamable(case: str) -> bool:
    """A canonical input of JSON lines holding names that had an old form (other instrumentations'
    spans have none; byte-order-mark lines are bytes)."""
    lines = CANONICAL[case]()
    return all(isinstance(line, str) for line in lines) and old_lines(lines) != lines


RENAMABLE = [case for case in sorted(CANONICAL) if _renamable(case)]


def test_the_renamed_cases_cover_every_kind_of_old_name() -> None:
    expected = {"killed_runs", "supervisor_spans", "signals_all_fields", "invalid_signals_and_kill_switch_errors", "mismatched_totals"}
    assert expected <= set(RENAMABLE)


@pytest.mark.parametrize("case", RENAMABLE)
def test_old_new_and_mixed_files_read_alike_in_python_and_native(native, tmp_path: Path, case: str) -> None:  # noqa: F811
    lines = CANONICAL[case]()
    new = write(tmp_path, lines, "new.jsonl")
    old = write(tmp_path, old_lines(lines), "old.jsonl")
    mixed = write(tmp_path, mixed_lines(lines), "mixed.jsonl")
    expected = _meaning(read_part_python(new, 0, None, OPTIONS))
    for path in (new, old, mixed):
        for reader, part in (("python", read_part_python(path, 0, None, OPTIONS)), ("native", native_read(path))):
            assert part is not None, f"the native core declined {path.name} of {case}"
            diff = differences(expected, _meaning(part))
            assert not diff, f"{reader} reads {path.name} of {case} differently:\n" + "\n".join(diff)


def test_an_old_file_really_holds_old_names_and_counts_everything(tmp_path: Path) -> None:
    """The renaming the tests rely on: an old file has no alphatrace.* name left but the ones that
    were alphatrace.* already, and its signals, outcomes, kills and totals all count."""
    runs = [
        Run("a", 1, llm=[Llm(), Llm()], signals=[Signal("AAA", "up", as_of="2024-01-02", horizon=5)], as_of="2024-01-02"),
        Run("a", 2, outcome=semconv.OUTCOME_KILLED, kill_reason="drawdown", llm=[]),
        Run("b", 3, llm=[Llm()], invalid=["NaN prob_up"]),
    ]
    text = "".join(old_lines(lines_for(runs)))
    assert "alphatrace.run" not in text and "alphatrace.alpha" not in text and '"agent.run_id"' in text
    part = _meaning(read_part_python(write(tmp_path, [text]), 0, None, OPTIONS))
    agents = part["agents"]
    assert agents["a"]["outcomes"] == {"ok": 1, "killed": 1} and agents["b"]["outcomes"] == {"ok": 1}
    assert agents["a"]["last_kill"][1] == "drawdown"
    assert sum(agents["a"]["alpha"].values()) == 1 and agents["a"]["signals"]["total"] == 1  # counted and kept for scoring
    assert agents["b"]["invalid_reasons"] == {"NaN prob_up": 1}
    assert agents["a"]["consistency"][0] == 2 and agents["b"]["consistency"][0] == 1  # totals read and matched


def test_the_contract_lists_every_old_name_with_its_name_now() -> None:
    contract = (REPO / "docs" / "telemetry-contract.md").read_text(encoding="utf-8")
    table = dict(re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|$", contract.split("## Names before the project namespace")[1], re.M))
    assert {old: new for old, new in table.items() if "<" not in old} == semconv.LEGACY_NAMES
