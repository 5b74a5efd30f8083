"""What a build is asked for (``BuildOptions``), what it did (``BuildStats``) and what it hands to the
report (``BuildInputs``): the vocabulary shared by the full, incremental and parallel builds and the
saved state, a leaf of ``build``.

Reads no environment variables (the command reads them into ``BuildOptions``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meta_supervisor.tally.aggregates import AgentTally, InputTally
from meta_supervisor.tally.open_runs import MAX_OPEN_RUNS


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
    max_open_runs: int = MAX_OPEN_RUNS  # consistency.bound_open_runs (ALPHATRACE_MAX_OPEN_RUNS, read by the command)
    resident_spans: int | None = None  # spill_plan (--resident-spans, ALPHATRACE_RESIDENT_SPANS); None: the default
    save_aside: bool = False  # the state saved by a forked process while the caller goes on (incremental.finish_saving)


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
    saving: Any = None  # a state still being saved aside (incremental.finish_saving); it holds the state lock


def to_ns(moment: dt.datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def new_aggregator(options: BuildOptions, expected_spans: int = 0):
    from meta_supervisor.build.spill_plan import DEFAULT_RESIDENT_SPANS, plan_for
    from meta_supervisor.tally.span_aggregator import SpanAggregator

    resident = DEFAULT_RESIDENT_SPANS if options.resident_spans is None else options.resident_spans
    return SpanAggregator(
        options.prices,
        to_ns(options.since),
        to_ns(options.until),
        expected_spans=expected_spans,
        collect_signals=options.alpha_signals,
        max_open_runs=options.max_open_runs,
        spill=plan_for(options.state_dir, resident),
    )


def progress_adapter(options: BuildOptions, total: int):
    if options.progress is None:
        return None
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        options.progress(done, total)

    return advance


@dataclass
class BuildInputs:
    """Everything read from the trace files, ready to report on."""

    agents: Mapping[str, AgentTally]
    inputs: InputTally
    pending: Mapping[str, list] = field(default_factory=dict)
    files: list[dict[str, Any]] = field(default_factory=list)  # path, format, bytes, records, partial_tail_bytes
    messages: list[str] = field(default_factory=list)
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    latency: Mapping[str, Mapping[str, Any]] | None = None  # name -> latency_summary(); None: computed here
    as_of_since: dt.date | None = None  # the as-of window (first and last as-of day, both included):
    as_of_until: dt.date | None = None  # what follows it is in_as_of_window's docstring
    alpha_signals: bool = True  # the tallies keep alpha signals (False: --no-alpha-quality)
    state_warnings: list[str] = field(default_factory=list)  # the incremental state was not used, trusted or saved
