"""The native reader: JSON lines read and aggregated by the compiled core (``alphatrace_native``, ``native/``).

The core takes only input it reads exactly as the Python reader does (well-formed lines, as the
collector writes them); on anything else (a corrupt or oddly shaped line, a table at its size limit,
spans without ids, a line longer than the line cap) it declines, and the Python reader reads those
bytes. So the native core changes the speed of a build, never its report. What it asks of Python
for rare input is answered by ``rulebook.Rulebook``, the Python reader's own rules.

* ``read_part``: the native implementation of ``parts.PartReader`` (the contract of
  ``python_part.read_part_python``: the same ``PartResult`` for the same bytes, or None: declined);
* ``read_native``: bytes of a file into the build's aggregator, straight into its tables when it is
  empty (``read_into``), else read apart and merged (``merge.merge_part``); None: read them in Python;
* ``read_zstd_part``, ``read_zstd_from_line``, ``read_zstd_into``, ``read_native_zstd``: the same for
  a whole-file zstd stream of JSON lines (from a decompressed offset, as ``file_reader._read_zstd``
  continues one), when the core's libzstd is python-zstandard's.

Environment: ``ALPHATRACE_NATIVE`` (whether the core is used: ``native_core``) and
``ALPHATRACE_MAX_LINE_BYTES`` (the line cap, ``reading.formats.max_line_bytes``), handed to the core.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from meta_supervisor import native_core
from meta_supervisor.build import merge
from meta_supervisor.build.heap_trim import release_free_memory
from meta_supervisor.build.part_result import PartResult
from meta_supervisor.build.rulebook import Rulebook
from meta_supervisor.build.streamed_tallies import StreamedTallies, upcoming_sizes
from meta_supervisor.reading.formats import max_line_bytes
from meta_supervisor.reading.inputs import expected_spans
from meta_supervisor.reading.shapes import ReadResult
from meta_supervisor.tally import latency_runs
from meta_supervisor.tally.aggregates import AgentTally, InputTally
from meta_supervisor.tally.signal_store import SignalStore
from meta_supervisor.tally.span_aggregator import SpanAggregator


def read_part(path: Path, start: int, stop: int | None, options_tuple, first_number: int = 0, progress=None, handoff=None):
    """The part as ``part_result.PartResult``, or None when the native core is not used or declines.

    ``first_number`` is not needed: a part with a bad line (whose number would be reported) is declined.
    With ``handoff`` (``part_result.Handoff``: a forked worker's) the part's tables are bounded as the
    build's are and handed over through its files, not as arrays.
    """
    native = native_core.core()
    if native is None:
        return None
    spill = None if handoff is None or not hasattr(native, "SpillRuns") else handoff.spill_arg()
    latencies = _latencies(native, None if handoff is None else handoff.latency_spill())
    raw = _read(
        native, path, start, stop, options_tuple, progress, None, expected_spans(path, start, stop), spill=spill, latencies=latencies
    )
    return None if raw is None else _part_result(raw, handoff, latencies)


def read_into(aggregator, path: Path, start: int, stop: int | None, progress=None) -> tuple | None:
    """Read a part straight into an empty ``aggregator``: its fingerprint tables are filled in place
    (no second copy of them, no merge). Returns (consumed, records, partial tail, the part's
    tallies as ``(inputs, agents, agent_order, pending)``), or None when the core is not used, the
    aggregator is not empty, or the part was declined (the aggregator is then empty again)."""
    native = native_core.core()
    if native is None or not aggregator.is_empty():
        return None
    seen, closed = aggregator.seen, aggregator.closed_runs
    tables = (seen.slots, closed.keys, closed.states)
    latencies = _latencies(native, aggregator.latency_spill)
    raw = _read(
        native, path, start, stop, aggregator.part_options(), progress, tables, None, spill=_tiers(native, aggregator), latencies=latencies
    )
    if raw is None:
        seen.clear()
        closed.clear()
        return None
    seen.count = raw["span_count"]
    closed.count = raw["closed_count"]
    return raw["consumed"], raw["records"], raw["partial_tail"], _tallies(raw, latencies)


def read_zstd_part(path: Path, skip: int, options_tuple, progress=None, expected: int | None = None):
    """A whole-file zstd stream of JSON lines from decompressed byte ``skip`` to its end, as
    ``part_result.PartResult`` (``consumed``: decompressed bytes after ``skip``), read the way
    ``file_reader._read_zstd`` reads it; or None when the core is not used, is older than its zstd
    reader, bundles another libzstd than python-zstandard's (another decoder could give other bytes
    from a damaged stream), or declines (any zstd error among its reasons: Python then reports it).
    Its tables are sized for ``expected`` spans, and grow."""
    native = _zstd_core()
    if native is None:
        return None
    raw = _read_zstd(native, path, skip, options_tuple, progress, None, expected)
    return None if raw is None else _part_result(raw)


def read_zstd_from_line(
    path: Path, offset: int, options_tuple, expected: int | None = None, handoff=None, seek: int | None = None
) -> tuple | None:
    """The second of two parts of a zstd stream read in parallel (``parallel``): from the first
    line start at or after decompressed byte ``offset`` to the end, in tables of its own (sized for
    ``expected`` spans; bounded, and handed over through its files, with ``handoff``, as
    ``read_part``). Returns (``PartResult``, where the part starts), or None as ``read_zstd_part``;
    the part's tallies are made as they are sent (``_streamed_tallies``).
    With ``seek`` (``frame_cut``), the stream starts at that compressed offset, a frame's start,
    and ``offset`` and where the part starts count from that frame's first byte."""
    native = _zstd_core()
    if native is None:
        return None
    spill = None if handoff is None or not hasattr(native, "SpillRuns") else handoff.spill_arg()
    latencies = _latencies(native, None if handoff is None else handoff.latency_spill())
    keywords = {} if seek is None else {"seek": seek}
    raw = _read_zstd(native, path, offset, options_tuple, None, None, expected, align=True, spill=spill, latencies=latencies, **keywords)
    return None if raw is None else (_part_result(raw, handoff, latencies, streamed=True), raw["start"])


