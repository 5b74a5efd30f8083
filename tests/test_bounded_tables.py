"""The build's fingerprint tables bounded in memory (``build/spill_plan.py``, ``native/src/spill.rs``):
past ``--resident-spans`` / ``ALPHATRACE_RESIDENT_SPANS`` span entries (half as many closed runs)
they spill to sorted runs in the cache folder, and every figure of the report stays what it is
without spilling and what the Python reader (which keeps them in memory) gives: duplicates that
arrive after their first copy was spilled (exact and conflicting), runs closed, spilled, then seen
again (second roots, late LLM calls), parts read by forked workers and handed over through files,
incremental builds across spills, and the peak memory of a build that spills."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from array import array
from pathlib import Path

import pytest

from meta_supervisor import native_core
from meta_supervisor.build import spill_plan
from meta_supervisor.tally.fingerprints import FingerprintMap, FingerprintSet, SpillPlan
from settings.config_error import ConfigError
from tests.conftest import count_merges_of
from tests.report_memory import ROOT
from tests.test_report_incremental import append, build, one_file, without_state_warnings, workload

SMALL = spill_plan.MIN_RESIDENT_SPANS  # 1,024 span entries, 512 closed runs: a few thousand spans spill


@pytest.fixture
def native(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(native_core.ENV, raising=False)
    if not native_core.available() or not hasattr(native_core.core(), "SpillRuns"):
        pytest.fail("the native core is not installed (or older than its spilled tables): run make native")


def test_tables_answer_as_dicts_across_spills(native, tmp_path: Path) -> None:
    """Entries and states added, seen again (same and other content) and set again after they were
    spilled: every answer and count is a plain dict's."""
    plan = SpillPlan(str(tmp_path), SMALL)
    rng = random.Random(3)
    spans, model = FingerprintSet(0, plan), {}
    for _ in range(20_000):
        key = rng.getrandbits(56) or 1
        entry = key << 8 | rng.getrandbits(8)
        assert spans.add(entry) == model.get(key, 0)
        model.setdefault(key, entry)
    assert spans.runs.spills > 10 and spans.runs.runs < 10  # merged as they accumulate
    assert len(spans) == len(model)
    for entry in rng.sample(sorted(model.values()), 3_000):
        assert spans.add(entry) == entry  # an exact duplicate
        assert spans.add(entry ^ 0x5A) == entry  # a conflicting one: the first copy is kept
        assert entry ^ 0x5A in spans
    assert len(spans) == len(model)
    runs, states = FingerprintMap(0, plan), {}
    for _ in range(10_000):
        fp = rng.getrandbits(64) | 2
        assert runs.insert_new(fp, 9) == (fp not in states)
        states.setdefault(fp, 9)
    for fp in rng.sample(sorted(states), 4_000):  # set again after a spill: the newer state wins
        states[fp] = rng.randrange(1, 256)
        runs.set(fp, states[fp])
    assert len(runs) == len(states)
    assert all(runs.get(fp) == state for fp, state in states.items())
    assert runs.get(12345, -1) == -1 and not runs.insert_new(next(iter(states)), 1)


