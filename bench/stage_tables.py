"""Peak memory around a build's stages and the sizes of the tables it holds (a measurement, not a test).

    python bench/stage_tables.py --input FILE --out DIR --state-dir DIR --quiet --workers 2
    python bench/stage_tables.py --stage-peaks --input FILE ...   # each VmHWM: the peak since the line before

Runs the report command (its arguments as given) in this process with the build's stages wrapped:
before and after each native read (main process and forked workers), after a part's tallies are
made, before and after a worker's part is merged. Each stage logs one JSON line to stderr: the
process id, VmHWM and VmRSS from /proc/self/status (MB), and what is held there: the core's raw
result (lengths), the span set and closed-run map (resident slots, spilled keys, filter + page
indexes), the open runs (how many, how many lack their root and belong to a closed run, their deep
size), the worker's packed tallies, and the eight largest per-agent tables summed over the agents
(deep ``sys.getsizeof``, MB). The deep sizes walk every object: the stage lines cost time, never
memory that lasts (they are taken after the stage's peak).

With ``--stage-peaks`` (first argument) the peak is reset (``/proc/self/clear_refs``) after each
line, so each line's VmHWM is the peak of the stage it ends, not of the process so far; the merge
of a worker's part is logged step by step (its span and closed-run checks, the spans added, the
tallies added, the closed runs added), and each core read also logs its three blocks of 2 MB with
the highest peak (the peak of a block is reset at the core's progress call after it), where they
are in the part and the RSS after them: what in the read makes its peak.

Environment: none of its own (the build reads its own).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import meta_supervisor.build.merge as merge
import meta_supervisor.build.native_reader as native_reader
from meta_supervisor.tally.bounds import P_ROOT
from meta_supervisor.tally.fingerprints import run_fingerprint

MB = 1 << 20
STAGE_PEAKS = False  # --stage-peaks: each line's VmHWM is its stage's own peak


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def memory() -> dict[str, float]:
    found = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("VmHWM", "VmRSS")):
                key, value = line.split(":")
                found[key] = round(int(value.split()[0]) / 1024, 1)
    return found


def log(stage: str, **details) -> None:
    print(json.dumps({"pid": os.getpid(), "stage": stage, **memory(), **details}), file=sys.stderr, flush=True)
    if STAGE_PEAKS:
        reset_peak()


class BlockPeaks:
    """The core's progress callback, wrapped: the peak of each block read (between two calls), kept
    for the three highest (``--stage-peaks``)."""

    def __init__(self, progress) -> None:
        self.progress, self.read, self.top = progress, 0, []

    def __call__(self, count: int) -> None:
        self.read += count
        self.top = sorted([*self.top, (memory()["VmHWM"], self.read, memory()["VmRSS"])], reverse=True)[:3]
        reset_peak()
        if self.progress is not None:
            self.progress(count)


def deep_size(value, seen: set | None = None) -> int:
    """Bytes of ``value`` and everything it refers to (each object once)."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    size = sys.getsizeof(value)
    if isinstance(value, dict):
        size += sum(deep_size(key, seen) + deep_size(item, seen) for key, item in value.items())
    elif isinstance(value, list | tuple | set):
        size += sum(deep_size(item, seen) for item in value)
    elif hasattr(type(value), "__slots__") and not isinstance(value, str | bytes):
        size += sum(deep_size(getattr(value, slot), seen) for slot in type(value).__slots__ if hasattr(value, slot))
    return size


def agent_tables(agents) -> dict[str, float]:
    """The eight largest per-agent tables, summed over the agents (MB)."""
    sizes: dict[str, int] = {}
    for tally in agents.values():
        for slot in type(tally).__slots__:
            sizes[slot] = sizes.get(slot, 0) + deep_size(getattr(tally, slot))
    return {slot: round(size / MB, 2) for slot, size in sorted(sizes.items(), key=lambda item: -item[1])[:8]}


def spill_table(table) -> dict:
    runs = table.runs
    slots = table.size * 8 + (len(table.states) if hasattr(table, "states") else 0)
    return {
        "resident_MB": round(slots / MB, 2),
        "resident_keys": table.count,
        "spilled_keys": len(runs) if runs is not None else 0,
        "filter_and_index_MB": round(runs.resident_bytes / MB, 2) if runs is not None else 0,
    }