def read_zstd_into(aggregator, path: Path, skip: int, progress=None, stop: int | None = None, frame_cut: int | None = None) -> tuple | None:
    """``read_zstd_part`` straight into an empty ``aggregator``, its fingerprint tables filled in
    place (``read_into``). They were sized from an estimate of the decompressed size
    (``inputs.expected_spans``): a table the stream turns out too large for grows out of its
    array in the core, and its entries are put back into the aggregator's own table here. Returns
    (consumed, records, partial tail, the tallies as ``(inputs, agents, agent_order, pending)``,
    stopped), or None when the core is not used, the aggregator is not empty, or the stream was
    declined (the aggregator is then empty again). With ``stop``, reading ends at the first line
    start at or after that decompressed byte (``stopped`` says whether it did, else it reached the
    end): the first of two parts read in parallel. The tallies are not added to the aggregator
    here; until they are, clearing its tables (``seen.clear()``, ``closed_runs.clear()``) undoes it.
    With ``frame_cut`` instead of ``stop`` (``frame_cut``: a compressed offset where a frame starts,
    ``skip`` 0), reading ends at the first line start at or after that frame's first byte; a sixth
    item is then that byte's decompressed offset (None: not a frame's start; read to the end)."""
    native = _zstd_core()
    if native is None or not aggregator.is_empty():
        return None
    seen, closed = aggregator.seen, aggregator.closed_runs
    tables = (seen.slots, closed.keys, closed.states)
    latencies = _latencies(native, aggregator.latency_spill)
    raw = _read_zstd(
        native,
        path,
        skip,
        aggregator.part_options(),
        progress,
        tables,
        None,
        stop=stop,
        spill=_tiers(native, aggregator),
        latencies=latencies,
        **({} if frame_cut is None else {"frame_cut": frame_cut}),
    )
    if raw is None:
        seen.clear()
        closed.clear()
        return None
    if raw["tables_in_place"]:
        seen.count = raw["span_count"]
        closed.count = raw["closed_count"]
    else:  # the tables grew out of the arrays: what they hold is in the core's result
        del tables
        seen.clear()
        closed.clear()
        seen.add_all(memoryview(raw.pop("span_fps")).cast("Q"))
        closed.set_all(memoryview(raw.pop("closed_keys")).cast("Q"), raw.pop("closed_states"))
    return raw["consumed"], raw["records"], raw["partial_tail"], _tallies(raw, latencies), raw["stopped"], raw.get("frame_start")


