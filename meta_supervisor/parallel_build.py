"""Use every core on a large JSON-lines file: split it at line boundaries, read the parts in parallel.

The parent process reads the first part into the build's aggregator (so the result stays that of a
sequential read: saved state first, then the file in order); each other part is read by a forked
child into a fresh aggregator and sent back as compact arrays. Parts are then merged in file order,
and a merge is accepted only if it is exactly what reading that part sequentially would have given:
no span of the part was seen before (a retried batch across the cut), and no run of the part was
already closed or waiting in the parent in a way a join could not reproduce, and no bounded table
would pass its limit. Otherwise that part is simply read again in the parent. So splitting changes
the speed, never the report.

Each part is read by the native core when it is installed (``native_part``; ``read_native`` here
for the parent's part and for any JSON-lines read of ``trace_files``, ``read_native_zstd`` for a
whole-file zstd stream of JSON lines), else by the Python reader; what the core declines is read
by the Python reader.

A large whole-file zstd stream of JSON lines is read in two parts too (``read_zstd_in_parallel``),
when the native core is installed and the build's aggregator is still empty: the child decompresses
the stream up to the cut (a stream cannot be entered in the middle) and reads the rest, the parent
reads up to the cut, and the two parts meet at the same line start.

Children are forked (``multiprocessing`` "fork" context) and only when the process has no other
thread; framed files, other compressed files, small files, and ``workers=1`` are read
sequentially. A child
dies with its parent (``die_with_parent``) and never holds the parent's state lock (its copy is
closed at the fork, ``services.state_files``): a killed build leaves nothing that blocks the next.

Reads no environment variables (``native_part`` reads ``ALPHATRACE_NATIVE``).
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import pickle
import signal
import sys
import threading
from array import array
from dataclasses import dataclass
from pathlib import Path

from meta_supervisor import native_part
from meta_supervisor.agent_counts import replay
from meta_supervisor.aggregates import (
    MAX_AGENTS,
    MAX_DISTINCT,
    MAX_OUTCOMES,
    MAX_PROCESSES,
    MAX_REASONS,
    P_AGENT,
    P_CACHED,
    P_CALLS,
    P_COST,
    P_DEFERRED,
    P_IN,
    P_OUT,
    P_ROOT,
    P_UNPRICED,
)
from meta_supervisor.fingerprints import run_fingerprint
from meta_supervisor.heap_trim import release_free_memory
from meta_supervisor.packed_tallies import packed_state
from meta_supervisor.span_aggregator import SpanAggregator
from meta_supervisor.trace_files import FileCursor
from meta_supervisor.trace_inputs import HEAD_BYTES, expected_spans, head_digest, identity_of, open_regular
from meta_supervisor.trace_reader import (
    FORMAT_JSON_LINES,
    ReadResult,
    RecordDecoder,
    read_json_lines,
    read_past_newline,
    skip_rest_of_line,
    sniff,
)

MIN_SPLIT_BYTES = 48 << 20
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def worker_count(requested: int) -> int:
    return requested if requested > 0 else (os.cpu_count() or 1)


def fork_is_safe() -> bool:
    """Forking a process that runs other threads can deadlock the child on a lock held at the fork."""
    return threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()


def worth_splitting(path: Path, cursor: FileCursor | None, workers: int) -> bool:
    if worker_count(workers) < 2 or not fork_is_safe():
        return False
    try:
        size = os.path.getsize(path)
        with open_regular(path) as handle:
            head = handle.read(HEAD_BYTES)
    except OSError:
        return False
    start = cursor.offset if cursor is not None else 0
    return sniff(head, size) == FORMAT_JSON_LINES and size - start >= MIN_SPLIT_BYTES


def split_points(path: Path, start: int, end: int, parts: int) -> list[int]:
    """Offsets just after a newline, so each part holds whole lines: [start, p1, ..., end]."""
    points = [start]
    with open(path, "rb") as handle:
        for k in range(1, parts):
            target = start + (end - start) * k // parts
            handle.seek(max(target, points[-1]))
            position = handle.tell()
            length, found = read_past_newline(handle, 1 << 16)
            position = position + length if found else end
            if position < end:
                points.append(position)
    points.append(end)
    return points


@dataclass
class PartResult:
    consumed: int
    records: int
    partial_tail: int
    aggregator_state: bytes | tuple  # (inputs, agents, agent_order, pending), pickled or not
    span_fps: array | memoryview  # of 64-bit fingerprints ('Q')
    closed_keys: array | memoryview
    closed_states: bytes

    def send(self, connection) -> None:
        """Small things pickled; the packed tallies and the big arrays as raw bytes after them (no
        pickling, no extra copies): their sizes are in the header, so the receiver reads each
        straight into a buffer of its size."""
        state, agents = self.aggregator_state, b""
        if isinstance(state, tuple):  # the agents pickled one by one: the receiver unpickles them as it merges
            state = packed_state(state)
            agents, state[1].blob = state[1].blob, b""
        header = (self.consumed, self.records, self.partial_tail, state, len(agents), len(self.span_fps), len(self.closed_keys))
        connection.send_bytes(pickle.dumps(header, protocol=pickle.HIGHEST_PROTOCOL))
        for blob in (agents, self.span_fps, self.closed_keys, self.closed_states):
            send_exactly(connection.fileno(), blob)

    @classmethod
    def receive(cls, connection) -> PartResult:
        header = pickle.loads(connection.recv_bytes())
        if isinstance(header, BaseException):
            raise header
        consumed, records, partial_tail, state, n_agents, n_spans, n_closed = header
        # allocated at their size and filled in place: no temporary bytes of the same size (peak RSS;
        # ``Connection.recv_bytes`` gathers a message in a BytesIO first: 4 MB cost 13 MB)
        agents = bytearray(n_agents)
        span_fps = array("Q", [0]) * n_spans
        closed_keys = array("Q", [0]) * n_closed
        closed_states = bytearray(n_closed)
        for target in (agents, span_fps, closed_keys, closed_states):
            receive_exactly(connection.fileno(), target)
        if isinstance(state, tuple):
            state[1].blob = agents
        return cls(consumed, records, partial_tail, state, span_fps, closed_keys, bytes(closed_states))


def send_exactly(fd: int, data) -> None:
    """Write all of ``data`` (any buffer) to the pipe."""
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


def receive_exactly(fd: int, target) -> None:
    """Fill ``target`` (a writable buffer) from the pipe; EOFError if the writer went away first."""
    view = memoryview(target).cast("B")
    while view:
        count = os.readv(fd, [view])
        if count == 0:
            raise EOFError(f"the part's sender closed the pipe with {len(view):,} bytes still to come")
        view = view[count:]


def read_part_python(path: Path, start: int, stop: int | None, options_tuple, first_number: int = 0) -> PartResult:
    """Read ``[start, stop)`` of a JSON-lines file into a fresh aggregator: the reference reader of a part."""
    prices, since_ns, until_ns, collect_signals, max_open_runs = options_tuple
    aggregator = SpanAggregator(
        prices,
        since_ns,
        until_ns,
        expected_spans=expected_spans(path, start, stop),
        collect_signals=collect_signals,
        max_open_runs=max_open_runs,
    )
    with open(path, "rb", buffering=0) as handle:
        handle.seek(start)
        result = read_json_lines(
            handle, RecordDecoder(aggregator, str(path)), first_number, None if stop is None else stop - start, start=start
        )
    closed = aggregator.closed_runs
    state = pickle.dumps(
        (aggregator.inputs, aggregator.agents, aggregator.agent_order, aggregator.pending), protocol=pickle.HIGHEST_PROTOCOL
    )
    return PartResult(
        consumed=result.consumed,
        records=result.records,
        partial_tail=result.partial_tail,
        aggregator_state=state,
        span_fps=array("Q", filter(None, aggregator.seen.slots)),
        closed_keys=array("Q", itertools.compress(closed.keys, closed.keys)),
        closed_states=bytes(itertools.compress(closed.states, closed.keys)),
    )


def die_with_parent(parent: int) -> None:
    """In a forked worker: be killed when the parent dies (Linux ``PR_SET_PDEATHSIG``), and end now
    if it died before that was set. A worker never outlives the build that started it."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def _child(connection, path, start, stop, options_tuple, parent: int) -> None:
    die_with_parent(parent)
    try:
        result = read_part_any(path, start, stop, options_tuple)
    except BaseException as exc:  # reported to the parent, which then reads the part itself
        connection.send_bytes(pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}")))
    else:
        result.send(connection)
    finally:
        connection.close()


