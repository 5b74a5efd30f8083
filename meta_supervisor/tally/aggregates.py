"""The report's mergeable aggregates: per-agent tallies and input bookkeeping, exact under merge.

Everything here is a count, an integer sum, a minimum or maximum, a list of latencies, a bounded
histogram (tool latencies, ``tool_tallies``) or a bounded "top K" heap, so two
tallies over disjoint sets of spans merge into exactly the tally over their union (no float sum whose
value depends on order: cost is priced at the end from integer token sums). ``to_state`` /
``from_state`` turn a tally into JSON-able data plus raw arrays for the incremental state; the failing
runs' error texts are written through ``otel.redaction.redact`` (no API key in the state folder).

Reads no environment variables.
"""

from __future__ import annotations

import heapq
import sys
from array import array
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from meta_supervisor.tally.bounds import (
    BAD_LINE_EXAMPLES,
    CONFLICT_EXAMPLES,
    H_DROPPED,
    H_FAILED,
    H_SUMMED,
    MAX_HOST_PROCESSES,
    MAX_PROCESSES,
    NO_HOST,
    NO_INSTANCE,
    NO_SERVICE,
    NO_SHARD,
    OTHER_LABEL,
    RS_LLM_MAX,
    RS_TOOL_MAX,
    T_CALLS,
    T_ERRORS,
    T_HIST,
    T_MAX,
    T_MIN,
    T_SUM,
    T_TIMED,
    TOP_K,
    bounded_key,
    label,
)
from meta_supervisor.tally.day_tables import merged as merged_days
from meta_supervisor.tally.day_tables import packed as packed_days
from meta_supervisor.tally.signal_store import SignalStore
from meta_supervisor.tally.tool_tallies import histogram_copy, histogram_state, merged_histogram, native_histogram_merge, pack_histogram
from otel.redaction import known_secrets, redact


def push_top(heap: list, item: tuple, k: int = TOP_K) -> None:
    """Keep the ``k`` largest items (a min-heap)."""
    if len(heap) < k:
        heapq.heappush(heap, item)
    elif item > heap[0]:
        heapq.heapreplace(heap, item)


def note_mismatch(examples: list, trace_id: str, run_id: str, detail: str, k: int = TOP_K) -> None:
    """Keep, sorted by trace id, the ``k`` mismatched runs with the smallest trace ids; a run noted
    again replaces its detail (the last word on a run is order-independent: see span_aggregator)."""
    for i, item in enumerate(examples):
        if item[0] == trace_id:
            examples[i] = (trace_id, run_id, detail)
            return
    if len(examples) >= k and trace_id > examples[-1][0]:
        return
    examples.append((trace_id, run_id, detail))
    examples.sort()
    del examples[k:]


ASK = object()  # ``AgentTally.merge``'s ``native_merge`` not given: asked of the native core there

Counts = dict[str, int]
Rows = list[list[Any]]


class TallyState(TypedDict):
    """What ``AgentTally.to_state`` writes, field by field: a saved tally is decoded against it
    (``state_store.decoded``), so one of another shape is a rebuild, never a report made of it."""

    outcomes: Counts
    outcome_missing: int
    bad_durations: int
    first_start_ns: int
    last_start_ns: int
    day_runs: list[list[int]]
    asof_runs: list[list[int]]
    day_models: list[list[int | str | bool]]
    bad_token_values: int
    llm_operations: Counts
    tools: Rows
    run_steps: list[int]
    killed_mid_run: Counts
    budget_stops: Counts
    alpha: list[tuple[str, str, int]]
    invalid_reasons: Counts
    slowest: Rows
    failing: Rows
    last_kill: list[Any] | None
    kill_switch_errors: int
    consistency: list[int]
    mismatches: Rows