def open_runs(aggregator) -> dict:
    no_root = [key for key, entry in aggregator.pending.items() if entry[P_ROOT] is None]
    closed = sum(1 for key in no_root if aggregator.closed_runs.get(run_fingerprint(key), 0))
    return {
        "entries": len(aggregator.pending),
        "without_root": len(no_root),
        "without_root_of_a_closed_run": closed,
        "MB": round(deep_size(aggregator.pending) / MB, 2),
    }


def lengths(raw: dict) -> dict:
    found = {}
    for key, value in raw.items():
        try:
            found[key] = len(value)
        except TypeError:
            found[key] = value if isinstance(value, int | bool) else None
    return found


def wrap() -> None:
    call, tallies, merge_part = native_reader._call, native_reader._tallies, merge.merge_part

    def logged_call(read, where, head, options_tuple, progress, *args, **keywords):
        log("before the core's read", where=where)
        blocks = BlockPeaks(progress) if STAGE_PEAKS else progress
        raw = call(read, where, head, options_tuple, blocks, *args, **keywords)
        if isinstance(raw, dict):
            top = [{"VmHWM": hwm, "bytes_read": at, "VmRSS_after": rss} for hwm, at, rss in blocks.top] if STAGE_PEAKS else None
            log("after the core's read", sizes=lengths(raw), **({"peak_blocks": top} if top else {}))
        return raw

    def logged_tallies(raw, spill=None):
        made = tallies(raw, spill)
        log(
            "the part's tallies made",
            open_runs=len(made[3]),
            open_runs_MB=round(deep_size(made[3]) / MB, 2),
            agents_MB=agent_tables(made[1]),
        )
        return made

    def logged_merge(aggregator, part, *args):
        state = part.aggregator_state
        blob = getattr(state[1], "blob", None) if isinstance(state, tuple) else None
        log(
            "before a part is merged",
            span_set=spill_table(aggregator.seen),
            closed_runs=spill_table(aggregator.closed_runs),
            open_runs=open_runs(aggregator),
            part_packed_tallies_MB=round(len(blob) / MB, 2) if blob is not None else None,
            part_open_runs=len(state[3]) if isinstance(state, tuple) else None,
            part_open_runs_MB=round(deep_size(state[3]) / MB, 2) if isinstance(state, tuple) else None,
            agents_MB=agent_tables(aggregator.agents),
        )
        merged = merge_part(aggregator, part, *args)
        log("after a part is merged", merged=merged, open_runs=open_runs(aggregator), agents_MB=agent_tables(aggregator.agents))
        return merged

    native_reader._call, native_reader._tallies, merge.merge_part = logged_call, logged_tallies, logged_merge
    if STAGE_PEAKS:
        from meta_supervisor.tally.fingerprints import FingerprintMap, FingerprintSet
        from meta_supervisor.tally.span_aggregator import SpanAggregator

        for owner, name in [
            (FingerprintMap, "any_set"),
            (FingerprintSet, "first_present"),
            (FingerprintSet, "add_all"),
            (SpanAggregator, "add_tallies"),
            (FingerprintMap, "set_all"),
        ]:
            setattr(owner, name, stage(getattr(owner, name), f"{owner.__name__}.{name}"))
        # after the read and the merge: the state saved, the heap trimmed, the report assembled, the
        # alpha cache saved, the report's files written
        import meta_supervisor.build.alpha_cache as alpha_cache
        import meta_supervisor.build.dispatch as dispatch
        import meta_supervisor.build.incremental as incremental
        import meta_supervisor.cli.report as cli_report
        import meta_supervisor.render.outputs as outputs
        from meta_supervisor.build.state_store import SavedState

        for owner, name in [
            (incremental, "sort_latencies"),
            (SavedState, "save"),
            (dispatch, "release_free_memory"),
            (cli_report, "build_report"),
            (alpha_cache, "save"),
            (outputs, "write_report"),
        ]:
            setattr(owner, name, stage(getattr(owner, name), f"{getattr(owner, '__name__', owner)}.{name}"))


def stage(function, name: str):
    """``function`` logging the peak of each call (``--stage-peaks``)."""

    def logged(*args, **keywords):
        log(f"before {name}")
        result = function(*args, **keywords)
        log(f"{name}")
        return result

    return logged


def main(argv: list[str]) -> int:
    global STAGE_PEAKS
    if argv[:1] == ["--stage-peaks"]:
        STAGE_PEAKS, argv = True, argv[1:]
    wrap()
    from meta_supervisor.cli.report import main as report

    code = report(argv)
    log("end", code=code)
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