def read_in_parallel(path: Path, aggregator: SpanAggregator, options, advance, cursor: FileCursor | None = None) -> FileCursor:
    ident = identity_of(path)
    out = FileCursor(
        path=str(path), device=ident.device, inode=ident.inode, size=ident.size, mtime_ns=ident.mtime_ns, format=FORMAT_JSON_LINES
    )
    out.offset = cursor.offset if cursor is not None else 0
    out.records = cursor.records if cursor is not None else 0
    with open_regular(path) as handle:
        out.head_length = len(handle.read(HEAD_BYTES))
        out.offset += skip_rest_of_line(handle, out.offset, advance)  # the rest of a line over the cap
    out.head_digest = head_digest(path, out.head_length)
    parts = worker_count(options.workers)
    points = split_points(path, out.offset, ident.size, parts)
    options_tuple = aggregator.part_options()
    context = multiprocessing.get_context("fork")
    children = []
    for k in range(1, len(points) - 1):
        receiver, sender = context.Pipe(duplex=False)
        stop = points[k + 1] if k + 2 < len(points) else None  # the last part reads to the end of the file
        process = context.Process(target=_child, args=(sender, path, points[k], stop, options_tuple, os.getpid()), daemon=True)
        process.start()
        sender.close()
        children.append((receiver, process, points[k], stop))
    scale = len(points) - 1

    def scaled(count: int) -> None:
        if advance is not None:
            advance(count * scale)

    decoder = RecordDecoder(aggregator, str(path))
    first_stop = None if len(points) == 2 else points[1]
    first = read_native(aggregator, path, points[0], first_stop, scaled, out.records)
    if first is None:
        with open(path, "rb", buffering=0) as handle:
            handle.seek(points[0])
            limit = None if first_stop is None else first_stop - points[0]
            first = read_json_lines(handle, decoder, out.records, limit, scaled, start=points[0])
    out.offset += first.consumed
    out.records += first.records
    out.partial_tail_bytes = first.partial_tail
    release_free_memory()  # what reading the first part freed, before the others' tallies come in (heap_trim)
    for receiver, process, start, stop in children:
        try:
            payload = PartResult.receive(receiver)
        except (EOFError, OSError, RuntimeError, pickle.UnpicklingError) as exc:
            payload = RuntimeError(str(exc))
        receiver.close()
        process.join()
        if isinstance(payload, PartResult) and merge_part(aggregator, payload, str(path), out.records):
            part = payload
        else:
            with open(path, "rb", buffering=0) as handle:  # not mergeable exactly: read it here instead
                handle.seek(start)
                result = read_json_lines(handle, decoder, out.records, None if stop is None else stop - start, start=start)
            part = result
        out.offset += part.consumed
        out.records += part.records
        out.partial_tail_bytes = part.partial_tail
    return out