def _tiers(native, aggregator):
    """The spilled tiers of the aggregator's tables, filled in place with them (None: unbounded)."""
    seen, closed = aggregator.seen.runs, aggregator.closed_runs.runs
    return None if seen is None and closed is None else (seen, closed)


def _zstd_core():
    native = native_core.core()
    if native is None or not hasattr(native, "read_zstd_part") or not same_zstd(native):
        return None
    return native


def frame_cut() -> bool:
    """Whether the core splits a zstd stream of many frames where a frame starts, each part's reader
    decoding only its own frames (``read_zstd_part``'s ``frame_cut`` and ``seek``), and finds
    those starts from the frames' and blocks' headers (``frame_near``)."""
    native = _zstd_core()
    return native is not None and hasattr(native, "ZSTD_FRAME_CUT") and hasattr(native, "zstd_frame_near")


def frame_near(path: Path, target: int, low: int, high: int) -> int | None:
    """The compressed offset of the data frame's start nearest ``target`` in the zstd file
    ``path``, with ``low <= start < high``, found by walking the frames' and blocks' headers
    (``native/src/zstd_frames.rs``: a few bytes read a block, none of its data); None when there
    is none (one frame up to ``high``), when the headers cannot be followed there (a damaged or
    truncated file), or when the core has no frame cut (``frame_cut``)."""
    if not frame_cut():
        return None
    start, _ = native_core.core().zstd_frame_near(str(path), target, low, high)
    return start


def _latencies(native, spill):
    """``spill`` (a ``latency_runs.LatencySpill``) when the core can write the part's latencies past
    its budget into its file (``latency_spill.rs``), else None."""
    return spill if spill is not None and hasattr(native, "LATENCY_RUNS") else None


def _read_zstd(
    native, path: Path, skip: int, options_tuple, progress, tables, expected, align=False, stop=None, spill=None, latencies=None, **frames
):
    """The core's ``read_zstd_part``: its raw result, or None when it declined (its progress taken back)."""
    where = f"the zstd stream {path} from byte {skip}"
    keywords = {"align": align, "stop": stop} | ({"spill": spill} if spill is not None else {}) | frames
    if latencies is not None:
        keywords["latencies"] = latencies
    return _call(native.read_zstd_part, where, (str(path), skip), options_tuple, progress, tables, expected, **keywords)


def same_zstd(native) -> bool:
    """Whether the core's libzstd is the one python-zstandard bundles (``zstandard.ZSTD_VERSION``)."""
    import zstandard

    return tuple(native.zstd_version()) == tuple(zstandard.ZSTD_VERSION)


def _read(native, path: Path, start: int, stop: int | None, options_tuple, progress, tables, expected, spill=None, latencies=None):
    """The core's ``read_part``: its raw result, or None when it declined (its progress taken back)."""
    keywords = {"spill": spill} if spill is not None else {}
    if latencies is not None:
        keywords["latencies"] = latencies
    where = f"{path} [{start}, {stop})"
    return _call(native.read_part, where, (str(path), start, stop), options_tuple, progress, tables, expected, **keywords)


def _call(read, where: str, head: tuple, options_tuple, progress, tables, expected, **keywords) -> dict | None:
    """``read`` (the core's ``read_part`` or ``read_zstd_part``) of what ``head`` names, with the
    build's options: its raw result, or None when it declined (its progress taken back)."""
    prices, since_ns, until_ns, collect_signals, max_open_runs = options_tuple
    progress, undo = undoable(progress)
    latencies = keywords.pop("latencies", None)
    argument = latencies.core_arg() if latencies is not None else None
    if argument is not None:
        keywords["latencies"] = argument
    raw = read(
        *head,
        since_ns,
        until_ns,
        collect_signals,
        Rulebook(prices),
        progress,
        tables,
        expected,
        max_line=max_line_bytes(),
        max_open_runs=max_open_runs,
        **keywords,
    )
    if isinstance(raw, str):
        import logging  # only here: a decline is rare, and logging costs the command's start-up ~4 ms

        logging.getLogger(__name__).debug("the native reader declined %s: %s", where, raw)
        undo()
        return None
    if latencies is not None:
        latencies.size = raw.get("latency_end", latencies.size)  # the runs it wrote end there
    release_free_memory()  # the core's tables are freed: their pages back before the tallies are made (heap_trim)
    return raw