class AgentTally:
    __slots__ = (
        "alpha",
        "asof_runs",
        "bad_durations",
        "bad_token_values",
        "budget_stops",
        "consistency",
        "day_models",
        "day_runs",
        "failing",
        "first_start_ns",
        "invalid_reasons",
        "kill_switch_errors",
        "killed_mid_run",
        "last_kill",
        "last_start_ns",
        "latencies_ns",
        "latency_runs",
        "llm_operations",
        "mismatches",
        "outcome_missing",
        "outcomes",
        "run_steps",
        "signals",
        "slowest",
        "tools",
    )

    def __init__(self, signals: Any = None) -> None:
        self.outcomes: dict[str, int] = {}
        self.outcome_missing = 0
        self.latencies_ns = array("q")
        self.latency_runs: tuple = ()  # more of them, sorted in files (latency_runs.LatencySpill)
        self.bad_durations = 0
        self.first_start_ns = 0
        self.last_start_ns = 0
        # the per-day tables: dicts of lists as the Python reader counts, or packed (day_tables.DayTable)
        self.day_runs: Mapping[int, Sequence[int]] = {}
        self.asof_runs: Mapping[int, Sequence[int]] = {}  # alphatrace.run.as_of day -> [ok, error, killed] runs
        self.day_models: Mapping[tuple[int, str, bool], Sequence[int]] = {}
        self.bad_token_values = 0
        self.llm_operations: dict[str, int] = {}  # LLM operation (chat, embeddings, ...) -> calls
        self.tools: dict[str, list] = {}  # tool name -> T_* slots (tool_tallies.py)
        self.run_steps = [0, 0, 0, 0, 0, 0]  # LLM and tool calls per run that ran (bounds.RS_*)
        self.killed_mid_run: dict[str, int] = {}  # killed runs with stopped_before: step -> runs
        self.budget_stops: dict[str, int] = {}  # budget_exceeded runs: budget name -> runs
        self.alpha: dict[tuple[str, str], int] = {}
        self.invalid_reasons: dict[str, int] = {}
        self.slowest: list[tuple] = []  # (latency_ns, trace_id, run_id, start_ns)
        self.failing: list[tuple] = []  # (start_ns, trace_id, run_id, error_type, message)
        self.last_kill: tuple | None = None  # (start_ns, reason)
        self.kill_switch_errors = 0
        self.consistency = [0, 0, 0, 0]
        self.mismatches: list[tuple] = []  # (trace_id, run_id, detail), smallest trace ids
        self.signals = signals  # signal_store.SignalStore, or None when alpha signals are not collected

    def merge(self, other: AgentTally, native_merge=ASK) -> None:
        """Add ``other`` (a tally over other spans). ``native_merge``: the native core's histogram
        merge (``tool_tallies.native_histogram_merge``, asked once by a caller merging many tallies)."""
        if other.outcomes:  # most of an agent's count tables are empty: not even a loop started
            _merge_counts(self.outcomes, other.outcomes)
        self.outcome_missing += other.outcome_missing
        if other.latencies_ns:
            self.latencies_ns.extend(other.latencies_ns)
        if other.latency_runs:
            self.latency_runs = (*self.latency_runs, *other.latency_runs)
        self.bad_durations += other.bad_durations
        if other.first_start_ns and (not self.first_start_ns or other.first_start_ns < self.first_start_ns):
            self.first_start_ns = other.first_start_ns
        self.last_start_ns = max(self.last_start_ns, other.last_start_ns)
        self.day_runs = merged_days(self.day_runs, other.day_runs)
        self.asof_runs = merged_days(self.asof_runs, other.asof_runs)
        self.day_models = merged_days(self.day_models, other.day_models)
        self.bad_token_values += other.bad_token_values
        if other.llm_operations:
            _merge_counts(self.llm_operations, other.llm_operations)
        if other.tools:
            if native_merge is ASK:
                native_merge = native_histogram_merge()
            for name, theirs in other.tools.items():
                mine = self.tools.get(name)
                if mine is None:
                    self.tools[name] = [*theirs[:T_HIST], histogram_copy(theirs[T_HIST])]
                else:
                    _merge_tool(mine, theirs, native_merge)
        self.run_steps = merge_run_steps(self.run_steps, other.run_steps)
        for target, source in (
            (self.killed_mid_run, other.killed_mid_run),
            (self.budget_stops, other.budget_stops),
            (self.alpha, other.alpha),
            (self.invalid_reasons, other.invalid_reasons),
        ):
            if source:
                _merge_counts(target, source)
        for item in other.slowest:
            push_top(self.slowest, item)
        for item in other.failing:
            push_top(self.failing, item)
        for item in other.mismatches:
            note_mismatch(self.mismatches, *item)
        if other.last_kill is not None and (self.last_kill is None or other.last_kill > self.last_kill):
            self.last_kill = other.last_kill
        self.kill_switch_errors += other.kill_switch_errors
        self.consistency = [a + b for a, b in zip(self.consistency, other.consistency)]
        if other.signals is not None:
            if self.signals is None:
                self.signals = SignalStore()
            self.signals.merge(other.signals)

    def taken_over(self, collect_signals: bool) -> AgentTally:
        """This tally made what ``AgentTally(store).merge(self)`` makes of it on a new tally (``store``:
        a new ``SignalStore`` when ``collect_signals``), without copying its tables: the heaps pushed
        again, the signals merged into a new store. For a part's tally taken over whole by an
        aggregator that has none of its agent yet (1,000 agents: no second copy of every tally)."""
        slowest: list[tuple] = []
        failing: list[tuple] = []
        mismatches: list[tuple] = []
        for item in self.slowest:
            push_top(slowest, item)
        for item in self.failing:
            push_top(failing, item)
        for item in self.mismatches:
            note_mismatch(mismatches, *item)
        self.slowest, self.failing, self.mismatches = slowest, failing, mismatches
        store = SignalStore() if collect_signals else None
        if self.signals is not None:
            store = store if store is not None else SignalStore()
            store.merge(self.signals)
        self.signals = store
        return self

    def to_state(self) -> dict[str, Any]:
        """JSON-able state; the latencies and the signal store's arrays are saved apart (raw bytes)."""
        secrets = known_secrets() if self.failing else ()  # once an agent, not twice a failing run
        return {
            "outcomes": self.outcomes,
            "outcome_missing": self.outcome_missing,
            "bad_durations": self.bad_durations,
            "first_start_ns": self.first_start_ns,
            "last_start_ns": self.last_start_ns,
            "day_runs": [[day, *counts] for day, counts in self.day_runs.items()],
            "asof_runs": [[day, *counts] for day, counts in self.asof_runs.items()],
            "day_models": [[day, model, sim, *counts] for (day, model, sim), counts in self.day_models.items()],
            "bad_token_values": self.bad_token_values,
            "llm_operations": self.llm_operations,
            "tools": [[name, *entry[:T_HIST], histogram_state(entry[T_HIST])] for name, entry in self.tools.items()],
            "run_steps": self.run_steps,
            "killed_mid_run": self.killed_mid_run,
            "budget_stops": self.budget_stops,
            "alpha": [[symbol, direction, count] for (symbol, direction), count in self.alpha.items()],
            "invalid_reasons": self.invalid_reasons,
            "slowest": [list(item) for item in self.slowest],
            "failing": [[*item[:3], redact(item[3], secrets), redact(item[4], secrets)] for item in self.failing],
            "last_kill": list(self.last_kill) if self.last_kill else None,
            "kill_switch_errors": self.kill_switch_errors,
            "consistency": self.consistency,
            "mismatches": [list(item) for item in self.mismatches],
        }

    @classmethod
    def from_state(cls, data: dict[str, Any], latencies: bytes, signals: Any = None, keys: dict | None = None) -> AgentTally:
        """``signals``: the agent's ``SignalStore`` (loaded apart), or None. ``keys``: a dict shared
        by the tallies loaded together, in which their (symbol, direction) keys are kept once for
        all of them (the per-day tables' keys are packed: day_tables.py)."""
        tally = cls(signals)
        # labels repeat across agents (outcomes, models, symbols, directions, error types): one
        # string each, not one per agent (1,000 agents: ~3 MB of copies from a part read apart);
        # so do the keys made of them (1,000 agents: ~1.5 MB of tuples)
        intern = sys.intern
        tally.outcomes = {intern(key): count for key, count in data["outcomes"].items()}
        tally.outcome_missing = data["outcome_missing"]
        tally.latencies_ns.frombytes(latencies)
        tally.bad_durations = data["bad_durations"]
        tally.first_start_ns = data["first_start_ns"]
        tally.last_start_ns = data["last_start_ns"]
        # the per-day tables packed (day_tables.py: 8 bytes a count; they grow with the file's days)
        tally.day_runs = packed_days([(row[0], row[1:]) for row in data["day_runs"]], 5)
        tally.asof_runs = packed_days([(row[0], row[1:]) for row in data["asof_runs"]], 3)
        tally.day_models = packed_days([((row[0], row[1], row[2]), row[3:]) for row in data["day_models"]], 5, models=True)
        tally.bad_token_values = data["bad_token_values"]
        tally.llm_operations = {intern(key): count for key, count in data["llm_operations"].items()}
        tally.tools = {intern(row[0]): [*row[1:7], pack_histogram(row[7])] for row in data["tools"]}  # packed: 8 B a bucket
        tally.run_steps = list(data["run_steps"])
        tally.killed_mid_run = {intern(key): count for key, count in data["killed_mid_run"].items()}
        tally.budget_stops = {intern(key): count for key, count in data["budget_stops"].items()}
        tally.alpha = _shared_alpha(data["alpha"], keys)
        tally.invalid_reasons = {intern(key): count for key, count in data["invalid_reasons"].items()}
        tally.slowest = [tuple(item) for item in data["slowest"]]
        tally.failing = [(*item[:3], *(intern(text) if type(text) is str else text for text in item[3:])) for item in data["failing"]]
        heapq.heapify(tally.slowest)
        heapq.heapify(tally.failing)
        tally.last_kill = tuple(data["last_kill"]) if data["last_kill"] else None
        tally.kill_switch_errors = data["kill_switch_errors"]
        tally.consistency = list(data["consistency"])
        tally.mismatches = sorted(tuple(item) for item in data["mismatches"])
        return tally