def read_native(aggregator: SpanAggregator, path: Path, start: int, stop: int | None, progress, line_offset: int) -> ReadResult | None:
    """Bytes ``[start, stop)`` of a JSON-lines file read by the native core into ``aggregator``: in
    place when it is empty, else read apart and merged (``merge_part``, so only when that is exact).
    None when the core is not used, declines, or the merge is refused: read the bytes in Python then.
    An aggregator that keeps run records (the supervisor's) is read in Python: the core keeps none."""
    if aggregator.run_records is not None:
        return None
    read = native_part.read_into(aggregator, path, start, stop, progress)
    if read is not None:
        consumed, records, partial_tail, tallies = read
        _add_tallies(aggregator, tallies, line_offset)
        return ReadResult(consumed=consumed, records=records, partial_tail=partial_tail)
    if aggregator.is_empty():
        return None  # declined
    progress, undo = native_part.undoable(progress)
    part = native_part.read_part(path, start, stop, aggregator.part_options(), progress=progress)
    if part is None or not merge_part(aggregator, part, str(path), line_offset):
        undo()  # the Python reader reads these bytes again and reports them itself
        return None
    return ReadResult(consumed=part.consumed, records=part.records, partial_tail=part.partial_tail)


def read_native_zstd(aggregator: SpanAggregator, path: Path, skip: int, progress, line_offset: int) -> ReadResult | None:
    """A whole-file zstd stream of JSON lines read by the native core from decompressed byte
    ``skip`` to its end: straight into an empty aggregator (``native_part.read_zstd_into``), else
    read apart and merged (``merge_part``, so only when that is exact, as for any part read apart).
    None when the core is not used or declines, or the merge is refused: ``trace_files._read_zstd``
    reads the stream in Python then. An aggregator that keeps run records (the supervisor's) is read
    in Python: the core keeps none."""
    if aggregator.run_records is not None:
        return None
    read = native_part.read_zstd_into(aggregator, path, skip, progress)
    if read is not None:
        consumed, records, partial_tail, tallies, _ = read
        _add_tallies(aggregator, tallies, line_offset)
        return ReadResult(consumed=consumed, records=records, partial_tail=partial_tail)
    if aggregator.is_empty():
        return None  # the core is not used, or it declined the stream
    progress, undo = native_part.undoable(progress)
    part = native_part.read_zstd_part(path, skip, aggregator.part_options(), progress)
    if part is None or not merge_part(aggregator, part, str(path), line_offset):
        undo()
        return None
    return ReadResult(consumed=part.consumed, records=part.records, partial_tail=part.partial_tail)


