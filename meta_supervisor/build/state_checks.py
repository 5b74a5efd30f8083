"""Checks of a saved incremental state before a build trusts it: anything no build writes means a rebuild.

The tables' digests (``state_store``) catch damaged bytes; these checks catch a summary that is
well-formed JSON but cannot be true: a file cursor with a negative count, more records than bytes,
two cursors for one file, an offset past the end of the file as it was read (a read records at
least the size it read to, ``full``, and a file smaller now than that was truncated and is
read again: so no build reads on from past the end of a file, which would silently drop whatever
lies between), a checkpoint further into a file than the state after it, latency or signal ranges
out of order or past their table, counts larger than their tables, an agent's tally that is not an
object (its fields are checked as it is made: decoded against ``aggregates.TallyState``, then
``AgentTally.from_state``; either failing also means a rebuild).
Each returns the reason ("" when nothing is wrong); the build then reads everything again and says
why (``incremental``: a warning line, and the reason in the report's ``inputs.state_warnings``).

Reads no environment variables.
"""

from __future__ import annotations

import re

import msgspec

from meta_supervisor.reading.cursor import FileCursor

_GENERATION = re.compile(r"^[0-9a-f]{12}$")
_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError)


def summary_problem(data: dict) -> str:
    """What in a saved summary (the main one or a checkpoint's) no build writes; "" when nothing."""
    try:
        return _tables_problem(data) or _ranges_problem(data) or _cursors_problem(cursors_of(data))
    except _ERRORS as exc:
        return f"a field is missing or of the wrong type ({type(exc).__name__}: {exc})"


def cursors_of(data: dict) -> list[FileCursor]:
    return [FileCursor.from_state(entry) for entry in data["files"]]


def _count(value) -> bool:
    return type(value) is int and value >= 0


SPILLED_TABLES = ("seen-spilled", "closed-spilled", "closed-spilled-states")  # the tables' spilled tiers (spill_plan)


def _tables_problem(data: dict) -> str:
    if not isinstance(data["generation"], str) or not _GENERATION.match(data["generation"]):
        return f"generation {data['generation']!r} is not a generation name"
    names = {"latencies", "seen", "closed", "closed-states", *SPILLED_TABLES} | ({"signals"} if data["signals"] else set())
    digests = data["digests"]
    if set(digests) != names:
        return f"it names the tables {sorted(digests)}, not {sorted(names)}"
    sizes = {name: digests[name][0] for name in names}
    if not all(_count(size) for size in sizes.values()):
        return "a table size is not a count"
    for name, count in (("seen", data["seen_count"]), ("closed", data["closed_count"])):
        if sizes[name] % 8 or not _count(count) or count > sizes[name] // 8:
            return f"{count!r} entries do not fit the {name} table of {sizes[name]} bytes"
    if sizes["closed-states"] * 8 != sizes["closed"]:
        return "the closed-run table and its states differ in length"
    spilled = data["seen_spilled"], data["closed_spilled"], data["closed_shadowed"]
    if not all(_count(count) for count in spilled) or spilled[2] > data["closed_count"]:
        return "the spilled counts are not counts"
    expected = {"seen-spilled": 8 * spilled[0], "closed-spilled": 8 * spilled[1], "closed-spilled-states": spilled[1]}
    if any(sizes[name] != size for name, size in expected.items()):
        return "a spilled table's size does not match its count"
    if not isinstance(data["inputs"], dict) or not isinstance(data["pending"], dict):
        return "the input tallies or the open runs are not objects"
    dead = data.get("open_unchecked_runs", [])  # SpanAggregator._dead, only when there is one
    if not isinstance(dead, list) or not all(type(fp) is int and 0 < fp < 1 << 64 for fp in dead):
        return "the open unchecked runs are not fingerprints"
    return ""


def _ranges_problem(data: dict) -> str:
    """Each agent's latencies (and kept signals) are one slice of a table, in agent order, back to back."""
    order, agents = data["agent_order"], data["agents"]
    if len(set(order)) != len(order) or set(order) != set(agents):
        return "the agent list and the agents' tallies differ"
    for name in order:
        if not _an_object(agents[name]["tally"]):
            return f"the tally of {name!r} is not an object"
    for table, key, required in (("latencies", "latency_bytes", True), ("signals", "signal_bytes", False)):
        if table not in data["digests"]:
            continue
        end = 0
        for name in order:
            if key not in agents[name] and not required:
                continue
            start, stop = agents[name][key]
            if start != end or not _count(start) or not _count(stop) or stop < start or (table == "latencies" and (stop - start) % 8):
                return f"the {table} of {name!r} ({start}..{stop}) do not follow the previous agent's (which end at {end})"
            end = stop
        if end != data["digests"][table][0]:
            return f"the {table} ranges end at {end}, the table at {data['digests'][table][0]}"
    return ""


def _an_object(value) -> bool:
    """A JSON object: decoded, or its text left for later (``state_store.summary_text``; the text
    is well-formed JSON, checked as the summary was read)."""
    if type(value) is msgspec.Raw:
        return bytes(memoryview(value)[:1]) == b"{"
    return isinstance(value, dict)


def _cursors_problem(cursors: list[FileCursor]) -> str:
    identities, paths = set(), set()
    for cursor in cursors:
        counts = (cursor.device, cursor.inode, cursor.size, cursor.offset, cursor.records, cursor.partial_tail_bytes, cursor.head_length)
        if not all(_count(value) for value in counts):
            return f"the saved cursor of {cursor.path} has a negative or non-integer count"
        if cursor.records > cursor.offset:
            return f"the saved cursor of {cursor.path} has {cursor.records} records in {cursor.offset} bytes"
        if not cursor.format.startswith("zstd") and cursor.offset > cursor.size:
            return f"the saved offset of {cursor.path} ({cursor.offset}) is past the end of the file as read ({cursor.size} bytes)"
        if cursor.head_length > cursor.size:
            return f"the saved cursor of {cursor.path} has a head of {cursor.head_length} bytes in a file of {cursor.size}"
        if (cursor.device, cursor.inode) in identities or cursor.path in paths:
            return f"two saved cursors are for one file ({cursor.path})"
        identities.add((cursor.device, cursor.inode))
        paths.add(cursor.path)
    return ""


def regression_problem(checkpoint: list[FileCursor], last: list[FileCursor]) -> str:
    """A checkpoint is an earlier state: no file is read further in it than in the state after it."""
    later = {(cursor.device, cursor.inode): cursor for cursor in last}
    for cursor in checkpoint:
        after = later.get((cursor.device, cursor.inode))
        if after is not None and (cursor.offset > after.offset or cursor.records > after.records):
            return f"the checkpoint has read {cursor.path} further ({cursor.offset} bytes) than the state after it ({after.offset})"
    return ""