def late_copies(lines: list[str]) -> list[str]:
    """What arrives once the first lines' spans were spilled: exact copies of them (a retried batch),
    a copy with another end time (a conflicting duplicate), and the same runs again under new span
    ids (second roots and LLM calls of runs closed long before)."""
    exact = lines[:12]
    conflicting = []
    for text in lines[12:14]:
        request = json.loads(text)
        span = request["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
        span["endTimeUnixNano"] = str(int(span["endTimeUnixNano"]) + 1_000)
        conflicting.append(json.dumps(request) + "\n")
    again = []
    for text in lines[14:30]:
        request = json.loads(text)
        for scope in request["resourceSpans"][0]["scopeSpans"]:
            for span in scope["spans"]:
                span["spanId"] = "f" + span["spanId"][1:]
        again.append(json.dumps(request) + "\n")
    return [*exact, *conflicting, *again]


def reports(folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **options) -> list[dict]:
    """The report spilling (resident cap ``SMALL``), not spilling, from the Python reader (its own
    tables, in memory), and from the Python reader on spilling tables (the native core declining
    every part the main process reads: the Python reader's loops then ask the spilled tiers)."""
    from meta_supervisor.build import file_reader, native_reader, parallel

    out = []
    builds = (("spilled", SMALL, "auto"), ("resident", 1 << 24, "auto"), ("python", SMALL, "off"), ("declined", SMALL, "auto"))
    for name, resident, reader in builds:
        monkeypatch.setenv(native_core.ENV, reader)
        if name == "declined":
            monkeypatch.setattr(parallel, "read_native", lambda *args: None)
            monkeypatch.setattr(native_reader, "read_native", lambda *args: None)
            assert file_reader  # reads read_native from native_reader when called
        report, stats = build(folder, tmp_path / f"state-{name}", resident_spans=resident, **options)
        out.append(without_state_warnings(report, stats, False))
    monkeypatch.delenv(native_core.ENV)
    return out


def spilled_counts(state: Path) -> tuple[int, int]:
    (summary,) = state.glob("report-*.json")
    data = json.loads(summary.read_text())
    return data["seen_spilled"], data["closed_spilled"]


@pytest.mark.parametrize("workers", [1, 2])
def test_report_is_exact_with_duplicates_after_a_spill(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    lines = workload(1200, seed=11)
    folder, _, _ = one_file(tmp_path, [*lines, *late_copies(lines)])
    spilled, resident, python, declined = reports(folder, tmp_path, monkeypatch, workers=workers)
    assert spilled == resident == python == declined
    inputs = spilled["inputs"]
    assert inputs["duplicate_spans"] > 0 and inputs["conflicting_spans"] == 2 and inputs["duplicate_run_roots"] > 0
    seen, closed = spilled_counts(tmp_path / "state-spilled")
    assert seen > SMALL and closed > SMALL // 2  # most of the tables spilled
    assert spilled_counts(tmp_path / "state-declined")[0] > SMALL
    assert spilled_counts(tmp_path / "state-resident") == (0, 0)
    assert not list((tmp_path / "state-spilled" / "spill").iterdir())  # the runs' files were never named


def test_worker_part_handed_over_through_files(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A forked worker's part, its tables bounded too, comes back through unnamed files and is
    merged (not read again), and the report is that of tables kept whole."""
    merges = count_merges_of(monkeypatch)
    lines = workload(1500, seed=12)
    folder, _, _ = one_file(tmp_path, lines)
    spilled, resident, python, declined = reports(folder, tmp_path, monkeypatch, workers=2)
    assert spilled == resident == python == declined
    assert merges[:2] == [True, True]  # the spilling build's part, then the one kept resident
    assert spilled_counts(tmp_path / "state-spilled")[0] > SMALL


def test_worker_tallies_come_through_the_hand_over_file(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With bounded tables a worker's packed tallies are written to a hand-over file and read from
    there an agent at a time as they are merged (never a blob in the main process); the report is
    the one-process build's."""
    from meta_supervisor.build import merge

    merges = count_merges_of(monkeypatch)
    counting = merge.merge_part
    packed = []

    def merge_part(aggregator, part, *args):
        agents = part.aggregator_state[1]
        packed.append((getattr(agents, "file", None) is not None, len(getattr(agents, "blob", b"x"))))
        return counting(aggregator, part, *args)

    monkeypatch.setattr(merge, "merge_part", merge_part)
    folder, _, _ = one_file(tmp_path, workload(1500, seed=13))
    parts = without_state_warnings(*build(folder, tmp_path / "state-parts", resident_spans=SMALL, workers=2), False)
    one = without_state_warnings(*build(folder, tmp_path / "state-one", resident_spans=SMALL, workers=1), False)
    assert merges == [True] and packed == [(True, 0)]
    assert parts == one


def test_a_spill_that_fails_leaves_the_resident_table_as_it_was(native, tmp_path: Path) -> None:
    """The resident entries are sorted in their own slots for a spill (no copy of them): when the
    spill cannot be written (its folder gone), the table is put back, every entry still found."""
    folder = tmp_path / "spill"
    folder.mkdir()
    plan = SpillPlan(str(folder), SMALL)
    rng = random.Random(5)
    spans, closed = FingerprintSet(0, plan), FingerprintMap(0, plan)
    entries = [(rng.getrandbits(56) or 1) << 8 | rng.getrandbits(8) for _ in range(600)]
    fps = {rng.getrandbits(64) | 2: rng.randrange(1, 256) for _ in range(300)}
    for entry in entries:
        assert spans.add(entry) == 0
    for fp, state in fps.items():
        closed.set(fp, state)
    folder.rmdir()
    with pytest.raises(OSError):
        spans.spill()
    with pytest.raises(OSError):
        closed.spill()
    assert spans.runs.spills == 0 and closed.runs.spills == 0
    assert all(spans.add(entry) == entry for entry in entries)
    assert all(closed.get(fp) == state for fp, state in fps.items())
    folder.mkdir()
    spans.spill()  # and it spills once it can, in key order
    closed.spill()
    assert len(spans) == len(entries) and all(spans.add(entry) == entry for entry in entries)
    assert all(closed.get(fp) == state for fp, state in fps.items())


def test_a_deferred_filter_is_made_again_at_the_next_lookup(native, tmp_path: Path) -> None:
    """Keys spilled after ``defer_filter`` (a part's spans added by its merge) are left out of the
    Bloom filter, which is freed: the next lookup makes it again from the runs, so every answer
    stays exact, and until then it costs no memory."""
    plan = SpillPlan(str(tmp_path), SMALL)
    rng = random.Random(7)
    spans, model = FingerprintSet(0, plan), {}
    for _ in range(5_000):
        entry = (rng.getrandbits(56) or 1) << 8 | rng.getrandbits(8)
        assert spans.add(entry) == model.get(entry >> 8, 0)
        model.setdefault(entry >> 8, entry)
    filtered = spans.runs.resident_bytes
    spans.runs.defer_filter()
    later = {}
    for _ in range(5_000):
        entry = (rng.getrandbits(56) or 1) << 8 | rng.getrandbits(8)
        if entry >> 8 not in model:
            later[entry >> 8] = entry
    spans.add_all(array("Q", later.values()))
    assert spans.runs.spills > 0 and spans.runs.resident_bytes < filtered / 4  # page indexes only
    model.update(later)
    assert len(spans) == len(model)
    assert all(spans.add(entry) == entry for entry in model.values())  # found, spilled or resident
    assert spans.runs.resident_bytes > filtered  # the filter made again, for every spilled key
    assert spans.add(123 << 8) == 0


def test_incremental_build_across_spills(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A state saved with spilled tables, then appends whose spans repeat spilled ones: each
    incremental build equals a full one, and a build with nothing new does not read the tables."""
    lines = workload(900, seed=5)
    folder, state, active = one_file(tmp_path, lines[:400])
    incremental = lambda: build(folder, state, resident_spans=SMALL)  # noqa: E731
    assert incremental()[1].mode == "full"
    assert spilled_counts(state)[0] > SMALL
    append(active, lines[400:])
    append(active, late_copies(lines))
    report, stats = incremental()
    assert stats.mode == "incremental"
    full, full_stats = build(folder, None, resident_spans=1 << 24)
    full = without_state_warnings(full, full_stats, False)
    assert without_state_warnings(report, stats, False) == full
    from meta_supervisor.build import state_store

    def no_tables(*args, **kwargs):
        raise AssertionError("a build with nothing new read the big tables")

    monkeypatch.setattr(state_store.SavedState, "load_aggregator", no_tables)
    report, stats = incremental()
    assert stats.mode == "unchanged"
    assert without_state_warnings(report, stats, False) == full


def test_a_damaged_spilled_table_means_a_full_build(native, tmp_path: Path) -> None:
    lines = workload(1500, seed=2)
    folder, state, active = one_file(tmp_path, lines[:1000])
    build(folder, state, resident_spans=SMALL)
    for table in state.glob("*.seen-spilled.bin"):
        raw = bytearray(table.read_bytes())
        raw[100] ^= 1
        table.write_bytes(bytes(raw))
    append(active, lines[1000:])
    report, stats = build(folder, state, resident_spans=SMALL)
    assert stats.mode == "full" and stats.warnings
    full, full_stats = build(folder, None)
    assert without_state_warnings(report, stats, True) == without_state_warnings(full, full_stats, False)


def test_resident_cap_argument_env_default(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    env = {spill_plan.ENV_RESIDENT_SPANS: "50000"}
    assert spill_plan.resident_spans(None, {}) == spill_plan.DEFAULT_RESIDENT_SPANS
    assert spill_plan.resident_spans(None, env) == 50_000
    assert spill_plan.resident_spans(4096, env) == 4096  # the argument wins
    for bad in ("lots", "10", "1.5", str(1 << 40)):
        with pytest.raises(ConfigError, match=spill_plan.ENV_RESIDENT_SPANS):
            spill_plan.resident_spans(None, {spill_plan.ENV_RESIDENT_SPANS: bad})
    with pytest.raises(ConfigError, match="--resident-spans"):
        spill_plan.resident_spans(10, env)
    from meta_supervisor.cli.report import main

    monkeypatch.setenv(spill_plan.ENV_RESIDENT_SPANS, "many")
    assert main(["--input", "/nonexistent", "--no-alpha-quality"]) == 2
    err = capsys.readouterr().err
    assert f"{spill_plan.ENV_RESIDENT_SPANS}='many'" in err and len(err.strip().splitlines()) == 1


def test_what_a_killed_build_left_is_removed(tmp_path: Path) -> None:
    """A run file is unlinked as soon as it is made; one left by a build killed in between (its
    process gone) is removed by the next build's plan, one of a live build is not."""
    folder = spill_plan.spill_folder(tmp_path)
    folder.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    left = folder / f".spill-{int(dead.stdout)}-0.tmp"
    live = folder / f".spill-{os.getpid()}-7.tmp"
    left.write_bytes(b"x" * 100)
    live.write_bytes(b"y")
    spill_plan.plan_for(tmp_path, SMALL)
    assert not left.exists() and live.exists()


MEMORY_PROBE = """
import random, sys
from meta_supervisor.tally.fingerprints import FingerprintMap, FingerprintSet, SpillPlan
def hwm():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1])
plan = SpillPlan(sys.argv[1], int(sys.argv[2])) if sys.argv[2] != '0' else None
rng = random.Random(1)
before = hwm()
spans, runs = FingerprintSet(0, plan), FingerprintMap(0, plan)
from array import array
for _ in range(40):  # 4,000,000 spans and 2,000,000 closed runs, added as a part's merge adds them
    batch = array('Q', (rng.getrandbits(56) << 8 | 7 for _ in range(100_000)))
    assert spans.first_present(batch) < 0
    spans.add_all(batch)
    keys = array('Q', (rng.getrandbits(64) | 2 for _ in range(50_000)))
    runs.set_all(keys, bytes([9]) * len(keys))
assert len(spans) == 4_000_000 and len(runs) == 2_000_000
print('GROWTH', hwm() - before)
"""


def test_spilling_tables_memory_stays_bounded(native, tmp_path: Path) -> None:
    """4,000,000 span entries and 2,000,000 closed runs in a fresh process: in memory they take
    ~72 MB (8 and 9 bytes a slot, at most 70% full; more while they double); bounded at 50,000
    resident span entries they take the resident tables (~1 MB) and the filters and page indexes
    (~1.3 bytes a key)."""

    def growth_kb(resident: int) -> int:
        done = subprocess.run(
            [sys.executable, "-c", MEMORY_PROBE, str(tmp_path), str(resident)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        return int(done.stdout.split("GROWTH", 1)[1])

    bounded = growth_kb(50_000)
    # measured 14 MB: the filters (7.8 MB, the span set's briefly twice while it doubles), the
    # resident tables (0.9 MB), the batches and their int objects
    assert bounded < 24_000, bounded
    assert growth_kb(0) > 60_000  # the same tables unbounded (the Python reader's form): measured 154 MB
    assert not list(tmp_path.iterdir())  # nothing left on disk


def test_a_spilling_build_in_a_fresh_process(native, tmp_path: Path) -> None:
    """The report command with a small resident cap over a file that spills in both processes: its
    memory is that of the build without its tables, and its report that of a build that keeps them."""
    from tests.report_memory import report_peak_kb

    lines = workload(3000, seed=4)
    folder, state, _ = one_file(tmp_path, lines)
    common = ["--input", str(folder), "--no-alpha-quality", "--format", "json", "--quiet", "--workers", "1"]
    own_kb, _ = report_peak_kb([*common, "--out", str(tmp_path / "a"), "--state-dir", str(state), "--resident-spans", str(SMALL)], "auto")
    assert own_kb < 72_000, own_kb
    report_peak_kb([*common, "--out", str(tmp_path / "b"), "--no-state", "--resident-spans", str(1 << 24)], "auto")
    a, b = (json.loads((tmp_path / name / "meta_report.json").read_text()) for name in "ab")
    for report in (a, b):
        report.pop("generated_at")
        report["inputs"].pop("state_warnings", None)
    assert a == b
    assert spilled_counts(state)[0] > SMALL


def test_zstd_stream_read_in_two_parts_with_spilling_tables(native, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A whole-file zstd stream read in two parts at once: this process's tables bounded in place,
    the child's handed over through files; the same report as tables kept whole."""
    import zstandard

    merges = count_merges_of(monkeypatch)
    folder = tmp_path / "traces"
    folder.mkdir()
    (folder / "traces.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress("".join(workload(1500, seed=13)).encode()))
    spilled, resident, python, declined = reports(folder, tmp_path, monkeypatch, workers=2)
    assert spilled == resident == python == declined
    assert merges[:2] == [True, True]
    assert spilled_counts(tmp_path / "state-spilled")[0] > SMALL