ZSTD_SPLIT_AT = 0.55  # the second part also decompresses the first to skip it: the first is a bit longer


def worth_splitting_zstd(path: Path, cursor: FileCursor | None, workers: int) -> bool:
    """A whole-file zstd stream of JSON lines with ``MIN_SPLIT_BYTES`` or more left to read (its
    decompressed size estimated from its start), two workers or more, the native core installed:
    read in two parts in parallel (``read_zstd_in_parallel``)."""
    from meta_supervisor.trace_inputs import zstd_decompressed_size

    if worker_count(workers) < 2 or (cursor is not None and cursor.format != "zstd+" + FORMAT_JSON_LINES):
        return False
    total = zstd_decompressed_size(path)  # None at once for a file that is not zstd
    start = cursor.offset if cursor is not None else 0
    if total is None or total - start < MIN_SPLIT_BYTES:
        return False
    return fork_is_safe() and native_part._zstd_core() is not None


def read_zstd_in_parallel(path: Path, aggregator: SpanAggregator, options, advance, cursor: FileCursor | None = None) -> FileCursor:
    """A whole-file zstd stream of JSON lines in two parts read at once: a forked child decompresses
    the stream up to about ``ZSTD_SPLIT_AT`` of what is left (its size estimated from its start)
    and reads from the first line start there to the end into tables of its own
    (``native_part.read_zstd_from_line``), while this process reads up to that same line start into
    the build's tables (``native_part.read_zstd_into`` with ``stop``); the child's part is then
    merged (``merge_part``). The result is that of reading the stream in one go
    (``trace_files.read_trace_file``), which is what happens instead when the aggregator is not
    empty, when either part is declined (this part's tables are cleared first: nothing of it was
    added yet), or when the stream ends before the cut; a child's part that cannot be merged
    exactly is read again from the cut by ``read_trace_file``."""
    from meta_supervisor.trace_files import read_trace_file

    if not aggregator.is_empty() or aggregator.run_records is not None:
        return read_trace_file(path, aggregator, cursor, advance)
    from meta_supervisor.trace_inputs import zstd_decompressed_size

    ident = identity_of(path)
    out = FileCursor(
        path=str(path), device=ident.device, inode=ident.inode, size=ident.size, mtime_ns=ident.mtime_ns, format="zstd+" + FORMAT_JSON_LINES
    )
    out.offset = cursor.offset if cursor is not None else 0
    out.records = cursor.records if cursor is not None else 0
    with open_regular(path) as handle:
        out.head_length = len(handle.read(HEAD_BYTES))
    out.head_digest = head_digest(path, out.head_length)
    total = zstd_decompressed_size(path) or 0
    cut = out.offset + int(max(total - out.offset, 0) * ZSTD_SPLIT_AT)
    rest = expected_spans(path) * max(total - cut, 0) // max(total, 1)  # the child's tables, sized for its part
    options_tuple = aggregator.part_options()
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_zstd_child, args=(sender, path, cut, options_tuple, os.getpid(), rest), daemon=True)
    child.start()
    sender.close()

    def stop_child() -> None:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join()

    progress, undo = native_part.undoable(advance)
    first = native_part.read_zstd_into(aggregator, path, out.offset, progress, stop=cut)
    if first is None or not first[4]:
        stop_child()
        if first is None:  # declined: the stream is read in one go (and the core may decline it again)
            return read_trace_file(path, aggregator, cursor, advance)
    consumed, records, partial_tail, tallies, stopped = first
    part = None
    if stopped:
        try:
            start = pickle.loads(receiver.recv_bytes())
            if isinstance(start, BaseException):
                raise start
            part = PartResult.receive(receiver)
        except (EOFError, OSError, RuntimeError, pickle.UnpicklingError):
            part = None
        stop_child()
        if part is None or start != out.offset + consumed:  # not read: the stream in one go
            aggregator.seen.clear()
            aggregator.closed_runs.clear()
            undo()
            return read_trace_file(path, aggregator, cursor, advance)
    _add_tallies(aggregator, tallies, out.records)
    del first, tallies  # added (copied): not held through the merge below (peak RSS)
    out.offset += consumed
    out.records += records
    out.partial_tail_bytes = partial_tail
    if part is None:
        return out
    if not merge_part(aggregator, part, str(path), out.records):  # the rest read again, in one go
        return read_trace_file(path, aggregator, out, advance)
    if advance is not None:
        advance(part.consumed)
    out.offset += part.consumed
    out.records += part.records
    out.partial_tail_bytes = part.partial_tail
    return out