def undoable(progress):
    """``progress`` counting what it reports, and a function taking that back (a declined part is
    read again by the Python reader, which reports its bytes itself)."""
    if progress is None:
        return None, lambda: None
    reported = 0

    def counted(count: int) -> None:
        nonlocal reported
        reported += count
        progress(count)

    def undo() -> None:
        if reported:
            progress(-reported)

    return counted, undo


TRIM_EVERY_AGENTS = 128  # the core's freed tallies given back this often while they are made into Python's


def _tallies(raw: dict, spill=None) -> tuple:
    """(inputs, agents, agent_order, pending) of a part, as the Python reader has them; with
    ``spill`` (``latency_runs.LatencySpill``) their latencies past its budget spilled as they come."""
    agents = {}
    for name, tally in _made_agents(raw.pop("agents"), spill):
        agents[name] = tally
        if spill is not None:
            spill.added(len(tally.latencies_ns), agents.values())
    return _with_runs(raw, agents)


def _with_runs(raw: dict, agents) -> tuple:
    """A part's ``(inputs, agents, agent_order, pending, dead)``, its agents' tallies ``agents``."""
    return InputTally.from_state(raw["inputs"]), agents, list(agents), {key: entry for key, entry in raw["pending"]}, raw.get("dead", ())


def _made_agents(states, spill) -> Iterator[tuple[str, AgentTally]]:
    """The core's agents (its ``AgentStates``) made into tallies, one at a time, in order."""
    keys: dict = {}  # the agents' keys, kept once (AgentTally.from_state)
    # the core hands the agents over one at a time (its ``AgentStates``), freeing each agent's tally
    # as it does: never all of a part's tallies at once in Rust, as raw data and as AgentTally. What
    # it frees stays in the C heap (Python's objects come from its own arenas) until it is trimmed:
    # trimmed every ``TRIM_EVERY_AGENTS`` agents, not only at the end (1,000 agents at 5 M spans:
    # ~7 MB of freed tallies on top of the Python ones otherwise)
    for count, (name, state, latencies, signals) in enumerate(states, 1):
        store = SignalStore.from_state(*signals) if signals is not None else None
        runs = state.pop("latency_runs", None)  # what the core spilled (``latency_spill.rs``)
        tally = AgentTally.from_state(state, latencies, store, keys)
        del latencies
        if runs:
            tally.latency_runs = spill.runs_at(runs)
        yield name, tally
        if count % TRIM_EVERY_AGENTS == 0:
            release_free_memory()  # what the core freed so far, back before more Python objects are made
    release_free_memory()  # the core's tallies, freed one by one above (heap_trim)


def _streamed_tallies(raw: dict, handoff, spill) -> tuple | None:
    """A forked worker's part with its tallies made as they are sent (``streamed_tallies``): the
    agents' order and tables' sizes now, each tally when it is asked for; with ``handoff``, each
    one's latencies spilled into its file first, as ``_handed_tallies`` leaves them. None when the
    core cannot tell the sizes beforehand."""
    states = raw["agents"]
    sizes = upcoming_sizes(states)
    if sizes is None:
        return None
    del raw["agents"]
    if handoff is not None:
        spill = spill or handoff.latency_spill()

    def made() -> Iterator[tuple[str, AgentTally]]:
        for name, tally in _made_agents(states, spill):
            if handoff is not None:
                spill.spill((tally,))
            yield name, tally

    return _with_runs(raw, StreamedTallies(sizes, made()))