class Tallies:
    """What a build hands to the report: per-agent tallies, input counts, open runs, latency summaries."""

    def __init__(self, agents: dict, inputs: InputTally, pending: dict, latency_summaries: dict | None = None) -> None:
        self.agents = agents
        self.inputs = inputs
        self.pending = pending
        self.latency_summaries = latency_summaries


class InputTally:
    """What was read: spans, duplicates, unreadable lines and spans (with where), skipped spans."""

    __slots__ = (
        "bad_line_examples",
        "bad_lines",
        "bad_spans",
        "conflicting_examples",
        "conflicting_spans",
        "duplicate_run_roots",
        "duplicate_spans",
        "evaluation_spans",
        "evicted_llm_runs",
        "evicted_llm_spans",
        "evicted_roots",
        "host_processes",
        "other_spans",
        "outside_window",
        "spans",
        "spans_without_id",
        "supervisor_spans",
        "tail_sampled_spans",
        "telemetry_losses",
    )

    def __init__(self) -> None:
        self.spans = 0
        self.duplicate_spans = 0  # the same ids and content again (an exporter retry)
        self.conflicting_spans = 0  # the same ids with other content (the first copy is kept)
        self.conflicting_examples: list[tuple] = []  # (trace id, span id), the smallest ones
        self.bad_lines = 0
        self.bad_line_examples: list[tuple] = []  # (file, line, error), the first ones by file and line
        self.bad_spans = 0
        self.spans_without_id = 0
        self.outside_window = 0
        self.other_spans = 0
        self.tail_sampled_spans = 0  # spans of resources a tail-sampling collector marked (alphatrace.sampling)
        self.evaluation_spans = 0  # alphatrace.evaluation: forecast outcomes added to runs' traces, no run's span
        self.supervisor_spans = 0  # alphatrace.supervisor.run / alphatrace.supervisor.decide: the supervisor's, no agent's
        self.duplicate_run_roots = 0
        # open runs evicted (consistency.bound_open_runs): roots that waited for LLM spans (closed as
        # unchecked), and runs of LLM spans that waited for their root, with their spans
        self.evicted_roots = 0
        self.evicted_llm_runs = 0
        self.evicted_llm_spans = 0
        # (service.name, service.instance.id) -> [spans dropped, spans failed to export]: the largest
        # value of each cumulative counter seen on that process's root spans, i.e. its latest
        self.telemetry_losses: dict[tuple, list[int]] = {}
        # (host.name, alphatrace.shard, service.instance.id) -> the H_* columns (bounds.py)
        self.host_processes: dict[tuple, list[int]] = {}

    def host_row(self, process: tuple) -> list[int]:
        """The per-host row of ``process`` (``resource_facts``), created on first sight; past
        MAX_HOST_PROCESSES a new process is folded whole into ("(other)", "(other)", "(other)")."""
        key = (label(process[2], NO_HOST), label(process[3], NO_SHARD), label(process[1], NO_INSTANCE))
        row = self.host_processes.get(key)
        if row is None:
            if len(self.host_processes) >= MAX_HOST_PROCESSES:
                key = (OTHER_LABEL, OTHER_LABEL, OTHER_LABEL)
            row = self.host_processes.get(key)
            if row is None:
                row = self.host_processes[key] = [0] * (H_FAILED + 1)
        return row

    def add_host_losses(self, process: tuple, dropped: int, failed: int) -> None:
        row = self.host_row(process)
        if dropped > row[H_DROPPED]:
            row[H_DROPPED] = dropped
        if failed > row[H_FAILED]:
            row[H_FAILED] = failed

    def add_telemetry_losses(self, process: tuple, dropped: int, failed: int) -> None:
        """One root span's loss counters (cumulative for its process): the maximum per process counts."""
        counts = self.telemetry_losses.get(process)
        if counts is None:
            key = (label(process[0], NO_SERVICE), label(process[1], NO_INSTANCE))
            key = bounded_key(self.telemetry_losses, key, MAX_PROCESSES)
            counts = self.telemetry_losses.get(key)
            if counts is None:
                counts = self.telemetry_losses[key] = [0, 0]
        if dropped > counts[0]:
            counts[0] = dropped
        if failed > counts[1]:
            counts[1] = failed

    def add_bad_line(self, file: str, line: int, error: str) -> None:
        """A whole line (message) that could not be read."""
        self.bad_lines += 1
        _push_first(self.bad_line_examples, (file, line, label(error, "unreadable", 300)))

    def add_bad_spans(self, file: str, line: int, count: int, error: str) -> None:
        """A readable line with ``count`` spans (or groups of spans) that could not be read."""
        self.bad_spans += count
        _push_first(self.bad_line_examples, (file, line, label(error, "unreadable span", 300)))

    def add_conflicting_span(self, trace_id: str, span_id: str) -> None:
        """A span whose ids were seen before with other content (not counted as a span)."""
        self.conflicting_spans += 1
        _push_first(self.conflicting_examples, (label(trace_id, "", 64), label(span_id, "", 64)), CONFLICT_EXAMPLES)

    def merge(self, other: InputTally) -> None:
        for name in self.__slots__:
            if name == "bad_line_examples":
                for item in other.bad_line_examples:
                    _push_first(self.bad_line_examples, item)
            elif name == "conflicting_examples":
                for item in other.conflicting_examples:
                    _push_first(self.conflicting_examples, item, CONFLICT_EXAMPLES)
            elif name == "telemetry_losses":
                for process, (dropped, failed) in other.telemetry_losses.items():
                    self.add_telemetry_losses(process, dropped, failed)
            elif name == "host_processes":
                for (host, shard, instance), theirs in other.host_processes.items():
                    row = self.host_row((None, instance, host, shard))
                    for column in range(H_SUMMED):
                        row[column] += theirs[column]
                    row[H_DROPPED] = max(row[H_DROPPED], theirs[H_DROPPED])
                    row[H_FAILED] = max(row[H_FAILED], theirs[H_FAILED])
            else:
                setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_state(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__}
        out["bad_line_examples"] = [list(item) for item in self.bad_line_examples]
        out["conflicting_examples"] = [list(item) for item in self.conflicting_examples]
        out["telemetry_losses"] = [[*process, *counts] for process, counts in sorted(self.telemetry_losses.items())]
        out["host_processes"] = [[*key, *row] for key, row in sorted(self.host_processes.items())]
        return out

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> InputTally:
        tally = cls()
        for name in cls.__slots__:
            setattr(tally, name, data[name])
        tally.bad_line_examples = sorted(tuple(item) for item in data["bad_line_examples"])
        tally.conflicting_examples = sorted(tuple(item) for item in data["conflicting_examples"])
        tally.telemetry_losses = {(service, instance): [dropped, failed] for service, instance, dropped, failed in data["telemetry_losses"]}
        tally.host_processes = {tuple(item[:3]): list(item[3:]) for item in data["host_processes"]}
        return tally