def _zstd_child(connection, path: Path, offset: int, options_tuple, parent: int, expected: int) -> None:
    """The second part of ``read_zstd_in_parallel``: where it starts, then the ``PartResult``."""
    die_with_parent(parent)
    try:
        read = native_part.read_zstd_from_line(path, offset, options_tuple, expected)
        if read is None:
            raise RuntimeError("the native core declined the second part of the zstd stream")
    except BaseException as exc:  # reported to the parent, which then reads the stream itself
        connection.send_bytes(pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}")))
    else:
        part, start = read
        connection.send_bytes(pickle.dumps(start))
        part.send(connection)
    finally:
        connection.close()


def merge_part(aggregator: SpanAggregator, part: PartResult, file_label: str, line_offset: int) -> bool:
    """Merge a part read apart (in a child, or by the native core) into ``aggregator`` if that equals
    reading it here in order; else change nothing."""
    state = part.aggregator_state
    inputs, agents, agent_order, pending = pickle.loads(state) if isinstance(state, bytes) else state
    part.aggregator_state = b""  # its objects are out: the bytes need not stay (peak RSS)
    closed = aggregator.closed_runs
    # runs: the part's closed runs must be unknown here, and the part's open runs joinable
    pending_fps = {run_fingerprint(key) for key in aggregator.pending}
    if not pending_fps.isdisjoint(part.closed_keys) or closed.any_set(part.closed_keys):
        return False
    for key, entry in pending.items():
        mine = aggregator.pending.get(key)
        if mine is not None and mine[P_ROOT] is not None and entry[P_ROOT] is not None:
            return False
        if entry[P_ROOT] is not None and closed.get(run_fingerprint(key), 0):
            return False
    # spans: none of the part's spans seen before
    seen = aggregator.seen
    if seen.first_present(part.span_fps) >= 0:
        return False
    # tables with a size limit: read in order, no key of the part would be folded into "(other)"
    if not within_limits(aggregator, inputs, agents, agent_order):
        return False
    # accepted: spans, tallies, inputs, open runs, closed runs (agent index remapped)
    seen.add_all(part.span_fps)
    _add_tallies(aggregator, (inputs, agents, agent_order, pending), line_offset)
    remap = bytes(min(aggregator.agent_index.get(name, 63), 63) for name in agent_order[:63]) + bytes([63] * 64)
    closed.set_all(part.closed_keys, part.closed_states.translate(bytes((state & 3) | (remap[state >> 2] << 2) for state in range(256))))
    return True