def _handed_tallies(raw: dict, handoff, spill) -> tuple:
    """A part's tallies; with ``handoff`` (a forked worker's) all their latencies are in its file,
    sorted, and only the runs' places cross the pipe (``latency_runs``)."""
    if handoff is None:
        return _tallies(raw, spill)
    spill = spill or handoff.latency_spill()
    tallies = _tallies(raw, spill)
    spill.spill(tallies[1].values())
    return tallies


def _part_result(raw: dict, handoff=None, latencies=None, streamed: bool = False):
    """The ``PartResult`` of the core's ``raw`` result; ``streamed``: its tallies made as they are sent
    (``_streamed_tallies``), when the core can tell their sizes beforehand."""
    state = _streamed_tallies(raw, handoff, latencies) if streamed else None
    if state is None:
        state = _handed_tallies(raw, handoff, latencies)
    if raw.get("handed_over"):  # the tables are in the hand-over files (``Handoff``), in key order
        span_fps, closed_keys, closed_states = handoff.arrays(raw["span_count"], raw["closed_count"])
    else:  # views of the bytes the core made, not copies (peak memory)
        span_fps, closed_keys = memoryview(raw["span_fps"]).cast("Q"), memoryview(raw["closed_keys"]).cast("Q")
        closed_states = raw["closed_states"]
    return PartResult(
        consumed=raw["consumed"],
        records=raw["records"],
        partial_tail=raw["partial_tail"],
        aggregator_state=state,
        span_fps=span_fps,
        closed_keys=closed_keys,
        closed_states=closed_states,
    )


def read_native(aggregator: SpanAggregator, path: Path, start: int, stop: int | None, progress, line_offset: int) -> ReadResult | None:
    """Bytes ``[start, stop)`` of a JSON-lines file read by the native core into ``aggregator``: in
    place when it is empty, else read apart and merged (``merge_part``, so only when that is exact).
    None when the core is not used, declines, or the merge is refused: read the bytes in Python then.
    An aggregator that keeps run records (the supervisor's) is read in Python: the core keeps none."""
    if aggregator.run_records is not None:
        return None
    read = read_into(aggregator, path, start, stop, progress)
    if read is not None:
        consumed, records, partial_tail, tallies = read
        aggregator.add_tallies(tallies, line_offset)
        latency_runs.bound(aggregator)
        return ReadResult(consumed=consumed, records=records, partial_tail=partial_tail)
    if aggregator.is_empty():
        return None  # declined
    progress, undo = undoable(progress)
    part = read_part(path, start, stop, aggregator.part_options(), progress=progress)
    if part is None or not merge.merge_part(aggregator, part, str(path), line_offset):
        undo()  # the Python reader reads these bytes again and reports them itself
        return None
    return ReadResult(consumed=part.consumed, records=part.records, partial_tail=part.partial_tail)


def read_native_zstd(aggregator: SpanAggregator, path: Path, skip: int, progress, line_offset: int) -> ReadResult | None:
    """A whole-file zstd stream of JSON lines read by the native core from decompressed byte
    ``skip`` to its end: straight into an empty aggregator (``read_zstd_into``), else
    read apart and merged (``merge_part``, so only when that is exact, as for any part read apart).
    None when the core is not used or declines, or the merge is refused: ``file_reader._read_zstd``
    reads the stream in Python then. An aggregator that keeps run records (the supervisor's) is read
    in Python: the core keeps none."""
    if aggregator.run_records is not None:
        return None
    read = read_zstd_into(aggregator, path, skip, progress)
    if read is not None:
        consumed, records, partial_tail, tallies, *_ = read
        aggregator.add_tallies(tallies, line_offset)
        latency_runs.bound(aggregator)
        return ReadResult(consumed=consumed, records=records, partial_tail=partial_tail)
    if aggregator.is_empty():
        return None  # the core is not used, or it declined the stream
    progress, undo = undoable(progress)
    part = read_zstd_part(path, skip, aggregator.part_options(), progress)
    if part is None or not merge.merge_part(aggregator, part, str(path), line_offset):
        undo()
        return None
    return ReadResult(consumed=part.consumed, records=part.records, partial_tail=part.partial_tail)