def _shared_alpha(rows: list, keys: dict | None) -> dict[tuple[str, str], int]:
    """A state's (symbol, direction, count) rows as ``AgentTally.alpha``, its strings interned and,
    with ``keys``, each key the one kept there (looked up before any string is interned: most keys
    are known already, 18 a tally of 1,000 agents)."""
    intern = sys.intern
    if keys is None:
        return {(intern(row[0]), intern(row[1])): row[2] for row in rows}
    alpha = {}
    for row in rows:
        key = keys.get((row[0], row[1]))
        if key is None:
            key = (intern(row[0]), intern(row[1]))
            key = keys.setdefault(key, key)
        alpha[key] = row[2]
    return alpha


def _push_first(examples: list, item: tuple, limit: int = BAD_LINE_EXAMPLES) -> None:
    """Keep the ``limit`` smallest items (e.g. (file, line, error)), sorted: the same ones whatever
    the order they come in."""
    if item in examples or (len(examples) >= limit and item >= examples[-1]):
        return
    examples.append(item)
    examples.sort()
    del examples[limit:]


def merge_run_steps(mine: list[int], theirs: list[int]) -> list[int]:
    """Two agents' (or tallies') ``run_steps`` (``bounds.RS_*``) as one: runs and sums add, maxima take
    the larger."""
    return [max(a, b) if slot in (RS_LLM_MAX, RS_TOOL_MAX) else a + b for slot, (a, b) in enumerate(zip(mine, theirs))]


def _merge_tool(mine: list, theirs: list, native_merge=None) -> None:
    """One tool's tally (``T_*``) plus another's over other calls (``native_merge``:
    ``tool_tallies.native_histogram_merge``)."""
    if theirs[T_TIMED]:
        if not mine[T_TIMED] or theirs[T_MIN] < mine[T_MIN]:
            mine[T_MIN] = theirs[T_MIN]
        mine[T_MAX] = max(mine[T_MAX], theirs[T_MAX])
    for slot in (T_CALLS, T_ERRORS, T_TIMED, T_SUM):
        mine[slot] += theirs[slot]
    mine[T_HIST] = merged_histogram(mine[T_HIST], theirs[T_HIST], native_merge)


def _merge_counts(target: dict, source: dict) -> None:
    for key, count in source.items():
        target[key] = target.get(key, 0) + count