def _add_tallies(aggregator: SpanAggregator, tallies: tuple, line_offset: int) -> None:
    """Add a part's tallies and open runs (its spans and closed runs are in the tables already)."""
    inputs, agents, agent_order, pending = tallies
    for name in agent_order:
        aggregator._agent(name)
    for name, tally in agents.items():
        aggregator._agent(name)[1].merge(tally)
    inputs.bad_line_examples = [(file, line + line_offset, error) for file, line, error in inputs.bad_line_examples]
    aggregator.inputs.merge(inputs)
    for key, entry in pending.items():
        mine = aggregator.pending.get(key)
        if mine is None:
            aggregator.pending[key] = entry
            continue
        for slot in (P_CALLS, P_IN, P_OUT, P_CACHED, P_COST, P_UNPRICED):
            mine[slot] += entry[slot]
        if entry[P_DEFERRED] is not None:
            mine[P_DEFERRED] = (mine[P_DEFERRED] or []) + entry[P_DEFERRED]
        if mine[P_ROOT] is None and entry[P_ROOT] is not None:
            mine[:4] = entry[:4]
        if mine[P_ROOT] is not None and mine[P_DEFERRED] is not None:  # as run_join._join_root does
            replay(aggregator._agent(mine[P_AGENT])[1], mine[P_DEFERRED])
            mine[P_DEFERRED] = None
        if mine[P_ROOT] is not None and mine[P_CALLS] >= mine[P_ROOT][0]:
            aggregator._close(key, mine)
    aggregator.pending_added(len(pending))


def within_limits(aggregator: SpanAggregator, inputs, agents: dict, agent_order: list) -> bool:
    """Whether adding a part's tallies leaves every bounded table within its limit. Reading the part
    in order folds a new key into "(other)" only when its table is full, so if the union of both
    sides' keys fits, nothing is folded and adding the counts is exact; otherwise the part is read
    again in order (rare: a table that large is hostile input, or a very long history)."""
    if len(aggregator.agents.keys() | agent_order) > MAX_AGENTS:
        return False
    if len(aggregator.inputs.telemetry_losses.keys() | inputs.telemetry_losses.keys()) > MAX_PROCESSES:
        return False
    for name in agents:
        mine = aggregator.agents.get(name)
        if mine is None:
            continue
        theirs = agents[name]  # unpickled here only when needed (packed_tallies)
        for table, limit in (
            ("outcomes", MAX_OUTCOMES),
            ("day_models", MAX_DISTINCT),
            ("tools", MAX_DISTINCT),
            ("alpha", MAX_DISTINCT),
            ("invalid_reasons", MAX_REASONS),
        ):
            if len(getattr(mine, table).keys() | getattr(theirs, table).keys()) > limit:
                return False
        if mine.signals is not None and theirs.signals is not None:
            if len(mine.signals.symbol_ids.keys() | theirs.signals.symbol_ids.keys()) > MAX_DISTINCT:
                return False
    return True


def read_part_any(path: Path, start: int, stop: int | None, options_tuple, first_number: int = 0) -> PartResult:
    """The native reader when it is installed and takes this part, else the Python reader."""
    part = native_part.read_part(path, start, stop, options_tuple, first_number)
    return part if part is not None else read_part_python(path, start, stop, options_tuple, first_number)
