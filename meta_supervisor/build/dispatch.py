"""One build: the input specs resolved, then read fully or incrementally, into what the report needs.

``build_inputs`` resolves the input specs, then either reads everything (``state_dir=None``:
``full.full_build``) or loads the saved state, reads only what was appended since, and saves the
state again (``incremental.incremental_build``); either way the tallies equal a full build's. It
returns them as ``BuildInputs`` for ``assemble.report.build_report``, with the build's notes.

Reads no environment variables.
"""

from __future__ import annotations

import gc

from meta_supervisor.build.full import full_build
from meta_supervisor.build.heap_trim import release_free_memory
from meta_supervisor.build.incremental import incremental_build
from meta_supervisor.build.options import BuildInputs, BuildOptions, BuildStats
from meta_supervisor.reading.inputs import resolve_inputs


def build_inputs(options: BuildOptions) -> tuple[BuildInputs, BuildStats]:
    """Read the inputs (fully or incrementally) into everything ``report.build_report`` needs."""
    files, messages = resolve_inputs(options.inputs)
    stats = BuildStats()
    was_enabled = gc.isenabled()
    gc.disable()  # the hot loop allocates millions of acyclic objects; collecting them is wasted time
    try:
        if options.state_dir is not None:
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
