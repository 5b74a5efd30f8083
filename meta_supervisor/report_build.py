"""Build the report's inputs from trace files: a full build, or an incremental one from saved state.

``build_inputs`` resolves the input specs, then either reads everything (``state_dir=None``, or no
usable state) or loads the state, reads only what was appended since, and saves the state again. A
file that was truncated or replaced since the last build cannot have its share subtracted exactly
(deduplication and run joins cross file boundaries): when it is the last input (the active file),
the state saved just before it is restored and only that file is read again; an earlier file
triggers a rebuild from all inputs (``incremental_state``). A renamed file (collector rotation) is
recognised by its identity and continued, not read again. Large files of JSON lines, plain or one
zstd stream (with the native core), are split across processes (see ``parallel_build``).

Reads no environment variables.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from meta_supervisor.heap_trim import release_free_memory
from meta_supervisor.open_runs import MAX_OPEN_RUNS
from meta_supervisor.report_model import BuildInputs
from meta_supervisor.trace_inputs import expected_spans, resolve_inputs

# span_aggregator, trace_files and parallel_build (msgspec, zstandard) are imported where spans are
# read, so that a build with nothing new to read does not pay for importing them.


@dataclass
class BuildOptions:
    inputs: list[str]
    prices: object = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    state_dir: Path | None = None  # None: always a full build, nothing saved
    workers: int = 0  # 0: one per CPU; 1: no extra processes
    force_full: bool = False  # ignore saved state (a new one is still saved)
    progress: Callable[[int, int], None] | None = None  # (bytes done, bytes total)
    alpha_signals: bool = True  # keep the alpha signals for scoring (the report's alpha_quality section)
    lock_timeout: float | None = None  # seconds to wait for the state lock (None: state_store.DEFAULT_LOCK_TIMEOUT)
    notify: Callable[[str], None] | None = None  # told at once when the build has to wait for the state lock
    max_open_runs: int = MAX_OPEN_RUNS  # run_join.bound_open_runs (ALPHATRACE_MAX_OPEN_RUNS, read by the command)


@dataclass
class BuildStats:
    mode: str = "full"  # "full" | "incremental" | "unchanged"
    bytes_read: int = 0
    files_read: int = 0
    rebuild_reason: str = ""
    notes: list[str] = field(default_factory=list)
    state_dir: Path | None = None  # where the incremental state is (None: not kept)
    state: str = ""  # "<key>-<generation>" of the saved state the tallies equal: what a derived cache may be keyed on
    checkpoint: str = ""  # what became of the state saved before the last file (written, kept, none ...)
    warnings: list[str] = field(default_factory=list)  # the state could not be used, trusted or saved (inputs.state_warnings)


def to_ns(moment: dt.datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def new_aggregator(options: BuildOptions, expected_spans: int = 0):
    from meta_supervisor.span_aggregator import SpanAggregator

    return SpanAggregator(
        options.prices,
        to_ns(options.since),
        to_ns(options.until),
        expected_spans=expected_spans,
        collect_signals=options.alpha_signals,
        max_open_runs=options.max_open_runs,
    )


def _progress_adapter(options: BuildOptions, total: int):
    if options.progress is None:
        return None
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        options.progress(done, total)

    return advance


def full_build(options: BuildOptions, files: list[Path], stats: BuildStats, before_last: Callable | None = None):
    """Read every file from the start; ``before_last(aggregator, cursors)`` is called just before the
    last file is read (the incremental state saves its checkpoint there)."""
    sizes = {}
    for path in files:
        try:
            sizes[path] = os.path.getsize(path)
        except OSError:
            sizes[path] = 0
    total = sum(sizes.values())
    aggregator = new_aggregator(options, expected_spans=sum(expected_spans(path) for path in files))
    advance = _progress_adapter(options, total)
    cursors: dict = {}  # path -> trace_files.FileCursor
    for index, path in enumerate(files):
        if before_last is not None and index == len(files) - 1:
            before_last(aggregator, cursors)
        cursor = read_file_maybe_parallel(path, aggregator, options, advance)
        cursors[str(path)] = cursor
        stats.bytes_read += cursor.size
        stats.files_read += 1
    aggregator.settle()
    return aggregator, cursors


def read_file_maybe_parallel(path: Path, aggregator, options: BuildOptions, advance, cursor=None):
    from meta_supervisor.parallel_build import read_in_parallel, read_zstd_in_parallel, worth_splitting, worth_splitting_zstd
    from meta_supervisor.trace_files import read_trace_file

    if worth_splitting(path, cursor, options.workers):
        return _covering(read_in_parallel(path, aggregator, options, advance, cursor))
    if worth_splitting_zstd(path, cursor, options.workers):
        return _covering(read_zstd_in_parallel(path, aggregator, options, advance, cursor))
    return _covering(read_trace_file(path, aggregator, cursor, advance))


def _covering(cursor):
    """The file grew while it was read (its size is taken before): its recorded size then covers what
    was read, so a saved offset is never past the saved size (``state_checks`` holds states to it)."""
    if not cursor.format.startswith("zstd"):
        cursor.size = max(cursor.size, cursor.offset + cursor.partial_tail_bytes)
    return cursor


def build_inputs(options: BuildOptions) -> tuple[BuildInputs, BuildStats]:
    """Read the inputs (fully or incrementally) into everything ``report_model.build_report`` needs."""
    files, messages = resolve_inputs(options.inputs)
    stats = BuildStats()
    was_enabled = gc.isenabled()
    gc.disable()  # the hot loop allocates millions of acyclic objects; collecting them is wasted time
    try:
        if options.state_dir is not None:
            from meta_supervisor.incremental_state import incremental_build

            aggregator, cursors = incremental_build(options, files, stats)
        else:
            aggregator, cursors = full_build(options, files, stats)
    finally:
        if was_enabled:
            gc.enable()
    if stats.bytes_read:  # what reading and merging freed: the report is built beside it, not on top (heap_trim)
        release_free_memory()
    file_details = [cursors[str(path)].details() for path in files if str(path) in cursors]
    for cursor in cursors.values():
        if cursor.error:
            messages.append(cursor.error)
    if not files:
        messages.append("no trace files to read: the report is empty")
    elif aggregator.inputs.spans == 0 and aggregator.inputs.outside_window:
        outside = aggregator.inputs.outside_window
        messages.append(
            f"all {outside:,} span{'' if outside == 1 else 's'} read started outside the --since/--until window (when the span was "
            "written; --as-of-since/--as-of-until select market days): the report is empty"
        )
    elif aggregator.inputs.spans == 0:
        messages.append("the trace files hold no spans yet: the report is empty")
    data = BuildInputs(
        agents=aggregator.agents,
        inputs=aggregator.inputs,
        pending=aggregator.pending,
        files=file_details,
        messages=messages,
        since=options.since,
        until=options.until,
        latency=aggregator.latency_summaries,
        alpha_signals=options.alpha_signals,
        state_warnings=list(stats.warnings),
    )
    return data, stats
