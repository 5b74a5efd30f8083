"""The merge rules of a part read apart: accepted only when it equals reading the part in order.

A part (``PartResult``, from a forked child or the native core) is merged into the build's
aggregator only if no span of the part was seen before (a retried batch across the cut), no run of
the part was already closed or waiting in a way a join could not reproduce, and no bounded table
would pass its limit (``within_limits``); otherwise nothing changes and the caller reads the part
again in order. The tallies themselves are added by the aggregator (``SpanAggregator.add_tallies``).

Reads no environment variables.
"""

from __future__ import annotations

import pickle
from operator import add, gt

from meta_supervisor.build.packed_tallies import bounded_tables
from meta_supervisor.build.part_result import PartResult, SpilledArray, chunks_of
from meta_supervisor.tally import latency_runs
from meta_supervisor.tally.bounds import (
    AGENT_TABLE_LIMITS,
    MAX_AGENTS,
    MAX_DISTINCT,
    MAX_HOST_PROCESSES,
    MAX_PROCESSES,
    P_ROOT,
)
from meta_supervisor.tally.consistency import AGENT_INDEX_UNKNOWN, INDEX_SHIFT
from meta_supervisor.tally.fingerprints import run_fingerprint
from meta_supervisor.tally.span_aggregator import SpanAggregator

TABLE_LIMITS = [limit for _, limit in AGENT_TABLE_LIMITS]


def merge_part(aggregator: SpanAggregator, part: PartResult, file_label: str, line_offset: int) -> bool:
    """Merge a part read apart (in a child, or by the native core) into ``aggregator`` if that equals
    reading it here in order; else change nothing."""
    state = part.aggregator_state
    inputs, agents, agent_order, pending, *dead = pickle.loads(state) if isinstance(state, bytes) else state
    part.aggregator_state = b""  # its objects are out: the bytes need not stay (peak RSS)
    closed = aggregator.closed_runs
    # runs: the part's closed runs must be unknown here, and the part's open runs joinable (a
    # worker's bounded tables come in chunks from its hand-over files: part_result.chunks_of)
    pending_fps = {run_fingerprint(key) for key in aggregator.pending}
    for keys in chunks_of(part.closed_keys):
        if not pending_fps.isdisjoint(keys) or closed.any_set(keys):
            return False
    for key, entry in pending.items():
        mine = aggregator.pending.get(key)
        if mine is not None and mine[P_ROOT] is not None and entry[P_ROOT] is not None:
            return False
        if entry[P_ROOT] is not None and closed.get(run_fingerprint(key), 0):
            return False
    # spans: none of the part's spans seen before
    seen = aggregator.seen
    if any(seen.first_present(entries) >= 0 for entries in chunks_of(part.span_fps)):
        return False
    # tables with a size limit: read in order, no key of the part would be folded into "(other)"
    if not within_limits(aggregator, inputs, agents, agent_order):
        return False
    # accepted: spans, tallies, inputs, open runs, closed runs (agent index remapped)
    if _sorted_into_runs(seen, part.span_fps):
        # a worker's bounded part: its spans (new, checked above) come in key order from its hand-over
        # file and are added as one run of the spilled tier, left out of the tier's Bloom filter (freed,
        # and made again at the next lookup: ``spill.rs``'s ``defer``) and not through the resident
        # slots: 5 M spans, neither the filter of 5.3 MB nor the slots' 5.5 MB held through the merge
        for entries in part.span_fps.raw_chunks():
            seen.runs.load(entries)
        seen.runs.loaded()
    else:
        for entries in chunks_of(part.span_fps):
            seen.add_all(entries)
    part.span_fps = memoryview(b"").cast("Q")  # in the table now: not held through the tallies' merge (peak RSS)
    aggregator.add_tallies((inputs, agents, agent_order, pending, *dead), line_offset)
    latency_runs.bound(aggregator)
    unknown = AGENT_INDEX_UNKNOWN
    remap = bytes(min(aggregator.agent_index.get(name, unknown), unknown) for name in agent_order[:unknown]) + bytes([unknown] * 32)
    low = (1 << INDEX_SHIFT) - 1  # the code and the tools flag
    translate = bytes((state & low) | (remap[state >> INDEX_SHIFT] << INDEX_SHIFT) for state in range(256))
    if _sorted_into_runs(closed, part.closed_keys):  # as the spans: one run, in key order, all new
        for keys, states in zip(part.closed_keys.raw_chunks(), part.closed_states.raw_chunks(), strict=True):
            closed.runs.load(keys, states.translate(translate))
        closed.runs.loaded()
    else:
        for keys, states in zip(chunks_of(part.closed_keys), chunks_of(part.closed_states), strict=True):
            closed.set_all(keys, states.translate(translate))
    part.closed_keys, part.closed_states = memoryview(b"").cast("Q"), b""
    return True


def _sorted_into_runs(table, entries) -> bool:
    """Whether a part's ``entries`` (its keys, known new to ``table``) are added to the table's
    spilled tier as one run: they come sorted from a worker's hand-over file and the tier is the
    native core's that leaves loaded keys out of its filter until a lookup needs them."""
    return isinstance(entries, SpilledArray) and table.runs is not None and hasattr(table.runs, "defer_filter")


def within_limits(aggregator: SpanAggregator, inputs, agents: dict, agent_order: list) -> bool:
    """Whether adding a part's tallies leaves every bounded table within its limit. Reading the part
    in order folds a new key into "(other)" only when its table is full, so if the union of both
    sides' keys fits, nothing is folded and adding the counts is exact; otherwise the part is read
    again in order (rare: a table that large is hostile input, or a very long history)."""
    if len(aggregator.agents.keys() | agent_order) > MAX_AGENTS:
        return False
    if len(aggregator.inputs.telemetry_losses.keys() | inputs.telemetry_losses.keys()) > MAX_PROCESSES:
        return False
    if len(aggregator.inputs.host_processes.keys() | inputs.host_processes.keys()) > MAX_HOST_PROCESSES:
        return False
    sizes = getattr(agents, "sizes", None)  # a worker's packed tallies: their tables' sizes, without unpickling
    for name in agents:
        mine = aggregator.agents.get(name)
        if mine is None:
            continue
        if sizes is not None and _fits(mine, sizes[name]):
            continue  # the two sides' tables together are within every limit, whatever keys they share
        theirs = agents[name]  # unpickled here only when needed (packed_tallies)
        for table, limit in AGENT_TABLE_LIMITS:
            ours, their = getattr(mine, table), getattr(theirs, table)
            # the union is made only when the two together could pass the limit (1,000 agents: 7,000 unions)
            if len(ours) + len(their) > limit and len(ours.keys() | their.keys()) > limit:
                return False
        if mine.signals is not None and theirs.signals is not None:
            ours, their = mine.signals.symbol_ids, theirs.signals.symbol_ids
            if len(ours) + len(their) > MAX_DISTINCT and len(ours.keys() | their.keys()) > MAX_DISTINCT:
                return False
    return True


def _fits(mine, sizes: tuple) -> bool:
    """Whether ``mine`` plus a tally whose tables have ``sizes`` (``packed_tallies.table_sizes``)
    stays within every limit even if no key is shared."""
    if any(map(gt, map(add, map(len, bounded_tables(mine)), sizes), TABLE_LIMITS)):  # zip's loop in C
        return False
    symbols = sizes[-1]
    return mine.signals is None or len(mine.signals.symbol_ids) + symbols <= MAX_DISTINCT
